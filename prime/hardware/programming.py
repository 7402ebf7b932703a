"""Programming trained weights into RRAM cells: one mapping of weights to differential pairs,
for the programmed-weights baseline that pruning a random chip beats
(:mod:`prime.snn.programmed`) and for networks imported from NIR
(:mod:`prime.interop.nir_import`).

A weight w of a layer maps onto a differential pair with a per-layer scale s (1/µS, weight per
µS), chosen so the ``weight_quantile`` of |w| (default 1: the largest) spans the programmable
window [g_min, g_max]: G+ = g_min + max(w, 0) / s, G- = g_min + max(-w, 0) / s, so
(G+ - G-) s = w; larger weights are clipped to the window and counted. Every cell is then
written by iterative write–verify (:class:`WriteVerify`): a pulse lands the cell at its target
plus Gaussian write noise σ; a verify read accepts it within the tolerance, else another
pulse, up to a limit; after the last verify the cell relaxes (a second Gaussian spread, which
verification cannot see). The ``ideal`` preset has no spread: every cell lands exactly on its
target. Pulses and verify reads are counted per cell, and :class:`PulseCosts` turns them (and
the set/reset switches of pruning, :class:`prime.snn.switching.SwitchCounter`) into energy
and time.

The scheme is the incremental write–verify of NeuRRAM (Wan et al., "A compute-in-memory chip
based on resistive random-access memory", Nature 608, 2022, Extended Data Fig. 3: iterative
pulses until the cell is in the acceptance range; relaxation spreads the distribution after
programming). The numbers of the presets are prime's assumptions, stated in each docstring:
the pruning paper's code (Li et al., arXiv 2311.07164) has no programmed-weights simulation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from prime.core.errors import PrimeError
from prime.core.registry import Registry
from prime.hardware.devices import ConductanceModel


@dataclass(frozen=True)
class WriteVerify:
    """Iterative write–verify of RRAM cells. Conductances in µS.

    Attributes:
        g_min_us, g_max_us: the programmable window (the reset state and the highest set
            state used).
        sigma_us: spread of the conductance one write pulse lands at around its target.
        tolerance_us: verify acceptance window, |G - target| <= tolerance.
        max_pulses: write pulses at most per cell (1: write once, no verify loop).
        relaxation_us: spread added after the last verify (conductance relaxation).
        description: where the numbers come from.
    """

    g_min_us: float = 1.0
    g_max_us: float = 20.0
    sigma_us: float = 2.0
    tolerance_us: float = 0.5
    max_pulses: int = 10
    relaxation_us: float = 1.0
    description: str = ""

    def __post_init__(self) -> None:
        for name in ("g_min_us", "sigma_us", "tolerance_us", "relaxation_us"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise PrimeError(f"{name} must be a finite number >= 0, got {value!r}")
        if not self.g_max_us > self.g_min_us:
            raise PrimeError(
                f"the programmable window needs g_max_us > g_min_us, got {self.g_min_us} to "
                f"{self.g_max_us} µS"
            )
        if isinstance(self.max_pulses, bool) or not (
            isinstance(self.max_pulses, int) and self.max_pulses >= 1
        ):
            raise PrimeError(f"max_pulses must be a whole number >= 1, got {self.max_pulses!r}")

    def write(
        self, target_us: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Program cells to ``target_us`` (any shape, within the window): returns the cells'
        conductances (µS, float32, same shape) and the write pulses each took (int64; one
        verify read follows every pulse)."""
        g_us = target_us.clone()
        pulses = torch.zeros(target_us.shape, dtype=torch.int64)
        pending = torch.ones(target_us.shape, dtype=torch.bool)
        for _ in range(self.max_pulses):
            noise = torch.randn(target_us.shape, generator=generator)
            landed = (target_us + self.sigma_us * noise).clamp(self.g_min_us, self.g_max_us)
            g_us = torch.where(pending, landed, g_us)
            pulses += pending
            pending &= (g_us - target_us).abs() > self.tolerance_us
            if not pending.any():
                break
        relaxed = g_us + self.relaxation_us * torch.randn(target_us.shape, generator=generator)
        return relaxed.clamp(min=0.0), pulses

    def within(self, device_model: ConductanceModel) -> WriteVerify:
        """This writer with the window's top at the device's programmable maximum
        (:meth:`~prime.hardware.devices.ConductanceModel.g_max_us`)."""
        return dataclasses.replace(self, g_max_us=device_model.g_max_us())


WRITE_VERIFY: Registry[WriteVerify] = Registry("write-verify preset")
WRITE_VERIFY.register("write-verify")(
    WriteVerify(
        description="iterative write-verify as NeuRRAM (Wan et al., Nature 2022, Extended Data "
        "Fig. 3); window 1-20 µS (the span of the TaOx cells of rram-lognormal, 7.6-18.8 µS "
        "formed), pulse spread 2 µS, tolerance 0.5 µS, at most 10 pulses, relaxation 1 µS: "
        "prime's assumptions, not measured values"
    )
)
WRITE_VERIFY.register("ideal")(
    WriteVerify(
        g_min_us=0.0,
        sigma_us=0.0,
        relaxation_us=0.0,
        max_pulses=1,
        description="ideal programming: every cell exactly on its target, window 0-20 µS, "
        "one pulse per cell",
    )
)
WRITE_VERIFY.register("write-once")(
    WriteVerify(
        max_pulses=1,
        description="one write pulse per cell, no verify loop (same spreads as write-verify)",
    )
)


@dataclass(frozen=True)
class ProgrammedLayer:
    """The cells of one programmed layer and what the programming lost.

    Attributes:
        g_us: the cells' conductances [2, *weight_shape] (G+, G-), µS.
        pulses: write pulses each cell took [2, *weight_shape] (one verify read each).
        scale: weight per µS (1/µS).
        window_us: the programmable window (g_min, g_max), µS.
        clipped: weights whose magnitude exceeded the clip level (:func:`clip_level`).
        max_error: largest |programmed weight - weight| (clipping and write noise).
    """

    g_us: torch.Tensor
    pulses: torch.Tensor
    scale: float
    window_us: tuple[float, float]
    clipped: int
    max_error: float

    def report(self) -> str:
        weights = self.g_us[0].numel()
        return (
            f"scale {self.scale:.4g}/µS, cells in [{self.window_us[0]:.4g}, "
            f"{self.window_us[1]:.4g}] µS, clipped {self.clipped} of {weights} weights "
            f"({100 * self.clipped / max(weights, 1):.3f} %), "
            f"{float(self.pulses.float().mean()) if weights else 0.0:.2f} pulses per cell, "
            f"max |error| {self.max_error:.3g}"
        )


def clip_level(weight: torch.Tensor, weight_quantile: float = 1.0) -> float:
    """The |w| mapped onto the window's span: the ``weight_quantile`` of |w| (1: the
    largest); larger weights are clipped."""
    if not 0 < weight_quantile <= 1:
        raise PrimeError(f"weight quantile must be in (0, 1], got {weight_quantile}")
    magnitude = weight.detach().float().abs().flatten()
    if not torch.isfinite(magnitude).all():
        raise PrimeError("weights to program contain NaN or infinite values")
    if magnitude.numel() == 0:
        return 0.0
    return float(
        magnitude.max() if weight_quantile == 1 else torch.quantile(magnitude, weight_quantile)
    )


def pair_targets(weight: torch.Tensor, scale: float, writer: WriteVerify) -> torch.Tensor:
    """Target conductances [2, *w] (µS) of the differential pairs of ``weight``, clipped to
    the window."""
    w = weight.detach().float()
    pairs = writer.g_min_us + torch.stack([w.clamp(min=0), (-w).clamp(min=0)]) / scale
    return pairs.clamp(max=writer.g_max_us)


def program_weight(
    weight: torch.Tensor,
    writer: WriteVerify,
    generator: torch.Generator,
    weight_quantile: float = 1.0,
) -> ProgrammedLayer:
    """Program one layer's ``weight`` (any shape, output first) onto pairs of cells."""
    level = clip_level(weight, weight_quantile)
    scale = (level if level > 0 else 1.0) / (writer.g_max_us - writer.g_min_us)
    g_us, pulses = writer.write(pair_targets(weight, scale, writer), generator)
    w = weight.detach().float()
    error = (scale * (g_us[0] - g_us[1]) - w).abs()
    return ProgrammedLayer(
        g_us=g_us,
        pulses=pulses,
        scale=scale,
        window_us=(writer.g_min_us, writer.g_max_us),
        clipped=int((w.abs() > level).sum()),
        max_error=float(error.max()) if error.numel() else 0.0,
    )


@dataclass(frozen=True)
class PulseCosts:
    """Energy and time of programming operations on RRAM cells.

    Attributes:
        pulse_pj: one set or reset pulse. Assumption: 2 V across a cell passing 50 µA for a
            100 ns pulse, 2 × 50e-6 × 100e-9 J = 10 pJ (set/reset of 40 nm TaOx cells take
            about 1.5-2.5 V, tens of µA, 10-100 ns).
        verify_pj: one verify read of a cell: 0.2 V, 20 µA, 100 ns = 0.4 pJ (assumption).
        pulse_ns, verify_ns: 100 ns each (assumption); cells are programmed one at a time.
    """

    pulse_pj: float = 10.0
    verify_pj: float = 0.4
    pulse_ns: float = 100.0
    verify_ns: float = 100.0
    description: str = "prime's assumptions: 10 pJ, 100 ns per pulse; 0.4 pJ, 100 ns per verify"

    def cost(self, pulses: int, verifies: int) -> dict[str, float]:
        """Energy (pJ) and serial time (ns) of ``pulses`` pulses and ``verifies`` reads."""
        return {
            "pulses": pulses,
            "verifies": verifies,
            "energy_pj": pulses * self.pulse_pj + verifies * self.verify_pj,
            "time_ns": pulses * self.pulse_ns + verifies * self.verify_ns,
        }


PULSE_COSTS: Registry[PulseCosts] = Registry("programming cost preset")
PULSE_COSTS.register("rram-40nm")(PulseCosts())
