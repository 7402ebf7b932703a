"""Input-aware early exit: stop simulating a sample once its output is confident.

After every timestep t the controller scores each running sample's mean output so far
(sum of the output integrator over steps 1..t, divided by t) with an exit policy; samples
that are done (and have run at least ``min_steps``) retire: their mean output and step
count are kept, and they leave the batch, so later steps compute only for the samples still
running. A sample that is never confident runs all T steps.

Policies score ``p = softmax(mean_output / alpha)``; a sample is done when its confidence is
strictly above the threshold θ, so θ = 1.0 never exits early:

* ``prime``: max p (PRIME's rule; α = 2, θ = 0.8 in the paper),
* ``margin``: top-1 p minus top-2 p,
* ``entropy``: 1 - H(p) / log C.

The load saved is 1 - mean steps / T: the fraction of timesteps not simulated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, Subset
from tqdm.auto import tqdm

from prime.checkpoint import write_json
from prime.data import DataSplits, iterate_batches
from prime.errors import PrimeError
from prime.network import SpikingNetwork
from prime.registry import Registry
from prime.tables import new_figure, save_figure, write_csv


@dataclass(frozen=True)
class ExitPolicy:
    """Base of exit policies: ``confidence`` in [0, 1] of ``softmax(mean_output / alpha)``."""

    alpha: float = 2.0

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, int | float) and math.isfinite(self.alpha)) or (
            self.alpha <= 0
        ):
            raise PrimeError(f"exit policy alpha must be a number > 0, got {self.alpha!r}")

    def probabilities(self, mean_output: torch.Tensor) -> torch.Tensor:
        return torch.softmax(mean_output / self.alpha, dim=1)

    def confidence(self, mean_output: torch.Tensor) -> torch.Tensor:
        """Confidence per sample: mean_output [B, C] -> [B]."""
        raise NotImplementedError

    def done(self, mean_output: torch.Tensor, threshold: float) -> torch.Tensor:
        """bool [B]: confidence strictly above ``threshold``."""
        return self.confidence(mean_output) > threshold


POLICIES: Registry[type[ExitPolicy]] = Registry("exit policy")


@POLICIES.register("prime")
@dataclass(frozen=True)
class PrimePolicy(ExitPolicy):
    """PRIME's rule: the largest softmax probability."""

    def confidence(self, mean_output: torch.Tensor) -> torch.Tensor:
        return self.probabilities(mean_output).amax(dim=1)


@POLICIES.register("margin")
@dataclass(frozen=True)
class MarginPolicy(ExitPolicy):
    """Top-1 minus top-2 softmax probability."""

    def confidence(self, mean_output: torch.Tensor) -> torch.Tensor:
        top2 = self.probabilities(mean_output).topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]


@POLICIES.register("entropy")
@dataclass(frozen=True)
class EntropyPolicy(ExitPolicy):
    """One minus the normalised entropy of the softmax probabilities."""

    def confidence(self, mean_output: torch.Tensor) -> torch.Tensor:
        p = self.probabilities(mean_output)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(dim=1)
        return 1.0 - entropy / math.log(p.shape[1])


def get_policy(name: str | ExitPolicy, **params: Any) -> ExitPolicy:
    """The registered policy ``name`` with ``params`` (e.g. ``alpha``); instances pass through."""
    if isinstance(name, ExitPolicy):
        return name
    cls = POLICIES.get(name)
    try:
        return cls(**params)
    except TypeError:
        raise PrimeError(
            f"exit policy {name!r} takes only alpha, got {', '.join(sorted(params))}"
        ) from None


@dataclass
class EarlyExitResult:
    """Mean outputs at exit ``outputs`` [B, C] and timesteps used ``steps`` [B] (1..T)."""

    outputs: torch.Tensor
    steps: torch.Tensor
    timesteps: int

    @property
    def load_saved(self) -> float:
        """Fraction of timesteps not simulated: 1 - mean steps / T."""
        return 1.0 - self.steps.double().mean().item() / self.timesteps


def _check_exit_args(threshold: float, min_steps: int, timesteps: int) -> None:
    if not isinstance(threshold, int | float) or math.isnan(threshold):
        raise PrimeError(f"exit threshold must be a number (e.g. 0.8), got {threshold!r}")
    if not isinstance(min_steps, int) or not 1 <= min_steps <= timesteps:
        raise PrimeError(
            f"min_steps must be a whole number from 1 to T = {timesteps}, got {min_steps!r}"
        )


@torch.no_grad()
def run_early_exit(
    model: SpikingNetwork,
    x: torch.Tensor,
    policy: str | ExitPolicy = "prime",
    threshold: float = 0.8,
    min_steps: int = 1,
    alpha: float = 2.0,
) -> EarlyExitResult:
    """Single-step inference of x [T, B, ...] with per-sample early exit and compaction.

    Weights are read once (per step where ``model.step_weights`` is set). Retired samples
    are dropped from the state (``index_select``) and each step gathers only the running
    samples' frames, so each step computes only for the samples still running. ``alpha`` is
    used when ``policy`` is a name. Puts the model in eval mode.
    """
    model.check_input(x)
    policy = get_policy(policy, alpha=alpha)
    T, B = x.shape[:2]
    _check_exit_args(threshold, min_steps, T)
    model.eval()
    hook = model.step_weights  # per-step chip reads (prime.replay), else one read for all
    step_weights = hook(T) if hook is not None else [model.weights()] * T
    state = model.initial_state()
    outputs = x.new_empty(B, model.num_classes, dtype=torch.get_default_dtype())
    steps = torch.full((B,), T, dtype=torch.int64, device=x.device)
    running = torch.arange(B, device=x.device)  # original indices of the running samples
    total = None
    for t in range(T):
        frame = x[t] if len(running) == B else x[t].index_select(0, running)
        out, state = model.step(frame, state, step_weights[t])
        total = out if total is None else total + out
        mean = total / (t + 1)
        if t + 1 == T:
            outputs[running] = mean
            break
        if t + 1 < min_steps:
            continue
        done = policy.done(mean, threshold)
        if not done.any():
            continue
        outputs[running[done]] = mean[done]
        steps[running[done]] = t + 1
        keep = (~done).nonzero().squeeze(1)
        if len(keep) == 0:
            break
        running, total = running[keep], total[keep]
        state = [s.index_select(0, keep) if s is not None else None for s in state]
    return EarlyExitResult(outputs, steps, T)


def exit_from_trajectory(
    step_outputs: torch.Tensor,
    policy: str | ExitPolicy = "prime",
    threshold: float = 0.8,
    min_steps: int = 1,
    alpha: float = 2.0,
) -> EarlyExitResult:
    """The exits :func:`run_early_exit` takes, read off full-T outputs [T, B, C].

    Exact for models whose samples do not interact (eval mode); one full run then serves a
    whole threshold sweep.
    """
    policy = get_policy(policy, alpha=alpha)
    T, B = step_outputs.shape[:2]
    _check_exit_args(threshold, min_steps, T)
    counts = torch.arange(1, T + 1, dtype=step_outputs.dtype).view(T, 1, 1)
    means = step_outputs.cumsum(0) / counts
    done = policy.done(means.flatten(0, 1), threshold).view(T, B)
    done[: min_steps - 1] = False
    done[-1] = True
    steps = done.int().argmax(0) + 1  # first step that is done
    outputs = means[steps - 1, torch.arange(B)]
    return EarlyExitResult(outputs, steps.to(torch.int64), T)


def _accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    return (outputs.argmax(1) == labels).double().mean().item()


def _summary(
    outputs: torch.Tensor, steps: torch.Tensor, labels: torch.Tensor, timesteps: int
) -> dict[str, Any]:
    """Accuracy, mean steps, per-class mean steps, histogram of steps, load saved."""
    classes = int(outputs.shape[1])
    per_class = [
        steps[labels == c].double().mean().item() if (labels == c).any() else None
        for c in range(classes)
    ]
    mean_steps = steps.double().mean().item()
    return {
        "accuracy": _accuracy(outputs, labels),
        "mean_steps": mean_steps,
        "load_saved": 1.0 - mean_steps / timesteps,
        "per_class_steps": per_class,
        "steps_histogram": torch.bincount(steps - 1, minlength=timesteps).tolist(),
        "samples": len(labels),
        "timesteps": timesteps,
    }


def evaluate_early_exit(
    model: SpikingNetwork,
    dataset: Dataset,
    policy: str | ExitPolicy = "prime",
    threshold: float = 0.8,
    min_steps: int = 1,
    alpha: float = 2.0,
    batch_size: int = 128,
    progress: bool = False,
) -> dict[str, Any]:
    """Run the early-exit controller over ``dataset``.

    Returns accuracy, mean_steps, per_class_steps (list, class index -> mean steps),
    steps_histogram (count of samples per step 1..T), load_saved, samples, timesteps.
    """
    policy = get_policy(policy, alpha=alpha)
    outputs, steps, labels = [], [], []
    loader, count = iterate_batches(dataset, batch_size)
    for x, y in tqdm(loader, total=count, desc="early exit", leave=False, disable=not progress):
        result = run_early_exit(model, x, policy, threshold, min_steps)
        outputs.append(result.outputs)
        steps.append(result.steps)
        labels.append(y)
    summary = _summary(torch.cat(outputs), torch.cat(steps), torch.cat(labels), model.timesteps)
    return {"policy": policy_name(policy), "threshold": threshold, **summary}


def policy_name(policy: ExitPolicy) -> str:
    """The registered name of ``policy``'s class (its class name if unregistered)."""
    names = (name for name in POLICIES if type(policy) is POLICIES.get(name))
    return next(names, type(policy).__name__)


@torch.no_grad()
def step_outputs(
    model: SpikingNetwork, dataset: Dataset, batch_size: int = 128, progress: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Full-T single-step outputs of every sample [T, N, C] and the labels [N]."""
    model.eval()
    outputs, labels = [], []
    loader, count = iterate_batches(dataset, batch_size)
    for x, y in tqdm(loader, total=count, desc="full T", leave=False, disable=not progress):
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
    return _sweep(trajectory, labels, thresholds, get_policy(policy, alpha=alpha), min_steps)


def _sweep(
    trajectory: torch.Tensor,
    labels: torch.Tensor,
    thresholds: tuple[float, ...],
    policy: ExitPolicy,
    min_steps: int,
) -> list[dict[str, Any]]:
    rows = []
    for threshold in thresholds:
        result = exit_from_trajectory(trajectory, policy, threshold, min_steps)
        summary = _summary(result.outputs, result.steps, labels, result.timesteps)
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
    full_accuracy = _accuracy(trajectory.mean(0), labels)
    sweep = _sweep(trajectory, labels, thresholds, get_policy(policy, alpha=alpha), min_steps)
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


# --- reports (``prime eval RUN --early-exit``) -------------------------------------------


def validation_split(data: DataSplits, seed: int, fraction: float = 0.2) -> Dataset:
    """The dataset's validation split, else a seeded ``fraction`` of its training split."""
    if getattr(data, "val", None) is not None:
        return data.val
    order = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(seed))
    return Subset(data.train, order[: max(1, round(fraction * len(data.train)))].tolist())


def early_exit_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    read_noise: float = 0.0,
    noise_seed: int = 0,
    chip_seed: int | None = None,
    replay: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`early_exit_report` for a trained run (``out_dir`` defaults to
    ``RUN_DIR/early-exit``), optionally under read noise, on another chip or on a chip
    trace (``replay`` as :func:`prime.evaluate.evaluate_run`)."""
    from prime.evaluate import prepare_run
    from prime.replay import open_replay

    model, config, data = prepare_run(run_dir, chip_seed, replay)
    model.set_read_noise(read_noise, seed=noise_seed)
    out_dir = Path(run_dir) / "early-exit" if out_dir is None else Path(out_dir)
    trace = open_replay(model, config)
    try:
        report = early_exit_report(model, data, out_dir, val_seed=config.seed, **options)
    finally:
        if trace:
            trace.close()
    chip = f"trace {config.trace}" if config.trace else f"chip seed {model.config.chip_seed}"
    return {
        "model": config.model_name,
        "dataset": config.dataset,
        "chip": chip,
        "read_noise": read_noise,
        "out_dir": str(out_dir),
        **report,
    }


def early_exit_report(
    model: SpikingNetwork,
    data: DataSplits,
    out_dir: str | Path,
    policy: str = "prime",
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
    policy = get_policy(policy, alpha=alpha)
    report: dict[str, Any] = {"policy": policy_name(policy), "alpha": policy.alpha}
    if target_drop_pp is not None:
        val = validation_split(data, val_seed)
        calibration = calibrate_threshold(
            model, val, target_drop_pp, policy, min_steps=min_steps, batch_size=batch_size
        )
        threshold = calibration.pop("threshold")
        calibration.pop("sweep")
        report["calibration"] = {"val_samples": len(val), **calibration}
    threshold = 0.8 if threshold is None else threshold
    trajectory, labels = step_outputs(model, data.test, batch_size, progress)
    sweep = _sweep(trajectory, labels, DEFAULT_THRESHOLDS, policy, min_steps)
    result = evaluate_early_exit(
        model, data.test, policy, threshold, min_steps, batch_size=batch_size, progress=progress
    )
    report.update(result, min_steps=min_steps, full_accuracy=_accuracy(trajectory.mean(0), labels))
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
