"""A NIR graph as a prime network whose trained weights are programmed onto a chip.

The graph must be a chain ``input -> ... -> output`` of these nodes:

* ``nir.Linear`` / ``nir.Affine`` and ``nir.Conv2d`` (one group, no dilation, square kernel)
  become memristor layers whose cells are programmed from the weights
  (:func:`prime.hardware.programming.program_weight`: ideally, or with write noise and
  write-verify), every edge kept, a bias as the layer's digital bias;
* ``nir.LIF`` (``v_leak = v_reset = 0``, one value per parameter) and ``nir.IF`` become LIF
  layers: with time step ``dt`` (snnTorch's convention, 1e-4 s), ``decay = dt / tau`` and the
  input weight ``w = r dt / tau`` (``r dt`` for IF) divides the threshold, as snnTorch's
  reader does (the same spikes); ``nir.I`` with ``r dt = 1`` becomes the output integrator.
  A ``prime_leak_slope`` in a node's metadata (prime's own export) restores PRIME's
  LeakyReLU; otherwise the neurons are standard (slope 1);
* ``nir.AvgPool2d`` and ``nir.Flatten``.

Anything else is refused with the node's name and type; so is a graph whose shapes do not
chain (checked by running a zero frame through the layers, node by node).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.devices import ConductanceModel, chip_generator
from prime.hardware.programming import (
    WRITE_VERIFY,
    ProgrammedLayer,
    WriteVerify,
    program_weight,
)
from prime.interop.nir_export import DT_S, LEAK_SLOPE_KEY, _nir
from prime.snn.config import ModelConfig
from prime.snn.layers import MemristorConv2d, MemristorLayer, MemristorLinear
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, Integrator, LIFParams, NeuronLayer

SUPPORTED = ("Input", "Output", "Linear", "Affine", "Conv2d", "LIF", "IF", "I", "AvgPool2d",
             "Flatten")  # fmt: skip


@dataclass(frozen=True)
class ImportReport:
    """What :func:`import_nir` programmed: the writer, one entry per memristor layer (node
    name, cells)."""

    writer: WriteVerify
    layers: list[tuple[str, ProgrammedLayer]]

    @property
    def clipped(self) -> int:
        return sum(p.clipped for _, p in self.layers)

    @property
    def pulses(self) -> int:
        """Write pulses of all cells (one verify read follows each)."""
        return sum(int(p.pulses.sum()) for _, p in self.layers)

    def lines(self) -> list[str]:
        return [f"{name}: {p.report()}" for name, p in self.layers]


def read_nir(path: str | os.PathLike):
    """Read a NIR file (``PrimeError`` where it is missing or not NIR)."""
    nir = _nir()
    if not Path(path).is_file():
        raise PrimeError(f"no such NIR file: {path}")
    try:
        return nir.read(path)
    except (OSError, KeyError, ValueError) as exc:
        raise PrimeError(f"{path} is not a readable NIR graph ({exc})") from None


def import_nir(
    graph,
    device_model: ConductanceModel,
    timesteps: int,
    chip_seed: int = 0,
    weight_quantile: float = 1.0,
    dt_s: float = DT_S,
    programming: str | WriteVerify = "ideal",
    write_seed: int = 0,
) -> tuple[SpikingNetwork, ImportReport]:
    """The prime network of a NIR graph, its weights programmed onto ``device_model``'s
    cells; the chip (``chip_seed``) is formed first, then programmed cell by cell, layer by
    layer, the write noise drawn from ``write_seed``. ``programming``: a preset of
    :data:`~prime.hardware.programming.WRITE_VERIFY` (``ideal``, ``write-verify``,
    ``write-once``), its window's top at the device's programmable maximum, or a
    :class:`~prime.hardware.programming.WriteVerify` used as it is."""
    writer = writer_for(programming, device_model)
    writes = torch.Generator().manual_seed(write_seed)
    order = _chain(graph)
    input_node = graph.nodes[order[0]]
    input_shape = tuple(int(n) for n in next(iter(input_node.input_type.values())))
    make = dict(
        device_model=device_model,
        chip=chip_generator(chip_seed),
        scores_generator=torch.Generator().manual_seed(0),
        keep=1.0,
    )
    layers: list[nn.Module] = []
    programmed: list[tuple[str, ProgrammedLayer]] = []
    h = torch.zeros(1, *input_shape)
    for name in order[1:-1]:
        node = graph.nodes[name]
        layer = _layer(name, node, make, dt_s)
        if isinstance(layer, MemristorLayer):
            bias = getattr(node, "bias", None)
            cells = program_layer(
                layer,
                torch.as_tensor(np.asarray(node.weight, dtype=np.float32)),
                None if bias is None else torch.as_tensor(np.asarray(bias, dtype=np.float32)),
                writer,
                writes,
                weight_quantile,
            )
            programmed.append((name, cells))
        h = check_chains(f"NIR node {name!r} ({type(node).__name__})", layer, h)
        layers.append(layer)
    network = SpikingNetwork(layers, input_shape, timesteps, int(h[0].numel()))
    network.config = ModelConfig(
        name="nir-import",
        device_model=device_model.to_config(),
        chip_seed=chip_seed,
        keep=1.0,
        timesteps=timesteps,
    )
    return network.eval(), ImportReport(writer, programmed)


def writer_for(programming: str | WriteVerify, device_model: ConductanceModel) -> WriteVerify:
    """The writer of ``programming``: a preset of
    :data:`~prime.hardware.programming.WRITE_VERIFY` with its window's top at the device's
    programmable maximum, or a :class:`~prime.hardware.programming.WriteVerify` as it is."""
    if isinstance(programming, str):
        return WRITE_VERIFY.get(programming).within(device_model)
    return programming


def program_layer(
    layer: MemristorLayer,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    writer: WriteVerify,
    writes: torch.Generator,
    weight_quantile: float = 1.0,
) -> ProgrammedLayer:
    """Program trained ``weight`` onto ``layer``'s cells by ``writer``, its write noise drawn
    from ``writes`` (:func:`~prime.hardware.programming.program_weight`), and copy ``bias``
    into its digital bias (the layer has one where ``bias`` is given)."""
    cells = program_weight(weight, writer, writes, weight_quantile)
    layer.load_conductances(cells.g_us, scale=cells.scale)
    if bias is not None:
        assert layer.bias is not None  # made with bias=True
        with torch.no_grad():
            layer.bias.copy_(bias.reshape(layer.bias.shape))
    return cells


def _chain(graph) -> list[str]:
    """The node names from input to output (``PrimeError`` if the graph is not a chain or
    holds an unsupported node)."""
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if kind not in SUPPORTED:
            raise PrimeError(
                f"NIR node {name!r} of type {kind} is not supported; prime imports "
                f"{', '.join(SUPPORTED)}"
            )
    after: dict[str, str] = {}
    for source, target in graph.edges:
        if source in after:
            raise PrimeError(f"NIR node {source!r} feeds several nodes; prime imports chains")
        after[source] = target
    inputs = [n for n, node in graph.nodes.items() if type(node).__name__ == "Input"]
    if len(inputs) != 1:
        raise PrimeError(f"a NIR graph to import needs one Input node, this one has {inputs}")
    order = inputs
    while order[-1] in after and len(order) <= len(graph.nodes):
        order.append(after[order[-1]])
    if len(order) != len(graph.nodes) or type(graph.nodes[order[-1]]).__name__ != "Output":
        raise PrimeError(
            "the NIR graph is not one chain from its Input to its Output node (found "
            f"{' -> '.join(order)} of {len(graph.nodes)} nodes)"
        )
    return order


def _layer(name: str, node, make: dict, dt_s: float) -> nn.Module:
    kind = type(node).__name__
    if kind in ("Linear", "Affine", "Conv2d"):
        bias = getattr(node, "bias", None) is not None
        weight = np.asarray(node.weight)
        if kind != "Conv2d":
            return MemristorLinear(weight.shape[1], weight.shape[0], bias=bias, **make)
        if node.groups != 1 or _pixels(name, "dilation", node.dilation) != (1, 1):
            raise PrimeError(f"NIR node {name!r} (Conv2d): prime's crossbars take groups = 1 "
                             "and dilation = 1")  # fmt: skip
        return MemristorConv2d(
            weight.shape[1],
            weight.shape[0],
            (weight.shape[2], weight.shape[3]),
            _pixels(name, "stride", node.stride),
            _pixels(name, "padding", node.padding),
            bias=bias,
            **make,
        )
    slope = float(node.metadata.get(LEAK_SLOPE_KEY, 1.0))
    if kind in ("LIF", "IF"):
        _check_zero(name, node, "v_reset")
        if kind == "LIF":
            _check_zero(name, node, "v_leak")
            tau = _one(name, node, "tau")
            decay, w_in = dt_s / tau, _one(name, node, "r") * dt_s / tau
        else:
            decay, w_in = 0.0, _one(name, node, "r") * dt_s
        threshold = _one(name, node, "v_threshold") / w_in
        return LIF(LIFParams(threshold=threshold, decay=decay, leak_slope=slope))
    if kind == "I":
        if not np.isclose(_one(name, node, "r") * dt_s, 1.0):
            raise PrimeError(f"NIR node {name!r} (I): prime's integrator adds its input "
                             f"unscaled, so r · dt must be 1 (dt = {dt_s:g} s)")  # fmt: skip
        return Integrator(slope)
    if kind == "AvgPool2d":
        return nn.AvgPool2d(_pair(node.kernel_size), _pair(node.stride), _pair(node.padding))
    end = node.end_dim + 1 if node.end_dim >= 0 else node.end_dim
    return nn.Flatten(node.start_dim + 1, end)  # Flatten: NIR's dims leave out the batch


def _pair(value) -> tuple[int, int]:
    first, second = (int(v) for v in np.broadcast_to(np.asarray(value), (2,)))
    return first, second


def check_chains(label: str, layer: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """``layer``'s output for the previous layer's output ``h`` (one zero frame); a
    PrimeError naming ``label`` (the node or module) where the shapes do not chain."""
    try:
        with torch.no_grad():
            return layer(h.unsqueeze(0))[0] if isinstance(layer, NeuronLayer) else layer(h)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise PrimeError(
            f"{label} cannot take the previous layer's output of shape {tuple(h.shape[1:])}: "
            f"the shapes do not chain ({first})"
        ) from None


def _one(name: str, node, field: str) -> float:
    values = np.unique(np.asarray(getattr(node, field), dtype=np.float64))
    if values.size != 1 or not np.isfinite(values[0]):
        raise PrimeError(
            f"NIR node {name!r} ({type(node).__name__}): prime needs one finite {field} for "
            f"all neurons of a layer, got {values[:4]}{' ...' if values.size > 4 else ''}"
        )
    return float(values[0])


def _check_zero(name: str, node, field: str) -> None:
    value = getattr(node, field, None)
    if value is not None and np.any(np.asarray(value) != 0):
        raise PrimeError(
            f"NIR node {name!r} ({type(node).__name__}): prime's neurons reset to and leak "
            f"towards 0; {field} must be 0"
        )


def _pixels(name: str, what: str, value) -> tuple[int, int]:
    """A Conv2d node's stride, padding or dilation as (height, width) pixels."""
    if isinstance(value, str):
        raise PrimeError(
            f"NIR node {name!r} (Conv2d): padding {value!r} is not supported; give it in pixels"
        )
    return _pair(value)
