"""Chip traces: the HDF5 format, prime trace commands, device fits, placement and replay."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers import TINY, reference_file, tiny_network

from prime.cli.common import device_arg
from prime.cli.main import main
from prime.core.errors import PrimeError
from prime.hardware.fitting import fit_cells, fit_trace
from prime.hardware.replay import TraceReplay, place
from prime.hardware.traces.format import (
    FORMAT_VERSION,
    Trace,
    TraceInfo,
    validate_trace,
    write_trace,
)
from prime.runs.config import TrainConfig
from prime.runs.evaluation import evaluate_run
from prime.runs.train import train

SAMPLE = Path(__file__).resolve().parents[1] / "hw_traces" / "rram-lognormal-512x512.h5"


def random_reads(n: int, rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(1, 20, (n, rows, cols)).astype(np.float32)


def test_write_read_roundtrip_is_chunked_per_read(tmp_path):
    reads = random_reads(3, 4, 6)
    path = tmp_path / "t.h5"
    write_trace(path, iter(reads), TraceInfo(chip_id="A1"), timestamps_s=[0.0, 1.0, 2.0])
    with Trace(path) as trace:
        assert trace.n_reads == 3 and trace.shape == (4, 6)
        assert trace.reads.chunks == (1, 4, 6)
        assert np.array_equal(trace.read(1), reads[1]) and np.array_equal(trace.read(4), reads[1])
        assert trace.attrs["chip_id"] == "A1" and trace.attrs["format_version"] == FORMAT_VERSION
    assert validate_trace(path) == []
    with pytest.raises(PrimeError, match="--force"):
        write_trace(path, reads, TraceInfo())
    write_trace(path, reads[:1], TraceInfo(), force=True)
    assert Trace(path).n_reads == 1
    assert [p.name for p in tmp_path.iterdir()] == ["t.h5"]  # no temporary files left


def test_measured_array_imports_validates_and_fits(tmp_path, capsys):
    source = reference_file("rram/esgnn_measured_G_hidden_50x50.npy")
    out, preset = tmp_path / "esgnn.h5", tmp_path / "fit.json"
    assert main(["trace", "import", str(source), "--out", str(out)]) == 0
    assert main(["trace", "validate", str(out)]) == 0
    assert main(["trace", "fit", str(out), "--save", str(preset)]) == 0
    printed = capsys.readouterr().out
    assert "preferred by KS: lognormal" in printed
    with Trace(out) as trace:
        fit = fit_trace(trace)
    assert fit.unformed_fraction == pytest.approx(0.507, abs=0.001)
    assert fit.lognormal_median_us == pytest.approx(12.2, abs=0.05)
    assert fit.lognormal_sigma_ln == pytest.approx(0.15, abs=0.005)
    assert fit.lognormal_ks < fit.normal_ks
    config = json.loads(preset.read_text())
    assert config["name"] == "rram-lognormal"
    assert config["median_us"] == pytest.approx(fit.lognormal_median_us)
    assert main(["trace", "fit", str(out), "--save", str(preset)]) == 1  # no --force


def test_fits_recover_known_parameters_and_pick_the_right_family():
    rng = np.random.default_rng(1)
    lognormal = np.exp(np.log(20.0) + 0.3 * rng.standard_normal(20_000))
    cells = np.where(rng.random(20_000) < 0.25, 0.0, lognormal)
    fit = fit_cells(cells)
    assert fit.unformed_fraction == pytest.approx(0.25, abs=0.01)
    assert fit.lognormal_median_us == pytest.approx(20.0, rel=0.01)
    assert fit.lognormal_sigma_ln == pytest.approx(0.3, rel=0.02)
    assert fit.preferred == "lognormal"
    normal = fit_cells(50 + 5 * rng.standard_normal(20_000))
    assert normal.preferred == "normal" and normal.unformed_fraction == 0
    assert normal.normal_mean_us == pytest.approx(50, abs=0.2)
    with pytest.raises(PrimeError, match="formed"):
        fit_cells(np.zeros(10))


def test_import_formats_and_units(tmp_path):
    from scipy.io import savemat

    reads = random_reads(2, 3, 4)
    np.savez(tmp_path / "a.npz", G=reads * 1e-6, other=np.zeros(2))
    np.savetxt(tmp_path / "b.csv", reads[0], delimiter=",")
    savemat(tmp_path / "c.mat", {"G": reads[0]})
    with h5py.File(tmp_path / "d.mat", "w") as f:  # MATLAB v7.3 stores arrays transposed
        f["G"] = reads[0].T
    cases = [("a.npz", ["--key", "G", "--units", "S"], reads), ("b.csv", [], reads[:1])]
    cases += [("c.mat", [], reads[:1]), ("d.mat", [], reads[:1])]
    for name, options, expected in cases:
        out = tmp_path / f"{name}.h5"
        assert main(["trace", "import", str(tmp_path / name), "--out", str(out), *options]) == 0
        with Trace(out) as trace:
            got = np.stack(list(trace.iter_reads()))
            assert trace.attrs["provenance"] == f"imported from {name}"  # the file's name
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert main(["trace", "import", str(tmp_path / "a.npz"), "--out", str(tmp_path / "x.h5")]) == 1
    assert main(["trace", "import", str(tmp_path / "b.csv"), "--out", str(out)]) == 1  # exists


def _corrupt(path: Path, how: str) -> None:
    with h5py.File(path, "r+") as f:
        if how == "missing":
            del f["conductance_us"]
        elif how == "units":
            f.attrs["units"] = "S"
            f["conductance_us"].attrs["units"] = "S"
        elif how == "nan":
            f["conductance_us"][1, 0, 0] = np.nan
        elif how == "negative":
            f["conductance_us"][0, 2, 3] = -1.0
        elif how == "version":
            f.attrs["format_version"] = 99
        elif how == "timestamps":
            f["timestamp_s"][2] = -5.0
        elif how == "attributes":
            del f.attrs["chip_id"]
            f.attrs["rows"] = 5


@pytest.mark.parametrize(
    "how, message",
    [
        ("text", "not a readable HDF5"),
        ("truncated", "not a readable HDF5"),
        ("missing", "no /conductance_us"),
        ("units", "units 'S'"),
        ("nan", "read 1 holds 1 NaN"),
        ("negative", "read 0 holds 1 negative"),
        ("version", "format_version 99"),
        ("timestamps", "not monotonic"),
        ("attributes", "missing attributes: chip_id"),
    ],
)
def test_bad_files_fail_validation_with_a_precise_report(tmp_path, capsys, how, message):
    path = tmp_path / "bad.h5"
    write_trace(path, random_reads(3, 4, 6), TraceInfo(), timestamps_s=[0.0, 1.0, 2.0])
    if how == "text":
        path.write_text("conductance,values\n1,2\n")
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[:1500])
    else:
        _corrupt(path, how)
    assert main(["trace", "validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "INVALID" in out and message in out
    if how not in ("nan", "negative", "timestamps", "attributes"):
        assert main(["trace", "info", str(path)]) == 1
        assert message in capsys.readouterr().err


def test_placement_packs_blocks_and_refuses_small_traces():
    placement = place([(3, 6), (2, 3)], (8, 16), tile=(4, 8))
    # layer 0: 6 rows x 6 cols -> blocks 4x6 and 2x6; layer 1: 3 rows x 4 cols; 8 columns a tile
    assert placement.tiles_used == 3 and placement.tiles_available == 4
    assert placement.cells_used == 48
    assert placement.utilisation == pytest.approx(48 / 96)
    cells = torch.cat([i.reshape(-1) for i in placement.cell_index])
    assert len(cells.unique()) == 48 and cells.max() < 8 * 16
    with pytest.raises(PrimeError, match="too small"):
        place([(3, 6), (2, 3)], (4, 16), tile=(4, 8))
    with pytest.raises(PrimeError, match="too small"):
        place([(3, 6)], (50, 50))  # smaller than one default 512x512 tile
    with pytest.raises(PrimeError, match="even"):
        place([(3, 6)], (8, 8), tile=(8, 7))


def test_replay_binds_weights_to_cells_and_reset_state(tmp_path):
    reads, reset = random_reads(3, 8, 12), random_reads(1, 8, 12, seed=5)
    path = tmp_path / "t.h5"
    write_trace(path, reads, TraceInfo(), reset_us=reset)
    model = tiny_network()
    first, second = model.memristor_layers()
    with Trace(path) as trace:
        replay = TraceReplay(model, trace, "static", "reset", tile=(8, 12), position=2)
        for s in (0, 1):  # G+ in even columns, G- in odd; layer 2 after layer 1's 6 columns
            assert torch.equal(first.g_us[s], torch.from_numpy(reads[2][:6, s:6:2]).T)
            assert torch.equal(second.g_us[s], torch.from_numpy(reads[2][:3, 6 + s : 10 : 2]).T)
        mask = first.mask()
        expected_pruned = torch.from_numpy(reset[0][:6, 0:6:2] - reset[0][:6, 1:6:2]).T
        weight = first.weight(mask)
        pruned = mask == 0
        assert torch.allclose(weight[pruned], first.scale * expected_pruned[pruned])
        kept = first.scale * (first.g_us[0] - first.g_us[1])
        assert torch.allclose(weight[~pruned], kept[~pruned])
        replay.detach()
        assert torch.equal(first.weight(mask)[pruned], torch.zeros(int(pruned.sum())))


def test_per_batch_and_per_step_replay_advance_reads(tmp_path):
    x = torch.rand(3, 5, 6) * 4
    path, same = tmp_path / "t.h5", tmp_path / "same.h5"
    write_trace(path, random_reads(4, 8, 12), TraceInfo())
    write_trace(same, np.repeat(random_reads(1, 8, 12), 4, axis=0), TraceInfo())
    model = tiny_network()
    with Trace(path) as trace:
        replay = TraceReplay(model, trace, "per-batch", tile=(8, 12))
        seen = []
        for _ in range(5):
            model(x)
            seen.append(replay.current_read)
        assert seen == [0, 1, 2, 3, 0] and replay.position == 5
        with pytest.raises(PrimeError, match="no /reset_conductance_us"):
            TraceReplay(model, trace, "static", "reset", tile=(8, 12))
        replay.detach()
        replay = TraceReplay(model, trace, "per-step", tile=(8, 12))
        varying = model(x)
        assert replay.position == 3 and replay.current_read == 2
        replay.detach()
    with Trace(same) as trace:
        TraceReplay(model, trace, "static", tile=(8, 12))
        static = model(x, "multi")
        replay = TraceReplay(model, trace, "per-step", tile=(8, 12))
        stepped = model(x, "multi")  # per-step runs the single-step path: parity with static
        replay.detach()
    torch.testing.assert_close(stepped, static)
    assert not torch.allclose(varying, static)


def test_training_on_a_trace_advances_every_batch_reproduces_and_resumes(tmp_path, monkeypatch):
    loaded, kill_at = [], []
    original = TraceReplay.load_read

    def record(self, index):
        if len(loaded) in kill_at:
            raise KeyboardInterrupt  # a kill before the third training batch
        loaded.append(index % self.trace.n_reads)
        original(self, index)

    monkeypatch.setattr(TraceReplay, "load_read", record)
    config = TrainConfig(
        dataset=TINY,
        data={"train_size": 24},
        epochs=1,
        batch_size=8,
        save_every=1,
        trace=str(SAMPLE),
        replay="per-batch",
    )
    train(config, tmp_path / "a", progress=False)
    assert loaded == [0, 1, 2, 3]  # three training batches, one evaluation batch
    loaded.clear()
    kill_at.append(2)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "b", progress=False)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert b["progress"]["step_in_epoch"] == 2 and b["progress"]["trace_read"] == 2
    kill_at.clear()
    train(None, tmp_path / "b", resume=True, progress=False)
    assert loaded == [0, 1, 2, 3]  # the resumed run goes on with read 2
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert a["progress"]["trace_read"] == b["progress"]["trace_read"] == 4
    assert a["train_config"]["trace"] == str(SAMPLE)
    for key, value in a["model_state"].items():  # same trace and seed: the same network
        assert torch.equal(value, b["model_state"][key]), key
    result = evaluate_run(tmp_path / "a", progress=False)  # on the run's own trace
    assert result["trace"] == str(SAMPLE) and result["replay"] == "per-batch"
    assert evaluate_run(tmp_path / "a", chip_seed=3, progress=False)["trace"] is None


def test_a_trace_of_the_models_own_chip_reproduces_it(tmp_path):
    model = tiny_network(seed=2)
    x = torch.rand(3, 5, 6) * 4
    expected = model(x)
    layers = model.memristor_layers()
    placement = place([tuple(m.scores.shape) for m in layers], (8, 12), tile=(8, 12))
    read = torch.full((8 * 12,), 99.0)
    for layer, index in zip(layers, placement.cell_index, strict=True):
        read[index.reshape(-1)] = layer.g_us.reshape(-1)
    path = tmp_path / "own.h5"
    write_trace(path, read.reshape(8, 12).numpy(), TraceInfo(provenance_kind="synthetic"))
    for layer in layers:
        layer.g_us.fill_(1.0)
    with Trace(path) as trace:
        TraceReplay(model, trace, "static", tile=(8, 12))
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)


def test_device_json_from_a_fit_is_accepted_and_checked(tmp_path):
    good, bad = tmp_path / "fit.json", tmp_path / "bad.json"
    good.write_text(json.dumps({"name": "rram-lognormal", "median_us": 10.0}))
    assert device_arg(str(good)) == {"name": "rram-lognormal", "median_us": 10.0}
    assert device_arg("prime-gaussian") == "prime-gaussian"
    bad.write_text(json.dumps({"name": "rram-lognormal", "median": 10.0}))
    with pytest.raises(PrimeError, match="no parameter median"):
        device_arg(str(bad))
    bad.write_text("{not json")
    with pytest.raises(PrimeError, match="not valid JSON"):
        device_arg(str(bad))


def test_sample_trace_is_small_synthetic_and_valid():
    assert SAMPLE.stat().st_size < 4e6
    assert validate_trace(SAMPLE) == []
    with Trace(SAMPLE) as trace:
        assert trace.attrs["provenance_kind"] == "synthetic"
        assert "rram-lognormal" in trace.attrs["provenance"] and trace.reset is not None


def test_synth_and_plot_commands_refuse_to_overwrite(tmp_path):
    out = tmp_path / "s.h5"
    synth = ["trace", "synth", "--out", str(out), "--rows", "32", "--cols", "32", "--reads", "3"]
    assert main(synth) == 0 and main(synth) == 1 and main([*synth, "--force"]) == 0
    assert main(["trace", "plot", str(out)]) == 0
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["trace", "plot", str(out)]) == 1
    with Trace(out) as trace:
        assert trace.n_reads == 3 and not np.array_equal(trace.read(0), trace.read(1))


@pytest.mark.slow
def test_bench_energy_counts_a_trace_run_on_its_trace_and_reset_cells(tmp_path, capsys):
    from prime.analysis.energy.models import AnalogMacro, DigitalAccelerator
    from prime.runs.evaluation import bench_energy

    config = TrainConfig(dataset=TINY, epochs=1, batch_size=4, trace=str(SAMPLE), pruned="reset")
    train(config, tmp_path / "run", progress=False)
    on_trace = evaluate_run(tmp_path / "run", progress=False)["accuracy"]
    # the model's own random chip, which the energy count used before
    own_chip = evaluate_run(tmp_path / "run", chip_seed=0, progress=False)["accuracy"]
    assert own_chip != on_trace  # so the check below tells the two apart
    report = bench_energy(
        tmp_path / "run", tmp_path / "bench", AnalogMacro(), DigitalAccelerator(), None
    )
    assert report["rows"][0]["accuracy"] == on_trace
    assert report["chip"] == f"trace {SAMPLE} (static replay, pruned reset)"
    assert (
        f"(trace {SAMPLE} (static replay, pruned reset))"
        in (tmp_path / "bench" / "energy.md").read_text()
    )


@pytest.mark.slow
def test_a_shipped_model_replays_a_50x50_array(tmp_path, capsys):
    path = tmp_path / "array.h5"
    write_trace(path, random_reads(1, 50, 50), TraceInfo(provenance_kind="synthetic"))
    config = TrainConfig(dataset=TINY, model="conv-50x50", epochs=1, trace=str(path), tile=(50, 50))
    train(config, tmp_path / "run")
    assert "1680 cells on 1 of 1 50x50 tiles" in capsys.readouterr().out
    assert evaluate_run(tmp_path / "run", progress=False)["trace"] == str(path)


@pytest.mark.slow
def test_the_measured_50x50_array_trains_conv_50x50(tmp_path, capsys):
    source = reference_file("rram/esgnn_measured_G_hidden_50x50.npy")
    trace = tmp_path / "esgnn.h5"
    assert main(["trace", "import", str(source), "--out", str(trace)]) == 0
    run = tmp_path / "run"
    options = ["--dataset", TINY, "--model", "conv-50x50", "--epochs", "1"]
    assert (
        main(["train", *options, "--trace", str(trace), "--tile", "50x50", "--out", str(run)]) == 0
    )
    assert "1680 cells on 1 of 1 50x50 tiles, utilisation 67.2 %" in capsys.readouterr().out
