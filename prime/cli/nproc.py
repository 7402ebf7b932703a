"""``--nproc N``: run a command in N local processes, as ``torchrun --standalone`` would."""

from __future__ import annotations

import argparse

from prime.cli.common import MAX_PROCESSES, int_arg


def add_nproc(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--nproc",
        type=int_arg(1, MAX_PROCESSES),
        default=1,
        help="processes to start on this machine (a shortcut for torchrun --nproc_per_node)",
    )


def launch_command(args: argparse.Namespace) -> int:
    """Run ``args.run`` in ``args.nproc`` processes joined into one torch.distributed job."""
    from prime.runs.distributed import launch

    launch(args.nproc, args.run, argparse.Namespace(**{**vars(args), "nproc": 1}))
    return 0
