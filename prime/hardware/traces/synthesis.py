"""Synthetic chip traces: a chip formed by a device model, read with read noise."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from prime.core.errors import PrimeError
from prime.hardware.devices import ConductanceModel, chip_generator, read_conductance


def synth_reads(
    device: ConductanceModel,
    shape: tuple[int, int],
    n_reads: int,
    read_noise: float,
    seed: int,
    reset_ratio: float | None = None,
) -> tuple[Iterator[np.ndarray], np.ndarray | None]:
    """A synthetic chip formed by ``device`` from ``seed``, read ``n_reads`` times.

    Each read is an independent multiplicative read-noise draw (:func:`read_conductance`).
    With ``reset_ratio``, one reset-state read too: every cell at ``reset_ratio`` times its
    formed conductance (unformed cells stay 0), with read noise.
    Returns (reads [rows, cols] one by one, reset [rows, cols] or None).
    """
    if n_reads < 1:
        raise PrimeError(f"a trace needs at least 1 read, got {n_reads}")
    formed = device.sample_cells(tuple(shape), chip_generator(seed))
    noise = torch.Generator().manual_seed(seed + 1)
    reset = None
    if reset_ratio is not None:
        if not 0 < reset_ratio < 1:
            raise PrimeError(f"reset ratio must be in (0, 1), got {reset_ratio}")
        reset = read_conductance(formed * reset_ratio, read_noise, noise).numpy()
    reads = (read_conductance(formed, read_noise, noise).numpy() for _ in range(n_reads))
    return reads, reset
