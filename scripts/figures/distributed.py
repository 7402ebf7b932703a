"""Figures of docs/distributed.md."""

from __future__ import annotations

from figures import Section

SECTIONS: list[Section] = []
