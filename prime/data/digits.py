"""Neuromorphic digits: a built-in, offline N-MNIST-like event dataset.

scikit-learn's bundled handwritten digits (1,797 real 8x8 scans) are rendered at 28x28 on a
34x34 sensor and moved along N-MNIST's three-saccade path (an isosceles triangle, 100 ms per
saccade, as the ATIS camera moved when N-MNIST was recorded). An emulated DVS pixel emits an
ON/OFF event whenever its log intensity has changed by the contrast threshold since its last
event. Events are tonic structured arrays (x, y, t in µs, p) binned to frames with tonic's
``ToFrame``. Everything is deterministic for a seed; the train/test split is fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tonic.transforms
import torch
import torch.nn.functional as F

from prime.data.base import DATASETS, DatasetSpec, DataSplits
from prime.data.cache import cached_frames
from prime.data.splits import reject_options, resolve_root, subset
from prime.data.tonic_files import EventList, check_timesteps, user_transform

SENSOR_SIZE = (34, 34, 2)  # tonic order: (width, height, polarities)
EVENT_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
SACCADE_US = 100_000
#: triangle vertices of the camera path, pixels (dx, dy); ends where it starts
SACCADE_PATH = np.array([(0.0, 0.0), (2.0, 4.0), (4.0, 0.0), (0.0, 0.0)])
SAMPLES_PER_SACCADE = 16
CONTRAST_THRESHOLD = 0.5
TEST_FRACTION = 0.2


def render_path(images: np.ndarray) -> np.ndarray:
    """Intensity in [0, 1] seen along the saccade path.

    images [N, 8, 8] in [0, 16] -> [N, S, 34, 34] float32, S = 3 * SAMPLES_PER_SACCADE + 1.
    """
    n = len(images)
    fractions = np.linspace(0, 1, SAMPLES_PER_SACCADE, endpoint=False)
    steps = [
        a + f * (b - a)
        for a, b in zip(SACCADE_PATH[:-1], SACCADE_PATH[1:], strict=True)
        for f in fractions
    ]
    path = np.array([*steps, SACCADE_PATH[-1]])  # [S, 2] pixel offsets
    # sensor pixel centre -> normalised source coordinate of a 28x28 digit placed at (1, 1)
    size, digit, origin = SENSOR_SIZE[0], 28.0, 1.0
    pix = np.arange(size) + 0.5
    x = (pix[None, :] - origin - path[:, :1]) / digit * 2 - 1  # [S, W]
    y = (pix[None, :] - origin - path[:, 1:]) / digit * 2 - 1  # [S, H]
    grid = np.stack(np.broadcast_arrays(x[:, None, :], y[:, :, None]), axis=-1)  # [S, H, W, 2]
    source = torch.as_tensor(images / 16.0, dtype=torch.float32)[:, None]  # [N, 1, 8, 8]
    grid_t = torch.as_tensor(grid, dtype=torch.float32)
    out = torch.empty(n, len(path), size, size)
    for s in range(len(path)):
        g = grid_t[s].expand(n, -1, -1, -1)
        out[:, s] = F.grid_sample(source, g, mode="bilinear", align_corners=False)[:, 0]
    return out.numpy()


def emit_events(intensity: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """DVS emulation: intensity [N, S, H, W] -> N tonic event arrays, each sorted by time."""
    log_i = np.log(intensity + 0.05)
    reference = log_i[:, 0].copy()
    dt_us = SACCADE_US / SAMPLES_PER_SACCADE
    columns = []  # per step: (sample, x, y, t, p) of every event
    for s in range(1, log_i.shape[1]):
        change = log_i[:, s] - reference
        count = np.floor(np.abs(change) / CONTRAST_THRESHOLD).astype(np.int64)
        sample, ys, xs = count.nonzero()
        n = count[sample, ys, xs]
        step = change[sample, ys, xs]
        reference[sample, ys, xs] += np.sign(step) * n * CONTRAST_THRESHOLD
        t = (s - 1) * dt_us + rng.uniform(0, dt_us, n.sum())
        columns.append([np.repeat(a, n) for a in (sample, xs, ys)] + [t, np.repeat(step > 0, n)])
    sample, x, y, t, p = (np.concatenate(c) for c in zip(*columns, strict=True))
    order = np.lexsort((t, sample))  # by sample, then time
    events = np.empty(len(order), dtype=EVENT_DTYPE)
    events["x"], events["y"], events["t"], events["p"] = x[order], y[order], t[order], p[order]
    bounds = np.searchsorted(sample[order], np.arange(1, len(intensity)))
    return np.split(events, bounds)


def make_events(
    seed: int = 0, indices: np.ndarray | None = None
) -> tuple[list[np.ndarray], np.ndarray]:
    """Recordings as tonic event arrays, and their labels [N] (int64).

    All 1,797 digits, or those at ``indices``; a recording depends on the seed and on which
    digits are generated together (they share one random stream).
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images, labels = digits.images, digits.target.astype(np.int64)
    if indices is not None:
        images, labels = images[indices], labels[indices]
    return emit_events(render_path(images), np.random.default_rng(seed)), labels


def split_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The fixed stratified split: 80 % train, 20 % test (seed 0, whatever the event seed)."""
    from sklearn.model_selection import train_test_split

    return train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=0, stratify=labels
    )


def load_digits_dataset(
    timesteps: int = 10,
    seed: int = 0,
    data_root: str | None = None,
    transform: Callable[[np.ndarray], Any] | None = None,
    **unknown: object,
) -> DataSplits:
    """Train/test frames [T, 2, 34, 34] (event counts) of the neuromorphic digits.

    The frames are cached under the data root (:mod:`prime.data.cache`). ``transform``, a
    tonic transform of the events (34x34 sensor, 2 polarities), replaces the ``ToFrame``
    into ``timesteps`` frames (:func:`~prime.data.tonic_files.user_transform`). The dataset
    is built in, with a fixed split: any other option is refused.
    """
    reject_options("digits", unknown)
    check_timesteps(timesteps)
    frames_of, binning = user_transform(
        tonic.transforms.ToFrame(sensor_size=SENSOR_SIZE, n_time_bins=timesteps),
        {"timesteps": timesteps},
        transform,
    )
    params = {
        **binning,
        "seed": seed,
        "emulation": [SACCADE_US, SAMPLES_PER_SACCADE, CONTRAST_THRESHOLD],
    }
    frames = cached_frames(
        resolve_root(data_root),
        "digits",
        "all",
        params,
        lambda: EventList(*make_events(seed), frames_of),
    )
    train, test = split_indices(frames.labels.numpy())
    return DataSplits(
        train=subset(frames, train),
        test=subset(frames, test),
        input_shape=tuple(frames.frames.shape[2:]),
        num_classes=10,
        timesteps=frames.frames.shape[1],
    )


DATASETS.register("digits")(
    DatasetSpec(
        load_digits_dataset,
        default_model="digits-conv",
        description="built-in neuromorphic digits (scikit-learn digits as N-MNIST-like events)",
    )
)
