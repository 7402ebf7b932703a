"""Memory tricks of the training fast path.

**Freed memory reuse** (:func:`keep_freed_memory`): let glibc keep freed tensor memory
instead of returning it to the OS.

By default glibc hands every block above 32 MiB (and smaller ones, past a dynamic threshold)
to the OS when it is freed and maps fresh, zero-filled pages for the next one. A multi-step
training step frees and reallocates tensors of T*B frames (63 MiB for nmnist-conv's first
layer at B = 128, T = 10) several times, so every step pays page faults on them. Keeping
freed memory in the heap makes the next step reuse it, as PyTorch's CUDA caching allocator
does on GPUs. The resident set then stays at the peak of a step instead of shrinking.

**Smaller saved activations**: spikes saved for backward as bool
(:func:`spikes_saved_as_bool`), average pooling that saves only its input's shape
(:func:`avg_pool2d_saving_shape`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

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


@contextmanager
def spikes_saved_as_bool() -> Iterator[Callable[[torch.Tensor], None]]:
    """Within, the spike tensor last passed to the yielded ``mark`` is saved for backward as bool.

    Layers after a spiking layer save its float spikes (pooling keeps its whole input, a linear
    layer its input); as bool they take a quarter of the memory. Only that tensor and its views
    are packed; ``mark`` keeps a weak reference.
    """
    marked: list[weakref.ref] = []

    def is_marked(t: torch.Tensor) -> bool:
        spikes = marked[-1]() if marked else None
        return spikes is not None and (t is spikes or t._base is spikes)

    def pack(t: torch.Tensor) -> tuple[torch.dtype | None, torch.Tensor]:
        return (t.dtype, t.to(torch.bool)) if is_marked(t) else (None, t)

    def unpack(packed: tuple[torch.dtype | None, torch.Tensor]) -> torch.Tensor:
        dtype, t = packed
        return t if dtype is None else t.view(torch.uint8).to(dtype)  # fast bool -> float

    with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
        yield lambda spikes: marked.append(weakref.ref(spikes))


class _AvgPool2dSavingShape(torch.autograd.Function):
    """``F.avg_pool2d`` whose backward keeps only the input's shape, not the input.

    Average pooling's gradient does not depend on the input's values, but autograd saves the
    input anyway (for the T*B spike frames of a multi-step forward, the largest tensor of a
    training step). The backward runs the same kernel with a zero-stride stand-in.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, pool: nn.AvgPool2d) -> torch.Tensor:
        ctx.shape, ctx.pool = x.shape, pool
        return pool(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        p, pair = ctx.pool, nn.modules.utils._pair
        stand_in = grad.new_zeros(()).expand(ctx.shape)
        grad_input = torch.ops.aten.avg_pool2d_backward(
            grad,
            stand_in,
            pair(p.kernel_size),
            pair(p.stride if p.stride is not None else p.kernel_size),
            pair(p.padding),
            p.ceil_mode,
            p.count_include_pad,
            p.divisor_override,
        )
        return grad_input, None


def avg_pool2d_saving_shape(x: torch.Tensor, pool: nn.AvgPool2d) -> torch.Tensor:
    """``pool(x)`` for x [N, C, H, W], saving no activations for backward (same gradients)."""
    return _AvgPool2dSavingShape.apply(x, pool)
