"""Early-exit benchmark: does skipping timesteps save wall-clock time?

Measures, in one process, on the same model and the same test samples (preloaded):

* samples/s of full-T inference, single-step (the path early exit drives) and multi-step,
* samples/s of early-exit inference (``prime.inference.early_exit.run_early_exit``, compaction on),
* the ideal speedup T / mean steps, the measured speedup over full-T single-step and their
  ratio (goal: >= 0.8),
* the cost of one single-step call per batch size (ms), which bounds what compaction can
  save: when few samples remain, the per-step overhead dominates.

Implementations are timed round-robin, batch by batch (load from other processes hits all
alike); figures are medians over ``--repeats`` passes over the test set. θ is
``--threshold`` or calibrated on the validation split for ``--target-drop`` percentage
points (default 0.5).

    python scripts/bench_early_exit.py runs/digits --threads 1 --json bench_early_exit.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from prime.core.io import write_json
from prime.data import iterate_batches
from prime.inference.early_exit import calibrate_threshold, run_early_exit, validation_split
from prime.runs.config import TrainConfig
from prime.runs.rundir import load_data, load_run


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def step_ms(model, frames: torch.Tensor, sizes: list[int], repeats: int) -> dict[int, float]:
    """Median ms of one ``model.step`` (all T steps, averaged) per batch size."""
    reads = model.crossbar_reads()
    result = {}
    for size in sizes:
        x = frames[:, :size]

        def run(x=x) -> None:
            state = model.initial_state()
            for frame in x:
                _, state = model.step(frame, state, reads)

        result[size] = 1e3 * statistics.median(timed(run) for _ in range(repeats)) / len(x)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?", default=Path("runs/digits"))
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--threshold", type=float, help="exit threshold θ")
    choice.add_argument("--target-drop", type=float, default=0.5, help="calibrate θ (points)")
    parser.add_argument("--policy", default="prime", choices=("prime", "margin", "entropy"))
    parser.add_argument("--min-steps", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per figure")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: all)")
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    model, payload = load_run(args.run_dir)
    config = TrainConfig(**payload["train_config"])
    data = load_data(config)
    threshold = args.threshold
    if threshold is None:
        val = validation_split(data, config.seed)
        threshold = calibrate_threshold(
            model, val, args.target_drop, args.policy, min_steps=args.min_steps
        )["threshold"]
    loader, _ = iterate_batches(data.test, args.batch_size)
    batches = [x for x, _ in loader]
    samples = sum(x.shape[1] for x in batches)
    T = model.timesteps

    steps: dict[int, torch.Tensor] = {}  # batch index -> steps used per sample

    def early_exit(i: int) -> None:
        result = run_early_exit(model, batches[i], args.policy, threshold, args.min_steps)
        steps[i] = result.steps

    runs = {
        "full-single": lambda i: model.logits(batches[i], "single"),
        "full-multi": lambda i: model.logits(batches[i], "multi"),
        "early-exit": early_exit,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn(0)
        for _ in range(args.repeats):  # one pass over the test set per implementation
            spent = dict.fromkeys(runs, 0.0)
            for i in range(len(batches)):  # interleaved batch by batch
                for name, fn in runs.items():
                    spent[name] += timed(lambda fn=fn, i=i: fn(i))
            for name in runs:
                times[name].append(spent[name])
        sizes = [s for s in (128, 64, 32, 16, 8, 4, 2, 1) if s <= batches[0].shape[1]]
        per_step = step_ms(model, batches[0], sizes, args.repeats)

    rate = {name: samples / statistics.median(t) for name, t in times.items()}
    mean_steps = torch.cat(list(steps.values())).double().mean().item()
    ideal = T / mean_steps
    speedup = rate["early-exit"] / rate["full-single"]
    paired = sorted(f / e for f, e in zip(times["full-single"], times["early-exit"], strict=True))
    figures = {
        "run": str(args.run_dir),
        "samples": samples,
        "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "policy": args.policy,
        "threshold": threshold,
        "min_steps": args.min_steps,
        "timesteps": T,
        "mean_steps": mean_steps,
        "load_saved": 1 - mean_steps / T,
        "samples_per_s": rate,
        "seconds_per_pass": times,
        "ideal_speedup": ideal,
        "speedup_vs_full_single": speedup,
        "speedup_per_pass": paired,
        "speedup_vs_full_multi": rate["early-exit"] / rate["full-multi"],
        "speedup_over_ideal": speedup / ideal,
        "goal_met": speedup >= 0.8 * ideal,
        "step_ms_by_batch": per_step,
    }
    print(
        f"{samples} test samples of {config.dataset}, batch {args.batch_size}, "
        f"{torch.get_num_threads()} threads, {args.policy} θ = {threshold:g}: "
        f"mean steps {mean_steps:.2f} of {T} (load saved {100 * (1 - mean_steps / T):.1f} %)"
    )
    for name, value in rate.items():
        print(f"  {name:<12} {value:8.1f} samples/s (median of {args.repeats})")
    print(
        f"  speedup over full-T single-step {speedup:.2f}x, ideal T / mean steps {ideal:.2f}x, "
        f"ratio {speedup / ideal:.2f} (goal >= 0.8: {'met' if figures['goal_met'] else 'missed'})"
        f"; over full-T multi-step {figures['speedup_vs_full_multi']:.2f}x"
    )
    print(f"  speedup per pass (same pass, sorted): {', '.join(f'{r:.2f}' for r in paired)}")
    print(
        "  one step, ms per batch size: "
        + ", ".join(f"{s}: {ms:.2f}" for s, ms in per_step.items())
    )
    if args.json:
        write_json(args.json, figures)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
