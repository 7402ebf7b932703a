"""Stuck cells: a seeded fraction of a chip's cells stuck unformed or at a high conductance.

A randomly formed array has cells that never switch: stuck at the unformed state (0 µS,
"stuck-off") or stuck at a high conductance ("stuck-on"). :class:`StuckCells` draws, per
cell, one uniform number u from the fault seed: u < ``stuck_off`` sticks the cell at 0 µS,
u >= 1 - ``stuck_on`` sticks it at ``stuck_on_us``. The same seed gives the same stuck cells,
and a larger fraction sticks a superset of a smaller one's cells (sweeps are nested).

Faults act on the cells themselves, before training (the mask can learn around known
faults) or after it (faults that appear later); the read path then reads the faulty cells.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prime.core.device import drawn_like
from prime.core.errors import PrimeError


@dataclass(frozen=True)
class StuckCells:
    """Stuck-at faults of a chip's cells.

    Args:
        stuck_off: fraction of cells stuck at the unformed state (0 µS), in [0, 1].
        stuck_on: fraction of cells stuck at ``stuck_on_us``, in [0, 1].
        stuck_on_us: the stuck-on conductance (µS); None: the chip's largest cell
            conductance (the top of its distribution).
        seed: the fault seed (which cells are stuck).
    """

    stuck_off: float = 0.0
    stuck_on: float = 0.0
    stuck_on_us: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("stuck_off", "stuck_on"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 <= value <= 1):
                flag = name.replace("_", "-")
                raise PrimeError(f"--{flag} is a fraction of cells in [0, 1], got {value!r}")
        if self.stuck_off + self.stuck_on > 1:
            raise PrimeError(
                f"--stuck-off {self.stuck_off:g} and --stuck-on {self.stuck_on:g} add up to "
                "more than all cells: their sum must be <= 1"
            )
        on_us = self.stuck_on_us
        if on_us is not None and not (isinstance(on_us, int | float) and 0 < on_us < math.inf):
            raise PrimeError(f"stuck_on_us must be a finite conductance > 0 µS, got {on_us!r}")
        if not isinstance(self.seed, int):
            raise PrimeError(f"the fault seed must be a whole number, got {self.seed!r}")

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> StuckCells:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise PrimeError(
                f"stuck cells have no setting {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**settings)

    @property
    def active(self) -> bool:
        """Whether any cell is stuck (fractions 0: the cells are left exactly as they are)."""
        return self.stuck_off > 0 or self.stuck_on > 0

    def apply(self, cells_us: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The chip's cells (one tensor per layer, µS, any shape) with the faults applied."""
        if not self.active:
            return list(cells_us)
        generator = torch.Generator().manual_seed(self.seed)
        on_us = self.stuck_on_us
        if on_us is None:
            on_us = max(float(cells.max()) for cells in cells_us)
        stuck = []
        for cells in cells_us:
            u = drawn_like(cells, generator, uniform=True)
            faulty = torch.where(u < self.stuck_off, cells.new_zeros(()), cells)
            on = cells.new_tensor(on_us)
            stuck.append(torch.where(u >= 1 - self.stuck_on, on, faulty))
        return stuck

    def describe(self) -> str:
        on = "the chip's largest" if self.stuck_on_us is None else f"{self.stuck_on_us:g} µS"
        return (
            f"stuck cells: {100 * self.stuck_off:g} % at 0 µS, {100 * self.stuck_on:g} % at "
            f"{on} (fault seed {self.seed})"
        )
