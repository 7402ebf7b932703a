"""Dataset options shared by the loaders: the data root, unknown options, reproducible splits."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prime.core.errors import PrimeError
from prime.data.base import DataSplits, FrameDataset, default_data_root


def resolve_root(data_root: str | Path | None, create: bool = True) -> Path:
    """``data_root`` if given, else ``$PRIME_DATA``, else ``datasets/``; a PrimeError if it
    is a file. With ``create``, a missing root is made, and announced on stderr."""
    root = Path(data_root).expanduser() if data_root else default_data_root()
    if root.exists() and not root.is_dir():
        raise PrimeError(
            f"the data root {root} is a file, not a folder: pass --data-root FOLDER (or set "
            "PRIME_DATA)"
        )
    if create and not root.exists():
        try:
            root.mkdir(parents=True)
        except OSError as exc:
            raise PrimeError(
                f"cannot create the data root {root} ({exc.strerror or exc}): pass --data-root "
                "FOLDER (or set PRIME_DATA) to a writable folder"
            ) from None
        print(
            f"prime: created the data root {root.resolve()} (frame caches, downloads); "
            "--data-root or PRIME_DATA choose another",
            file=sys.stderr,
        )
    return root


def reject_options(dataset: str, options: dict[str, Any]) -> None:
    """A PrimeError for options a dataset does not take (e.g. --downsample for nmnist)."""
    if options:
        names = ", ".join(sorted(options))
        raise PrimeError(
            f"dataset {dataset!r} does not take the option(s) {names}; see docs/datasets.md"
        )


def check_fraction(name: str, value: float) -> float:
    if not 0 <= value < 1:
        raise PrimeError(f"{name} must be in [0, 1), got {value!r}")
    return float(value)


def split_indices(
    labels: np.ndarray, test_fraction: float, val_fraction: float = 0.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stratified (train, val, test) sample indices; the same for the same labels and seed.

    ``test_fraction`` and ``val_fraction`` are fractions of all samples (either may be 0).
    Stratified by class where every class has enough samples, else a plain shuffle split.
    """
    check_fraction("test fraction", test_fraction)
    check_fraction("validation fraction", val_fraction)
    if test_fraction + val_fraction >= 1:
        raise PrimeError("test and validation fractions must add up to less than 1")
    rest, test = np.arange(len(labels)), np.array([], dtype=np.int64)
    val = np.array([], dtype=np.int64)
    if test_fraction:
        rest, test = _split(rest, labels, test_fraction, seed)
    if val_fraction:
        rest, val = _split(rest, labels, val_fraction / (1 - test_fraction), seed)
    return rest, val, test


def _split(
    indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split off ``fraction`` of ``indices``: stratified where every class has enough samples."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(
            indices, test_size=fraction, random_state=seed, stratify=labels[indices]
        )
    except ValueError:  # a class too small to stratify: a plain seeded shuffle split
        try:
            return train_test_split(indices, test_size=fraction, random_state=seed)
        except ValueError as exc:
            raise PrimeError(f"cannot split {len(indices)} samples: {exc}") from None


def subset(dataset: FrameDataset, indices: np.ndarray) -> FrameDataset:
    index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    return FrameDataset(dataset.frames[index], dataset.labels[index])


def make_splits(
    train: FrameDataset,
    test: FrameDataset | None,
    num_classes: int,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
) -> DataSplits:
    """DataSplits of cached frames [N, T, ...].

    Without a ``test`` set, ``train`` (one folder or file) is split into train, validation
    and test by :func:`split_indices`; with one, only the validation part comes from
    ``train``. The split depends only on the labels and ``split_seed``, never on the
    training seed, so every run of a dataset sees the same test set.
    """
    labels = train.labels.numpy()
    fraction = test_fraction if test is None else 0.0
    train_idx, val_idx, test_idx = split_indices(labels, fraction, val_fraction, split_seed)
    return DataSplits(
        train=subset(train, train_idx),
        test=subset(train, test_idx) if test is None else test,
        val=subset(train, val_idx) if val_fraction else None,
        input_shape=tuple(train.frames.shape[2:]),
        num_classes=num_classes,
        timesteps=train.frames.shape[1],
    )
