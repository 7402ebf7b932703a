"""Figures of docs/periphery.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from figures import Section, train


def post_hoc_adc(work: Path) -> dict[str, Any]:
    """The default run (seed 0) evaluated on ``prime-512`` at 8, 6, 5, 4 and 3 ADC bits."""
    from prime.hardware.periphery import load_periphery
    from prime.runs.periphery_sweep import sweep_periphery

    run = train(work, "s0", ["--seed", "0"])
    bits = [8, 6, 5, 4, 3]
    rows = sweep_periphery(run, "adc_bits", bits, work / "sweep-adc", load_periphery("prime-512"))
    return {f"adc{row['adc_bits']}": 100 * row["accuracy"] for row in rows}


SECTIONS = [
    Section(
        "periphery.md",
        "post-hoc ADC bits",
        "quick",
        (
            "| ideal run, post hoc | {adc8:.2f} % | {adc6:.2f} % | {adc5:.2f} % | {adc4:.2f} % "
            "| {adc3:.2f} % |",
        ),
        post_hoc_adc,
        "prime eval runs/digits --periphery prime-512 --adc-bits 8,6,5,4,3",
    ),
]
