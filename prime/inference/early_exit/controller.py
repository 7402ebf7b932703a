"""The early-exit controller: batched inference in chunks, retiring samples as they exit.

See :mod:`prime.inference.early_exit` for the rule. :func:`run_early_exit` drives the
network a few steps at a time (multi-step chunks), compacts the batch between chunks and
refills it with waiting samples; :func:`exit_from_trajectory` reads the same exits off
full-T outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from prime.core.device import module_device
from prime.core.errors import PrimeError
from prime.core.progress import progress_bar
from prime.data import iterate_batches
from prime.inference.early_exit.policies import ExitPolicy, get_policy, policy_name
from prime.snn.network import SpikingNetwork


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


#: steps the controller runs multi-step between compactions (scripts/bench_early_exit.py)
CHUNK_STEPS = 2
#: batches :func:`evaluate_early_exit` loads at once and streams through the controller
STREAM_BATCHES = 8


@torch.no_grad()
def run_early_exit(
    model: SpikingNetwork,
    x: torch.Tensor,
    policy: str | ExitPolicy = "prime",
    threshold: float = 0.8,
    min_steps: int = 1,
    alpha: float = 2.0,
    chunk_steps: int = CHUNK_STEPS,
    batch_size: int | None = None,
) -> EarlyExitResult:
    """Inference of x [T, N, ...] with per-sample early exit, compaction and refilling.

    At most ``batch_size`` samples run at once (default: all N). The network runs in chunks
    of ``chunk_steps`` steps, multi-step from the state the chunk before left (longer where
    every sample in it is short of ``min_steps``); after every step of a chunk
    the rule decides which samples exit there, and they keep that step's mean output and
    step count. Between chunks the exited samples are dropped from the state
    (``index_select``) and waiting samples join from rest in their place (streaming), so
    every chunk runs on a full batch until the waiting samples run out; samples in a chunk
    may then be at different steps. Exits and outputs are those of deciding after every
    single step; a sample computes at most ``chunk_steps - 1`` steps past its exit.

    Where the chip is re-read every step, chunks are single steps and samples join only an
    empty batch (all at the same step, for the step's read); where forward hooks observe the
    network (energy counting), every step is a single-step call of its own, exactly as a
    chip runs it (no step past an exit), also batch by batch.

    The crossbars are read as the network reads them for a sequence
    (:meth:`~prime.snn.network.SpikingNetwork.sequence_reads`), once for all of x.
    ``alpha`` is used when ``policy`` is a name. Puts the model in eval mode.
    """
    model.check_input(x)
    policy = get_policy(policy, alpha=alpha)
    T, N = x.shape[:2]
    _check_exit_args(threshold, min_steps, T)
    if not isinstance(chunk_steps, int) or chunk_steps < 1:
        raise PrimeError(f"chunk_steps must be a whole number >= 1, got {chunk_steps!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise PrimeError(f"batch_size must be a whole number >= 1 or None, got {batch_size!r}")
    capacity = N if batch_size is None else batch_size
    model.eval()
    reads = list(model.sequence_reads(T))  # all T, as a full-length run reads them
    stepwise = model.observed()
    streaming = not stepwise and all(r is reads[0] for r in reads)  # any step, any chunk
    state = model.initial_state()
    outputs = x.new_empty(N, model.num_classes, dtype=torch.get_default_dtype())
    steps = torch.full((N,), T, dtype=torch.int64, device=x.device)
    running = steps.new_empty(0)  # original indices of the running samples
    done_steps = steps.new_empty(0)  # steps each running sample has run
    total = outputs.new_zeros(0, model.num_classes)  # sum of the outputs so far
    waiting = 0  # the first sample not yet started
    while waiting < N or len(running):
        if waiting < N and len(running) < capacity and (streaming or not len(running)):
            joining = torch.arange(
                waiting, min(N, waiting + capacity - len(running)), device=x.device
            )
            waiting += len(joining)
            running = torch.cat([running, joining])
            done_steps = torch.cat([done_steps, done_steps.new_zeros(len(joining))])
            total = torch.cat([total, total.new_zeros(len(joining), model.num_classes)])
            state = [_from_rest(s, len(joining)) for s in state]
        first, last = int(done_steps.min()), int(done_steps.max())
        length = 1 if stepwise else max(chunk_steps, min_steps - last)
        k = _chunk_end(first, length, reads) - first
        at = (done_steps + torch.arange(k, device=x.device)[:, None]).clamp_(max=T - 1)
        frames = x[at, running]  # [k, running, ...]: each sample's next k frames (past T: T's)
        if stepwise:
            out, state = model.step(frames[0], state, reads[first])
            chunk = out[None]
        else:
            chunk, state = model(frames, state=state, reads=reads[first])
        live = torch.ones(len(running), dtype=torch.bool, device=x.device)
        for i, out in enumerate(chunk):
            total = total + out
            step = done_steps + (i + 1)
            mean = total / step[:, None]
            done = live & (step >= min_steps) & ((step == T) | policy.done(mean, threshold))
            if done.any():
                outputs[running[done]] = mean[done]
                steps[running[done]] = step[done]
                live = live & ~done
        done_steps = done_steps + k
        if not live.all():
            still = live.nonzero().squeeze(1)
            running, done_steps, total = running[still], done_steps[still], total[still]
            state = [s.index_select(0, still) if s is not None else None for s in state]
    return EarlyExitResult(outputs, steps, T)


def _from_rest(state: torch.Tensor | None, joining: int) -> torch.Tensor | None:
    """A layer's state with ``joining`` samples at rest (zeros) appended; None (at rest, or
    no state) stays None."""
    if state is None:
        return None
    return torch.cat([state, state.new_zeros(joining, *state.shape[1:])])


def _chunk_end(t: int, length: int, reads: list[Any]) -> int:
    """The end of the chunk from step t: ``length`` steps, fewer where T ends or the chip is
    read anew (every step of a chunk goes through one read)."""
    end = t + 1
    while end < min(t + length, len(reads)) and reads[end] is reads[t]:
        end += 1
    return end


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
    totals = step_outputs.clone()
    for t in range(1, T):  # summed step by step as the controller sums (cumsum rounds apart)
        totals[t] += totals[t - 1]
    means = totals / counts
    done = policy.done(means.flatten(0, 1), threshold).view(T, B)
    done[: min_steps - 1] = False
    done[-1] = True
    steps = done.int().argmax(0) + 1  # first step that is done
    outputs = means[steps - 1, torch.arange(B)]
    return EarlyExitResult(outputs, steps.to(torch.int64), T)


def top1_accuracy(outputs: torch.Tensor, labels: torch.Tensor) -> float:
    return (outputs.argmax(1) == labels).double().mean().item()


def exit_summary(
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
        "accuracy": top1_accuracy(outputs, labels),
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
    """Run the early-exit controller over ``dataset``, ``batch_size`` samples at once.

    Samples are loaded ``STREAM_BATCHES`` batches at a time and streamed through the
    controller (waiting samples take the places of those that exit), so only the last
    chunks of each load run on a shrinking batch.

    Returns accuracy, mean_steps, per_class_steps (list, class index -> mean steps),
    steps_histogram (count of samples per step 1..T), load_saved, samples, timesteps.
    """
    policy = get_policy(policy, alpha=alpha)
    outputs, steps, labels = [], [], []
    loader, count = iterate_batches(
        dataset, batch_size * STREAM_BATCHES, device=module_device(model)
    )
    for x, y in progress_bar(loader, total=count, desc="early exit", leave=False, show=progress):
        result = run_early_exit(model, x, policy, threshold, min_steps, batch_size=batch_size)
        outputs.append(result.outputs)
        steps.append(result.steps)
        labels.append(y)
    summary = exit_summary(torch.cat(outputs), torch.cat(steps), torch.cat(labels), model.timesteps)
    return {"policy": policy_name(policy), "threshold": threshold, **summary}
