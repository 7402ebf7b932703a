"""The IDX reader/writer and the MNIST / Fashion-MNIST loaders, on files in the real format."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from prime.core.errors import PrimeError
from prime.data import dataset_spec, iterate_batches, load_dataset
from prime.data.idx import read_idx, read_idx_header, read_idx_pair, write_idx
from prime.data.mnist_idx import write_fake_mnist

#: (type code, big-endian numpy type) of every IDX type
TYPES = [(0x08, ">u1"), (0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"), (0x0D, ">f4"), (0x0E, ">f8")]


def idx_bytes(code: int, shape: tuple[int, ...], data: bytes) -> bytes:
    """An IDX file built by hand: magic 0x0000, type code, dimensions, big-endian sizes."""
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape) + data


def sample(dtype: str, shape: tuple[int, ...] = (3, 4, 5)) -> np.ndarray:
    values = np.arange(np.prod(shape)).reshape(shape) * 7 - 30
    if np.dtype(dtype).kind == "u":
        values = np.abs(values) % 256
    elif np.dtype(dtype).itemsize == 1:
        values = values % 256 - 128
    return (values / 4 if np.dtype(dtype).kind == "f" else values).astype(dtype)


# --- the format ------------------------------------------------------------------------------


@pytest.mark.parametrize(("code", "dtype"), TYPES)
def test_reads_hand_built_files_of_every_type(tmp_path, code, dtype):
    array = sample(dtype)
    path = tmp_path / "x-idx3"
    path.write_bytes(idx_bytes(code, array.shape, array.tobytes()))
    got = read_idx(path)
    assert got.shape == (3, 4, 5) and got.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got, array)
    assert got.flags.writeable
    assert read_idx_header(path) == (got.dtype, (3, 4, 5))


@pytest.mark.parametrize(("code", "dtype"), TYPES)
def test_write_idx_gives_the_real_bytes(tmp_path, code, dtype):
    array = sample(dtype).astype(np.dtype(dtype).newbyteorder("="))  # native in, big-endian out
    path = write_idx(tmp_path / "x-idx3-ubyte", array)
    assert path.read_bytes() == idx_bytes(code, array.shape, sample(dtype).tobytes())
    np.testing.assert_array_equal(read_idx(path), array)


def test_mnist_style_header_byte_for_byte(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    raw = write_idx(tmp_path / "images", images).read_bytes()
    assert raw[:16] == bytes.fromhex("00000803 00000002 0000001c 0000001c")  # as MNIST's files
    assert raw[16:] == images.tobytes() and len(raw) == 16 + images.size
    labels = np.array([5, 0, 4], dtype=np.uint8)
    raw = write_idx(tmp_path / "labels", labels).read_bytes()
    assert raw == bytes.fromhex("00000801 00000003 050004")


def test_gzip_files(tmp_path):
    array = sample(">f4")
    raw = idx_bytes(0x0D, array.shape, array.tobytes())
    (tmp_path / "hand.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "hand.gz"), array)
    first = write_idx(tmp_path / "a" / "x-idx3-ubyte.gz", array).read_bytes()
    assert gzip.decompress(first) == raw
    second = write_idx(tmp_path / "b" / "x-idx3-ubyte.gz", array).read_bytes()
    assert first == second  # reproducible: no time stamp, same file name
    assert read_idx_header(tmp_path / "hand.gz") == (np.dtype("float32"), array.shape)


def test_write_idx_refuses_types_idx_lacks(tmp_path):
    with pytest.raises(PrimeError, match="IDX cannot store int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(PrimeError, match="shape"):
        write_idx(tmp_path / "x", np.uint8(3))
    assert not any(tmp_path.iterdir())  # nothing left behind


# --- errors ------------------------------------------------------------------------------------


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(PrimeError, match="no such file: .*nothing-idx3-ubyte.*check the path"):
        read_idx(tmp_path / "nothing-idx3-ubyte")


def test_wrong_magic(tmp_path):
    path = write(tmp_path / "bad", b"\x01\x02\x08\x01\x00\x00\x00\x01\x07")
    with pytest.raises(PrimeError) as exc:
        read_idx(path)
    message = str(exc.value)
    assert str(path) in message and "wrong magic number 0x01020801" in message
    assert "download the file again" in message
    zipped = write(tmp_path / "zipped", gzip.compress(idx_bytes(8, (1,), b"\x07")))
    with pytest.raises(PrimeError, match="wrong magic.*looks gzip-compressed: name it .gz"):
        read_idx(zipped)


def test_unknown_type_code(tmp_path):
    path = write(tmp_path / "bad", idx_bytes(0x0A, (2,), b"\x00\x00"))
    with pytest.raises(PrimeError, match=r"bad has the unknown IDX type code 0x0A \(known: 0x08"):
        read_idx(path)


def test_truncated_data_and_header(tmp_path):
    path = write(tmp_path / "short", idx_bytes(0x08, (2, 3), bytes(5)))
    with pytest.raises(PrimeError) as exc:
        read_idx(path)
    message = str(exc.value)
    assert "short is truncated" in message and "2 x 3 uint8 = 6 bytes" in message
    assert "only 5 follow" in message and "download the file again" in message
    path = write(tmp_path / "head", idx_bytes(0x08, (2, 3), b"")[:9])
    with pytest.raises(PrimeError, match="head is truncated inside its header"):
        read_idx(path)
    with pytest.raises(PrimeError, match="tiny is truncated: 2 bytes"):
        read_idx(write(tmp_path / "tiny", b"\x00\x00"))
    with pytest.raises(PrimeError, match="declares 0 dimensions"):
        read_idx(write(tmp_path / "zero", b"\x00\x00\x08\x00"))
    images = np.zeros((4, 28, 28), dtype=np.int32)  # a wider type: the size counts its bytes
    raw = write_idx(tmp_path / "wide", images).read_bytes()
    with pytest.raises(PrimeError, match="4 x 28 x 28 int32 = 12,544 bytes"):
        read_idx(write(tmp_path / "wide", raw[:-1]))


def test_trailing_bytes(tmp_path):
    path = write(tmp_path / "long", idx_bytes(0x08, (2, 3), bytes(9)))
    with pytest.raises(PrimeError, match=r"long has 3 trailing bytes after the 2 x 3 uint8"):
        read_idx(path)


def test_truncated_or_false_gzip(tmp_path):
    raw = gzip.compress(idx_bytes(0x08, (100,), bytes(range(100))))
    path = write(tmp_path / "cut.gz", raw[: len(raw) // 2])
    with pytest.raises(PrimeError, match="cut.gz is not a complete gzip file.*download"):
        read_idx(path)
    path = write(tmp_path / "plain.gz", idx_bytes(0x08, (1,), b"\x01"))
    with pytest.raises(PrimeError, match="plain.gz is not a complete gzip file.*drop the .gz"):
        read_idx(path)


def test_label_count_must_match_images(tmp_path):
    images = write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((5, 4, 4), np.uint8))
    labels = write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(PrimeError) as exc:
        read_idx_pair(images, labels)
    message = str(exc.value)
    assert "train-labels-idx1-ubyte has 4 labels" in message
    assert "train-images-idx3-ubyte has 5 images" in message and "must belong" in message
    good = write_idx(tmp_path / "labels", np.arange(5, dtype=np.uint8))
    got_images, got_labels = read_idx_pair(images, good)
    assert got_images.shape == (5, 4, 4) and got_labels.dtype == np.int64
    with pytest.raises(PrimeError, match="not uint8 images"):
        read_idx_pair(good, good)
    with pytest.raises(PrimeError, match="not labels"):
        read_idx_pair(images, images)


# --- the datasets ----------------------------------------------------------------------------


@pytest.fixture
def fashion(tmp_path) -> Path:
    """Fake Fashion-MNIST in torchvision's layout: train as .gz (30), t10k plain (20)."""
    raw = tmp_path / "FashionMNIST" / "raw"
    write_fake_mnist(raw, 30, "train", seed=1, compress=True)
    write_fake_mnist(raw, 20, "test", seed=2, compress=False)
    return tmp_path


def test_fashion_mnist_repeat_frames(fashion):
    data = load_dataset("fashion-mnist", data_root=str(fashion), timesteps=4)
    assert (len(data.train), len(data.test), data.val) == (30, 20, None)
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10 and data.timesteps == 4
    images = read_idx(fashion / "FashionMNIST/raw/train-images-idx3-ubyte.gz")
    labels = read_idx(fashion / "FashionMNIST/raw/train-labels-idx1-ubyte.gz")
    for i in (0, 7, 29):
        frames, label = data.train[i]
        assert frames.shape == (4, 1, 28, 28) and frames.dtype == torch.float32
        assert label == labels[i] and isinstance(label, int)
        expected = torch.from_numpy(images[i] / 255.0).float()
        for t in range(4):
            torch.testing.assert_close(frames[t, 0], expected)
    test_labels = read_idx(fashion / "FashionMNIST/raw/t10k-labels-idx1-ubyte")
    assert [data.test[i][1] for i in range(20)] == test_labels.tolist()
    batches, count = iterate_batches(data.train, 8)
    x, y = next(batches)
    assert count == 4 and x.shape == (4, 8, 1, 28, 28) and y.shape == (8,)


def test_rate_coding_is_seeded_per_sample(fashion):
    def load(seed: int, **options):
        return load_dataset(
            "fashion-mnist", data_root=fashion, timesteps=50, seed=seed, encoding="rate", **options
        )

    a, b, c = load(3), load(3), load(4)
    frames, _ = a.train[0]
    assert frames.shape == (50, 1, 28, 28) and frames.dtype == torch.float32
    assert set(frames.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(frames, b.train[0][0])
    torch.testing.assert_close(a.test[5][0], b.test[5][0])
    assert not torch.equal(frames, c.train[0][0])
    assert not torch.equal(a.train[0][0], a.test[0][0])  # train and t10k sample 0 differ
    image = torch.from_numpy(read_idx(fashion / "FashionMNIST/raw/train-images-idx3-ubyte.gz")[0])
    assert torch.all(frames[:, 0][:, image == 255] == 1) and torch.all(
        frames[:, 0][:, image == 0] == 0
    )
    rate = frames.mean(0)[0]  # spike rate ~ intensity
    assert abs(rate.mean().item() - image.float().div(255).mean().item()) < 0.02
    split = load(3, val_fraction=0.2)  # a sample's spikes do not depend on its split
    first = read_idx(fashion / "FashionMNIST/raw/train-images-idx3-ubyte.gz")
    for dataset in (split.train, split.val):
        for i in range(len(dataset)):
            index = int(dataset.ids[i])
            assert torch.equal(dataset.images[i], torch.from_numpy(first[index]))
            torch.testing.assert_close(dataset[i][0], a.train[index][0])


def test_mnist_from_data_path_with_one_file_pair(tmp_path):
    folder = tmp_path / "elsewhere"  # the files themselves, no raw/ folder
    write_fake_mnist(folder, 40, "train", compress=False, size=12)
    data = load_dataset("mnist", data_path=folder, timesteps=2, test_fraction=0.25)
    assert (len(data.train), len(data.test)) == (30, 10)
    assert data.input_shape == (1, 12, 12) and data.train[0][0].shape == (2, 1, 12, 12)
    again = load_dataset("mnist", data_path=folder, timesteps=2, test_fraction=0.25)
    assert torch.equal(data.test.ids, again.test.ids)  # the split is reproducible
    both = torch.cat([data.train.ids, data.test.ids]).sort().values
    assert both.tolist() == list(range(40))
    val = load_dataset(
        "mnist", data_path=folder, timesteps=2, val_fraction=0.25, test_fraction=0.25
    )
    assert (len(val.train), len(val.val), len(val.test)) == (20, 10, 10)


def test_default_root_and_plain_file_preferred(tmp_path, monkeypatch):
    raw = tmp_path / "MNIST" / "raw"
    write_fake_mnist(raw, 10, "train", compress=True)
    write_fake_mnist(raw, 20, "train", compress=False)  # torchvision keeps both: plain wins
    monkeypatch.setenv("PRIME_DATA", str(tmp_path))
    data = load_dataset("mnist", timesteps=1)
    assert len(data.train) + len(data.test) == 20


def test_unknown_options_and_bad_values(fashion):
    for option in ({"downsample": 32}, {"download": True}, {"split_mode": "time"}):
        with pytest.raises(PrimeError, match="'fashion-mnist' does not take the option"):
            load_dataset("fashion-mnist", data_root=fashion, **option)
    with pytest.raises(PrimeError, match="unknown encoding 'latency'; known: repeat, rate"):
        load_dataset("fashion-mnist", data_root=fashion, encoding="latency")
    with pytest.raises(PrimeError, match="timesteps"):
        load_dataset("fashion-mnist", data_root=fashion, timesteps=0)
    with pytest.raises(PrimeError, match="seed"):
        load_dataset("fashion-mnist", data_root=fashion, encoding="rate", seed=-1)


def test_missing_and_mismatched_files(tmp_path):
    with pytest.raises(PrimeError) as exc:
        load_dataset("mnist", data_root=tmp_path)
    message = str(exc.value)
    assert "MNIST files not found" in message and str(tmp_path / "MNIST") in message
    assert "torchvision.datasets.MNIST" in message and "--data-root" in message
    raw = tmp_path / "FashionMNIST" / "raw"
    images, labels = write_fake_mnist(raw, 10, "test")
    labels.unlink()
    with pytest.raises(PrimeError, match="has t10k-images-idx3-ubyte.gz but not t10k-labels"):
        load_dataset("fashion-mnist", data_root=tmp_path)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(9, np.uint8))
    with pytest.raises(PrimeError, match="9 labels but .* 10 images"):
        load_dataset("fashion-mnist", data_root=tmp_path)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.full(10, 10, np.uint8))
    with pytest.raises(PrimeError, match="labels 10..10"):
        load_dataset("fashion-mnist", data_root=tmp_path)


def test_registry_entries_and_on_disk(fashion):
    for name in ("fashion-mnist", "mnist"):
        spec = dataset_spec(name)
        assert spec.default_model == f"{name}-conv"
    line = dataset_spec("fashion-mnist").on_disk(fashion)
    assert line == f"train: 30 images, t10k: 20 images in {fashion / 'FashionMNIST' / 'raw'}"
    assert dataset_spec("mnist").on_disk(fashion).startswith("train: no files, t10k: no files")
    raw = fashion / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw.write_bytes(b"\x00\x00")
    assert "t10k: unreadable" in dataset_spec("fashion-mnist").on_disk(fashion)
