"""Spiking neurons as pure kernels (``lif_step(current, mem, params)``) with thin modules.

The LIF neuron follows snnTorch's ``snn.Leaky`` with ``reset_mechanism="zero"`` (reset
detached from the graph, as snnTorch does), plus PRIME's LeakyReLU on the membrane. One step:

    U <- 0 where the neuron spiked last step (U > threshold)
    U <- (1 - decay) U + I            # PRIME: decay 0.8, so U is multiplied by 0.2
    U <- LeakyReLU(U, leak_slope)     # PRIME: 0.1
    S <- U > threshold                # surrogate: 1 / (2 w) where |U - threshold| < w

Shapes: a step takes ``current`` [B, ...] and returns spikes [B, ...]; a scan takes
currents [T, B, ...] and returns spikes [T, B, ...]. Both give identical results.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prime.native import channels_last_frames, kernels, step_major


@dataclass(frozen=True)
class LIFParams:
    """LIF constants. Defaults are PRIME's hidden fully connected layer (threshold 0.5)."""

    threshold: float = 0.5
    decay: float = 0.8
    leak_slope: float = 0.1
    surrogate_width: float = 0.5


class RectangularSpike(torch.autograd.Function):
    """Heaviside spike with a rectangular surrogate gradient (PRIME's ``STEFunction``).

    Forward: ``x > 0``. Backward: ``grad / (2 w)`` where ``|x| < w``, else 0.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, width: float) -> torch.Tensor:
        ctx.save_for_backward(x.abs() < width)
        ctx.width = width
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (window,) = ctx.saved_tensors
        return grad * window / (2 * ctx.width), None


def lif_step(
    current: torch.Tensor, mem: torch.Tensor, params: LIFParams
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step: returns (spikes, membrane). ``mem`` is the previous step's membrane."""
    mem = torch.where(mem > params.threshold, torch.zeros((), dtype=mem.dtype), mem)
    mem = F.leaky_relu(mem * (1.0 - params.decay) + current, params.leak_slope)
    if torch.is_grad_enabled() and mem.requires_grad:
        spikes = RectangularSpike.apply(mem - params.threshold, params.surrogate_width)
    else:  # inference: no surrogate window to save
        spikes = (mem > params.threshold).to(mem.dtype)
    return spikes, mem


def lif_scan(currents: torch.Tensor, params: LIFParams) -> torch.Tensor:
    """LIF over all timesteps: currents [T, B, ...] -> spikes [T, B, ...] (float, 0 or 1).

    The fused kernel of :class:`LIFScan`: the same values as looping :func:`lif_step`, and the
    same gradients, with a fraction of the memory and time.
    """
    if torch.is_grad_enabled() and currents.requires_grad:
        return LIFScan.apply(currents, params)
    return lif_scan_forward(currents, params)


def lif_scan_forward(
    currents: torch.Tensor, params: LIFParams, state: torch.Tensor | None = None
) -> torch.Tensor:
    """The fused scan's forward: spikes [T, B, ...]; fills ``state`` (uint8, currents' shape)
    with the bits backward needs (:data:`FIRED`, :data:`IN_WINDOW`, :data:`POSITIVE`) if given.

    Runs the native kernel (:mod:`prime.native`) where it is built, else PyTorch ops; both
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
            T,
            n,
            1.0 - params.decay,
            params.leak_slope,
            params.threshold,
            params.surrogate_width,
        )
        return spikes
    mem = torch.zeros_like(currents[0])
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
    return spikes


def lif_scan_backward(
    grad_spikes: torch.Tensor, state: torch.Tensor, params: LIFParams
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
    def forward(ctx, currents: torch.Tensor, params: LIFParams) -> torch.Tensor:
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
    currents: torch.Tensor, params: LIFParams, kernel: int, channels_last: bool = True
) -> torch.Tensor | None:
    """LIF over T fused with ``kernel`` x ``kernel`` average pooling (stride ``kernel``) of its
    spikes: currents [T, B, C, H, W] (channels-last frames) -> pooled spikes
    [T, B, C, H/k, W/k], channels-last frames too, or contiguous with ``channels_last=False``
    (what a flatten before a linear layer wants).

    The same values and gradients as :func:`lif_scan` then ``F.avg_pool2d``, without ever
    storing the spikes (backward keeps the state bytes only). Returns None where it cannot
    run: native kernels not built, frames not channels-last, or H, W not divisible by k.
    """
    if kernels() is None or not channels_last_frames(currents):
        return None
    *_, C, H, W = currents.shape
    if H % kernel or W % kernel or kernel * W * C > POOL_ROW_LIMIT:
        return None
    if torch.is_grad_enabled() and currents.requires_grad:
        return LIFPoolScan.apply(currents, params, kernel, channels_last)
    return lif_pool_scan_forward(currents, params, kernel, channels_last)


def _pooled_frames(T: int, B: int, C: int, H: int, W: int, channels_last: bool) -> torch.Tensor:
    """An empty [T, B, C, H, W]: channels-last frames, or contiguous."""
    if not channels_last:
        return torch.empty(T, B, C, H, W)
    return torch.empty(T * B, C, H, W, memory_format=torch.channels_last).unflatten(0, (T, B))


def _is_pooled_layout(t: torch.Tensor, channels_last: bool) -> bool:
    return channels_last_frames(t) if channels_last else t.is_contiguous()


def lif_pool_scan_forward(
    currents: torch.Tensor,
    params: LIFParams,
    kernel: int,
    channels_last: bool = True,
    state: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`lif_pool_scan`'s forward (native kernel; checked input): pooled spikes, and
    ``state`` filled as :func:`lif_scan_forward` fills it, if given."""
    T, B, C, H, W = currents.shape
    pooled = _pooled_frames(T, B, C, H // kernel, W // kernel, channels_last)
    status = kernels().lif_pool_scan_forward(
        currents.data_ptr(),
        pooled.data_ptr(),
        None if state is None else state.data_ptr(),
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
        ctx, currents: torch.Tensor, params: LIFParams, kernel: int, channels_last: bool
    ) -> torch.Tensor:
        state = torch.empty_like(currents, dtype=torch.uint8)
        pooled = lif_pool_scan_forward(currents, params, kernel, channels_last, state)
        ctx.save_for_backward(state)
        ctx.params, ctx.kernel, ctx.channels_last = params, kernel, channels_last
        return pooled

    @staticmethod
    def backward(ctx, grad_pooled: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (state,) = ctx.saved_tensors
        p: LIFParams = ctx.params
        if not _is_pooled_layout(grad_pooled, ctx.channels_last):
            grad_pooled = _pooled_frames(*grad_pooled.shape, ctx.channels_last).copy_(grad_pooled)
        T, B, C, H, W = state.shape
        grad = torch.empty(T * B, C, H, W, memory_format=torch.channels_last).unflatten(0, (T, B))
        status = kernels().lif_pool_scan_backward(
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


def integrator_step(current: torch.Tensor, mem: torch.Tensor, leak_slope: float) -> torch.Tensor:
    """Non-spiking output neuron: U <- LeakyReLU(U + I). Returns the new membrane."""
    return F.leaky_relu(mem + current, leak_slope)


def integrator_scan(currents: torch.Tensor, leak_slope: float) -> torch.Tensor:
    """Output integrator over all timesteps: [T, B, ...] -> membranes [T, B, ...]."""
    mem = torch.zeros_like(currents[0])
    mems = []
    for current in currents:
        mem = integrator_step(current, mem, leak_slope)
        mems.append(mem)
    return torch.stack(mems)


class NeuronLayer(nn.Module):
    """Base of stateful neuron layers. State is explicit: ``step`` takes and returns it."""

    def initial_state(self, current: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(current)

    def step(self, current: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, new state) for one timestep."""
        raise NotImplementedError

    def scan(self, currents: torch.Tensor) -> torch.Tensor:
        """Outputs [T, B, ...] for currents [T, B, ...]."""
        raise NotImplementedError


class LIF(NeuronLayer):
    """Leaky integrate-and-fire layer; outputs binary spikes."""

    def __init__(self, params: LIFParams = LIFParams()) -> None:
        super().__init__()
        self.params = params

    def step(self, current, state):
        return lif_step(current, state, self.params)

    def scan(self, currents):
        return lif_scan(currents, self.params)

    def extra_repr(self) -> str:
        return repr(self.params)


class Integrator(NeuronLayer):
    """Non-spiking output layer; outputs its membrane potential every step."""

    def __init__(self, leak_slope: float = 0.1) -> None:
        super().__init__()
        self.leak_slope = leak_slope

    def step(self, current, state):
        mem = integrator_step(current, state, self.leak_slope)
        return mem, mem

    def scan(self, currents):
        return integrator_scan(currents, self.leak_slope)

    def extra_repr(self) -> str:
        return f"leak_slope={self.leak_slope}"
