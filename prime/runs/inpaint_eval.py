"""Evaluating an inpainting run (``prime eval RUN --inpaint``).

On the run's test images, masked (the run's mask unless told otherwise):

* reconstruction MSE and PSNR over the blanked region and the whole image, of the
  inpainted images at full T, of the masked input itself, and of a mean-image baseline
  (the blanked region filled with the mean training image);
* early stop: the reference's rule and prime's calibrated ``change`` rule (θ for a quality
  budget on training images), mean steps, load saved, the MSE they cost; the incremental
  controller against the reference's from-scratch rule, timed in the same process, with
  the largest difference of their outputs;
* a classifier score (Inception-style) and a classifier Fréchet distance (FID-style) from a
  digit classifier trained here on the same clean images (:mod:`prime.analysis.image_quality`);
* energy per image (analog macro, :mod:`prime.analysis.energy`) counted on the blocks inference
  runs (encoder, posterior, decoder) at full T and with early stop; their plain ``nn.Linear``
  layers (the reference's dense posterior) are counted as the macro's digital unit's
  multiply-accumulates;
* ``inpaint.png``: clean / masked / inpainted / early-stopped rows, and the reconstruction
  after every step of the first images; ``inpaint.json`` with every number.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import torch

from prime.analysis.energy.counting import OperationCounts, count_operations
from prime.analysis.energy.models import AnalogMacro
from prime.analysis.image_quality import (
    classifier_accuracy,
    classifier_score,
    frechet_distance,
    train_classifier,
)
from prime.core.device import module_device
from prime.core.errors import PrimeError
from prime.core.io import write_json
from prime.core.tables import new_figure, save_figure
from prime.data.inpainting import ImageSplits, load_images
from prime.inference.early_stop import (
    ChangeRule,
    EarlyStopResult,
    calibrate_change_threshold,
    get_stop_rule,
    run_early_stop,
    run_from_scratch,
    stop_from_trajectory,
)
from prime.inference.reconstruction import reconstruction_scores
from prime.runs.inpaint import _seed, load_inpainting_run, masked_batch
from prime.snn.fsvae import FSVAE

#: images of the early-stop timing comparison (from-scratch is O(T²))
TIMING_IMAGES = 32
#: training images the change threshold is calibrated on
CALIBRATION_IMAGES = 200


def _batched_reconstructions(
    model: FSVAE, masked: torch.Tensor, index: torch.Tensor, batch_size: int
) -> torch.Tensor:
    """Reconstructions after every step, [T, N, C, H, W]."""
    parts = [
        model.reconstructions(masked[i : i + batch_size], index[:, i : i + batch_size])
        for i in range(0, len(masked), batch_size)
    ]
    return torch.cat(parts, 1)


@torch.no_grad()
def count_energy(
    model: FSVAE, masked: torch.Tensor, index: torch.Tensor, rule: Any, batch_size: int
) -> dict[str, float]:
    """Energy per image (pJ) of early stop under ``rule`` (a never-stopping rule: full T)."""
    analog = AnalogMacro()
    blocks = {"encoder": model.encoder, "posterior": model.posterior, "decoder": model.decoder}
    with contextlib.ExitStack() as stack:
        counts: dict[str, OperationCounts] = {
            name: stack.enter_context(count_operations(block)) for name, block in blocks.items()
        }
        steps = []
        for i in range(0, len(masked), batch_size):
            result = run_early_stop(
                model, masked[i : i + batch_size], index[:, i : i + batch_size], rule
            )
            steps.append(result.steps)
    energy = {name: analog.energy_pj(c)["total"] for name, c in counts.items()}
    energy["total"] = sum(energy.values())
    energy["mean_steps"] = torch.cat(steps).double().mean().item()
    return energy


def _scores(result: EarlyStopResult, clean: torch.Tensor, region: torch.Tensor) -> dict:
    return {
        **reconstruction_scores(result.recon, clean, region),
        "mean_steps": result.steps.double().mean().item(),
        "load_saved": result.load_saved,
        "steps_histogram": torch.bincount(result.steps - 1, minlength=result.timesteps).tolist(),
    }


@torch.no_grad()
def evaluate_inpainting(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    mask: str | None = None,
    threshold: float = 0.2,
    budget: float = 0.05,
    limit: int | None = None,
    batch_size: int = 100,
    seed: int = 0,
    calibration_images: int = CALIBRATION_IMAGES,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Evaluate the inpainting run in ``run_dir`` (see the module docstring); the change
    rule's θ is calibrated on the first ``calibration_images`` training images.

    ``device``: where the FSVAE runs (default cpu); the masks and latent choices are drawn on
    the CPU and moved, and the scoring classifier is trained and run on the CPU, so a seed
    gives the same report on every device."""
    model, config = load_inpainting_run(run_dir, device)
    device = module_device(model)
    out = Path(out_dir) if out_dir else Path(run_dir) / "inpaint"
    data = load_images(config.dataset, **config.data)
    clean = data.test if limit is None else data.test[:limit]
    if limit is not None and limit < 2:
        raise PrimeError(f"--limit must be a whole number >= 2, got {limit}")
    mask = mask or config.mask
    masked, region = masked_batch(clean, mask, _seed(seed, 7))
    draws = torch.Generator().manual_seed(_seed(seed, 8))
    index = model.latent_index(len(clean), draws)
    clean, masked, region, index = (t.to(device) for t in (clean, masked, region, index))
    recons = _batched_reconstructions(model, masked, index, batch_size)
    full = recons[-1]
    mean_image = data.train.mean(0, keepdim=True).to(device).expand_as(clean)
    report: dict[str, Any] = {
        "run": str(run_dir),
        "model": config.model,
        "dataset": config.dataset,
        "mask": mask,
        "images": len(clean),
        "timesteps": model.timesteps,
        "inpainted": reconstruction_scores(full, clean, region),
        # the known pixels kept, the blanked region from the network
        "inpainted_composite": reconstruction_scores(
            torch.where(region, full, masked), clean, region
        ),
        "masked_input": reconstruction_scores(masked, clean, region),
        "mean_image": reconstruction_scores(torch.where(region, mean_image, masked), clean, region),
    }
    reference_rule = get_stop_rule("reference", threshold)
    report["early_stop_reference"] = {
        "threshold": threshold,
        **_scores(stop_from_trajectory(recons, reference_rule), clean, region),
    }
    calib_clean = data.train[:calibration_images]
    calib_masked, calib_region = masked_batch(calib_clean, mask, _seed(seed, 9))
    calib_index = model.latent_index(len(calib_clean), draws)
    calib_clean, calib_masked, calib_region, calib_index = (
        t.to(device) for t in (calib_clean, calib_masked, calib_region, calib_index)
    )
    calib = calibrate_change_threshold(
        _batched_reconstructions(model, calib_masked, calib_index, batch_size),
        calib_clean,
        calib_region,
        budget,
    )
    change_rule = ChangeRule(calib.threshold)
    report["early_stop_change"] = {
        "threshold": calib.threshold,
        "budget": budget,
        "calibration_mse_region": calib.mse_region,
        "calibration_full_mse_region": calib.full_mse_region,
        "calibration_mse_image": calib.mse_image,
        "calibration_full_mse_image": calib.full_mse_image,
        **_scores(stop_from_trajectory(recons, change_rule), clean, region),
    }
    report["timing"] = time_early_stop(model, masked, index, reference_rule)
    report["classifier"] = classifier_report(data, clean.cpu(), masked.cpu(), full.cpu(), seed)
    never = ChangeRule(-float("inf"))
    report["energy_pj_per_image"] = {
        "full_T": count_energy(model, masked, index, never, batch_size),
        "early_stop_reference": count_energy(model, masked, index, reference_rule, batch_size),
        "early_stop_change": count_energy(model, masked, index, change_rule, batch_size),
    }
    stopped = stop_from_trajectory(recons, reference_rule).recon
    plot_grid(clean, masked, full, stopped, recons, out / "inpaint.png")
    write_json(out / "inpaint.json", report)
    report["out_dir"] = str(out)
    return report


def classifier_report(
    data: ImageSplits, clean: torch.Tensor, masked: torch.Tensor, full: torch.Tensor, seed: int
) -> dict[str, Any]:
    """Classifier score and Fréchet distance of the masked and inpainted images (CPU
    tensors) from a digit classifier trained on the CPU with ``seed``."""
    classifier = train_classifier(data.train, data.train_labels, seed=seed)
    return {
        "note": "a digit classifier trained by prime on the same clean images, not Inception",
        "accuracy_clean_test": classifier_accuracy(
            classifier, clean, data.test_labels[: len(clean)]
        ),
        "score_clean": classifier_score(classifier, clean),
        "score_masked": classifier_score(classifier, masked),
        "score_inpainted": classifier_score(classifier, full),
        "frechet_masked": frechet_distance(classifier, clean, masked),
        "frechet_inpainted": frechet_distance(classifier, clean, full),
    }


def _wait(device: torch.device) -> None:
    """Wait for ``device``'s queued work (CUDA runs asynchronously): a timing's end."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_early_stop(
    model: FSVAE, masked: torch.Tensor, index: torch.Tensor, rule: Any
) -> dict[str, float]:
    """Incremental vs from-scratch early stop on the first images, in this process: median
    wall time of 3 runs each (alternating), the speed-up, the largest output difference."""
    images, idx = masked[:TIMING_IMAGES], index[:, :TIMING_IMAGES]
    times: dict[str, list[float]] = {"incremental": [], "from_scratch": []}
    results = {}
    for _ in range(3):
        for name, run in (("incremental", run_early_stop), ("from_scratch", run_from_scratch)):
            _wait(images.device)
            started = time.perf_counter()
            results[name] = run(model, images, idx, rule)
            _wait(images.device)
            times[name].append(time.perf_counter() - started)
    median = {name: sorted(t)[1] for name, t in times.items()}
    inc, scratch = results["incremental"], results["from_scratch"]
    return {
        "images": len(images),
        "incremental_s": median["incremental"],
        "from_scratch_s": median["from_scratch"],
        "speedup": median["from_scratch"] / median["incremental"],
        "max_output_difference": (inc.recon - scratch.recon).abs().max().item(),
        "same_steps": bool(torch.equal(inc.steps, scratch.steps)),
        "steps_simulated_incremental": inc.steps_simulated,
        "steps_simulated_from_scratch": scratch.steps_simulated,
    }


def plot_grid(
    clean: torch.Tensor,
    masked: torch.Tensor,
    full: torch.Tensor,
    stopped: torch.Tensor,
    recons: torch.Tensor,
    path: Path,
    columns: int = 10,
    traced: int = 2,
) -> None:
    """Rows clean / masked / inpainted / early-stopped for ``columns`` images, then the
    reconstruction after every step of the first ``traced`` images (on any device: each
    image drawn is copied to the CPU)."""
    T = len(recons)
    width = max(columns, T)
    rows = [("clean", clean), ("masked", masked), ("inpainted (T)", full), ("early stop", stopped)]
    nrows = len(rows) + traced
    fig, axes = new_figure(width * 0.9, nrows * 0.95, nrows=nrows, ncols=width)
    for ax in axes.flat:
        ax.axis("off")
    for r, (name, images) in enumerate(rows):
        for c in range(min(columns, len(images))):
            axes[r, c].imshow(images[c, 0].cpu().numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[r, 0].set_title(name, fontsize=7, loc="left")
    for i in range(min(traced, recons.shape[1])):
        for t in range(T):
            image = recons[t, i, 0].cpu().numpy()
            axes[len(rows) + i, t].imshow(image, cmap="gray", vmin=-1, vmax=1)
            axes[len(rows) + i, t].set_title(f"t={t + 1}", fontsize=6)
    save_figure(fig, path)
