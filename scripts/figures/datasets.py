"""Figures of docs/datasets.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures import Section, train_accuracy
from figures.devices import SPOKEN_OPTIONS


def spoken_digits(work: Path) -> dict[str, Any]:
    return {"sd0": train_accuracy(work, "sd0", [*SPOKEN_OPTIONS, "--seed", "0"])}


SECTIONS = [
    Section(
        "datasets.md",
        "spoken digits",
        "reference",
        (
            "of the edges of random conductances kept: **{sd0:.2f} %** test accuracy after the "
            "default 6 epochs (seed 0,",
        ),
        spoken_digits,
        "prime train --dataset npz --data-path train.npz --test-path test.npz",
    ),
]
