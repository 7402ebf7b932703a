"""Regenerate the figures docs/ quotes, print each next to what the doc says, and exit 1 if
one differs (or a quoted sentence is no longer in its doc).

    python scripts/doc_figures.py [--group quick,reference] [--doc periphery.md]
                                  [--work /tmp/doc-figures] [--threads 1] [--list]

The figures and their producers are registered page by page in ``scripts/figures/``
(:mod:`figures`); runs are kept in ``--work`` and reused, so a second call only compares.
By default the ``quick`` and ``reference`` groups run (``reference`` where
../shared/reference is present); ``--group long`` or ``timing`` run the reproductions and
benchmarks (hours; timings vary with the machine). ``--list`` prints every section, its
group and its command, and runs nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from figures import GROUPS, REFERENCE, Section, doc_path, quoted, sections, spaced


def check(section: Section, work: Path) -> int:
    """Produce ``section``'s figures in ``work``, print them beside the doc's; the number of
    figures that differ."""
    values = section.produce(work) if section.produce is not None else {}
    text = doc_path(section.doc).read_text()
    mismatches = 0
    for template in section.templates:
        match = quoted(template, text)
        doc = spaced(match.group(0)) if match else "(sentence not found)"
        measured = spaced(template.format(**values))
        mismatches += doc != measured
        print(f"{'ok  ' if doc == measured else 'DIFF'} docs/{section.doc}: {section.name}")
        if doc != measured:
            print(f"     doc:      {doc}\n     measured: {measured}")
    return mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", default="quick,reference", help=f"of {', '.join(GROUPS)}")
    parser.add_argument("--doc", help="only this page (e.g. periphery.md)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/doc-figures"), help="run folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--list", action="store_true", help="list the sections, run nothing")
    args = parser.parse_args(argv)
    groups = set(args.group.split(","))
    if unknown := groups - set(GROUPS):
        parser.error(f"unknown group(s) {', '.join(sorted(unknown))}; known: {', '.join(GROUPS)}")
    chosen = [s for s in sections() if s.group in groups and args.doc in (None, s.doc)]
    if args.list:
        for s in chosen:
            print(f"{s.group:9} {s.doc}: {s.name} ({len(s.templates)}) {s.command}")
        return 0
    if "reference" in groups and not REFERENCE.is_dir():
        print(f"skipping the reference group: no reference data in {REFERENCE}")
        chosen = [s for s in chosen if s.group != "reference"]
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    mismatches = sum(check(s, args.work) for s in chosen)
    total = sum(len(s.templates) for s in chosen)
    print(f"{total - mismatches} of {total} figures match")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
