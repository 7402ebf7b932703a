"""The periphery (docs/periphery.md): quantisers, ADC variation, fixed point, tiles, presets,
calibration, training and evaluation through the non-ideal read path, energy that follows it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from helpers import TINY, crossbar_layer, reference_file

from prime.analysis.energy.counting import count_operations
from prime.analysis.energy.models import AnalogMacro
from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.hardware.periphery import (
    IDEAL,
    PERIPHERIES,
    ADCColumns,
    ReadPathConfig,
    adc_convert,
    fixed_point,
    fraction_bits,
    load_periphery,
    uniform_quantise,
)
from prime.kernels import native
from prime.runs.rundir import with_periphery
from prime.snn.models import get_model
from prime.snn.reference import load_prime_reference


def _columns(
    bits: int, full_scale: float, columns: int = 3, **variation: torch.Tensor
) -> ADCColumns:
    fs = torch.full((columns,), full_scale)
    return ADCColumns(
        bits,
        low=-fs,
        span=2 * fs,
        gain=variation.get("gain", torch.ones(columns)),
        offset_lsb=variation.get("offset_lsb", torch.zeros(columns)),
        inl_lsb=variation.get("inl_lsb", torch.zeros(columns)),
    )


@pytest.mark.parametrize("bits", [1, 3, 6, 8])
def test_quantisation_error_is_at_most_half_an_lsb_inside_and_clips_outside(bits):
    x = torch.linspace(-3.0, 5.0, 4001)
    low, span = -1.0, 3.0
    q = uniform_quantise(x, low, span, bits)
    lsb = span / (2**bits - 1)
    inside = (x >= low) & (x <= low + span)
    assert (q[inside] - x[inside]).abs().max() <= lsb / 2 + 1e-6
    assert torch.all(q[x < low] == low) and torch.allclose(q[x > low + span], torch.tensor(2.0))
    assert len(torch.unique(q)) == 2**bits
    # the ADC with ideal columns is the same quantiser over [-fs, fs]
    currents = x.view(-1, 1).expand(-1, 3)
    converted = adc_convert(currents, _columns(bits, 2.0))
    torch.testing.assert_close(converted[:, 0], uniform_quantise(x, -2.0, 4.0, bits))


def test_spikes_are_exact_through_a_dac_of_range_one():
    spikes = (torch.rand(1000, generator=torch.Generator().manual_seed(0)) < 0.3).float()
    for bits in (1, 4, 8, 16):
        assert torch.equal(uniform_quantise(spikes, 0.0, 1.0, bits), spikes)


def test_straight_through_gradient_is_the_gain_inside_the_range_and_zero_outside():
    gain = torch.tensor([1.0, 0.9, 1.2])
    adc = _columns(6, 1.0, gain=gain, offset_lsb=torch.tensor([0.0, 0.3, -0.4]))
    currents = torch.tensor([[-2.0, 0.1, 0.5], [0.2, -0.3, 3.0]], requires_grad=True)
    scale = 0.5
    adc_convert(currents, adc, scale).sum().backward()
    expected = torch.tensor([[0.0, 0.9, 1.2], [1.0, 0.9, 0.0]]) * scale
    torch.testing.assert_close(currents.grad, expected)
    x = torch.tensor([-1.0, 0.3, 2.5], requires_grad=True)
    uniform_quantise(x, 0.0, 2.0, 4).sum().backward()
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 0.0]))
    y = torch.tensor([0.5, 100.0, -100.0], requires_grad=True)
    fixed_point(y, 8, 4).sum().backward()
    assert torch.equal(y.grad, torch.tensor([1.0, 0.0, 0.0]))


def test_native_and_pytorch_quantisers_agree(monkeypatch):
    if native.kernels() is None:
        pytest.skip("native kernels not built (no C compiler)")
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(64, 12, 9, 9, generator=g).contiguous(memory_format=torch.channels_last)
    currents = frames.unsqueeze(1).requires_grad_(True)  # [N, tiles, columns, H, W]
    per_column = (1, 12, 1, 1)
    full_scale = torch.full(per_column, 2.0)
    gain = 1 + 0.05 * torch.randn(per_column, generator=g)
    offset = 0.3 * torch.randn(per_column, generator=g)
    adc = ADCColumns(5, -full_scale, 2 * full_scale, gain, offset, torch.zeros(per_column))
    native_out = adc_convert(currents, adc, 0.3, word=(2.0**10, -(2.0**15), 2.0**15 - 1))
    native_out.sum().backward()
    native_grad = currents.grad.clone()
    currents.grad = None
    monkeypatch.setattr("prime.kernels.quantise.kernels", lambda: None)
    torch_out = adc_convert(currents, adc, 0.3, word=(2.0**10, -(2.0**15), 2.0**15 - 1))
    torch_out.sum().backward()
    torch.testing.assert_close(native_out, torch_out, rtol=0, atol=1e-6)
    torch.testing.assert_close(native_grad, currents.grad)


def test_wide_fixed_point_equals_floating_point_and_saturates_at_its_bounds():
    x = torch.randn(10_000, generator=torch.Generator().manual_seed(2)) * 10
    for bits in (24, 32):
        frac = fraction_bits(bits, float(x.abs().max()))
        assert (fixed_point(x, bits, frac) - x).abs().max() <= 1e-5
    lsb = 2.0**-4
    big = torch.tensor([1e6, -1e6, 7.99, -8.0])
    assert torch.equal(fixed_point(big, 8, 4), torch.tensor([127 * lsb, -128 * lsb, 8 - lsb, -8]))
    assert fraction_bits(16, 0.3) == 15 and fraction_bits(16, 5.0) == 12


def _model(preset: str | ReadPathConfig, chip_seed: int = 0, name: str = "nmnist-conv"):
    config = PERIPHERIES.get(preset) if isinstance(preset, str) else preset
    return get_model(name, chip_seed=chip_seed, timesteps=3, read_path=config.to_dict())


def test_adc_variation_follows_the_chip_seed():
    def draws(seed: int) -> list[torch.Tensor]:
        layer = _model("approx-adc-4b", seed).memristor_layers()[0]
        return [getattr(layer.read_path, n) for n in ("adc_gain", "adc_offset_lsb", "adc_inl_lsb")]

    same, again, other = draws(3), draws(3), draws(4)
    for a, b, c in zip(same, again, other, strict=True):
        assert torch.equal(a, b) and not torch.equal(a, c) and a.std() > 0
    # the chip's cells do not depend on its periphery
    cells = [m.g_us for m in _model("ideal", 3).memristor_layers()]
    varied = [m.g_us for m in _model("approx-adc-4b", 3).memristor_layers()]
    assert all(torch.equal(a, b) for a, b in zip(cells, varied, strict=True))


@pytest.mark.parametrize(
    "kind, tile_rows",
    [("linear", 128), ("linear", 700), ("conv", 100), ("conv", 128), ("conv", 250)],
    ids=["linear-6-tiles", "linear-1-tile", "conv-channel-tiles", "conv-row-tiles", "conv-2"],
)
@pytest.mark.parametrize("separate", [False, True], ids=["pair", "two-columns"])
def test_a_layer_on_several_tiles_equals_one_tile_when_conversion_is_ideal(
    kind, tile_rows, separate
):
    one = crossbar_layer(kind, ReadPathConfig(tile_rows=10_000, separate_columns=separate))
    split = crossbar_layer(kind, ReadPathConfig(tile_rows=tile_rows, separate_columns=separate))
    shape = (4, 700) if kind == "linear" else (4, 12, 9, 9)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2)) * 3  # graded inputs
    expected, out = one(x), split(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert split.read_path.tiles(split.fan_in) == -(-split.fan_in // tile_rows)


def test_the_ideal_preset_is_todays_fused_path_bit_for_bit():
    x = (torch.rand(3, 4, 2, 34, 34, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    today = get_model("nmnist-conv", timesteps=3)
    ideal = _model("ideal")
    assert ideal.state_dict().keys() == today.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(ideal(x), today(x)) and torch.equal(ideal(x, "single"), today(x))


def test_the_authors_checkpoint_through_the_ideal_preset_matches_the_golden_outputs():
    golden = np.load(reference_file("prime/prime_golden.npz"))
    model = load_prime_reference(
        reference_file("prime/classification.pt"), read_path=IDEAL.to_dict()
    ).eval()
    x = torch.from_numpy(golden["inputs"]).float().transpose(0, 1)
    with torch.no_grad():
        out = model(x).mean(0)
    np.testing.assert_allclose(out.numpy(), golden["mean_output"], rtol=1e-4, atol=1e-4)


def test_calibrated_periphery_runs_single_and_multi_step_alike_and_is_saved():
    model = _model("prime-512").eval()
    x = (torch.rand(3, 8, 2, 34, 34, generator=torch.Generator().manual_seed(5)) < 0.1).float()
    with pytest.raises(PrimeError, match="not calibrated"):
        model(x)
    assert model.calibrate_read_paths([x]) == 3
    with torch.no_grad():
        multi, single = model(x), model(x, "single")
    assert torch.equal(multi, single)
    copy = _model("prime-512").eval()
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(copy(x), multi)
    # a high-resolution periphery is close to the ideal path, a 3-bit ADC is not
    fine = with_periphery(model, ReadPathConfig(tile_rows=512, adc_bits=16, dac_bits=16))
    fine.calibrate_read_paths([x])
    coarse = with_periphery(model, ReadPathConfig(adc_bits=3))
    coarse.calibrate_read_paths([x])
    ideal = with_periphery(model, IDEAL)
    with torch.no_grad():
        exact = ideal(x)
        assert (fine(x) - exact).abs().max() < 1e-2 < (coarse(x) - exact).abs().max()


def test_early_exit_runs_through_a_periphery():
    from prime.inference.early_exit import run_early_exit

    model = _model("prime-512").eval()
    x = (torch.rand(3, 8, 2, 34, 34, generator=torch.Generator().manual_seed(6)) < 0.1).float()
    model.calibrate_read_paths([x])
    result = run_early_exit(model, x, threshold=0.0)
    with torch.no_grad():
        first = model(x)[0]  # every sample exits after its first step
    assert torch.equal(result.steps, torch.ones(8, dtype=torch.long))
    torch.testing.assert_close(result.outputs, first, rtol=1e-5, atol=1e-6)


def test_energy_follows_the_adc_bits_and_the_tiles():
    x = (torch.rand(3, 4, 2, 34, 34, generator=torch.Generator().manual_seed(7)) < 0.1).float()
    energies = {}
    for name, config in {
        "ideal": IDEAL,
        "adc8": ReadPathConfig(adc_bits=8),
        "adc4": ReadPathConfig(adc_bits=4),
        "adc4-tiles": ReadPathConfig(adc_bits=4, tile_rows=128),
    }.items():
        model = _model(config).eval()
        model.calibrate_read_paths([x])
        with torch.no_grad(), count_operations(model) as counts:
            model(x)
        energies[name] = AnalogMacro().energy_pj(counts)
    assert energies["adc8"]["adc"] == pytest.approx(energies["ideal"]["adc"])
    assert energies["adc4"]["adc"] == pytest.approx(energies["adc8"]["adc"] / 16)
    assert energies["adc4-tiles"]["adc"] > energies["adc4"]["adc"]  # FC layer: 18 tiles
    assert energies["adc4-tiles"]["digital"] > energies["adc4"]["digital"]  # partial sums


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"adc_bits": 0}, "adc_bits must be a whole number 1..32"),
        ({"dac_bits": 33}, "dac_bits must be a whole number 1..32"),
        ({"digital_bits": 2.5}, "digital_bits must be a whole number"),
        ({"adc_range_ua": 0}, "adc_range_ua must be a number > 0"),
        ({"dac_range": -1.0}, "dac_range must be a number > 0"),
        ({"tile_rows": 0}, "tile_rows must be a whole number >= 1"),
        ({"adc_noise_lsb": 0.5}, "need adc_bits"),
        ({"separate_columns": True, "tile_columns": 5}, "splits a G\\+/G- pair"),
        ({"adc_bitz": 4}, "unknown fields adc_bitz"),
    ],
)
def test_bad_periphery_fields_are_refused(fields, words):
    with pytest.raises(PrimeError, match=words):
        ReadPathConfig.from_dict(fields)


def test_periphery_presets_and_json_files(tmp_path):
    assert PERIPHERIES.get("ideal") == IDEAL and IDEAL.fused
    assert not PERIPHERIES.get("prime-512").fused
    with pytest.raises(PrimeError, match="unknown periphery 'nope'; known: approx-adc-4b"):
        load_periphery("nope")
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"base": "prime-512", "adc_bits": 4}))
    assert load_periphery(path) == ReadPathConfig(
        tile_rows=512, tile_columns=512, dac_bits=8, adc_bits=4, digital_bits=16
    )
    path.write_text(json.dumps({"adc_bits": 4, "adc_gain": 0.1}))
    with pytest.raises(PrimeError, match=f"{path} has unknown fields adc_gain"):
        load_periphery(path)
    with pytest.raises(PrimeError, match="no such periphery file"):
        load_periphery(tmp_path / "missing.json")


def test_train_and_eval_through_a_periphery_with_a_sweep(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--dataset", TINY, "--epochs", "1", "--batch-size", "4", "--quiet"]
    assert main(["train", *common, "--out", str(run), "--periphery", "prime-512-adc6"]) == 0
    payload = torch.load(run / "checkpoint.pt", weights_only=False)
    assert payload["train_config"]["read_path"]["adc_bits"] == 6
    assert any("adc_full_scale_ua" in k for k in payload["model_state"])
    assert main(["eval", str(run)]) == 0
    assert main(["eval", str(run), "--periphery", "ideal"]) == 0
    out = tmp_path / "sweep"
    assert main(["eval", str(run), "--adc-bits", "8,4", "--out", str(out)]) == 0
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["adc_bits"] for r in rows] == [8, 4]
    assert rows[1]["adc_pj"] == pytest.approx(rows[0]["adc_pj"] / 16, rel=0.05)
    assert {p.name for p in out.iterdir()} == {"sweep.csv", "sweep.json", "sweep.png"}
    capsys.readouterr()
    assert main(["eval", str(run), "--adc-bits", "8,4", "--dac-bits", "8,4"]) == 1
    assert "one periphery field at a time" in capsys.readouterr().err


def test_a_run_whose_periphery_state_does_not_fit_is_refused(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--dataset", TINY, "--epochs", "1", "--batch-size", "4", "--quiet"]
    assert main(["train", *common, "--out", str(run), "--periphery", "prime-512"]) == 0
    payload = torch.load(run / "checkpoint.pt", weights_only=False)
    payload["model_config"]["read_path"]["tile_rows"] = 16  # calibrated for 1 tile, not 4
    torch.save(payload, run / "checkpoint.pt")
    capsys.readouterr()
    assert main(["eval", str(run)]) == 1
    err = capsys.readouterr().err
    assert "periphery state" in err and len(err.strip().splitlines()) == 1
