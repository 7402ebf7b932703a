"""Accuracy of trained weights programmed onto a chip against the write noise: the
programmed-weights baseline of ``prime reproduce pruning`` at several pulse spreads σ,
with write-verify (up to 10 pulses) and with one pulse per cell.

    PYTHONPATH=$PWD python scripts/pruning_write_noise.py RUN_DIR

RUN_DIR: a run trained with plain weights (``synapses="weights"``), e.g.
``runs/reproduce-pruning/runs/spoken-digits-fp-weights``. Programming seed 0.
"""

from __future__ import annotations

import dataclasses
import sys

import torch

from prime.hardware.programming import WRITE_VERIFY
from prime.inference.evaluate import evaluate
from prime.runs.rundir import load_data, load_run, run_config
from prime.snn.models import build_model
from prime.snn.programmed import program_network


def main(run_dir: str) -> None:
    software, payload = load_run(run_dir)
    test = load_data(run_config(payload)).test
    chip = build_model(dataclasses.replace(software.config, synapses="supermask", keep=1.0))
    chip.eval()
    base = WRITE_VERIFY.get("write-verify")
    print(f"trained weights in software: {100 * evaluate(software, test)['accuracy']:.2f} %")
    for sigma_us in (1.0, 2.0, 4.0, 8.0):
        for max_pulses in (10, 1):
            writer = dataclasses.replace(base, sigma_us=sigma_us, max_pulses=max_pulses)
            result = program_network(chip, software, writer, torch.Generator().manual_seed(0))
            accuracy = evaluate(chip, test)["accuracy"]
            print(
                f"σ {sigma_us:g} µS, at most {max_pulses} pulses: accuracy "
                f"{100 * accuracy:.2f} %, {result['pulses'] / result['cells']:.2f} pulses per cell"
            )


if __name__ == "__main__":
    main(sys.argv[1])
