"""The HDF5 frame cache: keys, reuse, invalidation, corruption, atomic files, workers."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from prime.data import load_dataset
from prime.data.cache import bin_frames, cache_files, cache_path, cached_frames
from prime.data.fake import write_fake_dvsgesture, write_fake_nmnist


class Counting(Dataset):
    """Random integer frames [T=3, 4] with a build counter."""

    builds = 0

    def __init__(self, n: int = 12, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.frames = rng.integers(0, 300, (n, 3, 4))
        self.labels = np.arange(n) % 3
        Counting.builds += 1

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.frames[i], int(self.labels[i])


PARAMS = {"timesteps": 3, "split_mode": "time", "downsample": 32, "encoding": "rate", "seed": 0}


def build(root, params=PARAMS, split="train", seed=0):
    return cached_frames(root, "toy", split, params, lambda: Counting(seed=seed), workers=0)


def test_cache_is_reused_and_frames_are_saturated_counts(tmp_path):
    before = Counting.builds
    first = build(tmp_path)
    second = build(tmp_path)
    assert Counting.builds == before + 1  # the second load read the file
    assert torch.equal(first.frames, second.frames) and torch.equal(first.labels, second.labels)
    source = Counting()
    expected = np.clip(source.frames, 0, 255).astype(np.uint8)
    assert first.frames.dtype == torch.uint8 and np.array_equal(first.frames.numpy(), expected)
    frames, label = first[1]
    assert frames.dtype == torch.float32 and frames.shape == (3, 4) and label == 1
    assert [p.name for p in cache_files(tmp_path)] == [
        cache_path(tmp_path, "toy", "train", {"dataset": "toy", "split": "train", **PARAMS}).name
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"timesteps": 4},
        {"split_mode": "events"},
        {"downsample": 64},
        {"encoding": "latency"},
        {"seed": 1},
        {"files": "other"},
    ],
)
def test_any_changed_parameter_builds_a_new_cache(tmp_path, change):
    build(tmp_path)
    before = Counting.builds
    changed = build(tmp_path, {**PARAMS, **change}, seed=1)
    assert Counting.builds == before + 1
    assert len(cache_files(tmp_path)) == 2
    assert not torch.equal(changed.frames, build(tmp_path).frames)


def test_split_and_dataset_are_part_of_the_key(tmp_path):
    build(tmp_path, split="train")
    build(tmp_path, split="test")
    cached_frames(tmp_path, "other", "train", PARAMS, lambda: Counting(), workers=0)
    assert len(cache_files(tmp_path)) == 3


def corrupt_truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt_flip_frames(path):
    with h5py.File(path, "r+") as f:
        f["frames"][0, 0, 0] = 255 - f["frames"][0, 0, 0]


def corrupt_unfinished(path):
    with h5py.File(path, "r+") as f:
        del f.attrs["complete"]


def corrupt_garbage(path):
    path.write_bytes(b"not an hdf5 file" * 100)


@pytest.mark.parametrize(
    "corrupt", [corrupt_truncate, corrupt_flip_frames, corrupt_unfinished, corrupt_garbage]
)
def test_corrupt_or_half_written_cache_is_rebuilt_with_a_message(tmp_path, capsys, corrupt):
    good = build(tmp_path)
    (path,) = cache_files(tmp_path)
    corrupt(path)
    before = Counting.builds
    rebuilt = build(tmp_path)
    assert Counting.builds == before + 1
    assert torch.equal(rebuilt.frames, good.frames)
    err = capsys.readouterr().err
    assert str(path) in err and "rebuilding" in err
    build(tmp_path)  # the rebuilt file is good again
    assert Counting.builds == before + 1


def test_cache_files_are_written_atomically(tmp_path):
    build(tmp_path)
    leftovers = [p for p in (tmp_path / "cache").iterdir() if p.suffix != ".h5"]
    assert leftovers == []


def test_binning_in_worker_processes_matches_the_main_process():
    source = Counting(n=70)
    frames_0, labels_0 = bin_frames(source, np.uint8, workers=0)
    frames_2, labels_2 = bin_frames(source, np.uint8, workers=2)
    assert np.array_equal(frames_0, frames_2) and np.array_equal(labels_0, labels_2)


def test_loader_parameters_and_changed_files_invalidate_the_cache(tmp_path):
    write_fake_nmnist(tmp_path / "NMNIST", per_class=2, events=300)
    base = load_dataset("nmnist", data_root=tmp_path, test_fraction=0.5)
    assert len(cache_files(tmp_path)) == 1
    load_dataset("nmnist", data_root=tmp_path, test_fraction=0.3)  # same frames, other split
    assert len(cache_files(tmp_path)) == 1
    by_events = load_dataset("nmnist", data_root=tmp_path, split_mode="events", test_fraction=0.5)
    shorter = load_dataset("nmnist", data_root=tmp_path, timesteps=5, test_fraction=0.5)
    assert len(cache_files(tmp_path)) == 3
    assert not torch.equal(by_events.train.frames, base.train.frames)
    assert shorter.train.frames.shape[1] == 5
    write_fake_nmnist(tmp_path / "NMNIST", per_class=2, events=300, seed=1)  # new recordings
    renewed = load_dataset("nmnist", data_root=tmp_path, test_fraction=0.5)
    assert len(cache_files(tmp_path)) == 4
    assert not torch.equal(renewed.train.frames, base.train.frames)

    write_fake_dvsgesture(tmp_path / "DVSGesture", per_class=1, events=200, classes=3)
    for side in (32, 16):
        data = load_dataset("dvsgesture", data_root=tmp_path, timesteps=2, downsample=side)
        assert data.input_shape == (2, side, side)
    assert len(cache_files(tmp_path)) == 6
