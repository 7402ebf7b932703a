"""Energy and latency of spiking inference, counted from real runs.

**Counting.** :func:`count_operations` observes a model through forward hooks while any
inference runs inside it (multi-step forward, single-step forward, or early exit driving
``model.step`` with a shrinking batch) and fills :class:`OperationCounts`: per layer and per
timestep, summed over samples. Nothing of the model is replaced; the fused LIF + pooling
kernel steps aside for hooked layers, so the spikes between them are made and counted.
Definitions (a *frame* is one sample at one timestep):

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
* ``bias_adds``: digital additions of a layer's bias, one per output element and frame
  (only layers that have a bias count it).
* digital layers (plain ``nn.Linear``/``nn.Conv2d``, e.g. a programmed-weights baseline's
  software layers): ``digital_macs``, every multiply-accumulate of the layer, and
  ``input_events``. A layer holding weights of any other kind is refused: it would go
  uncounted.

A recurrent layer (:mod:`prime.snn.recurrent`) is counted twice: its hidden crossbar as a
synaptic layer (one evaluation per frame and recurrent step: a :class:`Recurrent` layer's
step ``t`` is timestep ``t``, a :class:`FrameRecurrent` layer's steps all belong to their
frame's timestep) and the layer itself as a neuron layer (its neuron's updates).

Energy and latency models that turn counts into pJ and ns: :mod:`prime.analysis.energy.models`.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prime.core.device import module_device
from prime.core.errors import PrimeError
from prime.snn.layers import MemristorLayer
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, NeuronLayer, SubtractiveLIF
from prime.snn.recurrent import FrameRecurrent, Recurrent, crossbar_of

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
DIGITAL_METRICS = ("input_events", "digital_macs")
#: plain layers computed digitally, counted as digital multiply-accumulates
DIGITAL_LAYERS = nn.Linear | nn.Conv2d
#: what is counted: synaptic layers (crossbars), neuron layers, frame-recurrent layers and
#: digital layers
CountedLayer = MemristorLayer | NeuronLayer | FrameRecurrent | nn.Linear | nn.Conv2d


def _metrics(layer: CountedLayer) -> tuple[str, ...]:
    if isinstance(layer, NeuronLayer | FrameRecurrent):
        return NEURON_METRICS
    metrics = SYNAPSE_METRICS if isinstance(layer, MemristorLayer) else DIGITAL_METRICS
    return metrics if layer.bias is None else (*metrics, "bias_adds")


class LayerCounter:
    """Counts of one layer per timestep, summed over samples (NeuroBench-style metric object).

    ``update`` takes the layer's frames and the timestep of each frame; ``compute`` returns
    ``{metric: [count at t=0, t=1, ...]}``. The counts live on ``device`` (the model's).
    """

    def __init__(
        self, name: str, layer: CountedLayer, timesteps: int, device: torch.device | str = "cpu"
    ) -> None:
        self.name, self.layer, self.timesteps = name, layer, timesteps
        self.device = torch.device(device)
        self.metrics = _metrics(layer)
        self.reset()

    def reset(self) -> None:
        shape = (len(self.metrics), self.timesteps)
        self.counts = torch.zeros(shape, dtype=torch.float64, device=self.device)

    def add(self, per_frame: dict[str, torch.Tensor], timestep: torch.Tensor) -> None:
        """Add per-frame counts [N] at timesteps [N]."""
        values = torch.stack([per_frame[m].double() for m in self.metrics], dim=1)
        self.counts.index_add_(1, timestep, values.T)

    @torch.no_grad()
    def update_synapse(
        self, x: torch.Tensor, weight: torch.Tensor, out: torch.Tensor, timestep: torch.Tensor
    ) -> None:
        """Count a synaptic layer's frames x [N, ...] with effective ``weight``, giving
        outputs ``out`` [N, ...]."""
        if not isinstance(self.layer, MemristorLayer):
            raise TypeError(f"{self.name} is not a memristor layer")
        self.add({**synapse_counts(self.layer, x, weight), **_bias_adds(out)}, timestep)

    @torch.no_grad()
    def update_digital(self, x: torch.Tensor, out: torch.Tensor, timestep: torch.Tensor) -> None:
        """Count a digital layer's frames x [N, ...] and outputs [N, ...]: every
        multiply-accumulate (output elements x fan-in), nonzero inputs, bias additions."""
        assert isinstance(self.layer, DIGITAL_LAYERS)
        fan_in = self.layer.weight[0].numel()
        outputs = out[0].numel()
        per_frame = {
            "input_events": (x != 0).flatten(1).sum(1),
            "digital_macs": x.new_full((len(x),), float(outputs * fan_in)),
            **_bias_adds(out),
        }
        self.add(per_frame, timestep)

    @torch.no_grad()
    def update_neuron(self, out: torch.Tensor, timestep: torch.Tensor) -> None:
        """Count a neuron layer's outputs [N, ...]."""
        frames = out.flatten(1)
        per_frame = {
            "neuron_updates": frames.new_full((len(frames),), frames.shape[1]),
            "output_events": (frames != 0).sum(1),
        }
        self.add(per_frame, timestep)

    def compute(self) -> dict[str, list[float]]:
        return {m: self.counts[i].tolist() for i, m in enumerate(self.metrics)}


def _bias_adds(out: torch.Tensor) -> dict[str, torch.Tensor]:
    """``bias_adds`` per frame of a layer's outputs [N, ...] (used where it has a bias)."""
    return {"bias_adds": out.new_full((len(out),), float(out[0].numel()))}


def synapse_counts(
    layer: MemristorLayer, x: torch.Tensor, weight: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Per-frame counts [N] of a synaptic layer on frames x [N, ...] (see module docstring).

    Uses the layer's ``linear_map`` on binarised inputs and weights, so every synaptic
    layer type is counted the same way.
    """
    apply = type(layer).linear_map
    events = (x != 0).to(weight.dtype)
    ones_kernel = weight.new_ones((1, *weight.shape[1:]))
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
        "evaluations_all": rows.new_full((len(x),), rows.shape[1]),
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "sample_steps": self.sample_steps,
            "steps_per_sample": self.steps_per_sample(),
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
    """Tracks the timestep of every frame while ``count_operations`` is active, from the
    network's forward pre- and post-hooks (one call per sequence or per step)."""

    def __init__(self, model: SpikingNetwork) -> None:
        self.timesteps = model.timesteps
        self.samples = 0
        self.sample_steps = [0.0] * self.timesteps  # plain numbers: no tensor on any device
        self.step_t: int | None = None  # inside a single step: its timestep
        self.last_t = -1
        self.steps_started = 0
        self.sequences: list[tuple[int, int]] = []  # (batch, steps started) of open sequences

    def frame_timesteps(self, frames: torch.Tensor) -> torch.Tensor:
        """Timestep of each of the frames [N, ...] (on their device): the current step, or
        [T*B] multi-step frames."""
        n_frames = len(frames)
        if self.step_t is not None:
            return torch.full((n_frames,), self.step_t, dtype=torch.long, device=frames.device)
        if n_frames % self.timesteps:
            raise PrimeError(f"cannot count {n_frames} frames of a {self.timesteps}-step model")
        steps = torch.arange(self.timesteps, device=frames.device)
        return steps.repeat_interleave(n_frames // self.timesteps)

    def before(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        state = kwargs.get("state")
        if state is None:  # a whole sequence [T, B, ...]
            self.sequences.append((args[0].shape[1], self.steps_started))
            return
        batch, fresh = args[0].shape[0], all(s is None for s in state)
        t = 0 if fresh else self.last_t + 1
        if t >= self.timesteps:
            raise PrimeError(f"counted more than the model's {self.timesteps} timesteps")
        self.samples += batch if fresh else 0
        self.sample_steps[t] += float(batch)
        self.step_t = self.last_t = t
        self.steps_started += 1

    def after(self, module: Any, args: tuple, kwargs: dict[str, Any], output: Any) -> None:
        if kwargs.get("state") is not None:
            self.step_t = None
            return
        batch, steps_before = self.sequences.pop()
        if self.steps_started == steps_before:  # the multi-step path ran: all T steps
            self.samples += batch
            self.sample_steps = [steps + batch for steps in self.sample_steps]


_COUNTING: weakref.WeakSet[SpikingNetwork] = weakref.WeakSet()


@contextlib.contextmanager
def count_operations(model: SpikingNetwork) -> Iterator[OperationCounts]:
    """Count every inference run on ``model`` inside the ``with`` block.

    Yields an :class:`OperationCounts` that is filled in when the block exits. A new input
    sequence starts with a forward over a whole sequence or a step with a fresh state (all
    ``None``). Forward hooks on the network and its layers observe the run; they are
    removed afterwards.
    """
    if model in _COUNTING:
        raise PrimeError("count_operations is already active on this model; do not nest it")
    recorder = _Recorder(model)
    for i, layer in enumerate(model.layers):
        _check_countable(i, layer)
    layers = _counted_layers(model)
    device = module_device(model)
    counters = [LayerCounter(name, layer, model.timesteps, device) for name, layer, _ in layers]
    owners = {layer: owner for _, layer, owner in layers}
    scan_steps: dict[nn.Module, int] = {}  # steps so far of a Recurrent layer's scan over T
    result = OperationCounts(0, [], [])

    def start_scan(layer: nn.Module, args: tuple) -> None:
        scan_steps[layer] = 0

    def timesteps_of(counter: LayerCounter, frames: torch.Tensor) -> torch.Tensor:
        owner = owners[counter.layer]
        if isinstance(owner, Recurrent) and recorder.step_t is None:  # step t of a scan over T
            t = scan_steps[owner]
            scan_steps[owner] = t + 1
            return torch.full((len(frames),), t, dtype=torch.long, device=frames.device)
        return recorder.frame_timesteps(frames)

    def count_synapse(counter: LayerCounter) -> Any:
        def hook(layer: MemristorLayer, args: tuple, output: torch.Tensor) -> None:
            x = args[0]
            read = args[1] if len(args) > 1 else None
            weight = layer.weight() if read is None else read.weight
            counter.update_synapse(x, weight, output, timesteps_of(counter, x))

        return hook

    def count_digital(counter: LayerCounter) -> Any:
        def hook(layer: nn.Module, args: tuple, output: torch.Tensor) -> None:
            x = args[0]
            counter.update_digital(x, output, recorder.frame_timesteps(x))

        return hook

    def count_neuron(counter: LayerCounter) -> Any:
        def hook(layer: nn.Module, args: tuple, output: Any) -> None:
            if isinstance(output, tuple):  # one step: (output, state)
                frames = output[0]
            elif isinstance(layer, FrameRecurrent):  # already frames [N, L, H]
                frames = output
            else:  # a scan [T, B, ...]
                frames = output.flatten(0, 1)
            counter.update_neuron(frames, recorder.frame_timesteps(frames))

        return hook

    handles = [
        model.register_forward_pre_hook(recorder.before, with_kwargs=True),
        model.register_forward_hook(recorder.after, with_kwargs=True),
    ]
    for counter in counters:
        if isinstance(counter.layer, MemristorLayer):
            count = count_synapse
        elif isinstance(counter.layer, NeuronLayer | FrameRecurrent):
            count = count_neuron
        else:
            count = count_digital
        handles.append(counter.layer.register_forward_hook(count(counter)))
    for owner in {owner for owner in owners.values() if isinstance(owner, Recurrent)}:
        handles.append(owner.register_forward_pre_hook(start_scan))
    _COUNTING.add(model)
    try:
        yield result
    finally:
        for handle in handles:
            handle.remove()
        _COUNTING.discard(model)
    result.samples = recorder.samples
    result.sample_steps = recorder.sample_steps
    result.layers = [_layer_summary(c) for c in counters]


def _check_countable(index: int, layer: nn.Module) -> None:
    """Refuse a network layer that holds weights (a parameter of two or more dimensions)
    outside the kinds the counters know: its operations would silently go uncounted."""
    if isinstance(layer, CountedLayer):
        return
    crossbars = {
        id(p) for m in layer.modules() if isinstance(m, MemristorLayer) for p in m.parameters()
    }
    unknown = [n for n, p in layer.named_parameters() if p.dim() >= 2 and id(p) not in crossbars]
    if unknown:
        raise PrimeError(
            f"count_operations cannot count layer {index} ({type(layer).__name__}): its "
            f"weights {', '.join(unknown)} are of a kind the counters do not know; build it "
            "from memristor layers or plain nn.Linear/nn.Conv2d (counted as digital MACs)"
        )


def _counted_layers(model: SpikingNetwork) -> list[tuple[str, CountedLayer, nn.Module | None]]:
    """(name, layer, owner) of every counted layer in order: synaptic and neuron layers, a
    recurrent layer's hidden crossbar (owned by the recurrent layer) before the layer."""
    counted: list[tuple[str, CountedLayer, nn.Module | None]] = []
    for i, layer in enumerate(model.layers):
        name = f"{i}: {type(layer).__name__}"
        hidden = crossbar_of(layer)
        if hidden is not None and hidden is not layer:
            counted.append((f"{name} hidden", hidden, layer))
        if isinstance(layer, CountedLayer):
            counted.append((name, layer, None))
    return counted


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
            read_path=layer.read_path.config.to_dict(),
            row_tiles=layer.read_path.tiles(rows),
        )
    elif isinstance(layer, NeuronLayer | FrameRecurrent):
        neuron = layer.cell.neuron if isinstance(layer, Recurrent | FrameRecurrent) else layer
        summary.update(kind="neuron", spiking=isinstance(neuron, LIF | SubtractiveLIF))
    else:
        summary.update(kind="digital", outputs=layer.weight.shape[0])
    return summary
