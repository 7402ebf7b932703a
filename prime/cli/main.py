"""The ``prime`` command line. Each subcommand lives in ``prime.cli.<name>`` and
provides ``add_parser(subparsers)``, which registers a parser whose ``run`` default handles it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from prime.core.errors import PrimeError
from prime.kernels.memory import keep_freed_memory

#: subcommand modules under prime.cli, in the order ``prime --help`` lists them
COMMANDS = (
    "train",
    "eval",
    "models",
    "trace",
    "bench",
    "datasets",
    "sweep",
    "reproduce",
    "export",
    "nir_import",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prime",
        description="Spiking networks on random memristor arrays that learn their topology.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"prime.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    keep_freed_memory()  # reuse freed tensor memory: multi-step training is faster
    try:
        return int(args.run(args) or 0)
    except PrimeError as exc:
        print(f"prime {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"prime {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _version() -> str:
    from prime.version import __version__

    return f"prime {__version__}"


if __name__ == "__main__":
    sys.exit(main())
