"""Figures of docs/devices.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from figures import REFERENCE, SAMPLE_TRACE, Section, run_prime, seed_delta, train_accuracy

ARRAY = REFERENCE / "rram" / "esgnn_measured_G_hidden_50x50.npy"
SPOKEN = REFERENCE / "spoken_digits"
#: ``prime train`` options of the spoken digits beside the repository
SPOKEN_OPTIONS = ["--dataset", "npz", "--data-path", str(SPOKEN / "train.npz")]
SPOKEN_OPTIONS += ["--test-path", str(SPOKEN / "test.npz")]


def scale_rows(work: Path) -> dict[str, Any]:
    """The default run and the sample trace's run, seeds 0 and 1."""
    values: dict[str, Any] = {}
    for seed in (0, 1):
        values[f"s{seed}"] = train_accuracy(work, f"s{seed}", ["--seed", str(seed)])
        trace = ["--trace", str(SAMPLE_TRACE), "--seed", str(seed)]
        values[f"tr{seed}"] = train_accuracy(work, f"tr{seed}", trace)
    values["d_tr"] = seed_delta(values, "tr", "s")
    return values


def parity_table(work: Path) -> dict[str, Any]:
    """Every device on the digits and the spoken digits, seeds 0 and 1, the devices made as
    devices.md's commands make them."""
    import numpy as np

    from prime.hardware.devices import get_device

    empirical, fit = work / "empirical.json", work / "fit.json"
    device = get_device("empirical", values_us=np.load(ARRAY))
    empirical.write_text(json.dumps(device.to_config()))
    if not fit.is_file():
        trace = work / "esgnn.h5"
        run_prime(["trace", "import", str(ARRAY), "--out", str(trace), "--force"])
        run_prime(["trace", "fit", str(trace), "--save", str(fit)])
    devices = {"": [], "ln": ["--device-model", "rram-lognormal"]}
    devices |= {"emp": ["--device-model", str(empirical)], "fit": ["--device-model", str(fit)]}
    runs = {name or "s": device for name, device in devices.items()}  # digits: s, ln, emp, fit
    runs |= {f"sd{name}": [*SPOKEN_OPTIONS, *device] for name, device in devices.items()}
    values: dict[str, Any] = {}
    for name, options in runs.items():
        for seed in (0, 1):
            values[f"{name}{seed}"] = train_accuracy(
                work, f"{name}{seed}", [*options, "--seed", str(seed)]
            )
    for name in ("ln", "emp", "fit"):
        values[f"d_{name}"] = seed_delta(values, name, "s")
        values[f"d_sd{name}"] = seed_delta(values, f"sd{name}", "sd")
    return values


SECTIONS = [
    Section(
        "devices.md",
        "scale ablation",
        "quick",
        (
            "| prime-gaussian | — (scale 0.01) | {s0:.2f} | {s1:.2f} |",
            "| `--trace hw_traces/rram-lognormal-512x512.h5` | {tr0:.2f} | {tr1:.2f} | {d_tr} |",
        ),
        scale_rows,
        "prime train --seed S; prime train --trace hw_traces/rram-lognormal-512x512.h5 --seed S",
    ),
    Section(
        "devices.md",
        "device parity",
        "reference",
        (
            "| `prime-gaussian` (no flag) | {s0:.2f} | {s1:.2f} | — | {sd0:.2f} | {sd1:.2f} | — |",
            "| `--device-model rram-lognormal` | {ln0:.2f} | {ln1:.2f} | {d_ln} | {sdln0:.2f} "
            "| {sdln1:.2f} | {d_sdln} |",
            "| `--device-model empirical.json` (the measured 50×50 array) | {emp0:.2f} "
            "| {emp1:.2f} | {d_emp} | {sdemp0:.2f} | {sdemp1:.2f} | {d_sdemp} |",
            "| `--device-model fit.json` (`prime trace fit --save`) | {fit0:.2f} | {fit1:.2f} "
            "| {d_fit} | {sdfit0:.2f} | {sdfit1:.2f} | {d_sdfit} |",
        ),
        parity_table,
        "prime train [--device-model D] [spoken digits] --seed S, as the page's commands",
    ),
]
