"""``--config FILE``: a command's options from a JSON or YAML file.

The file is one object whose keys name the command's options (``batch-size``,
``batch_size`` or ``--batch-size``) and whose values are what the command line takes, as
text or as JSON numbers and booleans (``true`` for a flag such as ``download``); the
device model and the periphery may also be given inline as objects (a device config, a
periphery's fields). Options given on the command line win over the file's. A run's
``run_config.json`` (written by ``prime train``) is such a file, so ``prime train --config
RUN/run_config.json --out NEW`` trains the run again.
"""

from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any

from prime.core.errors import PrimeError

#: options whose value may be an object in a config file
OBJECT_OPTIONS = ("device_model", "periphery")


def add_config_file_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="options from a JSON or YAML file (keys: option names such as epochs or "
        "batch-size); the command line wins; a run's run_config.json reruns it",
    )


def read_options(path: Path) -> dict[str, Any]:
    """The options object of a JSON or (with PyYAML installed) YAML file."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise PrimeError(f"cannot read the config file {path} ({exc.strerror})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise PrimeError(
                f"{path} is YAML, which needs PyYAML: pip install pyyaml, or write the "
                "options as JSON"
            ) from None
        try:
            options = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise PrimeError(f"{path} is not valid YAML ({' '.join(str(exc).split())})") from None
    else:
        try:
            options = json.loads(text)
        except ValueError as exc:
            raise PrimeError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(options, dict):
        raise PrimeError(f'{path} must hold one object of options, such as {{"epochs": 3}}')
    return options


def apply_config_file(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Set the options of ``args`` (parsed by ``parser``) that the command line did not give
    from the file ``args.config``; they count as given (``args.given``) from then on."""
    path: Path = args.config
    actions = {
        action.dest: action
        for action in parser._actions
        if action.option_strings and action.dest not in ("help", "config")
    }
    given: frozenset[str] = getattr(args, "given", frozenset())
    from_file = set()
    for key, value in read_options(path).items():
        dest = str(key).lstrip("-").replace("-", "_")
        if dest not in actions:
            close = difflib.get_close_matches(dest, actions, n=1)
            hint = f"did you mean {close[0].replace('_', '-')}?" if close else "see --help"
            raise PrimeError(f"{path}: unknown option {key!r} for this command ({hint})")
        if dest not in given:  # the command line wins
            setattr(args, dest, _value(actions[dest], value, f"{path}: {key}"))
        from_file.add(dest)
    args.given = given | from_file


def _value(action: argparse.Action, value: Any, where: str) -> Any:
    """``value`` from a file converted as argparse converts the option's text."""
    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise PrimeError(f"{where} is a flag: give true or false, got {value!r}")
        return value
    if value is None:
        return None
    if isinstance(value, dict) and action.dest in OBJECT_OPTIONS:
        return value
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PrimeError(f"{where} takes a value as on the command line, got {value!r}")
    try:
        converted = action.type(str(value)) if callable(action.type) else str(value)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        raise PrimeError(f"{where}: {exc}") from None
    if action.choices is not None and converted not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise PrimeError(f"{where}: {converted!r} is not one of {choices}")
    return converted


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``command`` of the ``prime`` parser."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[command]
    raise PrimeError(f"prime has no command {command!r}")
