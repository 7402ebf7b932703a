"""A run's settings: :class:`TrainConfig`, recorded in every checkpoint, and what it implies
(the model config, the versions a run records)."""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prime.core.errors import PrimeError
from prime.data import dataset_spec
from prime.data.augment import FrameAugmentation
from prime.hardware.faults import StuckCells
from prime.hardware.readpath import ReadPathConfig
from prime.hardware.replay import DEFAULT_TILE
from prime.snn.config import ModelConfig
from prime.version import __version__


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
    device_model: str | dict[str, Any] = "prime-gaussian"
    keep: float = 0.5
    scale: float | str = "matched"  # weights with the RMS of PRIME's chip (matched_scale)
    mask_scope: str = "layer"
    timesteps: int | None = None
    mode: str = "multi"
    save_every: int = 50
    limit_train: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    trace: str | None = (
        None  # chip trace (HDF5) whose reads replace the chip, prime.hardware.replay
    )
    replay: str = "static"
    pruned: str = "zero"
    tile: tuple[int, int] = DEFAULT_TILE
    augment: dict[str, Any] = field(default_factory=dict)  # FrameAugmentation fields
    exit_loss: float = 0.0  # weight of the per-step loss (training_loss)
    read_path: dict[str, Any] = field(default_factory=dict)  # ReadPathConfig fields
    #: read noise σ on every crossbar read while training (fresh per step, seeded)
    train_read_noise: float = 0.0
    #: stuck cells applied to the chip before training (StuckCells fields; empty: none)
    faults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "save_every", "limit_train"):
            value = getattr(self, name)
            if name == "limit_train" and value is None:
                continue
            if not isinstance(value, int) or value < 1:
                raise PrimeError(f"{name} must be a whole number >= 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise PrimeError(f"lr must be a number > 0, got {self.lr!r}")
        if not (isinstance(self.exit_loss, int | float) and 0 <= self.exit_loss <= 1):
            raise PrimeError(f"exit loss weight must be in [0, 1], got {self.exit_loss!r}")
        if not (
            isinstance(self.train_read_noise, int | float) and 0 <= self.train_read_noise < math.inf
        ):
            raise PrimeError(
                f"--train-read-noise must be a finite σ >= 0, got {self.train_read_noise!r}"
            )
        faults = self.stuck_cells  # bad settings fail before training
        if faults.active and self.trace:
            raise PrimeError(
                "stuck cells act on the model's own chip and a --trace replaces it read by "
                "read: drop --stuck-off/--stuck-on or --trace"
            )
        FrameAugmentation.from_config(self.augment)
        ReadPathConfig.from_dict(self.read_path)

    @property
    def stuck_cells(self) -> StuckCells:
        return StuckCells.from_dict(self.faults)

    @property
    def model_name(self) -> str:
        return self.model or dataset_spec(self.dataset).default_model


def model_config(config: TrainConfig) -> ModelConfig:
    device = config.device_model
    device = {"name": device} if isinstance(device, str) else device
    return ModelConfig(
        name=config.model_name,
        device_model=device,
        chip_seed=config.seed if config.chip_seed is None else config.chip_seed,
        score_seed=config.seed,
        keep=config.keep,
        scale=config.scale,
        mask_scope=config.mask_scope,
        timesteps=config.timesteps,
        read_path=config.read_path,
    )


def versions() -> dict[str, str]:
    import snntorch
    import tonic

    return {
        "prime": __version__,
        "torch": str(torch.__version__),
        "snntorch": snntorch.__version__,
        "tonic": tonic.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
