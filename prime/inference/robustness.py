"""Read-noise robustness: a trained run's accuracy under read noise, repeated with fresh noise.

Every forward call of the network is one read of the crossbars, each with fresh noise
(:func:`prime.hardware.devices.read_conductance`, multiplicative σ). One *repeat* is one pass
over the test split with the noise generator seeded ``seed + repeat``; the seeds are
recorded. Without noise (σ = 0) and without a trace the result is deterministic and
evaluated once. With a chip trace, repeat ``r`` starts its replay at read ``r`` (any σ then
adds model noise on top of the measured reads).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from prime.core.errors import PrimeError
from prime.core.tables import describe, new_figure, save_figure, write_csv
from prime.inference.evaluate import evaluate
from prime.snn.network import SpikingNetwork

REPEAT_COLUMNS = ("read_noise", "repeat", "noise_seed", "trace_read", "accuracy", "loss")
SUMMARY_COLUMNS = (
    "read_noise",
    "repeats",
    "accuracy_mean",
    "accuracy_std",
    "accuracy_min",
    "accuracy_max",
    "noise_seeds",
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

    if repeats < 1:
        raise PrimeError(f"--repeats must be >= 1, got {repeats}")
    traced = bool(replay is not None and replay.trace)
    rows = []
    for sigma in levels:
        for repeat in range(repeats if sigma > 0 or traced else 1):
            noise_seed = seed + repeat
            model.set_read_noise(sigma, seed=noise_seed)
            bound = open_replay(model, replay, position=repeat) if traced else None
            try:
                result = evaluate(model, dataset, batch_size=batch_size, mode=mode)
            finally:
                if bound:
                    bound.close()
            rows.append(
                {
                    "read_noise": sigma,
                    "repeat": repeat,
                    "noise_seed": noise_seed if sigma > 0 else None,
                    "trace_read": repeat if traced else None,
                    "accuracy": result["accuracy"],
                    "loss": result["loss"],
                }
            )
    model.set_read_noise(0.0)
    return rows


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per noise level: repeats, accuracy mean/std/min/max and the noise seeds used."""
    summary = []
    for sigma in dict.fromkeys(r["read_noise"] for r in rows):
        mine = [r for r in rows if r["read_noise"] == sigma]
        stats = describe([r["accuracy"] for r in mine])
        seeds = [r["noise_seed"] for r in mine if r["noise_seed"] is not None]
        summary.append(
            {
                "read_noise": sigma,
                "repeats": stats["n"],
                **{f"accuracy_{k}": stats[k] for k in ("mean", "std", "min", "max")},
                "noise_seeds": " ".join(map(str, seeds)),
            }
        )
    return summary


def write_report(out_dir: str | Path, rows: Sequence[dict[str, Any]], title: str) -> list[Path]:
    """``read_noise.csv`` (per level), ``read_noise_repeats.csv`` and ``read_noise.png``."""
    out_dir = Path(out_dir)
    summary = summarize(rows)
    paths = [out_dir / n for n in ("read_noise.csv", "read_noise_repeats.csv", "read_noise.png")]
    write_csv(paths[0], summary, SUMMARY_COLUMNS)
    write_csv(paths[1], rows, REPEAT_COLUMNS)
    fig, ax = new_figure()
    ax.errorbar(
        [s["read_noise"] for s in summary],
        [100 * s["accuracy_mean"] for s in summary],
        yerr=[100 * s["accuracy_std"] for s in summary],
        fmt="o-",
        capsize=4,
        label="mean ± std",
    )
    ax.plot([r["read_noise"] for r in rows], [100 * r["accuracy"] for r in rows], "k.", alpha=0.3)
    ax.set(xlabel="read noise σ (multiplicative)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, paths[2])
    return paths
