"""tonic's dataset classes on files that are already on disk, and tonic's frame binning.

tonic downloads a dataset whenever it finds fewer files than the full release. The
:class:`Offline` mixin makes a tonic dataset class accept any subset of its files in
tonic's own layout, and download only when asked to: otherwise a missing dataset is a
:class:`PrimeError` that names the expected files, where, and where to get them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import tonic.transforms
import torch
from torch.utils.data import Dataset

from prime.core.errors import PrimeError
from prime.core.resources import MAX_TIMESTEPS, check_count
from prime.data.base import DataSplits, FrameDataset, MissingData
from prime.data.cache import bin_frames, cached_frames, fingerprint, returning
from prime.data.splits import make_splits, reject_options, resolve_root

SPLIT_MODES = ("time", "events")


class Offline:
    """Mixin before a tonic dataset class: any subset of files, no download unless asked.

    A subclass must keep the tonic class's name (tonic's folder is ``<root>/<class name>``;
    ``folder`` replaces that folder), set ``layout`` (the expected files, relative to the
    folder) and ``source`` (where to get them), and implement ``present()``.
    """

    layout: str
    source: str
    _folder: str | None = None
    # set by the tonic dataset class this mixes into (declared for the type checker)
    data: Any
    url: str
    folder_name: str

    def __init__(
        self,
        save_to: str | Path,
        *args,
        download: bool = False,
        folder: str | Path | None = None,
        **kwargs,
    ) -> None:
        self.allow_download = download
        self._folder = None if folder is None else str(folder)
        # the next class in the MRO is the tonic dataset class, not object
        super().__init__(str(save_to), *args, **kwargs)  # type: ignore[call-arg]

    @property
    def location_on_system(self) -> str:
        if self._folder is None:  # tonic's __init__ sets it first thing
            raise AttributeError("location_on_system is set by the tonic dataset's __init__")
        return self._folder

    @location_on_system.setter
    def location_on_system(self, value: str) -> None:  # tonic sets <root>/<class name>
        if self._folder is None:
            self._folder = value

    def present(self) -> bool:
        raise NotImplementedError

    def files(self) -> list[str]:
        """The source files of this split (their fingerprint is part of the cache key)."""
        return list(self.data)

    def _check_exists(self) -> bool:
        return self.present()

    def download(self) -> None:
        if not self.allow_download:
            raise self.missing()
        try:
            super().download()  # type: ignore[misc]  # the tonic class's download()
        except Exception as exc:  # urllib and archive errors of many kinds
            raise PrimeError(
                f"downloading {self.url} failed ({type(exc).__name__}: {exc}); {self.missing()}"
            ) from None
        if not self.present():
            raise PrimeError(f"the download did not provide the files; {self.missing()}")

    def missing(self) -> MissingData:
        name = type(self).__name__  # the tonic class's name, which is also its folder's
        return MissingData(
            f"{name} files not found: expected {self.layout} in {self.location_on_system} "
            "(tonic's layout)",
            f"get them from {self.source} (or pass --download to let tonic fetch {self.url}), "
            f"then pass --data-path to that folder or --data-root (or PRIME_DATA) to the "
            f"folder that holds {name}/",
        )

    def count(self, pattern: str) -> int:
        return sum(1 for _ in Path(self.location_on_system, self.folder_name).glob(pattern))


def tonic_splits(
    dataset: str,
    tonic_class: type[Offline],
    frames_of: Callable[[np.ndarray], np.ndarray],
    params: dict[str, Any],
    num_classes: int,
    dtype: type[np.integer] = np.uint8,
    *,
    transform: Callable[[np.ndarray], Any] | None = None,
    data_root: str | Path | None = None,
    data_path: str | Path | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    download: bool = False,
    workers: int | None = None,
    **unknown: object,
) -> DataSplits:
    """Cached frames of a tonic dataset's train and test folders, as DataSplits.

    ``frames_of`` bins one recording into frames; ``params`` are its parameters (for the
    cache key). The keyword options are those every event dataset takes: ``transform``, a
    user's tonic transform that replaces ``frames_of`` (:func:`user_transform`), the data root
    (cache; default ``$PRIME_DATA`` or ``datasets/``), ``data_path`` (the dataset's own
    folder, default ``<data root>/<tonic class name>``), the split of a dataset that has
    only one of its folders (:func:`prime.data.splits.make_splits`), ``download`` and the
    cache-building ``workers``.
    """
    reject_options(dataset, unknown)
    frames_of, params = user_transform(frames_of, params, transform)
    root = resolve_root(data_root)
    found, missing = {}, []
    for name, train in (("train", True), ("test", False)):
        try:
            found[name] = tonic_class(
                root, train=train, transform=frames_of, download=download, folder=data_path
            )
        except MissingData as exc:
            missing.append(exc)
    if not found:
        raise missing[0]
    frames = {
        name: cached_frames(
            root,
            dataset,
            name,
            {**params, "files": fingerprint(source.files(), source.location_on_system)},
            returning(cast(Dataset, source)),  # a tonic dataset: map-style, sized
            dtype=dtype,
            workers=workers,
        )
        for name, source in found.items()
    }
    if "train" not in frames:  # only a test folder: split it
        frames = {"train": frames["test"]}
    return make_splits(
        frames["train"], frames.get("test"), num_classes, test_fraction, val_fraction, split_seed
    )


def user_transform(
    frames_of: Callable[[np.ndarray], Any],
    params: dict[str, Any],
    transform: Callable[[np.ndarray], Any] | None,
) -> tuple[Callable[[np.ndarray], Any], dict[str, Any]]:
    """(what bins a recording, the cache key's parameters of that binning): the loader's
    own ``frames_of`` and ``params``, or a user's ``transform`` in their place, keyed on its
    ``repr`` (tonic's transforms are dataclasses: the repr names every parameter). The
    transform takes one recording's events and returns frames [T, ...]."""
    if transform is None:
        return frames_of, params
    if not callable(transform):
        raise PrimeError(
            "transform must bin one recording's events into frames [T, ...], as "
            f"tonic.transforms.ToFrame(...) does; got a {type(transform).__name__}"
        )
    key = repr(transform)
    if " at 0x" in key:
        raise PrimeError(
            f"the transform {key} has no repr naming its parameters, and the frame cache is "
            "keyed on it: use tonic's transforms (tonic.transforms.Compose for several), or a "
            "dataclass of your own"
        )
    return transform, {"transform": key}


def from_tonic(
    train: Dataset,
    test: Dataset | None,
    num_classes: int,
    dtype: type[np.integer] = np.uint8,
    *,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    workers: int | None = None,
) -> DataSplits:
    """DataSplits of tonic's own dataset objects, e.g. ``tonic.datasets.NMNIST(save_to,
    train=True, transform=tonic.transforms.ToFrame(...))``: their transform bins each
    recording into frames [T, ...], binned here once into memory (not cached: prime cannot
    tell what changes such a dataset's frames). Without ``test``, ``train`` is split
    (:func:`~prime.data.splits.make_splits`)."""
    splits = {"train": train} if test is None else {"train": train, "test": test}
    frames = {}
    for name, dataset in splits.items():
        sample = np.asarray(dataset[0][0])
        if sample.dtype.names is not None:
            raise PrimeError(
                f"the {name} dataset yields events, not frames: create it with a transform "
                "that bins them, e.g. transform=tonic.transforms.ToFrame(sensor_size=..., "
                "n_time_bins=T)"
            )
        binned, labels = bin_frames(dataset, dtype, workers, desc=f"binning {name}")
        frames[name] = FrameDataset(torch.from_numpy(binned), torch.from_numpy(labels))
    return make_splits(
        frames["train"], frames.get("test"), num_classes, test_fraction, val_fraction, split_seed
    )


def count_files(folder: Path, splits: tuple[str, ...], pattern: str, noun: str) -> str:
    """``prime datasets``' line for a dataset folder, e.g. "Train: 1,000 recordings, ..."."""
    counts = {split: sum(1 for _ in (folder / split).glob(pattern)) for split in splits}
    return ", ".join(f"{s}: {n:,} {noun}" for s, n in counts.items()) + f" in {folder}"


class EventList(Dataset):
    """Event arrays in memory, transformed on access: (transform(events[i]), labels[i])."""

    def __init__(
        self, events: list[np.ndarray], labels: np.ndarray, transform: Callable[[np.ndarray], Any]
    ) -> None:
        self.events, self.labels, self.transform = events, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        return self.transform(self.events[index]), int(self.labels[index])


def to_frame(
    sensor_size: tuple[int, int, int], timesteps: int, split_mode: str = "time"
) -> tonic.transforms.ToFrame:
    """tonic's ToFrame into ``timesteps`` frames of equal duration or equal event count."""
    if split_mode == "time":
        return tonic.transforms.ToFrame(sensor_size=sensor_size, n_time_bins=timesteps)
    if split_mode == "events":
        return tonic.transforms.ToFrame(sensor_size=sensor_size, n_event_bins=timesteps)
    raise PrimeError(f"unknown split mode {split_mode!r}; known: {', '.join(SPLIT_MODES)}")


def unreadable(dataset: str, path: Path, problem: str) -> str:
    """The message for a recording that cannot be right: prime refuses it, never skips it."""
    return (
        f"{dataset} recording {path} is unreadable ({problem}): prime refuses damaged "
        "recordings rather than skip them; remove or replace the file"
    )


def check_timesteps(timesteps: int) -> int:
    """``timesteps`` if it is a whole number in [1, MAX_TIMESTEPS]."""
    return check_count("timesteps", timesteps, 1, MAX_TIMESTEPS)
