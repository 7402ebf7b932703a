"""Spiking Heidelberg Digits (Cramer et al. 2020) through tonic: 700 channels, 20 classes.

Files as released, ``<folder>/shd_train.h5`` and ``shd_test.h5`` (spikes/times in s,
spikes/units, labels, extra/keys, extra/speaker), where the folder is ``<data root>/SHD``
or ``data_path``. Frames are spike counts per channel in T time bins of equal duration
(tonic ``ToFrame``), [T, 700].
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tonic.datasets
import tonic.transforms

from prime.data.base import DATASETS, DatasetSpec, DataSplits
from prime.data.tonic_files import Offline, check_timesteps, to_frame, tonic_splits

CHANNELS = 700
DEFAULT_TIMESTEPS = 50


class SHD(Offline, tonic.datasets.SHD):
    """tonic's SHD, reading its .h5 files from disk only."""

    layout = "shd_train.h5 and shd_test.h5"
    source = "https://zenkelab.org/datasets/ (shd_train.h5.zip, shd_test.h5.zip, unzipped)"

    def present(self) -> bool:
        return Path(self.location_on_system, self.data_filename).is_file()

    def files(self) -> list[str]:
        return [str(Path(self.location_on_system, self.data_filename))]


class Channels:
    """tonic's frames of a 1-D sensor [T, 1, 700] -> [T, 700]."""

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return frames.reshape(len(frames), -1)


def load_shd(timesteps: int = DEFAULT_TIMESTEPS, seed: int = 0, **options: Any) -> DataSplits:
    """Train/test spike counts [T, 700] (uint8). ``seed`` changes neither frames nor split.

    ``options`` are those of :func:`prime.data.tonic_files.tonic_splits` (data_root,
    data_path, test_fraction, ...).
    """
    to_counts = to_frame(tonic.datasets.SHD.sensor_size, check_timesteps(timesteps), "time")
    transform = tonic.transforms.Compose([to_counts, Channels()])
    params = {"timesteps": timesteps}
    return tonic_splits("shd", SHD, transform, params, num_classes=20, **options)


def on_disk(root: Path) -> str:
    folder = Path(root) / "SHD"
    found = [name for name in ("shd_train.h5", "shd_test.h5") if (folder / name).is_file()]
    return f"{', '.join(found) or 'no files'} in {folder}"


DATASETS.register("shd")(
    DatasetSpec(
        load_shd,
        default_model="shd-mlp",
        description="Spiking Heidelberg Digits (700 channels, 20 classes), SHD/shd_*.h5",
        on_disk=on_disk,
    )
)
