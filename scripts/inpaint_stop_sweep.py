"""Early stop of a trained inpainting run: MSE after every step, and the calibrated change
rule's saving and cost at several quality budgets (calibrated on training images, measured
on test images). Usage: python scripts/inpaint_stop_sweep.py RUN_DIR [--limit N]"""

from __future__ import annotations

import argparse

import torch

from prime.data.inpainting import load_images
from prime.inference.early_stop import ChangeRule, calibrate_change_threshold, stop_from_trajectory
from prime.inference.reconstruction import region_mse
from prime.runs.inpaint import _seed, load_inpainting_run, masked_batch
from prime.runs.inpaint_eval import _batched_reconstructions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--limit", type=int, default=200)
    args = parser.parse_args()
    model, config = load_inpainting_run(args.run_dir)
    data = load_images(config.dataset, **config.data)
    draws = torch.Generator().manual_seed(_seed(0, 8))
    sets = {}
    for name, images, seed in (("test", data.test, 7), ("calibration", data.train, 9)):
        clean = images[: args.limit]
        masked, region = masked_batch(clean, config.mask, _seed(0, seed))
        index = model.latent_index(len(clean), draws)
        with torch.no_grad():
            sets[name] = (_batched_reconstructions(model, masked, index, 100), clean, region)
    recons, clean, region = sets["test"]
    print("step  region MSE  image MSE")
    for t in range(len(recons)):
        print(
            f"{t + 1:4d}  {region_mse(recons[t], clean, region):10.4f}  "
            f"{region_mse(recons[t], clean, None):9.4f}"
        )
    print("budget  theta    mean steps  load saved  region MSE  image MSE  (test)")
    for budget in (0.05, 0.1, 0.25, 0.5, 1.0):
        calib = calibrate_change_threshold(*sets["calibration"], budget=budget)
        result = stop_from_trajectory(recons, ChangeRule(calib.threshold))
        print(
            f"{budget:6.2f}  {calib.threshold:7.4f}  {result.steps.double().mean():10.2f}  "
            f"{100 * result.load_saved:9.1f} %  {region_mse(result.recon, clean, region):10.4f}"
            f"  {region_mse(result.recon, clean, None):9.4f}"
        )


if __name__ == "__main__":
    main()
