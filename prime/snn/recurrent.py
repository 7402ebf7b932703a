"""Recurrent layers on memristor crossbars: ``h_t = neuron(I_t + W_hh · feedback(h_{t-1}))``.

A recurrent layer has two crossbars, each with its own scores and mask: the input crossbar
``W_ih`` is the supermask linear layer before it (its currents ``I_t`` come in, computed for
all steps at once) and the hidden crossbar ``W_hh`` [H, H] is the layer's own
(:attr:`RecurrentCell.hidden`). The neuron is a :class:`~prime.snn.neurons.ReLUUnit` (the
pruning paper's ReLU RNN) or a :class:`~prime.snn.neurons.LIF` (a recurrent SNN).

* :class:`Recurrent` recurs over the network's timesteps: a stateful layer whose state the
  network carries, like a neuron layer (multi-step: ``layer(currents, read=...)`` scans
  [T, B, H]; single-step: ``layer(current, state, read=...)``).
* :class:`FrameRecurrent` recurs over an axis of each frame (the pruning paper's CRNN runs
  its RNN over the columns of a convolution's output within one timestep): x [N, L, H] ->
  [N, L, H], stateless to the network.

Both run the same step, so a scan equals its loop of steps bit for bit.
"""

from __future__ import annotations

import torch
from torch import nn

from prime.hardware.readpath import CrossbarRead
from prime.snn.layers import MemristorLayer
from prime.snn.neurons import NeuronLayer, scan_steps


class RecurrentCell(nn.Module):
    """One recurrent step. State [B, 2, H]: the neuron's state, then the last output.

    Args:
        hidden: the hidden crossbar, a supermask linear layer H -> H (or, for trained
            weights, a plain ``nn.Linear``).
        neuron: the neuron layer (its ``step``).
        feedback: applied to the output before it is fed back (e.g. activation
            quantisation); None: the output itself.
    """

    def __init__(
        self, hidden: nn.Module, neuron: NeuronLayer, feedback: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.hidden, self.neuron = hidden, neuron
        self.feedback = nn.Identity() if feedback is None else feedback

    @property
    def crossbar(self) -> MemristorLayer | None:
        return self.hidden if isinstance(self.hidden, MemristorLayer) else None

    def read(self) -> CrossbarRead | None:
        """One read of the hidden crossbar (None for plain weights)."""
        crossbar = self.crossbar
        return None if crossbar is None else crossbar.read()

    def initial_state(self, current: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(current).unsqueeze(1).repeat_interleave(2, dim=1)

    def step(
        self, current: torch.Tensor, state: torch.Tensor, read: CrossbarRead | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(output [B, H], new state [B, 2, H]) for input currents [B, H]."""
        neuron_state, previous = state.unbind(1)
        fed_back = self.feedback(previous)
        recurrent = self.hidden(fed_back) if read is None else self.hidden(fed_back, read)
        out, neuron_state = self.neuron.step(current + recurrent, neuron_state)
        return out, torch.stack([neuron_state, out], dim=1)

    def scan(self, currents: torch.Tensor, read: CrossbarRead | None) -> torch.Tensor:
        """Outputs [L, B, H] for currents [L, B, H], from a zero state."""
        state = self.initial_state(currents[0])
        outputs = []
        for current in currents:
            out, state = self.step(current, state, read)
            outputs.append(out)
        return torch.stack(outputs)


class Recurrent(NeuronLayer):
    """A recurrent layer over the network's timesteps (see the module docstring).

    ``read``: the hidden crossbar's read for the sequence (the network passes it; read now
    if omitted)."""

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(
        self,
        x: torch.Tensor,
        state: torch.Tensor | None = None,
        read: CrossbarRead | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        read = self.cell.read() if read is None else read
        if state is None:
            return self.cell.scan(x, read)
        if x.dim() == state.dim():  # currents [T, B, H], state [B, 2, H]: a chunk of steps
            return scan_steps(lambda current, s: self.cell.step(current, s, read), x, state)
        return self.cell.step(x, state, read)

    def initial_state(self, current: torch.Tensor) -> torch.Tensor:
        return self.cell.initial_state(current)


class FrameRecurrent(nn.Module):
    """A recurrent layer over axis 1 of each frame: currents [N, L, H] -> outputs [N, L, H]."""

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor, read: CrossbarRead | None = None) -> torch.Tensor:
        read = self.cell.read() if read is None else read
        return self.cell.scan(x.transpose(0, 1), read).transpose(0, 1)


def crossbar_of(layer: nn.Module) -> MemristorLayer | None:
    """The supermask crossbar a network layer reads through: the layer itself, a recurrent
    layer's hidden crossbar, or None."""
    if isinstance(layer, MemristorLayer):
        return layer
    if isinstance(layer, Recurrent | FrameRecurrent):
        return layer.cell.crossbar
    return None
