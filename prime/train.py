"""Training: learn only the supermask scores; the chip's conductances never change.

A run directory holds ``checkpoint.pt`` (scores, conductances, masks, optimizer, config,
seed, versions), ``metrics.json`` and ``summary.md``; all written atomically. ``resume``
continues a killed run from its last checkpoint, bit for bit where it stopped: the data
order of every epoch is drawn from (seed, epoch).
"""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Subset
from tqdm.auto import tqdm

import prime
from prime.checkpoint import load_checkpoint, save_checkpoint, write_json
from prime.data import DataSplits, dataset_spec, iterate_batches, load_dataset
from prime.errors import PrimeError
from prime.evaluate import evaluate
from prime.models import ModelConfig, build_model, model_spec
from prime.network import SpikingNetwork
from prime.replay import DEFAULT_TILE, open_replay


@dataclass
class TrainConfig:
    """A training run. ``model=None`` takes the dataset's default model."""

    dataset: str = "digits"
    model: str | None = None
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    chip_seed: int | None = None
    device: str | dict[str, Any] = "prime-gaussian"
    keep: float = 0.5
    scale: float | str = 0.01
    mask_scope: str = "layer"
    timesteps: int | None = None
    mode: str = "multi"
    save_every: int = 50
    limit_train: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    trace: str | None = None  # chip trace (HDF5) whose reads replace the chip, prime.replay
    replay: str = "static"
    pruned: str = "zero"
    tile: tuple[int, int] = DEFAULT_TILE

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "save_every", "limit_train"):
            value = getattr(self, name)
            if name == "limit_train" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise PrimeError(f"{name} must be a whole number >= 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise PrimeError(f"lr must be a number > 0, got {self.lr!r}")

    @property
    def model_name(self) -> str:
        return self.model or dataset_spec(self.dataset).default_model


def versions() -> dict[str, str]:
    import snntorch
    import tonic

    return {
        "prime": prime.__version__,
        "torch": str(torch.__version__),
        "snntorch": snntorch.__version__,
        "tonic": tonic.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _model_config(config: TrainConfig) -> ModelConfig:
    device = {"name": config.device} if isinstance(config.device, str) else config.device
    return ModelConfig(
        name=config.model_name,
        device=device,
        chip_seed=config.seed if config.chip_seed is None else config.chip_seed,
        score_seed=config.seed,
        keep=config.keep,
        scale=config.scale,
        mask_scope=config.mask_scope,
        timesteps=config.timesteps,
    )


def load_data(config: TrainConfig) -> DataSplits:
    """The run's data; with ``limit_train``, a seeded subset of that many training samples."""
    spec = model_spec(config.model_name)
    data = load_dataset(
        config.dataset,
        timesteps=config.timesteps or spec.timesteps,
        seed=config.seed,
        **config.data,
    )
    if config.limit_train is None or config.limit_train >= len(data.train):
        return data
    keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(config.seed))
    subset = Subset(data.train, keep[: config.limit_train].tolist())
    return dataclasses.replace(data, train=subset)


def train(
    config: TrainConfig | None, out_dir: str | Path, resume: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train into ``out_dir`` and return the metrics.

    ``resume`` continues the run in ``out_dir`` with its own config (``config`` may be None).
    """
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / "checkpoint.pt"
    if resume:
        if not checkpoint_path.is_file():
            raise PrimeError(f"nothing to resume: {checkpoint_path} does not exist")
        payload = load_checkpoint(checkpoint_path)
        config = TrainConfig(**payload["train_config"])
    elif config is None:
        raise PrimeError("a new run needs a TrainConfig")
    elif checkpoint_path.exists():
        raise PrimeError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    torch.manual_seed(config.seed)
    data = load_data(config)
    model = build_model(_model_config(config))
    _check_data_fits(model, data, config)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    steps_per_epoch = math.ceil(len(data.train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps_per_epoch
    )
    state = {"epoch": 0, "step_in_epoch": 0, "history": [], "wall_seconds": 0.0}
    if resume:
        model.load_state_dict(payload["model_state"])
        optimizer.load_state_dict(payload["optimizer_state"])
        scheduler.load_state_dict(payload["scheduler_state"])
        state = payload["progress"]
        print(f"resuming {out_dir} at epoch {state['epoch'] + 1}, step {state['step_in_epoch']}")
    replay = open_replay(model, config, position=state.get("trace_read", 0))
    if replay and progress:
        print(f"replaying {config.trace} ({config.replay}): {replay.placement.report()}")
    conductances = [layer.g_us.clone() for layer in model.memristor_layers()]
    started = time.perf_counter() - state["wall_seconds"]

    def save() -> None:
        state["wall_seconds"] = time.perf_counter() - started
        if replay:
            state["trace_read"] = replay.position
        save_checkpoint(
            checkpoint_path,
            {
                "train_config": dataclasses.asdict(config),
                "model_config": model.config.to_dict(),
                "model_state": model.state_dict(),
                "masks": [m.bool() for m in model.masks()],
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "progress": state,
                "versions": versions(),
            },
        )

    while state["epoch"] < config.epochs:
        epoch = state["epoch"]
        model.train()
        order = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        loader, count = iterate_batches(data.train, config.batch_size, order)
        bar = tqdm(
            total=count,
            initial=state["step_in_epoch"],
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not progress,
            leave=False,
        )
        sums = state.setdefault("epoch_sums", {"loss": 0.0, "correct": 0, "n": 0})
        for step, (x, y) in enumerate(loader):
            if step < state["step_in_epoch"]:
                continue
            logits = model.logits(x, config.mode)
            loss = F.cross_entropy(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            sums["loss"] += loss.item() * len(y)
            sums["correct"] += (logits.argmax(1) == y).sum().item()
            sums["n"] += len(y)
            state["step_in_epoch"] = step + 1
            bar.update()
            bar.set_postfix(
                loss=f"{sums['loss'] / sums['n']:.3f}", acc=f"{sums['correct'] / sums['n']:.3f}"
            )
            if state["step_in_epoch"] % config.save_every == 0 and step + 1 < count:
                save()
        bar.close()
        test = evaluate(model, data.test, mode=config.mode)
        state["history"].append(
            {
                "epoch": epoch + 1,
                "train_loss": sums["loss"] / max(sums["n"], 1),
                "train_accuracy": sums["correct"] / max(sums["n"], 1),
                "test_loss": test["loss"],
                "test_accuracy": test["accuracy"],
                "lr": scheduler.get_last_lr()[0],
                "wall_seconds": time.perf_counter() - started,
            }
        )
        if progress:
            h = state["history"][-1]
            print(
                f"epoch {epoch + 1}/{config.epochs}: train loss {h['train_loss']:.3f} "
                f"acc {h['train_accuracy']:.3f} | test acc {h['test_accuracy']:.4f} "
                f"| {h['wall_seconds']:.0f} s"
            )
        state.update(epoch=epoch + 1, step_in_epoch=0)
        del state["epoch_sums"]
        save()

    if replay:  # the layers hold the last read loaded, not the chip they started on
        unchanged = replay.conductances_match()
        replay.close()
    else:
        unchanged = all(
            torch.equal(before, layer.g_us)
            for before, layer in zip(conductances, model.memristor_layers(), strict=True)
        )
    metrics = {
        "model": config.model_name,
        "dataset": config.dataset,
        "test_accuracy": state["history"][-1]["test_accuracy"],
        "kept_fraction": model.kept_fraction(),
        "conductances_unchanged": unchanged,
        "epochs": config.epochs,
        "wall_seconds": state["wall_seconds"],
        "history": state["history"],
        "config": dataclasses.asdict(config),
    }
    write_json(out_dir / "metrics.json", metrics)
    _write_summary(out_dir / "summary.md", metrics, model)
    return metrics


def _check_data_fits(model: SpikingNetwork, data: DataSplits, config: TrainConfig) -> None:
    if tuple(data.input_shape) != model.input_shape or data.num_classes != model.num_classes:
        raise PrimeError(
            f"model {config.model_name!r} expects input {model.input_shape} and "
            f"{model.num_classes} classes, dataset {config.dataset!r} gives "
            f"{tuple(data.input_shape)} and {data.num_classes}; choose a matching --model"
        )


def _write_summary(path: Path, metrics: dict[str, Any], model: SpikingNetwork) -> None:
    from prime.checkpoint import atomic_write

    lines = [
        f"# {metrics['model']} on {metrics['dataset']}",
        "",
        f"- test accuracy: {100 * metrics['test_accuracy']:.2f} %",
        f"- kept fraction of edges: {metrics['kept_fraction']:.4f}",
        f"- conductances unchanged by training: {metrics['conductances_unchanged']}",
        f"- epochs: {metrics['epochs']}, wall time: {metrics['wall_seconds']:.1f} s",
        "",
        "| epoch | train loss | train acc | test acc | wall s |",
        "|---|---|---|---|---|",
        *(
            f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_accuracy']:.4f} "
            f"| {h['test_accuracy']:.4f} | {h['wall_seconds']:.1f} |"
            for h in metrics["history"]
        ),
        "",
        "```",
        str(model),
        "```",
        "",
    ]
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines)))


def load_run(run_dir: str | Path) -> tuple[SpikingNetwork, dict[str, Any]]:
    """The trained model of a run directory (or checkpoint file) and its checkpoint payload."""
    path = Path(run_dir)
    path = path / "checkpoint.pt" if path.is_dir() else path
    payload = load_checkpoint(path)
    model = build_model(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["model_state"])
    return model.eval(), payload
