"""Small fake event datasets in the exact on-disk formats of the real ones (tests, benchmarks).

Every writer draws from an explicit seed. Events are uniform in space and time with a
class-dependent bright square, so a network can tell classes apart.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from prime.core.io import atomic_hdf5, atomic_path, atomic_write

NMNIST_MAX_US = 2**23  # 23-bit timestamps (no overflow records needed below this)


def encode_nmnist(x: np.ndarray, y: np.ndarray, p: np.ndarray, t_us: np.ndarray) -> bytes:
    """N-MNIST's 40-bit event records: x (8 bit), y (8 bit), polarity (1 bit), t (23 bit, µs)."""
    t_us = np.asarray(t_us, dtype=np.int64)
    if t_us.size and (t_us.min() < 0 or t_us.max() >= NMNIST_MAX_US):
        raise ValueError(f"N-MNIST timestamps must be in [0, {NMNIST_MAX_US}) µs")
    records = np.empty((len(t_us), 5), dtype=np.uint8)
    records[:, 0] = x
    records[:, 1] = y
    records[:, 2] = (np.asarray(p, dtype=np.int64) << 7) | (t_us >> 16)
    records[:, 3] = (t_us >> 8) & 0xFF
    records[:, 4] = t_us & 0xFF
    return records.tobytes()


def _events(
    rng: np.random.Generator, label: int, n: int, size: int, duration_us: int
) -> tuple[np.ndarray, ...]:
    """n events (x, y, p, t sorted) on a size x size sensor; half in the label's square."""
    x, y = rng.integers(0, size, n), rng.integers(0, size, n)
    half = n // 2
    corner = (label * size // 10) % max(size - size // 4, 1)
    x[:half] = corner + rng.integers(0, size // 4, half)
    y[:half] = corner + rng.integers(0, size // 4, half)
    order = rng.permutation(n)
    t = np.sort(rng.integers(0, duration_us, n))
    return x[order], y[order], rng.integers(0, 2, n), t


def write_fake_nmnist(
    folder: str | Path,
    per_class: int,
    split: str = "Train",
    seed: int = 0,
    events: int = 4000,
) -> list[Path]:
    """``per_class`` recordings per digit as ``<folder>/<split>/<digit>/<id>.bin``."""
    rng = np.random.default_rng(seed)
    paths = []
    for label in range(10):
        for i in range(per_class):
            path = Path(folder, split, str(label), f"{label * per_class + i + 1:05d}.bin")
            data = encode_nmnist(*_events(rng, label, events, 34, 300_000))
            atomic_write(path, _bytes_writer(data))
            paths.append(path)
    return paths


def write_fake_dvsgesture(
    folder: str | Path,
    per_class: int,
    split: str = "ibmGestureTrain",
    seed: int = 0,
    events: int = 5000,
    classes: int = 11,
) -> list[Path]:
    """Clips as ``<folder>/<split>/user<NN>_<lighting>/<label>.npy``: int32 x, y, p, t (ms)."""
    rng = np.random.default_rng(seed)
    paths = []
    for user in range(per_class):
        for label in range(classes):
            x, y, p, t_ms = _events(rng, label, events, 128, 6000)
            path = Path(folder, split, f"user{user + 1:02d}_fluorescent", f"{label}.npy")
            clip = np.stack([x, y, p, t_ms], axis=1).astype(np.int32)
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, clip)
            paths.append(path)
    return paths


def write_fake_shd(
    folder: str | Path, samples: int, split: str = "train", seed: int = 0, spikes: int = 3000
) -> Path:
    """``<folder>/shd_<split>.h5`` as released: spikes/times (s), spikes/units, labels, extra/."""
    rng = np.random.default_rng(seed)
    labels = np.arange(samples) % 20
    times, units = [], []
    for label in labels:
        unit = rng.integers(0, 700, spikes)
        unit[: spikes // 2] = label * 35 + rng.integers(0, 35, spikes // 2)
        times.append(np.sort(rng.uniform(0, 1.0, spikes)).astype(np.float16))
        units.append(rng.permutation(unit).astype(np.uint16))
    path = Path(folder, f"shd_{split}.h5")
    with atomic_hdf5(path) as f:
        for name, rows, dtype in (("times", times, np.float16), ("units", units, np.uint16)):
            column = f.create_dataset(f"spikes/{name}", (samples,), h5py.vlen_dtype(dtype))
            for i, row in enumerate(rows):
                column[i] = row
        f.create_dataset("labels", data=labels.astype(np.uint16))
        f.create_dataset("extra/speaker", data=np.zeros(samples, dtype=np.uint16))
        keys = [f"{lang}-{d}" for lang in ("english", "german") for d in range(10)]
        f.create_dataset("extra/keys", data=np.array(keys, dtype="S"))
    return path


def _bytes_writer(data: bytes) -> Callable[[Path], int]:
    return lambda tmp: tmp.write_bytes(data)
