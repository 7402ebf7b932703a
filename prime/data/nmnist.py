"""N-MNIST (Orchard et al. 2015) through tonic: 2x34x34 event frames, 10 classes, T = 10.

Files in tonic's layout, ``<folder>/Train/<digit>/<id>.bin`` and ``<folder>/Test/...``
(original 40-bit event records), where the folder is ``<data root>/NMNIST`` or
``data_path``. Any subset of recordings works; a folder with only ``Train/`` (such as
``../shared/reference/nmnist``) is split into train, validation and test reproducibly.

Frames are tonic's ``ToFrame`` event counts, as in the PRIME reference. ``split_mode="time"``
(default) gives T frames of equal duration: N-MNIST's three 100 ms saccades then fall on
the same frames in every recording, and the PRIME authors' model scores higher on them
(98.0 % vs 97.8 % with equal event counts on 1,000 real recordings); ``"events"`` gives T
frames of equal event count.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import tonic.datasets
import tonic.io

from prime.core.errors import PrimeError
from prime.data.base import DATASETS, DatasetSpec, DataSplits
from prime.data.tonic_files import (
    Offline,
    check_timesteps,
    count_files,
    to_frame,
    tonic_splits,
    unreadable,
)


class NMNIST(Offline, tonic.datasets.NMNIST):
    """tonic's N-MNIST on any subset of its recordings.

    Recordings that cannot be right are refused with the file named, never trained on: a
    class folder that is not a digit, a file that is empty or not whole 5-byte records
    (checked when the folder is opened), events outside the 34x34 sensor (checked when the
    recording is binned).
    """

    layout = "Train/<digit>/<id>.bin and Test/<digit>/<id>.bin (40-bit event records)"
    source = "https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip, unzipped)"

    def present(self) -> bool:
        return self.count("*/*.bin") > 0

    def _check_exists(self) -> bool:
        if not self.present():
            return False
        for path in sorted(Path(self.location_on_system, self.folder_name).rglob("*.bin")):
            if path.parent.name not in DIGITS:
                raise PrimeError(
                    f"N-MNIST recording {path} is in the folder {path.parent.name!r}, which is "
                    "not a class (0 to 9): move it into its digit's folder or remove it"
                )
            size = path.stat().st_size
            if size == 0 or size % EVENT_BYTES:
                raise PrimeError(
                    unreadable("N-MNIST", path, f"{size} bytes, not whole 5-byte events")
                )
        return True

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path = self.data[index]
        events = tonic.io.read_mnist_file(path, dtype=self.dtype)
        width, height, _ = self.sensor_size
        outside = (events["x"] >= width) | (events["y"] >= height)
        if len(events) == 0 or outside.any():
            problem = f"{int(outside.sum())} of {len(events)} events outside the 34x34 sensor"
            raise PrimeError(unreadable("N-MNIST", Path(path), problem))
        return self.transform(events), self.targets[index]


DIGITS = tuple("0123456789")
EVENT_BYTES = 5  # one 40-bit event record


def load_nmnist(
    timesteps: int = 10, seed: int = 0, split_mode: str = "time", **options: Any
) -> DataSplits:
    """Train/test frames [T, 2, 34, 34] (uint8 event counts) of N-MNIST.

    ``seed`` (the training seed) changes neither frames nor split; ``options`` are those of
    :func:`prime.data.tonic_files.tonic_splits` (data_root, data_path, test_fraction, ...).
    """
    transform = to_frame(tonic.datasets.NMNIST.sensor_size, check_timesteps(timesteps), split_mode)
    params = {"timesteps": timesteps, "split_mode": split_mode}
    return tonic_splits("nmnist", NMNIST, transform, params, num_classes=10, **options)


def on_disk(root: Path) -> str:
    return count_files(Path(root) / "NMNIST", ("Train", "Test"), "*/*.bin", "recordings")


DATASETS.register("nmnist")(
    DatasetSpec(
        load_nmnist,
        default_model="nmnist-conv",
        description="N-MNIST (2x34x34 events, 10 classes), tonic layout NMNIST/Train|Test",
        on_disk=on_disk,
    )
)
