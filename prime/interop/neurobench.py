"""NeuroBench's own harness on a prime model (the optional ``neurobench`` package).

NeuroBench finds connection layers by type (``nn.Linear``, ``nn.Conv2d``) and activations by
type, then observes them with forward hooks. :class:`NeuroBenchView` is a prime network as
such layers, one timestep at a time: each memristor layer becomes an ``nn.Conv2d`` /
``nn.Linear`` holding the effective weight of one read (and computing as the layer does,
:func:`prime.kernels.sparse_conv.conv2d`), each neuron layer a :class:`StepNeuron` keeping
its state between steps; the rest are the network's own modules. Its outputs equal the
network's single-step outputs, so NeuroBench's figures can be checked against prime's
counters (:func:`prime.analysis.energy.counting.count_operations`, single-step).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prime.analysis.energy.counting import connection_sparsity, count_operations
from prime.core.device import module_device
from prime.core.errors import PrimeError
from prime.kernels.sparse_conv import conv2d
from prime.snn.layers import MemristorConv2d, MemristorLayer, MemristorLinear
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import NeuronLayer


class SpikeConv2d(nn.Conv2d):
    """``nn.Conv2d`` computing as :class:`MemristorConv2d` does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert not isinstance(self.padding, str)  # made from a MemristorConv2d: pixels
        stride, padding = (
            (v[0] if v[0] == v[1] else (v[0], v[1])) for v in (self.stride, self.padding)
        )
        out = conv2d(x, self.weight, stride=stride, padding=padding)
        return out if self.bias is None else out + self.bias.view(-1, 1, 1)


class StepNeuron(nn.Module):
    """A neuron layer run one step per call: current [B, ...] -> output [B, ...]; the state
    lives here between calls (:meth:`reset` before a new sequence)."""

    def __init__(self, layer: NeuronLayer) -> None:
        super().__init__()
        self.layer = layer
        self.state: torch.Tensor | None = None

    def reset(self) -> None:
        self.state = None

    def forward(self, current: torch.Tensor) -> torch.Tensor:
        state = self.layer.initial_state(current) if self.state is None else self.state
        out, self.state = self.layer(current, state)
        return out


class NeuroBenchView(nn.Module):
    """A prime network as NeuroBench sees networks: x [B, T, ...] -> logits [B, classes]
    (the mean output over T), step by step; on the network's device."""

    def __init__(self, model: SpikingNetwork) -> None:
        super().__init__()
        with torch.no_grad():
            weights = model.weights()
        device = module_device(model)  # the views' weights made there, then overwritten
        layers: list[nn.Module] = []
        for layer, weight in zip(model.layers, weights, strict=True):
            has_bias = isinstance(layer, MemristorLayer) and layer.bias is not None
            if isinstance(layer, MemristorConv2d):
                assert weight is not None
                out_ch, in_ch, kh, kw = weight.shape
                view: nn.Module = SpikeConv2d(
                    in_ch,
                    out_ch,
                    (kh, kw),
                    layer.stride,
                    layer.padding,
                    bias=has_bias,
                    device=device,
                )
            elif isinstance(layer, MemristorLinear):
                assert weight is not None
                view = nn.Linear(weight.shape[1], weight.shape[0], bias=has_bias, device=device)
            elif isinstance(layer, NeuronLayer):
                view = StepNeuron(layer)
            else:
                view = layer
            if isinstance(view, nn.Linear | nn.Conv2d) and weight is not None:
                view.weight.requires_grad_(False).copy_(weight)
                if view.bias is not None:
                    assert isinstance(layer, MemristorLayer) and layer.bias is not None
                    view.bias.requires_grad_(False).copy_(layer.bias)
            layers.append(view)
        self.layers = nn.Sequential(*layers)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.layers:
            if isinstance(m, StepNeuron):
                m.reset()
        outputs = [self.layers(x[:, t]) for t in range(x.shape[1])]
        return torch.stack(outputs).mean(0)


def neurobench_model(model: SpikingNetwork) -> Any:
    """The network as a ``neurobench.models.TorchModel`` whose activations are its neurons."""
    try:
        from neurobench.models import TorchModel
    except ImportError:
        raise PrimeError(
            "prime bench neurobench needs the neurobench package: pip install neurobench "
            "(it also pulls torchaudio; pip install --no-deps neurobench keeps torch as it is)"
        ) from None
    wrapped = TorchModel(NeuroBenchView(model))
    wrapped.add_activation_module(StepNeuron)
    return wrapped


def run_neurobench(
    model: SpikingNetwork, loader: torch.utils.data.DataLoader, quiet: bool = True
) -> dict[str, Any]:
    """NeuroBench's ``Benchmark`` on the network over ``loader`` (frames [B, T, ...], labels):
    footprint, connection sparsity, activation sparsity, synaptic operations, accuracy; on
    the network's device (the harness moves each batch there)."""
    wrapped = neurobench_model(model)
    from neurobench.benchmarks import Benchmark
    from neurobench.metrics.static import ConnectionSparsity, Footprint
    from neurobench.metrics.workload import (
        ActivationSparsity,
        ClassificationAccuracy,
        SynapticOperations,
    )

    metrics = [
        [Footprint, ConnectionSparsity],
        [ClassificationAccuracy, ActivationSparsity, SynapticOperations],
    ]
    postprocess = [lambda logits: logits.argmax(-1)]
    with torch.no_grad():
        benchmark = Benchmark(wrapped, loader, [], postprocess, metrics)
        return benchmark.run(quiet=quiet, device=str(module_device(model)))


def prime_figures(model: SpikingNetwork, loader: torch.utils.data.DataLoader) -> dict[str, Any]:
    """The figures :func:`run_neurobench` reports, from prime's own counters: the network run
    single-step on the same batches under :func:`count_operations`; the footprint is the
    effective weights' bytes plus the other layers' parameters and buffers. The batches are
    moved to the network's device."""
    weights = [w for w in model.weights() if w is not None]
    others = [
        t
        for m in model.layers
        if not isinstance(m, MemristorConv2d | MemristorLinear)
        for t in (*m.parameters(), *m.buffers())
    ]
    footprint = sum(t.numel() * t.element_size() for t in (*weights, *others))
    correct, samples, device = 0, 0, module_device(model)
    with torch.no_grad(), count_operations(model) as counts:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x.transpose(0, 1), "single").mean(0)
            correct += int((logits.argmax(1) == y).sum())
            samples += len(y)
    return {
        "Footprint": footprint,
        "ConnectionSparsity": round(connection_sparsity(model), 4),
        "ClassificationAccuracy": correct / max(samples, 1),
        "ActivationSparsity": counts.activation_sparsity(),
        "SynapticOperations": counts.synaptic_operations(),
    }
