"""Training-time augmentation of event frames: a frozen dataclass over functional torch code.

Small training sets (a few hundred real recordings) overfit a topology within a few epochs;
moving each recording as a whole, as a saccade or a slightly different sensor position
would, gives the mask new views of the same digit. Every draw comes from the generator the
caller passes (the training loop seeds it from the run's seed, epoch and step, so a resumed
run draws the same), one draw per sample, the same for all of its T frames.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from prime.core.errors import PrimeError


@dataclass(frozen=True)
class FrameAugmentation:
    """Random whole-recording moves of frames [T, B, C, H, W] (event counts).

    Args:
        shift_px: largest shift, pixels, in x and in y (uniform integers in [-s, s]).
        rotate_deg: largest rotation, degrees (uniform in [-r, r]) about the frame centre.
        zoom: largest relative scale change (uniform in [1 - z, 1 + z]).

    With only ``shift_px``, pixels move exactly (events shifted out are dropped, zeros
    enter); rotation or zoom resample with nearest neighbours, so counts stay counts.
    """

    shift_px: int = 0
    rotate_deg: float = 0.0
    zoom: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.shift_px, int) or self.shift_px < 0:
            raise PrimeError(f"augment shift_px must be a whole number >= 0, got {self.shift_px!r}")
        for name, limit in (("rotate_deg", 180.0), ("zoom", 0.9)):
            value = getattr(self, name)
            if not (
                isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= limit
            ):
                raise PrimeError(f"augment {name} must be a number in [0, {limit}], got {value!r}")

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> FrameAugmentation:
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(config) - set(known))
        if unknown:
            raise PrimeError(
                f"unknown augmentation {', '.join(unknown)}; known: {', '.join(known)}"
            )
        return cls(**config)

    @property
    def active(self) -> bool:
        return bool(self.shift_px or self.rotate_deg or self.zoom)

    def draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Moves for n samples [n, 4]: dx, dy (pixels), angle (radians), scale."""
        shifts = torch.randint(-self.shift_px, self.shift_px + 1, (n, 2), generator=generator)
        angles = (2 * torch.rand(n, generator=generator) - 1) * math.radians(self.rotate_deg)
        scales = 1 + (2 * torch.rand(n, generator=generator) - 1) * self.zoom
        return torch.cat([shifts.float(), angles[:, None], scales[:, None]], 1)

    def apply(self, frames: torch.Tensor, moves: torch.Tensor) -> torch.Tensor:
        """frames [T, B, C, H, W] moved by ``moves`` [B, 4] (from :meth:`draw`)."""
        if frames.dim() != 5:
            raise PrimeError(
                "frame augmentation needs image frames [T, B, C, H, W], got shape "
                f"{tuple(frames.shape)}; leave augmentation off for this dataset"
            )
        shifts = moves[:, :2].long().t()
        if not (self.rotate_deg or self.zoom):
            return shift_frames(frames, shifts)
        return affine_frames(frames, moves[:, 2], moves[:, 3], shifts)

    def __call__(self, frames: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """frames [T, B, C, H, W] -> moved frames, same shape and dtype."""
        return self.apply(frames, self.draw(frames.shape[1], generator))


def shift_frames(frames: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Move sample b of frames [T, B, C, H, W] by (dx, dy) = shifts[:, b] pixels (+: right,
    down); what leaves the frame is dropped, zeros enter."""
    out = torch.zeros_like(frames)
    H, W = frames.shape[-2:]
    for b, (dx, dy) in enumerate(shifts.t().tolist()):
        if abs(dx) >= W or abs(dy) >= H:
            continue
        out[:, b, :, max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] = frames[
            :, b, :, max(-dy, 0) : H + min(-dy, 0), max(-dx, 0) : W + min(-dx, 0)
        ]
    return out


def affine_frames(
    frames: torch.Tensor, angles: torch.Tensor, scales: torch.Tensor, shifts: torch.Tensor
) -> torch.Tensor:
    """Rotate (radians), scale and shift (pixels) each sample of frames [T, B, C, H, W] about
    the frame centre, nearest-neighbour resampling; zeros enter from outside."""
    T, B, C, H, W = frames.shape
    cos, sin = torch.cos(angles) / scales, torch.sin(angles) / scales
    # affine_grid maps output to input coordinates in [-1, 1]: the inverse move
    tx, ty = -shifts[0].float() * 2 / W, -shifts[1].float() * 2 / H
    theta = torch.stack(
        [
            torch.stack([cos, sin, tx * cos + ty * sin], 1),
            torch.stack([-sin, cos, -tx * sin + ty * cos], 1),
        ],
        1,
    )
    stacked = frames.permute(1, 0, 2, 3, 4).reshape(B, T * C, H, W)
    grid = F.affine_grid(theta, [B, T * C, H, W], align_corners=False)
    moved = F.grid_sample(stacked, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return moved.reshape(B, T, C, H, W).permute(1, 0, 2, 3, 4).contiguous()
