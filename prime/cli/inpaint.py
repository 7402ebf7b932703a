"""Inpainting on the command line: ``prime train --model mnist-fsvae`` and
``prime eval RUN_DIR --inpaint`` (docs/inpainting.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prime.cli.common import int_arg


def is_inpainting_model(name: str | None) -> bool:
    from prime.snn.fsvae import FSVAE_MODELS

    return name is not None and name in FSVAE_MODELS


def run_train(args: argparse.Namespace) -> int:
    """``prime train --model mnist-fsvae ...``: the options of prime train that apply."""
    from prime.cli.datasets import data_options
    from prime.runs.inpaint import InpaintConfig, train_inpainting

    config = InpaintConfig(
        model=args.model,
        dataset=args.dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        chip_seed=args.chip_seed,
        limit_train=args.limit_train,
        data={k: v for k, v in data_options(args).items() if k in ("data_root", "data_path")},
    )
    out = args.out or Path("runs") / f"{config.model}-seed{config.seed}"
    metrics = train_inpainting(config, out, progress=not args.quiet, device=args.device)
    print(
        f"{metrics['model']} on {metrics['dataset']} ({metrics['train_images']} images): test "
        f"MSE {metrics['test_mse']:.4f}, conductances unchanged: "
        f"{metrics['conductances_unchanged']}, wall time {metrics['wall_seconds']:.1f} s -> {out}"
    )
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("inpainting (docs/inpainting.md)")
    g.add_argument(
        "--inpaint",
        action="store_true",
        help="evaluate an inpainting run: MSE/PSNR, early stop, classifier scores, energy, "
        "a PNG grid (the early-stop θ is --threshold, default 0.2)",
    )
    g.add_argument("--mask", choices=("centre", "square", "strokes"), help="default: the run's")
    g.add_argument(
        "--budget",
        type=float,
        default=0.05,
        help="quality budget of the calibrated change rule: relative MSE increase (0.05)",
    )
    g.add_argument("--limit", type=int_arg(1), help="evaluate only the first N test images")


def run_eval(args: argparse.Namespace) -> int:
    from prime.runs.inpaint_eval import evaluate_inpainting

    r = evaluate_inpainting(
        args.run_dir,
        args.out,
        mask=args.mask,
        threshold=0.2 if args.threshold is None else args.threshold,
        budget=args.budget,
        limit=args.limit,
        batch_size=args.batch_size,
        device=args.device,
    )
    inp, masked, mean = r["inpainted"], r["masked_input"], r["mean_image"]
    ref, chg = r["early_stop_reference"], r["early_stop_change"]
    tm, cl = r["timing"], r["classifier"]
    energy = r["energy_pj_per_image"]
    print(
        f"{r['model']} on {r['dataset']} ({r['images']} test images, {r['mask']} mask):\n"
        f"blanked-region MSE: inpainted {inp['mse_region']:.4f} (PSNR "
        f"{inp['psnr_region_db']:.2f} dB), masked input {masked['mse_region']:.4f}, mean image "
        f"{mean['mse_region']:.4f}; whole image: {inp['mse_image']:.4f} "
        f"({inp['psnr_image_db']:.2f} dB), known pixels kept: "
        f"{r['inpainted_composite']['mse_image']:.4f}\n"
        f"early stop, reference rule θ {ref['threshold']:g}: mean steps {ref['mean_steps']:.2f} "
        f"of {r['timesteps']} (load saved {100 * ref['load_saved']:.1f} %), region MSE "
        f"{ref['mse_region']:.4f}\n"
        f"early stop, change rule θ {chg['threshold']:.3g} (budget {chg['budget']:g}): mean "
        f"steps {chg['mean_steps']:.2f} (load saved {100 * chg['load_saved']:.1f} %), region "
        f"MSE {chg['mse_region']:.4f}, whole image {chg['mse_image']:.4f}\n"
        f"incremental vs from scratch ({tm['images']} images): {tm['incremental_s']:.2f} s vs "
        f"{tm['from_scratch_s']:.2f} s, {tm['speedup']:.2f}x, largest output difference "
        f"{tm['max_output_difference']:.2g}\n"
        f"classifier (prime's, not Inception; {100 * cl['accuracy_clean_test']:.1f} % on clean "
        f"test): score clean {cl['score_clean']:.2f}, masked {cl['score_masked']:.2f}, inpainted "
        f"{cl['score_inpainted']:.2f}; Fréchet distance masked {cl['frechet_masked']:.2f}, "
        f"inpainted {cl['frechet_inpainted']:.2f}\n"
        f"energy per image (pJ): full T {energy['full_T']['total']:.4g}, early stop "
        f"(reference) {energy['early_stop_reference']['total']:.4g}, (change) "
        f"{energy['early_stop_change']['total']:.4g}\n"
        f"wrote inpaint.png, inpaint.json to {r['out_dir']}"
    )
    return 0
