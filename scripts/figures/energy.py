"""Figures of docs/energy.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from figures import Section, run_prime, train, train_accuracy

#: the rows of the report's table: (field prefix, the doc's label)
ROWS = (
    ("dense", "digital dense"),
    ("event", "digital event-driven"),
    ("all", "analog macro (all cells)"),
    ("pruned", "+ pruning"),
    ("exit", "+ early exit"),
)
#: the rows of the report's sensitivity table: (field prefix, the doc's label)
VARIATIONS = (
    ("as", "as configured"),
    ("adc_low", "adc_pj × 0.1"),
    ("adc_high", "adc_pj × 10"),
    ("cell_low", "cell_read_pj × 0.1"),
    ("cell_high", "cell_read_pj × 10"),
)


def bench(work: Path, name: str, options: list[str]) -> list[dict[str, Any]]:
    """The rows of ``prime bench energy OPTIONS`` on the default run (seed 0), written to
    ``work/name`` once and then reused."""
    out = work / name
    if not (out / "energy.json").is_file():
        run = train(work, "s0", ["--seed", "0"])
        run_prime(["bench", "energy", str(run), *options, "--quiet", "--out", str(out)])
    return json.loads((out / "energy.json").read_text())["rows"]


def default_report(work: Path) -> dict[str, Any]:
    """The report of the default run against the default digital baseline."""
    values: dict[str, Any] = {"s0": train_accuracy(work, "s0", ["--seed", "0"])}
    rows = bench(work, "energy", [])
    for (key, _), row in zip(ROWS, rows, strict=True):
        values |= {
            f"{key}_energy": row["energy_pj"] / 1e3,
            f"{key}_latency": row["latency_ns"] / 1e3,
            f"{key}_steps": row["steps_per_sample"],
            f"{key}_acc": 100 * row["accuracy"],
            f"{key}_x": row["energy_efficiency_x"],
            f"{key}_saved": row["load_saved_pct"],
            f"{key}_speedup": row["speedup_x"],
        }
    report = json.loads((work / "energy" / "energy.json").read_text())
    for (p, _), variation in zip(VARIATIONS, report["sensitivity"], strict=True):
        ratios = variation["energy_efficiency_x"].values()  # all cells, + pruning, + early exit
        values |= {
            f"{p}_{key}": x for key, x in zip(("all", "pruned", "exit"), ratios, strict=True)
        }
    parts = rows[-1]["energy_breakdown_pj"]
    values |= {f"share_{k}": 100 * v / parts["total"] for k, v in parts.items() if k != "total"}
    return values | {"steps_saved": 100 * (1 - values["exit_steps"] / 10)}


def gpu_baseline(work: Path) -> dict[str, Any]:
    """The ``gpu`` baseline's dense energy and the energy-efficiency ratios against it."""
    rows = bench(work, "energy-gpu", ["--baseline", "gpu"])
    return {"dense_energy": rows[0]["energy_pj"] / 1e3} | {
        f"{key}_x": row["energy_efficiency_x"] for (key, _), row in zip(ROWS, rows, strict=True)
    }


SECTIONS = [
    Section(
        "energy.md",
        "report of the default run",
        "quick",
        (
            "built-in digits run (test accuracy {s0:.2f} %",
            *(
                f"| {label} | {{{p}_energy:.4g}} | {{{p}_latency:.4g}} | {{{p}_steps:.2f}} "
                f"| {{{p}_acc:.2f}} % | {{{p}_x:.3g}} | {{{p}_saved:.1f}} % | {{{p}_speedup:.3g}} |"
                for p, label in ROWS
            ),
            *(
                f"| {label} | {{{p}_all:.3g}} | {{{p}_pruned:.3g}} | {{{p}_exit:.3g}} |"
                for p, label in VARIATIONS
            ),
            "cells {share_cells:.1f} %, rows {share_rows:.1f} %, ADC {share_adc:.1f} %, "
            "digital {share_digital:.1f} %, neurons {share_neurons:.1f} %.",
            "so it gains little ({all_x:.3g}× → {pruned_x:.3g}×)",
            "{exit_steps:.2f} of 10 steps with no accuracy loss at θ 0.8. That is "
            "{steps_saved:.1f} % of the timesteps saved",
        ),
        default_report,
        "prime train --out runs/digits --quiet; prime bench energy runs/digits --quiet",
    ),
    Section(
        "energy.md",
        "against the gpu baseline",
        "quick",
        (
            "the digital dense energy is {dense_energy:.4g} nJ.",
            "The energy-efficiency ratios become {all_x:.3g}× (all cells), {pruned_x:.3g}× "
            "(+ pruning) and {exit_x:.3g}× (+ early exit)",
        ),
        gpu_baseline,
        "prime bench energy runs/digits --baseline gpu --out runs/digits/bench-gpu",
    ),
    Section(
        "energy.md",
        "settings and PRIME's figure",
        "cited",
        (
            "the ADC energy or the cell energy is 10× lower or 10× higher",
            "| `cell_reads` | 2 × (`acs` + `macs`)",
            "(fan-in rows, 2 × outputs columns)",
            'PRIME\'s "77 % computational load saved"',
            "the measure behind PRIME's 77 %",
        ),
    ),
]
