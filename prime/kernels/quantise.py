"""Per-column affine quantisers with straight-through gradients, in one pass over memory.

:func:`quantise_columns` computes, per element of column j::

    code = rint(clamp(x * mul[j] + add[j], low, high))      # rint: half to even
    y    = code * out_mul[j] + out_add[j]
    y    = rint(clamp(y * s, word_low, word_high)) / s       # optional fixed-point word

and backward ``grad * slope[j]`` where neither clamp clipped, else 0. The native kernel
(``quantise.c``) runs where it is built and the columns are innermost in memory (e.g.
channels-last frames); PyTorch ops run otherwise, with the same float32 operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from prime.kernels.native import kernels


@dataclass(frozen=True)
class ColumnQuantiser:
    """The constants of :func:`quantise_columns`. The per-column tensors share one shape that
    broadcasts against the input (1 outside the column dimensions), float32.

    Attributes:
        mul, add: input -> code; low, high: the codes' clamp.
        out_mul, out_add: code -> value.
        slope: d value / d input where nothing clipped.
        word: (scale, low, high) of a fixed-point word the value is then rounded to, or None.
    """

    mul: torch.Tensor
    add: torch.Tensor
    out_mul: torch.Tensor
    out_add: torch.Tensor
    slope: torch.Tensor
    low: float
    high: float
    word: tuple[float, float, float] | None = None


def quantise_columns(x: torch.Tensor, q: ColumnQuantiser) -> torch.Tensor:
    """``x`` quantised per column by ``q`` (see the module docstring)."""
    return _QuantiseColumns.apply(x, q)


class _QuantiseColumns(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, q: ColumnQuantiser) -> torch.Tensor:
        period = _native_period(x, q.mul)
        if period is None:
            y, inside = _forward_torch(x, q)
        else:
            y = torch.empty_like(x)
            inside = torch.empty_like(x, dtype=torch.uint8)
            per_column = [
                t.expand_as(q.mul).contiguous() for t in (q.mul, q.add, q.out_mul, q.out_add)
            ]
            word = q.word or (0.0, 0.0, 0.0)
            kernels().quantise_columns_forward(  # type: ignore[union-attr]
                x.data_ptr(),
                y.data_ptr(),
                inside.data_ptr(),
                x.numel(),
                period,
                *(t.data_ptr() for t in per_column),
                q.low,
                q.high,
                *word,
            )
        ctx.save_for_backward(inside)
        ctx.q = q
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (inside,) = ctx.saved_tensors
        q: ColumnQuantiser = ctx.q
        period = _native_period(inside, q.mul)
        if period is None or inside.dtype != torch.uint8:
            return torch.where(inside.bool(), grad, 0.0) * q.slope, None
        if not _same_layout(grad, inside):
            grad = torch.empty_like(inside, dtype=grad.dtype).copy_(grad)
        out = torch.empty_like(grad)
        slope = q.slope.expand_as(q.mul).contiguous()
        kernels().quantise_columns_backward(  # type: ignore[union-attr]
            grad.data_ptr(),
            inside.data_ptr(),
            out.data_ptr(),
            grad.numel(),
            period,
            slope.data_ptr(),
        )
        return out, None


def _forward_torch(x: torch.Tensor, q: ColumnQuantiser) -> tuple[torch.Tensor, torch.Tensor]:
    code = x * q.mul
    code = code + q.add
    inside = (code >= q.low) & (code <= q.high)
    value = code.clamp_(q.low, q.high).round_().mul_(q.out_mul)
    value = value + q.out_add
    if q.word is not None:
        scale, low, high = q.word
        word = value * scale
        inside &= (word >= low) & (word <= high)
        value = word.clamp_(low, high).round_().div_(scale)
    return value, inside


def _same_layout(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether a and b (same shape) lie alike in memory (strides of size-1 dims aside)."""
    return all(
        size == 1 or sa == sb for size, sa, sb in zip(a.shape, a.stride(), b.stride(), strict=True)
    )


def _native_period(x: torch.Tensor, columns: torch.Tensor) -> int | None:
    """The number of columns if the native kernel can run on ``x`` (float32 or the uint8
    mask, CPU, columns innermost and the rest dense), else None."""
    if kernels() is None or x.device.type != "cpu" or x.dtype not in (torch.float32, torch.uint8):
        return None
    if columns.dim() > x.dim() or columns.dtype != torch.float32:
        return None
    shape = (1,) * (x.dim() - columns.dim()) + tuple(columns.shape)
    column_dims = [d for d, size in enumerate(shape) if size != 1]
    expected = 1
    for d in reversed(column_dims):
        if x.shape[d] != shape[d] or x.stride(d) != expected:
            return None
        expected *= x.shape[d]
    period = expected
    others = sorted((x.stride(d), x.shape[d]) for d in range(x.dim()) if d not in column_dims)
    for stride, size in others:
        if size > 1 and stride != expected:
            return None
        expected *= size
    return period
