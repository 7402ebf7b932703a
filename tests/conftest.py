"""Shared test fixtures: the reference data folder and small, fast settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"

torch.set_num_threads(2)


def reference_file(relative: str) -> Path:
    """A file under ../shared/reference, or skip the test saying why."""
    path = REFERENCE / relative
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives beside the repository)")
    return path
