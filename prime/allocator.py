"""CPU memory reuse: let glibc keep freed tensor memory instead of returning it to the OS.

By default glibc hands every block above 32 MiB (and smaller ones, past a dynamic threshold)
to the OS when it is freed and maps fresh, zero-filled pages for the next one. A multi-step
training step frees and reallocates tensors of T*B frames (63 MiB for nmnist-conv's first
layer at B = 128, T = 10) several times, so every step pays page faults on them. Keeping
freed memory in the heap makes the next step reuse it, as PyTorch's CUDA caching allocator
does on GPUs. The resident set then stays at the peak of a step instead of shrinking.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Make glibc malloc reuse freed memory (no mmap-ed blocks, no trimming); process-wide.

    Returns False (and changes nothing) where the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return bool(libc.mallopt(_M_MMAP_MAX, 0)) and bool(libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
