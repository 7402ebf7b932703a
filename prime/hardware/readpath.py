"""The read path: how a memristor layer's crossbar cells become its output numbers.

One object per layer owns the way from cells to numbers, in stages::

    cells g_us [2, *w]  --read-->      this read's conductances (read noise, trace replay)
                        --mask-->      conducting cells: kept pairs; pruned pairs reset or 0
                        --crossbar-->  column currents of the G+ and G- columns, per tile
                        --convert-->   numbers (ideal: the currents themselves)
                        --digital-->   scale * (I+ - I-), the tiles' partial sums added

The crossbar has one row per input (a convolution's im2col rows: C_in * KH * KW) and a G+
and a G- column per output. ``w`` is the layer's weight shape, output first.

:class:`ReadPathConfig` says which stages are non-ideal. With the ideal configuration every
stage after the mask is linear and exact, so they fold into one weight
``scale * (G+ - G-) * mask`` (the fused fast path, bit for bit what the layers always
computed); only a non-ideal configuration pays for separate columns and tiles.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.devices import read_conductance

#: a layer's linear map: (input [N, ...], weight [out, ...]) -> output [N, out, ...]
LinearMap = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ReadPathConfig:
    """Which stages of the read path are simulated apart (all ideal by default).

    Attributes:
        tile_rows: crossbar rows per tile; a layer with a larger fan-in is split onto
            several tiles whose partial sums the digital unit adds. None: one tile per layer.
        separate_columns: compute the G+ and G- column currents apart (as a converter per
            column sees them) instead of folding them into one signed weight.
    """

    tile_rows: int | None = None
    separate_columns: bool = False

    def __post_init__(self) -> None:
        rows = self.tile_rows
        if rows is not None and (isinstance(rows, bool) or not isinstance(rows, int) or rows < 1):
            raise PrimeError(f"a tile needs a whole number >= 1 of rows, got tile_rows={rows!r}")
        if not isinstance(self.separate_columns, bool):
            raise PrimeError(
                f"separate_columns must be true or false, got {self.separate_columns!r}"
            )

    @property
    def fused(self) -> bool:
        """Whether every stage is ideal, so the path folds into one weight."""
        return self.tile_rows is None and not self.separate_columns

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any] | None) -> ReadPathConfig:
        """The config a model or run records (None or {}: ideal); unknown keys fail."""
        config = dict(config or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise PrimeError(
                f"read path config has unknown fields {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**config)


IDEAL = ReadPathConfig()


@dataclass(frozen=True)
class CrossbarRead:
    """One read of a layer's crossbar, for one input sequence (or one timestep).

    Attributes:
        weight: the effective weight ``scale * conducting (G+ - G-)``, weight shape; what the
            fused path applies and what counters and exports read.
        columns_us: conducting cells of the G+ columns then the G- columns, µS,
            [2 * out, ...]; None on the fused path.
        scale: conductance-to-weight scale (1/µS), a 0-d tensor.
    """

    weight: torch.Tensor
    columns_us: torch.Tensor | None
    scale: torch.Tensor


class ReadPath(nn.Module):
    """A layer's way from cells to numbers (see the module docstring).

    :meth:`read` reads the cells once (read noise drawn, mask applied); :meth:`forward`
    runs one input through that read with the layer's linear map.
    """

    def __init__(self, config: ReadPathConfig = IDEAL) -> None:
        super().__init__()
        self.config = config

    def read(
        self,
        g_us: torch.Tensor,
        mask: torch.Tensor,
        scale: torch.Tensor,
        read_noise: float = 0.0,
        generator: torch.Generator | None = None,
        reset_us: torch.Tensor | None = None,
    ) -> CrossbarRead:
        """One read of cells ``g_us`` [2, *w] (µS) under binary ``mask`` [*w].

        ``read_noise``: multiplicative σ drawn from ``generator``. ``reset_us`` [2, *w]:
        the cells of pruned pairs in the reset state (they still conduct); None: pruned
        pairs are ideal zeros.
        """
        g_us = read_conductance(g_us, read_noise, generator)
        delta_us = (g_us[0] - g_us[1]) * mask
        if reset_us is not None:
            delta_us = delta_us + (reset_us[0] - reset_us[1]) * (1 - mask)
        weight = scale * delta_us
        if self.config.fused:
            return CrossbarRead(weight, None, scale)
        conducting = g_us * mask
        if reset_us is not None:
            conducting = conducting + reset_us * (1 - mask)
        return CrossbarRead(weight, conducting.flatten(0, 1), scale)

    def forward(self, x: torch.Tensor, read: CrossbarRead, linear_map: LinearMap) -> torch.Tensor:
        """The layer's output for input x [N, ...] through ``read``: [N, out, ...]."""
        if read.columns_us is None:
            return linear_map(x, read.weight)
        outputs = len(read.columns_us) // 2
        currents = self.convert(self.column_currents(x, read.columns_us, linear_map))
        difference = currents[:, :, :outputs] - currents[:, :, outputs:]
        return read.scale * difference.sum(0)

    def column_currents(
        self, x: torch.Tensor, columns_us: torch.Tensor, linear_map: LinearMap
    ) -> torch.Tensor:
        """Column currents per tile, [tiles, N, 2 * out, ...] (µA for inputs in V)."""
        rows = columns_us[0].numel()
        tile_rows = self.config.tile_rows or rows
        if tile_rows >= rows:
            return linear_map(x, columns_us).unsqueeze(0)
        flat = columns_us.flatten(1)
        tiles = []
        for start in range(0, rows, tile_rows):
            on_tile = torch.zeros_like(flat)
            on_tile[:, start : start + tile_rows] = flat[:, start : start + tile_rows]
            tiles.append(linear_map(x, on_tile.view_as(columns_us)))
        return torch.stack(tiles)

    def convert(self, currents: torch.Tensor) -> torch.Tensor:
        """Column currents -> numbers (ideal conversion)."""
        return currents

    def tiles(self, rows: int) -> int:
        """Tiles a crossbar of ``rows`` rows is split onto."""
        return 1 if self.config.tile_rows is None else math.ceil(rows / self.config.tile_rows)

    def extra_repr(self) -> str:
        return "ideal" if self.config.fused else repr(self.config)
