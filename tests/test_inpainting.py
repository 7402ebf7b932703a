"""Inpainting around the FSVAE: images and masks, the early-stop rules and controllers,
training and evaluation of a (tiny) run, the command line's errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.data.inpainting import apply_mask, digit_images, inpaint_mask, mnist_images
from prime.data.mnist_idx import write_fake_mnist
from prime.inference.early_stop import (
    ChangeRule,
    ReferenceRule,
    calibrate_change_threshold,
    run_early_stop,
    run_from_scratch,
    stop_from_trajectory,
)
from prime.inference.reconstruction import psnr_db, reconstruction_scores
from prime.snn.fsvae import get_fsvae


def _trajectory(values: list[list[float]]) -> torch.Tensor:
    """Reconstructions [T, B, 1, 10, 10] of constant images: value[b][t] at step t. The change
    m_t = 100 |v_t - v_{t-1}| / 100 = |v_t - v_{t-1}|, with v_{-1} = 0."""
    v = torch.tensor(values).T  # [T, B]
    return v[:, :, None, None, None].expand(*v.shape, 1, 10, 10).clone()


def test_the_reference_rule_needs_three_strictly_falling_changes_below_threshold() -> None:
    recons = _trajectory(
        [
            [0.5, 0.8, 0.9, 0.95, 0.96, 0.96],  # changes .5 .3 .1 .05 .01 0: stop at step 3
            [0.5, 1.0, 1.1, 1.2, 1.25, 1.26],  # .5 .5 .1 .1 .05 .01, strictly falling: step 6
            [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],  # .1 every step, never falling: runs all T
        ]
    )
    result = stop_from_trajectory(recons, ReferenceRule(threshold=0.2))
    assert result.steps.tolist() == [3, 6, 6]
    torch.testing.assert_close(result.recon[:, 0, 0, 0], torch.tensor([0.9, 1.26, 0.6]))
    assert torch.allclose(result.changes[0, :3], torch.tensor([0.5, 0.3, 0.1]))
    assert math.isnan(result.changes[0, 3])
    tight = stop_from_trajectory(recons, ReferenceRule(threshold=0.08))
    assert tight.steps.tolist() == [4, 6, 6]


def test_the_change_rule_stops_below_its_threshold_after_min_steps() -> None:
    recons = _trajectory([[0.5, 0.55, 0.56, 0.9, 0.91, 0.91]])  # .5 .05 .01 .34 .01 0
    assert stop_from_trajectory(recons, ChangeRule(0.1)).steps.tolist() == [2]
    assert stop_from_trajectory(recons, ChangeRule(0.1, min_steps=4)).steps.tolist() == [5]
    assert stop_from_trajectory(recons, ChangeRule(0.001)).steps.tolist() == [6]


def test_bad_stop_rule_settings_are_refused() -> None:
    with pytest.raises(PrimeError, match="threshold"):
        ChangeRule(float("nan"))
    with pytest.raises(PrimeError, match="min_steps"):
        ReferenceRule(0.2, min_steps=0)


def test_calibration_keeps_the_quality_budget() -> None:
    clean = torch.full((2, 1, 10, 10), -0.5)
    region = torch.ones(2, 1, 10, 10, dtype=torch.bool)
    recons = _trajectory([[0.5, 0.2, 0.1, 0.05, 0.02, 0.0], [0.4, 0.1, 0.0, 0.0, 0.0, 0.0]])
    strict = calibrate_change_threshold(recons, clean, region, budget=0.0)
    assert strict.mse_region <= strict.full_mse_region + 1e-12
    loose = calibrate_change_threshold(recons, clean, region, budget=1e6)
    assert strict.mean_steps == 5.0  # the second image stops once it stands still (step 4)
    assert loose.mean_steps == 2.0  # the change rule's earliest stop
    with pytest.raises(PrimeError, match="budget"):
        calibrate_change_threshold(recons, clean, region, budget=-1)


@pytest.fixture(scope="module")
def tiny_model():
    model = get_fsvae("mnist-fsvae", timesteps=6, score_seed=1)
    images = torch.rand(8, 1, 32, 32) * 2 - 1
    model.train()
    model(model.frames(images), model.latent_index(8, torch.Generator().manual_seed(0)))
    return model.eval()


def test_incremental_early_stop_equals_the_from_scratch_rule(tiny_model) -> None:
    images = torch.rand(5, 1, 32, 32) * 2 - 1
    index = tiny_model.latent_index(5, torch.Generator().manual_seed(3))
    trajectory = tiny_model.reconstructions(images, index)
    changes = stop_from_trajectory(trajectory, ChangeRule(-math.inf)).changes
    rule = ChangeRule(float(changes[:, 1:].median()))  # some samples stop early, some not
    incremental = run_early_stop(tiny_model, images, index, rule)
    scratch = run_from_scratch(tiny_model, images, index, rule)
    offline = stop_from_trajectory(trajectory, rule)
    assert 1 < incremental.steps.float().mean() < 6
    assert torch.equal(incremental.steps, scratch.steps)
    assert torch.equal(incremental.steps, offline.steps)
    torch.testing.assert_close(incremental.recon, scratch.recon)
    torch.testing.assert_close(incremental.recon, offline.recon)
    steps = incremental.steps
    assert incremental.steps_simulated == steps.sum().item()
    assert scratch.steps_simulated == (steps * (steps + 1) // 2).sum().item()


def test_masks_and_their_errors() -> None:
    shape = (3, 1, 32, 32)
    centre = inpaint_mask(shape)
    assert centre[:, :, 12:20, 12:20].all() and centre.sum() == 3 * 64
    images = torch.zeros(shape)
    assert (apply_mask(images, centre)[centre] == -1).all()
    square = inpaint_mask(shape, "square", seed=4)
    assert torch.equal(square, inpaint_mask(shape, "square", seed=4))
    assert (square.flatten(1).sum(1) == 64).all()
    strokes = inpaint_mask(shape, "strokes", seed=1)
    assert strokes.any() and not torch.equal(strokes[0], strokes[1])
    with pytest.raises(PrimeError, match="outside the 32x32 image"):
        inpaint_mask(shape, corner=(30, 2))
    with pytest.raises(PrimeError, match="mask size"):
        inpaint_mask(shape, size=40)
    with pytest.raises(PrimeError, match="unknown mask"):
        inpaint_mask(shape, "circle")
    with pytest.raises(PrimeError, match="does not fit"):
        apply_mask(torch.zeros(2, 1, 28, 28), centre)


def test_built_in_digits_as_32x32_images() -> None:
    data = digit_images()
    assert data.train.shape[1:] == (1, 32, 32) and len(data.train) + len(data.test) == 1797
    assert data.train.min() >= -1 and data.train.max() <= 1
    assert (data.train[:, :, :4] == -1).all()  # the margin around the 24x24 digit


def test_mnist_images_from_fake_idx_files(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, 20, "train")
    write_fake_mnist(tmp_path, 10, "test", seed=1)
    data = mnist_images(data_path=tmp_path)
    assert data.train.shape == (20, 1, 32, 32) and data.test.shape == (10, 1, 32, 32)
    assert data.train.max() == 1.0 and data.train.min() >= -1


def test_an_idx_file_with_a_wrong_magic_number_is_refused(tmp_path: Path) -> None:
    write_fake_mnist(tmp_path, 10, "train", compress=False)
    images = tmp_path / "train-images-idx3-ubyte"
    data = bytearray(images.read_bytes())
    data[0] = 7  # the magic number's first two bytes must be zero
    images.write_bytes(bytes(data))
    with pytest.raises(PrimeError, match="magic"):
        mnist_images(data_path=tmp_path)


def test_reconstruction_scores() -> None:
    clean = torch.zeros(1, 1, 2, 2)
    images = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    region = torch.tensor([[[[True, False], [False, False]]]])
    scores = reconstruction_scores(images, clean, region)
    assert scores["mse_region"] == 1.0 and scores["mse_image"] == 0.25
    assert scores["psnr_region_db"] == pytest.approx(10 * math.log10(4.0))
    assert psnr_db(0.0) == math.inf


@pytest.mark.slow
def test_train_and_evaluate_a_tiny_run(tmp_path: Path) -> None:
    from prime.runs.inpaint import InpaintConfig, train_inpainting
    from prime.runs.inpaint_eval import evaluate_inpainting

    config = InpaintConfig(epochs=1, batch_size=4, limit_train=4, limit_test=4)
    metrics = train_inpainting(config, tmp_path / "run", progress=False)
    assert metrics["conductances_unchanged"] and math.isfinite(metrics["test_mse"])
    report = evaluate_inpainting(tmp_path / "run", limit=6, calibration_images=6)
    assert (tmp_path / "run" / "inpaint" / "inpaint.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "run" / "inpaint" / "inpaint.json").read_text())
    assert saved["images"] == 6 and report["timing"]["max_output_difference"] < 1e-5
    assert report["timing"]["same_steps"]
    energy = report["energy_pj_per_image"]
    assert energy["early_stop_reference"]["total"] <= energy["full_T"]["total"]


def test_the_command_line_refuses_a_run_that_is_not_an_inpainting_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(tmp_path), "--inpaint"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("prime eval: error:") and len(err.splitlines()) == 1


def test_the_dense_posterior_is_counted_once_as_the_digital_units_work(tiny_model) -> None:
    from prime.analysis.energy.models import AnalogMacro
    from prime.runs.inpaint_eval import count_energy

    images = torch.rand(3, 1, 32, 32) * 2 - 1
    index = tiny_model.latent_index(3, torch.Generator().manual_seed(0))
    energy = count_energy(tiny_model, images, index, ChangeRule(-math.inf), batch_size=2)
    linears = [m for m in tiny_model.posterior.layers if isinstance(m, torch.nn.Linear)]
    macs = sum(m.in_features * m.out_features for m in linears)
    biases = sum(m.out_features for m in linears if m.bias is not None)
    macro = AnalogMacro()
    per_step_pj = macs * (macro.multiply_pj + macro.digital_op_pj) + biases * macro.digital_op_pj
    assert energy["mean_steps"] == 6
    assert energy["posterior"] == pytest.approx(6 * per_step_pj, rel=1e-3)
    assert energy["total"] == pytest.approx(
        energy["encoder"] + energy["posterior"] + energy["decoder"]
    )
