"""Figures of docs/inpainting.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from figures import Section, percent_change, run_prime, script_output, train

#: the 15-epoch run of the page
RUN_OPTIONS = ["--model", "mnist-fsvae", "--epochs", "15", "--batch-size", "20"]
#: quality budgets of scripts/inpaint_stop_sweep.py the page quotes (field suffix, budget)
BUDGETS = (("5", "0.05"), ("100", "1.00"))


def evaluation(work: Path) -> dict[str, Any]:
    """``prime eval --inpaint --limit 200`` of the 15-epoch run: its inpaint.json."""
    run = train(work, "inp15", RUN_OPTIONS)
    report = run / "inpaint" / "inpaint.json"
    if not report.is_file():
        run_prime(["eval", str(run), "--inpaint", "--limit", "200"])
    return json.loads(report.read_text())


def reconstruction(work: Path) -> dict[str, Any]:
    """Region MSE ratios, early stop at full T and by the reference rule, classifier scores."""
    r = evaluation(work)
    inpainted, reference, c = r["inpainted"], r["early_stop_reference"], r["classifier"]
    energy = r["energy_pj_per_image"]["full_T"]
    return {
        "vs_masked": r["masked_input"]["mse_region"] / inpainted["mse_region"],
        "vs_mean": r["mean_image"]["mse_region"] / inpainted["mse_region"],
        "region": inpainted["mse_region"],
        "image": inpainted["mse_image"],
        "region_db": inpainted["psnr_region_db"],
        "image_db": inpainted["psnr_image_db"],
        "kept_image": r["inpainted_composite"]["mse_image"],
        **{
            f"{key}_{field}": r[name][f"mse_{field}"]
            for key, name in (("masked", "masked_input"), ("mean", "mean_image"))
            for field in ("region", "image")
        },
        "energy_uj": energy["total"] / 1e6,
        "posterior_uj": energy["posterior"] / 1e6,
        "rest_uj": (energy["encoder"] + energy["decoder"]) / 1e6,
        "masked_db": r["masked_input"]["psnr_region_db"],
        "mean_db": r["mean_image"]["psnr_region_db"],
        "ref_steps": reference["mean_steps"],
        "ref_saved": 100 * reference["load_saved"],
        "ref_region": reference["mse_region"],
        "ref_image": reference["mse_image"],
        "clf": 100 * c["accuracy_clean_test"],
        "score_clean": c["score_clean"],
        "score_masked": c["score_masked"],
        "score_inpainted": c["score_inpainted"],
        "fd_masked": c["frechet_masked"],
        "fd_inpainted": c["frechet_inpainted"],
    }


def stop_sweep(work: Path) -> dict[str, Any]:
    """The calibrated change rule at the budgets the page quotes
    (scripts/inpaint_stop_sweep.py); the whole-image MSE change against full T."""
    text = script_output("inpaint_stop_sweep.py", [str(train(work, "inp15", RUN_OPTIONS))])
    values: dict[str, Any] = {}
    for name, budget in BUDGETS:
        row = re.search(rf"^\s*{re.escape(budget)}\s+(.*)$", text, re.MULTILINE)
        if row is None:
            raise SystemExit(f"scripts/inpaint_stop_sweep.py printed no budget {budget}")
        theta, steps, saved, _, region, image = row.group(1).split()
        values |= {
            f"b{name}_theta": float(theta),
            f"b{name}_steps": float(steps),
            f"b{name}_saved": float(saved),
            f"b{name}_region": float(region),
            f"b{name}_image": float(image),
        }
    *_, (_, _, full_image) = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s*$", text, re.M)
    values["b100_cost"] = percent_change(values["b100_image"], float(full_image), 0)
    return values


def timing(work: Path) -> dict[str, Any]:
    """Incremental against from-scratch early stop, from ``prime eval --inpaint``."""
    t = evaluation(work)["timing"]
    return {
        "incremental": t["incremental_s"],
        "scratch": t["from_scratch_s"],
        "speedup": t["speedup"],
    }


COMMAND = "prime train --model mnist-fsvae --epochs 15 --batch-size 20 --out RUN; prime eval RUN "
COMMAND += "--inpaint --limit 200"

SECTIONS = [
    Section(
        "inpainting.md",
        "reconstruction and early stop of the 15-epoch run",
        "long",
        (
            "| masked input | {masked_region:.3f} | {masked_db:.2f} dB | {masked_image:.3f} |",
            "| mean training image in the square | {mean_region:.3f} | {mean_db:.2f} dB "
            "| {mean_image:.3f} |",
            "| inpainted (FSVAE, T = 16) | **{region:.4f}** | {region_db:.2f} dB | {image:.4f} "
            "({image_db:.2f} dB) |",
            "| inpainted, known pixels kept | {region:.4f} | {region_db:.2f} dB "
            "| {kept_image:.4f} |",
            "Energy per image at full T (`prime eval --inpaint`): {energy_uj:.1f} µJ",
            "with its bias additions and neurons: {posterior_uj:.1f} µJ); the chip blocks are the "
            "rest ({rest_uj:.1f} µJ",
            "The inpainted square is {vs_masked:.0f}× closer than the masked input and "
            "{vs_mean:.1f}× closer than the mean image.",
            "| full T | – | 16.00 | 0 % | {region:.4f} | {image:.4f} |",
            "| reference (3 falling changes, last < θ) | 0.2 | {ref_steps:.2f} | {ref_saved:.2g} % "
            "| {ref_region:.4f} | {ref_image:.4f} |",
            "(a CNN trained by prime on the clean training images, {clf:.1f} % on the clean test "
            "images): score clean {score_clean:.2f}, masked {score_masked:.2f}, inpainted "
            "{score_inpainted:.2f}; Fréchet distance to the clean test images: masked "
            "{fd_masked:.0f}, inpainted {fd_inpainted:.1f}.",
        ),
        reconstruction,
        COMMAND + " (training about 7 min on a quiet core)",
    ),
    Section(
        "inpainting.md",
        "calibrated change rule at several budgets",
        "long",
        (
            "| change, budget 5 % (10, 25, 50 %) | {b5_theta:.4f} | {b5_steps:.2f} "
            "| {b5_saved:.2g} % | {b5_region:.4f} | {b5_image:.4f} |",
            "| change, budget 100 % | {b100_theta:.4f} | {b100_steps:.2f} | {b100_saved:.2g} % "
            "| {b100_region:.4f} | {b100_image:.4f} |",
            "calibrated rule saves {b100_saved:.2g} % of the steps for {b100_cost} % whole-image "
            "MSE (budget 100 %)",
        ),
        stop_sweep,
        "python scripts/inpaint_stop_sweep.py RUN --limit 200 (RUN: the 15-epoch run)",
    ),
    Section(
        "inpainting.md",
        "incremental against from-scratch early stop",
        "timing",
        ("{incremental:.2f} s vs {scratch:.2f} s, **{speedup:.1f}×** faster",),
        timing,
        COMMAND + " (the report's timing: 32 images, reference rule, one process)",
    ),
    Section(
        "inpainting.md",
        "the model's settings",
        "cited",
        (
            "scale 0.003 /µS), 50 % kept by PRIME's percentile rule",
            "full-T values (budget 5 %)",
        ),
    ),
]
