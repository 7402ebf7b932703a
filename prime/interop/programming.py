"""Programming trained weights onto a chip's conductance pairs.

A weight ``w`` becomes a differential pair ``G+ = max(w, 0) / scale``, ``G- = max(-w, 0) /
scale``; the layer's scale maps the largest weight kept unclipped (the ``weight_quantile``
of |w|, default the largest) to the device's programmable maximum
(:meth:`~prime.hardware.devices.ConductanceModel.g_max_us`), so every cell lies in
``[0, g_max]``; weights beyond are clipped to ±``g_max · scale`` and reported.

This is *ideal* programming: every cell gets exactly its target. The programmed-weights
model of the pruning reproduction (write noise, write-verify) replaces :func:`program_weights`
when it lands; everything else reads its result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prime.core.errors import PrimeError
from prime.hardware.devices import ConductanceModel


@dataclass(frozen=True)
class ProgrammedLayer:
    """The cells of one programmed layer and what the programming lost.

    Attributes:
        g_us: target conductances [2, *weight_shape] (G+, G-), µS, in [0, ``g_max_us``].
        scale: weight per µS (1/µS).
        g_max_us: the device's programmable maximum (µS).
        clipped: weights whose magnitude exceeded ``g_max_us * scale``.
        weights: all weights of the layer.
        max_error: largest |programmed weight - weight|.
    """

    g_us: torch.Tensor
    scale: float
    g_max_us: float
    clipped: int
    weights: int
    max_error: float

    def report(self) -> str:
        return (
            f"scale {self.scale:.4g}/µS, cells in [0, {self.g_max_us:.4g}] µS, clipped "
            f"{self.clipped} of {self.weights} weights ({100 * self.clipped / self.weights:.3f} "
            f"%), max |error| {self.max_error:.3g}"
        )


def program_weights(
    weight: torch.Tensor, device_model: ConductanceModel, weight_quantile: float = 1.0
) -> ProgrammedLayer:
    """Ideal programming of ``weight`` (any shape, output first) onto pairs of the device."""
    if not 0 < weight_quantile <= 1:
        raise PrimeError(f"weight quantile must be in (0, 1], got {weight_quantile}")
    weight = weight.detach().float()
    if not torch.isfinite(weight).all():
        raise PrimeError("weights to program contain NaN or infinite values")
    g_max = device_model.g_max_us()
    magnitude = weight.abs().flatten()
    w_max = float(
        magnitude.max() if weight_quantile == 1 else torch.quantile(magnitude, weight_quantile)
    )
    scale = w_max / g_max if w_max > 0 and math.isfinite(w_max) else 1.0 / g_max
    g = (weight / scale).clamp(-g_max, g_max)
    g_us = torch.stack([g.clamp(min=0), (-g).clamp(min=0)])
    programmed = scale * (g_us[0] - g_us[1])
    return ProgrammedLayer(
        g_us=g_us,
        scale=scale,
        g_max_us=g_max,
        clipped=int((magnitude > w_max).sum()),
        weights=weight.numel(),
        max_error=float((programmed - weight).abs().max()) if weight.numel() else 0.0,
    )
