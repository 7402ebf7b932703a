"""The pruning paper's parts: mask hysteresis and switch counts, ReLU/ANN and recurrent
layers, activation quantisation, write-verify programming, its conventions (replay, chip
data import) and ``prime reproduce pruning``."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.hardware.devices import chip_generator, get_device
from prime.hardware.programming import WriteVerify, program_weight
from prime.hardware.replay import TraceReplay
from prime.hardware.traces.format import Trace, TraceInfo, write_trace
from prime.hardware.traces.importers import import_set_reset
from prime.runs.rundir import load_run
from prime.snn.layers import MemristorLinear
from prime.snn.masks import hold_mask, supermask, topk_mask
from prime.snn.models import build_model, get_model
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, Integrator, LIFParams, ReLUUnit
from prime.snn.programmed import program_network
from prime.snn.quantize import ActivationQuantizer
from prime.snn.recurrent import FrameRecurrent, Recurrent, RecurrentCell
from prime.snn.switching import HYSTERESIS, SwitchCounter, hysteresis_schedule


def linear(n_in: int, n_out: int, seed: int = 0, keep: float = 0.5) -> MemristorLinear:
    return MemristorLinear(
        n_in,
        n_out,
        device_model=get_device("prime-gaussian"),
        chip=chip_generator(seed),
        scores_generator=torch.Generator().manual_seed(seed + 100),
        keep=keep,
        scale="fan-in",
    )


# ---------------------------------------------------------------- hysteresis, switches


def test_margin_zero_masks_equal_todays():
    torch.manual_seed(0)
    scores = torch.randn(40, 30)
    held = (topk_mask(torch.randn(40, 30).abs(), 0.5), torch.rand(40, 30))
    plain = supermask(scores, 0.5)
    assert torch.equal(supermask(scores, 0.5, held=held, margin=0.0), plain)
    layer = linear(30, 40)
    before = layer.mask().clone()
    SwitchCounter([layer]).program(0.0)
    assert torch.equal(layer.mask(), before)  # holding at margin 0 changes nothing


def test_hold_mask_keeps_edges_whose_score_barely_moved():
    held_mask = torch.tensor([1.0, 0.0, 1.0, 0.0])
    held_abs = torch.tensor([1.0, 1.0, 1.0, 0.0])
    new_mask = torch.tensor([0.0, 1.0, 0.0, 1.0])
    score_abs = torch.tensor([1.005, 1.02, 0.98, 0.5])  # moved 0.5 %, 2 %, 2 %, from 0
    held = hold_mask(new_mask, score_abs, held_mask, held_abs, margin=0.01)
    assert held.tolist() == [1.0, 1.0, 0.0, 1.0]


def test_bad_margins_and_schedules_fail_clearly():
    with pytest.raises(PrimeError, match="margin must be a finite number >= 0"):
        hysteresis_schedule(-0.01)
    with pytest.raises(PrimeError, match="unknown hysteresis schedule 'paper'; known:"):
        hysteresis_schedule("paper")
    with pytest.raises(PrimeError, match="margin must be a finite number >= 0"):
        linear(3, 2).hold(-1.0)
    schedule = HYSTERESIS.get("pruning-spoken-digits")
    assert schedule.margin(0) == 0.009 and schedule.margin(5) == pytest.approx(0.008)
    assert schedule.margin(50) == 0.007


def test_switch_counts_equal_hand_counts():
    layer = linear(2, 2, keep=0.5)  # 4 edges, 2 kept
    counter = SwitchCounter([layer])
    steps = [[4.0, 3.0, 2.0, 1.0], [4.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0], [1, 2, 3, 4.0]]
    for scores in steps:
        with torch.no_grad():
            layer.scores.copy_(torch.tensor(scores).view(2, 2))
        counter.program(0.0)
    # masks 1100 (from the formed 1111: edges 2, 3 pruned), 1001 (edges 1, 3 switch),
    # 0011 (edges 0, 2), 0011 (none): per edge 1, 1, 2, 2
    assert counter.counts[0].view(-1).tolist() == [1, 1, 2, 2]
    assert counter.initial == [2] and counter.total() == 6 and counter.reprogrammed() == 4
    summary = counter.summary()
    assert summary["steps"] == 4 and summary["layers"][0]["max_per_edge"] == 2


def test_hysteresis_holds_small_score_moves_and_counts_fewer_switches():
    torch.manual_seed(1)
    totals = {}
    for margin in (0.0, 0.05):
        layer = linear(8, 8, seed=3)
        counter = SwitchCounter([layer])
        generator = torch.Generator().manual_seed(0)
        for _ in range(20):
            counter.program(margin)
            with torch.no_grad():  # small relative moves, as SGD makes
                noise = torch.randn(layer.scores.shape, generator=generator)
                layer.scores.mul_(1 + 0.03 * noise)
        totals[margin] = counter.total()
    assert totals[0.05] < totals[0.0]


# ---------------------------------------------------------------- ANN and recurrent layers


def test_ann_special_case_equals_plain_pytorch():
    model = get_model("fashion-cnn", scale="fan-in").eval()
    x = torch.rand(1, 5, 1, 28, 28)
    with torch.no_grad():
        w = [w for w in model.weights() if w is not None]
        bn = [m for m in model.layers if isinstance(m, nn.BatchNorm2d)]
        h = F.max_pool2d(x[0], 2)
        h = F.relu(bn[0](F.conv2d(h, w[0])))
        h = F.relu(bn[1](F.max_pool2d(F.conv2d(h, w[1]), 2)))
        h = F.relu(F.linear(h.flatten(1), w[2]))
        expected = F.linear(h, w[3])
        got = model(x)
    assert got.shape == (1, 5, 10)
    torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model(x, "single"), got)


def _recurrent_network(neuron):
    cell = RecurrentCell(linear(4, 4, seed=1), neuron)
    layers = [linear(3, 4, seed=0), Recurrent(cell), linear(4, 2, seed=2), Integrator()]
    return SpikingNetwork(layers, input_shape=(3,), timesteps=5, num_classes=2)


@pytest.mark.parametrize("neuron", [ReLUUnit(), LIF(LIFParams(threshold=0.1))])
def test_recurrent_layer_single_step_equals_scan_and_hand_loop(neuron):
    model = _recurrent_network(neuron)
    x = torch.rand(5, 6, 3)
    multi, single = model(x), model(x, "single")
    torch.testing.assert_close(single, multi)
    w_ih, w_hh, w_out = (w for w in model.weights() if w is not None)
    h, mem, out_mem, outputs = torch.zeros(6, 4), torch.zeros(6, 4), torch.zeros(6, 2), []
    for frame in x:  # h_t = neuron(W_ih x_t + W_hh h_{t-1})
        current = frame @ w_ih.T + h @ w_hh.T
        if isinstance(neuron, LIF):
            mem = torch.where(mem > 0.1, torch.zeros(()), mem)
            mem = F.leaky_relu(0.2 * mem + current, 0.1)
            h = (mem > 0.1).float()
        else:
            h = F.relu(current)
        out_mem = F.leaky_relu(out_mem + h @ w_out.T, 0.1)
        outputs.append(out_mem)
    torch.testing.assert_close(multi, torch.stack(outputs), rtol=1e-5, atol=1e-6)
    assert len(model.memristor_layers()) == 3  # input, hidden (nested) and output crossbars


def test_recurrent_layer_trains_both_masks():
    model = _recurrent_network(LIF(LIFParams(threshold=0.1)))
    loss = model(torch.rand(5, 6, 3)).mean(0).sum()
    loss.backward()
    hidden = model.layers[1].cell.hidden
    assert hidden.scores.grad is not None and hidden.scores.grad.abs().sum() > 0


def test_frame_recurrent_scans_a_frame_axis():
    cell = RecurrentCell(linear(4, 4, seed=1), ReLUUnit())
    layer = FrameRecurrent(cell)
    x = torch.randn(3, 5, 4)
    w = cell.hidden.weight()
    h, outs = torch.zeros(3, 4), []
    for t in range(5):
        h = F.relu(x[:, t] + h @ w.T)
        outs.append(h)
    torch.testing.assert_close(layer(x), torch.stack(outs, 1))


def test_spoken_digit_crnn_has_the_papers_shapes():
    model = get_model("spoken-digits-crnn")
    shapes = [tuple(m.scores.shape) for m in model.memristor_layers()]
    assert shapes == [(64, 1, 3, 2), (32, 64, 3, 2), (128, 32), (128, 128), (256, 128), (10, 256)]
    assert model(torch.rand(1, 2, 23, 20)).shape == (1, 2, 10)
    bn = [m for m in model.layers if isinstance(m, nn.BatchNorm2d)]
    assert bn and not any(m.affine for m in bn)


# ---------------------------------------------------------------- quantisation


@pytest.mark.parametrize("mode", ["uniform", "quantile"])
@pytest.mark.parametrize("nonnegative", [False, True])
def test_quantizer_levels_and_straight_through(mode, nonnegative):
    x = torch.randn(200, requires_grad=True)
    q = ActivationQuantizer(3, mode, nonnegative)
    inputs = x.relu() if nonnegative else x
    out = q(inputs)
    assert len(out.detach().unique()) <= 8
    out.sum().backward()
    expected = (x > 0).float() if nonnegative else torch.ones_like(x)
    torch.testing.assert_close(x.grad, expected)


def test_uniform_quantizer_matches_the_papers_grid():
    x = torch.tensor([0.0, 0.1, 0.5, 0.74, 1.4])  # after a ReLU: step 1.4 / 7 = 0.2
    out = ActivationQuantizer(3, "uniform", nonnegative=True)(x)
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.4, 0.8, 1.4]))


def test_bad_quantizer_settings_fail_clearly():
    with pytest.raises(PrimeError, match="unknown activation quantiser 'log'"):
        ActivationQuantizer(3, "log")
    with pytest.raises(PrimeError, match="activation bits must be a whole number from 1 to 8"):
        ActivationQuantizer(0)


# ---------------------------------------------------------------- programming


def test_write_verify_counts_pulses_and_meets_the_tolerance():
    writer = WriteVerify(sigma_us=2.0, tolerance_us=0.5, max_pulses=50, relaxation_us=0.0)
    target = torch.full((1000,), 10.0)
    g_us, pulses = writer.write(target, torch.Generator().manual_seed(0))
    assert (pulses >= 1).all() and (pulses <= 50).all()
    assert ((g_us - target).abs() <= 0.5).all()  # 50 pulses: every cell got in
    exact = WriteVerify(sigma_us=0.0, relaxation_us=0.0)
    g_us, pulses = exact.write(target, torch.Generator().manual_seed(0))
    assert torch.equal(g_us, target) and (pulses == 1).all()


def test_programmed_pairs_give_the_weights_back():
    weight = torch.randn(5, 7)
    exact = WriteVerify(sigma_us=0.0, relaxation_us=0.0)
    cells = program_weight(weight, exact, torch.Generator().manual_seed(0))
    torch.testing.assert_close((cells.g_us[0] - cells.g_us[1]) * cells.scale, weight)
    assert cells.g_us.min() >= exact.g_min_us and cells.g_us.max() <= exact.g_max_us + 1e-4
    assert cells.clipped == 0 and (cells.pulses == 1).all()


def test_program_network_writes_trained_weights_onto_a_chip():
    software = get_model("spoken-digits-crnn", synapses="weights").eval()
    chip = get_model("spoken-digits-crnn", keep=1.0).eval()
    exact = WriteVerify(sigma_us=0.0, relaxation_us=0.0)
    result = program_network(chip, software, exact, torch.Generator().manual_seed(0))
    x = torch.rand(1, 4, 23, 20)
    torch.testing.assert_close(chip(x), software(x), rtol=1e-4, atol=1e-6)
    assert result["pulses"] == result["cells"] == 2 * sum(m.numel() for m in chip.masks())
    with pytest.raises(PrimeError, match="keeps every edge: build it with keep=1"):
        program_network(get_model("spoken-digits-crnn"), software, exact, torch.Generator())
    with pytest.raises(PrimeError, match="do not fit the chip's crossbars"):
        program_network(get_model("fashion-cnn", keep=1.0), software, exact, torch.Generator())


def test_bad_write_verify_settings_fail_clearly():
    with pytest.raises(PrimeError, match="g_max_us > g_min_us"):
        WriteVerify(g_min_us=5.0, g_max_us=5.0)
    with pytest.raises(PrimeError, match="max_pulses must be a whole number >= 1"):
        WriteVerify(max_pulses=0)


# ---------------------------------------------------------------- the paper's conventions


def _trace(path, rows=8, cols=8, reads=3):
    rng = np.random.default_rng(0)
    values = rng.uniform(5, 15, (reads, rows, cols))
    reset = rng.uniform(0, 1, (reads, rows, cols))
    return write_trace(path, values, TraceInfo(), reset_us=reset), values, reset


def test_reset_positive_prunes_only_the_positive_cell(tmp_path):
    path, values, reset = _trace(tmp_path / "t.h5")
    model = SpikingNetwork([linear(3, 2), Integrator()], (3,), 1, 2)
    with Trace(path) as trace:
        replay = TraceReplay(model, trace, "static", "reset-positive", tile=(8, 8))
        layer = model.memristor_layers()[0]
        index = replay.placement.cell_index[0]
        assert torch.equal(layer.reset_us[0], torch.from_numpy(reset[0]).float().view(-1)[index[0]])
        assert torch.equal(layer.reset_us[1], layer.g_us[1])
        replay.detach()


def test_per_test_batch_reads_zero_in_training_and_advances_in_evaluation(tmp_path):
    path, values, _ = _trace(tmp_path / "t.h5")
    model = SpikingNetwork([linear(3, 2), Integrator()], (3,), 1, 2)
    with Trace(path) as trace:
        replay = TraceReplay(model, trace, "per-test-batch", tile=(8, 8))
        x = torch.rand(1, 2, 3)
        model.train()
        model(x), model(x)
        assert replay.current_read == 0
        model.eval()
        model(x)
        first = replay.current_read
        model(x)
        assert (first, replay.current_read) == (0, 1)
        replay.detach()


def test_random_sign_convention_weighs_abs_delta_g_times_a_fixed_sign():
    pair = get_model("spoken-digits-crnn")
    config = dataclasses.replace(pair.config, weight_sign="random-sign")
    signed = build_model(config)
    assert "sign" not in dict(pair.named_buffers())  # the default is unchanged
    for plain, layer in zip(pair.memristor_layers(), signed.memristor_layers(), strict=True):
        torch.testing.assert_close(layer.scores, plain.scores)  # same scores, same chip
        assert set(layer.sign.unique().tolist()) == {-1.0, 1.0}
        delta = layer.g_us[0] - layer.g_us[1]
        expected = layer.scale * layer.sign * delta.abs() * layer.mask()
        torch.testing.assert_close(layer.weight(), expected)
    # pruned pairs of the paper (reset-positive cells): sign * |G+reset - G-|
    layer = signed.memristor_layers()[2]
    reset = torch.stack([0.1 * layer.g_us[0], layer.g_us[1]])
    layer.load_conductances(layer.g_us.clone(), reset)
    pruned = 1 - layer.mask()
    weight = layer.weight() * pruned
    expected = layer.scale * layer.sign * (reset[0] - reset[1]).abs() * pruned
    torch.testing.assert_close(weight, expected)
    assert torch.equal(
        build_model(config).memristor_layers()[0].sign, signed.memristor_layers()[0].sign
    )
    with pytest.raises(PrimeError, match="unknown --weight-sign 'abs'; known: pair, random-sign"):
        dataclasses.replace(pair.config, weight_sign="abs")


def test_unknown_convention_names_fail_clearly(tmp_path):
    path, _, _ = _trace(tmp_path / "t.h5")
    model = SpikingNetwork([linear(3, 2), Integrator()], (3,), 1, 2)
    with Trace(path) as trace:
        with pytest.raises(PrimeError, match="unknown --pruned 'positive'; known: zero, reset"):
            TraceReplay(model, trace, pruned="positive", tile=(8, 8))
        with pytest.raises(PrimeError, match="unknown replay mode 'per-test'"):
            TraceReplay(model, trace, mode="per-test", tile=(8, 8))


def test_import_set_reset_layout(tmp_path):
    rng = np.random.default_rng(1)
    chip = {"set": rng.uniform(1, 20, (2, 64)), "reset": rng.uniform(0, 1, (2, 64))}
    np.savez(tmp_path / "chip.npz", **chip)
    torch.save({k: torch.from_numpy(v) for k, v in chip.items()}, tmp_path / "chip.pt")
    for name in ("chip.npz", "chip.pt"):
        out = import_set_reset(tmp_path / name, tmp_path / f"{name}.h5", TraceInfo())
        with h5py.File(out) as f:
            np.testing.assert_allclose(f["conductance_us"][()], chip["set"].reshape(2, 8, 8), 1e-6)
            np.testing.assert_allclose(
                f["reset_conductance_us"][()], chip["reset"].reshape(2, 8, 8), 1e-6
            )
    np.savez(tmp_path / "odd.npz", set=np.ones((1, 6)), reset=np.ones((1, 6)))
    with pytest.raises(PrimeError, match="not a square: pass --shape ROWSxCOLS"):
        import_set_reset(tmp_path / "odd.npz", tmp_path / "odd.h5", TraceInfo())
    np.savez(tmp_path / "bad.npz", set=np.ones((1, 4)))
    with pytest.raises(PrimeError, match='must hold arrays "set" and "reset"'):
        import_set_reset(tmp_path / "bad.npz", tmp_path / "bad.h5", TraceInfo())
    assert main(["trace", "import", str(tmp_path / "odd.npz"), "--layout", "set-reset",
                 "--shape", "2x3", "--out", str(tmp_path / "odd.h5")]) == 0  # fmt: skip


# ---------------------------------------------------------------- the reproduction


def _fake_spoken_digits(folder, n_train=40, n_test=20):
    rng = np.random.default_rng(0)
    folder.mkdir()
    for name, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10
        features = rng.random((n, 23, 20)).astype(np.float32) * 0.2
        features[np.arange(n), labels * 2, :] = 1.0  # a learnable row per class
        np.savez(folder / f"{name}.npz", features=features, labels=labels.astype(np.int64))
    return folder


def test_reproduce_pruning_runs_end_to_end(tmp_path, capsys):
    data = _fake_spoken_digits(tmp_path / "digits")
    out = tmp_path / "out"
    # the CRNN's crossbars fill 4 tiles of 512x512; 3 reads, so testing wraps around
    trace, _, _ = _trace(tmp_path / "chip.h5", rows=512, cols=2048, reads=3)
    args = ["reproduce", "pruning", str(data), "--out", str(out), "--epochs", "1", "--quiet",
            "--trace", str(trace)]  # fmt: skip
    assert main(args) == 0
    report = capsys.readouterr().out
    assert "# Pruning random resistive memory: reproduction" in report
    assert "+ replayed reads" in report and "not measured" not in report
    results = json.loads((out / "reproduce.json").read_text())
    rows = results["tasks"]["spoken-digits"]["rows"]
    assert [r["bits"] for r in rows] == [None, 3]
    for row in rows:
        assert row["pruning"]["switches"]["switches"] > 0
        assert row["programmed"]["pulses"] >= row["programmed"]["cells"]
        replay = load_run(row["pruning-replay"]["run"])[1]["train_config"]
        conventions = (replay["replay"], replay["pruned"], replay["weight_sign"])
        assert conventions == ("per-test-batch", "reset-positive", "random-sign")  # the paper's
        pruned, programmed = row["pruning"]["inference"], row["programmed"]["inference"]
        assert pruned["dense_ops"] == programmed["dense_ops"] > pruned["synaptic_ops"] > 0
        assert 0 < pruned["analog_pj"] < pruned["digital_pj"]
        assert pruned["saving"] == pytest.approx(1 - pruned["analog_pj"] / pruned["digital_pj"])
    assert len(results["goals"]) == 10 and {"met"} <= set(results["goals"][0])
    for name in ("report.md", "accuracy.png", "programming.png", "inference.png"):
        assert (out / name).stat().st_size > 0
    assert main(["reproduce", "pruning", str(tmp_path / "missing"), "--out", str(out)]) == 1
    assert "no spoken-digit features" in capsys.readouterr().err


def test_bench_energy_reports_the_programming_of_training():
    from prime.runs.evaluation import training_programming

    layer = linear(2, 2)
    counter = SwitchCounter([layer])
    for scores in ([4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]):
        with torch.no_grad():
            layer.scores.copy_(torch.tensor(scores).view(2, 2))
        counter.program(0.0)
    programming = training_programming({"switches": counter.state_dict()})
    assert programming is not None
    assert (programming["switches"], programming["initial_pruning"]) == (6, 2)
    assert programming["energy_pj"] == 6 * programming["costs"]["pulse_pj"]
    assert training_programming({}) is None


def test_train_refuses_a_negative_margin(tmp_path, capsys):
    assert main(["train", "--hysteresis", "-0.01", "--out", str(tmp_path / "run")]) == 1
    assert "hysteresis margin must be a finite number >= 0" in capsys.readouterr().err
