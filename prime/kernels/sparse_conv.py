"""Convolutions of spike frames that skip their zeros.

A hidden layer's input is pooled spikes, mostly zero. Counted by its nonzero inputs, a
convolution is cheaper: each nonzero adds its weight rows to the outputs it reaches
(forward), and its value times those outputs' gradients to the weight gradient. :func:`conv2d`
runs the native kernels of ``prime/kernels/sparse_conv.c`` where that pays, and
``F.conv2d`` (oneDNN) elsewhere:

- the native kernels are built (:mod:`prime.kernels.native`), stride 1, float32 on the CPU;
- each input reaches at least :data:`MIN_FAN_OUT` outputs (C_out x KH x KW), so that a
  nonzero's work pays for finding it;
- at most :data:`MAX_DENSITY` of the input is nonzero (counted on every call: real N-MNIST
  spikes into ``nmnist-conv``'s second layer are about 20 % nonzero, so they run dense).

The input gradient is dense whatever the input, so it runs oneDNN's kernel. Backward keeps
the compressed input, not the frames. Results equal ``F.conv2d``'s up to float rounding
(the sums run in another order); the weight gradient does not depend on the thread count.
The crossover is measured by ``scripts/bench_sparse_conv.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from prime.kernels.native import ConvShape, kernels, loaded_kernels

#: densest input (fraction nonzero) that runs sparse. Measured crossover of a training step:
#: 0.2 at fan-out 1600 (nmnist-conv's conv 2), 0.1 at 288; 0.05 at 300 (its conv 1)
MAX_DENSITY = 0.15
#: fewest outputs an input reaches (C_out x KH x KW) for the sparse kernels to run
MIN_FAN_OUT = 1024


class SparseFrames(NamedTuple):
    """Channels-last frames [N, C, H, W] as their nonzeros: frame n holds
    ``index[offsets[n]:offsets[n + 1]]`` (int32 positions (y * W + x) * C + c) and ``value``."""

    offsets: torch.Tensor
    index: torch.Tensor  # type: ignore[assignment]  # shadows tuple.index, on purpose
    value: torch.Tensor
    shape: torch.Size


def compress(x: torch.Tensor, max_density: float = 1.0) -> SparseFrames | None:
    """The nonzeros of channels-last frames x [N, C, H, W] (float32), or None where more than
    ``max_density`` of x is nonzero or the native kernels are not built."""
    lib = kernels()
    if lib is None:
        return None
    x = x.contiguous(memory_format=torch.channels_last)
    n, m = x.shape[0], x[0].numel()
    offsets = torch.zeros(n + 1, dtype=torch.int64)
    lib.count_nonzero(x.data_ptr(), n, m, offsets[1:].data_ptr())
    offsets[1:] = offsets[1:].cumsum(0)  # [0, c0, c0 + c1, ...]
    total = int(offsets[n])
    if total > max_density * x.numel():
        return None
    index = torch.empty(total, dtype=torch.int32)
    value = torch.empty(total, dtype=torch.float32)
    lib.gather_nonzero(x.data_ptr(), n, m, offsets.data_ptr(), index.data_ptr(), value.data_ptr())
    return SparseFrames(offsets, index, value, x.shape)


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] = 0,
) -> torch.Tensor:
    """``F.conv2d`` of frames x [N, C_in, H, W] (no bias; a stride or padding (h, w) runs
    dense) -> [N, C_out, H', W'] channels-last; skips x's zeros where that pays (see the
    module)."""
    x = x.contiguous(memory_format=torch.channels_last)
    if isinstance(padding, int) and _sparse_can_run(x, weight, stride, padding):
        frames = compress(x, MAX_DENSITY)
        if frames is not None:
            return sparse_conv2d(x, weight, padding, frames)
    return F.conv2d(x, weight, stride=stride, padding=padding)


def sparse_conv2d(
    x: torch.Tensor, weight: torch.Tensor, padding: int = 0, frames: SparseFrames | None = None
) -> torch.Tensor:
    """Stride-1 convolution by the sparse kernels whatever x's density (``frames``: x
    compressed, if done already) -> [N, C_out, H', W'] channels-last; differentiable."""
    frames = compress(x.detach()) if frames is None else frames
    return _SparseConv2d.apply(x, weight, frames, padding)


def _sparse_can_run(
    x: torch.Tensor,
    weight: torch.Tensor,
    stride: int | tuple[int, int],
    padding: int,
) -> bool:
    """Whether the sparse kernels run this convolution (else ``F.conv2d``, with its errors)."""
    return (
        stride == 1
        and x.dim() == weight.dim() == 4
        and x.shape[1] == weight.shape[1]
        and weight[0, 0].numel() * weight.shape[0] >= MIN_FAN_OUT
        and all(x.shape[d] + 2 * padding >= weight.shape[d] for d in (2, 3))
        and x.dtype == weight.dtype == torch.float32
        and x.device.type == weight.device.type == "cpu"
    )


def _conv_shape(frames: SparseFrames, weight_shape: torch.Size, padding: int) -> ConvShape:
    _, ci, h, w = frames.shape
    co, _, kh, kw = weight_shape
    ho, wo = h + 2 * padding - kh + 1, w + 2 * padding - kw + 1
    return ConvShape(h, w, ci, co, kh, kw, padding, ho, wo)


def sparse_conv2d_forward(frames: SparseFrames, weight: torch.Tensor, padding: int) -> torch.Tensor:
    """Stride-1 convolution of compressed frames: -> [N, C_out, H', W'], channels-last."""
    shape = _conv_shape(frames, weight.shape, padding)
    n = frames.shape[0]
    out = torch.empty(n, shape.Ho, shape.Wo, shape.Co)
    w = weight.detach().permute(2, 3, 1, 0).contiguous()  # [KH][KW][Ci][Co]
    loaded_kernels().sparse_conv_forward(
        frames.offsets.data_ptr(),
        frames.index.data_ptr(),
        frames.value.data_ptr(),
        w.data_ptr(),
        out.data_ptr(),
        n,
        shape,
    )
    return out.permute(0, 3, 1, 2)


def sparse_conv2d_weight_grad(
    frames: SparseFrames, grad: torch.Tensor, weight_shape: torch.Size, padding: int
) -> torch.Tensor:
    """d loss / d weight [C_out, C_in, KH, KW] from the output's gradient [N, C_out, H', W']."""
    shape = _conv_shape(frames, weight_shape, padding)
    grad = grad.contiguous(memory_format=torch.channels_last)
    dw = torch.empty(shape.KH, shape.KW, shape.Ci, shape.Co)
    status = loaded_kernels().sparse_conv_weight_grad(
        frames.offsets.data_ptr(),
        frames.index.data_ptr(),
        frames.value.data_ptr(),
        grad.data_ptr(),
        dw.data_ptr(),
        frames.shape[0],
        shape,
    )
    if status != 0:
        raise MemoryError("sparse_conv_weight_grad could not allocate its partial sums")
    return dw.permute(3, 2, 0, 1).contiguous()


class _SparseConv2d(torch.autograd.Function):
    """Stride-1 convolution of x given as its nonzeros; backward keeps those, not x."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, weight: torch.Tensor, frames: SparseFrames, padding: int
    ) -> torch.Tensor:
        ctx.frames, ctx.padding = frames, padding
        ctx.save_for_backward(weight)
        return sparse_conv2d_forward(frames, weight, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (weight,) = ctx.saved_tensors
        frames, padding = ctx.frames, ctx.padding
        grad_input = grad_weight = None
        if ctx.needs_input_grad[0]:  # oneDNN's kernel, channels-last as the forward's input
            n, c, h, w = frames.shape
            stand_in = grad.new_zeros(()).expand(n, h, w, c).permute(0, 3, 1, 2)
            grad_input = torch.ops.aten.convolution_backward(
                grad.contiguous(memory_format=torch.channels_last),
                stand_in,
                weight.contiguous(memory_format=torch.channels_last),
                None,
                [1, 1],
                [padding, padding],
                [1, 1],
                False,
                [0, 0],
                1,
                [True, False, False],
            )[0]
        if ctx.needs_input_grad[1]:
            grad_weight = sparse_conv2d_weight_grad(frames, grad, weight.shape, padding)
        return grad_input, grad_weight, None, None
