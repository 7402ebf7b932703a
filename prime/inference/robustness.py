"""Robustness: a trained run's accuracy under read noise, ageing and stuck cells, repeated
with fresh draws (:func:`repeat_evaluations`; reports by :func:`write_report`).

Every forward call of the network is one read of the crossbars, each with fresh noise
(:func:`prime.hardware.devices.read_conductance`, multiplicative σ). One *repeat* is one pass
over the test split with the noise generator seeded ``seed + repeat``; the seeds are
recorded. Without noise (σ = 0) and without a trace the result is deterministic and
evaluated once. With a chip trace, repeat ``r`` starts its replay at read ``r`` (any σ then
adds model noise on top of the measured reads).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from prime.core.errors import PrimeError
from prime.core.io import write_json
from prime.core.tables import describe, new_figure, save_figure, write_csv
from prime.hardware.ageing import Relaxation, format_age
from prime.hardware.faults import StuckCells
from prime.inference.evaluate import evaluate
from prime.snn.network import SpikingNetwork


@dataclass(frozen=True)
class Sweep:
    """What a report sweeps: its name (the files' stem), the columns that set a level, the
    column of each repeat's seed, extra per-repeat columns and the plot's x axis."""

    name: str
    levels: tuple[str, ...]
    seed_column: str
    xlabels: tuple[str, ...]  # one per level column
    extra: tuple[str, ...] = ()
    xscale: str = "linear"

    def x(self, summary: Sequence[dict[str, Any]]) -> tuple[str, str]:
        """(column, axis label) of the plot's x axis: the first level column that varies."""
        varies = [len({s[k] for s in summary}) > 1 for k in self.levels]
        i = varies.index(True) if any(varies) else 0
        return self.levels[i], self.xlabels[i]

    @property
    def repeat_columns(self) -> tuple[str, ...]:
        return (*self.levels, "repeat", self.seed_column, *self.extra, "accuracy", "loss")

    @property
    def summary_columns(self) -> tuple[str, ...]:
        stats = tuple(f"accuracy_{k}" for k in ("mean", "std", "min", "max"))
        return (*self.levels, "repeats", *stats, f"{self.seed_column}s")


READ_NOISE = Sweep(
    "read_noise", ("read_noise",), "noise_seed", ("read noise σ (multiplicative)",), ("trace_read",)
)
AGE = Sweep("age", ("age_s",), "age_seed", ("time since forming (s)",), ("age",), "symlog")
STUCK_CELLS = Sweep(
    "stuck_cells",
    ("stuck_off", "stuck_on"),
    "fault_seed",
    ("fraction of cells stuck at 0 µS", "fraction of cells stuck on"),
)


def parse_noise_levels(text: str) -> list[float]:
    """``"0,0.02,0.05"`` -> [0.0, 0.02, 0.05]; each σ a finite number >= 0."""
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or any(not (0 <= s < float("inf")) for s in levels):
        raise PrimeError(
            f"--read-noise takes σ values >= 0 separated by commas (e.g. 0,0.02,0.05), got {text!r}"
        )
    return levels


def read_noise_sweep(
    model: SpikingNetwork,
    dataset: Dataset,
    levels: Sequence[float],
    repeats: int,
    seed: int = 0,
    mode: str = "multi",
    batch_size: int = 128,
    replay: Any = None,
) -> list[dict[str, Any]]:
    """One row per evaluation: read_noise, repeat, noise_seed, trace_read, accuracy, loss.

    ``replay``: settings with a ``trace`` (a TrainConfig, see
    :func:`prime.hardware.replay.open_replay`) to evaluate on a replayed chip trace, or None
    for the model's own chip.
    """
    from prime.hardware.replay import open_replay

    traced = bool(replay is not None and replay.trace)

    @contextlib.contextmanager
    def noisy(level: dict[str, Any], noise_seed: int, repeat: int) -> Iterator[None]:
        model.set_read_noise(level["read_noise"], seed=noise_seed)
        bound = open_replay(model, replay, position=repeat) if traced else None
        try:
            yield
        finally:
            if bound:
                bound.close()
            model.set_read_noise(0.0)

    rows = repeat_evaluations(
        model,
        dataset,
        [{"read_noise": sigma} for sigma in levels],
        repeats,
        noisy,
        random=lambda level: level["read_noise"] > 0 or traced,
        seed=seed,
        mode=mode,
        batch_size=batch_size,
    )
    for row in rows:
        seed_used = row.pop("seed")
        row["noise_seed"] = seed_used if row["read_noise"] > 0 else None
        row["trace_read"] = row["repeat"] if traced else None
    return rows


Condition = Callable[[dict[str, Any], int, int], AbstractContextManager[Any]]


def repeat_evaluations(
    model: SpikingNetwork,
    dataset: Dataset,
    levels: Sequence[dict[str, Any]],
    repeats: int,
    condition: Condition,
    random: Callable[[dict[str, Any]], bool],
    seed: int = 0,
    mode: str = "multi",
    batch_size: int = 128,
) -> list[dict[str, Any]]:
    """Evaluate ``model`` under each level (a dict of settings), ``repeats`` times where
    ``random(level)`` (once otherwise): ``condition(level, seed + repeat, repeat)`` is a
    context manager that holds the model in that state. One row per evaluation: the level's
    settings, repeat, seed (None where the level is not random), accuracy, loss."""
    if repeats < 1:
        raise PrimeError(f"--repeats must be >= 1, got {repeats}")
    rows = []
    for level in levels:
        randomised = random(level)
        for repeat in range(repeats if randomised else 1):
            with condition(level, seed + repeat, repeat):
                result = evaluate(model, dataset, batch_size=batch_size, mode=mode)
            rows.append(
                {
                    **level,
                    "repeat": repeat,
                    "seed": seed + repeat if randomised else None,
                    "accuracy": result["accuracy"],
                    "loss": result["loss"],
                }
            )
    return rows


@contextlib.contextmanager
def cells_changed(
    model: SpikingNetwork, change: Callable[[list[torch.Tensor]], list[torch.Tensor]]
) -> Iterator[None]:
    """Inside the block the model's cells are ``change(cells)`` (one tensor per memristor
    layer); afterwards they are the cells they were, bit for bit."""
    before = [layer.g_us.clone() for layer in model.memristor_layers()]
    model.load_conductances(change(before))
    try:
        yield
    finally:
        model.load_conductances(before)


def age_sweep(
    model: SpikingNetwork,
    dataset: Dataset,
    ages_s: Sequence[float],
    repeats: int,
    relaxation: Relaxation,
    seed: int = 0,
    mode: str = "multi",
    batch_size: int = 128,
) -> list[dict[str, Any]]:
    """Accuracy of the chip aged by ``relaxation`` to each age (s); repeat r draws the
    cells' spread from ``seed + r``. Rows: age_s, age, repeat, age_seed, accuracy, loss."""
    for age in ages_s:
        relaxation.decades(age)  # a bad age fails before any evaluation

    def aged(level: dict[str, Any], age_seed: int, repeat: int) -> AbstractContextManager[None]:
        return cells_changed(model, lambda cells: relaxation.apply(cells, level["age_s"], age_seed))

    rows = repeat_evaluations(
        model,
        dataset,
        [{"age_s": float(age)} for age in ages_s],
        repeats,
        aged,
        random=lambda level: relaxation.active and level["age_s"] > 0,
        seed=seed,
        mode=mode,
        batch_size=batch_size,
    )
    for row in rows:
        row["age_seed"] = row.pop("seed")
        row["age"] = format_age(row["age_s"])
    return rows


def stuck_cells_sweep(
    model: SpikingNetwork,
    dataset: Dataset,
    fractions: Sequence[tuple[float, float]],
    repeats: int,
    stuck_on_us: float | None = None,
    seed: int = 0,
    mode: str = "multi",
    batch_size: int = 128,
) -> list[dict[str, Any]]:
    """Accuracy with (stuck_off, stuck_on) fractions of the cells stuck
    (:class:`~prime.hardware.faults.StuckCells`), on top of the model's cells; repeat r
    sticks the cells of fault seed ``seed + r``. Rows: stuck_off, stuck_on, repeat,
    fault_seed, accuracy, loss."""
    for off, on in fractions:
        StuckCells(off, on, stuck_on_us)  # bad fractions fail before any evaluation

    def stuck(level: dict[str, Any], fault_seed: int, repeat: int) -> AbstractContextManager[None]:
        faults = StuckCells(level["stuck_off"], level["stuck_on"], stuck_on_us, fault_seed)
        return cells_changed(model, faults.apply)

    rows = repeat_evaluations(
        model,
        dataset,
        [{"stuck_off": off, "stuck_on": on} for off, on in fractions],
        repeats,
        stuck,
        random=lambda level: StuckCells(level["stuck_off"], level["stuck_on"]).active,
        seed=seed,
        mode=mode,
        batch_size=batch_size,
    )
    for row in rows:
        row["fault_seed"] = row.pop("seed")
    return rows


def summarize(rows: Sequence[dict[str, Any]], sweep: Sweep = READ_NOISE) -> list[dict[str, Any]]:
    """Per level: repeats, accuracy mean/std/min/max and the seeds used."""
    summary = []
    for level in dict.fromkeys(tuple(r[k] for k in sweep.levels) for r in rows):
        mine = [r for r in rows if tuple(r[k] for k in sweep.levels) == level]
        stats = describe([r["accuracy"] for r in mine])
        seeds = [r[sweep.seed_column] for r in mine if r[sweep.seed_column] is not None]
        summary.append(
            {
                **dict(zip(sweep.levels, level, strict=True)),
                "repeats": stats["n"],
                **{f"accuracy_{k}": stats[k] for k in ("mean", "std", "min", "max")},
                f"{sweep.seed_column}s": " ".join(map(str, seeds)),
            }
        )
    return summary


def write_report(
    out_dir: str | Path, rows: Sequence[dict[str, Any]], title: str, sweep: Sweep = READ_NOISE
) -> list[Path]:
    """``NAME.csv`` (per level), ``NAME_repeats.csv``, ``NAME.json`` (per level) and
    ``NAME.png`` (accuracy against the sweep's x column), NAME the sweep's name."""
    out_dir = Path(out_dir)
    summary = summarize(rows, sweep)
    paths = [out_dir / f"{sweep.name}{end}" for end in (".csv", "_repeats.csv", ".json", ".png")]
    write_csv(paths[0], summary, sweep.summary_columns)
    write_csv(paths[1], rows, sweep.repeat_columns)
    write_json(paths[2], {"title": title, "levels": summary})
    x, xlabel = sweep.x(summary)
    fig, ax = new_figure()
    ax.errorbar(
        [s[x] for s in summary],
        [100 * s["accuracy_mean"] for s in summary],
        yerr=[100 * s["accuracy_std"] for s in summary],
        fmt="o-",
        capsize=4,
        label="mean ± std",
    )
    ax.plot([r[x] for r in rows], [100 * r["accuracy"] for r in rows], "k.", alpha=0.3)
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    if sweep.xscale == "symlog":
        ax.set_xscale("symlog", linthresh=1.0)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, paths[3])
    return paths
