"""Array datasets: any ``.npz`` of features in [0, 1] encoded as spike trains by snntorch.

A file holds ``features`` [N, ...] (float, in [0, 1]) and ``labels`` [N] (whole numbers
from 0), e.g. ``../shared/reference/spoken_digits/{train,test}.npz``. Features become T
binary frames with snntorch's ``spikegen``: ``"rate"`` (each step spikes with probability
= feature; sample i draws from seed ``(seed, i)``) or ``"latency"`` (one spike per
feature, earlier for larger values, linear in T; deterministic); or ``"repeat"``: the
features themselves (float32) at every step, the direct input of ANNs (one step) such as
the pruning paper's spoken-digit CRNN.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from snntorch import spikegen
from torch.utils.data import Dataset

from prime.core.errors import PrimeError
from prime.data.base import DATASETS, DatasetSpec, DataSplits, FrameDataset
from prime.data.cache import cached_frames, fingerprint, returning
from prime.data.splits import make_splits, reject_options, resolve_root
from prime.data.tonic_files import check_timesteps

ENCODINGS = ("rate", "latency", "repeat")
DEFAULT_TIMESTEPS = 20


def read_arrays(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [N, ...] in [0, 1], labels int64 [N]) of an .npz file, checked."""
    path = Path(path)
    if not path.is_file():
        raise PrimeError(f"no such file: {path} (an .npz with features [N, ...] and labels [N])")
    try:
        with np.load(path, allow_pickle=False) as f:
            features, labels = f["features"], f["labels"]
    except KeyError:
        raise PrimeError(f"{path} needs the arrays 'features' [N, ...] and 'labels' [N]") from None
    except Exception as exc:  # zip and format errors of many kinds
        raise PrimeError(f"{path} is not a readable .npz file ({type(exc).__name__})") from None
    if features.ndim < 2 or labels.shape != features.shape[:1]:
        raise PrimeError(
            f"{path}: features {features.shape} and labels {labels.shape} must be [N, ...] and [N]"
        )
    if len(labels) == 0:
        raise PrimeError(f"{path} holds 0 samples: give an .npz with at least one sample")
    numeric = np.issubdtype(features.dtype, np.number)
    if not numeric or not np.all((features >= 0) & (features <= 1)):
        raise PrimeError(f"{path}: features must be numbers in [0, 1] (scale them first)")
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0:
        raise PrimeError(f"{path}: labels must be whole numbers >= 0")
    return features.astype(np.float32), labels.astype(np.int64)


class SpikeEncoded(Dataset):
    """features [N, ...] -> (spike frames uint8 [T, ...], label), by snntorch's spikegen."""

    def __init__(
        self, features: np.ndarray, labels: np.ndarray, timesteps: int, encoding: str, seed: int
    ) -> None:
        if encoding not in ENCODINGS:
            raise PrimeError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
        self.features, self.labels = features, labels
        self.timesteps, self.encoding, self.seed = timesteps, encoding, seed

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        x = torch.from_numpy(self.features[index])
        if self.encoding == "latency":
            spikes = spikegen.latency(x, num_steps=self.timesteps, normalize=True, linear=True)
        else:
            with torch.random.fork_rng(devices=[]):  # spikegen draws from torch's global RNG
                torch.manual_seed(self.seed * 1_000_003 + index)
                spikes = spikegen.rate(x, num_steps=self.timesteps)
        return spikes.to(torch.uint8).numpy(), int(self.labels[index])


def load_npz(
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = 0,
    data_path: str | Path | None = None,
    test_path: str | Path | None = None,
    encoding: str = "rate",
    data_root: str | Path | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    workers: int | None = None,
    **unknown: object,
) -> DataSplits:
    """Spike frames [T, ...] (uint8) of ``data_path`` (train) and ``test_path`` (test).

    Without ``test_path`` the file is split reproducibly. Rate-coded frames depend on
    ``seed`` (the training seed).
    """
    reject_options("npz", unknown)
    if data_path is None:
        raise PrimeError("dataset 'npz' needs --data-path FILE.npz (and optionally --test-path)")
    root = resolve_root(data_root)
    check_timesteps(timesteps)
    params = {"timesteps": timesteps, "encoding": encoding}
    if encoding == "rate":
        params["seed"] = seed
    if encoding not in ENCODINGS:
        raise PrimeError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    frames = {}
    for split, path in (("train", data_path), ("test", test_path)):
        if path is None:
            continue
        features, labels = read_arrays(path)
        if encoding == "repeat":  # in memory, nothing to cache
            repeated = torch.from_numpy(features)[:, None].expand(
                -1, timesteps, *features.shape[1:]
            )
            frames[split] = FrameDataset(repeated.contiguous(), torch.from_numpy(labels))
            continue
        source = SpikeEncoded(features, labels, timesteps, encoding, seed)
        key = {**params, "file": Path(path).name, "files": fingerprint([path], Path(path).parent)}
        frames[split] = cached_frames(root, "npz", split, key, returning(source), workers=workers)
    num_classes = int(max(f.labels.max() for f in frames.values())) + 1
    return make_splits(
        frames["train"], frames.get("test"), num_classes, test_fraction, val_fraction, split_seed
    )


DATASETS.register("npz")(
    DatasetSpec(
        load_npz,
        default_model="spoken-digits-mlp",
        description="any .npz (features [N, ...] in [0, 1], labels [N]) as spike trains; "
        "--data-path FILE [--test-path FILE] [--encoding rate|latency|repeat]",
        on_disk=lambda root: "any file given with --data-path",
    )
)
