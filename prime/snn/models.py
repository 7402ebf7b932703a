"""Named models (``get_model(name)``, ``list_models()``), as torchvision's model registry.

A model is built on a chip: a device preset forms its crossbars from ``chip_seed``; the
initial scores come from ``score_seed``. :class:`ModelConfig` records everything needed to
build the same network again (checkpoints store it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.core.registry import Registry
from prime.hardware.devices import (
    DEFAULT_DEVICE,
    ConductanceModel,
    as_device,
    chip_generator,
    device_from_config,
)
from prime.hardware.periphery import ReadPathConfig, periphery_generator
from prime.snn.config import ModelConfig
from prime.snn.layers import MemristorConv2d, MemristorConvTranspose2d, MemristorLinear
from prime.snn.masks import MASK_RULES, check_keep
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import (
    LIF,
    Integrator,
    LIFParams,
    NeuronLayer,
    ReLUUnit,
    lif_params,
    neuron_leak_slope,
)
from prime.snn.quantize import ActivationQuantizer
from prime.snn.recurrent import FrameRecurrent, Recurrent, RecurrentCell

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


def sign_generator(score_seed: int) -> torch.Generator:
    """The generator of the software signs of ``weight_sign="random-sign"``, from the score
    seed; apart from the scores' generator, so the initial scores stay the same."""
    seed = np.random.SeedSequence([int(score_seed), 0x516]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(seed))


class LayerFactory:
    """Makes a model's supermask layers on one chip, in order (so the same seed, same chip),
    and its neurons of the config's kind (PRIME's or the standard LIF).

    With ``config.synapses == "weights"`` it makes plain bias-free ``nn.Linear``/``nn.Conv2d``
    layers of the same shapes instead (Kaiming-uniform from the score seed), the software model
    of a programmed-weights baseline. ``config.activation_bits`` switches the activation
    quantisers (:meth:`quantize`) on.
    """

    def __init__(self, config: ModelConfig, device_model: ConductanceModel) -> None:
        if config.mask_rule not in MASK_RULES:
            raise PrimeError(
                f"unknown mask rule {config.mask_rule!r}; known: {', '.join(MASK_RULES)}"
            )
        self.config = config
        self.kwargs: dict[str, Any] = dict(
            device_model=device_model,
            chip=chip_generator(config.chip_seed),
            scores_generator=torch.Generator().manual_seed(int(config.score_seed)),
            keep=check_keep(config.keep),
            scale=config.scale,
            mask_rule=config.mask_rule,
            read_path=ReadPathConfig.from_dict(config.read_path),
            periphery_generator=periphery_generator(config.chip_seed),
            sign_generator=sign_generator(config.score_seed)
            if config.weight_sign == "random-sign"
            else None,
        )
        self.neuron = config.neuron
        neuron_leak_slope(config.neuron)  # an unknown kind fails before any layer is made

    def linear(self, in_features: int, out_features: int, bias: bool = False) -> nn.Module:
        if self.config.synapses == "weights":
            return self._init(nn.Linear(in_features, out_features, bias=bias))
        return MemristorLinear(in_features, out_features, bias=bias, **self.kwargs)

    def conv(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int | tuple[int, int],
        bias: bool = False,
        **kwargs: Any,
    ) -> nn.Module:
        if self.config.synapses == "weights":
            return self._init(nn.Conv2d(in_ch, out_ch, kernel, bias=bias, **kwargs))
        return MemristorConv2d(in_ch, out_ch, kernel, bias=bias, **kwargs, **self.kwargs)

    def lif(self, params: LIFParams) -> LIF:
        return LIF(lif_params(params, self.neuron))

    def integrator(self) -> Integrator:
        return Integrator(neuron_leak_slope(self.neuron))

    def _init(self, layer: nn.Linear | nn.Conv2d) -> nn.Module:
        generator = self.kwargs["scores_generator"]
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
        if layer.bias is not None:  # torch's bound, 1 / sqrt(fan-in)
            bound = 1.0 / math.sqrt(layer.weight[0].numel())
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        return layer

    def quantize(self, nonnegative: bool = False) -> nn.Module:
        """An activation quantiser (identity without ``activation_bits``)."""
        bits = self.config.activation_bits
        if bits is None:
            return nn.Identity()
        return ActivationQuantizer(bits, self.config.activation_quantizer, nonnegative)

    def recurrent_cell(self, hidden_size: int, neuron: NeuronLayer) -> RecurrentCell:
        """A recurrent cell with its own H x H hidden crossbar; the fed-back output is
        quantised like every other crossbar input."""
        hidden = self.linear(hidden_size, hidden_size)
        return RecurrentCell(hidden, neuron, self.quantize(nonnegative=True))

    def conv_transpose(
        self, in_ch: int, out_ch: int, kernel: int, **kwargs
    ) -> MemristorConvTranspose2d:
        return MemristorConvTranspose2d(in_ch, out_ch, kernel, **kwargs, **self.kwargs)


def get_model(name: str, **config: Any) -> SpikingNetwork:
    """Build the registered model ``name``; keyword arguments are :class:`ModelConfig` fields.

    ``device_model`` may be a preset name, a config dict or a :class:`ConductanceModel`.
    """
    device_model = as_device(config.pop("device_model", DEFAULT_DEVICE))
    model_config = ModelConfig(name=name, device_model=device_model.to_config(), **config)
    return build_model(model_config, device_model)


def build_model(
    config: ModelConfig, device_model: ConductanceModel | None = None
) -> SpikingNetwork:
    """Build a model from its :class:`ModelConfig`."""
    spec = MODELS.get(config.name)
    if device_model is None:
        device_model = device_from_config(config.device_model)
    layers = spec.build(LayerFactory(config, device_model))
    network = SpikingNetwork(
        layers,
        input_shape=spec.input_shape,
        timesteps=config.timesteps or spec.timesteps,
        num_classes=spec.num_classes,
        mask_scope=config.mask_scope,
    )
    network.config = dataclasses.replace(config, device_model=device_model.to_config())
    set_membrane_words(network, ReadPathConfig.from_dict(config.read_path))
    return network


def set_membrane_words(network: nn.Module, periphery: ReadPathConfig) -> None:
    """Give every LIF and output integrator of ``network`` (recurrent cells' included) its
    fixed-point membrane word from ``periphery`` (none: floating point)."""
    words = periphery.membrane_words()
    if words is None:
        return
    for module in network.modules():
        if isinstance(module, LIF):
            module.word = words[0]
        elif isinstance(module, Integrator):
            module.word = words[1]


def list_models() -> list[str]:
    return MODELS.names()


def model_spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def _prime_conv(channels: int, side: int) -> Callable[[LayerFactory], list[nn.Module]]:
    """PRIME's N-MNIST cells for frames of ``channels`` x ``side`` x ``side``: conv 12 k5 p1,
    LIF, avgpool 2, conv 64 k5, LIF, avgpool 2, FC 10 integrator."""
    pooled = ((side - 2) // 2 - 4) // 2  # side after conv k5 p1, pool 2, conv k5, pool 2

    def build(make: LayerFactory) -> list[nn.Module]:
        return [
            make.conv(channels, 12, 5, padding=1),
            make.lif(PRIME_CONV_LIF),
            nn.AvgPool2d(2),
            make.conv(12, 64, 5),
            make.lif(PRIME_CONV_LIF),
            nn.AvgPool2d(2),
            nn.Flatten(),
            make.linear(64 * pooled * pooled, 10),
            make.integrator(),
        ]

    return build


_nmnist_conv = _prime_conv(2, 34)


def _nmnist_mlp(make: LayerFactory) -> list[nn.Module]:
    return [
        nn.Flatten(),
        make.linear(2312, 250),
        make.lif(PRIME_FC_LIF),
        make.linear(250, 250),
        make.lif(PRIME_FC_LIF),
        make.linear(250, 10),
        make.integrator(),
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


for _name, _data in (("mnist-conv", "MNIST"), ("fashion-mnist-conv", "FashionMNIST")):
    MODELS.register(_name)(
        ModelSpec(
            _prime_conv(1, 28),
            (1, 28, 28),
            10,
            10,
            f"default model of {_data} (IDX images, T = 10): nmnist-conv's cells on 1x28x28 "
            "frames: conv 1-12 k5 p1, LIF, avgpool 2, conv 12-64 k5, LIF, avgpool 2, "
            "FC 1024-10 integrator",
        )
    )


def _conv_50x50(make: LayerFactory) -> list[nn.Module]:
    """A network whose crossbars fit one 50x50 array: conv 2-4 k5 p1 (50 rows, 8 columns),
    LIF, avgpool 8, FC 64-10 (64 rows, 20 columns: blocks of 50 and 14 rows); 1,680 cells
    in 48 columns."""
    return [
        make.conv(2, 4, 5, padding=1),
        make.lif(PRIME_CONV_LIF),
        nn.AvgPool2d(8),
        nn.Flatten(),
        make.linear(64, 10),
        make.integrator(),
    ]


MODELS.register("conv-50x50")(
    ModelSpec(
        _conv_50x50,
        (2, 34, 34),
        10,
        10,
        "small conv SNN on 2x34x34 event frames whose crossbars fit one 50x50 array (the "
        "measured TaOx array, --tile 50x50): conv 2-4 k5 p1, LIF, avgpool 8, FC 64-10 integrator",
    )
)

MODELS.register("nmnist-mlp")(
    ModelSpec(_nmnist_mlp, (2, 34, 34), 10, 10, "MLP 2312-250-250-10 on N-MNIST frames")
)

#: LIF of the gesture network's conv cells (PRIME's gesture cells fire at threshold 1.0)
GESTURE_LIF = LIFParams(threshold=1.0)


def _gesture_conv(pixels: int) -> Callable[[LayerFactory], list[nn.Module]]:
    """Conv SNN for DVS128 Gesture frames of pixels x pixels (128 or 32), 11 classes.

    PRIME's code never shipped its gesture network (``ConvNet_128``); this design follows
    its cells: supermask conv, batch norm, LIF (threshold 1.0), average pooling. At 128 x 128
    the first conv has kernel 5 and stride 2; the FC layer sees 64 maps of pixels/8/stride.
    """
    stride = 2 if pixels == 128 else 1

    def build(make: LayerFactory) -> list[nn.Module]:
        first = (
            make.conv(2, 16, 5, stride=2, padding=2)
            if stride == 2
            else make.conv(2, 16, 3, padding=1)
        )
        layers: list[nn.Module] = []
        convs = (first, make.conv(16, 32, 3, padding=1), make.conv(32, 64, 3, padding=1))
        for conv, channels in zip(convs, (16, 32, 64), strict=True):
            layers += [conv, nn.BatchNorm2d(channels), make.lif(GESTURE_LIF), nn.AvgPool2d(2)]
        side = pixels // (8 * stride)
        return [*layers, nn.Flatten(), make.linear(64 * side * side, 11), make.integrator()]

    return build


def _mlp(sizes: tuple[int, ...], lif: LIFParams) -> Callable[[LayerFactory], list[nn.Module]]:
    """Flatten, then supermask linear layers of ``sizes`` with LIF between, integrator out."""

    def build(make: LayerFactory) -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Flatten()]
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(make.linear(n_in, n_out))
            layers.append(make.lif(lif) if i < len(sizes) - 2 else make.integrator())
        return layers

    return build


MODELS.register("dvsgesture-conv")(
    ModelSpec(
        _gesture_conv(128),
        (2, 128, 128),
        11,
        20,
        "DVS128 Gesture conv SNN (prime's design): conv 2-16 k5 s2, 16-32 k3, 32-64 k3, each "
        "with batch norm, LIF (threshold 1.0), avgpool 2; FC 4096-11 integrator",
    )
)
MODELS.register("dvsgesture-conv32")(
    ModelSpec(
        _gesture_conv(32),
        (2, 32, 32),
        11,
        20,
        "dvsgesture-conv for frames down-sampled to 32x32 (--downsample 32): first conv k3 "
        "stride 1; FC 1024-11",
    )
)
MODELS.register("shd-mlp")(
    ModelSpec(
        _mlp((700, 256, 20), PRIME_FC_LIF),
        (700,),
        20,
        50,
        "SHD MLP 700-256-20 (LIF threshold 0.5) on spike counts in 50 time bins",
    )
)
MODELS.register("spoken-digits-mlp")(
    ModelSpec(
        _mlp((460, 256, 10), PRIME_FC_LIF),
        (23, 20),
        10,
        20,
        "spoken digits MLP 460-256-10 (LIF threshold 0.5) on rate-coded 23x20 features, T = 20",
    )
)


class SequenceMean(nn.Module):
    """Mean over axis 1 (a frame's sequence): [N, L, ...] -> [N, ...] (the CRNN's ``aver_h``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)


def _fashion_cnn(make: LayerFactory) -> list[nn.Module]:
    """The pruning paper's FashionMNIST CNN (``CNN_FashionMNIST_TO``): max-pool the 28x28
    image to 14x14, conv 1-64 k3, BN, ReLU, conv 64-16 k3, max-pool, BN, ReLU, FC 400-128,
    ReLU, FC 128-10; batch norm without affine parameters, a quantiser before every crossbar."""
    return [
        nn.MaxPool2d(2),
        make.quantize(),
        make.conv(1, 64, 3),
        nn.BatchNorm2d(64, affine=False),
        nn.ReLU(),
        make.quantize(nonnegative=True),
        make.conv(64, 16, 3),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(16, affine=False),
        nn.ReLU(),
        make.quantize(nonnegative=True),
        nn.Flatten(),
        make.linear(400, 128),
        nn.ReLU(),
        make.quantize(nonnegative=True),
        make.linear(128, 10),
    ]


def _spoken_digits_crnn(make: LayerFactory) -> list[nn.Module]:
    """The pruning paper's spoken-digit CRNN (``CRNN_Spoken_Digit_TO``, hardware version).

    Features [23, 20] as one 1x23x20 image: conv 1-64 k(3, 2) s(2, 1), max-pool 2, BN, ReLU
    -> 64x5x9; conv 64-32 k(3, 2) s(2, 1), max-pool 2, BN, ReLU -> 32x1x4; the 4 columns are a
    sequence of 32 features: input crossbar 32-128, ReLU RNN with a 128x128 hidden crossbar,
    mean over the sequence, FC 128-256, ReLU, FC 256-10.
    """
    return [
        nn.Unflatten(1, (1, 23)),
        make.quantize(),
        make.conv(1, 64, (3, 2), stride=(2, 1)),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(64, affine=False),
        nn.ReLU(),
        make.quantize(nonnegative=True),
        make.conv(64, 32, (3, 2), stride=(2, 1)),
        nn.MaxPool2d(2),
        nn.BatchNorm2d(32, affine=False),
        nn.ReLU(),
        make.quantize(nonnegative=True),
        nn.Flatten(1, 2),  # [N, 32, 1, 4] -> [N, 32, 4]
        _Transpose(),  # -> [N, 4, 32]: the sequence of 4 columns
        make.linear(32, 128),
        FrameRecurrent(make.recurrent_cell(128, ReLUUnit())),
        SequenceMean(),
        make.quantize(),
        make.linear(128, 256),
        nn.ReLU(),
        make.quantize(nonnegative=True),
        make.linear(256, 10),
    ]


class _Transpose(nn.Module):
    """[N, A, B] -> [N, B, A]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


def _shd_rsnn(make: LayerFactory) -> list[nn.Module]:
    return [
        make.linear(700, 256),
        Recurrent(make.recurrent_cell(256, LIF(PRIME_FC_LIF))),
        make.linear(256, 20),
        Integrator(),
    ]


MODELS.register("fashion-cnn")(
    ModelSpec(
        _fashion_cnn,
        (1, 28, 28),
        10,
        1,
        "the pruning paper's FashionMNIST CNN (ReLU, one timestep): max-pool 2, conv 1-64 k3, "
        "BN, ReLU, conv 64-16 k3, max-pool 2, BN, ReLU, FC 400-128-10",
    )
)
MODELS.register("spoken-digits-crnn")(
    ModelSpec(
        _spoken_digits_crnn,
        (23, 20),
        10,
        1,
        "the pruning paper's spoken-digit CRNN (ReLU, one timestep): conv 1-64 and 64-32 "
        "k(3,2) s(2,1) with max-pool, BN, ReLU; ReLU RNN (input 128x32, hidden 128x128) over "
        "4 columns, mean; FC 128-256-10",
    )
)
MODELS.register("shd-rsnn")(
    ModelSpec(
        _shd_rsnn,
        (700,),
        20,
        50,
        "recurrent SNN on SHD: input crossbar 700-256, recurrent LIF layer (hidden 256x256, "
        "threshold 0.5), FC 256-20 integrator, 50 time bins",
    )
)
