"""Chip-to-chip sweeps: K masks, each learned on its own independently formed random chip.

Chip k is formed from chip seed ``base + k`` (base: the config's chip seed, else its seed);
scores and data order keep the config's seed, so the spread across chips is the chip's
doing. Each chip is an ordinary run directory ``OUT/chip-<seed>``; the chips are spread
over the ranks of a torchrun job (chip k on rank k mod world size), each trained in one
process, and rank 0 writes ``sweep.csv`` (one line per chip), ``sweep.json`` (accuracy mean,
std, min, max) and ``sweep.png``. ``resume`` keeps finished chips and resumes the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from prime.core.device import resolve_device
from prime.core.errors import PrimeError
from prime.core.io import write_json
from prime.core.lock import exclusive
from prime.core.tables import describe, new_figure, save_figure, write_csv
from prime.runs.config import TrainConfig
from prime.runs.distributed import SINGLE, Ranks, collectives, current, rank_device, timeout_s
from prime.runs.train import train

CHIP_COLUMNS = ("chip_seed", "test_accuracy", "kept_fraction", "wall_seconds", "rank", "run_dir")
CONFIG_FILE = "sweep_config.json"


def chip_seeds(config: TrainConfig, chips: int) -> list[int]:
    """The K chip seeds of a sweep: consecutive from the config's chip seed (or seed)."""
    base = config.seed if config.chip_seed is None else config.chip_seed
    return [base + k for k in range(chips)]


def sweep_chips(
    config: TrainConfig | None,
    chips: int,
    out_dir: str | Path,
    resume: bool = False,
    ranks: Ranks | None = None,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train ``chips`` chips (this rank's share of them) and return the sweep's summary.

    ``progress``: rank 0 draws a progress bar of its chips' training (on a terminal only);
    every chip prints one line when it is done. ``device``: where the chips train (as
    :func:`prime.runs.train.train`: each rank of a CUDA job on its own GPU; the chips are
    those of the CPU, so a sweep on one device is the sweep on another).

    ``resume`` continues the sweep in ``out_dir`` with its own config (``config`` may be None).
    Rank 0 holds the sweep folder's write lock meanwhile (:func:`prime.core.lock.exclusive`).
    """
    ranks = current() if ranks is None else ranks
    # this rank's device: one this machine lacks (or too few GPUs) fails before any write
    device = rank_device(resolve_device(device))
    with exclusive(out_dir) if ranks.is_main else contextlib.nullcontext():
        show = progress and ranks.is_main
        return _sweep_chips(config, chips, Path(out_dir), resume, ranks, show, device)


def _sweep_chips(
    config: TrainConfig | None,
    chips: int,
    out_dir: Path,
    resume: bool,
    ranks: Ranks,
    progress: bool,
    device: str | torch.device | None,
) -> dict[str, Any]:
    config, chips = _sweep_config(config, chips, out_dir, resume)
    with collectives(ranks, f"the chips' run folders in {out_dir}"):
        if ranks.distributed:  # everyone has checked the folder before anyone writes to it
            dist.barrier()
        if ranks.is_main and not resume:
            stored = {"chips": chips, "config": dataclasses.asdict(config)}
            write_json(out_dir / CONFIG_FILE, stored)
        started = time.perf_counter()
        rows = [
            _train_chip(config, seed, out_dir, ranks, progress, device)
            for seed in chip_seeds(config, chips)[ranks.rank :: ranks.world_size]
        ]
        if ranks.distributed:
            # ranks with fewer or faster chips wait for the others, at most twice as long as
            # their own chips took (and at least the collective timeout)
            waited = max(timeout_s(), 2 * (time.perf_counter() - started))
            dist.monitored_barrier(timeout=timedelta(seconds=waited))
            gathered: list[list[dict[str, Any]]] = [[] for _ in range(ranks.world_size)]
            dist.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
    rows.sort(key=lambda row: row["chip_seed"])
    stats = describe([row["test_accuracy"] for row in rows])
    summary = {
        "model": config.model_name,
        "dataset": config.dataset,
        "chips": chips,
        "ranks": ranks.world_size,
        "test_accuracy": stats,
        "per_chip": rows,
        "config": dataclasses.asdict(config),
    }
    if ranks.is_main:
        write_csv(out_dir / "sweep.csv", rows, CHIP_COLUMNS)
        write_json(out_dir / "sweep.json", summary)
        _plot(out_dir / "sweep.png", summary)
    return summary


def _sweep_config(
    config: TrainConfig | None, chips: int, out_dir: Path, resume: bool
) -> tuple[TrainConfig, int]:
    saved = out_dir / CONFIG_FILE
    if resume:
        if not saved.is_file():
            raise PrimeError(f"nothing to resume: {saved} does not exist")
        stored = json.loads(saved.read_text())
        return TrainConfig(**stored["config"]), stored["chips"]
    if config is None:
        raise PrimeError("a new sweep needs a TrainConfig")
    if chips < 1:
        raise PrimeError(f"--chips must be >= 1, got {chips}")
    if saved.exists() or any(out_dir.glob("chip-*/checkpoint.pt")):
        raise PrimeError(
            f"{out_dir} already holds a sweep; pass --resume to continue it or choose another --out"
        )
    return config, chips


def _train_chip(
    config: TrainConfig,
    seed: int,
    out_dir: Path,
    ranks: Ranks,
    progress: bool,
    device: str | torch.device | None,
) -> dict[str, Any]:
    """Train (or resume, or reuse) the run of chip ``seed`` in this one process, on
    ``device`` (this rank's GPU in a CUDA job: :func:`prime.runs.distributed.rank_device`)."""
    run_dir = out_dir / f"chip-{seed}"
    if (run_dir / "metrics.json").is_file():
        metrics = json.loads((run_dir / "metrics.json").read_text())
    else:
        resume = (run_dir / "checkpoint.pt").is_file()
        chip_config = None if resume else dataclasses.replace(config, chip_seed=seed)
        metrics = train(
            chip_config,
            run_dir,
            resume,
            progress=progress,
            ranks=SINGLE,
            summaries=False,
            device=device,
        )
    print(
        f"chip seed {seed}: test accuracy {100 * metrics['test_accuracy']:.2f} % "
        f"(rank {ranks.rank}, {metrics['wall_seconds']:.1f} s)",
        flush=True,
    )
    return {
        "chip_seed": seed,
        "test_accuracy": metrics["test_accuracy"],
        "kept_fraction": metrics["kept_fraction"],
        "wall_seconds": metrics["wall_seconds"],
        "rank": ranks.rank,
        "run_dir": str(run_dir),
    }


def _plot(path: Path, summary: dict[str, Any]) -> None:
    """Test accuracy per chip, with the mean and ± one standard deviation."""
    rows, stats = summary["per_chip"], summary["test_accuracy"]
    fig, ax = new_figure()
    ax.plot([str(r["chip_seed"]) for r in rows], [100 * r["test_accuracy"] for r in rows], "o")
    mean, std = 100 * stats["mean"], 100 * stats["std"]
    ax.axhline(mean, color="k", label=f"mean {mean:.2f} %")
    ax.axhspan(mean - std, mean + std, color="k", alpha=0.15, label=f"± std {std:.2f}")
    ax.margins(y=0.5)
    ax.set(
        xlabel="chip seed",
        ylabel="test accuracy (%)",
        title=f"{summary['model']} on {summary['dataset']}: {summary['chips']} random chips",
    )
    ax.legend()
    save_figure(fig, path)
