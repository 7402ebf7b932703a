"""Training an inpainting FSVAE (``prime train --model mnist-fsvae``).

As the reference (``Inpainting/main_fsvae_denoise.py``): masked images in, the clean image
as the target, loss MSE + MMD (:func:`prime.snn.fsvae.fsvae_loss`), scheduled sampling with
p rising linearly from 0.1 to 0.3 over the epochs, AdamW (lr 1e-3, weight decay 1e-3).
Trained: supermask scores, biases, tdBN, and the dense prior/posterior where they are
digital; the chip's conductances never change. Every draw (data order, random masks, latent
choices, scheduled sampling) comes from the run's seed.

A run directory holds ``checkpoint.pt`` (the FSVAE config, the state dict, the run config)
and ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prime.core.device import module_device, resolve_device
from prime.core.errors import PrimeError
from prime.core.io import load_checkpoint, save_checkpoint, write_json
from prime.core.progress import progress_bar
from prime.data.inpainting import ImageSplits, apply_mask, inpaint_mask, load_images
from prime.snn.fsvae import FSVAE, FSVAE_MODELS, FSVAEConfig, build_fsvae, fsvae_loss, get_fsvae

#: scheduled sampling: p from P_START at the first epoch to P_END after the last
P_START, P_END = 0.1, 0.3


@dataclass
class InpaintConfig:
    """An inpainting training run."""

    model: str = "mnist-fsvae"
    dataset: str = "digits"
    epochs: int = 150
    batch_size: int = 250
    lr: float = 1e-3
    weight_decay: float = 1e-3
    seed: int = 0
    chip_seed: int | None = None
    mask: str = "centre"
    limit_train: int | None = None
    limit_test: int | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        FSVAE_MODELS.get(self.model)
        for name in ("epochs", "batch_size", "limit_train", "limit_test"):
            value = getattr(self, name)
            if name.startswith("limit") and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PrimeError(f"{name} must be a whole number >= 1, got {value!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise PrimeError(f"lr must be a number > 0, got {self.lr!r}")


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def masked_batch(images: torch.Tensor, mask: str, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked images, blanked region) of ``images`` [B, 1, H, W] with ``mask``."""
    region = inpaint_mask(tuple(images.shape), mask, seed=seed)
    return apply_mask(images, region), region


def scheduled_p(epoch: int, epochs: int) -> float:
    """The reference's ``update_p``: p = 0.1 + 0.2 epoch / epochs."""
    return (P_END - P_START) * epoch / epochs + P_START


def train_inpainting(
    config: InpaintConfig,
    out_dir: str | Path,
    progress: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train into ``out_dir`` and return the metrics (train and test loss per epoch);
    ``progress`` draws progress bars (on a terminal only), the epoch lines are printed always.
    ``device``: where the FSVAE trains (default cpu); the chip, scores, masks, latent choices
    and scheduled sampling are drawn on the CPU and moved, so a seed trains the same run."""
    device = resolve_device(device)
    out_dir = Path(out_dir)
    if (out_dir / "checkpoint.pt").exists():
        raise PrimeError(f"{out_dir} already holds a run; choose another --out")
    torch.manual_seed(config.seed)
    data = load_images(config.dataset, **config.data)
    train_images = data.train
    if config.limit_train is not None:
        order = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(0))
        train_images = train_images[order[: config.limit_train]]
    chip_seed = config.seed if config.chip_seed is None else config.chip_seed
    model = get_fsvae(config.model, chip_seed=chip_seed, score_seed=config.seed).to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=config.lr, weight_decay=config.weight_decay)
    conductances = [layer.g_us.clone() for layer in model.memristor_layers()]
    history = []
    started = time.perf_counter()
    for epoch in range(config.epochs):
        model.train()
        p = scheduled_p(epoch, config.epochs)
        draws = torch.Generator().manual_seed(_seed(config.seed, epoch))
        order = torch.randperm(len(train_images), generator=draws)
        batches = order.split(config.batch_size)
        sums = {"loss": 0.0, "mse": 0.0, "mmd": 0.0}
        bar = progress_bar(batches, desc=f"epoch {epoch + 1}/{config.epochs}", show=progress)
        for step, rows in enumerate(bar):
            clean = train_images[rows]
            masked, _ = masked_batch(clean, config.mask, _seed(config.seed, epoch, step))
            index = model.latent_index(len(rows), draws)
            clean, masked, index = clean.to(device), masked.to(device), index.to(device)
            output = model(model.frames(masked), index, scheduled_p=p, generator=draws)
            losses = fsvae_loss(model, output, clean)
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            for name in sums:
                sums[name] += losses[name].item() * len(rows)
            bar.set_postfix(mse=f"{losses['mse'].item():.4f}")
        test = test_loss(model, data, config)
        history.append(
            {
                "epoch": epoch + 1,
                **{f"train_{k}": v / len(train_images) for k, v in sums.items()},
                **{f"test_{k}": v for k, v in test.items()},
                "scheduled_p": p,
                "wall_seconds": time.perf_counter() - started,
            }
        )
        h = history[-1]  # the epoch's line, with or without progress bars
        print(
            f"epoch {epoch + 1}/{config.epochs}: train mse {h['train_mse']:.4f} "
            f"mmd {h['train_mmd']:.4f} | test mse {h['test_mse']:.4f} | "
            f"{h['wall_seconds']:.0f} s",
            flush=True,
        )
        save_checkpoint(
            out_dir / "checkpoint.pt",
            {
                "inpaint_config": dataclasses.asdict(config),
                "fsvae_config": model.config.to_dict(),
                "model_state": model.state_dict(),
                "history": history,
            },
        )
    unchanged = all(
        torch.equal(before, layer.g_us)
        for before, layer in zip(conductances, model.memristor_layers(), strict=True)
    )
    metrics = {
        "model": config.model,
        "dataset": config.dataset,
        "train_images": len(train_images),
        "test_mse": history[-1]["test_mse"],
        "conductances_unchanged": unchanged,
        "wall_seconds": time.perf_counter() - started,
        "history": history,
        "config": dataclasses.asdict(config),
    }
    write_json(out_dir / "metrics.json", metrics)
    return metrics


@torch.no_grad()
def test_loss(
    model: FSVAE, data: ImageSplits, config: InpaintConfig, batch_size: int = 200
) -> dict[str, float]:
    """Mean loss, MSE and MMD over the (first ``limit_test``) test images, eval mode, on
    the model's device."""
    model.eval()
    device = module_device(model)
    draws = torch.Generator().manual_seed(_seed(config.seed, 1 << 20))
    sums = {"loss": 0.0, "mse": 0.0, "mmd": 0.0}
    images = data.test[: config.limit_test]
    for start in range(0, len(images), batch_size):
        clean = images[start : start + batch_size]
        masked, _ = masked_batch(clean, config.mask, _seed(config.seed, 1 << 21, start))
        index = model.latent_index(len(clean), draws)
        clean, masked, index = clean.to(device), masked.to(device), index.to(device)
        output = model(model.frames(masked), index)
        for name, value in fsvae_loss(model, output, clean).items():
            sums[name] += value.item() * len(clean)
    return {k: v / len(images) for k, v in sums.items()}


def load_inpainting_run(
    run_dir: str | Path, device: str | torch.device | None = None
) -> tuple[FSVAE, InpaintConfig]:
    """The trained FSVAE of a run directory (eval mode) on ``device`` (default cpu: read
    there, checked and moved) and its run config."""
    path = Path(run_dir) / "checkpoint.pt"
    payload = load_checkpoint(path)
    if "fsvae_config" not in payload:
        raise PrimeError(
            f"{run_dir} is not an inpainting run (prime train --model mnist-fsvae writes one)"
        )
    model = build_fsvae(FSVAEConfig.from_dict(payload["fsvae_config"]))
    model.load_state_dict(payload["model_state"])
    model.to(resolve_device(device)).eval()
    return model, InpaintConfig(**payload["inpaint_config"])


def is_inpainting_run(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds an inpainting run (cheap: reads the checkpoint's keys)."""
    path = Path(run_dir) / "checkpoint.pt"
    return path.is_file() and "fsvae_config" in load_checkpoint(path)
