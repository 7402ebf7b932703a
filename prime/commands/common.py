"""Argument helpers shared by subcommands."""

from __future__ import annotations

import argparse


def scale_arg(text: str) -> float | str:
    """``--scale``: a number (1/µS) or ``fan-in``."""
    if text == "fan-in":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'fan-in', got {text!r}") from None


def add_threads(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, help="CPU threads for torch (default: all)")


def apply_threads(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
