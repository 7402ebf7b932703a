"""A PyTorch or snnTorch network as a prime network on a chip: :func:`convert` (aihwkit's
``convert_to_analog`` for random memristor arrays).

The model is an ``nn.Sequential`` run frame by frame (nested ones are flattened), of:

* ``nn.Linear`` and ``nn.Conv2d`` (one group, no dilation, zero padding) -> memristor
  layers of the same shapes (:class:`~prime.snn.layers.MemristorLinear`,
  :class:`~prime.snn.layers.MemristorConv2d`); a bias becomes the layer's digital bias;
* snnTorch's ``snn.Leaky`` (``init_hidden`` or not) -> prime's neuron with its parameters:
  ``decay = 1 - beta``, its threshold, no LeakyReLU; ``reset_mechanism="zero"`` is
  :class:`~prime.snn.neurons.LIF` (the fused kernels), ``"subtract"`` (snnTorch's default)
  :class:`~prime.snn.neurons.SubtractiveLIF`. The network carries their state, so
  multi-step and single-step runs agree. Training uses prime's rectangular surrogate, not
  the module's ``spike_grad``;
* modules without parameters (pooling, ``nn.Flatten``, ``nn.ReLU``, ``nn.Dropout``, ...)
  and batch norm, copied.

Two modes: ``"supermask"`` builds the architecture on a random chip (``device_model``,
``chip_seed``) with scores to train (``score_seed``, ``keep``), as the named models are
built (:class:`~prime.snn.models.LayerFactory`); ``"program"`` writes the model's trained
weights onto the cells (:func:`prime.interop.nir_import.program_layer`, ideal programming by
default), every edge kept: with an ideal read path it computes what the model computes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.devices import DEFAULT_DEVICE, ConductanceModel, as_device
from prime.interop.nir_import import check_chains, program_layer, writer_for
from prime.snn.config import ModelConfig
from prime.snn.layers import MemristorLayer
from prime.snn.models import LayerFactory
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIFParams, SubtractiveLIF

MODES = ("supermask", "program")
#: snnTorch's Leaky options prime's neurons do not have, and the value they must keep
LEAKY_DEFAULTS = {"inhibition": False, "state_quant": False, "reset_delay": True}


def convert(
    model: nn.Module,
    *,
    input_shape: tuple[int, ...],
    timesteps: int,
    device_model: ConductanceModel | str | dict[str, Any] = DEFAULT_DEVICE,
    mode: str = "supermask",
    chip_seed: int = 0,
    score_seed: int = 0,
    keep: float = 0.5,
    weight_quantile: float = 1.0,
    programming: str = "ideal",
    write_seed: int = 0,
) -> SpikingNetwork:
    """The prime network of ``model`` (an ``nn.Sequential``, see the module docstring) for
    frames of ``input_shape`` over ``timesteps`` steps: its architecture on a random chip
    (``mode="supermask"``) or its weights programmed onto the cells (``"program"``; ``keep``
    is then 1) by ``programming`` (a write–verify preset, ideal by default; write noise from
    ``write_seed``), as :func:`prime.interop.nir_import.import_nir` programs."""
    if mode not in MODES:
        raise PrimeError(f"unknown conversion mode {mode!r}; known: {', '.join(MODES)}")
    if not isinstance(model, nn.Sequential):
        raise PrimeError(
            f"convert takes an nn.Sequential (its children run in order), got "
            f"{type(model).__name__}: put the layers of its forward in one"
        )
    device = as_device(device_model)
    config = ModelConfig(
        name="converted",
        device_model=device.to_config(),
        chip_seed=chip_seed,
        score_seed=score_seed,
        keep=1.0 if mode == "program" else keep,
        timesteps=timesteps,
        neuron="lif",  # no LeakyReLU on the membrane, as snnTorch's neurons
    )
    make = LayerFactory(config, device)
    writer = writer_for(programming, device)
    writes = torch.Generator().manual_seed(write_seed)
    layers: list[nn.Module] = []
    h = torch.zeros(1, *input_shape)
    for index, module in enumerate(_flattened(model)):
        layer = _layer(index, module, make)
        if mode == "program" and isinstance(layer, MemristorLayer):
            assert isinstance(module, nn.Linear | nn.Conv2d)
            program_layer(layer, module.weight, module.bias, writer, writes, weight_quantile)
        h = check_chains(f"layer {index} ({type(module).__name__})", layer, h)
        layers.append(layer)
    network = SpikingNetwork(layers, tuple(input_shape), timesteps, int(h[0].numel()))
    network.config = config
    return network


def _flattened(model: nn.Sequential) -> Iterator[nn.Module]:
    for module in model:
        if isinstance(module, nn.Sequential):
            yield from _flattened(module)
        else:
            yield module


def _layer(index: int, module: nn.Module, make: LayerFactory) -> nn.Module:
    name = f"layer {index} ({type(module).__name__})"
    if isinstance(module, nn.Linear):
        return make.linear(module.in_features, module.out_features, bias=module.bias is not None)
    if isinstance(module, nn.Conv2d):
        if module.groups != 1 or module.dilation != (1, 1) or module.padding_mode != "zeros":
            raise PrimeError(
                f"{name}: prime's crossbars take convolutions with groups=1, dilation=1 and "
                "zero padding"
            )
        if isinstance(module.padding, str):
            raise PrimeError(f"{name}: padding {module.padding!r} is not supported; give pixels")
        return make.conv(
            module.in_channels,
            module.out_channels,
            (module.kernel_size[0], module.kernel_size[1]),
            bias=module.bias is not None,
            stride=(module.stride[0], module.stride[1]),
            padding=(module.padding[0], module.padding[1]),
        )
    if _is_snntorch_leaky(module):
        return _neuron(name, module, make)
    if (
        isinstance(module, nn.modules.batchnorm._BatchNorm)
        or next(module.parameters(), None) is None
    ):
        if any(c.__module__.split(".")[0] == "snntorch" for c in type(module).__mro__):
            raise PrimeError(f"{name}: of snnTorch's neurons prime converts Leaky only")
        return copy.deepcopy(module)
    raise PrimeError(
        f"{name} has parameters of a kind prime cannot place on a chip; convert takes "
        "nn.Linear, nn.Conv2d, snnTorch's Leaky, batch norm and modules without parameters"
    )


def _is_snntorch_leaky(module: nn.Module) -> bool:
    return any(
        c.__module__.startswith("snntorch") and c.__name__ == "Leaky" for c in type(module).__mro__
    )


def _neuron(name: str, leaky: Any, make: LayerFactory) -> nn.Module:
    """prime's neuron with the parameters of snnTorch's ``Leaky``."""
    odd = [k for k, v in LEAKY_DEFAULTS.items() if bool(getattr(leaky, k, v)) != v]
    if float(leaky.graded_spikes_factor) != 1.0:
        odd.append("graded_spikes_factor")
    if odd:
        raise PrimeError(f"{name}: prime's neurons have no {', '.join(odd)}; leave them unset")
    values = {}
    for what in ("beta", "threshold"):
        tensor = torch.as_tensor(getattr(leaky, what)).detach()
        if tensor.numel() != 1:
            raise PrimeError(f"{name}: prime needs one {what} for the whole layer")
        values[what] = float(tensor)
    beta = min(max(values["beta"], 0.0), 1.0)  # snnTorch clamps beta into [0, 1]
    params = LIFParams(threshold=values["threshold"], decay=1.0 - beta, leak_slope=1.0)
    mechanism = leaky.reset_mechanism
    if mechanism == "zero":
        return make.lif(params)
    if mechanism == "subtract":
        return SubtractiveLIF(params)
    raise PrimeError(
        f"{name}: reset_mechanism {mechanism!r} is not supported; prime's neurons reset to "
        "zero or by subtraction"
    )
