"""A run's settings: :class:`TrainConfig`, recorded in every checkpoint, and what it implies
(the model config, the versions a run records)."""

from __future__ import annotations

import dataclasses
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prime.core.errors import PrimeError
from prime.core.plugins import import_modules
from prime.core.resources import MAX_EPOCHS, MAX_SEED, MAX_TIMESTEPS, check_count
from prime.data import dataset_spec
from prime.data.augment import FrameAugmentation
from prime.hardware.faults import StuckCells
from prime.hardware.periphery import ReadPathConfig
from prime.hardware.replay import DEFAULT_TILE
from prime.runs.training_log import require_tensorboard
from prime.snn.config import ModelConfig
from prime.snn.neurons import neuron_leak_slope
from prime.snn.switching import hysteresis_schedule
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
    neuron: str = "prime"  # prime.snn.neurons.NEURON_KINDS: PRIME's LIF or the standard LIF
    #: mask hysteresis: a schedule of prime.snn.switching.HYSTERESIS or a constant margin
    hysteresis: str = "none"
    synapses: str = "supermask"  # ModelConfig.synapses
    activation_bits: int | None = None  # ModelConfig.activation_bits
    activation_quantizer: str = "uniform"
    weight_sign: str = "pair"  # ModelConfig.weight_sign
    #: read noise σ on every crossbar read while training (fresh per step, seeded)
    train_read_noise: float = 0.0
    #: stuck cells applied to the chip before training (StuckCells fields; empty: none)
    faults: dict[str, Any] = field(default_factory=dict)
    #: user modules that register what the run uses (models, devices, datasets, policies):
    #: imported when the config is made, so every command on the run finds them
    imports: list[str] = field(default_factory=list)
    #: also log each epoch as TensorBoard scalars (prime.runs.training_log)
    tensorboard: bool = False

    def __post_init__(self) -> None:
        import_modules(self.imports)  # first: the checks below may look up their entries
        if self.tensorboard:
            require_tensorboard()  # a missing package fails before training
        limits = {"epochs": MAX_EPOCHS, "timesteps": MAX_TIMESTEPS, "seed": MAX_SEED}
        for name in ("epochs", "batch_size", "save_every", "limit_train", "timesteps", "seed"):
            value = getattr(self, name)
            if value is not None or name not in ("limit_train", "timesteps"):
                check_count(name, value, 0 if name == "seed" else 1, limits.get(name))
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
        FrameAugmentation.from_config(self.augment)  # bad settings fail before training
        periphery = ReadPathConfig.from_dict(self.read_path)
        periphery_tile = (periphery.tile_rows, periphery.tile_columns)
        if self.trace and periphery.tile_rows and tuple(self.tile) != periphery_tile:
            rows, cols = periphery_tile
            raise PrimeError(
                f"the periphery's {rows}x{cols} tiles and the trace placement's "
                f"{self.tile[0]}x{self.tile[1]} tiles are one geometry: pass --tile {rows}x{cols}"
            )
        neuron_leak_slope(self.neuron)
        hysteresis_schedule(self.hysteresis)

    @property
    def stuck_cells(self) -> StuckCells:
        return StuckCells.from_dict(self.faults)

    @property
    def model_name(self) -> str:
        return self.model or dataset_spec(self.dataset).default_model


#: TrainConfig.data options that name files or folders
PATH_OPTIONS = ("data_root", "data_path", "test_path")


def resolve_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its trace and data paths absolute, so that the run can be evaluated
    from any working directory."""
    data = {
        name: str(Path(value).expanduser().resolve()) if name in PATH_OPTIONS else value
        for name, value in config.data.items()
    }
    trace = str(Path(config.trace).expanduser().resolve()) if config.trace else config.trace
    return dataclasses.replace(config, data=data, trace=trace)


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
        neuron=config.neuron,
        synapses=config.synapses,
        activation_bits=config.activation_bits,
        activation_quantizer=config.activation_quantizer,
        weight_sign=config.weight_sign,
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
