"""``prime eval RUN --adc-bits 8,6,4`` (or ``--dac-bits``, ``--tile-rows``,
``--digital-bits``, ``--neuron-bits``): a trained run evaluated on a periphery with one field
swept; and
``prime eval RUN --r-wire 0,1,2 --tile 512x512,128x128``: wire resistance against the
partitioning (IR drop, docs/ir_drop.md).

Every point rebuilds the run's model on the periphery (the run's own, or ``--periphery``)
with the field changed, calibrates its open ranges on the run's training data, and counts
the test split while evaluating it, so each point has its accuracy and its energy per
inference by component (the analog macro's model, following the periphery). Writes
``sweep.csv``, ``sweep.json`` and ``sweep.png``: accuracy against the swept field, and
accuracy against energy per inference with the energy split by component.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prime.analysis.energy.models import AnalogMacro
from prime.analysis.energy.report import count_run
from prime.core.errors import PrimeError
from prime.core.io import write_json
from prime.core.tables import new_figure, save_figure, write_csv
from prime.hardware.periphery import ReadPathConfig
from prime.inference.calibrate import calibrate_periphery
from prime.runs.rundir import prepare_run, with_periphery

if TYPE_CHECKING:
    import torch

    from prime.data.base import DataSplits
    from prime.runs.config import TrainConfig
    from prime.snn.network import SpikingNetwork

#: the fields ``prime eval`` sweeps, by option name
SWEEPABLE = ("adc_bits", "dac_bits", "tile_rows", "digital_bits", "neuron_bits")
COMPONENTS = ("cells", "rows", "adc", "digital", "neurons")


def sweep_periphery(
    run_dir: str | Path,
    field: str,
    values: list[int],
    out_dir: str | Path,
    periphery: ReadPathConfig | None = None,
    analog: AnalogMacro | None = None,
    batch_size: int = 128,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """One row per value of ``field``: accuracy and energy per inference (pJ, by component)
    of the run on ``periphery`` (default: the run's own) with ``field`` set to it, run on
    ``device`` (default cpu)."""
    if field not in SWEEPABLE:
        raise PrimeError(f"cannot sweep {field!r}; sweepable: {', '.join(SWEEPABLE)}")
    model, config, data = prepare_run(run_dir, device=device)
    base = periphery or ReadPathConfig.from_dict(config.read_path)
    points = [({field: value}, {field: value}) for value in values]
    rows = _evaluate_points(model, config, data, base, points, analog, batch_size, progress)
    title = f"{config.model_name} on {config.dataset}"
    record = {"run": str(run_dir), "title": title, "field": field, "base": base.to_dict()}
    plot_sweep(rows, field, title, _write_rows(out_dir, "sweep", [field], rows, record))
    return rows


def sweep_ir_drop(
    run_dir: str | Path,
    resistances: list[float],
    tiles: list[tuple[int | None, int | None]],
    out_dir: str | Path,
    periphery: ReadPathConfig | None = None,
    analog: AnalogMacro | None = None,
    batch_size: int = 128,
    progress: bool = False,
    device: str | torch.device | None = None,
) -> list[dict[str, Any]]:
    """One row per (tile, wire resistance): accuracy and energy per inference of the run on
    ``periphery`` (default: the run's own) partitioned onto ``tiles`` (rows, columns; None:
    the whole side) with every word- and bit-line segment ``r`` ohms. Writes ``ir_drop.csv``,
    ``ir_drop.json`` and ``ir_drop.png`` (accuracy against r per tile size, accuracy against
    energy per inference). ``device``: where the network and its IR-drop solves run."""
    model, config, data = prepare_run(run_dir, device=device)
    base = periphery or ReadPathConfig.from_dict(config.read_path)
    points = [
        (
            {"tile_rows": rows, "tile_columns": cols, "r_wordline_ohm": r, "r_bitline_ohm": r},
            {"tile": _tile_name(rows, cols), "r_wire_ohm": r},
        )
        for rows, cols in tiles
        for r in resistances
    ]
    rows = _evaluate_points(model, config, data, base, points, analog, batch_size, progress)
    title = f"{config.model_name} on {config.dataset}"
    record = {"run": str(run_dir), "title": title, "base": base.to_dict()}
    labels = ["tile", "r_wire_ohm"]
    plot_ir_drop(rows, title, _write_rows(out_dir, "ir_drop", labels, rows, record))
    return rows


def _write_rows(
    out_dir: str | Path,
    stem: str,
    labels: list[str],
    rows: list[dict[str, Any]],
    record: dict[str, Any],
) -> Path:
    """Write ``rows`` as ``stem``.csv (the ``labels`` columns, then the results) and
    ``stem``.json (``record`` with the rows) into ``out_dir``; returns the figure's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = ["accuracy", "energy_pj", *(f"{n}_pj" for n in COMPONENTS), "latency_ns", "samples"]
    write_csv(out / f"{stem}.csv", rows, [*labels, *results])
    write_json(out / f"{stem}.json", {**record, "rows": rows})
    return out / f"{stem}.png"


def _tile_name(rows: int | None, cols: int | None) -> str:
    return f"{rows or 'all'}x{cols or 'all'}"


def _evaluate_points(
    model: SpikingNetwork,
    config: TrainConfig,
    data: DataSplits,
    base: ReadPathConfig,
    points: list[tuple[dict[str, Any], dict[str, Any]]],
    analog: AnalogMacro | None,
    batch_size: int,
    progress: bool,
) -> list[dict[str, Any]]:
    """For each (fields to change on ``base``, the row's labels): the model on that
    periphery, calibrated, its test accuracy and energy per inference by component."""
    analog = analog or AnalogMacro()
    rows = []
    for fields, labels in points:
        point = ReadPathConfig.from_dict({**base.to_dict(), **fields})
        dataclasses.replace(config, read_path=point.to_dict())  # contradictions fail here
        swept = with_periphery(model, point)
        calibrate_periphery(swept, data.train, config.seed)
        counts, accuracy = count_run(swept, data.test, batch_size, progress=progress)
        energy = analog.energy_pj(counts)
        rows.append(
            {
                **labels,
                "accuracy": accuracy,
                "energy_pj": energy["total"],
                **{f"{name}_pj": energy[name] for name in COMPONENTS},
                "latency_ns": analog.latency_ns(counts),
                "samples": counts.samples,
            }
        )
    return rows


def plot_ir_drop(rows: list[dict[str, Any]], title: str, path: Path) -> None:
    """Accuracy against wire resistance, one line per tile size; accuracy against energy per
    inference, one line per wire resistance across the tile sizes."""
    fig, (left, right) = new_figure(10.0, 3.8, ncols=2)
    for tile in dict.fromkeys(row["tile"] for row in rows):
        mine = [row for row in rows if row["tile"] == tile]
        left.plot(
            [row["r_wire_ohm"] for row in mine],
            [100 * row["accuracy"] for row in mine],
            "o-",
            label=f"{tile} tiles",
        )
    left.set_xlabel("wire resistance per segment (ohm)")
    left.set_ylabel("test accuracy (%)")
    left.set_title(title)
    left.legend(fontsize=7)
    for r in dict.fromkeys(row["r_wire_ohm"] for row in rows):
        mine = [row for row in rows if row["r_wire_ohm"] == r]
        right.plot(
            [row["energy_pj"] / 1e3 for row in mine],
            [100 * row["accuracy"] for row in mine],
            "o-",
            label=f"{r:g} ohm",
        )
        for row in mine:
            right.annotate(row["tile"], (row["energy_pj"] / 1e3, 100 * row["accuracy"]), fontsize=6)
    right.set_xlabel("energy per inference (nJ)")
    right.set_ylabel("test accuracy (%)")
    right.legend(fontsize=7)
    save_figure(fig, path)


def plot_sweep(rows: list[dict[str, Any]], field: str, title: str, path: Path) -> None:
    """Accuracy against ``field``, and accuracy against energy per inference with the
    energy of every point split by component (stacked bars)."""
    fig, (left, right) = new_figure(10.0, 3.8, ncols=2)
    values = [row[field] for row in rows]
    accuracy = [100 * row["accuracy"] for row in rows]
    left.plot(values, accuracy, "o-")
    left.set_xlabel(field.replace("_", " "))
    left.set_ylabel("test accuracy (%)")
    left.set_title(title)
    labels = [str(v) for v in values]
    bottom = [0.0] * len(rows)
    for name in COMPONENTS:
        share = [row[f"{name}_pj"] / 1e3 for row in rows]
        right.bar(labels, share, bottom=bottom, label=name)
        bottom = [b + s for b, s in zip(bottom, share, strict=True)]
    right.set_xlabel(f"{field.replace('_', ' ')} (bars: energy per inference, nJ)")
    right.set_ylabel("energy per inference (nJ)")
    right.legend(fontsize=7, loc="upper left")
    twin = right.twinx()
    twin.plot(labels, accuracy, "ko-")
    twin.set_ylabel("test accuracy (%)")
    for label, row, acc in zip(labels, rows, accuracy, strict=True):
        twin.annotate(f"{row['energy_pj'] / 1e3:.1f} nJ", (label, acc), fontsize=7)
    save_figure(fig, path)
