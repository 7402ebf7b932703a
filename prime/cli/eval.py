"""``prime eval RUN_DIR``: re-evaluate a trained run, optionally under read noise or on
another chip."""

from __future__ import annotations

import argparse
from pathlib import Path

from prime.cli import inpaint
from prime.cli.common import add_compute_arguments, add_replay_arguments, apply_compute_arguments


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run", description=__doc__)
    p.add_argument("run_dir", type=Path, help="a run directory written by prime train")
    p.add_argument(
        "--read-noise",
        type=noise_levels_arg,
        default=[0.0],
        help="multiplicative read noise σ per crossbar read (PRIME: 0.02); several, comma "
        "separated (0,0.02,0.05), write a robustness report (docs/distributed.md)",
    )
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the read noise")
    p.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="evaluations per noise level, seeds --noise-seed, +1, ... (a robustness report)",
    )
    p.add_argument(
        "--chip-seed",
        type=int,
        help="re-form the conductances on another chip (same learned scores)",
    )
    p.add_argument("--mode", choices=("multi", "single"), default="multi")
    p.add_argument("--batch-size", type=int, default=128)
    add_replay_arguments(p, run_defaults=True)
    add_early_exit_arguments(p)
    inpaint.add_arguments(p)
    add_compute_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prime.runs.evaluation import evaluate_run

    apply_compute_arguments(args)
    if args.inpaint:
        return inpaint.run_eval(args)
    if len(args.read_noise) > 1 or args.repeats > 1:
        return run_read_noise(args)
    args.read_noise = args.read_noise[0]
    if args.early_exit:
        return run_early_exit(args)
    result = evaluate_run(
        args.run_dir,
        read_noise=args.read_noise,
        noise_seed=args.noise_seed,
        chip_seed=args.chip_seed,
        mode=args.mode,
        batch_size=args.batch_size,
        replay={k: getattr(args, k) for k in ("trace", "replay", "pruned", "tile")},
    )
    chip = f"chip seed {result['chip_seed']}"
    if result["trace"]:
        chip = f"trace {result['trace']}, {result['replay']} replay"
    print(
        f"{result['model']} on {result['dataset']} ({chip}, read noise σ "
        f"{result['read_noise']:g}): test accuracy {100 * result['accuracy']:.2f} % "
        f"over {result['samples']} samples"
    )
    return 0


def noise_levels_arg(text: str) -> list[float]:
    from prime.core.errors import PrimeError
    from prime.inference.robustness import parse_noise_levels

    try:
        return parse_noise_levels(text)
    except PrimeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_read_noise(args: argparse.Namespace) -> int:
    from prime.core.errors import PrimeError
    from prime.inference.robustness import read_noise_sweep, summarize, write_report
    from prime.runs.rundir import prepare_run

    if args.early_exit:
        raise PrimeError("--early-exit takes one --read-noise value and no --repeats")
    replay = {k: getattr(args, k) for k in ("trace", "replay", "pruned", "tile")}
    model, config, data = prepare_run(args.run_dir, args.chip_seed, replay)
    rows = read_noise_sweep(
        model,
        data.test,
        args.read_noise,
        args.repeats,
        seed=args.noise_seed,
        mode=args.mode,
        batch_size=args.batch_size,
        replay=config,
    )
    chip = f"trace {config.trace}" if config.trace else f"chip seed {model.config.chip_seed}"
    title = f"{config.model_name} on {config.dataset}, {chip}"
    paths = write_report(args.out or args.run_dir / "read-noise", rows, title)
    print(f"{title}: test accuracy under read noise ({len(data.test)} samples)")
    for s in summarize(rows):
        print(
            f"  σ {s['read_noise']:<6g} {100 * s['accuracy_mean']:6.2f} ± "
            f"{100 * s['accuracy_std']:.2f} % (min {100 * s['accuracy_min']:.2f}, max "
            f"{100 * s['accuracy_max']:.2f}, {s['repeats']} repeats)"
        )
    print(f"wrote {', '.join(p.name for p in paths)} to {paths[0].parent}")
    return 0


def add_early_exit_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("early exit (docs/early_exit.md)")
    g.add_argument(
        "--early-exit",
        action="store_true",
        help="stop each sample's timesteps once its output is confident; report accuracy, "
        "steps and load saved, and write a threshold sweep (CSV, PNG)",
    )
    choice = g.add_mutually_exclusive_group()
    choice.add_argument("--threshold", type=float, help="exit threshold θ (default 0.8)")
    choice.add_argument(
        "--target-drop",
        type=float,
        metavar="PP",
        help="calibrate θ on a validation split for this accuracy drop (percentage points)",
    )
    g.add_argument("--policy", choices=("prime", "margin", "entropy"), default="prime")
    g.add_argument("--alpha", type=float, default=2.0, help="softmax temperature α (PRIME: 2)")
    g.add_argument("--min-steps", type=int, default=1, help="never exit before this step")
    g.add_argument(
        "--out",
        type=Path,
        help="folder for the report (default RUN_DIR/early-exit, or RUN_DIR/read-noise)",
    )


def run_early_exit(args: argparse.Namespace) -> int:
    from prime.runs.evaluation import early_exit_run

    r = early_exit_run(
        args.run_dir,
        args.out,
        read_noise=args.read_noise,
        noise_seed=args.noise_seed,
        chip_seed=args.chip_seed,
        replay={k: getattr(args, k) for k in ("trace", "replay", "pruned", "tile")},
        policy=args.policy,
        threshold=args.threshold,
        target_drop_pp=args.target_drop,
        min_steps=args.min_steps,
        alpha=args.alpha,
        batch_size=args.batch_size,
    )
    how = f"θ = {r['threshold']:g}"
    if "calibration" in r:
        c = r["calibration"]
        how += (
            f", calibrated on {c['val_samples']} validation samples for a "
            f"{c['target_drop_pp']:g}-point drop (validation {100 * c['accuracy']:.2f} % vs "
            f"{100 * c['full_accuracy']:.2f} % at full T)"
        )
    per_class = ", ".join(
        f"{c}: {s:.2f}" for c, s in enumerate(r["per_class_steps"]) if s is not None
    )
    print(
        f"{r['model']} on {r['dataset']} ({r['chip']}, read noise σ {r['read_noise']:g}), "
        f"early exit ({r['policy']} policy, α {r['alpha']:g}, {how}, min steps "
        f"{r['min_steps']}):\n"
        f"test accuracy {100 * r['accuracy']:.2f} % (full T {100 * r['full_accuracy']:.2f} %) "
        f"over {r['samples']} samples; mean steps {r['mean_steps']:.2f} of "
        f"{r['timesteps']}, load saved {100 * r['load_saved']:.1f} %\n"
        f"mean steps per class: {per_class}\n"
        f"wrote sweep.csv, accuracy_vs_steps.png, steps_histogram.png, early_exit.json "
        f"to {r['out_dir']}"
    )
    return 0
