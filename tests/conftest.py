"""Test settings: small, fast torch threads. Shared helpers live in ``helpers.py``."""

from __future__ import annotations

import torch

torch.set_num_threads(2)
