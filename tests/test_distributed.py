"""Data-parallel training over torch.distributed (gloo): same steps as one process, rank 0
writes, a stalled rank stops the job, --resume continues it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TINY, load_factor, load_tiny

import prime.core.io
from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.core.io import load_checkpoint
from prime.runs.config import TrainConfig
from prime.runs.distributed import Ranks, launch, process_group
from prime.runs.train import _epoch_batches, train
from prime.snn.models import get_model

ROOT = Path(__file__).resolve().parents[1]


def _train_rank(config: TrainConfig, out: Path) -> list[str]:
    """One rank of a job: train, and return the paths this process wrote."""
    written = []
    atomic_path = prime.core.io.atomic_path

    def recording(path):
        written.append(str(path))
        return atomic_path(path)

    prime.core.io.atomic_path = recording
    with process_group():
        train(config, out, progress=False)
    return written


def _scores(run: Path) -> list[torch.Tensor]:
    state = load_checkpoint(run / "checkpoint.pt")["model_state"]
    return [v for k, v in state.items() if k.endswith("scores")]


@pytest.mark.slow
def test_two_gloo_ranks_step_like_one_process_and_only_rank_0_writes(tmp_path):
    # one global batch of 7 samples: the ranks take 4 and 3, the loss must still be the mean
    # with augmentation and the per-step loss: each rank moves its share of the batch alike
    config = TrainConfig(
        dataset=TINY,
        epochs=1,
        batch_size=8,
        lr=0.05,
        augment={"shift_px": 2, "rotate_deg": 10.0},
        exit_loss=0.3,
    )
    train(config, tmp_path / "one", progress=False)
    written = launch(2, _train_rank, config, tmp_path / "two")

    assert written[1] == [] and len(written[0]) >= 3  # checkpoint, metrics, summary
    assert all(Path(p).parent == tmp_path / "two" for p in written[0])
    initial = [layer.scores for layer in get_model("nmnist-conv").memristor_layers()]
    for one, two, before in zip(
        _scores(tmp_path / "one"), _scores(tmp_path / "two"), initial, strict=True
    ):
        assert not torch.allclose(one, before, atol=1e-3)  # the step did move the scores
        torch.testing.assert_close(two, one, atol=1e-5, rtol=0)


def test_ranks_share_exactly_the_global_batches():
    data = load_tiny(train_size=29)
    config = TrainConfig(dataset=TINY, batch_size=8)
    one, _ = _epoch_batches(data.train, config, 3, Ranks(0, 1))
    ranks = [_epoch_batches(data.train, config, 3, Ranks(r, 2))[0] for r in (0, 1)]
    for (x, y), (x0, y0), (x1, y1) in zip(one, *ranks, strict=True):
        assert len(y0) - len(y1) in (0, 1)
        assert sorted(y0.tolist() + y1.tolist()) == sorted(y.tolist())
        assert x0.shape[1] + x1.shape[1] == x.shape[1]


def test_batches_that_cannot_be_shared_are_refused(tmp_path):
    with pytest.raises(PrimeError, match="divisible by 2"):
        train(TrainConfig(dataset=TINY, batch_size=7), tmp_path, ranks=Ranks(0, 2))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_stalled_rank_stops_the_job_and_resume_finishes(tmp_path):
    out = tmp_path / "run"
    argv = ["train", "--dataset", TINY, "--out", str(out), "--epochs", "15", "--batch-size"]
    argv += ["8", "--save-every", "2", "--quiet", "--threads", "1"]
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    env.update(WORLD_SIZE="2", PRIME_DIST_TIMEOUT_S="3", PYTHONPATH=str(ROOT / "tests"))
    code = f"import sys, helpers; from prime.cli.main import main; sys.exit(main({argv!r}))"
    ranks = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    try:
        # deadlines scale with the machine's load: a stall must be noticed within a few
        # multiples of PRIME_DIST_TIMEOUT_S (3 s), never after gloo's default of 30 minutes
        deadline = time.monotonic() + 40 * load_factor()
        while not (out / "checkpoint.pt").exists():
            assert all(r.poll() is None for r in ranks), "a rank ended before a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint"
            time.sleep(0.05)
        ranks[1].send_signal(signal.SIGSTOP)  # a hung rank: alive, but never answers
        stopped, slack = time.monotonic(), load_factor()
        _, stderr = ranks[0].communicate(timeout=30 * slack)
        assert time.monotonic() - stopped < 20 * slack
    finally:
        for process in ranks:
            process.kill()
            process.wait()
    assert ranks[0].returncode == 1
    assert "rank 0 of 2 lost the other ranks" in stderr and "--resume" in stderr
    assert "Traceback" not in stderr
    progress = load_checkpoint(out / "checkpoint.pt")["progress"]
    assert progress["epoch"] < 15

    assert main(["train", "--resume", "--out", str(out), "--quiet"]) == 0
    history = load_checkpoint(out / "checkpoint.pt")["progress"]["history"]
    assert [h["epoch"] for h in history] == list(range(1, 16))
