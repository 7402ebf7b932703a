"""Figures of docs/ir_drop.md."""

from __future__ import annotations

from figures import Section

SECTIONS: list[Section] = []
