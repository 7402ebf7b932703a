"""Choosing an exit threshold: sweeps over thresholds from one full-T run, and calibration
on a validation split against an accuracy budget."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.utils.data import Dataset, Subset

from prime.core.device import module_device
from prime.core.errors import PrimeError
from prime.core.progress import progress_bar
from prime.data import DataSplits, dataset_len, iterate_batches
from prime.inference.early_exit.controller import exit_from_trajectory, exit_summary, top1_accuracy
from prime.inference.early_exit.policies import ExitPolicy, get_policy, policy_name
from prime.snn.network import SpikingNetwork


@torch.no_grad()
def step_outputs(
    model: SpikingNetwork, dataset: Dataset, batch_size: int = 128, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-T single-step outputs of every sample [T, N, C] and the labels [N]."""
    model.eval()
    outputs, labels = [], []
    loader, count = iterate_batches(dataset, batch_size, device=module_device(model))
    for x, y in progress_bar(loader, total=count, desc="full T", leave=False, show=progress):
        outputs.append(model(x, mode="single"))
        labels.append(y)
    return torch.cat(outputs, dim=1), torch.cat(labels)


#: default sweep: θ from 0 to 0.99 by 0.01, then ever closer to 1, and 1 (= full T)
DEFAULT_THRESHOLDS = tuple(
    [round(0.01 * i, 2) for i in range(100)] + [0.995, 0.998, 0.999, 0.9995, 0.9999, 1.0]
)


def sweep_thresholds(
    model: SpikingNetwork,
    dataset: Dataset,
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
    policy: str | ExitPolicy = "prime",
    min_steps: int = 1,
    alpha: float = 2.0,
    batch_size: int = 128,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One summary (as :func:`evaluate_early_exit`) per threshold, from one full-T run."""
    trajectory, labels = step_outputs(model, dataset, batch_size, progress)
    return sweep_trajectory(
        trajectory, labels, thresholds, get_policy(policy, alpha=alpha), min_steps
    )


def sweep_trajectory(
    trajectory: torch.Tensor,
    labels: torch.Tensor,
    thresholds: tuple[float, ...],
    policy: ExitPolicy,
    min_steps: int,
) -> list[dict[str, Any]]:
    rows = []
    for threshold in thresholds:
        result = exit_from_trajectory(trajectory, policy, threshold, min_steps)
        summary = exit_summary(result.outputs, result.steps, labels, result.timesteps)
        rows.append({"policy": policy_name(policy), "threshold": threshold, **summary})
    return rows


def calibrate_threshold(
    model: SpikingNetwork,
    val_dataset: Dataset,
    target_drop_pp: float,
    policy: str | ExitPolicy = "prime",
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS,
    min_steps: int = 1,
    alpha: float = 2.0,
    batch_size: int = 128,
    progress: bool = False,
) -> dict[str, Any]:
    """The threshold with the fewest mean steps whose validation accuracy is at most
    ``target_drop_pp`` percentage points below full-T accuracy.

    Returns threshold, accuracy, full_accuracy, drop_pp, mean_steps, load_saved,
    target_drop_pp and the whole ``sweep`` (list of per-threshold summaries).
    """
    if not (isinstance(target_drop_pp, int | float) and 0 <= target_drop_pp < math.inf):
        raise PrimeError(f"target drop must be >= 0 percentage points, got {target_drop_pp!r}")
    trajectory, labels = step_outputs(model, val_dataset, batch_size, progress)
    full_accuracy = top1_accuracy(trajectory.mean(0), labels)
    sweep = sweep_trajectory(
        trajectory, labels, thresholds, get_policy(policy, alpha=alpha), min_steps
    )
    allowed = [r for r in sweep if 100 * (full_accuracy - r["accuracy"]) <= target_drop_pp + 1e-9]
    if not allowed:
        raise PrimeError(
            f"no threshold in the sweep stays within a {target_drop_pp} point accuracy drop; "
            "allow a larger --target-drop or raise --min-steps"
        )
    best = min(allowed, key=lambda r: (r["mean_steps"], -r["accuracy"]))
    return {
        "threshold": best["threshold"],
        "accuracy": best["accuracy"],
        "full_accuracy": full_accuracy,
        "drop_pp": 100 * (full_accuracy - best["accuracy"]),
        "mean_steps": best["mean_steps"],
        "load_saved": best["load_saved"],
        "target_drop_pp": target_drop_pp,
        "sweep": sweep,
    }


def validation_split(data: DataSplits, seed: int, fraction: float = 0.2) -> Dataset:
    """The dataset's validation split, else a seeded ``fraction`` of its training split."""
    if data.val is not None:
        return data.val
    n = dataset_len(data.train)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return Subset(data.train, order[: max(1, round(fraction * n))].tolist())
