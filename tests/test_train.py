"""Training runs: the built-in dataset, checkpoints, resume after a kill, the CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from prime.cli.main import main
from prime.core.io import load_checkpoint
from prime.data.digits import EVENT_DTYPE, make_events, split_indices
from prime.runs.config import TrainConfig
from prime.runs.rundir import load_run
from prime.runs.train import train

TINY = dict(epochs=2, batch_size=32, limit_train=96, save_every=2)


def test_digits_events_are_deterministic_tonic_arrays():
    indices = np.arange(12)
    a, labels = make_events(seed=3, indices=indices)
    b, _ = make_events(seed=3, indices=indices)
    c, _ = make_events(seed=4, indices=indices)
    assert labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    for ea, eb in zip(a, b, strict=True):
        assert ea.dtype == EVENT_DTYPE and np.array_equal(ea, eb)
        assert (np.diff(ea["t"]) >= 0).all() and ea["t"].max() < 300_000
        assert ea["x"].max() < 34 and ea["y"].max() < 34 and set(np.unique(ea["p"])) <= {0, 1}
        assert 500 < len(ea) < 10_000  # N-MNIST recordings have 1,000-7,000 events
    assert not np.array_equal(a[0]["t"], c[0]["t"])


def test_digits_split_is_fixed_and_stratified():
    labels = np.repeat(np.arange(10), 50)
    train_a, test_a = split_indices(labels)
    train_b, test_b = split_indices(labels)
    assert np.array_equal(test_a, test_b) and np.array_equal(train_a, train_b)
    assert len(test_a) == 100 and np.bincount(labels[test_a]).tolist() == [10] * 10


def test_run_directory_and_reload(tmp_path):
    metrics = train(TrainConfig(**{**TINY, "epochs": 1}), tmp_path, progress=False)
    assert {p.name for p in tmp_path.iterdir()} >= {"checkpoint.pt", "metrics.json", "summary.md"}
    assert metrics["kept_fraction"] == 0.5 and metrics["conductances_unchanged"]
    payload = load_checkpoint(tmp_path / "checkpoint.pt")
    assert payload["train_config"]["seed"] == 0 and "torch" in payload["versions"]
    model, _ = load_run(tmp_path)
    for mask, layer in zip(payload["masks"], model.memristor_layers(), strict=True):
        assert torch.equal(mask, layer.export_mask())
    with pytest.raises(Exception, match="already holds a run"):
        train(TrainConfig(**TINY), tmp_path, progress=False)


@pytest.mark.slow
def test_resume_after_kill_continues_where_it_stopped(tmp_path):
    # one thread everywhere: results are then bit-reproducible across processes
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _kill_and_resume(tmp_path)
    finally:
        torch.set_num_threads(threads)


def _kill_and_resume(tmp_path):
    # with augmentation and the per-step loss: a resumed run draws the same moves
    moved = dict(augment={"shift_px": 2, "rotate_deg": 10.0}, exit_loss=0.3)
    reference = tmp_path / "uninterrupted"
    train(TrainConfig(**TINY, **moved), reference, progress=False)

    killed = tmp_path / "killed"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in TINY.items()]
    args += ["--shift-px=2", "--rotate-deg=10", "--exit-loss=0.3"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "prime", "train", *args, "--threads=1", "--out", str(killed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (killed / "checkpoint.pt").exists() and proc.poll() is None:
        assert time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    progress = load_checkpoint(killed / "checkpoint.pt")["progress"]
    assert (progress["epoch"], progress["step_in_epoch"]) < (2, 0), "killed too late"

    metrics = train(None, killed, resume=True, progress=False)
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    a = load_checkpoint(reference / "checkpoint.pt")["model_state"]
    b = load_checkpoint(killed / "checkpoint.pt")["model_state"]
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_cli_errors_are_one_line_without_traceback(tmp_path, capsys):
    assert main(["train", "--keep", "0", "--out", str(tmp_path / "a")]) == 1
    assert "kept fraction must be in (0, 1]" in capsys.readouterr().err
    assert main(["train", "--model", "nope", "--out", str(tmp_path / "b")]) == 1
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["train", "--resume", "--out", str(tmp_path / "c")]) == 1
    assert "nothing to resume" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    assert main(["eval", str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert "not a readable PyTorch checkpoint" in err and "Traceback" not in err
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert main(["eval", str(foreign)]) == 1
    assert "is not a prime checkpoint" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_train_then_eval_with_noise_and_other_chip(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["--epochs=1", "--batch-size=64", "--limit-train=128", "--quiet"]
    assert main(["train", *args, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "kept fraction 0.5000" in out
    assert main(["eval", str(run), "--read-noise", "0.02", "--mode", "single"]) == 0
    assert "read noise σ 0.02" in capsys.readouterr().out
    assert main(["eval", str(run), "--chip-seed", "5"]) == 0
    assert "chip seed 5" in capsys.readouterr().out
