"""Figures of docs/energy.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from figures import Section, run_prime, train, train_accuracy

ROWS = ("dense", "event", "all", "pruned", "exit")


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
    for key, row in zip(ROWS, rows, strict=True):
        values |= {
            f"{key}_energy": row["energy_pj"] / 1e3,
            f"{key}_latency": row["latency_ns"] / 1e3,
            f"{key}_steps": row["steps_per_sample"],
            f"{key}_acc": 100 * row["accuracy"],
            f"{key}_x": row["energy_efficiency_x"],
            f"{key}_saved": row["load_saved_pct"],
            f"{key}_speedup": row["speedup_x"],
        }
    parts = rows[-1]["energy_breakdown_pj"]
    values |= {f"share_{k}": 100 * v / parts["total"] for k, v in parts.items() if k != "total"}
    return values | {"steps_saved": 100 * (1 - values["exit_steps"] / 10)}


def gpu_baseline(work: Path) -> dict[str, Any]:
    """The energy-efficiency ratios of the analog rows against the ``gpu`` baseline."""
    rows = bench(work, "energy-gpu", ["--baseline", "gpu"])
    return {f"{key}_x": row["energy_efficiency_x"] for key, row in zip(ROWS, rows, strict=True)}


SECTIONS = [
    Section(
        "energy.md",
        "report of the default run",
        "quick",
        (
            "built-in digits run (test accuracy {s0:.2f} %",
            "e+05 | {dense_latency:.4g} | {dense_steps:.2f} | {dense_acc:.2f} % | {dense_x:.3g} "
            "| {dense_saved:.1f} % | {dense_speedup:.3g} |",
            "e+04 | {event_latency:.4g} | {event_steps:.2f} | {event_acc:.2f} % | {event_x:.3g} "
            "| {event_saved:.1f} % | {event_speedup:.3g} |",
            "| analog macro (all cells) | {all_energy:.4g} | {all_latency:.4g} | {all_steps:.2f} "
            "| {all_acc:.2f} % | {all_x:.3g} | {all_saved:.1f} % | {all_speedup:.3g} |",
            "| + pruning | {pruned_energy:.4g} | {pruned_latency:.4g} | {pruned_steps:.2f} "
            "| {pruned_acc:.2f} % | {pruned_x:.3g} | {pruned_saved:.1f} % | {pruned_speedup:.3g} |",
            "| + early exit | {exit_energy:.4g} | {exit_latency:.4g} | {exit_steps:.2f} "
            "| {exit_acc:.2f} % | {exit_x:.3g} | {exit_saved:.1f} % | {exit_speedup:.3g} |",
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
