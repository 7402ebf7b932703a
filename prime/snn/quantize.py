"""Activation quantisation: the pruning paper's ``quantization()`` of the values fed to the
next crossbar, per tensor, with a straight-through gradient (the paper overwrites
``x.data``).

This is the stand-in for the read path's DAC/ADC periphery until that lands: a module in the
model's layer list (:meth:`prime.snn.models.LayerFactory.quantize`), so the model config's
``activation_bits`` switches it on or off without touching the read path.

* ``uniform`` (the paper's hardware simulation, ``*_hardware_TO.py``): 2^b levels spaced
  ``(max - min) / (2^b - 1)`` apart; ``nonnegative`` (after a ReLU) levels are multiples
  of that step from 0, otherwise they start at ``floor(min / step) · step``.
* ``quantile`` (the paper's spoken-digit software model, ``Spoken_digit_software_TO.py``):
  non-uniform levels at quantiles of the tensor's values (after a ReLU: the zeros, and
  2^b - 1 quantiles of the non-zeros); each value goes to the nearest level.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.snn.masks import straight_through

QUANTIZERS = ("uniform", "quantile")


def check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise PrimeError(f"activation bits must be a whole number from 1 to 8, got {bits!r}")
    return bits


def uniform_levels(x: torch.Tensor, bits: int, nonnegative: bool) -> torch.Tensor:
    """x snapped to the uniform grid of the paper's hardware ``quantization``; same shape."""
    low, high = x.min(), x.max()
    step = (high - low) / (2**bits - 1)
    if step == 0:
        return x
    if nonnegative:
        return torch.round(x / step).clamp(0, 255) * step
    return (torch.round((x - low) / step) + torch.floor(low / step)) * step


def quantile_levels(x: torch.Tensor, bits: int, nonnegative: bool) -> torch.Tensor:
    """x snapped to the nearest of the paper's quantile levels; same shape."""
    values = x.reshape(-1).sort().values
    n = len(values)
    if nonnegative:
        zeros = int((values == 0).sum())
        p = np.arange(0.5 / (2**bits - 1), 1, 1 / (2**bits - 1))
        index = [0, *(np.round(p * (n - zeros)) + zeros).astype(np.int64)]
    else:
        p = np.arange(0.5 / 2**bits, 1, 1 / 2**bits)
        index = list(np.round(p * n).astype(np.int64))
    levels = values[torch.as_tensor(index).clamp(max=n - 1)]
    middles = (levels[1:] + levels[:-1]) / 2
    return levels[torch.bucketize(x, middles)]


class ActivationQuantizer(nn.Module):
    """Quantise activations to ``bits`` bits per tensor (see the module docstring).

    Forward: the quantised values; backward: the gradient passes unchanged."""

    def __init__(self, bits: int, mode: str = "uniform", nonnegative: bool = False) -> None:
        super().__init__()
        if mode not in QUANTIZERS:
            known = ", ".join(QUANTIZERS)
            raise PrimeError(f"unknown activation quantiser {mode!r}; known: {known}")
        self.bits, self.mode, self.nonnegative = check_bits(bits), mode, nonnegative

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = uniform_levels if self.mode == "uniform" else quantile_levels
        with torch.no_grad():
            q = levels(x.detach(), self.bits, self.nonnegative)
        return straight_through(x, q)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, mode={self.mode!r}, nonnegative={self.nonnegative}"
