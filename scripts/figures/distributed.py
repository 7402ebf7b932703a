"""Figures of docs/distributed.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from figures import Section, eval_report, run_prime, train, train_accuracy


def chip_sweep(work: Path) -> dict[str, Any]:
    """Four chips of the default recipe trained by two processes, and the default run."""
    out = work / "sweep-digits"
    if not (out / "sweep.json").is_file():
        run_prime(["sweep", "--chips", "4", "--nproc", "2", "--quiet", "--out", str(out)])
    summary = json.loads((out / "sweep.json").read_text())
    values = {f"c{row['chip_seed']}": 100 * row["test_accuracy"] for row in summary["per_chip"]}
    values |= {k: 100 * summary["test_accuracy"][k] for k in ("mean", "std", "min", "max")}
    return values | {"s0": train_accuracy(work, "s0", ["--seed", "0"])}


def read_noise(work: Path) -> dict[str, Any]:
    """The default run at read noise σ 0 to 0.2, five noise seeds each."""
    run = str(train(work, "s0", ["--seed", "0"]))
    sigmas = "0,0.02,0.05,0.1,0.2"
    levels = eval_report(
        work, "s0-read-noise-sweep", "read_noise", [run, "--read-noise", sigmas, "--repeats", "5"]
    )
    return {
        f"{stat}{n}": 100 * level[f"accuracy_{stat}"]
        for n, level in enumerate(levels)
        for stat in ("mean", "std", "min", "max")
    }


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
    Section(
        "distributed.md",
        "read noise on the default run",
        "quick",
        (
            "| 0    | 1 | {mean0:.2f}        | {min0:.2f} | {max0:.2f} |",
            *(
                f"| {sigma} | 5 | {{mean{n}:.2f}} ± {{std{n}:.2f}} | {{min{n}:.2f}} "
                f"| {{max{n}:.2f}} |"
                for n, sigma in enumerate(("0.02", "0.05", "0.1", "0.2"), start=1)
            ),
        ),
        read_noise,
        "prime eval runs/digits --read-noise 0,0.02,0.05,0.1,0.2 --repeats 5",
    ),
]
