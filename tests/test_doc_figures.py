"""The registry of doc figures (scripts/figures) against docs/: every registered sentence is
in its doc, and every percentage or ratio a doc quotes belongs to a registered section.
Nothing is run here; ``scripts/doc_figures.py`` produces the figures."""

from __future__ import annotations

import pytest
from figures import FIGURE, PAGES, Section, doc_path, quoted, sections

SECTIONS = list(sections())
DOCS = ["README.md", *sorted(p.name for p in doc_path("x").parent.glob("*.md"))]


@pytest.mark.parametrize("section", SECTIONS, ids=lambda s: f"{s.doc}:{s.name}")
def test_every_registered_figure_is_in_its_doc(section: Section):
    text = doc_path(section.doc).read_text()
    missing = [t for t in section.templates if quoted(t, text) is None]
    assert not missing, f"not in docs/{section.doc} (edit the doc or the template): {missing}"


@pytest.mark.parametrize("doc", DOCS)
def test_every_figure_in_the_docs_is_registered(doc: str):
    text = doc_path(doc).read_text()
    claimed: list[range] = []
    for section in SECTIONS:
        if section.doc == doc:
            for template in section.templates:
                if match := quoted(template, text):
                    claimed.append(range(match.start(), match.end()))
    lines = text.splitlines()
    orphans = [
        f"{m.group(0)!r} in line {(n := text.count(chr(10), 0, m.start())) + 1}: {lines[n].strip()}"
        for m in FIGURE.finditer(text)
        if not any(m.start() in r for r in claimed)
    ]
    assert not orphans, (
        f"figures of {doc} that no section of scripts/figures/ registers (add the sentence "
        "to a section with its producer, or as cited):\n" + "\n".join(orphans)
    )


def test_pages_are_modules():
    assert {s.doc for s in SECTIONS} <= {f"{p}.md" for p in PAGES} | {"README.md"}
