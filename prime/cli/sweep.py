"""``prime sweep --chips K``: learn K masks, each on its own random chip, and report the
accuracy's spread across chips (mean, std, min, max; CSV and PNG)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prime.cli.common import (
    add_compute_arguments,
    add_quiet_argument,
    apply_compute_arguments,
    int_arg,
)
from prime.cli.nproc import add_nproc, launch_command
from prime.cli.train import add_config_arguments, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train one mask per chip on K random chips; accuracy across chips",
        description=__doc__,
    )
    p.add_argument("--chips", type=int_arg(1), default=4, help="number of chips K (default 4)")
    p.add_argument("--out", type=Path, help="sweep folder (default: runs/sweep-<model>-seed<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --out")
    add_config_arguments(p)
    add_quiet_argument(p)
    add_nproc(p)
    add_compute_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prime.core.errors import PrimeError
    from prime.runs.distributed import process_group
    from prime.runs.sweep import sweep_chips

    if args.nproc > 1:
        return launch_command(args)
    apply_compute_arguments(args)
    if args.resume and args.out is None:
        raise PrimeError("--resume needs --out SWEEP_DIR: the sweep to continue")
    if args.resume:
        config, out = None, args.out
    else:
        config = config_from_args(args)
        out = args.out or Path("runs") / f"sweep-{config.model_name}-seed{config.seed}"
    with process_group() as ranks:
        summary = sweep_chips(
            config, args.chips, out, args.resume, progress=not args.quiet, device=args.device
        )
    if not ranks.is_main:
        return 0
    stats = summary["test_accuracy"]
    print(
        f"{summary['model']} on {summary['dataset']}, {summary['chips']} chips on "
        f"{summary['ranks']} process(es): test accuracy {100 * stats['mean']:.2f} ± "
        f"{100 * stats['std']:.2f} % (min {100 * stats['min']:.2f}, max "
        f"{100 * stats['max']:.2f}) -> {out}/sweep.csv, sweep.png"
    )
    return 0
