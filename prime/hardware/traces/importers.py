"""Importing measured conductance matrices (.npy, .npz, .csv, .mat) as chip traces."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from prime.core.errors import PrimeError
from prime.hardware.traces.format import UNITS, TraceInfo, as_stack, value_problem, write_trace

#: factor from a unit to µS (``prime trace import --units``)
TO_US = {"uS": 1.0, "µS": 1.0, "S": 1e6, "mS": 1e3, "nS": 1e-3}


def load_matrix(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Reads [n, rows, cols] from a matrix [rows, cols] or stack [n, rows, cols] in .npy, .npz,
    .csv or .mat (``key``: the array's name in .npz/.mat; default: the only array)."""
    path = Path(path)
    if not path.is_file():
        raise PrimeError(f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            values = np.load(path, allow_pickle=False)
        elif suffix == ".csv":
            values = np.loadtxt(path, delimiter=",", dtype=np.float64, ndmin=2)
        elif suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                values = arrays[_pick_key(dict(arrays), key, path)]
        elif suffix == ".mat":
            values = _load_mat(path, key)
        else:
            raise PrimeError(f"cannot import {path}: use a .npy, .npz, .csv or .mat file")
    except (OSError, ValueError) as exc:
        if isinstance(exc, PrimeError):
            raise
        raise PrimeError(f"cannot read {path} as {suffix} ({exc})") from None
    values = np.asarray(values)
    if values.dtype.kind not in "fiu":
        raise PrimeError(f"{path} holds {values.dtype} values; conductances must be numbers")
    return as_stack(values, str(path))


def _load_mat(path: Path, key: str | None) -> np.ndarray:
    """MATLAB files: v4-v7 through scipy.io, v7.3 (HDF5) through h5py (MATLAB stores
    arrays transposed there)."""
    if h5py.is_hdf5(path):
        with h5py.File(path, "r") as f:
            arrays = {k: v for k, v in f.items() if isinstance(v, h5py.Dataset)}
            return np.asarray(arrays[_pick_key(arrays, key, path)]).T
    from scipy.io import loadmat

    arrays = {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
    return arrays[_pick_key(arrays, key, path)]


def _pick_key(arrays: dict[str, Any], key: str | None, path: Path) -> str:
    if key is not None:
        if key not in arrays:
            raise PrimeError(f"{path} has no array {key!r}; it has: {', '.join(arrays)}")
        return key
    if len(arrays) != 1:
        raise PrimeError(
            f"{path} holds {len(arrays)} arrays ({', '.join(arrays)}); choose one with --key"
        )
    return next(iter(arrays))


def import_matrix(
    source: str | os.PathLike,
    out: str | os.PathLike,
    info: TraceInfo,
    units: str = UNITS,
    key: str | None = None,
    reset_source: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Convert a conductance matrix file (see :func:`load_matrix`) in ``units`` to a trace."""
    if units not in TO_US:
        raise PrimeError(f"unknown units {units!r}; known: {', '.join(TO_US)}")

    def load(path: str | os.PathLike) -> np.ndarray:
        values = load_matrix(path, key) * TO_US[units]
        problem = value_problem(values)
        if problem:
            raise PrimeError(f"{path} {problem}")
        return values

    reset = None if reset_source is None else load(reset_source)
    return write_trace(out, load(source), info, reset_us=reset, force=force)


def load_set_reset(
    path: str | os.PathLike, shape: tuple[int, int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The pruning paper's chip data (``CNN_RRAM_hardware_weight.pt``): a dict of ``"set"``
    and ``"reset"`` arrays [n_reads, cells] (or [n_reads, rows, cols]), every read of the
    array in the set (formed) and reset state, in a .npz or a torch .pt file. Returns both as
    [n_reads, rows, cols]; flat reads become ``shape`` (default: square)."""
    path = Path(path)
    if not path.is_file():
        raise PrimeError(f"no such file: {path}")
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        else:
            import torch

            arrays = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: one line, not a traceback
        raise PrimeError(
            f"cannot read {path} as set/reset chip data ({type(exc).__name__}: {exc}); "
            'save it as .npz with arrays "set" and "reset"'
        ) from None
    if not isinstance(arrays, dict) or not {"set", "reset"} <= set(arrays):
        found = ", ".join(map(str, arrays)) if isinstance(arrays, dict) else type(arrays).__name__
        raise PrimeError(f'{path} must hold arrays "set" and "reset"; it has: {found}')
    set_reads, reset_reads = (
        _read_stack(np.asarray(arrays[k]), shape, f"{path}:{k}") for k in ("set", "reset")
    )
    return set_reads, reset_reads


def _read_stack(values: np.ndarray, shape: tuple[int, int] | None, what: str) -> np.ndarray:
    if values.ndim == 3:
        return values
    if values.ndim != 2:
        raise PrimeError(
            f"{what} must be [n_reads, cells] or [n_reads, rows, cols], got {values.shape}"
        )
    cells = values.shape[1]
    if shape is None:
        side = int(round(cells**0.5))
        if side * side != cells:
            raise PrimeError(
                f"{what} holds {cells} cells per read, not a square: pass --shape ROWSxCOLS"
            )
        shape = (side, side)
    if shape[0] * shape[1] != cells:
        raise PrimeError(f"{what} holds {cells} cells per read, not {shape[0]}x{shape[1]}")
    return values.reshape(len(values), *shape)


def import_set_reset(
    source: str | os.PathLike,
    out: str | os.PathLike,
    info: TraceInfo,
    units: str = UNITS,
    shape: tuple[int, int] | None = None,
    force: bool = False,
) -> Path:
    """Convert the paper's ``{"set", "reset"}`` chip data (:func:`load_set_reset`) to a
    trace: the set reads become the reads, the reset reads the reset-state reads."""
    if units not in TO_US:
        raise PrimeError(f"unknown units {units!r}; known: {', '.join(TO_US)}")
    reads, resets = (v * TO_US[units] for v in load_set_reset(source, shape))
    for values, what in ((reads, "set"), (resets, "reset")):
        problem = value_problem(values)
        if problem:
            raise PrimeError(f"{source}:{what} {problem}")
    return write_trace(out, reads, info, reset_us=resets, force=force)
