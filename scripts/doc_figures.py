"""Regenerate the figures that docs/ quotes from cheap runs, print each next to what the doc
says, and exit 1 if one differs (or a quoted sentence is no longer in its doc).

    python scripts/doc_figures.py [--work /tmp/doc-figures] [--threads 1]

Each figure is a sentence or table row of a doc page written as a template: its numbers are
format fields, filled from fresh runs; the doc's own text is found by the same template with
numbers left open, so a doc whose numbers drifted is reported with both versions.

Covered, from the built-in digits alone (:data:`FIGURES`; the default run at seeds 0 and 1,
the sample trace's runs, early-exit and periphery evaluations of the seed-0 run):

* devices.md: the scale ablation's ``prime-gaussian`` row, the ``--trace`` row;
* early_exit.md: the default run's accuracy, the calibrated θ, accuracy, steps and load saved
  of the ``prime``, ``margin`` and ``entropy`` policies (``--target-drop 0.5``);
* periphery.md: the ideal run evaluated post hoc on ``prime-512`` at 8, 6, 5, 4, 3 ADC bits.

Covered where ../shared/reference is present (:data:`REFERENCE_FIGURES`; about one minute per
run on one core): devices.md's parity table (every device on the digits and the spoken
digits, seeds 0 and 1) and datasets.md's spoken-digit accuracy.

Not covered (long runs, or noisy): the N-MNIST reference parity, reproduction and speed
figures (early_exit.md's benchmark, performance.md, reproduce.md), the pruning reproductions
(pruning.md), inpainting.md, distributed.md, noise-aware training and ageing (devices.md),
the trained-in-the-loop periphery rows (periphery.md), and every timing (the bench_*
scripts measure those).
"""

from __future__ import annotations

import argparse
import re
import string
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"
#: a number as the docs write it (also a θ such as 0.31, a count such as 287)
NUMBER = r"[-−+]?\d[\d,]*(?:\.\d+)?"


@dataclass(frozen=True)
class Figure:
    """A doc's sentence or table row with its figures as format fields (whitespace as in the
    doc does not matter)."""

    doc: str
    template: str

    def quoted(self, text: str) -> str | None:
        """The doc's version of the sentence, whatever its numbers (None: not found)."""
        pattern = "".join(
            re.escape(literal) + (NUMBER if field is not None else "")
            for literal, field, _, _ in string.Formatter().parse(_spaced(self.template))
        )
        match = re.search(pattern, _spaced(text))
        return match.group(0) if match else None

    def measured(self, values: dict[str, Any]) -> str:
        return _spaced(self.template.format(**values))


def _spaced(text: str) -> str:
    """``text`` with every run of whitespace (line breaks too) one space."""
    return " ".join(text.split())


REFERENCE = DOCS.parents[1] / "shared" / "reference"
ARRAY = REFERENCE / "rram" / "esgnn_measured_G_hidden_50x50.npy"
SPOKEN = REFERENCE / "spoken_digits"
SAMPLE_TRACE = DOCS.parent / "hw_traces" / "rram-lognormal-512x512.h5"

#: figures from the built-in digits alone
FIGURES = [
    Figure("devices.md", "| prime-gaussian | — (scale 0.01) | {s0:.2f} | {s1:.2f} |"),
    Figure(
        "devices.md",
        "| `--trace hw_traces/rram-lognormal-512x512.h5` | {tr0:.2f} | {tr1:.2f} | {d_tr} |",
    ),
    Figure(
        "early_exit.md",
        "The default run (`prime train --out runs/digits`: digits-conv, 6 epochs, {s0:.2f} % "
        "test accuracy at T = 10)",
    ),
    Figure(
        "early_exit.md",
        "calibrates θ = {prime_theta:g} on {prime_val} validation samples ({prime_val_acc:.2f} % "
        "vs {prime_val_full:.2f} % at full T) and gives {prime_acc:.2f} % test accuracy with "
        "{prime_steps:.2f} mean steps: {prime_saved:.1f} % of the load saved",
    ),
    Figure(
        "early_exit.md",
        "With `--policy margin` the calibrated θ = {margin_theta:g} saves {margin_saved:.1f} % "
        "but drops test accuracy to {margin_acc:.2f} %",
    ),
    Figure(
        "early_exit.md",
        "`--policy entropy` (θ = {entropy_theta:g}) saves {entropy_saved:.1f} % at "
        "{entropy_acc:.2f} %",
    ),
    Figure(
        "periphery.md",
        "| ideal run, post hoc | {adc8:.2f} % | {adc6:.2f} % | {adc5:.2f} % | {adc4:.2f} % "
        "| {adc3:.2f} % |",
    ),
]
#: figures that need the reference data beside the repository (the measured array, the
#: spoken digits); skipped where it is absent
REFERENCE_FIGURES = [
    Figure(
        "devices.md",
        "| `prime-gaussian` (no flag) | {s0:.2f} | {s1:.2f} | — | {sd0:.2f} | {sd1:.2f} | — |",
    ),
    Figure(
        "devices.md",
        "| `--device-model rram-lognormal` | {ln0:.2f} | {ln1:.2f} | {d_ln} | {sdln0:.2f} "
        "| {sdln1:.2f} | {d_sdln} |",
    ),
    Figure(
        "devices.md",
        "| `--device-model empirical.json` (the measured 50×50 array) | {emp0:.2f} | {emp1:.2f} "
        "| {d_emp} | {sdemp0:.2f} | {sdemp1:.2f} | {d_sdemp} |",
    ),
    Figure(
        "devices.md",
        "| `--device-model fit.json` (`prime trace fit --save`) | {fit0:.2f} | {fit1:.2f} "
        "| {d_fit} | {sdfit0:.2f} | {sdfit1:.2f} | {d_sdfit} |",
    ),
    Figure(
        "datasets.md",
        "of the edges of random conductances kept: **{sd0:.2f} %** test accuracy after the "
        "default 6 epochs (seed 0,",
    ),
]


def train_accuracy(work: Path, name: str, options: list[str]) -> float:
    """Test accuracy (%) of ``prime train OPTIONS`` run into ``work/name`` (reused if done)."""
    import json

    from prime.cli.main import main

    out = work / name
    if not (out / "metrics.json").is_file():
        if main(["train", *options, "--quiet", "--out", str(out)]) != 0:
            raise SystemExit(f"prime train {' '.join(options)} failed")
    return 100 * json.loads((out / "metrics.json").read_text())["test_accuracy"]


def signed(delta: float) -> str:
    """A difference as the docs write it: +0.67, −0.42 (a minus sign), — for none."""
    return f"{delta:+.2f}".replace("-", "−")


def measure(work: Path) -> dict[str, Any]:
    """The values of :data:`FIGURES`, from fresh runs in ``work``."""
    from prime.hardware.periphery import load_periphery
    from prime.runs.evaluation import early_exit_run
    from prime.runs.periphery_sweep import sweep_periphery

    values: dict[str, Any] = {}
    for seed in (0, 1):
        values[f"s{seed}"] = train_accuracy(work, f"s{seed}", ["--seed", str(seed)])
        trace = ["--trace", str(SAMPLE_TRACE), "--seed", str(seed)]
        values[f"tr{seed}"] = train_accuracy(work, f"tr{seed}", trace)
    values["d_tr"] = _delta(values, "tr", "s")
    for policy in ("prime", "margin", "entropy"):
        r = early_exit_run(
            work / "s0", work / f"early-exit-{policy}", policy=policy, target_drop_pp=0.5
        )
        values.update(
            {
                f"{policy}_theta": r["threshold"],
                f"{policy}_val": r["calibration"]["val_samples"],
                f"{policy}_val_acc": 100 * r["calibration"]["accuracy"],
                f"{policy}_val_full": 100 * r["calibration"]["full_accuracy"],
                f"{policy}_acc": 100 * r["accuracy"],
                f"{policy}_steps": r["mean_steps"],
                f"{policy}_saved": 100 * r["load_saved"],
            }
        )
    rows = sweep_periphery(
        work / "s0", "adc_bits", [8, 6, 5, 4, 3], work / "sweep-adc", load_periphery("prime-512")
    )
    values.update({f"adc{row['adc_bits']}": 100 * row["accuracy"] for row in rows})
    return values


def measure_reference(work: Path) -> dict[str, Any]:
    """The values of :data:`REFERENCE_FIGURES`: every device on the digits and the spoken
    digits, seeds 0 and 1, the devices made as devices.md's commands make them."""
    import json

    import numpy as np

    from prime.cli.main import main
    from prime.hardware.devices import get_device

    empirical, fit = work / "empirical.json", work / "fit.json"
    device = get_device("empirical", values_us=np.load(ARRAY))
    empirical.write_text(json.dumps(device.to_config()))
    if not fit.is_file():
        trace = work / "esgnn.h5"
        if main(["trace", "import", str(ARRAY), "--out", str(trace), "--force"]) != 0:
            raise SystemExit("prime trace import failed")
        if main(["trace", "fit", str(trace), "--save", str(fit)]) != 0:
            raise SystemExit("prime trace fit failed")
    spoken = ["--dataset", "npz", "--data-path", str(SPOKEN / "train.npz")]
    spoken += ["--test-path", str(SPOKEN / "test.npz")]
    devices = {"": [], "ln": ["--device-model", "rram-lognormal"]}
    devices |= {"emp": ["--device-model", str(empirical)], "fit": ["--device-model", str(fit)]}
    runs = {name or "s": device for name, device in devices.items()}  # digits: s, ln, emp, fit
    runs |= {f"sd{name}": [*spoken, *device] for name, device in devices.items()}
    values: dict[str, Any] = {}
    for name, options in runs.items():
        for seed in (0, 1):
            values[f"{name}{seed}"] = train_accuracy(
                work, f"{name}{seed}", [*options, "--seed", str(seed)]
            )
    for name in ("ln", "emp", "fit"):
        values[f"d_{name}"] = _delta(values, name, "s")
        values[f"d_sd{name}"] = _delta(values, f"sd{name}", "sd")
    return values


def _delta(values: dict[str, Any], device: str, reference: str) -> str:
    """Mean over seeds 0 and 1 of ``device`` minus that of ``reference``, signed."""
    mean = (values[f"{device}0"] + values[f"{device}1"]) / 2
    return signed(mean - (values[f"{reference}0"] + values[f"{reference}1"]) / 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/doc-figures"), help="run folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    values = measure(args.work)
    figures = list(FIGURES)
    if ARRAY.is_file() and SPOKEN.is_dir():
        values |= measure_reference(args.work)
        figures += REFERENCE_FIGURES
    else:
        print(f"skipping {len(REFERENCE_FIGURES)} figures: no reference data in {REFERENCE}")
    mismatches = 0
    for figure in figures:
        quoted = figure.quoted((DOCS / figure.doc).read_text())
        measured = figure.measured(values)
        ok = quoted == measured
        mismatches += not ok
        print(f"{'ok  ' if ok else 'DIFF'} docs/{figure.doc}")
        print(f"     doc:      {quoted if quoted is not None else '(sentence not found)'}")
        print(f"     measured: {measured}")
    print(f"{len(figures) - mismatches} of {len(figures)} figures match")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
