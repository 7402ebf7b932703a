"""Images for inpainting, 1 x 32 x 32 in [-1, 1], and the masks that blank part of them.

Sources (``load_images(name)``):

* ``digits`` (offline default): scikit-learn's 1,797 bundled 8x8 digit scans, upscaled
  bilinearly to 24x24 and centred on a 32x32 canvas (MNIST's digits fill about 20 of its
  28 pixels, 23 of 32 after PRIME's resize); the fixed 80/20 split of :mod:`prime.data.digits`.
* ``mnist``: MNIST from its IDX files (the same reader and layout as ``prime.data.mnist_idx``),
  28x28 resized bilinearly to 32x32 as the reference's ``transforms.Resize((32, 32))``.

Pixels map to [-1, 1] as the reference's ``2 x - 1``. Masks (``inpaint_mask``): ``centre``,
the reference's ``impaint()`` square [12:20, 12:20]; ``square``, a square of the same size at
a random place per image; ``strokes``, random pen strokes. Masked pixels are set to -1
(black), as the reference does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from prime.core.errors import PrimeError
from prime.data.digits import split_indices
from prime.data.mnist_idx import ImageFrames, load_idx_dataset

IMAGE_SIDE = 32
#: side of the built-in digits on the 32x32 canvas
DIGIT_SIDE = 24
MASKS = ("centre", "square", "strokes")
#: the reference's blanked square: pixels [12:20, 12:20] of 32x32
CENTRE_SIZE = 8
STROKES = 3
STROKE_WIDTH_PX = 2.5


@dataclass(frozen=True)
class ImageSplits:
    """Train and test images [N, 1, 32, 32] (float32 in [-1, 1]) with labels [N] (int64)."""

    train: torch.Tensor
    train_labels: torch.Tensor
    test: torch.Tensor
    test_labels: torch.Tensor


def to_signed_images(intensity: torch.Tensor, side: int) -> torch.Tensor:
    """Intensities [N, H, W] in [0, 1] -> [N, 1, side, side] in [-1, 1] (bilinear resize)."""
    resized = F.interpolate(
        intensity[:, None].float(), size=(side, side), mode="bilinear", align_corners=False
    )
    return (2 * resized - 1).clamp(-1, 1)


def digit_images() -> ImageSplits:
    """The built-in digits as 32x32 images in [-1, 1] (see the module docstring)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    labels = torch.from_numpy(digits.target.astype(np.int64))
    small = to_signed_images(torch.from_numpy(digits.images / 16.0), DIGIT_SIDE)
    margin = (IMAGE_SIDE - DIGIT_SIDE) // 2
    images = F.pad(small, (margin,) * 4, value=-1.0)
    train, test = (torch.from_numpy(i) for i in split_indices(digits.target))
    return ImageSplits(images[train], labels[train], images[test], labels[test])


def mnist_images(
    data_root: str | Path | None = None, data_path: str | Path | None = None
) -> ImageSplits:
    """MNIST from its IDX files, resized to 32x32 in [-1, 1]."""
    splits = load_idx_dataset("mnist", timesteps=1, data_root=data_root, data_path=data_path)
    parts = []
    for split in (splits.train, splits.test):
        assert isinstance(split, ImageFrames)  # load_idx_dataset's splits
        parts += [to_signed_images(split.images.float() / 255, IMAGE_SIDE), split.labels]
    return ImageSplits(*parts)


def load_images(name: str, **options: str | Path | None) -> ImageSplits:
    """Inpainting images of ``digits`` (built in) or ``mnist`` (``data_root``/``data_path``)."""
    if name == "digits":
        return digit_images()
    if name == "mnist":
        return mnist_images(**options)
    raise PrimeError(f"no inpainting images for dataset {name!r}; known: digits, mnist")


def inpaint_mask(
    shape: tuple[int, ...],
    kind: str = "centre",
    size: int = CENTRE_SIZE,
    seed: int = 0,
    corner: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Which pixels to blank, bool [N, 1, H, W] for images of ``shape`` [N, C, H, W].

    ``centre``: a ``size`` square in the middle ([12:20, 12:20] of 32x32), or with its top
    left at ``corner`` (row, column); ``square``: a ``size`` square at a place drawn per image;
    ``strokes``: three random strokes 2.5 px wide. Random masks are drawn from ``seed``.
    """
    if len(shape) != 4:
        raise PrimeError(f"masks are for images [N, C, H, W], got shape {tuple(shape)}")
    n, _, h, w = shape
    if kind not in MASKS:
        raise PrimeError(f"unknown mask {kind!r}; known: {', '.join(MASKS)}")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= min(h, w):
        raise PrimeError(f"mask size must be a whole number from 1 to {min(h, w)}, got {size!r}")
    rng = np.random.default_rng(seed)
    mask = np.zeros((n, 1, h, w), dtype=bool)
    if kind == "centre":
        top, left = ((h - size) // 2, (w - size) // 2) if corner is None else corner
        if not (0 <= top <= h - size and 0 <= left <= w - size):
            raise PrimeError(
                f"a {size}x{size} mask at (row {top}, column {left}) lies outside the {h}x{w} "
                f"image: its corner must be within rows 0..{h - size}, columns 0..{w - size}"
            )
        mask[:, :, top : top + size, left : left + size] = True
    elif kind == "square":
        tops = rng.integers(0, h - size + 1, n)
        lefts = rng.integers(0, w - size + 1, n)
        for i, (top, left) in enumerate(zip(tops, lefts, strict=True)):
            mask[i, :, top : top + size, left : left + size] = True
    else:
        rows, cols = np.mgrid[0:h, 0:w] + 0.5
        for i in range(n):
            for _ in range(STROKES):
                (y0, x0), (y1, x1) = rng.uniform(0, (h, w), (2, 2))
                mask[i, 0] |= _distance_to_segment(rows, cols, y0, x0, y1, x1) < STROKE_WIDTH_PX / 2
    return torch.from_numpy(mask)


def _distance_to_segment(
    rows: np.ndarray, cols: np.ndarray, y0: float, x0: float, y1: float, x1: float
) -> np.ndarray:
    """Distance of every pixel centre from the segment (y0, x0)-(y1, x1)."""
    dy, dx = y1 - y0, x1 - x0
    along = ((rows - y0) * dy + (cols - x0) * dx) / max(dy * dy + dx * dx, 1e-12)
    along = np.clip(along, 0, 1)
    return np.hypot(rows - (y0 + along * dy), cols - (x0 + along * dx))


def apply_mask(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Images [N, C, H, W] with the pixels of ``mask`` [N, 1, H, W] set to -1."""
    if mask.shape[0] != images.shape[0] or mask.shape[2:] != images.shape[2:]:
        raise PrimeError(
            f"a mask of {tuple(mask.shape)} does not fit images of {tuple(images.shape)}"
        )
    return images.masked_fill(mask, -1.0)
