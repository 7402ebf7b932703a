"""HDF5 frame cache: event recordings are binned to frames once, then loaded in a second.

One file per dataset, on-disk split and transform::

    <data root>/cache/<dataset>-<split>-<key>.h5

``key`` is a hash of every parameter that changes the frames (dataset, split, T, split mode,
down-sampling, encoding, seed, ...) and of a fingerprint of the source files (name, size,
modification time), so a changed transform or a changed file never reuses stale frames.
A file holds ``frames`` [N, T, ...] and ``labels`` [N]; its attributes hold the parameters,
the key and a sha256 checksum of both arrays. Files are written atomically; a file that
is corrupt, truncated, foreign or from another key is reported and rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from prime.core.errors import PrimeError
from prime.core.io import atomic_hdf5
from prime.core.lock import writable_dir
from prime.core.progress import progress_bar
from prime.core.resources import check_memory
from prime.data.base import FrameDataset, dataset_len

CACHE_FORMAT = "prime-frame-cache"
CACHE_VERSION = 1
#: fewer samples than this are binned in the main process (workers cost more than they save)
MIN_SAMPLES_FOR_WORKERS = 512
WRITABLE_ROOT = "pass --data-root (or set PRIME_DATA) to a writable folder"


class CacheError(Exception):
    """A cache file that cannot be used (the reason is the message); it is rebuilt."""


def cache_key(params: dict[str, Any]) -> str:
    """16 hex digits of the sha256 of the parameters (canonical JSON) and the cache version."""
    text = json.dumps({"cache_version": CACHE_VERSION, **params}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint(paths: Iterable[str | os.PathLike], base: str | os.PathLike) -> str:
    """sha256 of the (path relative to ``base``, size, modification time) of source files."""
    digest = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        name = os.path.relpath(path, base)
        digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_path(root: Path, dataset: str, split: str, params: dict[str, Any]) -> Path:
    return Path(root) / "cache" / f"{dataset}-{split}-{cache_key(params)}.h5"


def returning(source: Dataset) -> Callable[[], Dataset]:
    """A ``make_source`` for :func:`cached_frames` that returns ``source`` (bound now)."""
    return lambda: source


def cached_frames(
    root: Path,
    dataset: str,
    split: str,
    params: dict[str, Any],
    make_source: Callable[[], Dataset],
    dtype: type[np.integer] = np.uint8,
    workers: int | None = None,
) -> FrameDataset:
    """The frames of one split, from the cache or built from ``make_source()`` and cached.

    ``make_source()`` returns a dataset of (frames array [T, ...], label); it is only called
    when the cache has to be built. Frames are event counts, stored as ``dtype`` (counts
    above its maximum saturate). ``workers``: DataLoader worker processes for building
    (default: up to 4, none for small datasets).
    """
    params = {"dataset": dataset, "split": split, **params}
    path = cache_path(root, dataset, split, params)
    if path.exists():
        try:
            return read_cache(path, cache_key(params))
        except CacheError as exc:
            print(f"prime: frame cache {path} {exc}; rebuilding it", file=sys.stderr)
    writable_dir(path.parent, "the frame cache folder", WRITABLE_ROOT)  # before the binning
    frames, labels = bin_frames(make_source(), dtype, workers, desc=f"binning {dataset} {split}")
    write_cache(path, params, frames, labels)
    return FrameDataset(torch.from_numpy(frames), torch.from_numpy(labels))


def bin_frames(
    source: Dataset, dtype: type[np.integer], workers: int | None = None, desc: str = "binning"
) -> tuple[np.ndarray, np.ndarray]:
    """All samples of ``source`` as (frames [N, T, ...] of ``dtype``, labels int64 [N]).

    Binning runs in DataLoader worker processes, with a progress bar on a terminal.
    """
    n = dataset_len(source)
    if workers is None:
        workers = min(4, os.cpu_count() or 1) if n >= MIN_SAMPLES_FOR_WORKERS else 0
    loader = DataLoader(
        source,
        batch_size=64,
        num_workers=workers,
        collate_fn=functools.partial(_collate, dtype=dtype),
    )
    frames, labels, filled = None, np.empty(n, dtype=np.int64), 0
    with progress_bar(total=n, desc=desc, unit="sample", leave=False) as bar:
        for batch, batch_labels in _reraised(loader):
            if frames is None:
                shape = (n, *batch.shape[1:])
                check_memory(
                    math.prod(shape) * np.dtype(dtype).itemsize,
                    f"the frames {list(shape)} of {desc.removeprefix('binning ')}",
                    "use fewer --timesteps or fewer recordings",
                )
                frames = np.empty(shape, dtype=dtype)
            frames[filled : filled + len(batch)] = batch
            labels[filled : filled + len(batch)] = batch_labels
            filled += len(batch)
            bar.update(len(batch))
    if frames is None:
        raise CacheError("has no samples to bin")
    return frames, labels


def _reraised(loader: DataLoader) -> Iterator[Any]:
    """``loader``'s batches; a PrimeError in a worker is raised again with its own message
    (the DataLoader wraps it in the worker's traceback)."""
    try:
        yield from loader
    except PrimeError as exc:
        marker = f"{PrimeError.__name__}: "
        text = str(exc)
        raise PrimeError(
            text[text.rindex(marker) + len(marker) :] if marker in text else text
        ) from None


def _collate(
    batch: list[tuple[np.ndarray, int]], dtype: type[np.integer]
) -> tuple[np.ndarray, np.ndarray]:
    limit = np.iinfo(dtype).max
    frames = np.stack([np.clip(np.asarray(f), 0, limit).astype(dtype) for f, _ in batch])
    return frames, np.array([int(label) for _, label in batch], dtype=np.int64)


def _checksum(frames: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(frames).data)
    digest.update(np.ascontiguousarray(labels).data)
    return digest.hexdigest()


def write_cache(path: Path, params: dict[str, Any], frames: np.ndarray, labels: np.ndarray) -> None:
    """Write one cache file atomically, with its parameters, key and checksum."""
    with atomic_hdf5(path) as f:
        chunks = (1, *frames.shape[1:])
        f.create_dataset("frames", data=frames, chunks=chunks, compression="lzf")
        f.create_dataset("labels", data=labels)
        f.attrs.update(
            format=CACHE_FORMAT,
            version=CACHE_VERSION,
            key=cache_key(params),
            params=json.dumps(params, sort_keys=True, default=str),
            sha256=_checksum(frames, labels),
            complete=True,  # written last: a file without it was cut short
        )


def read_cache(path: Path, key: str) -> FrameDataset:
    """Load and verify a cache file; :class:`CacheError` says why it cannot be used."""
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if attrs.get("format") != CACHE_FORMAT or attrs.get("version") != CACHE_VERSION:
                raise CacheError("is not a prime frame cache of this version")
            if not attrs.get("complete"):
                raise CacheError("is incomplete (its writer was interrupted)")
            if attrs.get("key") != key:
                raise CacheError("was built for other parameters")
            frames, labels = f["frames"][()], f["labels"][()]
    except CacheError:
        raise
    except Exception as exc:  # h5py raises OSError, KeyError, ValueError on damaged files
        raise CacheError(f"is unreadable (corrupt or truncated: {type(exc).__name__})") from None
    if _checksum(frames, labels) != attrs.get("sha256"):
        raise CacheError("fails its checksum (corrupt)")
    return FrameDataset(torch.from_numpy(frames), torch.from_numpy(labels))


def cache_files(root: Path) -> list[Path]:
    """The cache files under a data root."""
    return sorted((Path(root) / "cache").glob("*.h5"))
