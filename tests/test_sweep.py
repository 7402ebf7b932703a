"""Chip sweeps: one run per chip seed, statistics across chips, resume, ranks share chips."""

from __future__ import annotations

import csv
import json
import statistics

import pytest
import torch
from helpers import TINY

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.core.io import load_checkpoint
from prime.runs.config import TrainConfig
from prime.runs.distributed import launch, process_group
from prime.runs.sweep import chip_seeds, sweep_chips

CONFIG = TrainConfig(dataset=TINY, epochs=1, batch_size=8, lr=0.05, chip_seed=5)


def test_each_chip_is_its_own_run_and_the_statistics_are_across_chips(tmp_path):
    summary = sweep_chips(CONFIG, 3, tmp_path)
    assert chip_seeds(CONFIG, 3) == [5, 6, 7]
    accuracies = []
    chips = []
    for seed in (5, 6, 7):
        metrics = json.loads((tmp_path / f"chip-{seed}" / "metrics.json").read_text())
        payload = load_checkpoint(tmp_path / f"chip-{seed}" / "checkpoint.pt")
        assert payload["model_config"]["chip_seed"] == seed
        assert payload["train_config"]["seed"] == CONFIG.seed  # same scores seed, other chip
        accuracies.append(metrics["test_accuracy"])
        chips.append(payload["model_state"]["layers.0.g_us"])
    assert not torch.equal(chips[0], chips[1]) and not torch.equal(chips[1], chips[2])
    stats = summary["test_accuracy"]
    assert stats["mean"] == pytest.approx(statistics.fmean(accuracies))
    assert stats["std"] == pytest.approx(statistics.stdev(accuracies))
    assert (stats["min"], stats["max"]) == (min(accuracies), max(accuracies))
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["chip_seed"]) for r in rows] == [5, 6, 7]
    assert [float(r["test_accuracy"]) for r in rows] == accuracies
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((tmp_path / "sweep.json").read_text())["test_accuracy"] == stats

    with pytest.raises(PrimeError, match="already holds a sweep"):
        sweep_chips(CONFIG, 3, tmp_path)


def test_resume_keeps_finished_chips_and_trains_the_rest(tmp_path):
    sweep_chips(CONFIG, 2, tmp_path)
    kept = (tmp_path / "chip-5" / "metrics.json").stat().st_mtime_ns
    first = json.loads((tmp_path / "sweep.json").read_text())
    (tmp_path / "chip-6" / "metrics.json").unlink()  # chip 6 "killed" after its checkpoint
    assert main(["sweep", "--resume", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "chip-5" / "metrics.json").stat().st_mtime_ns == kept
    again = json.loads((tmp_path / "sweep.json").read_text())
    assert again["test_accuracy"] == first["test_accuracy"]


def _sweep_rank(out):
    with process_group():
        return sweep_chips(CONFIG, 3, out)["test_accuracy"]


@pytest.mark.slow
def test_two_ranks_share_the_chips(tmp_path):
    stats = launch(2, _sweep_rank, tmp_path)
    with open(tmp_path / "sweep.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(int(r["chip_seed"]), int(r["rank"])) for r in rows] == [(5, 0), (6, 1), (7, 0)]
    assert stats[0] == stats[1]  # every rank gathers every chip's result
    alone = sweep_chips(CONFIG, 3, tmp_path / "alone")["test_accuracy"]
    assert stats[0] == alone  # the same chips, trained the same way, wherever they ran
