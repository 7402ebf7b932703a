"""Native (C) kernels, compiled on first use with the system's C compiler and cached.

- ``prime/kernels/lif_scan.c``: the fused LIF scans. Each neuron's membrane stays in a
  register over all T steps: one pass over memory where the PyTorch version makes a dozen per
  step. The C code repeats the PyTorch kernels' float32 arithmetic operation by operation, so
  results are bit-identical (tests check it).
- ``prime/kernels/sparse_conv.c``: convolutions that skip zero inputs
  (:mod:`prime.kernels.sparse_conv`).
- ``prime/kernels/quantise.c``: per-column affine quantisers in one pass
  (:mod:`prime.kernels.quantise`; the read path's converters).

Where no compiler is found, the build fails, or ``PRIME_NATIVE=0`` is set, :func:`kernels`
returns None and callers use PyTorch ops.

The shared library is cached under ``$PRIME_CACHE`` (default ``~/.cache/prime``), named by a
hash of its source and build command, and written atomically. The kernels run on OpenMP
threads: PyTorch's own pool where PyTorch uses libgomp (the CPU wheels), so
``torch.set_num_threads`` applies to them too.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import warnings
from pathlib import Path

import torch

from prime.core.io import atomic_path

SOURCES = tuple(
    Path(__file__).with_name(name) for name in ("lif_scan.c", "sparse_conv.c", "quantise.c")
)
#: -ffp-contract=off: no fused multiply-add, so every rounding is that of PyTorch's kernels;
#: -fno-trapping-math lets branch-free selects vectorize (IEEE results unchanged); -fopenmp
#: links libgomp, which resolves to the one PyTorch has loaded (one thread pool for both)
FLAGS = (
    "-O3",
    "-std=c99",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-trapping-math",
    "-fopenmp",
)

_f32, _i64, _ptr = ctypes.c_float, ctypes.c_int64, ctypes.c_void_p


class ConvShape(ctypes.Structure):
    """``conv_shape`` of sparse_conv.c: input H x W x Ci, Co outputs, kernel, padding, output."""

    _fields_ = [(name, _i64) for name in ("H", "W", "Ci", "Co", "KH", "KW", "pad", "Ho", "Wo")]


_SIGNATURES = {
    "lif_scan_forward": ([_ptr] * 4 + [_i64] * 2 + [_f32] * 4, None),
    "lif_scan_backward": ([_ptr] * 3 + [_i64] * 2 + [_f32] * 3, None),
    "lif_pool_scan_forward": ([_ptr] * 4 + [_i64] * 7 + [_f32] * 4, ctypes.c_int),
    "lif_pool_scan_backward": ([_ptr] * 3 + [_i64] * 7 + [_f32] * 3, ctypes.c_int),
    "count_nonzero": ([_ptr, _i64, _i64, _ptr], None),
    "gather_nonzero": ([_ptr, _i64, _i64] + [_ptr] * 3, None),
    "sparse_conv_forward": ([_ptr] * 5 + [_i64, ConvShape], None),
    "sparse_conv_weight_grad": ([_ptr] * 5 + [_i64, ConvShape], ctypes.c_int),
    "quantise_columns_forward": ([_ptr] * 3 + [_i64] * 2 + [_ptr] * 4 + [_f32] * 5, None),
    "quantise_columns_backward": ([_ptr] * 3 + [_i64] * 2 + [_ptr], None),
}


def cache_dir() -> Path:
    return Path(os.environ.get("PRIME_CACHE", Path.home() / ".cache" / "prime")) / "native"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")


def library_path(cc: str) -> Path:
    """Where the kernels built by compiler ``cc`` are cached: named by source and flags."""
    build = " ".join((Path(cc).name, *FLAGS)).encode()
    key = hashlib.sha256(b"".join(source.read_bytes() for source in SOURCES) + build)
    return cache_dir() / f"prime_kernels-{key.hexdigest()[:16]}.so"


def _fall_back(reason: str) -> None:
    warnings.warn(
        f"prime: {reason}; PyTorch ops run instead of the native kernels (same results, slower; "
        "PRIME_NATIVE=0 silences this)",
        RuntimeWarning,
        stacklevel=3,
    )


@functools.cache
def kernels() -> ctypes.CDLL | None:
    """The compiled native kernels, or None (then PyTorch ops run; warned once on failure)."""
    if os.environ.get("PRIME_NATIVE", "1") == "0":
        return None
    cc = compiler()
    if cc is None:
        _fall_back("no C compiler found (cc or gcc on PATH, or $CC)")
        return None
    library = library_path(cc)
    if not library.exists():
        try:
            with atomic_path(library) as tmp:
                subprocess.run(
                    [cc, *FLAGS, *map(str, SOURCES), "-o", str(tmp)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
        except (OSError, subprocess.CalledProcessError) as error:
            detail = (getattr(error, "stderr", None) or str(error)).strip()[:500]
            _fall_back(f"could not build the native kernels with {cc} into {library}: {detail}")
            return None
    try:
        lib = ctypes.CDLL(str(library))
    except OSError as error:  # e.g. a damaged cache file: removed, so the next run rebuilds it
        library.unlink(missing_ok=True)
        _fall_back(f"could not load {library} ({error}); removed, rebuilt on the next run")
        return None
    for name, (argtypes, restype) in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = restype
    return lib


def loaded_kernels() -> ctypes.CDLL:
    """:func:`kernels` where the caller has already checked that they are available."""
    lib = kernels()
    if lib is None:
        raise RuntimeError("the native kernels are not available (check kernels() first)")
    return lib


def step_major(t: torch.Tensor) -> bool:
    """Whether ``t`` [T, ...] is float32 or uint8 on the CPU and its memory is [T][n] without
    gaps: T outermost, the inner dimensions in any order (e.g. channels-last)."""
    expected = 1
    for stride, size in sorted(zip(t.stride(), t.shape, strict=True)):
        if size > 1 and stride != expected:
            return False
        expected *= size if size > 1 else 1
    return (
        t.device.type == "cpu"
        and t.dtype in (torch.float32, torch.uint8)
        and t.dim() > 0
        and (t.shape[0] == 1 or t.stride(0) == t[0].numel())
    )


def channels_last_frames(t: torch.Tensor) -> bool:
    """Whether ``t`` [T, B, C, H, W] is float32 on the CPU with memory [T][B][H][W][C], no gaps
    (channels-last frames stacked over T and B, as multi-step convolutions leave them)."""
    if t.dim() != 5 or t.device.type != "cpu" or t.dtype != torch.float32:
        return False
    T, B, C, H, W = t.shape
    expected = (B * H * W * C, H * W * C, 1, W * C, C)
    return all(
        size == 1 or stride == want
        for size, stride, want in zip(t.shape, t.stride(), expected, strict=True)
    )
