"""Figures of docs/performance.md."""

from __future__ import annotations

from figures import Section

SECTIONS: list[Section] = []
