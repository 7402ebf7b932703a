"""``prime trace plot``: a trace's conductance histogram with the fitted densities, and its
read-to-read variation, as one PNG."""

from __future__ import annotations

import os

import numpy as np

from prime.core.tables import new_figure, save_figure
from prime.hardware.fitting import cell_statistics, fit_cells
from prime.hardware.traces.format import Trace


def plot_trace(
    trace: Trace,
    out: str | os.PathLike,
    unformed_below_us: float = 1.0,
    max_reads: int | None = None,
) -> None:
    """Left: histogram of formed cells' mean conductance (µS) with the normal and lognormal
    fits; right: each formed cell's per-read deviation from its mean (%)."""
    mean, _ = cell_statistics(trace, max_reads)
    fit = fit_cells(mean, unformed_below_us)
    formed = mean >= unformed_below_us
    g = mean[formed]
    fig, (left, right) = new_figure(11, 4, ncols=2)
    left.hist(g, bins=60, density=True, color="0.75", label=f"{fit.n_formed} formed cells")
    x = np.linspace(g.min(), g.max(), 400)
    normal = np.exp(-0.5 * ((x - fit.normal_mean_us) / fit.normal_std_us) ** 2)
    normal /= fit.normal_std_us * np.sqrt(2 * np.pi)
    left.plot(x, normal, label=f"normal, KS {fit.normal_ks:.3f}")
    z = (np.log(x) - np.log(fit.lognormal_median_us)) / fit.lognormal_sigma_ln
    lognormal = np.exp(-0.5 * z**2) / (x * fit.lognormal_sigma_ln * np.sqrt(2 * np.pi))
    left.plot(x, lognormal, label=f"lognormal, KS {fit.lognormal_ks:.3f}")
    left.set(
        xlabel="conductance (µS)",
        ylabel="density",
        title=f"{100 * fit.unformed_fraction:.1f} % unformed (< {unformed_below_us:g} µS)",
    )
    left.legend()
    n = trace.n_reads if max_reads is None else min(max_reads, trace.n_reads)
    if n > 1:
        deviation = [100 * (trace.read(i)[formed] / g - 1) for i in range(min(n, 50))]
        right.hist(np.concatenate(deviation), bins=80, color="tab:blue")
        right.set(
            xlabel="read deviation from the cell's mean (%)",
            ylabel="cells x reads",
            title=f"read-to-read variation, {min(n, 50)} reads",
        )
    else:
        right.text(0.5, 0.5, "one read: no read-to-read variation", ha="center")
        right.set_axis_off()
    fig.suptitle(str(trace.path.name))
    fig.tight_layout()
    save_figure(fig, out, dpi=100)
