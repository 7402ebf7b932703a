"""IR drop in the network: the read path's wires stage against the tiles' exact solve, zero
wires against the ideal path, single- against multi-step, training through the wires, the
partitioning sweep and the input checks."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from helpers import TINY, crossbar_layer

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.hardware.ir_drop import WireParams, solve_tile
from prime.hardware.periphery import IDEAL, PERIPHERIES, ReadPathConfig
from prime.runs.rundir import with_periphery
from prime.snn.models import get_model

WIRES = ReadPathConfig(tile_rows=128, tile_columns=16, r_wordline_ohm=2.0, r_bitline_ohm=1.0)


def _spikes(shape: tuple[int, ...], seed: int = 5) -> torch.Tensor:
    return (torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < 0.2).float()


def test_a_layers_wires_give_the_column_currents_of_each_tiles_exact_solve():
    """Physical layout (G+ of output j in column 2j, G- in 2j + 1), tiles of 128 x 16 cells,
    against solve_tile per tile: the read path's one matmul equals the circuit."""
    for config in (WIRES, dataclasses.replace(WIRES, adc_bits=16, separate_columns=True)):
        layer = crossbar_layer("linear", config).eval()  # 700 -> 20: 6 x 3 tiles
        x = _spikes((6, 700))
        if config.adc_bits:
            layer.read_path.start_calibration()
            layer(x)
            layer.read_path.finish_calibration()
        with torch.no_grad():
            cells = (layer.g_us * layer.mask()).double()  # [2, 20, 700]
            crossbar = cells.permute(2, 1, 0).reshape(700, 40)
            wire = WireParams(2.0, 1.0)
            v = x.double()
            currents = sum(
                torch.cat(
                    [
                        solve_tile(crossbar[r : r + 128, c : c + 16], v[:, r : r + 128], wire)
                        for c in range(0, 40, 16)
                    ],
                    dim=1,
                )
                for r in range(0, 700, 128)
            )
            expected = layer.scale * (currents[:, 0::2] - currents[:, 1::2])
            ideal = layer.scale * (x.double() @ (cells[0] - cells[1]).T)
            got = layer(x).double()
        drop = (expected - ideal).abs().max()
        assert drop > 1e-2 * expected.abs().max()  # the wires matter here
        tolerance = 1e-4 if config.adc_bits is None else 2e-3  # (16-bit ADC: its rounding)
        assert (got - expected).abs().max() < tolerance * expected.abs().max() + 1e-6


def test_zero_wire_resistance_is_the_ideal_path_and_small_wires_stay_close():
    x = _spikes((3, 4, 2, 34, 34))
    ideal = get_model("nmnist-conv", timesteps=3).eval()
    zero = ReadPathConfig(r_wordline_ohm=0.0, r_bitline_ohm=0.0, ir_model="first-order")
    tiny = dataclasses.replace(WIRES, r_wordline_ohm=1e-4, r_bitline_ohm=1e-4)
    with torch.no_grad():
        out = ideal(x)
        assert torch.equal(with_periphery(ideal, zero).eval()(x), out)
        assert (with_periphery(ideal, tiny).eval()(x) - out).abs().max() < 1e-3
        assert with_periphery(ideal, WIRES).eval()(x).sub(out).abs().max() > 1e-2


@pytest.mark.parametrize("model", ["exact", "first-order"])
def test_single_step_equals_multi_step_through_the_wires(model: str):
    x = _spikes((3, 4, 2, 34, 34))
    config = dataclasses.replace(PERIPHERIES.get("isaac-128"), r_wordline_ohm=1.0)
    net = get_model("nmnist-conv", timesteps=3, read_path={**config.to_dict(), "ir_model": model})
    net.eval().calibrate_read_paths([x])
    with torch.no_grad():
        assert torch.equal(net(x), net(x, "single"))


def test_first_order_and_exact_agree_where_the_drop_is_small():
    x = _spikes((3, 4, 2, 34, 34))
    base = dataclasses.replace(WIRES, tile_rows=64, tile_columns=64, r_bitline_ohm=0.5)
    ideal = get_model("nmnist-conv", timesteps=3).eval()
    exact = with_periphery(ideal, base).eval()
    first = with_periphery(ideal, dataclasses.replace(base, ir_model="first-order")).eval()
    with torch.no_grad():
        e, f, i = exact(x), first(x), ideal(x)
    assert (f - e).abs().max() < 0.1 * (e - i).abs().max()


def test_training_through_the_wires_reaches_the_scores_and_refreshes_the_attenuation():
    x = _spikes((3, 4, 2, 34, 34))
    for model in ("first-order", "exact"):
        config = dataclasses.replace(WIRES, ir_model=model, ir_refresh=2)
        net = get_model("nmnist-conv", timesteps=3, read_path=config.to_dict()).train()
        net(x).sum().backward()
        assert all(float(layer.scores.grad.abs().sum()) > 0 for layer in net.memristor_layers())
    layer = net.memristor_layers()[0]
    path = layer.read_path
    known = path._wires  # the exact transfer of the forward's one read

    def another_mask() -> None:
        with torch.no_grad():
            layer.scores.copy_(layer.scores.roll(1, -1))

    another_mask()
    layer.read()
    assert path._wires is known  # training: kept for ir_refresh = 2 reads
    layer.read()
    refreshed = path._wires
    assert refreshed is not known
    path.eval()
    layer.read()
    assert path._wires is refreshed  # evaluation: the same cells keep their transfer
    another_mask()
    layer.read()
    assert path._wires is not refreshed  # and other cells get theirs at once


def test_wire_resistance_and_ir_model_are_checked():
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(PrimeError, match="finite resistance >= 0"):
            ReadPathConfig(r_wordline_ohm=bad)
    with pytest.raises(PrimeError, match="ir_model must be one of exact, first-order"):
        ReadPathConfig(r_bitline_ohm=1.0, ir_model="spice")
    with pytest.raises(PrimeError, match="ir_refresh must be a whole number"):
        ReadPathConfig(ir_refresh=0)
    assert ReadPathConfig(r_wordline_ohm=0.0) == IDEAL and IDEAL.wire is None


def test_train_and_sweep_wire_resistance_against_partitions(tmp_path, capsys):
    run = tmp_path / "run"
    common = ["--dataset", TINY, "--epochs", "1", "--batch-size", "4", "--quiet"]
    train = ["train", *common, "--out", str(run), "--r-wire", "1", "--ir-model", "first-order"]
    assert main(train) == 0
    read_path = torch.load(run / "checkpoint.pt", weights_only=False)["train_config"]["read_path"]
    assert read_path["r_wordline_ohm"] == read_path["r_bitline_ohm"] == 1.0
    assert read_path["ir_model"] == "first-order"
    out = tmp_path / "sweep"
    sweep = ["eval", str(run), "--r-wire", "0,2", "--tile", "512x512,128x128", "--out", str(out)]
    assert main([*sweep, "--ir-model", "exact"]) == 0
    rows = json.loads((out / "ir_drop.json").read_text())["rows"]
    assert [(r["tile"], r["r_wire_ohm"]) for r in rows] == [
        ("512x512", 0.0),
        ("512x512", 2.0),
        ("128x128", 0.0),
        ("128x128", 2.0),
    ]
    assert rows[2]["adc_pj"] >= rows[0]["adc_pj"]  # smaller tiles: more partial sums
    assert {p.name for p in out.iterdir()} == {"ir_drop.csv", "ir_drop.json", "ir_drop.png"}
    capsys.readouterr()
    assert main(["eval", str(run), "--tile", "512x512,128x128"]) == 1
    assert "need --r-wire" in capsys.readouterr().err
