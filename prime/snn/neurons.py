"""Spiking neurons as pure kernels (``lif_step(current, mem, params)``) with thin modules.

The LIF neuron follows snnTorch's ``snn.Leaky`` with ``reset_mechanism="zero"`` (reset
detached from the graph, as snnTorch does), plus PRIME's LeakyReLU on the membrane. One step:

    U <- 0 where the neuron spiked last step (U > threshold)
    U <- (1 - decay) U + I            # PRIME: decay 0.8, so U is multiplied by 0.2
    U <- LeakyReLU(U, leak_slope)     # PRIME: 0.1
    S <- U > threshold                # surrogate: 1 / (2 w) where |U - threshold| < w

Shapes: a step takes ``current`` [B, ...] and returns spikes [B, ...]; a scan takes
currents [T, B, ...] and returns spikes [T, B, ...], from rest or from a state [B, ...] (a
chunk of a sequence). All give identical results.

Two neuron kinds (:data:`NEURON_KINDS`, a model's ``neuron`` setting): ``"prime"`` as above,
and ``"lif"``, the standard LIF without the LeakyReLU (leak slope 1, the identity), whose
NIR export is exact (``nir.LIF``; the output integrator becomes ``nir.I``).

In the digital unit's fixed point (a :class:`~prime.hardware.periphery.FixedPoint` word per
layer, ``word=``), every step rounds and saturates as the hardware would: the current enters
the membrane's word, the decayed membrane and the LeakyReLU's product are rounded to it,
and the constants (``1 - decay``, the slope, the threshold) lie on its grid
(:func:`fixed_lif_step`, :func:`fixed_integrator_step`; straight-through gradients). Scans
then run step by step, so single-step and multi-step stay identical.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.periphery import FixedPoint
from prime.kernels.lif import lif_scan, lif_scan_from, reset_fired


@dataclass(frozen=True)
class LIFParams:
    """LIF constants. Defaults are PRIME's hidden fully connected layer (threshold 0.5)."""

    threshold: float = 0.5
    decay: float = 0.8
    leak_slope: float = 0.1
    surrogate_width: float = 0.5


#: neuron kind -> slope of the LeakyReLU on the membrane (1: none, the standard LIF)
NEURON_KINDS = {"prime": 0.1, "lif": 1.0}


def neuron_leak_slope(kind: str) -> float:
    """The membrane's LeakyReLU slope of neuron ``kind`` (``PrimeError`` if unknown)."""
    if kind not in NEURON_KINDS:
        raise PrimeError(f"unknown neuron kind {kind!r}; known: {', '.join(NEURON_KINDS)}")
    return NEURON_KINDS[kind]


def lif_params(params: LIFParams, kind: str) -> LIFParams:
    """``params`` for neuron ``kind``: PRIME's LeakyReLU, or none (the standard LIF)."""
    return dataclasses.replace(params, leak_slope=neuron_leak_slope(kind))


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
    mem = F.leaky_relu(reset_fired(mem, params) * (1.0 - params.decay) + current, params.leak_slope)
    return fire(mem, params), mem


def fire(mem: torch.Tensor, params: LIFParams) -> torch.Tensor:
    """Spikes of membranes ``mem`` (above threshold), with the surrogate gradient in training."""
    if torch.is_grad_enabled() and mem.requires_grad:
        return RectangularSpike.apply(mem - params.threshold, params.surrogate_width)
    return (mem > params.threshold).to(mem.dtype)  # inference: no surrogate window to save


def fixed_lif_params(params: LIFParams, word: FixedPoint) -> LIFParams:
    """``params`` with ``1 - decay``, the leak slope and the threshold on ``word``'s grid."""
    return dataclasses.replace(
        params,
        threshold=word.constant(params.threshold),
        decay=1.0 - word.constant(1.0 - params.decay),
        leak_slope=word.constant(params.leak_slope),
    )


def fixed_lif_step(
    current: torch.Tensor, mem: torch.Tensor, params: LIFParams, word: FixedPoint
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`lif_step` in fixed-point ``word`` (``params`` from :func:`fixed_lif_params`):
    the current enters the word, the decayed membrane plus it and the LeakyReLU are rounded
    and saturated to it."""
    mem = word(reset_fired(mem, params) * (1.0 - params.decay) + word(current))
    mem = word(F.leaky_relu(mem, params.leak_slope))
    return fire(mem, params), mem


def integrator_step(current: torch.Tensor, mem: torch.Tensor, leak_slope: float) -> torch.Tensor:
    """Non-spiking output neuron: U <- LeakyReLU(U + I). Returns the new membrane."""
    return F.leaky_relu(mem + current, leak_slope)


def fixed_integrator_step(
    current: torch.Tensor, mem: torch.Tensor, leak_slope: float, word: FixedPoint
) -> torch.Tensor:
    """:func:`integrator_step` in fixed-point ``word`` (``leak_slope`` on its grid): the sum
    saturated, the LeakyReLU's product rounded."""
    return word(F.leaky_relu(word(mem + word(current)), leak_slope))


def integrator_scan(
    currents: torch.Tensor, leak_slope: float, mem: torch.Tensor | None = None
) -> torch.Tensor:
    """Output integrator over all timesteps: [T, B, ...] -> membranes [T, B, ...], from rest
    or from membranes ``mem`` [B, ...]."""
    mem = torch.zeros_like(currents[0]) if mem is None else mem
    mems = []
    for current in currents:
        mem = integrator_step(current, mem, leak_slope)
        mems.append(mem)
    return torch.stack(mems)


def scan_steps(
    step: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    currents: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``step`` over currents [T, B, ...] from ``state``: (outputs [T, B, ...], last state)."""
    outputs = []
    for current in currents:
        out, state = step(current, state)
        outputs.append(out)
    return torch.stack(outputs), state


class NeuronLayer(nn.Module):
    """Base of stateful neuron layers, with explicit state (as SpikingJelly's base module).

    Called as a module in both execution modes: ``layer(currents)`` scans currents
    [T, B, ...] over all steps and returns the outputs [T, B, ...] (multi-step);
    ``layer(current, state)`` runs one step and returns (output, new state) (single-step);
    ``layer(currents, state)`` with currents [T, B, ...] and state [B, ...] scans on from
    that state and returns (outputs [T, B, ...], state after the last step) (a chunk).
    """

    def forward(
        self, x: torch.Tensor, state: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if state is None:
            return self.scan(x)
        return self.scan_from(x, state) if x.dim() == state.dim() + 1 else self.step(x, state)

    def initial_state(self, current: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(current)

    def step(self, current: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output, new state) for one timestep."""
        raise NotImplementedError

    def scan(self, currents: torch.Tensor) -> torch.Tensor:
        """Outputs [T, B, ...] for currents [T, B, ...]."""
        raise NotImplementedError

    def scan_from(
        self, currents: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(outputs [T, B, ...], state after the last step) for currents [T, B, ...] from
        ``state`` [B, ...]: the steps one by one (subclasses fuse them)."""
        return scan_steps(self.step, currents, state)


class LIF(NeuronLayer):
    """Leaky integrate-and-fire layer; outputs binary spikes. With a ``word``, its membranes
    are fixed point (:func:`fixed_lif_step`); None: floating point, the fused scans."""

    def __init__(self, params: LIFParams = LIFParams(), word: FixedPoint | None = None) -> None:
        super().__init__()
        self.params = params
        self.word = word

    def step(self, current: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.word is None:
            return lif_step(current, state, self.params)
        return fixed_lif_step(current, state, fixed_lif_params(self.params, self.word), self.word)

    def scan(self, currents: torch.Tensor) -> torch.Tensor:
        if self.word is not None:
            return self.scan_from(currents, self.initial_state(currents[0]))[0]
        return lif_scan(currents, self.params)

    def scan_from(
        self, currents: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fixed = self.word is not None
        if fixed or (torch.is_grad_enabled() and (currents.requires_grad or state.requires_grad)):
            return super().scan_from(currents, state)  # the fused kernel: float, no gradients
        return lif_scan_from(currents, state, self.params)

    def extra_repr(self) -> str:
        return repr(self.params) + ("" if self.word is None else f", word={self.word}")


class SubtractiveLIF(NeuronLayer):
    """LIF that resets by subtracting the threshold (snnTorch's default
    ``reset_mechanism="subtract"``), the rest as :class:`LIF`. One step:

        R <- U > threshold                # last step's spike, no gradient (as snnTorch)
        U <- LeakyReLU((1 - decay) U + I - R threshold, leak_slope)
        S <- U > threshold                # surrogate: 1 / (2 w) where |U - threshold| < w

    Runs step by step in both modes (no fused kernel)."""

    def __init__(self, params: LIFParams = LIFParams()) -> None:
        super().__init__()
        self.params = params

    def step(self, current: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        fired = (state.detach() > p.threshold).to(state.dtype)
        mem = F.leaky_relu(state * (1.0 - p.decay) + current - fired * p.threshold, p.leak_slope)
        return fire(mem, p), mem

    def scan(self, currents: torch.Tensor) -> torch.Tensor:
        return scan_steps(self.step, currents, torch.zeros_like(currents[0]))[0]

    def extra_repr(self) -> str:
        return repr(self.params)


class Integrator(NeuronLayer):
    """Non-spiking output layer; outputs its membrane potential every step. With a ``word``,
    its membranes are fixed point (:func:`fixed_integrator_step`)."""

    def __init__(self, leak_slope: float = 0.1, word: FixedPoint | None = None) -> None:
        super().__init__()
        self.leak_slope = leak_slope
        self.word = word

    def step(self, current: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.word is not None:
            slope = self.word.constant(self.leak_slope)
            mem = fixed_integrator_step(current, state, slope, self.word)
        else:
            mem = integrator_step(current, state, self.leak_slope)
        return mem, mem

    def scan(self, currents: torch.Tensor) -> torch.Tensor:
        if self.word is not None:
            return self.scan_from(currents, self.initial_state(currents[0]))[0]
        return integrator_scan(currents, self.leak_slope)

    def scan_from(
        self, currents: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.word is not None:
            return scan_steps(self.step, currents, state)
        mems = integrator_scan(currents, self.leak_slope, state)
        return mems, mems[-1]

    def extra_repr(self) -> str:
        word = "" if self.word is None else f", word={self.word}"
        return f"leak_slope={self.leak_slope}{word}"


class ReLUUnit(NeuronLayer):
    """Non-spiking ReLU unit with no memory: output ``max(I, 0)`` every step (the state is
    carried unchanged). With one timestep, a network of them is an ANN; in a recurrent
    layer (:mod:`prime.snn.recurrent`) it is the paper's ReLU RNN cell."""

    def step(self, current: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.relu(current), state

    def scan(self, currents: torch.Tensor) -> torch.Tensor:
        return F.relu(currents)
