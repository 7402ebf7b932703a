"""Run directories: loading a trained run, its data and its chip trace.

A run directory holds ``checkpoint.pt`` (scores, conductances, masks, optimizer, config,
seed, versions), ``metrics.json`` and ``summary.md``, all written atomically
(:mod:`prime.runs.train` writes them). This module reads them back:
:func:`load_run` (model and payload), :func:`run_config`, :func:`load_data` (the run's data),
:func:`prepare_run` (ready to evaluate, optionally on another chip or trace) and
:func:`replaying` (a chip trace bound for the length of a ``with`` block).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from prime.core.errors import PrimeError
from prime.core.io import load_checkpoint
from prime.data import DataSplits, dataset_len, load_dataset
from prime.hardware.replay import TraceReplay, open_replay
from prime.runs.config import TrainConfig
from prime.snn.config import ModelConfig
from prime.snn.models import build_model, model_spec
from prime.snn.network import SpikingNetwork


def load_data(config: TrainConfig) -> DataSplits:
    """The run's data; with ``limit_train``, a seeded subset of that many training samples."""
    spec = model_spec(config.model_name)
    data = load_dataset(
        config.dataset,
        timesteps=config.timesteps or spec.timesteps,
        seed=config.seed,
        **config.data,
    )
    if config.limit_train is None or config.limit_train >= dataset_len(data.train):
        return data
    order = torch.randperm(
        dataset_len(data.train), generator=torch.Generator().manual_seed(config.seed)
    )
    subset = Subset(data.train, order[: config.limit_train].tolist())
    return dataclasses.replace(data, train=subset)


def load_run(run_dir: str | Path) -> tuple[SpikingNetwork, dict[str, Any]]:
    """The trained model of a run directory (or checkpoint file) and its checkpoint payload."""
    path = Path(run_dir)
    path = path / "checkpoint.pt" if path.is_dir() else path
    payload = load_checkpoint(path)
    model = build_model(ModelConfig.from_dict(payload["model_config"]))
    model.load_state_dict(payload["model_state"])
    return model.eval(), payload


def reform_chip(model: SpikingNetwork, chip_seed: int) -> None:
    """Form new conductances with ``chip_seed`` (same device model), keeping the scores."""
    config = dataclasses.replace(model.config, chip_seed=chip_seed)
    fresh = build_model(config)
    model.load_conductances([layer.g_us for layer in fresh.memristor_layers()])
    model.config = config


def prepare_run(
    run_dir: str | Path, chip_seed: int | None = None, replay: dict[str, Any] | None = None
) -> tuple[SpikingNetwork, Any, Any]:
    """(model, TrainConfig, DataSplits) of a run to evaluate; see :func:`evaluate_run`."""
    model, payload = load_run(run_dir)
    overrides = {k: v for k, v in (replay or {}).items() if v is not None}
    config = dataclasses.replace(run_config(payload), **overrides)
    if chip_seed is not None:
        if overrides.get("trace"):
            raise PrimeError(
                "--chip-seed forms a random chip and --trace replays a measured one: pass one"
            )
        config.trace = None
        reform_chip(model, chip_seed)
    return model, config, load_data(config)


def run_config(payload: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint payload records (runs written before the
    device model's field was renamed store it as ``device``)."""
    settings = dict(payload["train_config"])
    if "device" in settings and "device_model" not in settings:
        settings["device_model"] = settings.pop("device")
    return TrainConfig(**settings)


@contextlib.contextmanager
def replaying(
    model: SpikingNetwork, config: TrainConfig, position: int = 0
) -> Iterator[TraceReplay | None]:
    """The run's chip trace bound to ``model`` inside the block (None where the run has no
    trace); the file is closed and the model detached however the block ends."""
    replay = open_replay(model, config, position)
    try:
        yield replay
    finally:
        if replay is not None:
            replay.close()
