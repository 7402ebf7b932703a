"""Figures of docs/datasets.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures import REFERENCE, Section, train_accuracy
from figures.devices import SPOKEN_OPTIONS


def spoken_digits(work: Path) -> dict[str, Any]:
    return {"sd0": train_accuracy(work, "sd0", [*SPOKEN_OPTIONS, "--seed", "0"])}


def split_modes(work: Path) -> dict[str, Any]:
    """The PRIME authors' checkpoint on the 1,000 real N-MNIST recordings, frames binned by
    time and by event count."""
    from torch.utils.data import ConcatDataset

    from prime.data.nmnist import load_nmnist
    from prime.inference.evaluate import evaluate
    from prime.snn.reference import load_prime_reference

    model = load_prime_reference(REFERENCE / "prime" / "classification.pt")
    values: dict[str, Any] = {}
    for mode in ("time", "events"):
        splits = load_nmnist(10, split_mode=mode, data_path=str(REFERENCE / "nmnist"))
        parts = [s for s in (splits.train, splits.val, splits.test) if s is not None]
        values[mode] = 100 * evaluate(model, ConcatDataset(parts), batch_size=100)["accuracy"]
    return values


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
    Section(
        "datasets.md",
        "time and event bins on the authors' checkpoint",
        "reference",
        ("scores higher on them ({time:.1f} % vs {events:.1f} % on 1,000 real recordings)",),
        split_modes,
        "prime reproduce nmnist ../shared/reference/nmnist (its authors' model rows)",
    ),
    Section(
        "datasets.md",
        "data loading",
        "timing",
        (
            "data time = 0.1 % of step time",
            "data time is far below the 10 % goal",
            "with the 4.4 s cache load counted (0.5 %)",
        ),
        command="python scripts/bench_data.py --threads 2",
    ),
    Section(
        "datasets.md",
        "settings",
        "cited",
        ("rate coding) with 50 %",),
    ),
]
