"""Supermask layers on a memristor crossbar: frozen random conductances, learned topology.

A layer holds its crossbar's conductances ``g_us`` [2, *weight_shape] (G+, G-, µS) as a
buffer, never a parameter, and one learnable score per weight. The mask keeps the edges with
the largest |score|; the layer's :class:`~prime.hardware.readpath.ReadPath` turns the
conducting cells and an input into the output (ideally ``linear_map(x, scale * (G+ - G-) *
mask)``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prime.core.errors import PrimeError
from prime.core.resources import MAX_SEED, check_count
from prime.hardware.devices import (
    DEFAULT_DEVICE,
    PRIME_DELTA_STD_US,
    ConductanceModel,
    as_device,
    check_conductances,
    chip_generator,
)
from prime.hardware.periphery import periphery_generator as periphery_generator_of
from prime.hardware.readpath import IDEAL, CrossbarRead, ReadPath, ReadPathConfig
from prime.kernels.sparse_conv import conv2d
from prime.snn.config import PRIME_SCALE
from prime.snn.masks import check_keep, check_margin, supermask

#: the default scale mode (:func:`matched_scale`)
MATCHED = "matched"


def matched_scale(device_model: ConductanceModel) -> float:
    """The conductance-to-weight scale (1/µS) that gives ``device_model``'s weights the RMS of
    PRIME's chip: ``PRIME_SCALE · 6.352 µS / RMS(G+ - G-)``, exactly PRIME_SCALE on
    ``prime-gaussian``. The PRIME recipe (LIF thresholds, score learning) is tuned to that
    weight scale; a chip with larger conductances, e.g. the measured RRAM array (RMS 8.9 µS),
    gets a smaller scale instead of stronger currents."""
    rms_us = device_model.weight_rms_us()
    if not (math.isfinite(rms_us) and rms_us > 0):
        raise PrimeError(
            f"device {device_model.name!r} has RMS(G+ - G-) = {rms_us:g} µS, so no scale "
            "matches it; pass a numeric --scale"
        )
    return PRIME_SCALE * (PRIME_DELTA_STD_US / rms_us)


class MemristorLayer(nn.Module):
    """Base of the supermask layers. Subclasses define ``linear_map(x, weight)``.

    Called as a module: ``layer(x)`` reads the crossbar once and maps x; ``layer(x, read)``
    maps x through a read taken before (:meth:`read`, once per input sequence).

    Args:
        weight_shape: shape of the weight, output dimension first.
        device_model: the device model that forms the crossbar: a preset name, a device
            config (:func:`~prime.hardware.devices.as_device`) or a model.
        chip: the chip seed that forms it, or a generator (layers of one chip share one).
        scores_generator: the seed of the initial scores, or a generator.
        keep: kept fraction of edges, in (0, 1].
        scale: conductance-to-weight scale (1/µS); ``"matched"`` (default) to give the
            weights the RMS of PRIME's chip, whatever the device (:func:`matched_scale`); or
            ``"fan-in"`` to map the chip's mean |G+ - G-| to the Kaiming std of a layer
            keeping ``keep`` of its fan-in.
        mask_rule: ``"topk"`` (exactly round(keep n) edges) or ``"prime"`` (PRIME's rank rule).
        read_path: the configuration of the way from cells to numbers (default: ideal).
        periphery_generator: the chip's generator of its periphery (ADC variation), drawn
            from its chip seed (by default from ``chip`` where that is a seed); needed only
            where ``read_path`` varies the ADCs.
        bias: a learned offset per output, added digitally after the crossbar (counted as
            digital additions, :mod:`prime.analysis.energy.counting`).
            from its chip seed; needed only where ``read_path`` varies the ADCs.
        sign_generator: draws a fixed random sign per weight (buffer ``sign``): weights are
            ``sign * |G+ - G-|``, the pruning paper's convention; None (default): ``G+ - G-``.
    """

    g_us: torch.Tensor  # buffer [2, *weight_shape], µS
    scale: torch.Tensor  # buffer, 0-d, 1/µS
    sign: torch.Tensor | None  # buffer [*weight_shape] of ±1 (sign_generator), or None
    reset_us: torch.Tensor | None  # buffer [2, *weight_shape], µS, or None (not saved)
    held_mask: torch.Tensor | None  # buffer [*weight_shape], or None (not saved)
    held_scores: torch.Tensor | None  # buffer [*weight_shape], or None (not saved)

    def __init__(
        self,
        weight_shape: tuple[int, ...],
        device_model: ConductanceModel | str | dict[str, Any] = DEFAULT_DEVICE,
        chip: torch.Generator | int = 0,
        scores_generator: torch.Generator | int = 0,
        keep: float = 0.5,
        scale: float | str = MATCHED,
        mask_rule: str = "topk",
        read_path: ReadPathConfig = IDEAL,
        periphery_generator: torch.Generator | None = None,
        bias: bool = False,
        sign_generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        device_model = as_device(device_model)
        if not isinstance(chip, torch.Generator):
            seed = check_count("chip seed", chip, 0, MAX_SEED)
            chip = chip_generator(seed)
            if periphery_generator is None:
                periphery_generator = periphery_generator_of(seed)
        if not isinstance(scores_generator, torch.Generator):
            seed = check_count("scores seed", scores_generator, 0, MAX_SEED)
            scores_generator = torch.Generator().manual_seed(seed)
        self.keep = check_keep(keep)
        self.mask_rule = mask_rule
        self.read_noise = 0.0
        self.read_generator: torch.Generator | None = None
        #: the cells of pruned pairs in the reset state [2, *weight_shape] (µS), or None for
        #: ideal zeros (set by :meth:`load_conductances`); a buffer, not saved
        self.register_buffer("reset_us", None, persistent=False)
        #: mask hysteresis (:func:`prime.snn.masks.hold_mask`): the margin, and the mask and
        #: |scores| last programmed on the chip (:attr:`held`)
        self.mask_margin = 0.0
        self.register_buffer("held_mask", None, persistent=False)
        self.register_buffer("held_scores", None, persistent=False)
        self.read_path = ReadPath(
            read_path, math.prod(weight_shape[1:]), weight_shape[0], periphery_generator
        )
        self.register_buffer("g_us", device_model.sample(weight_shape, chip))
        self.scores = nn.Parameter(torch.empty(weight_shape))
        nn.init.kaiming_uniform_(self.scores, a=math.sqrt(5), generator=scores_generator)
        self.register_buffer("scale", torch.tensor(self._scale(scale, device_model)))
        self.bias: nn.Parameter | None = None
        if bias:  # torch's initialisation, uniform in ±1 / sqrt(fan-in), seeded
            bound = 1.0 / math.sqrt(self.fan_in)
            initial = torch.empty(weight_shape[0]).uniform_(
                -bound, bound, generator=scores_generator
            )
            self.bias = nn.Parameter(initial)
        sign = None
        if sign_generator is not None:
            sign = 2.0 * torch.randint(2, weight_shape, generator=sign_generator) - 1
        self.register_buffer("sign", sign)

    @property
    def held(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The (mask, |scores|) last programmed on the chip (set by :meth:`hold`; None: no
        hysteresis); buffers, so they follow the layer's device."""
        if self.held_mask is None or self.held_scores is None:
            return None
        return self.held_mask, self.held_scores

    @held.setter
    def held(self, value: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        if value is None:
            self.held_mask, self.held_scores = None, None
        else:  # on the layer's device (a checkpoint is read on the CPU)
            self.held_mask, self.held_scores = (t.to(self.scores.device) for t in value)

    @property
    def fan_in(self) -> int:
        return self.scores[0].numel()

    @property
    def crossbar_shape(self) -> tuple[int, int]:
        """(rows, columns) of cells: one row per input, a G+ and a G- column per output."""
        return self.fan_in, 2 * self.scores.shape[0]

    def _scale(self, scale: float | str, device_model: ConductanceModel | None = None) -> float:
        if scale == MATCHED and device_model is not None:
            return matched_scale(device_model)
        if scale == "fan-in":
            mean_abs = (self.g_us[0] - self.g_us[1]).abs().mean().item()
            kaiming_std = math.sqrt(2.0 / (self.fan_in * self.keep))
            return kaiming_std / max(mean_abs, 1e-12)
        if isinstance(scale, int | float) and math.isfinite(scale) and scale > 0:
            return float(scale)
        raise PrimeError(f"scale must be a number > 0, 'matched' or 'fan-in', got {scale!r}")

    def mask(self) -> torch.Tensor:
        """The binary mask (float, weight shape) with a straight-through gradient to scores;
        with a margin and a held state, edges whose score barely moved keep their held state."""
        return supermask(self.scores, self.keep, self.mask_rule, self.held, self.mask_margin)

    def hold(self, margin: float) -> torch.Tensor:
        """Program the chip's mask: compute it with hysteresis ``margin`` against the state
        held so far, then hold it and the current |scores|. Returns the new binary mask."""
        self.mask_margin = check_margin(margin)
        with torch.no_grad():
            mask = self.mask().detach()
            self.held = (mask, self.scores.detach().abs().clone())
        return mask

    def read(self, mask: torch.Tensor | None = None) -> CrossbarRead:
        """One read of the crossbar (read noise drawn if set) under ``mask`` (default: the
        layer's own, with its straight-through gradient)."""
        mask = self.mask() if mask is None else mask
        return self.read_path.read(
            self.g_us,
            mask,
            self.scale,
            self.read_noise,
            self.read_generator,
            self.reset_us,
            self.sign,
        )

    def weight(self, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Effective weight ``scale * (G+ - G-) * mask`` of one read; with reset cells
        loaded, pruned edges weigh ``scale * (G+reset - G-reset)``, not 0."""
        return self.read(mask).weight

    def linear_map(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """The layer's linear operation with a given weight (no read, no hooks)."""
        raise NotImplementedError

    def tiled_map(
        self, x: torch.Tensor, columns: torch.Tensor, tile_rows: int | None
    ) -> torch.Tensor:
        """Column currents of every tile of ``tile_rows`` crossbar rows (None: one tile):
        x [N, ...], columns [c, ...] (weight layout) -> [N, tiles, c, ...]. Here one linear
        map per tile, with the other rows' cells zeroed; subclasses batch the tiles."""
        rows = columns[0].numel()
        if tile_rows is None or tile_rows >= rows:
            return self.linear_map(x, columns).unsqueeze(1)
        flat = columns.flatten(1)
        tiles = []
        for start in range(0, rows, tile_rows):
            on_tile = torch.zeros_like(flat)
            on_tile[:, start : start + tile_rows] = flat[:, start : start + tile_rows]
            tiles.append(self.linear_map(x, on_tile.view_as(columns)))
        return torch.stack(tiles, dim=1)

    def forward(self, x: torch.Tensor, read: CrossbarRead | None = None) -> torch.Tensor:
        out = self.read_path(x, self.read() if read is None else read, self)
        if self.bias is None:
            return out
        return out + self.bias.view(-1, *(1,) * (out.dim() - 2))

    def load_conductances(
        self,
        g_us: torch.Tensor,
        reset_us: torch.Tensor | None = None,
        scale: float | None = None,
    ) -> None:
        """Replace the crossbar by given conductances [2, *weight_shape] (µS); ``reset_us``,
        the same shape, are the cells pruned pairs are reset to (None: ideal zeros).
        ``scale`` (1/µS): a new conductance-to-weight scale, for cells programmed to
        weights (:mod:`prime.hardware.programming`); None keeps the layer's."""
        for cells in (g_us,) if reset_us is None else (g_us, reset_us):
            if tuple(cells.shape) != tuple(self.g_us.shape):
                raise PrimeError(
                    f"conductances of shape {tuple(cells.shape)} do not fit this layer's "
                    f"crossbar {tuple(self.g_us.shape)} ([G+/G-, *weight shape])"
                )
            check_conductances(cells)
        with torch.no_grad():
            self.g_us.copy_(g_us)
            if scale is not None:
                self.scale.fill_(self._scale(scale))
        self.reset_us = None if reset_us is None else reset_us.to(self.g_us.device, copy=True)

    def export_mask(self) -> torch.Tensor:
        """The binary mask as bool, weight shape."""
        with torch.no_grad():
            return self.mask().bool()

    def pruned_cells(self) -> torch.Tensor:
        """Crossbar cells to reset, int64 [n, 2] of (row, column), both cells of pruned pairs.

        Row = flat input index; columns 2j (G+) and 2j+1 (G-) hold output j.
        """
        pruned = ~self.export_mask().reshape(self.scores.shape[0], -1)
        out_index, in_index = pruned.nonzero(as_tuple=True)
        rows = in_index.repeat_interleave(2)
        cols = torch.stack([2 * out_index, 2 * out_index + 1], dim=1).reshape(-1)
        return torch.stack([rows, cols], dim=1)

    def extra_repr(self) -> str:
        bias = ", bias=True" if self.bias is not None else ""
        return (
            f"keep={self.keep}, scale={self.scale.item():.4g}, mask_rule={self.mask_rule!r}{bias}"
        )


class MemristorLinear(MemristorLayer):
    """Fully connected supermask layer: x [N, in_features] -> [N, out_features]."""

    def __init__(self, in_features: int, out_features: int, **kwargs) -> None:
        super().__init__((out_features, in_features), **kwargs)
        self.in_features, self.out_features = in_features, out_features

    def linear_map(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight)

    def tiled_map(
        self, x: torch.Tensor, columns: torch.Tensor, tile_rows: int | None
    ) -> torch.Tensor:
        rows = x.shape[1]
        if tile_rows is None or tile_rows >= rows:
            return F.linear(x, columns).unsqueeze(1)
        tiles = math.ceil(rows / tile_rows)
        pad = tiles * tile_rows - rows
        x_tiles = F.pad(x, (0, pad)).view(len(x), tiles, tile_rows).transpose(0, 1)
        w_tiles = F.pad(columns, (0, pad)).view(len(columns), tiles, tile_rows)
        currents = torch.bmm(x_tiles, w_tiles.permute(1, 2, 0))  # [tiles, N, c]
        return currents.transpose(0, 1).contiguous()  # columns innermost, for the converters


class MemristorConv2d(MemristorLayer):
    """2-D convolution supermask layer: x [N, C_in, H, W] -> [N, C_out, H', W'].

    ``kernel_size``, ``stride`` and ``padding`` are a whole number or a pair (height,
    width), as in ``nn.Conv2d``; ``bias`` adds a digital offset per output channel.

    Runs channels-last (the fast layout of CPU convolutions); the output stays channels-last,
    which elementwise neurons and pooling keep, so only the first layer's input is converted.
    Sparse spike input skips its zeros where that pays (:func:`prime.kernels.sparse_conv.conv2d`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        **kwargs,
    ) -> None:
        check_count("in_channels", in_channels)
        check_count("out_channels", out_channels)
        kh, kw = conv_pair("kernel_size", kernel_size, 1)
        super().__init__((out_channels, in_channels, kh, kw), **kwargs)
        self.stride = _square_or_pair(conv_pair("stride", stride, 1))
        self.padding = _square_or_pair(conv_pair("padding", padding, 0))

    def linear_map(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return conv2d(x, weight, stride=self.stride, padding=self.padding)

    def tiled_map(
        self, x: torch.Tensor, columns: torch.Tensor, tile_rows: int | None
    ) -> torch.Tensor:
        """Tiles of whole input channels are one grouped convolution (tile rows a multiple
        of KH * KW); other tiles cut the im2col rows (unfold, then one batched product)."""
        c, channels, kh, kw = columns.shape
        rows = channels * kh * kw
        if tile_rows is None or tile_rows >= rows:
            return self.linear_map(x, columns).unsqueeze(1)
        tiles = math.ceil(rows / tile_rows)
        if tile_rows % (kh * kw) == 0:
            per_tile = tile_rows // (kh * kw)
            pad = tiles * per_tile - channels
            x = F.pad(x, (0, 0, 0, 0, 0, pad))
            w = F.pad(columns, (0, 0, 0, 0, 0, pad)).view(c, tiles, per_tile, kh, kw)
            w = w.transpose(0, 1).reshape(tiles * c, per_tile, kh, kw)
            out = F.conv2d(x, w, stride=self.stride, padding=self.padding, groups=tiles)
            return out.unflatten(1, (tiles, c))
        pair = nn.modules.utils._pair
        height, width = (
            (size + 2 * pad - k) // stride + 1
            for size, k, stride, pad in zip(
                x.shape[2:], (kh, kw), pair(self.stride), pair(self.padding), strict=True
            )
        )
        pad = tiles * tile_rows - rows
        patches = F.unfold(x, (kh, kw), padding=self.padding, stride=self.stride)
        patches = F.pad(patches, (0, 0, 0, pad)).view(len(x), tiles, tile_rows, -1)
        w = F.pad(columns.flatten(1), (0, pad)).view(c, tiles, tile_rows)
        out = torch.einsum("ntrl,ctr->ntcl", patches, w)
        return out.unflatten(3, (height, width))


def conv_pair(name: str, value: object, low: int) -> tuple[int, int]:
    """A convolution's ``kernel_size``/``stride``/``padding`` as (height, width): a whole
    number >= ``low`` or a pair of them (a PrimeError naming the setting otherwise)."""
    values = value if isinstance(value, tuple | list) else (value, value)
    if len(values) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= low for v in values
    ):
        raise PrimeError(
            f"{name} must be a whole number >= {low} or a pair (height, width) of them, as in "
            f"nn.Conv2d, got {value!r}"
        )
    return int(values[0]), int(values[1])


def _square_or_pair(pair: tuple[int, int]) -> int | tuple[int, int]:
    """One number where both axes agree (the fast sparse convolution takes those), else the
    pair."""
    return pair[0] if pair[0] == pair[1] else pair


class MemristorConvTranspose2d(MemristorLayer):
    """Transposed 2-D convolution supermask layer (no bias): x [N, C_in, H, W] ->
    [N, C_out, H', W'], H' = (H - 1) stride - 2 padding + kernel + output_padding.

    The crossbar holds the weight output first, [C_out, C_in, k, k]: a G+/G- column pair per
    output channel and a row per input channel and kernel tap, as the transposed convolution
    runs as a convolution of the zero-stuffed input. ``linear_map`` hands torch the weight
    as [C_in, C_out, k, k].
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        output_padding: int = 0,
        **kwargs,
    ) -> None:
        super().__init__((out_channels, in_channels, kernel_size, kernel_size), **kwargs)
        self.stride, self.padding, self.output_padding = stride, padding, output_padding

    def linear_map(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(
            x,
            weight.transpose(0, 1),
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
        )
