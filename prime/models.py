"""Named models (``get_model(name)``, ``list_models()``), as torchvision's model registry.

A model is built on a chip: a device preset forms its crossbars from ``chip_seed``; the
initial scores come from ``score_seed``. :class:`ModelConfig` records everything needed to
build the same network again (checkpoints store it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from prime.devices import ConductanceModel, chip_generator, device_from_config, get_device
from prime.errors import PrimeError
from prime.layers import PRIME_SCALE, MemristorConv2d, MemristorLinear
from prime.masks import MASK_RULES, check_keep
from prime.network import SpikingNetwork
from prime.neurons import LIF, Integrator, LIFParams
from prime.registry import Registry

#: PRIME's LIF constants: threshold 0.2 in conv layers, 0.5 in hidden fully connected layers.
PRIME_CONV_LIF = LIFParams(threshold=0.2)
PRIME_FC_LIF = LIFParams(threshold=0.5)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder and what its input and output look like."""

    build: Callable[[LayerFactory], list[nn.Module]]
    input_shape: tuple[int, ...]
    num_classes: int
    timesteps: int
    description: str


MODELS: Registry[ModelSpec] = Registry("model")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a model's chip and initial scores."""

    name: str
    device: dict[str, Any] = field(default_factory=lambda: {"name": "prime-gaussian"})
    chip_seed: int = 0
    score_seed: int = 0
    keep: float = 0.5
    scale: float | str = PRIME_SCALE
    mask_rule: str = "topk"
    mask_scope: str = "layer"
    timesteps: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise PrimeError(f"model config has unknown fields: {', '.join(unknown)}")
        return cls(**config)


class LayerFactory:
    """Makes a model's supermask layers on one chip, in order (so the same seed, same chip)."""

    def __init__(self, config: ModelConfig, device: ConductanceModel) -> None:
        if config.mask_rule not in MASK_RULES:
            raise PrimeError(
                f"unknown mask rule {config.mask_rule!r}; known: {', '.join(MASK_RULES)}"
            )
        self.kwargs = dict(
            device=device,
            chip=chip_generator(config.chip_seed),
            scores_generator=torch.Generator().manual_seed(int(config.score_seed)),
            keep=check_keep(config.keep),
            scale=config.scale,
            mask_rule=config.mask_rule,
        )

    def linear(self, in_features: int, out_features: int) -> MemristorLinear:
        return MemristorLinear(in_features, out_features, **self.kwargs)

    def conv(self, in_ch: int, out_ch: int, kernel: int, **kwargs) -> MemristorConv2d:
        return MemristorConv2d(in_ch, out_ch, kernel, **kwargs, **self.kwargs)


def get_model(name: str, **config: Any) -> SpikingNetwork:
    """Build the registered model ``name``; keyword arguments are :class:`ModelConfig` fields.

    ``device`` may be a preset name, a config dict or a :class:`ConductanceModel`.
    """
    device = config.pop("device", "prime-gaussian")
    if isinstance(device, str):
        device = get_device(device)
    elif isinstance(device, dict):
        device = device_from_config(device)
    return build_model(ModelConfig(name=name, device=device.to_config(), **config), device)


def build_model(config: ModelConfig, device: ConductanceModel | None = None) -> SpikingNetwork:
    """Build a model from its :class:`ModelConfig`."""
    spec = MODELS.get(config.name)
    device = device_from_config(config.device) if device is None else device
    layers = spec.build(LayerFactory(config, device))
    network = SpikingNetwork(
        layers,
        input_shape=spec.input_shape,
        timesteps=config.timesteps or spec.timesteps,
        num_classes=spec.num_classes,
        mask_scope=config.mask_scope,
    )
    network.config = dataclasses.replace(config, device=device.to_config())
    return network


def list_models() -> list[str]:
    return MODELS.names()


def model_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def _nmnist_conv(make: LayerFactory) -> list[nn.Module]:
    return [
        make.conv(2, 12, 5, padding=1),
        LIF(PRIME_CONV_LIF),
        nn.AvgPool2d(2),
        make.conv(12, 64, 5),
        LIF(PRIME_CONV_LIF),
        nn.AvgPool2d(2),
        nn.Flatten(),
        make.linear(2304, 10),
        Integrator(),
    ]


def _nmnist_mlp(make: LayerFactory) -> list[nn.Module]:
    return [
        nn.Flatten(),
        make.linear(2312, 250),
        LIF(PRIME_FC_LIF),
        make.linear(250, 250),
        LIF(PRIME_FC_LIF),
        make.linear(250, 10),
        Integrator(),
    ]


MODELS.register("nmnist-conv")(
    ModelSpec(
        _nmnist_conv,
        (2, 34, 34),
        10,
        10,
        "PRIME's N-MNIST network: conv 2-12 k5 p1, LIF, avgpool 2, conv 12-64 k5, LIF, "
        "avgpool 2, FC 2304-10 integrator",
    )
)
MODELS.register("digits-conv")(
    ModelSpec(
        _nmnist_conv,
        (2, 34, 34),
        10,
        10,
        "default model of the built-in neuromorphic digits: nmnist-conv's architecture "
        "(both are 2x34x34 event frames, 10 classes, T = 10)",
    )
)
MODELS.register("nmnist-mlp")(
    ModelSpec(_nmnist_mlp, (2, 34, 34), 10, 10, "MLP 2312-250-250-10 on N-MNIST frames")
)
