"""Figures of docs/reproduce.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from figures import REFERENCE, Section, run_prime
from figures.pruning import reproduction


def exit_fields(name: str, run: dict[str, Any]) -> dict[str, Any]:
    """An early-exit setting of the report as the page quotes it (% saved, steps, drop)."""
    return {
        f"{name}_saved": 100 * run["load_saved"],
        f"{name}_steps": run["mean_steps"],
        f"{name}_drop": run["drop_pp"],
    }


def noise_fields(name: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Test accuracy (%) mean and std over the repeats at read noise σ = 0.1."""
    (row,) = (r for r in rows if r["read_noise"] == 0.1)
    return {f"{name}_noise": 100 * row["accuracy_mean"], f"{name}_std": 100 * row["accuracy_std"]}


def nmnist(work: Path) -> dict[str, Any]:
    """``prime reproduce nmnist`` on the 1,000 reference recordings with the authors'
    checkpoint, default recipe (the page's command)."""
    out = work / "reproduce-nmnist"
    if not (out / "reproduce.json").is_file():
        run_prime(
            ["reproduce", "nmnist", str(REFERENCE / "nmnist" / "Train"), "--out", str(out)]
            + ["--reference-checkpoint", str(REFERENCE / "prime" / "classification.pt")]
            + ["--quiet", "--force"]
        )
    results = json.loads((out / "reproduce.json").read_text())
    own, authors = results["models"]["prime"], results["models"]["authors"]
    paper_rule = min(
        (r for r in own["early_exit"]["runs"] if r["policy"] == "prime"),
        key=lambda r: r["validation"]["mean_steps"],
    )
    return {
        "own": 100 * own["test_accuracy"],
        "authors": 100 * authors["test_accuracy"],
        "authors_all": 100 * authors["time_bins"]["all_accuracy"],
        "gap": results["goals"]["accuracy_gap_pp"],
        **exit_fields("own", own["early_exit"]["best"]),
        **exit_fields("a", authors["early_exit"]["best"]),
        **exit_fields("rule", paper_rule),
        **noise_fields("own", own["read_noise"]),
        **noise_fields("a", authors["read_noise"]),
    }


SECTIONS = [
    Section(
        "reproduce.md",
        "result on the 1,000 reference recordings",
        "reference",
        (
            "| accuracy, 50 % of edges pruned | {own:.2f} % | {authors:.2f} % ({authors_all:.2f} % "
            "on all 1,000) |",
            "| early exit saves 77 % (≤ 1 pt drop) | {own_saved:.1f} % saved, {own_steps:.2f} "
            "steps, {own_drop:.1f} pt drop (margin) | {a_saved:.1f} % saved, {a_steps:.2f} steps, "
            "{a_drop:.1f} pt drop (margin) |",
            "| robust to read noise, σ = 0.1 | {own_noise:.1f} ± {own_std:.1f} % | {a_noise:.1f} ± "
            "{a_std:.1f} % |",
            "margin policy exits after {own_steps:.2f} steps on average ({own_saved:.1f} % of the "
            "load saved) at a {own_drop:.1f} point drop; PRIME's own max-softmax rule saves "
            "{rule_saved:.1f} % at a {rule_drop:.1f} point drop.",
            "prime's own run is {gap:.1f} points below the authors' checkpoint",
        ),
        nmnist,
        "prime reproduce nmnist ../shared/reference/nmnist/Train/ --reference-checkpoint "
        "../shared/reference/prime/classification.pt --out runs/reproduce-nmnist",
    ),
    Section(
        "reproduce.md",
        "the pruning paper on the spoken digits",
        "long",
        (
            "| pruning | {fp_pruning:.2f} % | {b3_pruning:.2f} % |",
            "| programmed weights (write–verify, assumed σ 2 µS) | {fp_programmed:.2f} % "
            "| {b3_programmed:.2f} % |",
            "| gain (paper: +19.9 pt) | {fp_gain} pt, not met | {b3_gain} pt, not met |",
            "| pruning on replayed reads (measured array's distribution, the paper's conventions) "
            "| {fp_replay:.2f} % | {b3_replay:.2f} % |",
            "| programming energy, pruning vs programmed | {fp_pruning_uj:.2f} vs "
            "{fp_programmed_uj:.2f} µJ | {b3_pruning_uj:.2f} vs {b3_programmed_uj:.2f} µJ |",
            "| switches, without → with hysteresis | {fp_switches:,} → {fp_hyst_switches:,} "
            "| {b3_switches:,} → {b3_hyst_switches:,} |",
            "| inference energy saved, RRAM macro vs GPU-class baseline (paper: 51.2 %) "
            "| {fp_pruning_saved:.1f} %, met | {b3_pruning_saved:.1f} %, met |",
        ),
        reproduction,
        "as docs/pruning.md: prime reproduce pruning ../shared/reference/spoken_digits "
        "--epochs 20 --trace chip.h5",
    ),
    Section(
        "reproduce.md",
        "the recipe's settings",
        "cited",
        ("reference recipe (Adam lr 1e-3, cosine schedule, 50 % of edges kept per layer",),
    ),
]
