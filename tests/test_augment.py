"""Training-time frame augmentation and the per-step (early-exit) loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from prime.core.errors import PrimeError
from prime.data.augment import FrameAugmentation, affine_frames, shift_frames
from prime.runs.config import TrainConfig
from prime.runs.train import train, training_loss


def frames(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (3, 5, 2, 12, 12), generator=g).float()


def test_shift_moves_each_recording_as_a_whole():
    x = frames()
    shifts = torch.tensor([[2, -1, 0, 11, -3], [0, 3, -2, 0, 12]])  # dx, dy per sample
    moved = shift_frames(x, shifts)
    assert torch.equal(moved[:, 0, :, :, 2:], x[:, 0, :, :, :-2])  # right by 2
    assert torch.equal(moved[:, 0, :, :, :2], torch.zeros_like(moved[:, 0, :, :, :2]))
    assert torch.equal(moved[:, 1, :, 3:, :-1], x[:, 1, :, :-3, 1:])  # left 1, down 3
    assert moved[:, 3].sum() == x[:, 3, :, :, :1].sum()  # only the first column survives
    assert moved[:, 4].sum() == 0  # moved out entirely


def test_affine_without_rotation_or_zoom_is_the_exact_shift():
    x = frames(1)
    shifts = torch.tensor([[1, -2, 3, 0, -3], [-1, 2, 0, 3, -3]])
    same = affine_frames(x, torch.zeros(5), torch.ones(5), shifts)
    assert torch.equal(same, shift_frames(x, shifts))


def test_draws_come_from_the_generator_only():
    aug = FrameAugmentation(shift_px=3, rotate_deg=15.0, zoom=0.1)
    x = frames(2)
    a = aug(x, torch.Generator().manual_seed(7))
    b = aug(x, torch.Generator().manual_seed(7))
    c = aug(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == x.shape and set(a.unique().tolist()) <= set(x.unique().tolist())
    moves = aug.draw(1000, torch.Generator().manual_seed(0))
    assert moves[:, :2].abs().max() == 3 and moves[:, 2].abs().max() <= 0.2618
    assert 0.9 <= moves[:, 3].min() and moves[:, 3].max() <= 1.1


def test_bad_augmentation_settings_are_named():
    with pytest.raises(PrimeError, match="unknown augmentation flip"):
        FrameAugmentation.from_config({"flip": True})
    with pytest.raises(PrimeError, match="shift_px must be a whole number"):
        TrainConfig(augment={"shift_px": -1})
    with pytest.raises(PrimeError, match="zoom must be a number in"):
        FrameAugmentation(zoom=2.0)
    with pytest.raises(PrimeError, match=r"needs image frames \[T, B, C, H, W\]"):
        FrameAugmentation(shift_px=1)(torch.zeros(3, 2, 700), torch.Generator())
    with pytest.raises(PrimeError, match="exit loss weight must be in"):
        TrainConfig(exit_loss=1.5)


def test_augmenting_a_non_image_dataset_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "features.npz"
    np.savez(path, features=rng.random((20, 23, 20)).astype(np.float32), labels=np.arange(20) % 10)
    config = TrainConfig(
        dataset="npz",
        model="spoken-digits-mlp",
        data={"data_path": str(path), "data_root": str(tmp_path)},
        epochs=1,
        augment={"shift_px": 2},
    )
    with pytest.raises(PrimeError, match="frame augmentation moves image frames"):
        train(config, tmp_path / "run", progress=False)


def test_training_loss_weights_the_running_mean_of_every_step():
    g = torch.Generator().manual_seed(0)
    outputs = torch.randn(4, 6, 10, generator=g)
    labels = torch.randint(0, 10, (6,), generator=g)
    plain = F.cross_entropy(outputs.mean(0), labels)
    assert torch.equal(training_loss(outputs, labels, 0.0), plain)
    per_step = torch.stack(
        [F.cross_entropy(outputs[: t + 1].mean(0), labels) for t in range(4)]
    ).mean()
    torch.testing.assert_close(training_loss(outputs, labels, 1.0), per_step)
    torch.testing.assert_close(training_loss(outputs, labels, 0.25), 0.75 * plain + 0.25 * per_step)
