"""The early-exit report of ``prime eval RUN --early-exit``: calibration, test results,
CSV/JSON and plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prime.core.errors import PrimeError
from prime.core.io import write_json
from prime.core.tables import new_figure, save_figure, write_csv
from prime.data import DataSplits, dataset_len
from prime.inference.early_exit.calibration import (
    DEFAULT_THRESHOLDS,
    calibrate_threshold,
    step_outputs,
    sweep_trajectory,
    validation_split,
)
from prime.inference.early_exit.controller import evaluate_early_exit, top1_accuracy
from prime.inference.early_exit.policies import ExitPolicy, get_policy, policy_name
from prime.snn.network import SpikingNetwork


def early_exit_report(
    model: SpikingNetwork,
    data: DataSplits,
    out_dir: str | Path,
    policy: str | ExitPolicy = "prime",
    threshold: float | None = None,
    target_drop_pp: float | None = None,
    min_steps: int = 1,
    alpha: float = 2.0,
    val_seed: int = 0,
    batch_size: int = 128,
    progress: bool = True,
) -> dict[str, Any]:
    """Early exit on the test split at ``threshold`` or at the threshold calibrated on the
    validation split for ``target_drop_pp`` (default θ = 0.8), plus a test-split threshold
    sweep. Writes ``sweep.csv``, ``accuracy_vs_steps.png``, ``steps_histogram.png`` and
    ``early_exit.json`` to ``out_dir`` and returns what the JSON holds.
    """
    if threshold is not None and target_drop_pp is not None:
        raise PrimeError("give either a threshold or a target drop, not both")
    exit_policy = get_policy(policy, alpha=alpha)
    report: dict[str, Any] = {"policy": policy_name(exit_policy), "alpha": exit_policy.alpha}
    if target_drop_pp is not None:
        val = validation_split(data, val_seed)
        calibration = calibrate_threshold(
            model, val, target_drop_pp, exit_policy, min_steps=min_steps, batch_size=batch_size
        )
        threshold = calibration.pop("threshold")
        calibration.pop("sweep")
        report["calibration"] = {"val_samples": dataset_len(val), **calibration}
    threshold = 0.8 if threshold is None else threshold
    trajectory, labels = step_outputs(model, data.test, batch_size, progress)
    sweep = sweep_trajectory(trajectory, labels, DEFAULT_THRESHOLDS, exit_policy, min_steps)
    result = evaluate_early_exit(
        model,
        data.test,
        exit_policy,
        threshold,
        min_steps,
        batch_size=batch_size,
        progress=progress,
    )
    report.update(
        result, min_steps=min_steps, full_accuracy=top1_accuracy(trajectory.mean(0), labels)
    )
    out_dir = Path(out_dir)
    write_sweep_csv(out_dir / "sweep.csv", sweep)
    plot_sweep(out_dir / "accuracy_vs_steps.png", sweep, report)
    plot_steps_histogram(out_dir / "steps_histogram.png", report)
    report["sweep"] = sweep
    write_json(out_dir / "early_exit.json", report)
    return report


SWEEP_COLUMNS = ("policy", "threshold", "accuracy", "mean_steps", "load_saved", "samples")


def write_sweep_csv(path: Path, sweep: list[dict[str, Any]]) -> None:
    """One row per threshold: policy, threshold, accuracy, mean_steps, load_saved, samples."""
    write_csv(path, sweep, SWEEP_COLUMNS)


def plot_sweep(path: Path, sweep: list[dict[str, Any]], chosen: dict[str, Any]) -> None:
    """Accuracy (%) against mean timesteps over the sweep, the chosen threshold marked."""
    fig, ax = new_figure()
    ax.plot([r["mean_steps"] for r in sweep], [100 * r["accuracy"] for r in sweep], ".-")
    ax.axhline(100 * chosen["full_accuracy"], color="gray", ls="--", label="full T")
    ax.plot(
        chosen["mean_steps"],
        100 * chosen["accuracy"],
        "r*",
        ms=12,
        label=f"θ = {chosen['threshold']:g}",
    )
    ax.legend(loc="lower right")
    ax.set(
        xlabel=f"mean timesteps (of T = {chosen['timesteps']})",
        ylabel="test accuracy (%)",
        title=f"early exit, {chosen['policy']} policy: threshold sweep",
    )
    ax.grid(alpha=0.3)
    save_figure(fig, path)


def plot_steps_histogram(path: Path, result: dict[str, Any]) -> None:
    """Number of samples per exit step at the chosen threshold."""
    fig, ax = new_figure()
    ax.bar(range(1, result["timesteps"] + 1), result["steps_histogram"])
    ax.set(
        xlabel="timesteps used",
        ylabel="samples",
        title=f"{result['policy']} policy, θ = {result['threshold']:g}: "
        f"load saved {100 * result['load_saved']:.1f} %",
    )
    save_figure(fig, path)
