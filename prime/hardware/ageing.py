"""Ageing: conductance relaxation of the cells over time after forming.

A formed RRAM cell relaxes after forming: its conductance moves, cell by cell, by an amount
that grows with the logarithm of the time since forming. :class:`Relaxation` models this as

    g(t) = g(0) · (1 − (ν + σ ε) · log10(1 + t / t0)),    clipped at 0 µS,

with ν the mean relative drift per decade of time, σ its device-to-device spread, and one
ε ~ N(0, 1) per cell drawn from the ageing seed (the same ε at every t, so each cell follows
one trajectory). Unformed cells (0 µS) stay at 0. At t = 0, or with ν = σ = 0, the cells are
returned unchanged, bit for bit. A mean drift that takes cells to zero or below (ν ·
log10(1 + t / t0) >= 1) is refused: the model has left its range.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from prime.core.device import drawn_like
from prime.core.errors import PrimeError
from prime.core.registry import Registry

AGEING: Registry[Relaxation] = Registry("ageing model")


@dataclass(frozen=True)
class Relaxation:
    """Log-time relaxation (module docstring). ``drift_per_decade`` ν and
    ``spread_per_decade`` σ are relative (1 = 100 % of g(0)) per decade of t / t0."""

    drift_per_decade: float = 0.0
    spread_per_decade: float = 0.0
    t0_s: float = 1.0

    def __post_init__(self) -> None:
        if not math.isfinite(self.drift_per_decade):
            raise PrimeError(f"drift_per_decade must be finite, got {self.drift_per_decade!r}")
        if not (math.isfinite(self.spread_per_decade) and self.spread_per_decade >= 0):
            raise PrimeError(
                f"spread_per_decade is a standard deviation: finite and >= 0, got "
                f"{self.spread_per_decade!r}"
            )
        if not (math.isfinite(self.t0_s) and self.t0_s > 0):
            raise PrimeError(f"t0_s must be a finite time > 0 s, got {self.t0_s!r}")

    @property
    def active(self) -> bool:
        return self.drift_per_decade != 0 or self.spread_per_decade != 0

    def decades(self, t_s: float) -> float:
        """log10(1 + t / t0): the model's time axis."""
        check_age(t_s)
        return math.log10(1 + t_s / self.t0_s)

    def apply(self, cells_us: Sequence[torch.Tensor], t_s: float, seed: int) -> list[torch.Tensor]:
        """The cells (one tensor per layer, µS) aged ``t_s`` seconds, ε drawn from ``seed``."""
        decades = self.decades(t_s)
        if decades == 0 or not self.active:
            return list(cells_us)
        if self.drift_per_decade * decades >= 1:
            raise PrimeError(
                f"drift {self.drift_per_decade:g} per decade reaches zero conductance at "
                f"t = {t_s:g} s (ν · log10(1 + t / t0) = {self.drift_per_decade * decades:.3g} "
                ">= 1, so cells would go negative); lower the drift or the age"
            )
        generator = torch.Generator().manual_seed(int(seed))
        aged = []
        for cells in cells_us:
            rate = self.drift_per_decade + self.spread_per_decade * drawn_like(cells, generator)
            aged.append((cells * (1 - rate * decades)).clamp(min=0))
        return aged


AGEING.register("none")(Relaxation())
#: Wan et al., "A compute-in-memory chip based on resistive random-access memory", Nature
#: 608, 504 (2022), as fitted by aihwkit's ReRamWan2022NoiseModel (conductance-dependent σ
#: polynomials at 1 s, 1 day and 2 days, g_max 40 µS). At 12.21 µS, the measured array's
#: median formed cell, σ grows from 2.30 µS (1 s) to 3.91 µS (1 day) and 3.87 µS (2 days):
#: relaxation adds 25.9 % and 25.5 % of g, 0.056 and 0.052 per decade of t / 1 s; their
#: mean 0.054. The fit has no mean shift (ν = 0).
AGEING.register("wan2022")(Relaxation(drift_per_decade=0.0, spread_per_decade=0.054, t0_s=1.0))


def ageing_model(spec: str) -> Relaxation:
    """A preset name (``AGEING``), or a JSON file of :class:`Relaxation` fields (as
    ``prime trace fit --save-ageing`` writes)."""
    if not spec.endswith(".json"):
        return AGEING.get(spec)
    path = Path(spec)
    try:
        fields = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrimeError(f"cannot read the ageing model {path}: {exc}") from None
    known = {f.name for f in dataclasses.fields(Relaxation)}
    if not isinstance(fields, dict) or set(fields) - known:
        raise PrimeError(f"{path} must hold an object with fields among {', '.join(sorted(known))}")
    return Relaxation(**fields)


_UNITS_S = {"s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def check_age(t_s: float) -> float:
    if not (isinstance(t_s, int | float) and math.isfinite(t_s) and t_s >= 0):
        raise PrimeError(f"an age is a time since forming >= 0 s, got {t_s!r}")
    return float(t_s)


def parse_ages(text: str) -> list[float]:
    """``"0,1s,1h,1d,1w"`` -> seconds [0, 1, 3600, 86400, 604800]; units s, m/min, h, d, w
    (none: seconds)."""
    ages = []
    for part in (p.strip() for p in text.split(",")):
        match = re.fullmatch(r"([-+0-9.eE]+)\s*(s|m|min|h|d|w)?", part)
        try:
            value = float(match.group(1)) if match else math.nan
        except ValueError:
            value = math.nan
        if not match or not math.isfinite(value) or value < 0:
            raise PrimeError(
                f"--age takes times >= 0 with a unit s, m, h, d or w, separated by commas "
                f"(e.g. 1s,1h,1d,1w), got {part!r}"
            )
        ages.append(value * _UNITS_S[match.group(2) or "s"])
    return ages


def format_age(t_s: float) -> str:
    """The largest unit that divides ``t_s`` evenly: 3600 -> "1h", 90 -> "90s"."""
    for unit in ("w", "d", "h", "min"):
        count = t_s / _UNITS_S[unit]
        if count >= 1 and count == int(count):
            return f"{int(count)}{unit}"
    return f"{t_s:g}s"
