"""Evaluation of trained networks, optionally under read noise or on another chip."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from prime.data import iterate_batches
from prime.errors import PrimeError
from prime.network import SpikingNetwork


@torch.no_grad()
def evaluate(
    model: SpikingNetwork,
    dataset: Dataset,
    batch_size: int = 128,
    mode: str = "multi",
    progress: bool = False,
) -> dict[str, float]:
    """Accuracy and mean cross-entropy of the mean output over ``dataset``."""
    model.eval()
    correct, loss_sum, n = 0, 0.0, 0
    loader, count = iterate_batches(dataset, batch_size)
    for x, y in tqdm(loader, total=count, desc="eval", leave=False, disable=not progress):
        logits = model.logits(x, mode)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        n += len(y)
    return {"accuracy": correct / max(n, 1), "loss": loss_sum / max(n, 1), "samples": n}


def reform_chip(model: SpikingNetwork, chip_seed: int) -> None:
    """Form new conductances with ``chip_seed`` (same device model), keeping the scores."""
    from prime.models import build_model

    config = dataclasses.replace(model.config, chip_seed=chip_seed)
    fresh = build_model(config)
    for layer, new in zip(model.memristor_layers(), fresh.memristor_layers(), strict=True):
        layer.load_conductances(new.g_us)
    model.config = config


def prepare_run(
    run_dir: str | Path, chip_seed: int | None = None, replay: dict[str, Any] | None = None
) -> tuple[SpikingNetwork, Any, Any]:
    """(model, TrainConfig, DataSplits) of a run to evaluate; see :func:`evaluate_run`."""
    from prime.train import TrainConfig, load_data, load_run

    model, payload = load_run(run_dir)
    overrides = {k: v for k, v in (replay or {}).items() if v is not None}
    config = dataclasses.replace(TrainConfig(**payload["train_config"]), **overrides)
    if chip_seed is not None:
        if overrides.get("trace"):
            raise PrimeError(
                "--chip-seed forms a random chip and --trace replays a measured one: pass one"
            )
        config.trace = None
        reform_chip(model, chip_seed)
    return model, config, load_data(config)


def evaluate_run(
    run_dir: str | Path,
    read_noise: float = 0.0,
    noise_seed: int = 0,
    chip_seed: int | None = None,
    mode: str = "multi",
    batch_size: int = 128,
    progress: bool = True,
    replay: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Re-evaluate a run on its test split; see ``prime eval``.

    A run trained on a chip trace is evaluated on it (unless ``chip_seed`` re-forms a random
    chip); ``replay`` overrides its trace/replay/pruned/tile settings (None: keep).
    """
    from prime.replay import open_replay

    model, config, data = prepare_run(run_dir, chip_seed, replay)
    model.set_read_noise(read_noise, seed=noise_seed)
    trace = open_replay(model, config)
    result = evaluate(model, data.test, batch_size=batch_size, mode=mode, progress=progress)
    if trace:
        trace.close()
    return {
        **result,
        "model": config.model_name,
        "dataset": config.dataset,
        "read_noise": read_noise,
        "chip_seed": model.config.chip_seed,
        "trace": config.trace,
        "replay": config.replay if config.trace else None,
    }
