"""Interoperability: NIR export and import (round trips through snnTorch's and Norse's NIR
readers), programming onto a device's range (ideal, write noise), the chip programming file,
NeuroBench's harness."""

from __future__ import annotations

import dataclasses

import h5py
import numpy as np
import pytest
import torch
from helpers import TINY, reference_file
from torch import nn

from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.hardware.devices import get_device
from prime.hardware.programming import WRITE_VERIFY, program_weight
from prime.interop.chip_program import read_program, write_program
from prime.runs.config import TrainConfig
from prime.runs.train import train
from prime.snn.models import get_model
from prime.snn.neurons import LIF, Integrator
from prime.snn.reference import load_prime_reference

nir = pytest.importorskip("nir", reason="NIR tests need the nir package (pip install nir)")
from prime.interop.nir_export import export_nir, write_nir  # noqa: E402
from prime.interop.nir_import import import_nir, read_nir  # noqa: E402

#: golden inputs the round trips run (of 24; snnTorch's reader runs one sample at a time)
GOLDEN_SAMPLES = 12


def _golden_model(neuron: str):
    """The PRIME authors' N-MNIST model with PRIME's neurons or standard ones, and inputs."""
    model = load_prime_reference(reference_file("prime/classification.pt"))
    if neuron == "lif":
        for m in model.modules():
            if isinstance(m, LIF):
                m.params = dataclasses.replace(m.params, leak_slope=1.0)
            elif isinstance(m, Integrator):
                m.leak_slope = 1.0
    golden = np.load(reference_file("prime/prime_golden.npz"))
    x = torch.from_numpy(golden["inputs"][:GOLDEN_SAMPLES]).float().transpose(0, 1)
    with torch.no_grad():
        return model, x, model(x)


def _snntorch_outputs(graph, x: torch.Tensor) -> torch.Tensor:
    """snnTorch's NIR reader on x [T, B, ...], one unbatched sample at a time (its Flatten
    keeps NIR's batch-free dims), the output currents summed over time: [T, B, classes]."""
    snntorch_nir = pytest.importorskip("snntorch.import_nir", reason="needs nirtorch")
    import snntorch.utils

    net = snntorch_nir.import_from_nir(graph)
    outputs = []
    with torch.no_grad():
        for b in range(x.shape[1]):
            snntorch.utils.reset(net)
            outputs.append(torch.stack([net(frame[b])[0] for frame in x]).cumsum(0))
    return torch.stack(outputs, 1)


def test_standard_lif_export_is_exact_in_snntorch(tmp_path):
    model, x, expected = _golden_model("lif")
    write_nir(tmp_path / "m.nir", export_nir(model, readout="currents"))
    out = _snntorch_outputs(read_nir(tmp_path / "m.nir"), x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_prime_neuron_export_differs_by_the_measured_error(tmp_path):
    """PRIME's LeakyReLU has no NIR primitive: snnTorch runs the nearest LIF (docs/interop.md
    gives the measured difference); prime's own reader restores the slope exactly."""
    model, x, expected = _golden_model("prime")
    graph = export_nir(model, readout="currents")
    out = _snntorch_outputs(graph, x)
    difference = (out - expected).abs().max().item()
    assert 0 < difference < 4.0  # measured 3.95 on all 24 golden inputs
    write_nir(tmp_path / "m.nir", export_nir(model))
    back, _ = import_nir(read_nir(tmp_path / "m.nir"), get_device("prime-gaussian"), 10)
    with torch.no_grad():
        torch.testing.assert_close(back(x), expected, rtol=1e-5, atol=1e-5)


def test_norse_reads_the_export_with_its_input_weight_one():
    """Norse's NIR reader (``norse.torch.from_nir``) has no ``nir.AvgPool2d`` or ``nir.I``
    and ignores a LIF's ``r`` (it expects 1, and warns): on an MLP of standard LIFs it runs
    ``U <- (1 - decay) U + decay I``, which is prime's network with each threshold divided by
    its decay (checked to float tolerance). docs/interop.md gives the measured difference to
    prime's own outputs."""
    norse = pytest.importorskip(
        "norse.torch", reason="Norse's NIR reader needs norse (pip install --no-deps norse)"
    )
    from prime.data import load_dataset
    from prime.interop.nir_export import DT_S

    model = get_model("nmnist-mlp", neuron="lif").eval()
    frames = torch.stack([load_dataset("digits", timesteps=10).test[i][0] for i in range(8)])
    x = frames.float().transpose(0, 1)
    net = norse.from_nir(export_nir(model, readout="currents"), dt=DT_S, ignore_warnings=True)
    outputs = []
    with torch.no_grad():
        for b in range(x.shape[1]):  # unbatched: Norse's Flatten keeps NIR's batch-free dims
            state, currents = None, []
            for frame in x:
                current, state = net(frame[b], state)
                currents.append(current)
            outputs.append(torch.stack(currents).cumsum(0))
        out = torch.stack(outputs, 1)
        expected = model(x)
        for m in model.modules():
            if isinstance(m, LIF):
                p = m.params
                m.params = dataclasses.replace(p, threshold=p.threshold / p.decay)
        equivalent = model(x)
    assert out.abs().max() > 0
    torch.testing.assert_close(out, equivalent, rtol=1e-5, atol=1e-5)
    agree = (out.mean(0).argmax(1) == expected.mean(0).argmax(1)).float().mean()
    print(
        f"\nNorse: max |Norse - prime| {(out - expected).abs().max():.3g} (max |output| "
        f"{expected.abs().max():.3g}), equal predictions {100 * agree:.1f} % of {x.shape[1]}"
    )
    assert not torch.allclose(out, expected)


@pytest.fixture(scope="module")
def snntorch_trained():
    """A small snnTorch conv net (the tutorial's, with average pooling, no bias and reset to
    zero, which NIR's LIF describes), trained briefly on the built-in digits, exported to NIR
    by snnTorch's node converter; with the digits and a runner x [B, T, ...] -> spikes
    [T, B, 10]."""
    snn = pytest.importorskip("snntorch")
    nirtorch = pytest.importorskip("nirtorch")
    import snntorch.utils
    from snntorch.export_nir import _extract_snntorch_module

    from prime.data import load_dataset

    torch.manual_seed(0)
    leaky = dict(beta=0.5, init_hidden=True, reset_mechanism="zero")
    net = nn.Sequential(
        nn.Conv2d(2, 8, 5, bias=False),
        snn.Leaky(**leaky),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8 * 15 * 15, 10, bias=False),
        snn.Leaky(**leaky, output=True),
    )

    def run(x: torch.Tensor) -> torch.Tensor:
        snntorch.utils.reset(net)
        return torch.stack([net(x[:, t].float())[0] for t in range(x.shape[1])])

    data = load_dataset("digits", timesteps=10, seed=0)
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(0)
    )
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    for _, (x, y) in zip(range(SNNTORCH_BATCHES), loader, strict=False):
        loss = nn.functional.cross_entropy(run(x).sum(0), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    # snnTorch 1.0's export types the sample's batch dimension into the Input node and then
    # fails its own type check on convolutions; its node converter is used as it is, and the
    # Input node gets NIR's batch-free shape
    sample = data.test[0][0][:1].float()
    graph = nirtorch.extract_nir_graph(net, _extract_snntorch_module, sample, model_name="snntorch")
    graph.nodes["input"].input_type = {"input": np.array([2, 34, 34])}
    return graph, run, data


#: training batches (of 32) of the snnTorch net
SNNTORCH_BATCHES = 45


@pytest.mark.slow
def test_snntorch_trained_network_imports_within_float_tolerance(snntorch_trained):
    """Programmed ideally, the snnTorch net gives snnTorch's spikes."""
    graph, run, data = snntorch_trained
    x, _ = next(iter(torch.utils.data.DataLoader(data.test, batch_size=64)))
    with torch.no_grad():
        expected = run(x)
    model, report = import_nir(graph, get_device("rram-lognormal"), timesteps=10)
    assert report.clipped == 0 and report.pulses == 2 * (8 * 2 * 25 + 10 * 8 * 15 * 15)
    with torch.no_grad():
        out = model(x.float().transpose(0, 1))
    torch.testing.assert_close(out, expected)
    clipped, report = import_nir(graph, get_device("rram-lognormal"), 10, weight_quantile=0.9)
    assert report.clipped > 0
    with torch.no_grad():
        assert not torch.equal(clipped(x.float().transpose(0, 1)), expected)


@pytest.mark.slow
@pytest.mark.parametrize("programming", ["write-verify", "write-once"])
def test_snntorch_trained_network_on_a_noisy_chip(snntorch_trained, programming):
    """With write noise the accuracy on the digits' test split is reported (docs/interop.md:
    ``pytest -s -k noisy_chip``); write-verify takes more than one pulse per cell, and the
    noise is drawn from the write seed."""
    from prime.inference.evaluate import evaluate

    graph, run, data = snntorch_trained
    loader = torch.utils.data.DataLoader(data.test, batch_size=120)
    with torch.no_grad():
        correct = sum(int((run(x).sum(0).argmax(1) == y).sum()) for x, y in loader)
    snntorch_accuracy = correct / len(data.test)
    device = get_device("rram-lognormal")
    model, report = import_nir(graph, device, 10, programming=programming)
    cells = 2 * sum(m.scores.numel() for m in model.memristor_layers())
    assert report.writer.g_max_us == device.g_max_us() and report.clipped == 0
    assert (report.pulses > cells) == (programming == "write-verify")
    assert all(p.max_error > 0 for _, p in report.layers)
    accuracy = evaluate(model, data.test)["accuracy"]
    print(
        f"\nsnnTorch {100 * snntorch_accuracy:.2f} %, prime import --programming {programming} "
        f"on rram-lognormal {100 * accuracy:.2f} % ({report.pulses / cells:.2f} pulses per "
        f"cell) over {len(data.test)} digits"
    )
    assert accuracy > snntorch_accuracy - 0.1
    again, _ = import_nir(graph, device, 10, programming=programming)
    other, _ = import_nir(graph, device, 10, programming=programming, write_seed=1)
    first = model.memristor_layers()[0].g_us
    assert torch.equal(again.memristor_layers()[0].g_us, first)
    assert not torch.equal(other.memristor_layers()[0].g_us, first)


def test_programming_maps_weights_into_the_device_range():
    weight = torch.tensor([[0.5, -2.0, 0.0], [1.0, 4.0, -0.25]])
    device = get_device("rram-lognormal")
    ideal = WRITE_VERIFY.get("ideal").within(device)
    cells = program_weight(weight, ideal, torch.Generator())
    assert cells.g_us.min() >= 0 and cells.g_us.max() <= device.g_max_us()
    assert cells.window_us == (0.0, device.g_max_us())
    torch.testing.assert_close(cells.scale * (cells.g_us[0] - cells.g_us[1]), weight)
    assert cells.clipped == 0 and cells.max_error == 0
    half = program_weight(weight, ideal, torch.Generator(), weight_quantile=0.5)
    assert half.clipped == 3 and half.max_error > 0  # 4.0, 2.0 and 1.0 exceed the median
    with pytest.raises(PrimeError, match="quantile"):
        program_weight(weight, ideal, torch.Generator(), weight_quantile=0)
    noisy = program_weight(
        weight, WRITE_VERIFY.get("write-verify").within(device), torch.Generator()
    )
    assert noisy.g_us.min() >= 0 and noisy.window_us == (1.0, device.g_max_us())
    with pytest.raises(PrimeError, match="unknown write-verify preset 'exact'"):
        import_nir(_linear_graph(), device, 3, programming="exact")


def _linear_graph():
    return nir.NIRGraph.from_list(
        nir.Input({"input": np.array([3])}),
        nir.Linear(np.ones((2, 3), np.float32)),
        nir.Output({"output": np.array([2])}),
    )


def test_unsupported_nir_node_is_named():
    graph = nir.NIRGraph.from_list(
        nir.Input({"input": np.array([3])}),
        nir.Linear(np.ones((2, 3), np.float32)),
        nir.CubaLIF(*(np.ones(2) for _ in range(4)), np.full(2, 0.5), np.ones(2)),
        nir.Output({"output": np.array([2])}),
    )
    name = next(n for n, node in graph.nodes.items() if isinstance(node, nir.CubaLIF))
    with pytest.raises(PrimeError, match=f"node '{name}' of type CubaLIF is not supported"):
        import_nir(graph, get_device("prime-gaussian"), 3)


def test_graph_whose_shapes_do_not_chain_is_refused():
    graph = nir.NIRGraph(
        {
            "input": nir.Input({"input": np.array([3])}),
            "fc1": nir.Linear(np.ones((4, 3), np.float32)),
            "fc2": nir.Linear(np.ones((2, 5), np.float32)),
            "output": nir.Output({"output": np.array([2])}),
        },
        [("input", "fc1"), ("fc1", "fc2"), ("fc2", "output")],
        type_check=False,
    )
    with pytest.raises(PrimeError, match="'fc2' .* output of shape \\(4,\\).* shapes do not chain"):
        import_nir(graph, get_device("prime-gaussian"), 3)


def test_a_bias_is_imported_as_the_layers_digital_bias():
    weight = np.array([[0.5, -1.0, 0.25], [1.0, 0.0, -0.5]], np.float32)
    bias = np.array([0.3, -0.2], np.float32)
    graph = nir.NIRGraph.from_list(
        nir.Input({"input": np.array([3])}),
        nir.Affine(weight, bias),
        nir.Output({"output": np.array([2])}),
    )
    network, _ = import_nir(graph, get_device("prime-gaussian"), 2)
    x = torch.rand(2, 4, 3)
    expected = x @ torch.from_numpy(weight).T + torch.from_numpy(bias)
    with torch.no_grad():
        assert torch.allclose(network(x), expected, atol=1e-5)


def test_a_non_square_convolution_imports_as_torchs():
    rng = np.random.default_rng(0)
    weight = rng.uniform(-1, 1, (4, 2, 3, 5)).astype(np.float32)
    bias = rng.uniform(-1, 1, 4).astype(np.float32)
    graph = nir.NIRGraph(  # nir's type check takes the kernel's height for its width too
        {
            "input": nir.Input({"input": np.array([2, 6, 11])}),
            "conv": nir.Conv2d((6, 11), weight, (1, 2), (1, 2), 1, 1, bias),
            "output": nir.Output({"output": np.array([4, 6, 6])}),
        },
        [("input", "conv"), ("conv", "output")],
        type_check=False,
    )
    network, _ = import_nir(graph, get_device("prime-gaussian"), 3)
    x = torch.rand(3, 2, 2, 6, 11, generator=torch.Generator().manual_seed(0))
    expected = nn.functional.conv2d(
        x.flatten(0, 1), torch.from_numpy(weight), torch.from_numpy(bias), (1, 2), (1, 2)
    )
    with torch.no_grad():
        assert torch.allclose(network(x).flatten(0, 1), expected, atol=1e-5)


def test_a_non_square_convolution_exports_and_imports_back():
    rng = np.random.default_rng(1)
    weight = rng.uniform(-1, 1, (4, 2, 3, 5)).astype(np.float32)
    graph = nir.NIRGraph(  # as above: nir's type check would take the wrong output width
        {
            "input": nir.Input({"input": np.array([2, 6, 11])}),
            "conv": nir.Conv2d((6, 11), weight, (1, 2), (1, 2), 1, 1, np.zeros(4, np.float32)),
            "flat": nir.Flatten({"input": np.array([4, 6, 6])}, 0, -1),
            "fc": nir.Linear(rng.uniform(-1, 1, (3, 144)).astype(np.float32)),
            "i": nir.I(np.full(3, 1e4)),  # r · dt = 1 at prime's dt of 0.1 ms
            "output": nir.Output({"output": np.array([3])}),
        },
        [("input", "conv"), ("conv", "flat"), ("flat", "fc"), ("fc", "i"), ("i", "output")],
        type_check=False,
    )
    network, _ = import_nir(graph, get_device("prime-gaussian"), 3)
    exported = export_nir(network)
    conv = next(n for n in exported.nodes.values() if isinstance(n, nir.Conv2d))
    assert conv.weight.shape == (4, 2, 3, 5) and tuple(conv.stride) == (1, 2)
    assert tuple(conv.output_type["output"]) == (4, 6, 6)
    again, _ = import_nir(exported, get_device("prime-gaussian"), 3)
    x = torch.rand(3, 2, 2, 6, 11, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(again(x), network(x), atol=1e-4)


def test_a_dilated_convolution_is_refused():
    graph = nir.NIRGraph.from_list(
        nir.Input({"input": np.array([1, 6, 6])}),
        nir.Conv2d((6, 6), np.ones((1, 1, 3, 3), np.float32), 1, 0, 2, 1, np.zeros(1)),
        nir.Output({"output": np.array([1, 2, 2])}),
    )
    with pytest.raises(PrimeError, match="dilation = 1"):
        import_nir(graph, get_device("prime-gaussian"), 3)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    config = TrainConfig(dataset=TINY, epochs=1, batch_size=8, limit_train=7, neuron="lif")
    train(config, out, progress=False)
    return out


@pytest.mark.slow
def test_cli_export_and_import_round_trip(tiny_run, tmp_path, capsys):
    path = tmp_path / "run.nir"
    assert main(["export", str(tiny_run), "--nir", str(path)]) == 0
    assert main(["import", str(path), "--device-model", "rram-lognormal"]) == 0
    out = capsys.readouterr().out
    assert "clipped 0 of 600 weights" in out and "programmed on rram-lognormal" in out
    weights = sum(m.scores.numel() for m in get_model("nmnist-conv").memristor_layers())
    assert f"(ideal programming, write seed 0): {2 * weights} write pulses" in out
    noisy = ["import", str(path), "--programming", "write-verify", "--write-seed", "3"]
    assert main(noisy) == 0
    out = capsys.readouterr().out
    assert "(write-verify programming, write seed 3)" in out and "cells in [1, 20.9] µS" in out
    assert main(["import", str(path), "--programming", "exact"]) == 1
    err = capsys.readouterr().err
    assert "unknown write-verify preset 'exact'" in err and len(err.strip().splitlines()) == 1
    exported = export_nir(get_model("nmnist-conv", neuron="lif"))
    assert isinstance(exported.nodes["1_lif"], nir.LIF)
    assert not exported.nodes["1_lif"].metadata  # the standard LIF carries no PRIME slope


def test_program_file_lists_exactly_the_pruned_cells_tile_by_tile(tmp_path):
    model = get_model("nmnist-mlp", chip_seed=2, keep=0.3)
    tile = (256, 128)
    write_program(model, tmp_path / "chip.h5", tile, "seed 2")
    attrs, tiles = read_program(tmp_path / "chip.h5")
    assert (attrs["tile_rows"], attrs["tile_cols"], attrs["chip"]) == (256, 128, "seed 2")
    assert "prime-gaussian" in attrs["device_model"]
    # 2312 rows x 500 columns: 10 row blocks x 4 column blocks, one full tile each
    assert len({t.tile for t in tiles if t.layer == 0}) == 40
    for number, layer in enumerate(model.memristor_layers()):
        mine = [t for t in tiles if t.layer == number]
        listed = np.concatenate([t.reset[:, :2] for t in mine])
        assert sorted(map(tuple, listed.tolist())) == sorted(
            map(tuple, layer.pruned_cells().tolist())
        )
        kept = sum(len(t.keep) for t in mine)
        assert kept + len(listed) == 2 * layer.scores.numel()
    with h5py.File(tmp_path / "chip.h5", "a") as f:
        first = next(iter(f["layer0"].values()))
        cells = first["reset"][()]
        cells[0, 2] = tile[0]  # off the tile
        first["reset"][...] = cells
    with pytest.raises(PrimeError, match="outside the 256x128 tile"):
        read_program(tmp_path / "chip.h5")


def test_program_csv_for_small_networks(tmp_path):
    model = get_model("shd-mlp", keep=0.5)
    write_program(model, tmp_path / "chip.csv", (512, 512), "seed 0")
    lines = (tmp_path / "chip.csv").read_text().splitlines()
    body = [line for line in lines if not line.startswith("#")]
    assert body[0].startswith("layer,tile,action,crossbar_row")
    pruned = sum(len(m.pruned_cells()) for m in model.memristor_layers())
    assert sum(",reset," in line for line in body) == pruned


@pytest.mark.slow
def test_export_of_a_run_whose_trace_is_missing_is_one_line(tiny_run, tmp_path, capsys):
    payload = torch.load(tiny_run / "checkpoint.pt", weights_only=False)
    payload["train_config"]["trace"] = str(tmp_path / "gone.h5")
    moved = tmp_path / "run"
    moved.mkdir()
    torch.save(payload, moved / "checkpoint.pt")
    assert main(["export", str(moved), "--nir", str(tmp_path / "x.nir")]) == 1
    err = capsys.readouterr().err
    assert "gone.h5" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_neurobench_figures_equal_prime_counters(tiny_run):
    pytest.importorskip("neurobench", reason="needs the neurobench package (optional extra)")
    from prime.interop.neurobench import prime_figures, run_neurobench
    from prime.runs.rundir import load_data, load_run, run_config

    model, payload = load_run(tiny_run)
    loader = torch.utils.data.DataLoader(load_data(run_config(payload)).test, batch_size=4)
    figures, counted = run_neurobench(model, loader), prime_figures(model, loader)
    assert figures.keys() == counted.keys()
    for name, value in figures.items():  # the same up to float summation order
        assert value == pytest.approx(counted[name], rel=1e-12, abs=1e-12), name
    assert 0 < figures["ConnectionSparsity"] < 1 and figures["SynapticOperations"]["Dense"] > 0


def test_neuron_kind_is_checked():
    with pytest.raises(PrimeError, match="unknown neuron kind 'izhikevich'"):
        get_model("nmnist-conv", neuron="izhikevich")
    model = get_model("shd-mlp", neuron="lif")
    assert {m.params.leak_slope for m in model.modules() if isinstance(m, LIF)} == {1.0}
