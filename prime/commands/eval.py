"""``prime eval RUN_DIR``: re-evaluate a trained run, optionally under read noise or on
another chip."""

from __future__ import annotations

import argparse
from pathlib import Path

from prime.commands.common import add_replay_arguments, add_threads, apply_threads


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run", description=__doc__)
    p.add_argument("run_dir", type=Path, help="a run directory written by prime train")
    p.add_argument(
        "--read-noise",
        type=float,
        default=0.0,
        help="multiplicative read noise σ per crossbar read (PRIME: 0.02)",
    )
    p.add_argument("--noise-seed", type=int, default=0, help="seed of the read noise")
    p.add_argument(
        "--chip-seed",
        type=int,
        help="re-form the conductances on another chip (same learned scores)",
    )
    p.add_argument("--mode", choices=("multi", "single"), default="multi")
    p.add_argument("--batch-size", type=int, default=128)
    add_replay_arguments(p, run_defaults=True)
    add_threads(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prime.evaluate import evaluate_run

    apply_threads(args)
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
