"""The chip programming file: per crossbar tile, the cells to reset (pruned) and to keep.

Layers are placed on tiles exactly as trace replay places them
(:func:`prime.hardware.replay.place`: blocks of at most one tile, packed left to right).
The HDF5 file holds, for layer ``l`` and the ``k``-th tile it touches, the group
``layer{l}/tile{k}`` with datasets ``reset`` and ``keep``, int32 [n, 5] of
:data:`COLUMNS`: the cell's row and column in the layer's crossbar (row = flat input index,
column 2j = G+ and 2j+1 = G- of output j, as :meth:`MemristorLayer.pruned_cells`), its row
and column on the tile, and its polarity (0: G+, 1: G-). Attributes: the file's
``format``/``version``, ``chip`` (seed or trace), ``device_model`` (JSON), ``tile_rows``,
``tile_cols``; each tile group's ``tile`` (its number on the chip). A CSV (``.csv`` path)
holds the same rows with ``layer``, ``tile`` and ``action`` columns, for small networks.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch

from prime.core.errors import PrimeError
from prime.hardware.replay import place
from prime.snn.network import SpikingNetwork

FORMAT, VERSION = "prime-chip-program", 1
COLUMNS = ("crossbar_row", "crossbar_column", "tile_row", "tile_column", "polarity")
#: the largest number of cells written as CSV
CSV_MAX_CELLS = 1_000_000


@dataclass(frozen=True)
class TileCells:
    """The cells of one layer on one tile: ``reset`` and ``keep``, int [n, 5] of COLUMNS."""

    layer: int
    tile: int
    reset: np.ndarray
    keep: np.ndarray


def program_tiles(model: SpikingNetwork, tile: tuple[int, int]) -> list[TileCells]:
    """Every layer's cells, tile by tile, in placement order."""
    layers = model.memristor_layers()
    tile_rows, tile_cols = tile
    shapes = [tuple(m.scores.shape) for m in layers]
    bound = sum(  # tiles the packing can use at most: one per block
        -(-int(np.prod(s[1:])) // tile_rows) * -(-2 * s[0] // tile_cols) for s in shapes
    )
    placement = place(shapes, (tile_rows, tile_cols * bound), tile)
    cells = []
    for number, (layer, index) in enumerate(zip(layers, placement.cell_index, strict=True)):
        outputs = layer.scores.shape[0]
        flat = index.reshape(2, outputs, -1)  # [polarity, output, input] -> flat array index
        polarity, output, row = torch.meshgrid(
            torch.arange(2), torch.arange(outputs), torch.arange(flat.shape[2]), indexing="ij"
        )
        column = flat % (tile_cols * bound)
        table = torch.stack(
            [
                row,
                2 * output + polarity,
                flat // (tile_cols * bound),
                column % tile_cols,
                polarity,
            ],  # fmt: skip
            dim=-1,
        ).reshape(-1, len(COLUMNS))
        tiles = (column // tile_cols).reshape(-1)
        kept = layer.export_mask().reshape(1, outputs, -1).expand(2, -1, -1).reshape(-1)
        for t in torch.unique(tiles).tolist():
            on = tiles == t
            cells.append(TileCells(number, t, table[on & ~kept].numpy(), table[on & kept].numpy()))
    return cells


def write_program(
    model: SpikingNetwork, path: str | os.PathLike, tile: tuple[int, int], chip: str
) -> list[TileCells]:
    """Write the programming file (HDF5, or CSV for a ``.csv`` path); returns its tiles."""
    path = Path(path)
    tiles = program_tiles(model, tile)
    attrs = {
        "format": FORMAT,
        "version": VERSION,
        "chip": chip,
        "device_model": json.dumps(model.config.device_model),
        "tile_rows": tile[0],
        "tile_cols": tile[1],
    }
    if path.suffix == ".csv":
        total = sum(len(t.reset) + len(t.keep) for t in tiles)
        if total > CSV_MAX_CELLS:
            raise PrimeError(
                f"{total} cells are too many for CSV (at most {CSV_MAX_CELLS}); write HDF5 "
                "(a .h5 path)"
            )
        with path.open("w", newline="") as f:
            f.write("".join(f"# {k}: {v}\n" for k, v in attrs.items()))
            writer = csv.writer(f)
            writer.writerow(("layer", "tile", "action", *COLUMNS))
            for t in tiles:
                for action, rows in (("reset", t.reset), ("keep", t.keep)):
                    writer.writerows((t.layer, t.tile, action, *r) for r in rows.tolist())
        return tiles
    with h5py.File(path, "w") as f:
        f.attrs.update(attrs)
        for t in tiles:
            group = f.require_group(f"layer{t.layer}").create_group(f"tile{t.tile}")
            group.attrs["tile"] = t.tile
            for action, rows in (("reset", t.reset), ("keep", t.keep)):
                group.create_dataset(action, data=rows.astype(np.int32).reshape(-1, 5))
            group.attrs["columns"] = ",".join(COLUMNS)
    return tiles


def read_program(path: str | os.PathLike) -> tuple[dict, list[TileCells]]:
    """Read a programming file (HDF5) back, checking it: the format, that every cell lies on
    its tile, that the polarity matches the column and that no cell is named twice."""
    path = Path(path)
    if not path.is_file():
        raise PrimeError(f"no such programming file: {path}")
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if attrs.get("format") != FORMAT:
                raise PrimeError(f"{path} is not a prime chip programming file")
            tiles = [
                TileCells(int(lname[5:]), int(g.attrs["tile"]), g["reset"][()], g["keep"][()])
                for lname, layer in f.items()
                for g in layer.values()
            ]
    except OSError as exc:
        raise PrimeError(f"{path} is not a readable HDF5 file ({exc})") from None
    rows, cols = int(attrs["tile_rows"]), int(attrs["tile_cols"])
    for t in tiles:
        where = f"{path}: layer {t.layer}, tile {t.tile}"
        cells = np.concatenate([t.reset, t.keep]).reshape(-1, len(COLUMNS))
        if cells.size and not (
            (0 <= cells[:, 2]).all()
            and (cells[:, 2] < rows).all()
            and (0 <= cells[:, 3]).all()
            and (cells[:, 3] < cols).all()
        ):
            raise PrimeError(f"{where}: a cell lies outside the {rows}x{cols} tile")
        if (cells[:, 1] % 2 != cells[:, 4]).any():
            raise PrimeError(f"{where}: a polarity does not match its column (2j: G+, 2j+1: G-)")
        if len(np.unique(cells[:, 2:4], axis=0)) != len(cells):
            raise PrimeError(f"{where}: a cell is listed twice (or both reset and kept)")
    return attrs, tiles
