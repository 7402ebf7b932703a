"""A tiny registered dataset ("tiny-events") for fast training tests, also in subprocesses.

Importing this module registers it; spawned ranks import it through the test modules.
"""

from __future__ import annotations

import torch

from prime.data import DATASETS, DatasetSpec, DataSplits, FrameDataset

TINY = "tiny-events"


def load_tiny(timesteps: int = 10, seed: int = 0, train_size: int = 7) -> DataSplits:
    """Random sparse frames [T, 2, 34, 34] whose label lights a row: learnable, fast.

    ``train_size`` training samples, 10 test samples (one per class).
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(train_size + 10) % 10
    frames = (torch.rand(len(labels), timesteps, 2, 34, 34, generator=g) < 0.05).to(torch.uint8)
    frames[torch.arange(len(labels)), :, :, 3 * labels] = 1
    return DataSplits(
        train=FrameDataset(frames[:train_size], labels[:train_size]),
        test=FrameDataset(frames[train_size:], labels[train_size:]),
        input_shape=(2, 34, 34),
        num_classes=10,
        timesteps=timesteps,
    )


if TINY not in DATASETS:
    DATASETS.register(TINY)(DatasetSpec(load_tiny, "nmnist-conv", "tiny test data"))
