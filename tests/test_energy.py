"""Operation counting and energy models (prime.analysis.energy), and ``prime bench energy``."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from helpers import hand_masked_network, unit_weight_linear
from torch import nn

from prime.analysis.energy.counting import connection_sparsity, count_operations, synapse_counts
from prime.analysis.energy.models import (
    ENERGY_MODELS,
    AnalogMacro,
    DigitalAccelerator,
    Scenario,
    load_energy_model,
)
from prime.core.errors import PrimeError
from prime.core.io import save_checkpoint
from prime.inference.early_exit import run_early_exit
from prime.runs.config import TrainConfig
from prime.snn.layers import MemristorConv2d
from prime.snn.models import get_model
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import Integrator, ReLUUnit
from prime.snn.recurrent import Recurrent, RecurrentCell

#: x [T=3, B=2, 3]: sample a then b at each step
TINY_INPUT = torch.tensor(
    [
        [[1.0, 0, 1], [0, 0, 0]],
        [[0, 1, 0], [1, 1, 1]],
        [[0, 0, 0], [0, 0, 1]],
    ]
)

# Hand computation. Layer 1 currents W x: a: [2,0], [0,1], [0,0]; b: [0,0], [2,1], [1,0].
# LIF (reset to 0 after a spike, U <- 0.2 U + I, spike if U > 0.5): a spikes [1,0], [0,1],
# [0,0]; b spikes [0,0], [1,1], [1,0]. Counts per timestep, summed over a and b:
EXPECTED = {
    "0: MemristorLinear": {
        "input_events": [2, 4, 1],
        "dense_ops": [12, 12, 12],  # 3 inputs x 2 outputs x 2 samples
        "event_ops": [4, 8, 2],  # events x 2 outputs
        "acs": [2, 4, 1],  # a: x0,x2 -> out0 | a: x1 -> out1, b: 3 | b: x2 -> out0
        "macs": [0, 0, 0],
        "row_activations": [2, 4, 1],
        "evaluations": [1, 2, 1],  # frames with at least one event
        "evaluations_all": [2, 2, 2],
    },
    "1: LIF": {"neuron_updates": [4, 4, 4], "output_events": [1, 3, 1]},
    "2: MemristorLinear": {
        "input_events": [1, 3, 1],
        "dense_ops": [4, 4, 4],
        "event_ops": [1, 3, 1],
        "acs": [1, 1, 1],  # only input 0 is kept
        "macs": [0, 0, 0],
        "row_activations": [1, 3, 1],
        "evaluations": [1, 2, 1],
        "evaluations_all": [2, 2, 2],
    },
}


@pytest.mark.parametrize("mode", ["multi", "single"])
def test_counts_match_hand_computation(mode):
    model = hand_masked_network()
    with torch.no_grad(), count_operations(model) as counts:
        model(TINY_INPUT, mode)
    by_name = {layer["name"]: layer for layer in counts.layers}
    for name, expected in EXPECTED.items():
        assert by_name[name]["counts"] == {k: [float(v) for v in vs] for k, vs in expected.items()}
    assert by_name["3: Integrator"]["counts"]["neuron_updates"] == [2.0, 2.0, 2.0]
    assert counts.samples == 2 and counts.sample_steps == [2.0, 2.0, 2.0]
    assert counts.synaptic_operations() == {
        "Effective_MACs": 0.0,
        "Effective_ACs": (7 + 3) / 2,
        "Dense": (36 + 12) / 2,
    }
    assert counts.cell_reads(pruned=True) == 2 * 10
    assert counts.cell_reads(pruned=False) == 2 * (14 + 5)
    # integrator currents a: 1, 0, 0; b: 0, 1, 1 -> membranes a: 1, 1, 1; b: 0, 1, 2
    assert by_name["3: Integrator"]["counts"]["output_events"] == [1.0, 2.0, 2.0]
    # zero outputs: LIF 12 - 5 spikes, integrator 6 - 5 -> 8 of 18
    assert counts.activation_sparsity() == pytest.approx(8 / 18)
    assert "forward" not in vars(model) and "apply" not in vars(model.layers[0])  # restored


# Hand computation of a recurrent ReLU layer h_t = relu(W_ih x_t + W_hh h_{t-1}), unit
# weights, W_ih keeps the diagonal, W_hh the anti-diagonal; x [T=2, B=2, 2].
RECURRENT_INPUT = torch.tensor([[[0.5, 0], [0, 0]], [[0, 0], [0.5, 0.5]]])
# a: h0 = [0.5, 0], h1 = W_hh h0 = [0, 0.5]; b: h0 = [0, 0], h1 = [0.5, 0.5]. The hidden
# crossbar reads h_{t-1}: zeros at t = 0; at t = 1 a's [0.5, 0] (one graded event, one kept
# weight in its row) and b's zeros.
EXPECTED_RECURRENT = {
    "1: Recurrent hidden": {
        "input_events": [0, 1],
        "dense_ops": [8, 8],  # 2 inputs x 2 outputs x 2 samples
        "event_ops": [0, 2],
        "acs": [0, 0],
        "macs": [0, 1],
        "row_activations": [0, 1],
        "evaluations": [0, 1],
        "evaluations_all": [2, 2],
    },
    "1: Recurrent": {"neuron_updates": [4, 4], "output_events": [1, 3]},
}


@pytest.mark.parametrize("mode", ["multi", "single"])
def test_recurrent_hidden_crossbar_counts_match_hand_computation(mode):
    hidden = unit_weight_linear(2, 2, [[0.0, 1.0], [1.0, 0.0]])
    layers = [
        unit_weight_linear(2, 2, [[1.0, 0.0], [0.0, 1.0]]),
        Recurrent(RecurrentCell(hidden, ReLUUnit())),
        unit_weight_linear(2, 1, [[1.0, 0.1]]),
        Integrator(),
    ]
    model = SpikingNetwork(layers, input_shape=(2,), timesteps=2, num_classes=1).eval()
    with torch.no_grad(), count_operations(model) as counts:
        model(RECURRENT_INPUT, mode)
    by_name = {layer["name"]: layer for layer in counts.layers}
    for name, expected in EXPECTED_RECURRENT.items():
        assert by_name[name]["counts"] == {k: [float(v) for v in vs] for k, vs in expected.items()}
    assert by_name["1: Recurrent hidden"]["kept_cells"] == 4
    assert by_name["1: Recurrent"]["spiking"] is False


def test_frame_recurrent_hidden_crossbar_is_counted():
    model = get_model("spoken-digits-crnn").eval()
    with torch.no_grad(), count_operations(model) as counts:
        model(torch.rand(1, 3, 23, 20))
    by_name = {layer["name"]: layer for layer in counts.layers}
    hidden, neurons = by_name["15: FrameRecurrent hidden"], by_name["15: FrameRecurrent"]
    # 4 sequence steps per frame, each a 128 x 128 evaluation
    assert hidden["counts"]["dense_ops"] == [3 * 4 * 128 * 128]
    assert hidden["counts"]["evaluations_all"] == [3 * 4]
    assert neurons["counts"]["neuron_updates"] == [3 * 4 * 128]
    assert len(counts.synapse_layers()) == len(model.memristor_layers()) == 6


def test_energy_models_apply_their_constants():
    model = hand_masked_network()
    with torch.no_grad(), count_operations(model) as counts:
        model(TINY_INPUT)
    macro = AnalogMacro(
        cell_read_pj=1, row_drive_pj=10, adc_pj=100, neuron_update_pj=1000, digital_op_pj=0
    )
    # per sample: cells 20/2, rows (7+5)/2, conversions (4*2 + 4*1)/2, neurons (12+6)/2
    assert macro.energy_pj(counts) == {
        "cells": 10.0,
        "rows": 60.0,
        "adc": 600.0,
        "digital": 0.0,
        "neurons": 9000.0,
        "total": 9670.0,
    }
    assert macro.energy_pj(counts, pruned=False)["cells"] == 19.0
    # latency: layer 1: 4 evaluations x (10 + 2 x 0.78) ns, layer 2: 4 x (10 + 0.78) ns,
    # 2 neuron layers x 6 sample-steps x 1 ns; per sample
    expected_ns = (4 * (10 + 2 * 0.78) + 4 * (10 + 0.78) + 2 * 6 * 1.0) / 2
    assert macro.latency_ns(counts) == pytest.approx(expected_ns)
    digital = DigitalAccelerator(mac_pj=2, neuron_update_pj=3, macs_per_ns=1)
    assert digital.energy_pj(counts) == {"macs": 48.0, "neurons": 27.0, "total": 75.0}
    assert digital.latency_ns(counts) == 24 + 9
    events = DigitalAccelerator(mac_pj=2, ac_pj=0.5, neuron_update_pj=3, event_driven=True)
    assert events.energy_pj(counts) == {"acs": 2.5, "macs": 0.0, "neurons": 27.0, "total": 29.5}
    assert events.synaptic_ops(counts) == 5
    dense = Scenario("dense", digital, counts)
    analog = Scenario("analog", macro, counts)
    ratios = analog.versus(dense)
    assert ratios["energy_efficiency_x"] == pytest.approx(75 / 9670)
    assert ratios["load_saved_pct"] == pytest.approx(100 * (1 - 5 / 24))


def test_presets_and_user_constants(tmp_path):
    assert ENERGY_MODELS.get("digital-45nm-fp32").mac_pj == 4.6
    assert ENERGY_MODELS.get("digital-45nm-fp32").ac_pj == 0.9
    assert ENERGY_MODELS.get("gpu").mac_pj == 0.48
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"base": "rram-macro", "adc_pj": 0.5, "columns_per_adc": 8}))
    mine = load_energy_model(path)
    assert (mine.adc_pj, mine.columns_per_adc, mine.cell_read_pj) == (0.5, 8, 0.0018)
    # the report names what the file changed, not the preset's sources (ISAAC's constants)
    assert mine.description == "rram-macro preset with adc_pj 0.5, columns_per_adc 8 (mine.json)"
    path.write_text(json.dumps({"kind": "digital", "mac_pj": 1.0}))
    described = "digital defaults with mac_pj 1.0 (mine.json)"
    assert load_energy_model(path) == DigitalAccelerator(mac_pj=1.0, description=described)
    path.write_text(json.dumps({"kind": "digital", "description": "my chip", "mac_pj": 1.0}))
    assert load_energy_model(path).description == "my chip"
    for bad, message in [
        ({"base": "rram-macro", "adc_energy": 1}, "unknown constants adc_energy"),
        ({"base": "rram-macro", "adc_pj": -1}, "adc_pj must be a number > 0"),
        ({"base": "rram-macro", "columns_per_adc": 2.5}, "must be a whole number"),
        ({"base": "gpu", "event_driven": 1}, "event_driven must be true or false"),
        ({"adc_pj": 1}, "give 'base'"),
        ({"base": "tpu"}, "unknown energy model 'tpu'"),
    ]:
        path.write_text(json.dumps(bad))
        with pytest.raises(PrimeError, match=message):
            load_energy_model(path)
    path.write_text("{not json")
    with pytest.raises(PrimeError, match="not a readable JSON"):
        load_energy_model(path)
    with pytest.raises(PrimeError, match="no such energy constants file"):
        load_energy_model(tmp_path / "missing.json")


def _conv_model(keep: float) -> SpikingNetwork:
    return get_model("digits-conv", keep=keep, chip_seed=3, score_seed=4).eval()


def test_pruning_halves_active_cells():
    model = get_model("nmnist-mlp", keep=0.5, chip_seed=3, score_seed=4).eval()
    x = torch.ones(10, 1, 2, 34, 34)  # every row of the first crossbar is active
    with torch.no_grad(), count_operations(model) as counts:
        model(x)
    for layer in counts.synapse_layers():
        assert layer["kept_cells"] * 2 == layer["cells"]
    first = counts.synapse_layers()[0]["counts"]
    kept_reads = sum(first["acs"]) + sum(first["macs"])
    assert 2 * kept_reads == sum(first["event_ops"])
    assert connection_sparsity(model) == pytest.approx(0.5)


def test_counting_follows_a_shrinking_batch():
    """Early exit drives model.step with fewer rows: only the steps run are counted."""
    model = _conv_model(0.5)
    x = (torch.rand(10, 4, 2, 34, 34, generator=torch.Generator().manual_seed(0)) < 0.1).float()
    steps = [10, 3, 1, 6]  # steps each sample runs
    with torch.no_grad(), count_operations(model) as counts:
        reads = model.crossbar_reads()
        state, running = model.initial_state(), torch.arange(4)
        for t in range(10):
            _, state = model.step(x[t, running], state, reads)
            keep = torch.tensor([steps[i] > t + 1 for i in running.tolist()]).nonzero().squeeze(1)
            running = running[keep]
            state = [s.index_select(0, keep) if s is not None else None for s in state]
    assert counts.samples == 4
    assert sum(counts.sample_steps) == sum(steps)
    assert counts.sample_steps == [4.0, 3.0, 3.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0]
    lif = counts.layers[1]["counts"]["neuron_updates"]
    assert lif == [n * 12 * 32 * 32 for n in counts.sample_steps]


def test_early_exit_reduces_counted_timesteps_by_the_steps_skipped():
    model = _conv_model(0.5)
    x = (torch.rand(10, 6, 2, 34, 34, generator=torch.Generator().manual_seed(1)) < 0.1).float()
    with torch.no_grad(), count_operations(model) as full:
        model(x)
    with count_operations(model) as exited:
        result = run_early_exit(model, x, threshold=0.0)  # exit after step 1
    assert sum(exited.sample_steps) == result.steps.sum().item() == 6
    skipped = sum(full.sample_steps) - sum(exited.sample_steps)
    assert skipped == (10 - result.steps).sum().item() == 54
    updates = exited.layers[1]["counts"]["neuron_updates"]
    assert updates[0] == full.layers[1]["counts"]["neuron_updates"][0] and sum(updates[1:]) == 0


def neurobench_single_layer_macs(inputs: torch.Tensor, layer: nn.Module, total: bool = False):
    """NeuroBench 2.3's ``metrics.utils.layers.macs.single_layer_MACs`` for Linear/Conv layers,
    reproduced: binary copy of the layer (``binary_copy.make_binary_copy``: nonzero -> 1, all
    ones if ``total``; bias dropped) applied to binary inputs (``input.binary_inputs``); the
    output sum is the op count, accumulates if the inputs are all in {-1, 0, 1}."""
    spiking = bool(((inputs == 0) | (inputs == 1) | (inputs == -1)).all())
    binary_layer = copy.deepcopy(layer)
    weight = (layer.weight.detach() != 0).float()
    binary_layer.weight = nn.Parameter(torch.ones_like(weight) if total else weight)
    binary_layer.bias = None
    x = (inputs != 0).float()
    return int(binary_layer(torch.ones_like(x) if total else x).sum()), spiking


def _torch_layer(layer, weight: torch.Tensor) -> nn.Module:
    if isinstance(layer, MemristorConv2d):
        out_ch, in_ch, k, _ = weight.shape
        torch_layer = nn.Conv2d(in_ch, out_ch, k, stride=layer.stride, padding=layer.padding)
    else:
        torch_layer = nn.Linear(weight.shape[1], weight.shape[0])
    torch_layer.weight = nn.Parameter(weight.clone())
    return torch_layer


@pytest.mark.parametrize("graded", [False, True])
def test_synaptic_operations_agree_with_neurobench(graded):
    model = _conv_model(0.5)
    generator = torch.Generator().manual_seed(2)
    reads = model.crossbar_reads()
    for layer, weight, shape in [
        (model.layers[0], reads[0].weight, (3, 2, 34, 34)),
        (model.layers[3], reads[3].weight, (3, 12, 16, 16)),
        (model.layers[7], reads[7].weight, (3, 2304)),
    ]:
        x = (torch.rand(shape, generator=generator) < 0.2).float()
        if graded:  # pooled spikes: multiples of 0.25, counted as MACs
            x = x * torch.randint(1, 4, shape, generator=generator) / 4
        counts = synapse_counts(layer, x, weight)
        ops, spiking = neurobench_single_layer_macs(x, _torch_layer(layer, weight))
        dense, _ = neurobench_single_layer_macs(x, _torch_layer(layer, weight), total=True)
        assert spiking is not graded
        assert counts["acs" if spiking else "macs"].sum().item() == ops > 0
        assert counts["macs" if spiking else "acs"].sum().item() == 0
        assert counts["dense_ops"].sum().item() == dense
        try:
            from neurobench.metrics.utils.layers import single_layer_MACs
        except ImportError:
            continue
        assert single_layer_MACs(x, _torch_layer(layer, weight)) == (ops, spiking)
        assert single_layer_MACs(x, _torch_layer(layer, weight), total=True)[0] == dense


def test_count_operations_refuses_nesting():
    model = hand_masked_network()
    with count_operations(model), pytest.raises(PrimeError, match="already active"):
        with count_operations(model):
            pass


def test_reads_every_step_are_counted_once():
    """A model that reads its chip every step (its forward runs single-step) counts each step
    once."""
    model = hand_masked_network()
    model.read_every_step(lambda: None)
    with torch.no_grad(), count_operations(model) as counts:
        model(TINY_INPUT)
    assert counts.samples == 2 and counts.sample_steps == [2.0, 2.0, 2.0]
    assert counts.layers[0]["counts"]["acs"] == [2.0, 4.0, 1.0]


@pytest.mark.slow
def test_bench_energy_command(tmp_path, capsys):
    from prime.cli.main import main

    run = tmp_path / "run"
    model = _conv_model(0.5)  # untrained scores: counting needs no training
    config = dataclasses.asdict(TrainConfig(chip_seed=3, seed=4))
    save_checkpoint(
        run / "checkpoint.pt",
        {
            "train_config": config,
            "model_config": model.config.to_dict(),
            "model_state": model.state_dict(),
        },
    )
    bench = ["bench", "energy", str(run), "--limit", "20", "--batch-size", "10", "--quiet"]
    assert main(bench) == 0
    printed = capsys.readouterr().out
    assert "| + early exit |" in printed and "adc_pj x 10" in printed
    assert "| 7: MemristorLinear | 2304x20 | 23040 / 46080 |" in printed
    report = json.loads((run / "bench" / "energy.json").read_text())
    assert [r["name"] for r in report["rows"]] == [
        "digital dense",
        "digital event-driven",
        "analog macro (all cells)",
        "+ pruning",
        "+ early exit",
    ]
    full, exited = report["counts"]["full"], report["counts"]["early_exit"]
    assert full["samples"] == exited["samples"] == 20
    assert full["steps_per_sample"] == 10 and 1 <= exited["steps_per_sample"] <= 10
    assert report["rows"][3]["energy_pj"] < report["rows"][2]["energy_pj"]  # pruning saves
    assert (run / "bench" / "energy.png").read_bytes()[:4] == b"\x89PNG"
    assert main(bench) == 1  # no overwrite without --force
    assert "pass --force" in capsys.readouterr().err
    assert main([*bench, "--force", "--no-early-exit", "--baseline", "rram-macro"]) == 1
    assert "--baseline needs a model of kind 'digital'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused by the argument's type, before any work
        main([*bench, "--force", "--batch-size", "0"])
    assert "argument --batch-size: must be >= 1" in capsys.readouterr().err
