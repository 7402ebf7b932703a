"""The chip's side of training: each step programs the masks onto the cells, which costs one
set/reset operation per edge that switches. Mask hysteresis bounds how often that happens.

The pruning paper (Li et al., arXiv 2311.07164, code ``*_hardware_TO.py``) programs the mask
before every training batch, counts per edge how often it changed (``switch_count_list``,
starting from the formed chip, where every edge conducts) and holds edges whose score moved
by less than ``limit_size`` (:func:`prime.snn.masks.hold_mask`), a margin that falls during
training (:data:`HYSTERESIS` holds its schedules).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from prime.core.errors import PrimeError
from prime.core.registry import Registry
from prime.snn.layers import MemristorLayer
from prime.snn.masks import check_margin


@dataclass(frozen=True)
class HysteresisSchedule:
    """The hysteresis margin per epoch: ``start`` in epoch 0, lowered by
    ``(start - stop) / steps`` every epoch down to ``stop``.

    The paper lowers it after every epoch with a new best test accuracy (and never stops at
    ``stop``); prime lowers it every epoch, so that the schedule does not depend on the test
    set, and holds it at ``stop``.
    """

    start: float = 0.0
    stop: float = 0.0
    steps: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        check_margin(self.start)
        check_margin(self.stop)
        if self.stop > self.start:
            raise PrimeError(f"a margin schedule falls: stop {self.stop} > start {self.start}")
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise PrimeError(f"a margin schedule needs steps >= 1, got {self.steps!r}")

    def margin(self, epoch: int) -> float:
        """The margin of (0-based) ``epoch``."""
        return max(self.stop, self.start - (self.start - self.stop) * epoch / self.steps)


HYSTERESIS: Registry[HysteresisSchedule] = Registry("hysteresis schedule")
HYSTERESIS.register("none")(HysteresisSchedule(description="no hysteresis (margin 0)"))
HYSTERESIS.register("pruning-spoken-digits")(
    HysteresisSchedule(
        0.009,
        0.007,
        10,
        "the pruning paper's spoken-digit schedule: limit_size 0.009 to 0.007 in 10 steps "
        "(code: CRNN_Spoken_Digit_TO/Spoken_digit_hardware_TO.py, params)",
    )
)
HYSTERESIS.register("pruning-fashion-mnist")(
    HysteresisSchedule(
        0.01,
        0.007,
        15,
        "the pruning paper's FashionMNIST schedule: limit_size 0.01 to 0.007 in 15 steps "
        "(code: CNN_FashionMNIST_TO/FashionMNIST_hardware_TO.py, params)",
    )
)


def hysteresis_schedule(name_or_margin: str | float) -> HysteresisSchedule:
    """A registered schedule by name, or a constant margin given as a number."""
    if isinstance(name_or_margin, str):
        try:
            margin = float(name_or_margin)
        except ValueError:
            return HYSTERESIS.get(name_or_margin)
    else:
        margin = name_or_margin
    check_margin(margin)
    return HysteresisSchedule(margin, margin, 1, f"constant margin {margin:g}")


class SwitchCounter:
    """Per-edge mask switches of a network's crossbars while it trains.

    :meth:`program` is called before every training step: each layer programs its mask
    (:meth:`MemristorLayer.hold`), and every edge whose mask differs from the one programmed
    before counts one switch. The chip starts formed, every edge conducting, so the first
    call counts the initial pruning (:attr:`initial`); :attr:`counts` [weight shape] int64
    per layer hold all switches, :meth:`reprogrammed` those after the initial pruning.
    """

    def __init__(self, layers: Sequence[MemristorLayer]) -> None:
        self.layers = list(layers)
        self.previous = [torch.ones_like(m.scores, dtype=torch.bool) for m in self.layers]
        self.counts = [torch.zeros_like(m.scores, dtype=torch.int64) for m in self.layers]
        self.initial: list[int] | None = None
        self.steps = 0
        self.margin = 0.0

    def program(self, margin: float) -> None:
        """Program every layer's mask with hysteresis ``margin`` and count the switches."""
        self.margin = margin
        masks = [layer.hold(margin).bool() for layer in self.layers]
        for count, before, after in zip(self.counts, self.previous, masks, strict=True):
            count += before != after
        if self.initial is None:
            self.initial = [int((~m).sum()) for m in masks]
        self.previous = masks
        self.steps += 1

    def total(self) -> int:
        """All switches so far, the initial pruning included."""
        return int(sum(c.sum() for c in self.counts))

    def reprogrammed(self) -> int:
        """Switches after the initial pruning (the paper's ``program_sum``)."""
        return self.total() - sum(self.initial or [])

    def summary(self) -> dict[str, Any]:
        """JSON-able totals, per layer and overall."""
        initial = self.initial or [0] * len(self.layers)
        layers = [
            {
                "edges": c.numel(),
                "switches": int(c.sum()),
                "initial_pruning": first,
                "max_per_edge": int(c.max()) if c.numel() else 0,
            }
            for c, first in zip(self.counts, initial, strict=True)
        ]
        edges = sum(c.numel() for c in self.counts)
        return {
            "steps": self.steps,
            "switches": self.total(),
            "initial_pruning": sum(initial),
            "reprogrammed": self.reprogrammed(),
            "switches_per_edge": self.reprogrammed() / max(edges, 1),
            "layers": layers,
        }

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps to resume counting (and the layers' held states)."""
        return {
            "previous": self.previous,
            "counts": self.counts,
            "initial": self.initial,
            "steps": self.steps,
            "margin": self.margin,
            "held": [m.held for m in self.layers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the counts and the layers' held masks and margin (a loaded run then
        computes the masks it was evaluated with in training)."""
        if len(state["counts"]) != len(self.layers):
            raise PrimeError(
                f"switch counts of {len(state['counts'])} layers do not fit a network of "
                f"{len(self.layers)} crossbars"
            )
        on = [m.scores.device for m in self.layers]  # a checkpoint is read on the CPU
        self.previous = [t.to(d) for t, d in zip(state["previous"], on, strict=True)]
        self.counts = [t.to(d) for t, d in zip(state["counts"], on, strict=True)]
        self.initial, self.steps = state["initial"], int(state["steps"])
        self.margin = float(state["margin"])
        for layer, held in zip(self.layers, state["held"], strict=True):
            layer.held = None if held is None else (held[0], held[1])
            layer.mask_margin = self.margin
