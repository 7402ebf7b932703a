"""Every figure docs/ quotes, with the run that produces it.

A figure is a sentence or table row of a doc page written as a template: its numbers are
format fields, filled from fresh runs; the doc's own text is found by the same template with
the numbers left open, so a doc whose numbers drifted is reported with both versions. The
figures of one doc that one producer makes form a :class:`Section`; each doc page has a
module here (``scripts/figures/<page>.py``) with its sections in ``SECTIONS``.

Sections come in groups (:data:`GROUPS`), by what it takes to produce them; ``cited`` ones
are numbers the docs take from papers or state as settings (nothing to run: their templates
have no fields). ``tests/test_doc_figures.py`` checks that every template is in its doc and
that every percentage and ratio in the docs belongs to a section, so a figure added to a doc
without its producer fails the tests. ``scripts/doc_figures.py`` runs the producers.
"""

from __future__ import annotations

import importlib
import json
import re
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
REFERENCE = ROOT.parent / "shared" / "reference"
SAMPLE_TRACE = ROOT / "hw_traces" / "rram-lognormal-512x512.h5"

#: what producing a group takes
GROUPS = {
    "quick": "runs on the built-in digits: minutes on one core",
    "reference": "runs on ../shared/reference (measured array, spoken digits, N-MNIST, the "
    "authors' checkpoint): minutes each; skipped where it is absent",
    "long": "reproductions on real data: hours on a CPU (the section's command)",
    "timing": "speeds, times and profiles printed by the bench script the section's command "
    "names: they depend on the machine and its load, so they are re-measured and shown, not "
    "compared",
    "cited": "figures taken from papers, settings the docs state, and past measurements the "
    "docs say cannot be rerun (a temporary patch): nothing to run",
}
#: the doc pages with figures, one module each (README.md is ``readme``)
PAGES = (
    "datasets",
    "devices",
    "distributed",
    "early_exit",
    "energy",
    "inpainting",
    "interop",
    "ir_drop",
    "performance",
    "periphery",
    "pruning",
    "readme",
    "reproduce",
    "robustness",
    "traces",
)

#: a number as the docs write it (also a θ such as 0.31, a count such as 287, −0.28, 1.568e+05)
NUMBER = r"[-−+]?\d[\d,]*(?:\.\d+)?(?:e[-+]\d+)?"
#: a percentage or a ratio (36×, 0.57 ×) in a doc; not a shape such as 2×34×34 or 512 × 512
FIGURE = re.compile(r"\d[\d.,]*\s?%|\d[\d.,]*\s?×(?!\s?\d)")


@dataclass(frozen=True)
class Section:
    """The figures of one doc page that one producer makes.

    ``templates`` are sentences or table rows of the page with their numbers as format
    fields (whitespace as in the doc does not matter); ``produce(work)`` returns the
    fields' values from fresh runs in the folder ``work`` (None for ``cited`` sections, and
    for ``timing`` ones whose bench prints no file to read); ``command`` says how a reader
    makes the figures by hand (for ``timing``, the bench command that prints them)."""

    doc: str
    name: str
    group: str
    templates: tuple[str, ...]
    produce: Callable[[Path], dict[str, Any]] | None = None
    command: str = ""

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"section {self.name!r}: unknown group {self.group!r}")
        if self.group == "cited" and self.produce is not None:
            raise ValueError(f"section {self.name!r}: a cited section has nothing to produce")
        if self.group not in ("cited", "timing") and self.produce is None:
            raise ValueError(f"section {self.name!r}: a producer is needed unless cited or timing")
        if self.group == "timing" and not self.command:
            raise ValueError(f"section {self.name!r}: a timing section names its bench command")


def pattern(template: str) -> str:
    """A regular expression for the doc's version of ``template``: its literal text with any
    whitespace as any whitespace, and a :data:`NUMBER` group for each field."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(template):
        for piece in re.split(r"(\s+)", literal):
            parts.append(r"\s+" if piece.isspace() else re.escape(piece))
        parts.append(f"({NUMBER})" if field is not None else "")
    return "".join(parts)


def fields(template: str, values: dict[str, Any]) -> list[str]:
    """``template``'s fields formatted from ``values``, in order."""
    return [
        format(values[field], spec)
        for _, field, spec, _ in string.Formatter().parse(template)
        if field is not None
    ]


def rewrite(template: str, text: str, values: dict[str, Any]) -> str:
    """``text`` with the numbers of ``template``'s sentence replaced by ``values`` (its line
    breaks kept); unchanged where the sentence is not found."""
    match = quoted(template, text)
    if match is None:
        return text
    for group, value in reversed(list(enumerate(fields(template, values), 1))):
        text = text[: match.start(group)] + value + text[match.end(group) :]
    return text


def quoted(template: str, text: str) -> re.Match[str] | None:
    """Where ``text`` (a doc) has ``template``'s sentence, whatever its numbers."""
    return re.search(pattern(template), text)


def spaced(text: str) -> str:
    """``text`` with every run of whitespace (line breaks too) one space."""
    return " ".join(text.split())


def doc_path(doc: str) -> Path:
    return ROOT / doc if doc == "README.md" else DOCS / doc


def sections() -> Iterator[Section]:
    """Every registered section, page by page."""
    for page in PAGES:
        yield from importlib.import_module(f"figures.{page}").SECTIONS


# -- helpers the producers share -------------------------------------------------------------


def run_prime(args: list[str]) -> None:
    """``prime ARGS`` in this process; SystemExit where it fails."""
    from prime.cli.main import main

    if main(args) != 0:
        raise SystemExit(f"prime {' '.join(args)} failed")


def train(work: Path, name: str, options: list[str]) -> Path:
    """The run folder of ``prime train OPTIONS`` in ``work/name`` (trained once, then
    reused)."""
    out = work / name
    if not (out / "metrics.json").is_file():
        run_prime(["train", *options, "--quiet", "--out", str(out)])
    return out


def train_accuracy(work: Path, name: str, options: list[str]) -> float:
    """Test accuracy (%) of ``prime train OPTIONS`` run into ``work/name``."""
    metrics = json.loads((train(work, name, options) / "metrics.json").read_text())
    return 100 * metrics["test_accuracy"]


def eval_report(work: Path, name: str, report: str, args: list[str]) -> list[dict[str, Any]]:
    """The levels of the ``prime eval ARGS`` report ``report`` (read_noise, age, stuck_cells),
    run into ``work/name`` once (a name reused with other ARGS is refused)."""
    out, asked = work / name, {"report": report, "args": args}
    recorded = out / "figure_args.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != asked:
        raise SystemExit(f"{out} holds another report than {asked}: give this one another name")
    if not (out / f"{report}.json").is_file():
        run_prime(["eval", *args, "--out", str(out)])
        recorded.write_text(json.dumps(asked))
    return json.loads((out / f"{report}.json").read_text())["levels"]


def signed(delta: float, digits: int = 2) -> str:
    """A difference as the docs write it: +0.67, −0.42 (a minus sign)."""
    return f"{delta:+.{digits}f}".replace("-", "−")


def percent_change(new: float, old: float, digits: int) -> str:
    """(new / old − 1) in % as the docs write it: −15.5, +60 (a minus sign)."""
    return signed(100 * (new / old - 1), digits)


def seed_delta(values: dict[str, Any], device: str, reference: str) -> str:
    """Mean over seeds 0 and 1 of ``device`` minus that of ``reference``, signed."""
    mean = (values[f"{device}0"] + values[f"{device}1"]) / 2
    return signed(mean - (values[f"{reference}0"] + values[f"{reference}1"]) / 2)


def python_output(args: list[str]) -> str:
    """The standard output of ``python ARGS``, with this process's torch thread count and this
    checkout on the path; SystemExit where it fails."""
    import os
    import subprocess
    import sys

    import torch

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    done = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"python {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def script_output(script: str, args: list[str]) -> str:
    """The standard output of ``python scripts/SCRIPT ARGS`` (:func:`python_output`)."""
    return python_output([str(ROOT / "scripts" / script), *args])
