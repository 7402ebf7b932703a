"""The ``prime`` command line. Each subcommand lives in ``prime.cli.<name>`` and
provides ``add_parser(subparsers)``, which registers a parser whose ``run`` default handles it.

Every failure ends in one line on stderr, ``prime <command>: error: <problem and fix>``:
PrimeError as it is, a foreign exception (torch, h5py, tonic, the OS) as its type and first
line; ``--debug`` or ``PRIME_DEBUG=1`` prints the traceback as well. A write beyond a file
size limit fails with an error instead of killing the process (SIGXFSZ is ignored).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback

from prime.cli.common import OneLineParser, add_import_argument, command_parsers, given_options
from prime.cli.config_file import apply_config_file, command_parser
from prime.core.errors import PrimeError
from prime.core.plugins import import_modules
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
    parser = OneLineParser(
        prog="prime",
        description="Spiking networks on random memristor arrays that learn their topology.",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument(
        "--debug", action="store_true", help="print the traceback of an error (or PRIME_DEBUG=1)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"prime.cli.{name}").add_parser(sub)
    for command in command_parsers(parser):
        if not any(isinstance(a, argparse._SubParsersAction) for a in command._actions):
            add_import_argument(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.given = given_options(build_parser(), argv)
    debug = args.debug or os.environ.get("PRIME_DEBUG", "") not in ("", "0")
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the size limit: EFBIG, not death
    keep_freed_memory()  # reuse freed tensor memory: multi-step training is faster
    try:
        if getattr(args, "config", None) is not None:
            apply_config_file(args, command_parser(parser, args.command))
        import_modules(args.imports)
        return int(args.run(args) or 0)
    except PrimeError as exc:
        return _fail(args.command, str(exc), debug)
    except KeyboardInterrupt:
        print(f"prime {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which closed early
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except MemoryError:
        return _fail(args.command, "out of memory: use a smaller --batch-size or dataset", debug)
    except Exception as exc:  # a foreign exception: one line, the traceback on request
        first = (str(exc).strip().splitlines() or [""])[0]
        message = f"{type(exc).__name__}: {first}" if first else type(exc).__name__
        if not debug:
            message += " (an unexpected error; rerun with --debug for the traceback)"
        return _fail(args.command, message, debug)


def _fail(command: str, message: str, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    print(f"prime {command}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


def _version() -> str:
    from prime.version import __version__

    return f"prime {__version__}"


if __name__ == "__main__":
    sys.exit(main())
