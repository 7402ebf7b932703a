"""A prime network as a NIR graph (the Neuromorphic Intermediate Representation, ``nir``).

Each layer becomes one node, chained ``input -> ... -> output``:

* memristor layers: ``nir.Conv2d`` / ``nir.Linear`` holding the effective weight of one read
  of the chip, ``scale * (G+ - G-) * mask`` (:meth:`SpikingNetwork.weights`: the cells the
  layers hold, so a bound chip trace's read where one is loaded; pruned pairs 0, or their
  reset cells with ``--pruned reset``). A batch norm after a convolution is folded into it
  (eval statistics), which then has a bias.
* ``nn.AvgPool2d`` -> ``nir.AvgPool2d``; ``nn.Flatten`` -> ``nir.Flatten`` (NIR dims leave
  out the batch).
* neurons, discretised with time step ``dt`` as snnTorch's NIR reader does (Euler,
  ``dt = 1e-4``): the LIF ``U <- (1 - decay) U + I`` is ``nir.LIF`` with ``tau = dt / decay``,
  ``r = 1 / decay`` (so the input is unscaled), ``v_leak = v_reset = 0`` and the threshold;
  a LIF without decay is ``nir.IF`` with ``r = 1 / dt``; the output integrator ``U <- U + I``
  is ``nir.I`` with ``r = 1 / dt`` (``readout="integrator"``), or is left out
  (``readout="currents"``: the graph ends with the output layer's currents, which a reader
  sums over time; snnTorch's reader has no ``nir.I``).

The standard LIF (``neuron="lif"``) maps exactly. PRIME's neuron also applies a LeakyReLU to
the membrane after integrating (slope 0.1: a negative membrane shrinks tenfold), which no NIR
primitive has: the node is the nearest ``nir.LIF`` / ``nir.I`` and carries the slope in its
metadata (``prime_leak_slope``), which prime's reader restores and other readers ignore.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.snn.layers import MemristorConv2d, MemristorLayer, MemristorLinear
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, Integrator
from prime.version import __version__

#: time step of the discretisation snnTorch's NIR export and import use (s)
DT_S = 1e-4
READOUTS = ("integrator", "currents")
#: node metadata key of PRIME's membrane LeakyReLU slope
LEAK_SLOPE_KEY = "prime_leak_slope"


def _nir():
    try:
        import nir
    except ImportError:
        raise PrimeError(
            "NIR export and import need the nir package: pip install 'prime-snn[nir]'"
        ) from None
    return nir


def export_nir(model: SpikingNetwork, readout: str = "integrator", dt_s: float = DT_S):
    """The network as a ``nir.NIRGraph`` (see the module docstring); weights from one read."""
    nir = _nir()
    if readout not in READOUTS:
        raise PrimeError(f"unknown readout {readout!r}; known: {', '.join(READOUTS)}")
    with torch.no_grad():
        weights = model.weights()
    layers = list(model.layers)
    nodes: dict[str, object] = {"input": nir.Input({"input": np.array(model.input_shape)})}
    shape = (1, *model.input_shape)  # one frame, batch first
    i = 0
    while i < len(layers):
        layer, weight = layers[i], weights[i]
        name = f"{i}_{type(layer).__name__.lower()}"
        following = layers[i + 1] if i + 1 < len(layers) else None
        if isinstance(layer, MemristorConv2d):
            assert weight is not None
            w, bias = weight.detach().numpy(), _bias(layer)
            if isinstance(following, nn.BatchNorm2d):
                w, bias = _fold_batch_norm(w, bias, following)
                i += 1
            conv = nir.Conv2d(
                shape[2:], w, layer.stride, layer.padding, 1, 1, bias, metadata=_read_note()
            )
            shape = (1, w.shape[0], *_conv_out(shape[2:], w.shape[2:], layer))
            conv.output_type = {"output": np.array(shape[1:])}  # nir 1.0 takes KH for KW too
            nodes[name] = conv
        elif isinstance(layer, MemristorLinear):
            assert weight is not None
            w = weight.detach().numpy()
            nodes[name] = (
                nir.Linear(w, metadata=_read_note())
                if layer.bias is None
                else nir.Affine(w, _bias(layer), metadata=_read_note())
            )
            shape = (1, weight.shape[0])
        elif isinstance(layer, LIF):
            nodes[name] = _lif_node(nir, layer, shape[1:], dt_s)
        elif isinstance(layer, Integrator):
            if i != len(layers) - 1:
                raise PrimeError(f"layer {i} (Integrator) must be the last to export to NIR")
            if readout == "integrator":
                nodes[name] = nir.I(
                    np.full(shape[1:], 1 / dt_s), metadata=_slope_note(layer.leak_slope)
                )
        elif isinstance(layer, nn.AvgPool2d):
            pair = nn.modules.utils._pair
            kernel, stride = pair(layer.kernel_size), pair(layer.stride or layer.kernel_size)
            nodes[name] = nir.AvgPool2d(
                np.array(kernel), np.array(stride), np.array(pair(layer.padding))
            )
            with torch.no_grad():
                shape = tuple(layer(torch.zeros(shape)).shape)
        elif isinstance(layer, nn.Flatten):
            start, end = (d - 1 if d > 0 else d for d in (layer.start_dim, layer.end_dim))
            nodes[name] = nir.Flatten({"input": np.array(shape[1:])}, start, end)
            shape = tuple(layer(torch.zeros(shape)).shape)
        else:
            raise PrimeError(
                f"layer {i} ({type(layer).__name__}) has no NIR counterpart; prime exports "
                "memristor conv/linear layers, LIF, the output integrator, average pooling, "
                "flatten and batch norm after a convolution"
            )
        i += 1
    nodes["output"] = nir.Output({"output": np.array(shape[1:])})
    names = list(nodes)
    metadata = {
        "source": f"prime {__version__}",
        "model": model.config.name if hasattr(model, "config") else type(model).__name__,
        "neuron": model.config.neuron if hasattr(model, "config") else "",
        "dt_s": dt_s,
        "timesteps": model.timesteps,
        "readout": readout,
    }
    return nir.NIRGraph(nodes, list(zip(names[:-1], names[1:], strict=True)), metadata)


def write_nir(path: str | os.PathLike, graph) -> None:
    """Write a NIR graph to ``path`` (HDF5, NIR's own format)."""
    _nir().write(path, graph)


def _lif_node(nir, layer: LIF, shape: tuple[int, ...], dt_s: float):
    p = layer.params
    threshold, zeros = np.full(shape, p.threshold), np.zeros(shape)
    note = _slope_note(p.leak_slope)
    if p.decay == 0:  # no leak: an integrate-and-fire neuron, U <- U + I
        return nir.IF(np.full(shape, 1 / dt_s), threshold, zeros, metadata=note)
    tau = np.full(shape, dt_s / p.decay)
    return nir.LIF(tau, np.full(shape, 1 / p.decay), zeros, threshold, zeros, metadata=note)


def _slope_note(leak_slope: float) -> dict[str, float]:
    return {} if leak_slope == 1.0 else {LEAK_SLOPE_KEY: leak_slope}


def _read_note() -> dict[str, str]:
    return {"weights": "one read of the chip: scale * (G+ - G-) * mask"}


def _fold_batch_norm(
    w: np.ndarray, bias: np.ndarray, bn: nn.BatchNorm2d
) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight and bias with the batch norm after it folded in (its eval statistics)."""
    assert bn.running_mean is not None and bn.running_var is not None
    gain = (bn.weight if bn.affine else torch.ones_like(bn.running_var)) / torch.sqrt(
        bn.running_var + bn.eps
    )
    shift = (bn.bias if bn.affine else torch.zeros_like(gain)) - bn.running_mean * gain
    shift = shift + torch.from_numpy(bias) * gain
    scaled = w * gain.detach().numpy()[:, None, None, None]
    return scaled.astype(np.float32), shift.detach().numpy().astype(np.float32)


def _bias(layer: MemristorLayer) -> np.ndarray:
    """The layer's digital bias per output (zeros where it has none)."""
    if layer.bias is None:
        return np.zeros(layer.scores.shape[0], np.float32)
    return layer.bias.detach().numpy().astype(np.float32)


def _conv_out(
    hw: tuple[int, ...], kernel: tuple[int, int], layer: MemristorConv2d
) -> tuple[int, int]:
    pair = nn.modules.utils._pair
    strides, pads = pair(layer.stride), pair(layer.padding)
    h, w = (
        (n + 2 * pad - k) // stride + 1
        for n, k, stride, pad in zip(hw, kernel, strides, pads, strict=True)
    )
    return h, w
