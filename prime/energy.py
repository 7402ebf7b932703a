"""Energy and latency of spiking inference, counted from real runs.

**Counting.** :func:`count_operations` wraps a model's layers while any inference runs inside
it (multi-step forward, single-step forward, or early exit driving ``model.step`` with a
shrinking batch) and fills :class:`OperationCounts`: per layer and per timestep, summed over
samples. Definitions (a *frame* is one sample at one timestep):

* ``input_events``: nonzero inputs of a synaptic layer (events or spikes).
* ``dense_ops``: multiply-accumulates a dense digital accelerator does, all inputs and all
  weights (NeuroBench's ``Dense``; padding is not counted).
* ``synops``: NeuroBench's effective synaptic operations, nonzero input x nonzero weight
  pairs; accumulates (``acs``) when the layer's input is all in {-1, 0, 1} (spikes), else
  multiply-accumulates (``macs``), exactly as ``neurobench.metrics.utils.layers.
  single_layer_MACs``.
* ``event_ops``: nonzero input x any weight pairs (synaptic operations of the unpruned net).
* crossbar mapping (:attr:`MemristorLayer.crossbar_shape`: fan-in rows, a G+ and a G- column
  per output): one *evaluation* per frame for a linear layer, per output position for a
  convolution (im2col). ``row_activations`` = nonzero inputs in the evaluation's receptive
  field, summed over evaluations; ``evaluations`` = evaluations with at least one active row
  (an event-driven macro skips the others); ``cell_reads`` = 2 x ``synops`` (both cells of
  every kept pair on an active row; pruned pairs are reset and conduct no current).
* ``neuron_updates``: neuron state updates (every neuron, every frame); ``output_events``:
  nonzero neuron outputs (spikes; the output integrator's nonzero membranes).
* ``sample_steps``: samples that ran each timestep (early exit makes it fall with t).

**Models.** :class:`AnalogMacro` and :class:`DigitalAccelerator` are presets in
:data:`ENERGY_MODELS` (every constant's source in its docstring); :func:`load_energy_model`
reads user constants from a JSON file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prime.errors import PrimeError
from prime.layers import MemristorLayer
from prime.network import SpikingNetwork
from prime.neurons import LIF, NeuronLayer
from prime.registry import Registry

SYNAPSE_METRICS = (
    "input_events",
    "dense_ops",
    "event_ops",
    "acs",
    "macs",
    "row_activations",
    "evaluations",
    "evaluations_all",
)
NEURON_METRICS = ("neuron_updates", "output_events")


class LayerCounter:
    """Counts of one layer per timestep, summed over samples (NeuroBench-style metric object).

    ``update`` takes the layer's frames and the timestep of each frame; ``compute`` returns
    ``{metric: [count at t=0, t=1, ...]}``.
    """

    def __init__(self, name: str, layer: torch.nn.Module, timesteps: int) -> None:
        self.name, self.layer, self.timesteps = name, layer, timesteps
        self.metrics = SYNAPSE_METRICS if isinstance(layer, MemristorLayer) else NEURON_METRICS
        self.reset()

    def reset(self) -> None:
        self.counts = torch.zeros(len(self.metrics), self.timesteps, dtype=torch.float64)

    def add(self, per_frame: dict[str, torch.Tensor], timestep: torch.Tensor) -> None:
        """Add per-frame counts [N] at timesteps [N]."""
        values = torch.stack([per_frame[m].double() for m in self.metrics], dim=1)
        self.counts.index_add_(1, timestep, values.T)

    @torch.no_grad()
    def update_synapse(self, x: torch.Tensor, weight: torch.Tensor, timestep: torch.Tensor) -> None:
        """Count a synaptic layer's frames x [N, ...] with effective ``weight``."""
        self.add(synapse_counts(self.layer, x, weight), timestep)

    @torch.no_grad()
    def update_neuron(self, out: torch.Tensor, timestep: torch.Tensor) -> None:
        """Count a neuron layer's outputs [N, ...]."""
        frames = out.flatten(1)
        per_frame = {
            "neuron_updates": torch.full((len(frames),), frames.shape[1]),
            "output_events": (frames != 0).sum(1),
        }
        self.add(per_frame, timestep)

    def compute(self) -> dict[str, list[float]]:
        return {m: self.counts[i].tolist() for i, m in enumerate(self.metrics)}


def synapse_counts(
    layer: MemristorLayer, x: torch.Tensor, weight: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-frame counts [N] of a synaptic layer on frames x [N, ...] (see module docstring).

    Uses the layer class's ``apply`` on binarised inputs and weights, so every synaptic
    layer type is counted the same way.
    """
    apply = type(layer).apply  # the class's, not the counting wrapper on the instance
    events = (x != 0).to(weight.dtype)
    ones_kernel = torch.ones((1, *weight.shape[1:]), dtype=weight.dtype)
    # each output element is a whole number <= fan-in (rounded, in case a fast convolution
    # algorithm rounds); sums in float64
    rows = apply(layer, events, ones_kernel).flatten(1).round().double()  # active rows/eval
    dense = apply(layer, torch.ones_like(events[:1]), ones_kernel).round().double().sum()
    dense = dense * len(weight)
    synops = apply(layer, events, (weight != 0).to(weight.dtype)).flatten(1).round()
    synops = synops.double().sum(1)
    spiking = bool(((x == 0) | (x == 1) | (x == -1)).all())
    zero = torch.zeros_like(synops)
    return {
        "input_events": (x != 0).flatten(1).sum(1),
        "dense_ops": dense.expand(len(x)),
        "event_ops": rows.sum(1) * len(weight),
        "acs": synops if spiking else zero,
        "macs": zero if spiking else synops,
        "row_activations": rows.sum(1),
        "evaluations": (rows > 0).sum(1),
        "evaluations_all": torch.full((len(x),), rows.shape[1]),
    }


@dataclass
class OperationCounts:
    """What :func:`count_operations` counted. Per-timestep lists are summed over samples."""

    samples: int
    sample_steps: list[float]
    layers: list[dict[str, Any]]

    def total(self, metric: str) -> float:
        """``metric`` summed over layers, timesteps and samples."""
        counts = [layer["counts"] for layer in self.layers]
        return sum(sum(c[metric]) for c in counts if metric in c)

    def per_sample(self, metric: str) -> float:
        return self.total(metric) / max(self.samples, 1)

    def synapse_layers(self) -> list[dict[str, Any]]:
        return [layer for layer in self.layers if layer["kind"] == "synapse"]

    @property
    def steps_per_sample(self) -> float:
        """Mean timesteps a sample ran."""
        return sum(self.sample_steps) / max(self.samples, 1)

    def synaptic_operations(self) -> dict[str, float]:
        """NeuroBench's ``SynapticOperations.compute()``: per-sample effective MACs, ACs, dense."""
        return {
            "Effective_MACs": self.per_sample("macs"),
            "Effective_ACs": self.per_sample("acs"),
            "Dense": self.per_sample("dense_ops"),
        }

    def activation_sparsity(self) -> float:
        """NeuroBench's activation sparsity: zero outputs / all outputs of the neuron layers."""
        updates = self.total("neuron_updates")
        return (updates - self.total("output_events")) / updates if updates else 0.0

    def cell_reads(self, pruned: bool = True) -> float:
        """Cells conducting, summed over evaluations: kept cells (``pruned``) or all cells."""
        return 2 * (self.total("acs") + self.total("macs") if pruned else self.total("event_ops"))

    def adc_conversions(self, conversions_per_output: int) -> float:
        return sum(
            sum(layer["counts"]["evaluations"]) * layer["outputs"] * conversions_per_output
            for layer in self.synapse_layers()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "sample_steps": self.sample_steps,
            "steps_per_sample": self.steps_per_sample,
            "synaptic_operations": self.synaptic_operations(),
            "activation_sparsity": self.activation_sparsity(),
            "layers": self.layers,
        }


def connection_sparsity(model: SpikingNetwork) -> float:
    """NeuroBench's connection sparsity: zero weights / all weights of the synaptic layers."""
    with torch.no_grad():
        weights = [w for w in model.weights() if w is not None]
    return sum((w == 0).sum().item() for w in weights) / sum(w.numel() for w in weights)


class _Recorder:
    """Tracks the timestep of every frame while ``count_operations`` is active."""

    def __init__(self, model: SpikingNetwork) -> None:
        self.timesteps = model.timesteps
        self.samples = 0
        self.sample_steps = torch.zeros(self.timesteps, dtype=torch.float64)
        self.step_t: int | None = None  # inside model.step: its timestep
        self.last_t = -1
        self.steps_started = 0

    def frame_timesteps(self, n_frames: int) -> torch.Tensor:
        """Timestep of each of n frames: the current step, or [T*B] multi-step frames."""
        if self.step_t is not None:
            return torch.full((n_frames,), self.step_t, dtype=torch.long)
        if n_frames % self.timesteps:
            raise PrimeError(f"cannot count {n_frames} frames of a {self.timesteps}-step model")
        return torch.arange(self.timesteps).repeat_interleave(n_frames // self.timesteps)

    def start_step(self, batch: int, fresh: bool) -> None:
        t = 0 if fresh else self.last_t + 1
        if t >= self.timesteps:
            raise PrimeError(f"counted more than the model's {self.timesteps} timesteps")
        self.samples += batch if fresh else 0
        self.sample_steps[t] += batch
        self.step_t = self.last_t = t
        self.steps_started += 1


@contextlib.contextmanager
def count_operations(model: SpikingNetwork) -> Iterator[OperationCounts]:
    """Count every inference run on ``model`` inside the ``with`` block.

    Yields an :class:`OperationCounts` that is filled in when the block exits. A new input
    sequence starts when ``model.step`` gets a fresh state (all ``None``) or on a multi-step
    forward. The model's methods are wrapped on the instance and restored afterwards.
    """
    if "step" in vars(model):
        raise PrimeError("count_operations is already active on this model; do not nest it")
    recorder = _Recorder(model)
    counters = [
        LayerCounter(f"{i}: {type(layer).__name__}", layer, model.timesteps)
        for i, layer in enumerate(model.layers)
        if isinstance(layer, MemristorLayer | NeuronLayer)
    ]
    result = OperationCounts(0, [], [])
    patched: list[tuple[Any, str]] = []

    def patch(obj: Any, name: str, wrapper: Any) -> None:
        object.__setattr__(obj, name, wrapper)
        patched.append((obj, name))

    def wrap_forward(original):
        def forward(x, mode="multi"):
            steps_before = recorder.steps_started
            out = original(x, mode)
            if recorder.steps_started == steps_before:  # the multi-step path ran
                recorder.samples += x.shape[1]
                recorder.sample_steps += x.shape[1]
            return out

        return forward

    def wrap_step(original):
        def step(frame, state, weights=None):
            recorder.start_step(frame.shape[0], all(s is None for s in state))
            try:
                return original(frame, state, weights)
            finally:
                recorder.step_t = None

        return step

    def wrap_apply(counter, original):
        def apply(x, weight):
            counter.update_synapse(x, weight, recorder.frame_timesteps(len(x)))
            return original(x, weight)

        return apply

    def wrap_neuron(counter, original, multi):
        def run(*args):
            out = original(*args)
            h = out if multi else out[0]
            frames = h.flatten(0, 1) if multi else h
            counter.update_neuron(frames, recorder.frame_timesteps(len(frames)))
            return out

        return run

    fused = model.fuse_pooling
    try:
        model.fuse_pooling = False  # count the spikes between LIF and pooling layers
        patch(model, "forward", wrap_forward(model.forward))
        patch(model, "step", wrap_step(model.step))
        for counter in counters:
            layer = counter.layer
            if isinstance(layer, MemristorLayer):
                patch(layer, "apply", wrap_apply(counter, layer.apply))
            else:
                patch(layer, "scan", wrap_neuron(counter, layer.scan, multi=True))
                patch(layer, "step", wrap_neuron(counter, layer.step, multi=False))
        yield result
    finally:
        for obj, name in patched:
            object.__delattr__(obj, name)
        model.fuse_pooling = fused
    if recorder.samples and not any(c.counts.any() for c in counters):
        raise PrimeError(
            "inference ran but no layer was counted: the network no longer calls its layers' "
            "apply/scan/step (prime.energy.count_operations must follow that change)"
        )
    result.samples = recorder.samples
    result.sample_steps = recorder.sample_steps.tolist()
    result.layers = [_layer_summary(c) for c in counters]


def _layer_summary(counter: LayerCounter) -> dict[str, Any]:
    layer = counter.layer
    summary: dict[str, Any] = {"name": counter.name, "counts": counter.compute()}
    if isinstance(layer, MemristorLayer):
        rows, columns = layer.crossbar_shape
        kept = int(layer.export_mask().sum())
        summary.update(
            kind="synapse",
            crossbar_rows=rows,
            crossbar_columns=columns,
            outputs=columns // 2,
            cells=rows * columns,
            kept_cells=2 * kept,
        )
    else:
        summary.update(kind="neuron", spiking=isinstance(layer, LIF))
    return summary


# --- energy and latency models -------------------------------------------------------------


@dataclass(frozen=True)
class AnalogMacro:
    """An RRAM compute-in-memory macro with digital neurons. Energies in pJ, times in ns.

    Defaults: ISAAC (Shafiee et al., ISCA 2016, Table 6, 32 nm), the standard published
    breakdown of an RRAM crossbar tile, and Horowitz (ISSCC 2014, 45 nm) for digital logic.

    Attributes:
        cell_read_pj: one cell conducting during one evaluation. ISAAC: a 128x128 array
            draws 0.3 mW over its 100 ns read cycle, 30 pJ / 16384 cells = 0.0018 pJ.
        row_drive_pj: one row driven (1-bit DAC + driver). ISAAC: 1024 1-bit DACs draw
            4 mW, 4 mW x 100 ns / 1024 = 0.39 pJ per row per evaluation.
        adc_pj: one ADC conversion. ISAAC: 8-bit SAR ADC, 2 mW at 1.28 GS/s = 1.56 pJ.
        neuron_update_pj: one digital LIF update: a 32-bit add (0.1 pJ) for the input
            current and an 8-bit multiply (0.2 pJ) for the leak, Horowitz 2014.
        digital_op_pj: one digital control/accumulate op, one per ADC conversion (shift-add
            of the converted column into the neuron current): a 32-bit add, Horowitz 2014.
        conversions_per_output: 1 when the G+ and G- column currents are subtracted in
            analog before one conversion (differential sensing), 2 when both are converted.
        read_ns: row drive and settling per evaluation. ISAAC's 100 ns cycle is set by its
            ADC; we take 10 ns, an assumption (RRAM reads settle in about 10 ns).
        adc_ns: one conversion: 1 / 1.28 GS/s = 0.78 ns (ISAAC).
        columns_per_adc: columns sharing one ADC (converted one after another). ISAAC: 128.
        neuron_step_ns: one parallel neuron update of a layer: one 1 GHz cycle (assumption).
    """

    kind: str = "analog"
    description: str = "RRAM crossbar macro (ISAAC 32 nm constants, Horowitz 45 nm neurons)"
    cell_read_pj: float = 0.0018
    row_drive_pj: float = 0.39
    adc_pj: float = 1.56
    neuron_update_pj: float = 0.3
    digital_op_pj: float = 0.1
    conversions_per_output: int = 1
    read_ns: float = 10.0
    adc_ns: float = 0.78
    columns_per_adc: int = 128
    neuron_step_ns: float = 1.0

    def energy_pj(self, counts: OperationCounts, pruned: bool = True) -> dict[str, float]:
        """Energy per inference by component, pJ; ``pruned=False`` keeps every cell."""
        conversions = counts.adc_conversions(self.conversions_per_output)
        per_sample = {
            "cells": counts.cell_reads(pruned) * self.cell_read_pj,
            "rows": counts.total("row_activations") * self.row_drive_pj,
            "adc": conversions * self.adc_pj,
            "digital": conversions * self.digital_op_pj,
            "neurons": counts.total("neuron_updates") * self.neuron_update_pj,
        }
        return {k: v / max(counts.samples, 1) for k, v in per_sample.items()}

    def latency_ns(self, counts: OperationCounts) -> float:
        """Time per inference: layers in sequence, evaluations of a layer one after another."""
        total = 0.0
        for layer in counts.synapse_layers():
            conversions = layer["outputs"] * self.conversions_per_output
            adcs = math.ceil(conversions / self.columns_per_adc)
            eval_ns = self.read_ns + math.ceil(conversions / adcs) * self.adc_ns
            total += sum(layer["counts"]["evaluations"]) * eval_ns
        neuron_layers = len(counts.layers) - len(counts.synapse_layers())
        total += sum(counts.sample_steps) * neuron_layers * self.neuron_step_ns
        return total / max(counts.samples, 1)

    def load(self, counts: OperationCounts, pruned: bool = True) -> float:
        """Synaptic operations per inference: kept (``pruned``) or all pairs on active rows."""
        return counts.cell_reads(pruned) / 2 / max(counts.samples, 1)


@dataclass(frozen=True)
class DigitalAccelerator:
    """A digital accelerator: dense (every multiply-accumulate of every frame) or
    event-driven (only the effective synaptic operations, as SpikingJelly estimates SNNs).

    Attributes:
        mac_pj: one multiply-accumulate (fp32 45 nm: 3.7 pJ multiply + 0.9 pJ add = 4.6 pJ,
            Horowitz, ISSCC 2014; the constant SpikingJelly uses).
        ac_pj: one accumulate (fp32 add, 0.9 pJ, Horowitz 2014); event-driven only.
        neuron_update_pj: one neuron update, counted as one MAC (leak multiply + add).
        macs_per_ns: throughput for latency: Eyeriss (Chen et al., JSSC 2017), 168 PEs at
            200 MHz = 33.6 MAC/ns, an assumption for a dense accelerator.
        event_driven: count ``acs`` x ``ac_pj`` + ``macs`` x ``mac_pj`` instead of all
            ``dense_ops`` x ``mac_pj``.
    """

    kind: str = "digital"
    description: str = "dense digital accelerator, fp32 at 45 nm (Horowitz 2014)"
    mac_pj: float = 4.6
    ac_pj: float = 0.9
    neuron_update_pj: float = 4.6
    macs_per_ns: float = 33.6
    event_driven: bool = False

    def energy_pj(self, counts: OperationCounts, pruned: bool = True) -> dict[str, float]:
        """Energy per inference by component, pJ (``pruned`` is ignored: the weights tell)."""
        if self.event_driven:
            synapses = {
                "acs": counts.per_sample("acs") * self.ac_pj,
                "macs": counts.per_sample("macs") * self.mac_pj,
            }
        else:
            synapses = {"macs": counts.per_sample("dense_ops") * self.mac_pj}
        return {**synapses, "neurons": counts.per_sample("neuron_updates") * self.neuron_update_pj}

    def latency_ns(self, counts: OperationCounts) -> float:
        return (self.load(counts) + counts.per_sample("neuron_updates")) / self.macs_per_ns

    def load(self, counts: OperationCounts, pruned: bool = True) -> float:
        """Synaptic operations per inference: effective (event-driven) or dense."""
        if self.event_driven:
            return counts.per_sample("acs") + counts.per_sample("macs")
        return counts.per_sample("dense_ops")


EnergyModel = AnalogMacro | DigitalAccelerator
ENERGY_MODELS: Registry[EnergyModel] = Registry("energy model")
ENERGY_MODELS.register("rram-macro")(AnalogMacro())
ENERGY_MODELS.register("digital-45nm-fp32")(DigitalAccelerator())
# GPU: 0.48 pJ per operation, the GPU figure of the PRIME authors' group as cited in issue #6
# (not re-derived here). Throughput: an A100's 19.5 fp32 TFLOPS peak = 9750 MAC/ns, an
# optimistic bound (small-batch SNN inference runs far from peak).
ENERGY_MODELS.register("gpu")(
    DigitalAccelerator(
        description="GPU-class digital baseline, 0.48 pJ per operation",
        mac_pj=0.48,
        ac_pj=0.48,
        neuron_update_pj=0.48,
        macs_per_ns=9750.0,
    )
)

_KINDS = {"analog": AnalogMacro, "digital": DigitalAccelerator}


def get_energy_model(name: str) -> EnergyModel:
    return ENERGY_MODELS.get(name)


def load_energy_model(path: str | Path) -> EnergyModel:
    """A model from a JSON file: ``{"base": PRESET, FIELD: VALUE, ...}`` or
    ``{"kind": "analog"|"digital", FIELD: VALUE, ...}``; unset fields keep the defaults."""
    path = Path(path)
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise PrimeError(f"no such energy constants file: {path}") from None
    except (OSError, ValueError) as exc:
        raise PrimeError(f"{path} is not a readable JSON file ({exc})") from None
    if not isinstance(spec, dict):
        raise PrimeError(f"{path} must hold a JSON object of constants")
    spec = dict(spec)
    if "base" in spec:
        base = get_energy_model(spec.pop("base"))
    else:
        kind = spec.pop("kind", None)
        if kind not in _KINDS:
            raise PrimeError(f"{path}: give 'base' (a preset) or 'kind' ({', '.join(_KINDS)})")
        base = _KINDS[kind]()
    return with_constants(base, spec, source=str(path))


def with_constants(model: EnergyModel, constants: dict[str, Any], source: str) -> EnergyModel:
    """``model`` with some constants replaced; unknown names and bad values fail."""
    fields = {f.name: f for f in dataclasses.fields(model) if f.name != "kind"}
    unknown = sorted(set(constants) - set(fields))
    if unknown:
        raise PrimeError(
            f"{source}: unknown constants {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    for name, value in constants.items():
        kind = fields[name].type
        if kind in ("str", "bool"):
            if type(value).__name__ != kind:
                expected = "text" if kind == "str" else "true or false"
                raise PrimeError(f"{source}: {name} must be {expected}, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise PrimeError(f"{source}: {name} must be a number > 0, got {value!r}")
        elif kind == "int" and value != int(value):
            raise PrimeError(f"{source}: {name} must be a whole number, got {value!r}")
    return dataclasses.replace(model, **constants)


@dataclass
class Scenario:
    """One row of the report: an energy model applied to one run's counts."""

    name: str
    model: EnergyModel
    counts: OperationCounts
    pruned: bool = True
    accuracy: float | None = None
    energy: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.energy = self.model.energy_pj(self.counts, self.pruned)

    @property
    def energy_pj(self) -> float:
        return sum(self.energy.values())

    @property
    def latency_ns(self) -> float:
        return self.model.latency_ns(self.counts)

    @property
    def load(self) -> float:
        return self.model.load(self.counts, self.pruned)

    def versus(self, baseline: Scenario) -> dict[str, float]:
        """× energy efficiency, % computational load saved and × latency (speed-up)."""
        return {
            "energy_efficiency_x": baseline.energy_pj / self.energy_pj,
            "load_saved_pct": 100 * (1 - self.load / baseline.load),
            "speedup_x": baseline.latency_ns / self.latency_ns,
        }
