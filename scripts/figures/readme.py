"""Figures of README.md: settings and the measured array's parameters."""

from __future__ import annotations

from figures import Section

SECTIONS = [
    Section(
        "README.md",
        "settings",
        "cited",
        ("keeping 50 % of the edges", "measured random TaOx RRAM: 50.7 % unformed"),
    ),
]
