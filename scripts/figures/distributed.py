"""Figures of docs/distributed.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from figures import Section, run_prime, train_accuracy


def chip_sweep(work: Path) -> dict[str, Any]:
    """Four chips of the default recipe trained by two processes, and the default run."""
    out = work / "sweep-digits"
    if not (out / "sweep.json").is_file():
        run_prime(["sweep", "--chips", "4", "--nproc", "2", "--quiet", "--out", str(out)])
    summary = json.loads((out / "sweep.json").read_text())
    values = {f"c{row['chip_seed']}": 100 * row["test_accuracy"] for row in summary["per_chip"]}
    values |= {k: 100 * summary["test_accuracy"][k] for k in ("mean", "std", "min", "max")}
    return values | {"s0": train_accuracy(work, "s0", ["--seed", "0"])}


SECTIONS = [
    Section(
        "distributed.md",
        "a sweep over four chips on two processes",
        "quick",
        (
            "chips 0 and 2 on rank 0, 1 and 3 on rank 1): {c0:.2f}, {c1:.2f}, {c2:.2f} and "
            "{c3:.2f} %, so **{mean:.2f} ± {std:.2f} %** (min {min:.2f}, max {max:.2f}) across "
            "chips. Chip 0 gives exactly the default run's {s0:.2f} %.",
        ),
        chip_sweep,
        "prime sweep --chips 4 --nproc 2 --out runs/sweep-digits",
    ),
]
