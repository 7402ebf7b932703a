"""The fused LIF scans over all T steps: PyTorch ops and their native (C) twins.

:func:`lif_scan` and :func:`lif_pool_scan` are the multi-step kernels of
:class:`prime.snn.neurons.LIF`; both run the native kernels of ``prime/kernels/lif_scan.c``
(:mod:`prime.kernels.native`) where they are built, else PyTorch ops, with bit-identical
results. :func:`lif_scan_from` and :func:`lif_pool_scan_from` (inference) start from given
membranes and return the membranes after the last step, so a sequence can run in chunks of
steps (early exit) with the results of one scan. The neuron model itself (one step, its
constants) is :mod:`prime.snn.neurons`.
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

from prime.core.errors import PrimeError
from prime.kernels.native import channels_last_frames, kernels, loaded_kernels, step_major


class LIFConstants(Protocol):
    """The LIF constants a scan reads (:class:`prime.snn.neurons.LIFParams`)."""

    @property
    def threshold(self) -> float: ...
    @property
    def decay(self) -> float: ...
    @property
    def leak_slope(self) -> float: ...
    @property
    def surrogate_width(self) -> float: ...


def lif_scan(currents: torch.Tensor, params: LIFConstants) -> torch.Tensor:
    """LIF over all timesteps: currents [T, B, ...] -> spikes [T, B, ...] (float, 0 or 1).

    The fused kernel of :class:`LIFScan`: the same values as looping :func:`lif_step`, and the
    same gradients, with a fraction of the memory and time.
    """
    if torch.is_grad_enabled() and currents.requires_grad:
        return LIFScan.apply(currents, params)
    return lif_scan_forward(currents, params)


def lif_scan_from(
    currents: torch.Tensor, membrane: torch.Tensor, params: LIFConstants
) -> tuple[torch.Tensor, torch.Tensor]:
    """LIF over T steps from membranes [B, ...] (as :func:`~prime.snn.neurons.lif_step`'s
    state): currents [T, B, ...] -> (spikes [T, B, ...], membranes after the last step, reset
    to 0 where they fired). Inference only (no gradients); bit for bit a ``lif_step`` loop."""
    after = _membranes_from(currents, membrane)
    return lif_scan_forward(currents, params, membrane=after), after


def _membranes_from(currents: torch.Tensor, membrane: torch.Tensor) -> torch.Tensor:
    """A copy of ``membrane`` laid out as one step of ``currents`` (what the kernels update)."""
    if membrane.shape != currents.shape[1:]:
        raise PrimeError(
            f"membranes of shape {tuple(membrane.shape)} do not fit currents "
            f"{tuple(currents.shape)}: pass one membrane per element of a step [B, ...]"
        )
    return torch.empty_like(currents[0]).copy_(membrane)


def lif_scan_forward(
    currents: torch.Tensor,
    params: LIFConstants,
    state: torch.Tensor | None = None,
    membrane: torch.Tensor | None = None,
) -> torch.Tensor:
    """The fused scan's forward: spikes [T, B, ...]; fills ``state`` (uint8, currents' shape)
    with the bits backward needs (:data:`FIRED`, :data:`IN_WINDOW`, :data:`POSITIVE`) if given.
    Starts from ``membrane`` (laid out as ``currents[0]``) if given, and overwrites it with the
    membranes after the last step (reset to 0 where they fired).

    Runs the native kernel (:mod:`prime.kernels.native`) where it is built, else PyTorch ops; both
    give the same bits.
    """
    spikes = torch.empty_like(currents)
    lib = kernels()
    if lib is not None and step_major(currents):
        T, n = currents.shape[0], currents[0].numel()
        lib.lif_scan_forward(
            currents.data_ptr(),
            spikes.data_ptr(),
            None if state is None else state.data_ptr(),
            None if membrane is None else membrane.data_ptr(),
            T,
            n,
            1.0 - params.decay,
            params.leak_slope,
            params.threshold,
            params.surrogate_width,
        )
        return spikes
    mem = torch.zeros_like(currents[0]) if membrane is None else reset_fired(membrane, params)
    not_fired = torch.ones_like(mem)
    distance = torch.empty_like(mem)
    bit = torch.empty_like(mem, dtype=torch.bool)
    for t in range(currents.shape[0]):
        mem.mul_(not_fired)  # reset to 0 where the previous step fired
        mem.mul_(1.0 - params.decay).add_(currents[t])
        F.leaky_relu_(mem, params.leak_slope)
        torch.gt(mem, params.threshold, out=spikes[t])
        torch.le(mem, params.threshold, out=not_fired)
        if state is None:
            continue
        state[t].copy_(spikes[t])  # FIRED: this step's spike, 0 or 1
        torch.sub(mem, params.threshold, out=distance).abs_()
        torch.lt(distance, params.surrogate_width, out=bit)
        state[t].add_(bit.view(torch.uint8), alpha=IN_WINDOW)
        torch.gt(mem, 0.0, out=bit)
        state[t].add_(bit.view(torch.uint8), alpha=POSITIVE)
    if membrane is not None:
        membrane.copy_(reset_fired(mem, params))
    return spikes


def reset_fired(mem: torch.Tensor, params: LIFConstants) -> torch.Tensor:
    """``mem`` with 0 where it is above threshold: the reset after a spike (``lif_step``)."""
    return torch.where(mem > params.threshold, 0.0, mem)


def lif_scan_backward(
    grad_spikes: torch.Tensor, state: torch.Tensor, params: LIFConstants
) -> torch.Tensor:
    """The fused scan's backward: d loss / d currents [T, B, ...] from d loss / d spikes and
    the forward's state bytes (native kernel where built, else PyTorch ops)."""
    grad = torch.empty_like(state, dtype=grad_spikes.dtype)
    lib = kernels()
    if lib is not None and step_major(grad):
        if grad_spikes.stride() != grad.stride():
            grad_spikes = torch.empty_like(grad).copy_(grad_spikes)  # both read alike
        T, n = state.shape[0], state[0].numel()
        lib.lif_scan_backward(
            grad_spikes.data_ptr(),
            state.data_ptr(),
            grad.data_ptr(),
            T,
            n,
            1.0 - params.decay,
            params.leak_slope,
            params.surrogate_width,
        )
        return grad
    g, carry, flag = (torch.empty_like(grad[0]) for _ in range(3))  # flag: one bit as 0/1
    bits = torch.empty_like(state[0])

    def read(t: int, bit: int) -> torch.Tensor:
        """One bit of step t's state as float 0/1."""
        torch.bitwise_right_shift(state[t], bit.bit_length() - 1, out=bits).bitwise_and_(1)
        return flag.copy_(bits)

    for t in reversed(range(state.shape[0])):
        # d loss / d U_t: through the spike (surrogate window) ...
        torch.mul(grad_spikes[t], read(t, IN_WINDOW), out=g)
        g.div_(2 * params.surrogate_width)
        if t + 1 < state.shape[0]:  # ... and through U_{t+1}, unless U_t fired (reset)
            torch.mul(grad[t + 1], 1.0 - params.decay, out=carry)
            g.add_(carry.mul_(read(t, FIRED).neg_().add_(1.0)))
        # through the LeakyReLU: d U_t / d current_t is 1 where U_t > 0, else the slope
        torch.ops.aten.leaky_relu_backward.grad_input(
            g, read(t, POSITIVE), params.leak_slope, False, grad_input=grad[t]
        )
    return grad


#: Bits of the state byte :class:`LIFScan` keeps per element and step.
FIRED, IN_WINDOW, POSITIVE = 1, 2, 4


class LIFScan(torch.autograd.Function):
    """LIF over T in place, saving for backward one byte per element and step.

    The byte holds three bits (:data:`FIRED`, :data:`IN_WINDOW`, :data:`POSITIVE`): the spike,
    the surrogate window ``|U - th| < w`` and the LeakyReLU side ``U > 0``; never the
    membranes nor the float spikes. Values and gradients equal those of a :func:`lif_step`
    loop bit for bit. Kernels run on float32 or uint8 only: PyTorch's CPU kernels that mix
    bool with float (``where``, ``masked_fill``, bool casts) are up to 20x slower.
    """

    @staticmethod
    def forward(ctx, currents: torch.Tensor, params: LIFConstants) -> torch.Tensor:
        state = torch.empty_like(currents, dtype=torch.uint8)
        spikes = lif_scan_forward(currents, params, state)
        ctx.save_for_backward(state)
        ctx.params = params
        return spikes

    @staticmethod
    def backward(ctx, grad_spikes: torch.Tensor) -> tuple[torch.Tensor, None]:
        (state,) = ctx.saved_tensors
        return lif_scan_backward(grad_spikes, state, ctx.params), None


def lif_pool_scan(
    currents: torch.Tensor, params: LIFConstants, kernel: int, channels_last: bool = True
) -> torch.Tensor | None:
    """LIF over T fused with ``kernel`` x ``kernel`` average pooling (stride ``kernel``) of its
    spikes: currents [T, B, C, H, W] (channels-last frames) -> pooled spikes
    [T, B, C, H/k, W/k], channels-last frames too, or contiguous with ``channels_last=False``
    (what a flatten before a linear layer wants).

    The same values and gradients as :func:`lif_scan` then ``F.avg_pool2d``, without ever
    storing the spikes (backward keeps the state bytes only). Returns None where it cannot
    run: native kernels not built, frames not channels-last, or H, W not divisible by k.
    """
    if not _poolable(currents, kernel):
        return None
    if torch.is_grad_enabled() and currents.requires_grad:
        return LIFPoolScan.apply(currents, params, kernel, channels_last)
    return lif_pool_scan_forward(currents, params, kernel, channels_last)


def lif_pool_scan_from(
    currents: torch.Tensor,
    membrane: torch.Tensor,
    params: LIFConstants,
    kernel: int,
    channels_last: bool = True,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """:func:`lif_pool_scan` from membranes [B, C, H, W] (as :func:`lif_scan_from`):
    (pooled spikes, membranes after the last step), or None where it cannot run. Inference
    only (no gradients)."""
    if not _poolable(currents, kernel):
        return None
    after = _membranes_from(currents, membrane)
    return lif_pool_scan_forward(currents, params, kernel, channels_last, membrane=after), after


def _poolable(currents: torch.Tensor, kernel: int) -> bool:
    """Whether the fused kernel runs: built, channels-last frames, H and W divisible by k."""
    if kernels() is None or not channels_last_frames(currents):
        return False
    *_, C, H, W = currents.shape
    return not (H % kernel or W % kernel or kernel * W * C > POOL_ROW_LIMIT)


def _pooled_frames(T: int, B: int, C: int, H: int, W: int, channels_last: bool) -> torch.Tensor:
    """An empty [T, B, C, H, W]: channels-last frames, or contiguous."""
    if not channels_last:
        return torch.empty(T, B, C, H, W)
    return torch.empty(T * B, C, H, W, memory_format=torch.channels_last).unflatten(0, (T, B))


def _is_pooled_layout(t: torch.Tensor, channels_last: bool) -> bool:
    return channels_last_frames(t) if channels_last else t.is_contiguous()


def lif_pool_scan_forward(
    currents: torch.Tensor,
    params: LIFConstants,
    kernel: int,
    channels_last: bool = True,
    state: torch.Tensor | None = None,
    membrane: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`lif_pool_scan`'s forward (native kernel; checked input): pooled spikes, and
    ``state`` and ``membrane`` used as :func:`lif_scan_forward` uses them, if given."""
    T, B, C, H, W = currents.shape
    pooled = _pooled_frames(T, B, C, H // kernel, W // kernel, channels_last)
    status = loaded_kernels().lif_pool_scan_forward(
        currents.data_ptr(),
        pooled.data_ptr(),
        None if state is None else state.data_ptr(),
        None if membrane is None else membrane.data_ptr(),
        T,
        B,
        H,
        W,
        C,
        kernel,
        channels_last,
        1.0 - params.decay,
        params.leak_slope,
        params.threshold,
        params.surrogate_width,
    )
    _check_row_limit(status)
    return pooled


def _check_row_limit(status: int) -> None:
    if status != 0:  # the C kernel's own guard; lif_pool_scan checks POOL_ROW_LIMIT first
        raise RuntimeError(f"fused LIF pooling refused rows over {POOL_ROW_LIMIT} elements")


#: the fused kernel's limit on k * W * C (elements of the input rows of one pooled row; its
#: BLOCK in prime/kernels/lif_scan.c)
POOL_ROW_LIMIT = 8192


class LIFPoolScan(torch.autograd.Function):
    """:func:`lif_pool_scan`'s native kernels; saves one state byte per element and step."""

    @staticmethod
    def forward(
        ctx, currents: torch.Tensor, params: LIFConstants, kernel: int, channels_last: bool
    ) -> torch.Tensor:
        state = torch.empty_like(currents, dtype=torch.uint8)
        pooled = lif_pool_scan_forward(currents, params, kernel, channels_last, state)
        ctx.save_for_backward(state)
        ctx.params, ctx.kernel, ctx.channels_last = params, kernel, channels_last
        return pooled

    @staticmethod
    def backward(ctx, grad_pooled: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (state,) = ctx.saved_tensors
        p: LIFConstants = ctx.params
        if not _is_pooled_layout(grad_pooled, ctx.channels_last):
            t, b, c, h, w = grad_pooled.shape
            grad_pooled = _pooled_frames(t, b, c, h, w, ctx.channels_last).copy_(grad_pooled)
        T, B, C, H, W = state.shape
        grad = torch.empty(T * B, C, H, W, memory_format=torch.channels_last).unflatten(0, (T, B))
        status = loaded_kernels().lif_pool_scan_backward(
            grad_pooled.data_ptr(),
            state.data_ptr(),
            grad.data_ptr(),
            T,
            B,
            H,
            W,
            C,
            ctx.kernel,
            ctx.channels_last,
            1.0 - p.decay,
            p.leak_slope,
            p.surrogate_width,
        )
        _check_row_limit(status)
        return grad, None, None, None
