"""Real chips: the matched weight scale, stuck cells, ageing, noise-aware training, and the
``prime eval --age/--stuck-*`` reports."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from helpers import TINY, reference_file

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.core.io import load_checkpoint
from prime.hardware.ageing import AGEING, Relaxation, ageing_model, format_age, parse_ages
from prime.hardware.devices import PRIME_DELTA_STD_US, chip_generator, get_device
from prime.hardware.faults import StuckCells
from prime.runs.config import TrainConfig
from prime.runs.train import train
from prime.snn.config import PRIME_SCALE
from prime.snn.layers import matched_scale
from prime.snn.models import get_model

RUN = dict(dataset=TINY, epochs=1, batch_size=8, lr=0.05)


def _cells(seed: int = 0) -> list[torch.Tensor]:
    device = get_device("rram-lognormal")
    chip = chip_generator(seed)
    return [device.sample((20, 30), chip), device.sample((5, 20), chip)]


# ---------------------------------------------------------------- matched weight scale


def test_matched_scale_is_prime_scale_on_the_gaussian_chip_and_matches_rms_elsewhere():
    assert matched_scale(get_device("prime-gaussian")) == PRIME_SCALE
    model = get_model("digits-conv")
    assert all(layer.scale.item() == np.float32(PRIME_SCALE) for layer in model.memristor_layers())
    target_rms = PRIME_SCALE * PRIME_DELTA_STD_US
    measured = reference_file("rram/esgnn_measured_G_hidden_50x50.npy")
    for device in (
        get_device("rram-lognormal"),
        get_device("empirical", values_us=np.load(measured)),
        get_device("prime-gaussian", delta_std_us=20.0),
    ):
        g = device.sample((400_000,), chip_generator(0))
        delta = (g[0] - g[1]).double()
        assert delta.pow(2).mean().sqrt().item() == pytest.approx(device.weight_rms_us(), rel=0.01)
        rms = matched_scale(device) * delta.pow(2).mean().sqrt().item()
        assert rms == pytest.approx(target_rms, rel=0.01)
    with pytest.raises(PrimeError, match="no scale matches it"):
        matched_scale(get_device("empirical", values_us=np.full(9, 3.0)))


def test_training_on_a_trace_matches_the_scale_to_the_trace(tmp_path):
    from prime.hardware.traces.format import TraceInfo, write_trace

    reads = np.random.default_rng(0).uniform(0, 40, (1, 512, 512)).astype(np.float32)
    trace = write_trace(tmp_path / "chip.h5", reads, TraceInfo())
    train(TrainConfig(**RUN, trace=str(trace)), tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model_state"]
    expected = PRIME_SCALE * PRIME_DELTA_STD_US / np.sqrt(2 * np.var(reads[0]))
    scales = [v.item() for k, v in state.items() if k.endswith(".scale")]
    assert scales and all(s == pytest.approx(expected, rel=1e-5) for s in scales)


# ---------------------------------------------------------------- stuck cells


def test_stuck_cells_are_seeded_nested_and_absent_at_fraction_zero():
    cells = _cells()
    untouched = StuckCells(0.0, 0.0, seed=3).apply(cells)
    assert all(a is b for a, b in zip(untouched, cells, strict=True))
    a = StuckCells(0.1, 0.05, seed=3).apply(cells)
    b = StuckCells(0.1, 0.05, seed=3).apply(cells)
    c = StuckCells(0.1, 0.05, seed=4).apply(cells)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    top = max(float(g.max()) for g in cells)
    changed = torch.cat([(x != g).flatten() for x, g in zip(a, cells, strict=True)])
    assert 0.08 < changed.float().mean().item() < 0.2
    on = torch.cat([((x == top) & (g != top)).flatten() for x, g in zip(a, cells, strict=True)])
    assert 0.02 < on.float().mean().item() < 0.08  # stuck on at the chip's largest conductance
    more = StuckCells(0.2, 0.05, seed=3).apply(cells)
    stuck_off = [(x == 0) & (g > 0) for x, g in zip(a, cells, strict=True)]
    assert all((m[s] == 0).all() for m, s in zip(more, stuck_off, strict=True))  # nested
    assert (StuckCells(0, 1, stuck_on_us=7.5).apply(cells)[1] == 7.5).all()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(stuck_off=-0.1), "--stuck-off is a fraction of cells in"),
        (dict(stuck_on=1.5), "--stuck-on is a fraction of cells in"),
        (dict(stuck_off=0.6, stuck_on=0.5), "add up to more than all cells"),
        (dict(stuck_on=0.1, stuck_on_us=-2.0), "stuck_on_us must be a finite conductance"),
        (dict(stuck_of=0.1), "no setting stuck_of"),
    ],
)
def test_stuck_cells_refuse_bad_settings(settings, message):
    with pytest.raises(PrimeError, match=message):
        StuckCells.from_dict(settings)


def test_training_with_known_stuck_cells_keeps_them_in_the_checkpoint(tmp_path):
    faults = dict(stuck_off=0.2, stuck_on=0.05, seed=1)
    train(TrainConfig(**RUN, faults=faults), tmp_path / "run", progress=False)
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model_state"]
    clean = get_model("nmnist-conv")
    cells = [layer.g_us for layer in clean.memristor_layers()]
    expected = StuckCells.from_dict(faults).apply(cells)
    trained = [v for k, v in state.items() if k.endswith(".g_us")]
    assert all(torch.equal(x, y) for x, y in zip(trained, expected, strict=True))
    with pytest.raises(PrimeError, match="drop --stuck-off/--stuck-on or --trace"):
        TrainConfig(faults=faults, trace="chip.h5")


# ---------------------------------------------------------------- ageing


def test_ageing_off_or_at_zero_leaves_the_cells_bit_identical():
    cells = _cells()
    wan = AGEING.get("wan2022")
    for aged in (wan.apply(cells, 0.0, seed=1), AGEING.get("none").apply(cells, 1e6, seed=1)):
        assert all(a is g for a, g in zip(aged, cells, strict=True))


def test_ageing_spreads_the_formed_cells_in_log_time_and_keeps_unformed_at_zero():
    cells = _cells()
    wan = AGEING.get("wan2022")
    spreads = []
    for t_s in (1.0, 3600.0, 604800.0):
        aged = wan.apply(cells, t_s, seed=2)
        assert torch.equal(aged[0], wan.apply(cells, t_s, seed=2)[0])
        formed = cells[0] > 0
        assert (aged[0][~formed] == 0).all() and (aged[0] >= 0).all()
        spreads.append((aged[0][formed] / cells[0][formed] - 1).std().item())
    for spread, t_s in zip(spreads, (1.0, 3600.0, 604800.0), strict=True):
        assert spread == pytest.approx(0.054 * np.log10(1 + t_s), rel=0.1)
    drift = Relaxation(drift_per_decade=0.1).apply(cells, 99.0, seed=0)  # 2 decades: -20 %
    assert torch.allclose(drift[0], cells[0] * 0.8)


def test_ageing_refuses_negative_times_and_drift_past_zero(tmp_path):
    with pytest.raises(PrimeError, match="reaches zero conductance at t = 1e\\+06 s"):
        Relaxation(drift_per_decade=0.2).apply(_cells(), 1e6, seed=0)
    with pytest.raises(PrimeError, match="an age is a time since forming >= 0 s"):
        AGEING.get("wan2022").apply(_cells(), -1.0, seed=0)
    for bad in (dict(spread_per_decade=-0.1), dict(t0_s=0.0), dict(drift_per_decade=np.nan)):
        with pytest.raises(PrimeError):
            Relaxation(**bad)
    assert parse_ages("0, 1s,2m,1h,1d,1w,30") == [0, 1, 120, 3600, 86400, 604800, 30]
    for bad in ("-1s", "1y", "", "1h,,2h", "nan"):
        with pytest.raises(PrimeError, match="--age takes times >= 0"):
            parse_ages(bad)
    assert [format_age(t) for t in (0, 1, 90, 3600, 172800, 604800)] == [
        "0s",
        "1s",
        "90s",
        "1h",
        "2d",
        "1w",
    ]
    path = tmp_path / "ageing.json"
    path.write_text(json.dumps({"drift_per_decade": 0.01, "spread_per_decade": 0.02}))
    assert ageing_model(str(path)) == Relaxation(0.01, 0.02)
    path.write_text(json.dumps({"drift": 0.01}))
    with pytest.raises(PrimeError, match="must hold an object with fields among"):
        ageing_model(str(path))


# ---------------------------------------------------------------- noise-aware training


def test_training_read_noise_is_seeded_and_test_accuracy_is_noise_free(tmp_path):
    noisy = TrainConfig(**RUN, train_read_noise=0.3)
    a = train(noisy, tmp_path / "a", progress=False)
    b = train(noisy, tmp_path / "b", progress=False)
    clean = train(TrainConfig(**RUN), tmp_path / "c", progress=False)
    scores = [load_checkpoint(tmp_path / r / "checkpoint.pt")["model_state"] for r in "abc"]
    key = next(k for k in scores[0] if k.endswith("scores"))
    assert torch.equal(scores[0][key], scores[1][key])  # the same seed, the same noise
    assert not torch.equal(scores[0][key], scores[2][key])  # the noise changed training

    def untimed(history):
        return [{k: v for k, v in h.items() if not k.endswith("_seconds")} for h in history]

    assert untimed(a["history"]) == untimed(b["history"])
    assert clean["config"]["train_read_noise"] == 0.0
    with pytest.raises(PrimeError, match="--train-read-noise must be a finite σ >= 0"):
        TrainConfig(train_read_noise=-0.1)


# ---------------------------------------------------------------- prime eval reports


def test_eval_age_and_stuck_reports(tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(**RUN), run, progress=False)
    assert main(["eval", str(run)]) == 0
    plain = capsys.readouterr().out.split("test accuracy ")[1].split(" %")[0]
    out = tmp_path / "age"
    argv = ["eval", str(run), "--age", "0,1h,1w", "--repeats", "2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1w" in printed and "2 repeats" in printed
    with open(out / "age_repeats.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["age"], r["age_seed"]) for r in rows] == [
        ("0s", ""),
        ("1h", "0"),
        ("1h", "1"),
        ("1w", "0"),
        ("1w", "1"),
    ]
    assert f"{100 * float(rows[0]['accuracy']):.2f}" == plain  # age 0 is the plain run
    summary = json.loads((out / "age.json").read_text())["levels"]
    assert [s["repeats"] for s in summary] == [1, 2, 2]
    assert (out / "age.png").read_bytes()[:4] == b"\x89PNG"

    off = tmp_path / "off"
    assert main(["eval", str(run), "--age", "1w", "--age-model", "none", "--out", str(off)]) == 0
    with open(off / "age_repeats.csv") as f:
        assert [r["accuracy"] for r in csv.DictReader(f)] == [rows[0]["accuracy"]]

    stuck = tmp_path / "stuck"
    argv = ["eval", str(run), "--stuck-off", "0,0.3", "--stuck-on", "0,0.01", "--out", str(stuck)]
    assert main([*argv, "--repeats", "2"]) == 0
    with open(stuck / "stuck_cells_repeats.csv") as f:
        levels = [(r["stuck_off"], r["stuck_on"], r["fault_seed"]) for r in csv.DictReader(f)]
    assert levels == [("0.0", "0.0", ""), ("0.3", "0.01", "0"), ("0.3", "0.01", "1")]
    with open(stuck / "stuck_cells_repeats.csv") as f:
        assert next(csv.DictReader(f))["accuracy"] == rows[0]["accuracy"]  # fraction 0: as is


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--stuck-off", "-0.1"], "expected fractions of cells in [0, 1]"),
        (["--stuck-on", "2"], "expected fractions of cells in [0, 1]"),
        (["--age=-1h"], "--age takes times >= 0"),
    ],
)
def test_eval_refuses_bad_fractions_and_ages_as_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        main(["eval", "run", *argv])
    assert message in capsys.readouterr().err


def test_eval_cell_conditions_errors_are_one_line(tmp_path, capsys):
    run = tmp_path / "run"
    train(TrainConfig(**RUN), run, progress=False)
    capsys.readouterr()
    for argv, message in (
        (["--stuck-off", "0.7", "--stuck-on", "0.5"], "add up to more than all cells"),
        (["--age", "1w", "--age-model", "nope"], "unknown ageing model 'nope'"),
        (["--stuck-off", "0.1,0.2", "--stuck-on", "0.1,0.2,0.3"], "same length"),
        (["--age", "1w", "--stuck-off", "0.1"], "separate reports"),
        (["--age", "1w", "--age-model", "big.json"], "cannot read the ageing model"),
    ):
        assert main(["eval", str(run), *argv]) == 1
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and err.count("\n") == 1, err


def test_trace_fit_recovers_a_relaxation_from_timestamped_reads(tmp_path, capsys):
    from prime.hardware.traces.format import TraceInfo, write_trace

    cells = _cells()[0][0].numpy()
    times = np.array([0.0, 9.0, 99.0, 9999.0])
    eps = np.random.default_rng(0).standard_normal(cells.shape)
    reads = np.stack([cells * (1 - (0.02 + 0.03 * eps) * np.log10(1 + t)) for t in times]).clip(
        min=0
    )
    trace = write_trace(tmp_path / "aged.h5", reads.astype(np.float32), TraceInfo(), None, times)
    out = tmp_path / "ageing.json"
    assert main(["trace", "fit", str(trace), "--save-ageing", str(out)]) == 0
    assert "relaxation: drift 0.0" in capsys.readouterr().out
    fitted = ageing_model(str(out))
    assert fitted.drift_per_decade == pytest.approx(0.02, abs=0.003)
    assert fitted.spread_per_decade == pytest.approx(0.03, rel=0.1)
    single = write_trace(tmp_path / "one.h5", reads[:1].astype(np.float32), TraceInfo())
    assert main(["trace", "fit", str(single), "--save-ageing", str(tmp_path / "x.json")]) == 1
    assert "an ageing fit needs reads at two or more times" in capsys.readouterr().err
