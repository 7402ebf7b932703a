"""Figures of docs/interop.md."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from figures import ROOT, Section, python_output, train_accuracy


def nir_roundtrip(work: Path) -> dict[str, Any]:
    """PRIME's own neuron exported to NIR and read back by snnTorch, on the golden inputs."""
    from measure_nir_roundtrip import roundtrip

    r = roundtrip("prime")
    equal = round(r["equal"] * r["inputs"])
    return r | {"equal": equal, "n": r["inputs"], "pct": 100 * r["equal"]}


def write_noise(work: Path) -> dict[str, Any]:
    """The snnTorch-trained net on a noisy chip, as the page's pytest command prints it."""
    test = f"{ROOT / 'tests' / 'test_interop.py'}::test_snntorch_trained_network_on_a_noisy_chip"
    stdout = python_output(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", test])
    rows = re.findall(
        r"snnTorch ([\d.]+) %, prime import --programming ([\w-]+) on rram-lognormal ([\d.]+) % "
        r"\(([\d.]+) pulses",
        stdout,
    )
    values: dict[str, Any] = {"snntorch": float(rows[0][0])}
    for _, programming, accuracy, pulses in rows:
        key = programming.replace("-", "_")
        values |= {f"{key}_acc": float(accuracy), f"{key}_pulses": float(pulses)}
    return values


SECTIONS = [
    Section(
        "interop.md",
        "NIR round trip of PRIME's neuron",
        "reference",
        (
            "| PRIME (`prime`), nearest NIR LIF | {max_diff:.2f} | {max_out:.2f} | {equal} of {n} "
            "({pct:.1f} %) |",
        ),
        nir_roundtrip,
        "PYTHONPATH=$PWD python scripts/measure_nir_roundtrip.py",
    ),
    Section(
        "interop.md",
        "snnTorch-trained net on a noisy chip",
        "quick",
        (
            "| snnTorch itself | {snntorch:.2f} % | |",
            "| `write-verify` | {write_verify_acc:.2f} % | {write_verify_pulses:.2f} |",
            "| `write-once` | {write_once_acc:.2f} % | {write_once_pulses:.2f} |",
        ),
        write_noise,
        "PYTHONPATH=$PWD python -m pytest -s tests/test_interop.py -k noisy_chip",
    ),
    Section(
        "interop.md",
        "the default run",
        "quick",
        ("digits-conv on digits, {s0:.2f} % test accuracy),",),
        lambda work: {"s0": train_accuracy(work, "s0", ["--seed", "0"])},
        "prime train --out RUN",
    ),
    Section(
        "interop.md",
        "settings",
        "cited",
        ("the 99.9 % quantile of its formed cells", "| the 99.9 % quantile of the measured"),
    ),
]
