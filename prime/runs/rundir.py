"""Run directories: loading a trained run, its data and its chip trace.

A run directory holds ``checkpoint.pt`` (scores, conductances, masks, optimizer, config,
seed, versions, the sha256 fingerprints of its trace and data), ``metrics.json`` and
``summary.md``, all written atomically (:mod:`prime.runs.train` writes them). This module
reads them back: :func:`load_run` (model and payload), :func:`run_config`,
:func:`load_data` / :func:`load_run_data` (the run's data), :func:`prepare_run` (ready to
evaluate, optionally on another chip or trace; a changed trace refused, changed test data
warned about) and :func:`replaying` (a chip trace bound for the length of a ``with`` block).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Subset

from prime.core import io
from prime.core.device import module_device, resolve_device
from prime.core.errors import PrimeError
from prime.data import DataSplits, MissingData, content_sha256, dataset_len, load_dataset
from prime.hardware.periphery import ReadPathConfig
from prime.hardware.readpath import CHIP_BUFFERS
from prime.hardware.replay import TraceReplay, open_replay
from prime.inference.calibrate import calibrate_periphery
from prime.runs.config import TrainConfig
from prime.snn.config import ModelConfig
from prime.snn.digital import fold_batch_norms
from prime.snn.models import build_model, model_spec
from prime.snn.network import SpikingNetwork
from prime.snn.switching import SwitchCounter


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


def load_run_data(config: TrainConfig) -> DataSplits:
    """:func:`load_data` of a trained run, whose data options cannot be changed: missing
    files are to be put back where the run was trained on them."""
    try:
        return load_data(config)
    except MissingData as exc:
        raise PrimeError(
            f"{exc.problem}: the run was trained on them there; put them back (a trained run "
            "reads its data from the paths it was trained with, or from $PRIME_DATA where it "
            "used the default data root)"
        ) from None


#: what every run checkpoint holds, and what a resume needs as well
RUN_KEYS = ("train_config", "model_config", "model_state")
RESUME_KEYS = ("optimizer_state", "scheduler_state", "progress")


def load_checkpoint(path: str | Path, keys: tuple[str, ...] = RUN_KEYS) -> dict[str, Any]:
    """A run's checkpoint payload, its structure checked: ``keys`` present, every float in
    its model state finite (a PrimeError naming the problem otherwise)."""
    payload = io.load_checkpoint(path)
    missing = [key for key in keys if not isinstance(payload.get(key), dict)]
    if missing:
        raise PrimeError(
            f"{path} is not a complete prime run checkpoint: it lacks {', '.join(missing)} "
            "(written by another tool, or damaged); train the run again"
        )
    io.check_finite(payload["model_state"], f"{path}: model_state")
    return payload


def load_run(
    run_dir: str | Path, device: str | torch.device | None = None
) -> tuple[SpikingNetwork, dict[str, Any]]:
    """The trained model of a run directory (or checkpoint file) on ``device`` (default cpu)
    and its checkpoint payload (on the CPU: it is read there, checked and moved)."""
    path = Path(run_dir)
    path = path / "checkpoint.pt" if path.is_dir() else path
    payload = load_checkpoint(path)
    try:
        run_config(payload)  # imports the user modules the run needs
    except PrimeError as exc:
        raise PrimeError(f"{path}: {exc}") from None
    try:
        model = build_model(ModelConfig.from_dict(payload["model_config"]))
        model.load_state_dict(payload["model_state"])
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, PrimeError):
            raise PrimeError(f"{path}: {exc}") from None
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PrimeError(
            f"{path}: its model_state does not fit its model_config ({first}); the checkpoint "
            "was altered, written by another version, or holds periphery state (calibrated "
            "ranges, ADC variation) of other layers or tiles: train the run again"
        ) from None
    if payload.get("switches") and payload["switches"]["counts"]:
        SwitchCounter(model.memristor_layers()).load_state_dict(payload["switches"])
    return model.to(resolve_device(device)).eval(), payload


def with_periphery(model: SpikingNetwork, periphery: ReadPathConfig) -> SpikingNetwork:
    """``model`` rebuilt on another periphery, in evaluation: the same chip (cells as
    loaded), scores and batch norm (folded into the digital units where the periphery says
    ``fold_batch_norm``), the new periphery's ADC variation from the chip seed, its ranges
    open (calibrate them: :func:`prime.inference.calibrate.calibrate_periphery`)."""
    fresh = build_model(dataclasses.replace(model.config, read_path=periphery.to_dict()))
    fresh.to(module_device(model))
    state = {k: v for k, v in model.state_dict().items() if ".read_path." not in k}
    fresh.load_state_dict(state, strict=False)  # the read-path buffers stay the new ones
    for layer, old in zip(fresh.memristor_layers(), model.memristor_layers(), strict=True):
        layer.reset_us = old.reset_us
    fresh.eval()
    if periphery.fold_batch_norm and not fold_batch_norms(fresh.layers):
        raise PrimeError(
            f"fold_batch_norm: model {model.config.name} has no batch norm right after a "
            "crossbar to fold; drop fold_batch_norm from the periphery"
        )
    return fresh


def reform_chip(model: SpikingNetwork, chip_seed: int) -> None:
    """Form new conductances with ``chip_seed`` (same device model), keeping the scores."""
    config = dataclasses.replace(model.config, chip_seed=chip_seed)
    fresh = build_model(config)
    model.load_conductances([layer.g_us for layer in fresh.memristor_layers()])
    for layer, new in zip(model.memristor_layers(), fresh.memristor_layers(), strict=True):
        for name in CHIP_BUFFERS:  # the new chip's converters
            if hasattr(new.read_path, name):
                getattr(layer.read_path, name).copy_(getattr(new.read_path, name))
    model.config = config


def prepare_run(
    run_dir: str | Path,
    chip_seed: int | None = None,
    replay: dict[str, Any] | None = None,
    periphery: ReadPathConfig | None = None,
    device: str | torch.device | None = None,
) -> tuple[SpikingNetwork, Any, Any]:
    """(model, TrainConfig, DataSplits) of a run to evaluate on ``device``; see
    :func:`evaluate_run`. ``periphery`` evaluates it on another periphery, calibrated on its
    training data."""
    model, payload = load_run(run_dir, device)
    return prepare_loaded(model, payload, chip_seed, replay, periphery)


def prepare_loaded(
    model: SpikingNetwork,
    payload: dict[str, Any],
    chip_seed: int | None = None,
    replay: dict[str, Any] | None = None,
    periphery: ReadPathConfig | None = None,
) -> tuple[SpikingNetwork, Any, Any]:
    """:func:`prepare_run` of a run already loaded (:func:`load_run`'s model and payload)."""
    overrides = {k: v for k, v in (replay or {}).items() if v is not None}
    config = run_config(payload)
    if "trace" not in overrides:
        check_trace_unchanged(config, payload)
    config = dataclasses.replace(config, **overrides)
    unused = [f"--{name}" for name in ("replay", "pruned", "tile") if name in overrides]
    if unused and not config.trace:
        raise PrimeError(
            f"{', '.join(unused)} set how a chip trace is replayed, and this run has none: "
            "add --trace FILE or drop them"
        )
    if chip_seed is not None:
        if overrides.get("trace"):
            raise PrimeError(
                "--chip-seed forms a random chip and --trace replays a measured one: pass one"
            )
        trained_on = f"trace {config.trace}" if config.trace else f"chip {model.config.chip_seed}"
        if config.trace or chip_seed != model.config.chip_seed:
            print(
                f"prime: note: the masks belong to {trained_on}; accuracy on chip {chip_seed} "
                "is expected near chance",
                file=sys.stderr,
            )
        config.trace = None
        reform_chip(model, chip_seed)
    data = load_run_data(config)
    if changed_data(payload, data, ("test",)):
        print(
            f"prime: warning: the test data of {config.dataset} changed since the run was "
            "trained (its files differ): this accuracy is not comparable with the run's metrics",
            file=sys.stderr,
        )
    if periphery is None and ReadPathConfig.from_dict(config.read_path).fold_batch_norm:
        periphery = ReadPathConfig.from_dict(config.read_path)  # folds, then recalibrates
    if periphery is not None:
        # a periphery that contradicts the run (its trace's tiles) fails here
        config = dataclasses.replace(config, read_path=periphery.to_dict())
        model = with_periphery(model, periphery)
        calibrate_periphery(model, data.train, config.seed)
    return model, config, data


def run_config(payload: dict[str, Any]) -> TrainConfig:
    """The :class:`TrainConfig` a checkpoint payload records (runs written before the
    device model's field was renamed store it as ``device``)."""
    settings = dict(payload["train_config"])
    if "device" in settings and "device_model" not in settings:
        settings["device_model"] = settings.pop("device")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise PrimeError(
            f"the run's train_config has unknown settings {', '.join(unknown)} (written by a "
            "newer prime, or altered): upgrade prime or train the run again"
        )
    return TrainConfig(**settings)


def check_trace_unchanged(config: TrainConfig, payload: dict[str, Any]) -> None:
    """Refuse a run's chip trace whose content changed since the run was trained (the
    checkpoint records its sha256; runs written before that are not checked)."""
    recorded = payload.get("fingerprints", {}).get("trace_sha256")
    if not config.trace or recorded is None:
        return
    if not Path(config.trace).is_file():
        raise PrimeError(
            f"the run's chip trace {config.trace} is gone: restore it, or pass --trace FILE to "
            "evaluate on another trace"
        )
    now = io.file_sha256(config.trace)
    if now != recorded:
        raise PrimeError(
            f"the run's chip trace {config.trace} changed since the run was trained (sha256 "
            f"{recorded[:12]}… then, {now[:12]}… now): restore it, or pass --trace "
            f"{config.trace} to evaluate on the new content knowingly"
        )


SPLITS = ("train", "test")


def data_fingerprints(data: DataSplits) -> dict[str, str]:
    """sha256 of each split's content (splits of a dataset that does not hold its tensors
    are left out)."""
    digests = {split: content_sha256(getattr(data, split)) for split in SPLITS}
    return {split: digest for split, digest in digests.items() if digest is not None}


def changed_data(payload: dict[str, Any], data: DataSplits, splits: tuple[str, ...]) -> list[str]:
    """Those of ``splits`` whose content differs from what the run recorded when it was
    trained (runs written before that record nothing and are not checked)."""
    recorded = payload.get("fingerprints", {}).get("data_sha256", {})
    return [
        split
        for split in splits
        if split in recorded and content_sha256(getattr(data, split)) != recorded[split]
    ]


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
