"""Binding a network to a chip trace: its weights on physical cells, replayed read by read.

**Placement.** Each supermask layer is a crossbar of ``fan_in`` rows and ``2 * outputs``
columns (columns 2j and 2j+1 hold G+ and G- of output j, as
:meth:`MemristorLayer.pruned_cells`). The trace array is cut into tiles (default one
512x512 macro); every layer's crossbar is cut into blocks of at most one tile, and the blocks
are packed left to right into the tiles, each block from the tile's first row (a new tile
when the next block's columns do not fit). The trace must hold enough tiles.

**Replay modes.** ``static``: one read (``position``) for every forward; ``per-batch``: each
forward call (one training or evaluation batch) loads the next read; ``per-test-batch``: the
pruning paper's hardware simulation (``*_hardware_TO.py``: ``count = 0`` in training,
``count += 1`` per test batch): training forwards use read 0, evaluation forwards load the
next read each; ``per-step``: each timestep loads the next read (the network then runs its
single-step path). Reads wrap around after the last one.

**Pruned weights.** ``zero``: a pruned weight is an ideal 0. ``reset``: pruning resets both
cells of the pair, so a pruned weight is ``scale * (G+reset - G-reset)`` from the trace's
reset-state read of the same two cells, while kept weights are ``scale * (G+ - G-)``.
``reset-positive``: the pruning paper's convention, pruning resets only the positive cell, so
a pruned weight is ``scale * (G+reset - G-)`` (G- from the same read as the kept weights).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

from prime.core.errors import PrimeError
from prime.hardware.devices import EmpiricalConductance
from prime.hardware.traces.format import Trace

REPLAY_MODES = ("static", "per-batch", "per-test-batch", "per-step")
PRUNED_MODES = ("zero", "reset", "reset-positive")
DEFAULT_TILE = (512, 512)


@dataclass(frozen=True)
class Placement:
    """Where each layer's cells lie in a trace read of shape ``array_shape``.

    ``cell_index[l]``: int64 [2, *weight_shape], the flat index (row * cols + col) into a read
    of every G+/G- cell of layer ``l``.
    """

    cell_index: list[torch.Tensor]
    array_shape: tuple[int, int]
    tile: tuple[int, int]
    tiles_used: int
    tiles_available: int
    cells_used: int

    @property
    def utilisation(self) -> float:
        """Used fraction of the cells of the tiles in use."""
        return self.cells_used / (self.tiles_used * self.tile[0] * self.tile[1])

    def report(self) -> str:
        return (
            f"{self.cells_used} cells on {self.tiles_used} of {self.tiles_available} "
            f"{self.tile[0]}x{self.tile[1]} tiles, utilisation {100 * self.utilisation:.1f} %"
        )


def place(
    weight_shapes: list[tuple[int, ...]],
    array_shape: tuple[int, int],
    tile: tuple[int, int] = DEFAULT_TILE,
) -> Placement:
    """Place layers with the given weight shapes (output first) onto an array's tiles."""
    tile_rows, tile_cols = tile
    rows, cols = array_shape
    if tile_rows < 1 or tile_cols < 2 or tile_cols % 2:
        raise PrimeError(f"a tile needs >= 1 rows and an even number of columns, got {tile}")
    available = (rows // tile_rows) * (cols // tile_cols)
    tiles_across = cols // tile_cols
    tile_number, cursor = 0, 0
    cell_index, cells = [], 0
    for shape in weight_shapes:
        fan_in, outputs = int(np.prod(shape[1:])), shape[0]
        cells += 2 * outputs * fan_in
        crossbar = np.empty((fan_in, 2 * outputs), dtype=np.int64)
        for r0 in range(0, fan_in, tile_rows):
            for c0 in range(0, 2 * outputs, tile_cols):
                height = min(tile_rows, fan_in - r0)
                width = min(tile_cols, 2 * outputs - c0)
                if cursor + width > tile_cols:
                    tile_number, cursor = tile_number + 1, 0
                top = (tile_number // max(tiles_across, 1)) * tile_rows
                left = (tile_number % max(tiles_across, 1)) * tile_cols + cursor
                trace_rows = np.arange(top, top + height)[:, None]
                trace_cols = np.arange(left, left + width)[None, :]
                crossbar[r0 : r0 + height, c0 : c0 + width] = trace_rows * cols + trace_cols
                cursor += width
        # crossbar[i, 2 o + s] -> g_us[s, o, i]
        index = torch.from_numpy(crossbar).reshape(fan_in, outputs, 2).permute(2, 1, 0)
        cell_index.append(index.reshape(2, *shape).contiguous())
    used = tile_number + 1
    if used > available:
        raise PrimeError(
            f"the trace is too small: the network needs {cells} cells on {used} "
            f"{tile_rows}x{tile_cols} tiles, the trace's {rows}x{cols} array holds "
            f"{available}; use a larger trace (or a smaller --tile if the array is smaller "
            "than one tile)"
        )
    return Placement(cell_index, (rows, cols), (tile_rows, tile_cols), used, available, cells)


class ChipLayer(Protocol):
    """What replay needs of a memristor layer (:class:`prime.snn.layers.MemristorLayer`)."""

    @property
    def scores(self) -> torch.Tensor: ...

    @property
    def g_us(self) -> torch.Tensor: ...

    def load_conductances(
        self, g_us: torch.Tensor, reset_us: torch.Tensor | None = None
    ) -> None: ...


class ChipNetwork(Protocol):
    """What replay needs of a network (:class:`prime.snn.network.SpikingNetwork`)."""

    def memristor_layers(self) -> Sequence[ChipLayer]: ...

    def read_every_step(self, before_read: Callable[[], None] | None) -> None: ...

    def register_forward_pre_hook(self, hook: Any, *, with_kwargs: bool = ...) -> Any: ...


class TraceReplay:
    """Feeds a network the conductances of a trace's reads (see the module docstring).

    ``position`` is the index of the next read to load (``static``: the read in use); store
    it to resume. Call :meth:`detach` to stop.
    """

    def __init__(
        self,
        model: ChipNetwork,
        trace: Trace,
        mode: str = "static",
        pruned: str = "zero",
        tile: tuple[int, int] = DEFAULT_TILE,
        position: int = 0,
    ) -> None:
        if mode not in REPLAY_MODES:
            raise PrimeError(f"unknown replay mode {mode!r}; known: {', '.join(REPLAY_MODES)}")
        if pruned not in PRUNED_MODES:
            raise PrimeError(f"unknown --pruned {pruned!r}; known: {', '.join(PRUNED_MODES)}")
        if pruned != "zero":
            trace.require_reset()
        self.model, self.trace, self.mode, self.pruned = model, trace, mode, pruned
        self.layers = model.memristor_layers()
        self.placement = place([tuple(m.scores.shape) for m in self.layers], trace.shape, tile)
        self.position = int(position)
        self.current_read: int | None = None
        self._hook = None
        if mode == "static":
            self.load_read(self.position)
        elif mode in ("per-batch", "per-test-batch"):
            self._hook = model.register_forward_pre_hook(self._next_batch, with_kwargs=True)
        else:
            model.read_every_step(self.advance)

    def _next_batch(self, module: Any, args: tuple, kwargs: dict[str, Any]) -> None:
        """Forward pre-hook: a whole input sequence (not one step of it) loads the next read
        (``per-test-batch``: read 0 while the model trains)."""
        if kwargs.get("state") is not None:
            return
        if self.mode == "per-test-batch" and module.training:
            if self.current_read != 0:
                self.load_read(0)
            return
        self.advance()

    def _gather(self, read: np.ndarray) -> list[torch.Tensor]:
        flat = torch.from_numpy(read).reshape(-1)
        return [flat[index] for index in self.placement.cell_index]

    def load_read(self, index: int) -> None:
        """Load read ``index`` (modulo the number of reads) into every layer."""
        index %= self.trace.n_reads
        reads = self._gather(self.trace.read(index))
        resets: Sequence[torch.Tensor | None] = [None] * len(reads)
        if self.pruned != "zero":
            reset_reads = self._gather(self.trace.read(index, reset=True))
            if self.pruned == "reset-positive":  # G+ reset, G- as read
                pairs = zip(reset_reads, reads, strict=True)
                reset_reads = [torch.stack([r[0], g[1]]) for r, g in pairs]
            resets = reset_reads
        for layer, g_us, reset_us in zip(self.layers, reads, resets, strict=True):
            layer.load_conductances(g_us, reset_us)
        self.current_read = index

    def advance(self) -> None:
        """Load the next read."""
        self.load_read(self.position)
        self.position += 1

    def conductances_match(self) -> bool:
        """Whether the layers still hold exactly the cells of the read last loaded."""
        if self.current_read is None:
            return True
        expected = self._gather(self.trace.read(self.current_read))
        pairs = zip(self.layers, expected, strict=True)
        return all(torch.equal(m.g_us, g.to(m.g_us.device)) for m, g in pairs)

    def device(self) -> EmpiricalConductance:
        """The trace's first read as a device model: its cells' measured values."""
        return EmpiricalConductance(values_us=self.trace.read(0))

    def detach(self) -> None:
        """Stop replaying (the layers keep the conductances last loaded)."""
        if self._hook is not None:
            self._hook.remove()
        self.model.read_every_step(None)
        for layer in self.layers:
            layer.load_conductances(layer.g_us)  # the reset cells are the trace's: drop them

    def close(self) -> None:
        """Detach and close the trace file."""
        self.detach()
        self.trace.close()


class ReplaySettings(Protocol):
    """Where and how to replay (as :class:`prime.runs.train.TrainConfig` records it)."""

    trace: str | None
    replay: str
    pruned: str
    tile: tuple[int, int]


def open_replay(
    model: ChipNetwork, settings: ReplaySettings, position: int = 0
) -> TraceReplay | None:
    """Bind ``model`` to ``settings.trace`` (None if there is none) from read ``position``;
    :meth:`TraceReplay.close` detaches and closes the file."""
    if not settings.trace:
        return None
    trace = Trace(settings.trace)
    try:
        rows, cols = settings.tile
        return TraceReplay(model, trace, settings.replay, settings.pruned, (rows, cols), position)
    except PrimeError:
        trace.close()
        raise
