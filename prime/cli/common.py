"""Argument helpers shared by subcommands: the one-line parser, checked numbers, which
options were given, and the options that only apply together with another."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from prime.core.errors import PrimeError
from prime.core.resources import MAX_SEED

#: most processes ``--nproc`` starts on one machine
MAX_PROCESSES = 64


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line naming the command and its ``--help``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def given_options(parser: argparse.ArgumentParser, argv: list[str]) -> frozenset[str]:
    """The destinations of the options ``argv`` gives explicitly (defaults left out).

    ``parser`` is a fresh parser of the same command line; its defaults are removed here.
    """
    for p in command_parsers(parser):
        p._defaults.clear()
        for action in p._actions:
            if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                action.default = argparse.SUPPRESS
    return frozenset(vars(parser.parse_args(argv)))


def command_parsers(parser: argparse.ArgumentParser) -> Iterable[argparse.ArgumentParser]:
    """``parser`` and the parsers of its subcommands, at every depth."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from command_parsers(sub)


def add_import_argument(parser: argparse.ArgumentParser) -> None:
    """``--import MODULE`` (repeatable): user modules that register models, devices,
    datasets or policies (:func:`prime.core.plugins.import_modules`); ``prime train``
    records them in the run, so later commands on it import them by themselves."""
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module of your own that registers models, devices, datasets or "
        "policies (repeatable; a run records them)",
    )


def int_arg(low: int = 1, high: int | None = None, limit: str = "") -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high] (``limit`` says why ``high``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        if high is not None and value > high:
            why = f" ({limit})" if limit else ""
            raise argparse.ArgumentTypeError(f"{value} is above the limit of {high:,}{why}")
        return value

    return parse


def float_arg(low: float = 0.0, high: float = math.inf) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high]."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            bounds = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must be a finite number {bounds}, got {text}")
        return value

    return parse


#: ``--seed`` and the other seeds: whole numbers in [0, 2**63 - 1]
seed_arg = int_arg(0, MAX_SEED, "seeds are 63-bit")


def require_with(args: argparse.Namespace, rules: dict[str, tuple[str, bool]]) -> None:
    """Refuse an option that only applies together with another: ``rules`` maps an option's
    destination to (the option it needs, whether that one is in effect)."""
    given: frozenset[str] = getattr(args, "given", frozenset())
    for dest, (needed, present) in rules.items():
        if dest in given and not present:
            flag = "--" + dest.replace("_", "-")
            raise PrimeError(f"{flag} applies only with {needed}: add {needed} or drop {flag}")


def given_settings(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    """The settings of a TrainConfig built from ``args`` that the command line gave
    explicitly: field -> value, and ``data.<option>``/``augment.<option>`` -> value."""
    given: frozenset[str] = getattr(args, "given", frozenset())
    settings = {name: value for name, value in vars(config).items() if name in given}
    for group in ("data", "augment"):
        for option, value in getattr(config, group).items():
            if option in given:
                settings[f"{group}.{option}"] = value
    return settings


def require_replay(args: argparse.Namespace) -> None:
    """``--replay/--pruned/--tile`` set how a chip trace is replayed: refused without one."""
    trace = bool(getattr(args, "trace", None))
    require_with(args, {name: ("--trace FILE", trace) for name in ("replay", "pruned", "tile")})


def scale_arg(text: str) -> float | str:
    """``--scale``: a number (1/µS), ``matched`` or ``fan-in``."""
    if text in ("matched", "fan-in"):
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, 'matched' or 'fan-in', got {text!r}"
        ) from None


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """``--quiet``: no progress bars (drawn on a terminal only in any case); the one-line
    summaries (of every epoch, of every chip) stay."""
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars (drawn only on a terminal anyway); summary lines stay",
    )


def add_compute_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` (the torch device the network runs on) and ``--threads``."""
    parser.add_argument(
        "--device",
        type=compute_device_arg,
        default="cpu",
        help="torch device to run on: cpu (default), cuda or cuda:N; the memristor model is "
        "--device-model",
    )
    cores = os.cpu_count() or 1
    parser.add_argument(
        "--threads",
        type=int_arg(1, cores, f"this machine has {cores} CPU cores"),
        help="CPU threads for torch (default: all)",
    )


def apply_compute_arguments(args: argparse.Namespace) -> None:
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)


def compute_device_arg(text: str) -> str:
    """``--device``: a torch device this machine has (``cpu``, ``cuda``, ``cuda:N``;
    :func:`prime.core.device.resolve_device`).

    A memristor device model here (the flag's meaning before ``--device-model``) is refused
    with the new flag's name.
    """
    from prime.core.device import resolve_device
    from prime.hardware.devices import DEVICES

    if text in DEVICES.names() or text.endswith(".json"):
        raise argparse.ArgumentTypeError(
            f"--device is the torch device (cpu, cuda, cuda:N); for the memristor device model "
            f"use --device-model {text}"
        )
    try:
        return str(resolve_device(text))
    except PrimeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def device_arg(text: str | dict) -> str | dict:
    """``--device-model``/``--preset``: a device preset name, or a JSON file holding a device config
    (as ``prime trace fit --save`` writes); a config file may give the device config inline."""
    from prime.hardware.devices import device_from_config

    if isinstance(text, dict):
        device_from_config(text)  # raise now on unknown presets or parameters
        return text
    if not text.endswith(".json"):
        return text
    import json
    from pathlib import Path

    path = Path(text)
    if not path.is_file():
        raise PrimeError(f"no such device file: {path}")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PrimeError(f"{path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise PrimeError(f"cannot read {path} ({exc.strerror})") from None
    if not isinstance(config, dict) or "name" not in config:
        raise PrimeError(f"{path} must hold a device config object with a 'name' field")
    try:
        device_from_config(config)  # raise now on unknown presets or parameters
    except PrimeError as exc:
        raise PrimeError(f"{path}: {exc}") from None
    return config


def tile_arg(text: str) -> tuple[int, int]:
    """``--tile ROWSxCOLS``, e.g. 512x512."""
    try:
        rows, cols = (int(part) for part in text.lower().split("x"))
    except ValueError:
        message = f"expected ROWSxCOLS such as 512x512, got {text!r}"
        raise argparse.ArgumentTypeError(message) from None
    return rows, cols


def tiles_arg(text: str) -> list[tuple[int, int]]:
    """``--tile ROWSxCOLS[,ROWSxCOLS...]``, e.g. 512x512,128x128."""
    tiles = [tile_arg(part) for part in text.split(",") if part.strip()]
    if not tiles:
        raise argparse.ArgumentTypeError("expected at least one tile ROWSxCOLS such as 512x512")
    return tiles


def add_replay_arguments(p: argparse.ArgumentParser, run_defaults: bool = False) -> None:
    """``--trace/--replay/--pruned/--tile`` (prime.hardware.replay); with ``run_defaults``
    they default to None, meaning "as the run was trained", and ``--tile`` takes several
    tiles for an IR-drop sweep (``prime eval --r-wire``)."""
    from prime.hardware.replay import DEFAULT_TILE, PRUNED_MODES, REPLAY_MODES

    default = (lambda value: None) if run_defaults else (lambda value: value)
    p.add_argument("--trace", help="chip trace (HDF5): run on its measured conductances")
    p.add_argument(
        "--replay",
        choices=REPLAY_MODES,
        default=default("static"),
        help="which read: one (static), the next per batch, the next per evaluation batch "
        "and read 0 in training (per-test-batch, the pruning paper), or per timestep",
    )
    p.add_argument(
        "--pruned",
        choices=PRUNED_MODES,
        default=default("zero"),
        help="pruned weights: ideal 0, the reset-state cells' G+ - G- (reset), or reset G+ "
        "- read G- (reset-positive, the pruning paper)",
    )
    if run_defaults:
        p.add_argument(
            "--tile",
            type=tiles_arg,
            help="crossbar tile ROWSxCOLS the layers are placed on (default: the run's); "
            "with --r-wire, several (512x512,128x128): the partitions of the IR-drop sweep",
        )
    else:
        p.add_argument(
            "--tile",
            type=tile_arg,
            default=DEFAULT_TILE,
            help="crossbar tile ROWSxCOLS the layers are placed on (default 512x512)",
        )


def fractions_arg(text: str) -> list[float]:
    """``--stuck-off``/``--stuck-on``: fractions in [0, 1], comma separated."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(not 0 <= v <= 1 for v in values):
        raise argparse.ArgumentTypeError(
            f"expected fractions of cells in [0, 1] separated by commas (e.g. 0,0.01,0.05), "
            f"got {text!r}"
        )
    return values


def add_fault_arguments(p: argparse._ActionsContainer, several: bool) -> None:
    """``--stuck-off/--stuck-on/--stuck-on-us/--fault-seed`` (prime.hardware.faults); with
    ``several`` the fractions take comma separated lists (a sweep)."""
    kind = fractions_arg if several else float
    lists = " (several, comma separated: a sweep)" if several else ""
    p.add_argument(
        "--stuck-off",
        type=kind,
        default=[0.0] if several else 0.0,
        help=f"fraction of cells stuck at the unformed state, 0 µS{lists}",
    )
    p.add_argument(
        "--stuck-on",
        type=kind,
        default=[0.0] if several else 0.0,
        help=f"fraction of cells stuck at a high conductance{lists}",
    )
    p.add_argument(
        "--stuck-on-us",
        type=float,
        help="the stuck-on conductance in µS (default: the chip's largest cell)",
    )
    p.add_argument("--fault-seed", type=seed_arg, default=0, help="seed of which cells are stuck")
