"""Calibrating a network's periphery (DAC and ADC full scales, digital words) on data."""

from __future__ import annotations

from itertools import islice

import torch
from torch.utils.data import Dataset

from prime.core.device import module_device
from prime.data import iterate_batches
from prime.snn.network import SpikingNetwork

#: batches (of CALIBRATION_BATCH_SIZE samples) a periphery is calibrated on
CALIBRATION_BATCHES = 4
CALIBRATION_BATCH_SIZE = 32


def calibrate_periphery(model: SpikingNetwork, dataset: Dataset, seed: int) -> int:
    """Calibrate the ranges ``model``'s read paths leave open on :data:`CALIBRATION_BATCHES`
    batches of ``dataset`` drawn with ``seed`` (every rank of a data-parallel run draws the
    same); returns the read paths calibrated (0: none open, no batch is run)."""
    loader, _ = iterate_batches(
        dataset,
        CALIBRATION_BATCH_SIZE,
        torch.Generator().manual_seed(int(seed)),
        module_device(model),
    )
    return model.calibrate_read_paths(x for x, _ in islice(loader, CALIBRATION_BATCHES))
