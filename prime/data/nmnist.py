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

import tonic.datasets

from prime.data import DATASETS, DatasetSpec, DataSplits
from prime.data.splits import reject_options, resolve_root
from prime.data.tonic_files import Offline, check_timesteps, to_frame, tonic_splits


class NMNIST(Offline, tonic.datasets.NMNIST):
    """tonic's N-MNIST on any subset of its recordings."""

    layout = "Train/<digit>/<id>.bin and Test/<digit>/<id>.bin (40-bit event records)"
    source = "https://www.garrickorchard.com/datasets/n-mnist (Train.zip, Test.zip, unzipped)"

    def present(self) -> bool:
        return self.count("*/*.bin") > 0


def load_nmnist(
    timesteps: int = 10,
    seed: int = 0,
    split_mode: str = "time",
    data_root: str | Path | None = None,
    data_path: str | Path | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    download: bool = False,
    workers: int | None = None,
    **unknown: object,
) -> DataSplits:
    """Train/test frames [T, 2, 34, 34] (uint8 event counts) of N-MNIST.

    ``seed`` (the training seed) does not change N-MNIST's frames or split; ``split_seed``
    and the fractions choose the split of a folder without ``Test/``.
    """
    reject_options("nmnist", unknown)
    root = resolve_root(data_root)
    transform = to_frame(tonic.datasets.NMNIST.sensor_size, check_timesteps(timesteps), split_mode)
    return tonic_splits(
        "nmnist",
        lambda train: NMNIST(
            root, train=train, transform=transform, download=download, folder=data_path
        ),
        root,
        {"timesteps": timesteps, "split_mode": split_mode},
        num_classes=10,
        split=dict(test_fraction=test_fraction, val_fraction=val_fraction, split_seed=split_seed),
        workers=workers,
    )


def on_disk(root: Path) -> str:
    folder = Path(root) / "NMNIST"
    counts = {s: sum(1 for _ in (folder / s).glob("*/*.bin")) for s in ("Train", "Test")}
    return ", ".join(f"{s}: {n:,} recordings" for s, n in counts.items()) + f" in {folder}"


DATASETS.register("nmnist")(
    DatasetSpec(
        load_nmnist,
        default_model="nmnist-conv",
        description="N-MNIST (2x34x34 events, 10 classes), tonic layout NMNIST/Train|Test",
        on_disk=on_disk,
    )
)
