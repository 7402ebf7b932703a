"""Early-exit benchmark: does skipping timesteps save wall-clock time?

Measures, in one process, on the same model and the same samples (preloaded), at each of
``--threads``:

* samples/s of full-T inference, multi-step (the fastest full-length path) and single-step,
* samples/s of early-exit inference (``prime.inference.early_exit.run_early_exit``) for each
  of ``--chunk-steps`` (steps run multi-step between compactions; 1: one step per call):
  streamed (all samples in one call, at most ``--batch-size`` at once, waiting samples
  taking the places of those that exit; the headline) and batch by batch (each batch on
  its own, shrinking as its samples exit),
* the ideal speedup T / mean steps and the speedups over full-T multi-step (the headline;
  goal: >= 0.8 x ideal) and over full-T single-step,
* the exits against the per-step rule (``exit_from_trajectory`` on the full-T single-step
  outputs): equal steps, and how far the outputs at exit differ (batch-size rounding),
* the cost of one single-step call per batch size (ms).

Implementations are timed round-robin, one pass over all the samples each in turn (load
from other processes hits all alike); figures are medians over ``--repeats`` passes. θ is
``--threshold`` or calibrated on the validation split for ``--target-drop`` percentage
points (default 0.5).

    python scripts/bench_early_exit.py runs/digits --json bench_early_exit.json
    python scripts/bench_early_exit.py --reference ../shared/reference/prime/classification.pt \\
        --nmnist ../shared/reference/nmnist --data-root /tmp/prime-data

The second form times the PRIME authors' ``nmnist-conv`` checkpoint on every recording of
the N-MNIST folder (all splits), θ calibrated on its validation split.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from prime.core.io import write_json
from prime.data import DataSplits, iterate_batches
from prime.data.nmnist import load_nmnist
from prime.inference.early_exit import (
    CHUNK_STEPS,
    calibrate_threshold,
    exit_from_trajectory,
    run_early_exit,
    validation_split,
)
from prime.runs.config import TrainConfig
from prime.runs.rundir import load_data, load_run
from prime.snn.network import SpikingNetwork
from prime.snn.reference import load_prime_reference


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


def load_model(args: argparse.Namespace) -> tuple[SpikingNetwork, str, Dataset, DataSplits, int]:
    """(model, its name, the timed samples, the data's splits, the calibration seed)."""
    if args.reference is None:
        model, payload = load_run(args.run_dir)
        config = TrainConfig(**payload["train_config"])
        data = load_data(config)
        return model, f"{config.model_name} ({args.run_dir})", data.test, data, config.seed
    model = load_prime_reference(args.reference)
    options = {"data_path": str(args.nmnist), "val_fraction": 0.2}
    if args.data_root is not None:
        options["data_root"] = str(args.data_root)
    data = load_nmnist(model.timesteps, **options)
    everything = ConcatDataset([d for d in (data.train, data.val, data.test) if d is not None])
    return model, f"nmnist-conv, authors' checkpoint {args.reference}", everything, data, 0


def measure(
    model: SpikingNetwork,
    batches: list[torch.Tensor],
    args: argparse.Namespace,
    threshold: float,
) -> dict[str, Any]:
    """Every figure at the current thread count."""
    everything = torch.cat(batches, 1)
    samples = everything.shape[1]
    T = model.timesteps
    steps: dict[int, torch.Tensor] = {}  # chunk steps -> steps used, streamed

    def streamed(chunk: int) -> Callable[[], None]:
        def run() -> None:
            result = run_early_exit(
                model,
                everything,
                args.policy,
                threshold,
                args.min_steps,
                chunk_steps=chunk,
                batch_size=args.batch_size,
            )
            steps[chunk] = result.steps

        return run

    def per_batch(chunk: int) -> Callable[[], None]:
        def run() -> None:
            for x in batches:
                run_early_exit(model, x, args.policy, threshold, args.min_steps, chunk_steps=chunk)

        return run

    runs: dict[str, Callable[[], object]] = {
        "full-multi": lambda: [model.logits(x, "multi") for x in batches],
        "full-single": lambda: [model.logits(x, "single") for x in batches],
    }
    runs |= {f"early-exit k={k}": streamed(k) for k in args.chunk_steps}
    runs |= {f"per batch k={k}": per_batch(k) for k in args.chunk_steps}
    times: dict[str, list[float]] = {name: [] for name in runs}
    with torch.no_grad():
        for fn in runs.values():  # warm-up
            fn()
        for _ in range(args.repeats):  # one pass over the samples each, in turn
            for name, fn in runs.items():
                times[name].append(timed(fn))
        sizes = [s for s in (128, 64, 32, 16, 8, 4, 2, 1) if s <= batches[0].shape[1]]
        per_step = step_ms(model, batches[0], sizes, args.repeats)
        per_step_rule = exits_against_per_step_rule(model, batches, args, threshold)

    rate = {name: samples / statistics.median(t) for name, t in times.items()}
    mean_steps = steps[args.chunk_steps[0]].double().mean().item()
    ideal = T / mean_steps
    chunks = {}
    for k in args.chunk_steps:
        chunks[k] = {}
        for way in ("early-exit", "per batch"):
            name = f"{way} k={k}"
            multi = rate[name] / rate["full-multi"]
            chunks[k][way] = {
                "samples_per_s": rate[name],
                "speedup_vs_full_multi": multi,
                "speedup_vs_full_single": rate[name] / rate["full-single"],
                "ratio_to_ideal": multi / ideal,
                "speedup_vs_full_multi_per_pass": sorted(
                    f / e for f, e in zip(times["full-multi"], times[name], strict=True)
                ),
                "goal_met": multi >= 0.8 * ideal,
            }
    return {
        "threads": torch.get_num_threads(),
        "mean_steps": mean_steps,
        "load_saved": 1 - mean_steps / T,
        "ideal_speedup": ideal,
        "samples_per_s": rate,
        "seconds_per_pass": times,
        "chunk_steps": chunks,
        "per_step_rule": per_step_rule,
        "step_ms_by_batch": per_step,
    }


def exits_against_per_step_rule(
    model: SpikingNetwork, batches: list[torch.Tensor], args: argparse.Namespace, threshold: float
) -> dict[str, Any]:
    """Every chunk size, streamed and batch by batch, against the per-step rule on the full-T
    single-step outputs (``exit_from_trajectory``): whether the exit steps are equal, the
    largest difference of the outputs at exit, and the samples whose outputs differ at all."""
    rules = [
        exit_from_trajectory(model(x, "single"), args.policy, threshold, args.min_steps)
        for x in batches
    ]
    rule_steps = torch.cat([r.steps for r in rules])
    rule_outputs = torch.cat([r.outputs for r in rules])
    everything = torch.cat(batches, 1)
    exits = dict(policy=args.policy, threshold=threshold, min_steps=args.min_steps)
    equal, difference, differ = True, 0.0, 0
    for k in args.chunk_steps:
        per_batch = [run_early_exit(model, x, **exits, chunk_steps=k) for x in batches]
        streamed = run_early_exit(
            model, everything, **exits, chunk_steps=k, batch_size=args.batch_size
        )
        for steps, outputs in (
            (torch.cat([r.steps for r in per_batch]), torch.cat([r.outputs for r in per_batch])),
            (streamed.steps, streamed.outputs),
        ):
            equal &= torch.equal(steps, rule_steps)
            gap = (outputs - rule_outputs).abs()
            difference = max(difference, gap.max().item())
            differ += int((gap > 0).any(1).sum())
    return {"steps_equal": equal, "max_output_difference": difference, "outputs_differ": differ}


def report(figures: dict[str, Any], repeats: int) -> None:
    rule = figures["per_step_rule"]
    print(
        f"  {figures['threads']} threads: mean steps {figures['mean_steps']:.2f} "
        f"(load saved {100 * figures['load_saved']:.1f} %), ideal T / mean steps "
        f"{figures['ideal_speedup']:.2f}x"
    )
    print(
        f"    against the per-step rule (every k): exit steps equal {rule['steps_equal']}, "
        f"outputs at exit differ by at most {rule['max_output_difference']:.3g} "
        f"({rule['outputs_differ']} sample outputs not bit-equal)"
    )
    for name, value in figures["samples_per_s"].items():
        print(f"    {name:<16} {value:8.1f} samples/s (median of {repeats})")
    for k, ways in figures["chunk_steps"].items():
        for way, chunk in ways.items():
            print(
                f"    {way} k={k}: {chunk['speedup_vs_full_multi']:.2f}x over full-T multi-step "
                f"(ratio to ideal {chunk['ratio_to_ideal']:.2f}, goal >= 0.8: "
                f"{'met' if chunk['goal_met'] else 'missed'}; per pass "
                f"{', '.join(f'{r:.2f}' for r in chunk['speedup_vs_full_multi_per_pass'])}), "
                f"{chunk['speedup_vs_full_single']:.2f}x over full-T single-step"
            )
    print(
        "    one single step, ms per batch size: "
        + ", ".join(f"{s}: {ms:.2f}" for s, ms in figures["step_ms_by_batch"].items())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?", default=Path("runs/digits"))
    parser.add_argument("--reference", type=Path, help="the authors' checkpoint instead of a run")
    parser.add_argument("--nmnist", type=Path, help="N-MNIST folder for --reference")
    parser.add_argument("--data-root", type=Path, help="frame cache (default $PRIME_DATA)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--threshold", type=float, help="exit threshold θ")
    choice.add_argument("--target-drop", type=float, default=0.5, help="calibrate θ (points)")
    parser.add_argument("--policy", default="prime", choices=("prime", "margin", "entropy"))
    parser.add_argument("--min-steps", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per figure")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads")
    parser.add_argument(
        "--chunk-steps", type=int, nargs="+", default=[CHUNK_STEPS], help="early exit's chunks"
    )
    parser.add_argument("--json", type=Path, help="write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.reference is not None and args.nmnist is None:
        parser.error("--reference needs --nmnist (the folder of the recordings)")
    torch.manual_seed(0)

    model, name, samples, data, seed = load_model(args)
    threshold = args.threshold
    if threshold is None:
        val = validation_split(data, seed)
        threshold = calibrate_threshold(
            model, val, args.target_drop, args.policy, min_steps=args.min_steps
        )["threshold"]
    loader, _ = iterate_batches(samples, args.batch_size)
    batches = [x for x, _ in loader]
    count = sum(x.shape[1] for x in batches)
    print(
        f"{name}: {count} samples, batch {args.batch_size}, {args.policy} θ = {threshold:g}, "
        f"T = {model.timesteps}"
    )
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        results.append(measure(model, batches, args, threshold))
        report(results[-1], args.repeats)
    if args.json:
        setting = {"model": name, "samples": count, "batch_size": args.batch_size}
        setting |= {"policy": args.policy, "threshold": threshold, "min_steps": args.min_steps}
        write_json(args.json, {**setting, "timesteps": model.timesteps, "by_threads": results})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
