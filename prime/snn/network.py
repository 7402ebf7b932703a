"""A spiking network: a sequence of supermask, neuron and stateless layers, run over time.

Two execution modes give identical results (parity tests keep them so):

* ``"multi"`` (multi-step, the training fast path): input [T, B, ...] is processed layer by
  layer; every synaptic layer runs once on all T*B frames, every neuron layer scans over T.
* ``"single"`` (single-step): one timestep at a time through all layers, with explicit
  state; what early exit drives through :meth:`SpikingNetwork.step`.

The supermasks and weights are computed once per forward call (one crossbar read), never
once per timestep. Batch norm, where a model has it, normalises over T*B frames in
multi-step training and over B frames in single-step training; in evaluation both agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.kernels.lif import lif_pool_scan
from prime.kernels.memory import avg_pool2d_saving_shape, spikes_saved_as_bool
from prime.snn.layers import MemristorLayer
from prime.snn.masks import check_keep, global_supermasks
from prime.snn.neurons import LIF, NeuronLayer

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
        self.layers = nn.ModuleList(layers)
        self.input_shape = tuple(input_shape)
        self.timesteps = timesteps
        self.num_classes = num_classes
        self.mask_scope = mask_scope
        #: optional hook ``T -> T weight lists``, one per timestep (e.g. one chip read per step,
        #: prime.hardware.replay); when set, every forward takes the single-step path with them
        self.step_weights: Callable[[int], list[list[torch.Tensor | None]]] | None = None
        #: multi-step: run a LIF layer and the average pooling after it as one native kernel
        #: (same results; off while prime.analysis.energy.counting counts the spikes between them)
        self.fuse_pooling = True

    def memristor_layers(self) -> list[MemristorLayer]:
        return [m for m in self.layers if isinstance(m, MemristorLayer)]

    def masks(self) -> list[torch.Tensor]:
        """One binary mask per supermask layer, with straight-through gradients."""
        layers = self.memristor_layers()
        if self.mask_scope == "layer":
            return [layer.mask() for layer in layers]
        keep = {layer.keep for layer in layers}
        if len(keep) != 1:
            raise PrimeError("a global mask needs the same kept fraction in every layer")
        return global_supermasks([layer.scores for layer in layers], check_keep(keep.pop()))

    def weights(self) -> list[torch.Tensor | None]:
        """Effective weights, one per layer (``None`` for layers without), one read each."""
        masks = iter(self.masks())
        return [
            m.weight(next(masks)) if isinstance(m, MemristorLayer) else None for m in self.layers
        ]

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

    def forward(self, x: torch.Tensor, mode: str = "multi") -> torch.Tensor:
        """Output integrator values after every step: x [T, B, ...] -> [T, B, num_classes]."""
        self.check_input(x)
        if mode not in MODES:
            raise PrimeError(f"unknown execution mode {mode!r}; known: {', '.join(MODES)}")
        if self.step_weights is not None:
            return self._forward_steps(x, self.step_weights(len(x)))
        weights = self.weights()
        if mode == "multi":
            return self._forward_multi(x, weights)
        return self._forward_steps(x, [weights] * len(x))

    def _forward_steps(
        self, x: torch.Tensor, step_weights: Sequence[list[torch.Tensor | None]]
    ) -> torch.Tensor:
        """Single-step path: timestep t runs with ``step_weights[t]``."""
        state = self.initial_state()
        outputs = []
        for frame, weights in zip(x, step_weights, strict=True):
            out, state = self.step(frame, state, weights)
            outputs.append(out)
        return torch.stack(outputs)

    def logits(self, x: torch.Tensor, mode: str = "multi") -> torch.Tensor:
        """The prediction: mean output over timesteps, [B, num_classes]."""
        return self(x, mode).mean(0)

    def _forward_multi(self, x: torch.Tensor, weights: list[torch.Tensor | None]) -> torch.Tensor:
        T, B = x.shape[:2]
        h = x
        pooled_already = False  # the layer is average pooling, fused into the LIF scan before it
        with spikes_saved_as_bool() as mark_spikes:
            for i, (layer, weight) in enumerate(zip(self.layers, weights, strict=True)):
                if pooled_already:
                    pooled_already = False
                    continue
                if isinstance(layer, NeuronLayer):
                    pooled = self._fused_pooling(layer, h, self.layers[i + 1 : i + 3])
                    if pooled is not None:
                        h, pooled_already = pooled, True
                        continue
                    h = layer.scan(h)
                    if isinstance(layer, LIF):
                        mark_spikes(h)
                else:
                    frames = h.flatten(0, 1)
                    if weight is not None:
                        frames = layer.apply(frames, weight)
                    elif isinstance(layer, nn.AvgPool2d):
                        frames = avg_pool2d_saving_shape(frames, layer)
                    else:
                        frames = layer(frames)
                    h = frames.unflatten(0, (T, B))
        return h

    def _fused_pooling(
        self, layer: nn.Module, h: torch.Tensor, following: Sequence[nn.Module]
    ) -> torch.Tensor | None:
        """A LIF layer and the non-overlapping average pooling after it in one native scan
        (:func:`prime.kernels.lif.lif_pool_scan`), or None where that does not apply. The pooled
        frames are channels-last for a convolution, contiguous for a flatten after them."""
        pool = following[0] if following else None
        if not (self.fuse_pooling and isinstance(layer, LIF) and isinstance(pool, nn.AvgPool2d)):
            return None
        kernel = _non_overlapping_pool_kernel(pool)
        if kernel is None:
            return None
        flatten_next = len(following) > 1 and isinstance(following[1], nn.Flatten)
        return lif_pool_scan(h, layer.params, kernel, channels_last=not flatten_next)

    def initial_state(self) -> list[torch.Tensor | None]:
        """Fresh state for single-step inference: ``None`` per layer, zeros on first use."""
        return [None] * len(self.layers)

    def step(
        self,
        frame: torch.Tensor,
        state: list[torch.Tensor | None],
        weights: list[torch.Tensor | None] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """One timestep: frame [B, ...] -> (output [B, num_classes], new state).

        ``weights`` from :meth:`weights` (computed once per input sequence); recomputed if
        omitted. States are per layer and batch-indexable, so rows can be dropped between
        steps (early exit).
        """
        weights = self.weights() if weights is None else weights
        new_state = list(state)
        h = frame
        for i, (layer, weight) in enumerate(zip(self.layers, weights, strict=True)):
            if isinstance(layer, NeuronLayer):
                mem = state[i] if state[i] is not None else layer.initial_state(h)
                h, new_state[i] = layer.step(h, mem)
            else:
                h = layer.apply(h, weight) if weight is not None else layer(h)
        return h, new_state

    def set_read_noise(self, sigma: float, seed: int | None = None) -> None:
        """Multiplicative read noise σ on every crossbar read (0 turns it off)."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        for layer in self.memristor_layers():
            layer.read_noise = float(sigma)
            layer.read_generator = generator

    def kept_fraction(self) -> float:
        """Fraction of all edges the masks keep."""
        with torch.no_grad():
            masks = self.masks()
            return sum(m.sum().item() for m in masks) / sum(m.numel() for m in masks)


def _non_overlapping_pool_kernel(pool: nn.AvgPool2d) -> int | None:
    """k for a k x k average pooling with stride k and no padding (square, plain), else None."""
    pair = nn.modules.utils._pair
    kernel, stride = pair(pool.kernel_size), pair(pool.stride or pool.kernel_size)
    plain = pair(pool.padding) == (0, 0) and not pool.ceil_mode and pool.divisor_override is None
    return kernel[0] if plain and kernel == stride and kernel[0] == kernel[1] else None
