"""MNIST and Fashion-MNIST from their IDX files: static 1xHxW images as T frames, 10 classes.

Files in torchvision's layout, plain or gzip-compressed (either works; plain is read when
both are there)::

    <data root>/FashionMNIST/raw/train-images-idx3-ubyte[.gz]   (and train-labels-idx1-ubyte)
    <data root>/FashionMNIST/raw/t10k-images-idx3-ubyte[.gz]    (and t10k-labels-idx1-ubyte)
    <data root>/MNIST/raw/...                                   (the same four names)

``data_path`` replaces ``<data root>/FashionMNIST`` (the folder holding ``raw/``, or the
folder holding the files). With only the train (or only the t10k) files, that pair is
split reproducibly (:func:`prime.data.splits.split_indices`).

Pixels become intensities in [0, 1] (value / 255) and then T frames [T, 1, H, W] (float32):
``encoding="repeat"`` feeds the image itself at every step (direct input, as the pruning
paper and PRIME's inpainting do); ``encoding="rate"`` draws Bernoulli spikes, a pixel
firing at each step with probability = its intensity, from a random stream seeded by
(seed, file, sample index), so the same seed gives the same spikes in every epoch and run.
Frames are made on access (no frame cache: the images are small and read in a second).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from prime.core.errors import PrimeError
from prime.data.base import DATASETS, DatasetSpec, DataSplits, MissingData
from prime.data.idx import read_idx_header, read_idx_pair, write_idx
from prime.data.splits import reject_options, resolve_root, split_indices
from prime.data.tonic_files import check_timesteps

ENCODINGS = ("repeat", "rate")
DEFAULT_TIMESTEPS = 10
NUM_CLASSES = 10
#: split -> (image file, label file), without the optional .gz
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: file -> number in the rate-coding seed, so train and t10k sample i draw different spikes
STREAMS = {"train": 0, "test": 1}


#: dataset name -> (torchvision folder and class name, where to get the files, default model)
SOURCES = {
    "fashion-mnist": (
        "FashionMNIST",
        "https://github.com/zalandoresearch/fashion-mnist (data/fashion/*.gz)",
        "fashion-mnist-conv",
    ),
    "mnist": (
        "MNIST",
        "https://ossci-datasets.s3.amazonaws.com/mnist/ (torchvision's mirror of the four .gz)",
        "mnist-conv",
    ),
}


class ImageFrames(Dataset):
    """uint8 images [N, H, W] -> (frames float32 [T, 1, H, W], label), made on access.

    ``ids`` [N] are the samples' indices in their file (the rate code's seed), kept by
    :meth:`select`, so a sample's spikes do not depend on the split it lands in.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        timesteps: int,
        encoding: str,
        seed: int,
        stream: int,
        ids: torch.Tensor | None = None,
    ) -> None:
        if encoding not in ENCODINGS:
            raise PrimeError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
        self.images, self.labels = images, labels
        self.ids = torch.arange(len(labels)) if ids is None else ids
        self.timesteps, self.encoding, self.seed, self.stream = timesteps, encoding, seed, stream

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: np.ndarray) -> ImageFrames:
        """The samples at ``indices`` (with the same frames as here)."""
        index = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ImageFrames(
            self.images[index],
            self.labels[index],
            self.timesteps,
            self.encoding,
            self.seed,
            self.stream,
            self.ids[index],
        )

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.images, self.labels, self.ids

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        intensity = self.images[index].float().div_(255)[None]  # [1, H, W] in [0, 1]
        shape = (self.timesteps, *intensity.shape)
        if self.encoding == "repeat":
            frames = intensity.expand(shape).contiguous()
        else:
            rng = np.random.default_rng([self.seed, self.stream, int(self.ids[index])])
            draws = torch.from_numpy(rng.random(shape, dtype=np.float32))
            frames = (draws < intensity).float()
        return frames, int(self.labels[index])


def find_file(folder: Path, name: str) -> Path | None:
    """``folder/name`` or else ``folder/name.gz``, whichever exists first; None if neither."""
    for path in (folder / name, folder / f"{name}.gz"):
        if path.is_file():
            return path
    return None


def raw_folder(dataset: str, data_root: str | Path | None, data_path: str | Path | None) -> Path:
    """The folder holding the IDX files: ``<folder>/raw`` if it exists, else ``<folder>``."""
    folder = Path(data_path) if data_path else resolve_root(data_root) / SOURCES[dataset][0]
    return folder / "raw" if (folder / "raw").is_dir() else folder


def split_files(folder: Path, split: str) -> tuple[Path, Path] | None:
    """(image file, label file) of a split, None if neither is there; one alone is an error."""
    names = FILES[split]
    images, labels = (find_file(folder, name) for name in names)
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        have, lack = (labels, names[0]) if images is None else (images, names[1])
        assert have is not None  # one of the two is there (neither returned None above)
        raise PrimeError(
            f"{folder} has {have.name} but not {lack} (or {lack}.gz); put the matching file "
            "beside it (every image file needs its label file)"
        )
    return images, labels


def missing_data(dataset: str, folder: Path) -> MissingData:
    name, source, _ = SOURCES[dataset]
    files = "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]"
    return MissingData(
        f"{name} files not found: expected {files} in {folder} (torchvision's layout "
        f"<root>/{name}/raw/)",
        f"get them from {source} (or torchvision.datasets.{name}(root, download=True)), then "
        f"pass --data-path to that folder or --data-root (or PRIME_DATA) to the folder that "
        f"holds {name}/",
    )


def read_split(
    paths: tuple[Path, Path], timesteps: int, encoding: str, seed: int, stream: int
) -> ImageFrames:
    """One file pair as ImageFrames; labels must be 0..9."""
    images, labels = read_idx_pair(*paths)
    if len(labels) and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise PrimeError(
            f"{paths[1]} has labels {labels.min()}..{labels.max()}; MNIST-style labels are "
            f"0..{NUM_CLASSES - 1}: check that it is the right label file"
        )
    if not len(labels):
        raise PrimeError(f"{paths[0]} holds no images; download it again")
    images_t, labels_t = torch.from_numpy(images), torch.from_numpy(labels)
    return ImageFrames(images_t, labels_t, timesteps, encoding, seed, stream)


def load_idx_dataset(
    dataset: str,
    timesteps: int = DEFAULT_TIMESTEPS,
    seed: int = 0,
    encoding: str = "repeat",
    data_root: str | Path | None = None,
    data_path: str | Path | None = None,
    test_fraction: float = 0.2,
    val_fraction: float = 0.0,
    split_seed: int = 0,
    **unknown: object,
) -> DataSplits:
    """Train/test (and validation) frames [T, 1, H, W] (float32 in [0, 1]) of ``dataset``.

    ``encoding``: "repeat" (the image at every step) or "rate" (Bernoulli spikes seeded by
    ``seed``, the training seed). ``test_fraction``, ``val_fraction``, ``split_seed``: the
    reproducible split of a folder with only one file pair; the validation part always
    comes from the train file (t10k stays the test set when present).
    """
    reject_options(dataset, unknown)
    check_timesteps(timesteps)
    if encoding not in ENCODINGS:
        raise PrimeError(f"unknown encoding {encoding!r}; known: {', '.join(ENCODINGS)}")
    if encoding == "rate" and (not isinstance(seed, int) or seed < 0):
        raise PrimeError(f"rate coding needs a seed that is a whole number >= 0, got {seed!r}")
    folder = raw_folder(dataset, data_root, data_path)
    looked_up = {split: split_files(folder, split) for split in FILES}
    found = {split: paths for split, paths in looked_up.items() if paths is not None}
    if not found:
        raise missing_data(dataset, folder)
    sets = {
        split: read_split(paths, timesteps, encoding, seed, STREAMS[split])
        for split, paths in found.items()
    }
    sizes = {split: tuple(s.images.shape[1:]) for split, s in sets.items()}
    if len(set(sizes.values())) > 1:
        raise PrimeError(
            f"the train and t10k images in {folder} differ in size ({sizes['train']} vs "
            f"{sizes['test']}); both pairs must come from the same dataset"
        )
    if "train" in sets:
        train, test = sets["train"], sets.get("test")
    else:  # only the t10k pair: split it
        train, test = sets["test"], None
    fraction = test_fraction if test is None else 0.0
    labels = train.labels.numpy()
    train_idx, val_idx, test_idx = split_indices(labels, fraction, val_fraction, split_seed)
    return DataSplits(
        train=train.select(train_idx),
        test=train.select(test_idx) if test is None else test,
        val=train.select(val_idx) if val_fraction else None,
        input_shape=(1, *train.images.shape[1:]),
        num_classes=NUM_CLASSES,
        timesteps=timesteps,
    )


def on_disk(dataset: str, root: Path) -> str:
    """``prime datasets``' line, e.g. "train: 60,000 images, t10k: 10,000 images in ..."."""
    folder = raw_folder(dataset, root, None)
    parts = []
    for split, (images, _) in FILES.items():
        name = images.split("-")[0]
        try:
            paths = split_files(folder, split)
            if paths is None:
                parts.append(f"{name}: no files")
                continue
            _, shape = read_idx_header(paths[0])
            parts.append(f"{name}: {shape[0]:,} images")
        except PrimeError:
            parts.append(f"{name}: unreadable or incomplete")
    return ", ".join(parts) + f" in {folder}"


def write_fake_mnist(
    folder: str | Path,
    samples: int,
    split: str = "train",
    seed: int = 0,
    compress: bool = True,
    size: int = 28,
) -> tuple[Path, Path]:
    """A fake file pair in the real IDX format: ``<folder>/<train|t10k>-...-ubyte[.gz]``.

    uint8 images [samples, size, size] with noise and a bright square that depends on the
    label (labels 0..9 in turn), so a network can tell classes apart.
    """
    rng = np.random.default_rng(seed)
    labels = (np.arange(samples) % NUM_CLASSES).astype(np.uint8)
    images = rng.integers(0, 64, (samples, size, size)).astype(np.uint8)
    side = max(size // 4, 1)
    for i, label in enumerate(labels):
        corner = (int(label) * size // NUM_CLASSES) % max(size - side, 1)
        images[i, corner : corner + side, corner : corner + side] = 255
    suffix = ".gz" if compress else ""
    image_name, label_name = FILES[split]
    return (
        write_idx(Path(folder, image_name + suffix), images),
        write_idx(Path(folder, label_name + suffix), labels),
    )


def _register(dataset: str, description: str) -> None:
    name, _, model = SOURCES[dataset]
    DATASETS.register(dataset)(
        DatasetSpec(
            functools.partial(load_idx_dataset, dataset),
            default_model=model,
            description=description,
            on_disk=functools.partial(on_disk, dataset),
        )
    )


_register(
    "fashion-mnist",
    "Fashion-MNIST (1x28x28 images as T frames, 10 classes), FashionMNIST/raw/*-ubyte[.gz]; "
    "[--encoding rate] (default: repeat)",
)
_register(
    "mnist",
    "MNIST (1x28x28 images as T frames, 10 classes), MNIST/raw/*-ubyte[.gz]; "
    "[--encoding rate] (default: repeat)",
)
