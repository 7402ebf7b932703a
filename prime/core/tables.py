"""Result tables of studies (sweeps over chips, read noise): statistics, CSV and PNG files.

Files are written atomically (:mod:`prime.core.io`); figures use matplotlib's Agg backend.
"""

from __future__ import annotations

import csv
import os
import statistics
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prime.core.io import atomic_path


def describe(values: Sequence[float]) -> dict[str, float]:
    """n, mean, std (sample standard deviation, n - 1; 0 for one value), min and max."""
    values = [float(v) for v in values]
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": std,
        "min": min(values),
        "max": max(values),
    }


def write_csv(path: str | Path, rows: Iterable[dict[str, Any]], columns: Sequence[str]) -> None:
    """One line per row, the given columns in order (other keys are left out)."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def new_figure(width: float = 5.0, height: float = 3.5, **subplots: Any) -> tuple[Any, Any]:
    """A matplotlib (figure, axes) drawn off screen; ``subplots`` go to ``plt.subplots``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height), **subplots)


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 120) -> None:
    """Write ``fig`` as a PNG (atomically) and release it."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
