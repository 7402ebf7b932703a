"""DVS128 Gesture (Amir et al. 2017) through tonic: 2x128x128 event frames, 11 classes.

Files in tonic's layout, ``<folder>/ibmGestureTrain/user<NN>_<lighting>/<label>.npy`` and
``ibmGestureTest/...`` (int32 columns x, y, p, t in ms), where the folder is
``<data root>/DVSGesture`` or ``data_path``. Any subset of clips works; a single folder is
split reproducibly. Frames are tonic ``ToFrame`` event counts (int16), optionally
down-sampled with tonic's ``Downsample`` to ``downsample`` x ``downsample`` pixels.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import tonic.datasets
import tonic.transforms
from numpy.lib import recfunctions

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

SENSOR_PIXELS = 128
DEFAULT_TIMESTEPS = 20
USER_FOLDER = re.compile(r"user\d+_.+")


class DVSGesture(Offline, tonic.datasets.DVSGesture):
    """tonic's DVS128 Gesture on any subset of its clips.

    Clips that cannot be right are refused with the file named, never trained on: one outside
    a ``user<NN>_<lighting>`` folder or not named by its class (checked when the folder is
    opened), one that is not an integer array [N, 4] of x, y, p, t with events on the
    128x128 sensor (checked when the clip is binned).
    """

    layout = (
        "ibmGestureTrain/user<NN>_<lighting>/<label>.npy and ibmGestureTest/... "
        "(int32 columns x, y, p, t in ms)"
    )
    source = (
        "tonic's preprocessed release (ibmGestureTrain.tar.gz, ibmGestureTest.tar.gz on "
        "figshare; original: https://research.ibm.com/interactive/dvsgesture/)"
    )

    def present(self) -> bool:
        return self.count("*/*.npy") > 0

    def _check_exists(self) -> bool:
        if not self.present():
            return False
        classes = len(tonic.datasets.DVSGesture.classes)
        for path in sorted(Path(self.location_on_system, self.folder_name).rglob("*.npy")):
            if not USER_FOLDER.fullmatch(path.parent.name):
                raise PrimeError(
                    f"DVS Gesture clip {path} is in the folder {path.parent.name!r}, which is "
                    "not a user<NN>_<lighting> folder: move it into its recording's folder or "
                    "remove it"
                )
            if path.stem not in {str(label) for label in range(classes)}:
                raise PrimeError(
                    f"DVS Gesture clip {path} is not named by its class (0.npy to "
                    f"{classes - 1}.npy): rename or remove it"
                )
        return True

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        path = Path(self.data[index])
        try:
            clip = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:  # not a .npy file, or an object array
            raise PrimeError(unreadable("DVS Gesture", path, f"not a NumPy array: {exc}")) from None
        if clip.ndim != 2 or clip.shape[1:] != (4,) or not np.issubdtype(clip.dtype, np.integer):
            problem = f"an array {clip.dtype} {list(clip.shape)}, not integer columns x, y, p, t"
            raise PrimeError(unreadable("DVS Gesture", path, problem))
        outside = (clip[:, :2] < 0).any(1) | (clip[:, :2] >= SENSOR_PIXELS).any(1)
        if len(clip) == 0 or outside.any():
            problem = f"{int(outside.sum())} of {len(clip)} events outside the 128x128 sensor"
            raise PrimeError(unreadable("DVS Gesture", path, problem))
        clip = clip.astype(np.int64)
        clip[:, 3] *= 1000  # ms -> us, as tonic
        events = recfunctions.unstructured_to_structured(clip, self.dtype)  # x, y, p, t
        return self.transform(events), self.targets[index]


def frame_transform(timesteps: int, split_mode: str, downsample: int) -> tonic.transforms.Compose:
    """Down-sampling (if any) to downsample x downsample pixels, then ToFrame."""
    if not isinstance(downsample, int) or not 1 <= downsample <= SENSOR_PIXELS:
        raise PrimeError(f"downsample must be a pixel count in 1..128, got {downsample!r}")
    sensor = tonic.datasets.DVSGesture.sensor_size
    steps = []
    if downsample != SENSOR_PIXELS:
        steps.append(tonic.transforms.Downsample(spatial_factor=downsample / SENSOR_PIXELS))
        sensor = (downsample, downsample, 2)
    steps.append(to_frame(sensor, timesteps, split_mode))
    return tonic.transforms.Compose(steps)


def load_dvsgesture(
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = 0,
    split_mode: str = "time",
    downsample: int = SENSOR_PIXELS,
    **options: Any,
) -> DataSplits:
    """Train/test frames [T, 2, S, S] (int16 event counts), S = ``downsample`` (128 = none).

    ``seed`` (the training seed) changes neither frames nor split; ``options`` are those of
    :func:`prime.data.tonic_files.tonic_splits` (data_root, data_path, test_fraction, ...).
    """
    transform = frame_transform(check_timesteps(timesteps), split_mode, downsample)
    params = {"timesteps": timesteps, "split_mode": split_mode, "downsample": downsample}
    classes = len(tonic.datasets.DVSGesture.classes)
    return tonic_splits(
        "dvsgesture", DVSGesture, transform, params, classes, dtype=np.int16, **options
    )


def on_disk(root: Path) -> str:
    splits = ("ibmGestureTrain", "ibmGestureTest")
    return count_files(Path(root) / "DVSGesture", splits, "*/*.npy", "clips")


DATASETS.register("dvsgesture")(
    DatasetSpec(
        load_dvsgesture,
        default_model="dvsgesture-conv",
        description="DVS128 Gesture (2x128x128 events, 11 classes), tonic layout DVSGesture/",
        on_disk=on_disk,
    )
)
