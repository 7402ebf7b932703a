"""A spiking network: a sequence of supermask, neuron and stateless layers, run over time.

Two execution modes give identical results (parity tests keep them so):

* ``"multi"`` (multi-step, the training fast path): input [T, B, ...] is processed layer by
  layer; every synaptic layer runs once on all T*B frames, every neuron layer scans over T.
* ``"single"`` (single-step): one timestep at a time through all layers, with explicit
  state (:meth:`SpikingNetwork.step`).

A chunk of k steps runs multi-step from a state and returns the state after it (inference:
what early exit drives between its exit checks), with the results of k single steps.

Both call every layer as a module (``layer(x)``), so forward hooks and ``model.apply(fn)``
see every layer; the network's own forward takes a whole sequence, or one step with
``state=``. The supermasks are computed and the crossbars read once per input sequence,
never once per timestep, unless the chip is read anew every step
(:meth:`SpikingNetwork.read_every_step`, trace replay per step).

Batch norm, where a model has it, normalises over T*B frames in multi-step training and
over B frames in single-step training; in evaluation both agree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.readpath import CrossbarRead
from prime.kernels.lif import lif_pool_scan, lif_pool_scan_from
from prime.kernels.memory import avg_pool2d_saving_shape, spikes_saved_as_bool
from prime.snn.config import ModelConfig
from prime.snn.layers import MemristorLayer
from prime.snn.masks import check_keep, global_supermasks
from prime.snn.neurons import LIF, NeuronLayer
from prime.snn.recurrent import crossbar_of

MODES = ("multi", "single")


class SpikingNetwork(nn.Module):
    """Layers run over ``timesteps`` steps; output integrator values per step [T, B, C].

    The prediction is the mean output over timesteps (:meth:`logits`).

    Args:
        layers: supermask layers, neuron layers and stateless modules, in order.
        input_shape: shape of one frame, e.g. (2, 34, 34).
        timesteps: number of timesteps T an input must have.
        num_classes: size of the output.
        mask_scope: ``"layer"`` (each layer keeps its fraction) or ``"global"`` (one top-k
            over all layers' scores; every layer must have the same kept fraction).
    """

    config: ModelConfig  # what built the model (set by prime.snn.models.build_model)

    def __init__(
        self,
        layers: Sequence[nn.Module],
        input_shape: tuple[int, ...],
        timesteps: int,
        num_classes: int,
        mask_scope: str = "layer",
    ) -> None:
        super().__init__()
        if mask_scope not in ("layer", "global"):
            raise PrimeError(f"mask scope must be 'layer' or 'global', got {mask_scope!r}")
        if not isinstance(timesteps, int) or timesteps < 1:
            raise PrimeError(f"timesteps must be a whole number >= 1, got {timesteps!r}")
        for i, layer in enumerate(layers):
            _check_steppable(i, layer)
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(input_shape)
        self.timesteps = timesteps
        self.num_classes = num_classes
        self.mask_scope = mask_scope
        self._before_step_read: Callable[[], None] | None = None

    def memristor_layers(self) -> list[MemristorLayer]:
        """Every supermask crossbar in order, recurrent layers' hidden crossbars included."""
        return [m for m in self.layers.modules() if isinstance(m, MemristorLayer)]

    def masks(self) -> list[torch.Tensor]:
        """One binary mask per supermask layer, with straight-through gradients."""
        layers = self.memristor_layers()
        if self.mask_scope == "layer":
            return [layer.mask() for layer in layers]
        keep = {layer.keep for layer in layers}
        if len(keep) != 1:
            raise PrimeError("a global mask needs the same kept fraction in every layer")
        return global_supermasks([layer.scores for layer in layers], check_keep(keep.pop()))

    def crossbar_reads(self) -> list[CrossbarRead | None]:
        """One read per layer of the crossbar it reads through (``None`` for layers without;
        :func:`prime.snn.recurrent.crossbar_of`), masks computed once."""
        masks = iter(self.masks())
        crossbars = [crossbar_of(m) for m in self.layers]
        return [None if c is None else c.read(next(masks)) for c in crossbars]

    def weights(self) -> list[torch.Tensor | None]:
        """Effective weights, one per layer (``None`` for layers without), one read each."""
        return [None if read is None else read.weight for read in self.crossbar_reads()]

    @torch.no_grad()
    def calibrate_read_paths(self, batches: Iterable[torch.Tensor]) -> int:
        """Calibrate the ranges the read paths leave open (DAC and ADC full scales, digital
        words) on input sequences [T, B, ...], run with ideal conversion; returns how many
        read paths were calibrated (0: nothing to calibrate, no batch is run). Runs in
        evaluation mode (batch-norm statistics stay as they are)."""
        paths = [m.read_path for m in self.memristor_layers() if m.read_path.config.calibrated]
        if not paths:
            return 0
        training = self.training
        self.eval()
        for path in paths:
            path.start_calibration()
        try:
            for x in batches:
                self(x)
        finally:
            for path in paths:
                path.finish_calibration()
            self.train(training)
        return len(paths)

    def read_every_step(self, before_read: Callable[[], None] | None) -> None:
        """Read the crossbars anew before every timestep, after calling ``before_read`` (which
        loads the chip's next read, e.g. :class:`prime.hardware.replay.TraceReplay`); every
        sequence then runs single-step. None: one read per sequence again."""
        self._before_step_read = before_read

    def sequence_reads(self, timesteps: int) -> Iterator[list[CrossbarRead | None]]:
        """The crossbar reads of one input sequence, one list per timestep: the same read at
        every step, or a new one per step (:meth:`read_every_step`)."""
        if self._before_step_read is None:
            reads = self.crossbar_reads()
            for _ in range(timesteps):
                yield reads
            return
        for _ in range(timesteps):
            self._before_step_read()
            yield self.crossbar_reads()

    def check_input(self, x: torch.Tensor) -> None:
        expected = (self.timesteps, "B", *self.input_shape)
        if not torch.is_tensor(x) or x.dim() != len(expected):
            got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise PrimeError(f"input must have shape [T, B, ...] = {expected}, got {got}")
        if tuple(x.shape[2:]) != self.input_shape:
            raise PrimeError(
                f"input frames have shape {tuple(x.shape[2:])}, this model expects "
                f"{self.input_shape} (input is [T, B, ...] = {expected})"
            )
        if x.shape[0] != self.timesteps:
            raise PrimeError(
                f"input has {x.shape[0]} timesteps, this model runs {self.timesteps} "
                f"(input is [T, B, ...] = {expected}; build the model with timesteps="
                f"{x.shape[0]} or bin the data into {self.timesteps} frames)"
            )

    def forward(
        self,
        x: torch.Tensor,
        mode: str = "multi",
        *,
        state: list[torch.Tensor | None] | None = None,
        reads: list[CrossbarRead | None] | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor | None]]:
        """A whole sequence, one timestep, or a chunk of timesteps.

        Without ``state``: x [T, B, ...] -> output integrator values after every step
        [T, B, num_classes], run in ``mode``. With ``state`` (from :meth:`initial_state` or a
        step before): one step, frame x [B, ...] -> (output [B, num_classes], new state), or
        a chunk of k steps, x [k, B, ...] -> (outputs [k, B, num_classes], state after them),
        run multi-step (inference); both through ``reads`` (:meth:`crossbar_reads`, once per
        sequence; read now if omitted), for every step of a chunk.
        """
        if state is not None:
            reads = self.crossbar_reads() if reads is None else reads
            if x.dim() == len(self.input_shape) + 2:
                return self._forward_multi(x, reads, state)
            return self._step(x, state, reads)
        self.check_input(x)
        if mode not in MODES:
            raise PrimeError(f"unknown execution mode {mode!r}; known: {', '.join(MODES)}")
        if mode == "multi" and self._before_step_read is None:
            return self._forward_multi(x, self.crossbar_reads())[0]
        state = self.initial_state()
        outputs = []
        for frame, step_reads in zip(x, self.sequence_reads(len(x)), strict=True):
            out, state = self(frame, state=state, reads=step_reads)
            outputs.append(out)
        return torch.stack(outputs)

    def step(
        self,
        frame: torch.Tensor,
        state: list[torch.Tensor | None],
        reads: list[CrossbarRead | None] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """One timestep: frame [B, ...] -> (output [B, num_classes], new state).

        ``reads`` from :meth:`crossbar_reads` (once per input sequence); read now if omitted.
        States are per layer and batch-indexable, so rows can be dropped between steps
        (early exit). The same as ``model(frame, state=state, reads=reads)``.
        """
        return self(frame, state=state, reads=reads)

    def logits(self, x: torch.Tensor, mode: str = "multi") -> torch.Tensor:
        """The prediction: mean output over timesteps, [B, num_classes]."""
        return self(x, mode).mean(0)

    def _forward_multi(
        self,
        x: torch.Tensor,
        reads: list[CrossbarRead | None],
        state: list[torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """Layer by layer over x [T, B, ...] from rest, or from ``state`` (a chunk): (outputs
        [T, B, C], the state after the last step; from rest: ``None`` per layer)."""
        T, B = x.shape[:2]
        h = x
        new_state: list[torch.Tensor | None] = (
            [None] * len(self.layers) if state is None else list(state)
        )
        pooled_already = False  # the layer is average pooling, fused into the LIF scan before it
        with spikes_saved_as_bool() as mark_spikes:
            for i, (layer, read) in enumerate(zip(self.layers, reads, strict=True)):
                if pooled_already:
                    pooled_already = False
                    continue
                if isinstance(layer, NeuronLayer):
                    mem = None  # from rest; in a chunk, from the state
                    if state is not None:
                        mem = layer.initial_state(h[0]) if state[i] is None else state[i]
                    fused = self._fused_pooling(layer, h, self.layers[i + 1 : i + 3], mem)
                    if fused is not None:
                        (h, new_state[i]), pooled_already = fused, True
                        continue
                    carried = {} if read is None else {"read": read}  # recurrent: hidden read
                    if mem is None:
                        h = layer(h, **carried)
                    else:
                        h, new_state[i] = layer(h, mem, **carried)
                    if isinstance(layer, LIF):
                        mark_spikes(h)
                else:
                    frames = h.flatten(0, 1)
                    if read is not None:
                        frames = layer(frames, read)
                    elif isinstance(layer, nn.AvgPool2d) and not _observed(layer):
                        frames = avg_pool2d_saving_shape(frames, layer)
                    else:
                        frames = layer(frames)
                    h = frames.unflatten(0, (T, B))
        return h, new_state

    def _fused_pooling(
        self,
        layer: nn.Module,
        h: torch.Tensor,
        following: nn.ModuleList,
        mem: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None] | None:
        """A LIF layer and the non-overlapping average pooling after it in one native scan
        (:func:`prime.kernels.lif.lif_pool_scan`, from membranes ``mem`` if given), as
        (pooled frames, membranes after the last step or None), or None where that does not
        apply (or a hook observes either layer: the spikes between them are then made). The
        pooled frames are channels-last for a convolution, contiguous for a flatten after."""
        pool = following[0] if following else None
        if not (isinstance(layer, LIF) and layer.word is None and isinstance(pool, nn.AvgPool2d)):
            return None  # (a fixed-point membrane runs step by step)
        kernel = _non_overlapping_pool_kernel(pool)
        if kernel is None or _observed(layer) or _observed(pool):
            return None
        channels_last = not (len(following) > 1 and isinstance(following[1], nn.Flatten))
        if mem is not None:
            return lif_pool_scan_from(h, mem, layer.params, kernel, channels_last)
        pooled = lif_pool_scan(h, layer.params, kernel, channels_last=channels_last)
        return None if pooled is None else (pooled, None)

    def observed(self) -> bool:
        """Whether forward hooks watch the network or any of its layers (e.g. energy
        counting): a caller that would skip its per-step calls then makes them."""
        return any(_observed(module) for module in self.modules())

    def initial_state(self) -> list[torch.Tensor | None]:
        """Fresh state for single-step inference: ``None`` per layer, zeros on first use."""
        return [None] * len(self.layers)

    def _step(
        self,
        frame: torch.Tensor,
        state: list[torch.Tensor | None],
        reads: list[CrossbarRead | None],
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        new_state = list(state)
        h = frame
        for i, (layer, read) in enumerate(zip(self.layers, reads, strict=True)):
            if isinstance(layer, NeuronLayer):
                mem = layer.initial_state(h) if state[i] is None else state[i]
                h, new_state[i] = layer(h, mem) if read is None else layer(h, mem, read=read)
            else:
                h = layer(h) if read is None else layer(h, read)
        return h, new_state

    def load_conductances(self, cells_us: Sequence[torch.Tensor]) -> None:
        """Replace the cells of every memristor layer, in order (one [2, *weight_shape]
        tensor per layer, µS), keeping each layer's reset cells."""
        layers = self.memristor_layers()
        if len(cells_us) != len(layers):
            raise PrimeError(
                f"this network has {len(layers)} memristor layers, got cells for {len(cells_us)}"
            )
        for layer, g_us in zip(layers, cells_us, strict=True):
            layer.load_conductances(g_us, layer.reset_us)

    def set_read_noise(self, sigma: float, seed: int | None = None) -> None:
        """Multiplicative read noise σ on every crossbar read (0 turns it off)."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for layer in self.memristor_layers():
            layer.read_noise = float(sigma)
            layer.read_generator = generator

    def kept_fraction(self) -> float:
        """Fraction of all edges the masks keep (1 for a model of plain weights)."""
        with torch.no_grad():
            masks = self.masks()
            return (
                sum(m.sum().item() for m in masks) / max(sum(m.numel() for m in masks), 1)
                if masks
                else 1.0
            )


#: (package, base class) of the neuron modules of other libraries that keep their state
#: inside the module between calls
FOREIGN_STATEFUL = (("snntorch", "SpikingNeuron"), ("spikingjelly", "MemoryModule"))


def _check_steppable(index: int, layer: nn.Module) -> None:
    """Refuse a layer that keeps its neuron state inside itself (an snnTorch or SpikingJelly
    neuron): the network carries the state of its own neuron layers, and runs every other
    layer once on all T * B frames in multi-step mode, which such a module would take for
    one step."""
    for module in layer.modules():
        bases = {(c.__module__.split(".")[0], c.__name__) for c in type(module).__mro__}
        if bases & set(FOREIGN_STATEFUL):
            kind = f"{type(module).__module__.split('.')[0]}.{type(module).__name__}"
            raise PrimeError(
                f"layer {index} ({kind}) keeps its neuron state inside the module, which a "
                "SpikingNetwork cannot step (multi-step mode would run it once on all "
                "timesteps): build the network with prime.convert(model, ...), which maps "
                "snnTorch's Leaky onto prime's LIF, or use prime.LIF / prime.SubtractiveLIF"
            )


def _observed(module: nn.Module) -> bool:
    """Whether forward hooks watch ``module`` (its own or global ones): a fast path that
    skips the module's call would hide its output from them."""
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or nn.modules.module._global_forward_hooks
        or nn.modules.module._global_forward_pre_hooks
    )


def _non_overlapping_pool_kernel(pool: nn.AvgPool2d) -> int | None:
    """k for a k x k average pooling with stride k and no padding (square, plain), else None."""
    pair = nn.modules.utils._pair
    kernel, stride = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size)
    plain = pair(pool.padding) == (0, 0) and not pool.ceil_mode and pool.divisor_override is None
    return kernel[0] if plain and kernel == stride and kernel[0] == kernel[1] else None
