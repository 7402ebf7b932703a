"""Chip conductance traces: a crossbar array read many times, stored as HDF5.

The format (specified in ``hw_traces/README.md``, version :data:`FORMAT_VERSION`):

* ``/conductance_us`` float32 [n_reads, rows, cols], µS, chunked one read per chunk so a
  reader touches one read at a time;
* ``/reset_conductance_us`` (optional) float32 [n_reset_reads, rows, cols], µS: the same cells
  read in the reset state;
* ``/timestamp_s`` (optional) float64 [n_reads], seconds, non-decreasing;
* root attributes ``format``, ``format_version``, ``chip_id``, ``technology``, ``rows``,
  ``cols``, ``units`` ("uS"), ``read_voltage_v``, ``temperature_k``, ``provenance_kind``
  ("measured" or "synthetic") and ``provenance`` (by what / from where).

:func:`write_trace` writes atomically; :class:`Trace` reads lazily, one read at a time.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from prime.core.errors import PrimeError
from prime.core.io import atomic_hdf5
from prime.core.resources import MAX_TRACE_READS, check_memory

FORMAT = "prime-trace"
FORMAT_VERSION = 1
UNITS = "uS"
PROVENANCE_KINDS = ("measured", "synthetic")


@dataclass(frozen=True)
class TraceInfo:
    """The descriptive attributes of a trace (NaN: not known)."""

    chip_id: str = "unknown"
    technology: str = "unknown"
    read_voltage_v: float = math.nan
    temperature_k: float = math.nan
    provenance_kind: str = "measured"
    provenance: str = "unknown"

    def __post_init__(self) -> None:
        if self.provenance_kind not in PROVENANCE_KINDS:
            raise PrimeError(
                f"provenance kind must be one of {', '.join(PROVENANCE_KINDS)}, "
                f"got {self.provenance_kind!r}"
            )


def write_trace(
    path: str | os.PathLike,
    reads_us: np.ndarray | Iterable[np.ndarray],
    info: TraceInfo,
    reset_us: np.ndarray | None = None,
    timestamps_s: np.ndarray | None = None,
    force: bool = False,
    compress: bool = True,
) -> Path:
    """Write a trace atomically; refuse an existing ``path`` unless ``force``.

    ``reads_us``: float [n_reads, rows, cols] or [rows, cols] (one read) in µS, or an
    iterable of [rows, cols] reads, written one by one (never all in memory).
    ``reset_us``: [n, rows, cols] or [rows, cols] reset-state reads. ``compress``: gzip.
    """
    path = check_writable(path, force)
    if isinstance(reads_us, np.ndarray):
        reads_us = as_stack(reads_us, "conductance")
    filters = {"compression": "gzip", "compression_opts": 4, "shuffle": True} if compress else {}
    with atomic_hdf5(path) as f:
        dataset = None
        for i, read in enumerate(reads_us):
            read = np.asarray(read, dtype=np.float32)
            if dataset is None:
                if read.ndim != 2:
                    raise PrimeError(f"a read must be a [rows, cols] matrix, got {read.shape}")
                dataset = f.create_dataset(
                    "conductance_us",
                    shape=(0, *read.shape),
                    maxshape=(None, *read.shape),
                    dtype=np.float32,
                    chunks=(1, *read.shape),
                    **filters,
                )
            elif read.shape != dataset.shape[1:]:
                raise PrimeError(f"read {i} has shape {read.shape}, read 0 {dataset.shape[1:]}")
            dataset.resize(i + 1, axis=0)
            dataset[i] = read
        if dataset is None:
            raise PrimeError("a trace needs at least one read")
        dataset.attrs["units"] = UNITS
        rows, cols = dataset.shape[1:]
        if reset_us is not None:
            reset_us = as_stack(reset_us, "reset conductance")
            if reset_us.shape[1:] != (rows, cols):
                raise PrimeError(
                    f"reset reads have shape {reset_us.shape[1:]}, the trace {(rows, cols)}"
                )
            reset = f.create_dataset(
                "reset_conductance_us",
                data=reset_us.astype(np.float32),
                chunks=(1, rows, cols),
                **filters,
            )
            reset.attrs["units"] = UNITS
        if timestamps_s is not None:
            f.create_dataset("timestamp_s", data=np.asarray(timestamps_s, dtype=np.float64))
        f.attrs.update(
            {"format": FORMAT, "format_version": FORMAT_VERSION, "rows": rows, "cols": cols}
        )
        f.attrs.update({"units": UNITS, **dataclasses.asdict(info)})
    return path


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """``path`` as a Path; ``PrimeError`` if it exists and ``force`` is not set."""
    path = Path(path)
    if path.exists() and not force:
        raise PrimeError(f"{path} exists; pass --force to overwrite it")
    return path


def as_stack(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.ndim == 2:
        return values[None]
    if values.ndim != 3:
        raise PrimeError(
            f"{what} must be a [rows, cols] matrix or a [n_reads, rows, cols] stack, "
            f"got shape {values.shape}"
        )
    return values


class Trace:
    """An open trace file, read lazily: ``trace.read(i)`` loads read ``i`` only.

    Opening checks the structure (format, version, datasets, units, shapes) and raises
    ``PrimeError`` naming the problem; values are checked per read (:meth:`read`).
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise PrimeError(f"no such trace file: {self.path}")
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as exc:
            raise PrimeError(
                f"{self.path} is not a readable HDF5 trace (truncated, corrupt or another "
                f"format; h5py said: {exc}); make one with prime trace import or synth"
            ) from None
        try:
            self._check_structure()
        except PrimeError:
            self.close()
            raise

    def _check_structure(self) -> None:
        f, name = self._file, self.path
        if _plain(f.attrs.get("format")) != FORMAT:
            raise PrimeError(f"{name} is an HDF5 file but not a prime trace (no format attribute)")
        version = _plain(f.attrs.get("format_version"))
        if version != FORMAT_VERSION:
            raise PrimeError(
                f"{name} has trace format_version {version!r}; this prime reads version "
                f"{FORMAT_VERSION} (upgrade prime, or re-import the data)"
            )
        if "conductance_us" not in f:
            raise PrimeError(f"{name} has no /conductance_us dataset (the reads)")
        root_units = _plain(f.attrs.get("units"))
        if root_units != UNITS:
            raise PrimeError(
                f"{name} has root units {root_units!r}; traces store {UNITS!r} (µS): re-import "
                "the data with prime trace import --units <its unit>"
            )
        self.reads = f["conductance_us"]
        self.reset = f.get("reset_conductance_us")
        for dataset in (self.reads, self.reset):
            if dataset is None:
                continue
            if dataset.ndim != 3 or dataset.shape[0] < 1:
                raise PrimeError(
                    f"{name}:{dataset.name} must be [n_reads >= 1, rows, cols], got {dataset.shape}"
                )
            if dataset.dtype.kind != "f":
                raise PrimeError(f"{name}:{dataset.name} must hold floats, not {dataset.dtype}")
            units = _plain(dataset.attrs.get("units", f.attrs.get("units")))
            if units != UNITS:
                raise PrimeError(
                    f"{name}:{dataset.name} has units {units!r}; traces store {UNITS!r} (µS): "
                    "re-import the data with prime trace import --units <its unit>"
                )
            if dataset.shape[0] > MAX_TRACE_READS:
                raise PrimeError(
                    f"{name}:{dataset.name} declares {dataset.shape[0]:,} reads, above the limit "
                    f"of {MAX_TRACE_READS:,}: split the measurement into several traces"
                )
        rows, cols = self.reads.shape[1:]
        check_memory(
            rows * cols * 4 * 2,  # one float32 read and its check
            f"one {rows}x{cols} read of {name}",
            "the trace declares an array larger than this machine can hold",
        )
        if self.reset is not None and self.reset.shape[1:] != self.reads.shape[1:]:
            raise PrimeError(
                f"{name}: reset reads are {self.reset.shape[1:]} cells, the reads "
                f"{self.reads.shape[1:]}"
            )
        timestamps = f.get("timestamp_s")
        if timestamps is not None and timestamps.shape != (self.n_reads,):
            raise PrimeError(
                f"{name}:/timestamp_s has shape {timestamps.shape}, expected ({self.n_reads},)"
            )
        self.timestamps_s = None if timestamps is None else timestamps[()]

    @property
    def n_reads(self) -> int:
        return self.reads.shape[0]

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the array."""
        return tuple(self.reads.shape[1:])

    @property
    def attrs(self) -> dict[str, Any]:
        return {k: _plain(v) for k, v in self._file.attrs.items()}

    def read(self, index: int, reset: bool = False) -> np.ndarray:
        """Read ``index`` (reset state: ``index`` modulo the reset reads), float32 [rows, cols]
        µS; ``PrimeError`` if it holds NaN, infinite or negative values."""
        dataset = self.require_reset() if reset else self.reads
        index = index % dataset.shape[0]
        values = np.asarray(dataset[index], dtype=np.float32)
        problem = value_problem(values)
        if problem:
            raise PrimeError(f"{self.path}:{dataset.name} read {index} {problem}")
        return values

    def require_reset(self) -> h5py.Dataset:
        """The reset-state reads; ``PrimeError`` if the trace has none."""
        if self.reset is None:
            raise PrimeError(
                f"{self.path} has no /reset_conductance_us; --pruned reset needs reset-state "
                "reads (use --pruned zero, or import them with --reset)"
            )
        return self.reset

    def iter_reads(self, reset: bool = False) -> Iterator[np.ndarray]:
        """Every read in order, one at a time."""
        dataset = self.reset if reset else self.reads
        for index in range(0 if dataset is None else dataset.shape[0]):
            yield self.read(index, reset)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def value_problem(values: np.ndarray) -> str | None:
    """What is wrong with conductance values (NaN, infinite, negative), or None."""
    bad = ~np.isfinite(values)
    if bad.any():
        return f"holds {int(bad.sum())} NaN or infinite values; conductances must be finite µS"
    if (values < 0).any():
        return (
            f"holds {int((values < 0).sum())} negative values (min {values.min():.4g}); "
            "conductances are magnitudes in µS >= 0"
        )
    return None


def validate_trace(path: str | os.PathLike) -> list[str]:
    """Every problem of a trace file (empty if valid): structure, units, attributes, values
    of every read (one read in memory at a time), monotonic timestamps."""
    try:
        trace = Trace(path)
    except PrimeError as exc:
        return [str(exc)]
    problems = []
    with trace:
        attrs = trace.attrs
        missing = [f.name for f in dataclasses.fields(TraceInfo) if f.name not in attrs]
        if missing:
            problems.append(f"missing attributes: {', '.join(missing)}")
        elif attrs["provenance_kind"] not in PROVENANCE_KINDS:
            problems.append(
                f"provenance_kind is {attrs['provenance_kind']!r}, not one of "
                f"{', '.join(PROVENANCE_KINDS)}"
            )
        if (attrs.get("rows"), attrs.get("cols")) != trace.shape:
            problems.append(
                f"attributes rows, cols = {attrs.get('rows')}, {attrs.get('cols')} do not match "
                f"the {trace.shape[0]}x{trace.shape[1]} reads"
            )
        for reset in (False, True):
            dataset = trace.reset if reset else trace.reads
            for index in range(0 if dataset is None else dataset.shape[0]):
                problem = value_problem(np.asarray(dataset[index]))
                if problem:
                    problems.append(f"{dataset.name} read {index} {problem}")
        t = trace.timestamps_s
        if t is not None:
            if not np.isfinite(t).all():
                problems.append("/timestamp_s holds NaN or infinite values")
            elif (np.diff(t) < 0).any():
                first = int(np.argmax(np.diff(t) < 0)) + 1
                problems.append(
                    f"/timestamp_s is not monotonic: read {first} at {t[first]:g} s comes "
                    f"before read {first - 1} at {t[first - 1]:g} s"
                )
    return problems


def _plain(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
