"""Regenerate the figures docs/ quotes, print each next to what the doc says, and exit 1 if
one differs (or a quoted sentence is no longer in its doc).

    python scripts/doc_figures.py [--group quick,reference] [--doc periphery.md]
                                  [--work /tmp/doc-figures] [--threads 1] [--list] [--write]

The figures and their producers are registered page by page in ``scripts/figures/``
(:mod:`figures`); runs are kept in ``--work`` and reused, so a second call only compares.
By default the ``quick`` and ``reference`` groups run (``reference`` where
../shared/reference is present); ``--group long`` runs the reproductions' producers
(hours); ``timing`` figures are re-measured and shown beside the doc's, not compared (speeds
vary with the machine and its load; a timing section without a producer names its bench).
``--list`` prints every section, its group and its command, and runs nothing; ``--write``
puts the fresh figures into the docs (only the numbers: a doc's words and line breaks stay),
for the prose that quotes them to be reread.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from figures import GROUPS, REFERENCE, Section, doc_path, quoted, rewrite, sections, spaced

from prime.core.io import atomic_write


def check(section: Section, work: Path, write: bool) -> int:
    """Produce ``section``'s figures in ``work``, print them beside the doc's (and with
    ``write``, put them into the doc); the number of figures that differ."""
    if section.produce is None:
        print(f"skip docs/{section.doc}: {section.name} ({section.group}; {section.command})")
        return 0
    values = section.produce(work)
    text = doc_path(section.doc).read_text()
    mismatches = 0
    for template in section.templates:
        match = quoted(template, text)
        doc = spaced(match.group(0)) if match else "(sentence not found)"
        measured = spaced(template.format(**values))
        if section.group == "timing":  # machine- and load-dependent: shown, not compared
            print(f"time docs/{section.doc}: {section.name}\n     doc:      {doc}")
            print(f"     measured: {measured}")
            continue
        mismatches += doc != measured
        if write and match and doc != measured:
            text = rewrite(template, text, values)
        print(f"{'ok  ' if doc == measured else 'DIFF'} docs/{section.doc}: {section.name}")
        if doc != measured:
            print(f"     doc:      {doc}\n     measured: {measured}")
    if write and mismatches:
        atomic_write(doc_path(section.doc), lambda tmp: tmp.write_text(text))
    return mismatches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", default="quick,reference", help=f"of {', '.join(GROUPS)}")
    parser.add_argument("--doc", help="only this page (e.g. periphery.md)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/doc-figures"), help="run folder")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--list", action="store_true", help="list the sections, run nothing")
    parser.add_argument(
        "--write", action="store_true", help="put the fresh figures into the docs where they differ"
    )
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
    mismatches = sum(check(s, args.work, args.write) for s in chosen)
    total = sum(len(s.templates) for s in chosen)
    print(f"{total - mismatches} of {total} figures match" + (" (docs rewritten)" * args.write))
    return 1 if mismatches and not args.write else 0


if __name__ == "__main__":
    sys.exit(main())
