"""How close a reconstruction is to the clean image: MSE and PSNR over the blanked region
and over the whole image (images in [-1, 1], so the peak-to-peak range is 2)."""

from __future__ import annotations

import math

import torch

#: peak-to-peak range of images in [-1, 1]
PIXEL_RANGE = 2.0


def region_mse(images: torch.Tensor, clean: torch.Tensor, region: torch.Tensor | None) -> float:
    """Mean squared error over the pixels of ``region`` (bool, broadcastable; None: all)."""
    error = (images - clean).pow(2)
    if region is None:
        return error.mean().item()
    region = region.expand_as(error)
    return (error[region].mean() if region.any() else error.new_zeros(())).item()


def psnr_db(mse: float) -> float:
    """Peak signal-to-noise ratio (dB) of an MSE on images in [-1, 1]."""
    return math.inf if mse <= 0 else 10 * math.log10(PIXEL_RANGE**2 / mse)


def reconstruction_scores(
    images: torch.Tensor, clean: torch.Tensor, region: torch.Tensor
) -> dict[str, float]:
    """MSE and PSNR of ``images`` [N, C, H, W] against ``clean`` over the blanked
    ``region`` [N, 1, H, W] and the whole image."""
    scores = {
        "mse_region": region_mse(images, clean, region),
        "mse_image": region_mse(images, clean, None),
    }
    scores["psnr_region_db"] = psnr_db(scores["mse_region"])
    scores["psnr_image_db"] = psnr_db(scores["mse_image"])
    return scores
