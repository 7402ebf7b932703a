"""Read-noise robustness: levels, recorded seeds, fresh noise, trace replay, the eval CLI."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import TINY, load_tiny, tiny_network

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.data import FrameDataset
from prime.hardware.traces.format import TraceInfo, write_trace
from prime.inference.robustness import parse_noise_levels, read_noise_sweep, summarize
from prime.runs.config import TrainConfig
from prime.runs.train import train
from prime.snn.models import get_model


def test_noise_levels_parse_and_refuse_bad_values():
    assert parse_noise_levels("0,0.02, 0.1") == [0.0, 0.02, 0.1]
    assert parse_noise_levels("0.05") == [0.05]
    for bad in ("", "0,-0.1", "a,0.1", "nan", "inf"):
        with pytest.raises(PrimeError, match="σ values >= 0"):
            parse_noise_levels(bad)


@pytest.mark.slow
def test_repeats_use_recorded_seeds_and_fresh_noise():
    model = get_model("nmnist-mlp", chip_seed=1)
    test = load_tiny().test
    rows = read_noise_sweep(model, test, [0.0, 0.3], repeats=3, seed=10, batch_size=4)
    assert [(r["read_noise"], r["noise_seed"]) for r in rows] == [
        (0.0, None),  # no noise, no trace: deterministic, evaluated once
        (0.3, 10),
        (0.3, 11),
        (0.3, 12),
    ]
    noisy = [r["loss"] for r in rows[1:]]
    assert len(set(noisy)) == 3 and rows[0]["loss"] not in noisy
    again = read_noise_sweep(model, test, [0.3], repeats=1, seed=11, batch_size=4)
    assert again[0]["loss"] == rows[2]["loss"]  # a recorded seed reproduces its repeat
    assert model.memristor_layers()[0].read_noise == 0.0  # the model is left noise-free

    summary = summarize(rows)
    assert [s["repeats"] for s in summary] == [1, 3]
    accuracies = [r["accuracy"] for r in rows[1:]]
    assert summary[1]["accuracy_mean"] == pytest.approx(np.mean(accuracies))
    assert summary[1]["accuracy_std"] == pytest.approx(np.std(accuracies, ddof=1))
    assert summary[1]["noise_seeds"] == "10 11 12"


def test_trace_repeats_start_at_successive_reads(tmp_path):
    model = tiny_network(seed=0, scale=0.2)
    g = torch.Generator().manual_seed(0)
    data = FrameDataset(torch.rand(8, 3, 6, generator=g), torch.arange(8) % 2)
    reads = np.random.default_rng(0).uniform(1, 20, (3, 8, 16)).astype(np.float32)
    trace = write_trace(tmp_path / "chip.h5", reads, TraceInfo())
    settings = SimpleNamespace(trace=str(trace), replay="static", pruned="zero", tile=(8, 8))
    rows = read_noise_sweep(model, data, [0.0], repeats=3, replay=settings)
    assert [r["trace_read"] for r in rows] == [0, 1, 2]
    assert len({r["loss"] for r in rows}) == 3  # each repeat ran on another measured read


def test_eval_cli_writes_the_report_and_keeps_a_single_level(tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(dataset=TINY, epochs=1, batch_size=8, lr=0.05), run, progress=False)
    out = tmp_path / "report"
    argv = ["eval", str(run), "--read-noise", "0,0.2", "--repeats", "2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "σ 0.2" in printed and "2 repeats" in printed
    with open(out / "read_noise_repeats.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["read_noise"], r["noise_seed"]) for r in rows] == [
        ("0.0", ""),
        ("0.2", "0"),
        ("0.2", "1"),
    ]
    with open(out / "read_noise.csv") as f:
        assert [r["repeats"] for r in csv.DictReader(f)] == ["1", "2"]
    assert (out / "read_noise.png").read_bytes()[:4] == b"\x89PNG"

    assert main(["eval", str(run), "--read-noise", "0.2", "--noise-seed", "1"]) == 0
    single = capsys.readouterr().out
    accuracy = 100 * float(rows[2]["accuracy"])
    assert f"read noise σ 0.2): test accuracy {accuracy:.2f} %" in single
