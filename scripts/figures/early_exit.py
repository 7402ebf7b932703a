"""Figures of docs/early_exit.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures import Section, train, train_accuracy

#: the θ columns of the page's table (the calibrated θ of the prime policy is inserted)
THETAS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: its rows: (field prefix, the doc's label, format)
SWEEP_ROWS = (
    ("acc", "test accuracy (%)", ".2f"),
    ("steps", "mean steps", ".2f"),
    ("saved", "load saved (%)", ".1f"),
)


def policies(work: Path) -> dict[str, Any]:
    """The default run (seed 0) and the early exit of each policy at a 0.5-point target."""
    from prime.runs.evaluation import early_exit_run

    values: dict[str, Any] = {"s0": train_accuracy(work, "s0", ["--seed", "0"])}
    for policy in ("prime", "margin", "entropy"):
        r = early_exit_run(
            train(work, "s0", ["--seed", "0"]),
            work / f"early-exit-{policy}",
            policy=policy,
            target_drop_pp=0.5,
        )
        values |= {
            f"{policy}_theta": r["threshold"],
            f"{policy}_val": r["calibration"]["val_samples"],
            f"{policy}_val_acc": 100 * r["calibration"]["accuracy"],
            f"{policy}_val_full": 100 * r["calibration"]["full_accuracy"],
            f"{policy}_acc": 100 * r["accuracy"],
            f"{policy}_steps": r["mean_steps"],
            f"{policy}_saved": 100 * r["load_saved"],
        }
        if policy == "prime":
            at = {row["threshold"]: row for row in r["sweep"]}
            for n, theta in enumerate(THETAS):
                values |= {
                    f"acc{n}": 100 * at[theta]["accuracy"],
                    f"steps{n}": at[theta]["mean_steps"],
                    f"saved{n}": 100 * at[theta]["load_saved"],
                }
    return values


def sweep_row(prefix: str, label: str, spec: str) -> str:
    """A row of the θ table: the sweep's value at each θ, the calibrated θ's in bold."""
    cells = [f"{{{prefix}{n}:{spec}}}" for n in range(len(THETAS))]
    chosen = {"acc": "prime_acc", "steps": "prime_steps", "saved": "prime_saved"}[prefix]
    cells.insert(3, f"**{{{chosen}:{spec}}}**")
    return f"| {label} | " + " | ".join(cells) + " |"


SECTIONS = [
    Section(
        "early_exit.md",
        "policies on the default run",
        "quick",
        (
            "The default run (`prime train --out runs/digits`: digits-conv, 6 epochs, {s0:.2f} % "
            "test accuracy at T = 10)",
            "calibrates θ = {prime_theta:g} on {prime_val} validation samples "
            "({prime_val_acc:.2f} % vs {prime_val_full:.2f} % at full T) and gives "
            "{prime_acc:.2f} % test accuracy with {prime_steps:.2f} mean steps: "
            "{prime_saved:.1f} % of the load saved",
            "With `--policy margin` the calibrated θ = {margin_theta:g} saves {margin_saved:.1f} "
            "% but drops test accuracy to {margin_acc:.2f} %",
            "`--policy entropy` (θ = {entropy_theta:g}) saves {entropy_saved:.1f} % at "
            "{entropy_acc:.2f} %",
            "`prime train --out /tmp/ee/run`, {s0:.2f} %: digits-conv, θ = {prime_theta:g}",
            "| θ | 0.1 | 0.2 | 0.3 | **{prime_theta:g}** | 0.4 |",
            *(sweep_row(*row) for row in SWEEP_ROWS),
        ),
        policies,
        "prime train --out runs/digits; prime eval runs/digits --early-exit --policy P "
        "--target-drop 0.5",
    ),
    Section(
        "early_exit.md",
        "streamed early exit",
        "timing",
        (
            "one-step chunks (+13 % at 1 thread on the authors' checkpoint) and 2 threads "
            "(k = 2: +14 % on the authors' checkpoint, +49 % on digits-conv",
            "At 1 thread with k = 2 or 3 it gains 1–6 %",
        ),
        command="python scripts/bench_early_exit.py --chunk-steps 2 3 --repeats 7 (as the "
        "page's commands)",
    ),
    Section(
        "early_exit.md",
        "settings and goals",
        "cited",
        (
            "or a seeded 20 % of its",
            "(goal: ≥ 0.8 ×",
            "the goal (≥ 0.8 × ideal at 2 threads)",
        ),
    ),
]
