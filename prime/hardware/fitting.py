"""Device models fitted to a trace's measured cells.

A cell is unformed when its conductance is below ``unformed_below_us``; the formed cells'
conductances are fitted by a normal and by a lognormal distribution (maximum likelihood), and
each fit is scored by its Kolmogorov-Smirnov statistic D (the largest gap between the
empirical and the fitted CDF; smaller is better). The parameters are estimated from the same
data, so D ranks the fits but is not a test with a p-value.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from prime.core.errors import PrimeError
from prime.hardware.ageing import Relaxation
from prime.hardware.devices import LognormalRRAM
from prime.hardware.traces.format import Trace


@dataclass(frozen=True)
class DeviceFit:
    """A fit of one array's cells (conductances in µS)."""

    n_cells: int
    n_formed: int
    unformed_fraction: float
    normal_mean_us: float
    normal_std_us: float
    normal_ks: float
    lognormal_median_us: float
    lognormal_sigma_ln: float
    lognormal_ks: float
    read_noise: float | None  # median relative std of a formed cell across reads

    @property
    def preferred(self) -> str:
        """The fit with the smaller KS statistic."""
        return "lognormal" if self.lognormal_ks <= self.normal_ks else "normal"

    def device(self) -> LognormalRRAM:
        """The ``rram-lognormal`` preset with the fitted parameters."""
        return LognormalRRAM(
            p_unformed=self.unformed_fraction,
            median_us=self.lognormal_median_us,
            sigma_ln=self.lognormal_sigma_ln,
        )

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "preferred": self.preferred}

    def report(self) -> str:
        noise = "n/a (one read)" if self.read_noise is None else f"{self.read_noise:.4f}"
        return "\n".join(
            [
                f"cells: {self.n_cells}, formed: {self.n_formed}, "
                f"unformed fraction: {self.unformed_fraction:.4f}",
                f"normal:    mean {self.normal_mean_us:.4f} µS, std {self.normal_std_us:.4f} µS, "
                f"KS D = {self.normal_ks:.4f}",
                f"lognormal: median {self.lognormal_median_us:.4f} µS, "
                f"σ_ln {self.lognormal_sigma_ln:.4f}, KS D = {self.lognormal_ks:.4f}",
                f"preferred by KS: {self.preferred}",
                f"read-to-read variation (median relative std of formed cells): {noise}",
            ]
        )


def ks_statistic(values: np.ndarray, cdf: torch.Tensor) -> float:
    """Kolmogorov-Smirnov D of sorted ``values`` [n] against the model CDF at them [n]."""
    n = len(values)
    upper = torch.arange(1, n + 1, dtype=torch.float64) / n
    return max((upper - cdf).max().item(), (cdf - (upper - 1 / n)).max().item())


def fit_cells(
    cells_us: np.ndarray, unformed_below_us: float = 1.0, read_noise: float | None = None
) -> DeviceFit:
    """Fit the cells' conductances (any shape, µS); see the module docstring."""
    cells = np.asarray(cells_us, dtype=np.float64).ravel()
    formed = np.sort(cells[cells >= unformed_below_us])
    if len(formed) < 2:
        raise PrimeError(
            f"only {len(formed)} of {len(cells)} cells are >= {unformed_below_us} µS (formed); "
            "a fit needs at least 2 (check the units, or lower --unformed-below)"
        )
    x = torch.as_tensor(formed)
    mean, std = x.mean().item(), x.std(correction=0).item()
    log_x = x.log()
    mu_ln, sigma_ln = log_x.mean().item(), log_x.std(correction=0).item()
    if std == 0 or sigma_ln == 0:
        raise PrimeError("all formed cells have the same conductance; nothing to fit")
    return DeviceFit(
        n_cells=len(cells),
        n_formed=len(formed),
        unformed_fraction=1 - len(formed) / len(cells),
        normal_mean_us=mean,
        normal_std_us=std,
        normal_ks=ks_statistic(formed, torch.special.ndtr((x - mean) / std)),
        lognormal_median_us=math.exp(mu_ln),
        lognormal_sigma_ln=sigma_ln,
        lognormal_ks=ks_statistic(formed, torch.special.ndtr((log_x - mu_ln) / sigma_ln)),
        read_noise=read_noise,
    )


def cell_statistics(trace: Trace, max_reads: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell mean and sample std (µS, 0 for one read) over the first ``max_reads`` reads,
    one read in memory at a time."""
    n = trace.n_reads if max_reads is None else min(max_reads, trace.n_reads)
    total = np.zeros(trace.shape)
    total_sq = np.zeros(trace.shape)
    for index in range(n):
        read = trace.read(index).astype(np.float64)
        total += read
        total_sq += read**2
    mean = total / n
    variance = np.maximum(total_sq - n * mean**2, 0) / max(n - 1, 1)
    return mean, np.sqrt(variance)


def fit_trace(
    trace: Trace, unformed_below_us: float = 1.0, max_reads: int | None = None
) -> DeviceFit:
    """Fit each cell's mean conductance over reads; with several reads, also the read noise."""
    mean, std = cell_statistics(trace, max_reads)
    formed = mean >= unformed_below_us
    several = min(trace.n_reads, max_reads or trace.n_reads) > 1
    noise = float(np.median(std[formed] / mean[formed])) if several and formed.any() else None
    return fit_cells(mean, unformed_below_us, noise)


def fit_relaxation(
    trace: Trace, unformed_below_us: float = 1.0, t0_s: float = 1.0, max_reads: int | None = None
) -> Relaxation:
    """The log-time relaxation (:class:`~prime.hardware.ageing.Relaxation`) of a trace read at
    several times: for every cell formed in read 0, the least-squares slope b of its relative
    change g_k / g_0 - 1 against log10(1 + (t_k - t_0) / t0); ν = -mean(b), σ = std(b). Read
    noise adds to σ (with one read per time the two cannot be told apart)."""
    t = trace.timestamps_s
    n = trace.n_reads if max_reads is None else min(max_reads, trace.n_reads)
    if t is None or n < 2 or not (t[:n] > t[0]).any():
        has = "no /timestamp_s" if t is None else f"{n} read(s) at times {sorted(set(t[:n]))} s"
        raise PrimeError(f"an ageing fit needs reads at two or more times; the trace has {has}")
    first = trace.read(0).astype(np.float64)
    formed = first >= unformed_below_us
    if not formed.any():
        raise PrimeError(f"no cell of read 0 is >= {unformed_below_us} µS (formed)")
    decades = np.log10(1 + (t[:n] - t[0]) / t0_s)
    weighted = np.zeros(int(formed.sum()))
    for k in range(1, n):
        weighted += (trace.read(k)[formed] / first[formed] - 1) * decades[k]
    slopes = weighted / float((decades**2).sum())
    return Relaxation(
        drift_per_decade=float(-slopes.mean()), spread_per_decade=float(slopes.std()), t0_s=t0_s
    )
