"""Dataset loaders on fake files in the real on-disk formats, and on real reference files."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tonic
import torch
from helpers import reference_file

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.data import load_dataset
from prime.data.fake import (
    encode_nmnist,
    write_fake_dvsgesture,
    write_fake_nmnist,
    write_fake_shd,
)
from prime.data.nmnist import NMNIST
from prime.data.tonic_files import from_tonic
from prime.runs.config import TrainConfig
from prime.runs.train import train


def test_fake_nmnist_records_are_the_real_40_bit_format(tmp_path):
    real = reference_file("nmnist/sample_nmnist.bin")
    events = tonic.io.read_mnist_file(str(real), dtype=tonic.datasets.NMNIST.dtype)
    encoded = encode_nmnist(events["x"], events["y"], events["p"], events["t"])
    assert encoded == real.read_bytes()  # byte for byte what the real recording holds
    (path,) = write_fake_nmnist(tmp_path, per_class=1, events=50)[:1]
    fake = tonic.io.read_mnist_file(str(path), dtype=tonic.datasets.NMNIST.dtype)
    assert len(fake) == 50 and fake["x"].max() < 34 and np.all(np.diff(fake["t"]) >= 0)


@pytest.mark.parametrize("row, split_mode", [(0, "time"), (1, "events")])
def test_real_nmnist_recording_gives_the_reference_frames(tmp_path, row, split_mode):
    real = reference_file("nmnist/sample_nmnist.bin")
    golden = np.load(reference_file("prime/prime_golden.npz"))["real_inputs"][row]
    (tmp_path / "NMNIST" / "Train" / "4").mkdir(parents=True)
    shutil.copy(real, tmp_path / "NMNIST" / "Train" / "4" / "00001.bin")
    data = load_dataset("nmnist", data_root=tmp_path, split_mode=split_mode, test_fraction=0)
    assert len(data.train) == 1 and len(data.test) == 0
    frames, label = data.train[0]
    assert label == 4 and np.array_equal(frames.numpy(), golden.astype(np.float32))


def test_nmnist_shapes_and_reproducible_split(tmp_path):
    write_fake_nmnist(tmp_path / "NMNIST", per_class=5, events=400)
    a = load_dataset("nmnist", data_root=tmp_path, val_fraction=0.2, test_fraction=0.2)
    b = load_dataset("nmnist", data_root=tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert (len(a.train), len(a.val), len(a.test)) == (30, 10, 10)
    assert (a.input_shape, a.num_classes, a.timesteps) == ((2, 34, 34), 10, 10)
    frames, label = a.train[0]
    assert frames.shape == (10, 2, 34, 34) and frames.dtype == torch.float32
    assert isinstance(label, int) and frames.sum() > 0
    for part in ("train", "val", "test"):
        assert torch.equal(getattr(a, part).frames, getattr(b, part).frames)
    assert sorted(a.test.labels.tolist()) == list(range(10))  # stratified
    other = load_dataset("nmnist", data_root=tmp_path, split_seed=1)
    assert not torch.equal(other.test.frames, a.test.frames)


def test_a_user_tonic_transform_replaces_toframe_and_keys_the_cache(tmp_path):
    write_fake_nmnist(tmp_path / "NMNIST", per_class=2, events=300)
    default = load_dataset("nmnist", data_root=tmp_path, test_fraction=0.5)
    transform = tonic.transforms.Compose(
        [
            tonic.transforms.Downsample(spatial_factor=0.5),
            tonic.transforms.ToFrame(sensor_size=(17, 17, 2), n_time_bins=4),
        ]
    )
    mine = load_dataset("nmnist", data_root=tmp_path, test_fraction=0.5, transform=transform)
    assert (mine.input_shape, mine.timesteps) == ((2, 17, 17), 4)
    assert len(list((tmp_path / "cache").glob("nmnist-train-*.h5"))) == 2  # its own cache
    assert default.train.frames.sum() == mine.train.frames.sum()  # the same events, binned
    same = load_dataset("nmnist", data_root=tmp_path, test_fraction=0.5, transform=transform)
    assert torch.equal(same.train.frames, mine.train.frames)
    with pytest.raises(PrimeError, match="transform must bin one recording's events"):
        load_dataset("nmnist", data_root=tmp_path, transform="ToFrame")
    with pytest.raises(PrimeError, match="no repr naming its parameters"):
        load_dataset("digits", data_root=tmp_path, transform=lambda events: events)


def test_tonic_dataset_objects_become_data_splits(tmp_path):
    write_fake_nmnist(tmp_path / "NMNIST", per_class=2, events=300)
    to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=5)
    recordings = NMNIST(tmp_path, train=True, transform=to_frame)  # a tonic.datasets.NMNIST
    data = from_tonic(recordings, None, num_classes=10, test_fraction=0.5)
    assert (data.input_shape, data.timesteps, len(data.train), len(data.test)) == (
        (2, 34, 34), 5, 10, 10,
    )  # fmt: skip
    binned = sum(int(recordings[i][0].sum()) for i in range(len(recordings)))
    assert int(data.train.frames.sum() + data.test.frames.sum()) == binned  # every recording
    with pytest.raises(PrimeError, match="yields events, not frames: create it with a transform"):
        from_tonic(NMNIST(tmp_path, train=True, transform=lambda e: e), None, num_classes=10)


def test_nmnist_uses_the_test_folder_and_data_path(tmp_path):
    folder = tmp_path / "anywhere"
    write_fake_nmnist(folder, per_class=2, events=200)
    write_fake_nmnist(folder, per_class=1, split="Test", events=200, seed=1)
    data = load_dataset("nmnist", data_root=tmp_path / "root", data_path=folder)
    assert (len(data.train), len(data.test)) == (20, 10)
    assert (tmp_path / "root" / "cache").is_dir()  # the cache lives under the data root


def test_dvsgesture_downsampled_frames(tmp_path):
    write_fake_dvsgesture(tmp_path / "DVSGesture", per_class=2, events=500)
    write_fake_dvsgesture(tmp_path / "DVSGesture", 1, split="ibmGestureTest", events=500, seed=1)
    data = load_dataset("dvsgesture", data_root=tmp_path, timesteps=4, downsample=32)
    assert (len(data.train), len(data.test), data.num_classes) == (22, 11, 11)
    assert data.input_shape == (2, 32, 32) and data.train.frames.dtype == torch.int16
    full = load_dataset("dvsgesture", data_root=tmp_path, timesteps=4)
    assert full.input_shape == (2, 128, 128)
    # down-sampling moves events, it never drops them
    assert torch.equal(full.train.frames.sum((2, 3, 4)), data.train.frames.sum((2, 3, 4)))


def test_real_dvsgesture_clips(tmp_path):
    folder = reference_file("dvsgesture/DVSGesture")
    data = load_dataset(
        "dvsgesture",
        data_root=tmp_path,
        data_path=folder,
        timesteps=5,
        downsample=32,
        test_fraction=0.3,
    )
    assert (len(data.train), len(data.test)) == (7, 3)  # only ibmGestureTest: split it
    assert data.train.frames.shape[1:] == (5, 2, 32, 32) and data.train.frames.sum() > 60_000


def test_shd_spike_counts(tmp_path):
    write_fake_shd(tmp_path / "SHD", samples=40, spikes=500)
    write_fake_shd(tmp_path / "SHD", samples=20, split="test", seed=1, spikes=500)
    data = load_dataset("shd", data_root=tmp_path, timesteps=8)
    assert (len(data.train), len(data.test), data.num_classes) == (40, 20, 20)
    frames, label = data.train[3]
    assert frames.shape == (8, 700) and data.input_shape == (700,) and label == 3
    assert 490 <= frames.sum() <= 500  # tonic's time bins keep (almost) every spike
    hot = frames.sum(0).reshape(20, 35).sum(1)
    assert hot.argmax() == 3  # the fake label's channels carry half the spikes


def write_npz(path, n=40, seed=0):
    rng = np.random.default_rng(seed)
    np.savez(path, features=rng.random((n, 6, 5)).astype(np.float32), labels=np.arange(n) % 4)


def test_npz_rate_and_latency_encoding(tmp_path):
    write_npz(tmp_path / "a.npz")
    options = dict(data_root=tmp_path, data_path=tmp_path / "a.npz", timesteps=7)
    rate = load_dataset("npz", seed=0, **options)
    assert (len(rate.train), len(rate.test), rate.num_classes) == (32, 8, 4)
    assert rate.input_shape == (6, 5) and rate.train.frames.dtype == torch.uint8
    assert set(rate.train.frames.unique().tolist()) == {0, 1}
    again = load_dataset("npz", seed=0, **options)
    other = load_dataset("npz", seed=1, **options)
    assert torch.equal(rate.train.frames, again.train.frames)
    assert not torch.equal(rate.train.frames, other.train.frames)
    latency = load_dataset("npz", encoding="latency", **options)
    assert latency.train.frames.sum(1).max() == 1  # at most one spike per feature


def test_npz_rate_follows_the_features(tmp_path):
    np.savez(tmp_path / "b.npz", features=np.full((4, 3), [0.0, 0.5, 1.0]), labels=np.arange(4))
    data = load_dataset(
        "npz", data_root=tmp_path, data_path=tmp_path / "b.npz", timesteps=400, test_fraction=0
    )
    rates = data.train.frames.float().mean((0, 1))
    assert rates[0] == 0 and rates[2] == 1 and abs(rates[1] - 0.5) < 0.06


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"features": np.ones((4, 3))}, "labels"),
        ({"features": np.full((4, 3), 2.0), "labels": np.arange(4)}, "[0, 1]"),
        ({"features": np.ones((4, 3)), "labels": np.arange(3)}, "[N]"),
    ],
)
def test_bad_npz_files_are_named(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(PrimeError, match="bad.npz") as error:
        load_dataset("npz", data_root=tmp_path, data_path=tmp_path / "bad.npz")
    assert message in str(error.value)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("nmnist", ["NMNIST", "Train/<digit>/<id>.bin", "garrickorchard.com", "--download"]),
        ("dvsgesture", ["DVSGesture", "ibmGestureTrain/user<NN>_<lighting>/<label>.npy"]),
        ("shd", ["SHD", "shd_train.h5", "zenkelab.org"]),
    ],
)
def test_missing_files_error_names_the_layout_and_source(tmp_path, name, expected):
    with pytest.raises(PrimeError) as error:
        load_dataset(name, data_root=tmp_path)
    for text in [*expected, str(tmp_path / expected[0])]:
        assert text in str(error.value)
    assert not any(tmp_path.iterdir())  # nothing downloaded, nothing written


def test_failed_download_is_one_clear_error(tmp_path, monkeypatch):
    import urllib.error

    import tonic.dataset

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", offline)
    with pytest.raises(PrimeError) as error:
        load_dataset("shd", data_root=tmp_path, download=True)
    message = str(error.value)
    assert "downloading https://zenkelab.org/datasets/shd_train.h5.zip failed" in message
    assert "URLError" in message and "shd_train.h5 and shd_test.h5" in message


def test_options_a_dataset_does_not_take_are_refused(tmp_path):
    with pytest.raises(PrimeError, match="downsample"):
        load_dataset("nmnist", data_root=tmp_path, downsample=32)
    with pytest.raises(PrimeError, match="--data-path"):
        load_dataset("npz", data_root=tmp_path)


def write_spoken_npz(folder):
    features = np.random.default_rng(0).random((20, 23, 20)).astype(np.float32)
    np.savez(folder / "digits.npz", features=features, labels=np.arange(20) % 10)


WRITERS = {
    "nmnist": lambda root: write_fake_nmnist(root / "NMNIST", per_class=2, events=300),
    "dvsgesture": lambda root: write_fake_dvsgesture(root / "DVSGesture", 2, events=300),
    "shd": lambda root: write_fake_shd(root / "SHD", samples=40, spikes=300),
    "npz": write_spoken_npz,
}


@pytest.mark.parametrize("dataset", sorted(WRITERS))
def test_one_training_epoch_on_each_dataset(tmp_path, dataset):
    """Fake files -> loader -> cache -> one epoch of the dataset's default model."""
    WRITERS[dataset](tmp_path)
    data = {"data_root": str(tmp_path), "test_fraction": 0.5}
    if dataset == "npz":
        data["data_path"] = str(tmp_path / "digits.npz")
    config = TrainConfig(dataset=dataset, epochs=1, batch_size=8, timesteps=3, data=data)
    metrics = train(config, tmp_path / "run", progress=False)
    assert metrics["conductances_unchanged"] and 0 <= metrics["test_accuracy"] <= 1
    assert np.isfinite(metrics["history"][0]["train_loss"])
    assert len(list((tmp_path / "cache").glob("*.h5"))) == 1


def test_cli_lists_datasets_and_trains_on_an_npz(tmp_path, capsys):
    write_fake_nmnist(tmp_path / "NMNIST", per_class=1, events=100)
    assert main(["datasets", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "nmnist", "dvsgesture", "shd", "npz"):
        assert f"  {name} " in out
    assert "Train: 10 recordings" in out
    for name, n in (("train", 20), ("test", 10)):
        features = np.random.default_rng(n).random((n, 23, 20)).astype(np.float32)
        np.savez(tmp_path / f"{name}.npz", features=features, labels=np.arange(n) % 10)
    args = ["train", "--dataset", "npz", "--quiet", "--epochs", "1", "--timesteps", "3"]
    args += ["--data-root", str(tmp_path), "--data-path", str(tmp_path / "train.npz")]
    args += ["--test-path", str(tmp_path / "test.npz"), "--encoding", "latency"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    assert "spoken-digits-mlp on npz: test accuracy" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "run2"), "--model", "nmnist-mlp"]) == 1
    assert "expects input" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "run3"), "--downsample", "32"]) == 1
    assert "does not take the option(s) downsample" in capsys.readouterr().err


def test_worker_processes_give_the_same_batches_in_the_same_order():
    from prime.data.base import FrameDataset, iterate_batches

    frames = torch.randint(0, 4, (37, 3, 2, 5, 5), dtype=torch.uint8)
    dataset = FrameDataset(frames, torch.arange(37))

    def batches(workers: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader, count = iterate_batches(
            dataset, 8, torch.Generator().manual_seed(4), workers=workers
        )
        out = list(loader)
        assert len(out) == count == 5
        return out

    for (x0, y0), (x2, y2) in zip(batches(0), batches(2), strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2) and x0.shape[:2] == (3, len(y0))
