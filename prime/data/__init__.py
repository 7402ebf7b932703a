"""Datasets behind a registry: ``load_dataset(name, ...)`` -> :class:`DataSplits`.

Every dataset yields ``(frames, label)`` with frames float32 [T, *input_shape] and an int
label; a DataLoader batches them to [B, T, ...] (the training loop moves T first). The
registry and the shared types are :mod:`prime.data.base`; importing this package registers
every loader.
"""

from prime.data import arrays as _arrays  # noqa: F401  (each loader registers itself)
from prime.data import digits as _digits  # noqa: F401
from prime.data import dvsgesture as _dvsgesture  # noqa: F401
from prime.data import mnist_idx as _mnist_idx  # noqa: F401
from prime.data import nmnist as _nmnist  # noqa: F401
from prime.data import shd as _shd  # noqa: F401
from prime.data.base import (
    DATASETS,
    DatasetSpec,
    DataSplits,
    FrameDataset,
    MissingData,
    content_sha256,
    dataset_len,
    dataset_spec,
    default_data_root,
    iterate_batches,
    list_datasets,
    load_dataset,
)
from prime.data.tonic_files import from_tonic

__all__ = [
    "DATASETS",
    "DataSplits",
    "DatasetSpec",
    "FrameDataset",
    "MissingData",
    "content_sha256",
    "dataset_len",
    "dataset_spec",
    "default_data_root",
    "from_tonic",
    "iterate_batches",
    "list_datasets",
    "load_dataset",
]
