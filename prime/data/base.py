"""The dataset registry and what every loader shares: ``load_dataset(name, ...)`` ->
:class:`DataSplits`.

Every dataset yields ``(frames, label)`` with frames float32 [T, *input_shape] and an int
label; a DataLoader batches them to [B, T, ...] (the training loop moves T first).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast, runtime_checkable

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from prime.core.errors import PrimeError
from prime.core.registry import Registry


@dataclass(frozen=True)
class DataSplits:
    """A dataset's train and test splits and the shape of its samples."""

    train: Dataset
    test: Dataset
    input_shape: tuple[int, ...]
    num_classes: int
    timesteps: int
    val: Dataset | None = None  # a validation split, where the loader was asked for one


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset: how to load it and which model it trains by default.

    ``on_disk(data_root)`` describes which of its files are present (``prime datasets``).
    """

    load: Callable[..., DataSplits]
    default_model: str
    description: str
    on_disk: Callable[[Path], str] | None = None


DATASETS: Registry[DatasetSpec] = Registry("dataset")


class MissingData(PrimeError):
    """A dataset's files are not on disk: ``problem`` says which and where, ``fix`` how to
    provide them (with the options of ``prime train``)."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem


class FrameDataset(Dataset):
    """In-memory frames [N, T, ...] (any dtype, stored compactly) with labels [N]."""

    def __init__(self, frames: torch.Tensor, labels: torch.Tensor) -> None:
        if len(frames) != len(labels):
            raise ValueError(f"{len(frames)} samples but {len(labels)} labels")
        self.frames, self.labels = frames, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.frames[index].float(), int(self.labels[index])

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.frames, self.labels


@runtime_checkable
class Stored(Protocol):
    """A dataset whose samples are made from tensors it holds (and its own settings)."""

    def tensors(self) -> tuple[torch.Tensor, ...]: ...


def content_sha256(dataset: Dataset) -> str | None:
    """sha256 of the tensors a split's samples are made from (a :class:`Stored` dataset or a
    Subset of one); None for a dataset that does not hold them."""
    index: torch.Tensor | None = None
    if isinstance(dataset, Subset):
        index = torch.as_tensor(dataset.indices, dtype=torch.int64)
        dataset = dataset.dataset
    if not isinstance(dataset, Stored):
        return None
    digest = hashlib.sha256()
    for tensor in dataset.tensors():
        tensor = (tensor if index is None else tensor[index]).contiguous()
        digest.update(f"{tensor.dtype}{list(tensor.shape)}".encode())
        digest.update(tensor.numpy().data)
    return digest.hexdigest()


def dataset_len(dataset: Dataset) -> int:
    """``len(dataset)``: prime's datasets are all sized (torch's ``Dataset`` type is not)."""
    return len(cast(Sized, dataset))


def iterate_batches(
    dataset: Dataset,
    batch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    workers: int | None = None,
) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int]:
    """(batches of (frames [T, B, ...], labels [B]) on ``device``, number of batches).

    Shuffled by ``generator`` if given, else in order; the order depends on nothing else (not
    on ``workers``). For a CUDA device the batches are read into pinned memory and copied
    asynchronously, and ``workers`` processes (default 2 there, else none: on the CPU they
    would take the step's cores) prepare the next batches while the device computes.
    """
    if generator is not None:
        order = torch.randperm(dataset_len(dataset), generator=generator).tolist()
    else:
        order = list(range(dataset_len(dataset)))
    batch_list = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    device = torch.device(device)
    cuda = device.type == "cuda"
    workers = (2 if cuda else 0) if workers is None else workers
    loader = DataLoader(dataset, batch_sampler=batch_list, pin_memory=cuda, num_workers=workers)
    batches = (
        (x.transpose(0, 1).to(device, non_blocking=True), y.to(device, non_blocking=True))
        for x, y in loader
    )
    return batches, len(batch_list)


def default_data_root() -> Path:
    """``$PRIME_DATA`` if set, else ``datasets/`` in the working directory."""
    return Path(os.environ.get("PRIME_DATA", "datasets"))


def load_dataset(name: str, **options: Any) -> DataSplits:
    """Load the registered dataset ``name``; options are the dataset's own keywords."""
    return DATASETS.get(name).load(**options)


def list_datasets() -> list[str]:
    return DATASETS.names()


def dataset_spec(name: str) -> DatasetSpec:
    return DATASETS.get(name)
