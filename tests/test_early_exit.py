"""Early exit: the batched controller, its policies, golden parity with PRIME, calibration."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from helpers import reference_file

from prime.core.errors import PrimeError
from prime.data import FrameDataset
from prime.inference.early_exit import (
    POLICIES,
    calibrate_threshold,
    evaluate_early_exit,
    exit_from_trajectory,
    get_policy,
    run_early_exit,
    sweep_thresholds,
)
from prime.snn.models import get_model

T = 6


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return get_model("digits-conv", timesteps=T, chip_seed=3, score_seed=3).eval()


@pytest.fixture(scope="module")
def x():
    g = torch.Generator().manual_seed(5)
    rate = torch.rand(1, 16, 1, 1, 1, generator=g) * 0.3  # inputs of varied difficulty
    return (torch.rand(T, 16, 2, 34, 34, generator=g) < rate).float()


def _median_confidence(model, x, policy="prime"):
    """A threshold some samples pass early and some never: the median confidence at T/2."""
    means = model(x, mode="single").cumsum(0)[T // 2 - 1] / (T // 2)
    return get_policy(policy).confidence(means).median().item()


def test_policies_score_hand_computed_confidences():
    mean_output = torch.tensor([[0.0, 0.0, 0.0, 0.0], [2 * math.log(3), 0.0, 0.0, 0.0]])
    # softmax(mean / 2): uniform, and [0.5, 1/6, 1/6, 1/6]
    prime, margin, entropy = (
        get_policy(n).confidence(mean_output) for n in ("prime", "margin", "entropy")
    )
    entropy_of_second = -(0.5 * math.log(0.5) + 3 * (1 / 6) * math.log(1 / 6))
    assert POLICIES.names() == ["entropy", "margin", "prime"]
    assert torch.allclose(prime, torch.tensor([0.25, 0.5]))
    assert torch.allclose(margin, torch.tensor([0.0, 0.5 - 1 / 6]))
    assert torch.allclose(entropy, torch.tensor([0.0, 1 - entropy_of_second / math.log(4)]))
    assert get_policy("prime", alpha=1.0).confidence(mean_output)[1] > prime[1]


def test_bad_arguments_are_prime_errors(model, x):
    with pytest.raises(PrimeError, match="unknown exit policy 'softmax'"):
        get_policy("softmax")
    with pytest.raises(PrimeError, match="alpha"):
        get_policy("prime", alpha=0)
    with pytest.raises(PrimeError, match="takes only alpha"):
        get_policy("margin", beta=1)
    with pytest.raises(PrimeError, match="min_steps"):
        run_early_exit(model, x, min_steps=T + 1)
    with pytest.raises(PrimeError, match="threshold"):
        run_early_exit(model, x, threshold=float("nan"))
    with pytest.raises(PrimeError, match="timesteps"):
        run_early_exit(model, x[:3])
    with pytest.raises(PrimeError, match="chunk_steps must be a whole number >= 1, got 0"):
        run_early_exit(model, x, chunk_steps=0)
    with pytest.raises(PrimeError, match="batch_size must be a whole number >= 1 or None, got 0"):
        run_early_exit(model, x, batch_size=0)


@pytest.mark.parametrize("policy", POLICIES.names())
def test_steps_stay_between_min_steps_and_T(model, x, policy):
    threshold = _median_confidence(model, x, policy)
    seen = set()
    for min_steps in (1, 3):
        result = run_early_exit(model, x, policy, threshold, min_steps=min_steps)
        assert result.steps.dtype == torch.int64 and result.steps.shape == (16,)
        assert result.steps.min() >= min_steps and result.steps.max() <= T
        assert result.load_saved == pytest.approx(1 - result.steps.double().mean().item() / T)
        seen.update(result.steps.tolist())
    assert len(seen) >= 3  # the threshold really splits the batch at several steps


def _run_alone(model, frames, reads):
    """Mean output of one sample run for len(frames) steps on its own: frames [t, ...]."""
    state, outputs = model.initial_state(), []
    with torch.no_grad():
        for frame in frames:
            out, state = model.step(frame[None], state, reads)
            outputs.append(out[0])
    return torch.stack(outputs).mean(0)


@pytest.mark.slow
def test_compaction_equals_each_sample_run_alone_to_its_exit(model, x):
    threshold = _median_confidence(model, x)
    result = run_early_exit(model, x, "prime", threshold, min_steps=2)
    assert 2 < len(set(result.steps.tolist()))
    reads = model.crossbar_reads()
    for i, steps in enumerate(result.steps.tolist()):
        alone = _run_alone(model, x[:steps, i], reads)
        assert torch.allclose(result.outputs[i], alone, atol=1e-5)
    offline = exit_from_trajectory(model(x, mode="single"), "prime", threshold, min_steps=2)
    assert torch.equal(offline.steps, result.steps)
    assert torch.allclose(offline.outputs, result.outputs, atol=1e-5)


@pytest.mark.parametrize("name", ["digits-conv", "nmnist-mlp"])
@pytest.mark.parametrize("native_kernels", [True, False], ids=["native", "torch-ops"])
def test_network_chunks_from_a_state_equal_single_steps(name, native_kernels, x, monkeypatch):
    """Chunks run multi-step from the state the last one left (fused LIF + pooling for the
    conv net, LIF scans for the MLP) give the single steps' outputs bit for bit."""
    if not native_kernels:
        monkeypatch.setattr("prime.kernels.lif.kernels", lambda: None)
    net = get_model(name, timesteps=T, chip_seed=3, score_seed=3).eval()
    with torch.no_grad():
        steps = net(x, mode="single")
        state, chunks = net.initial_state(), []
        for chunk in x[:4].split([1, 3]):
            out, state = net(chunk, state=state)
            chunks.append(out)
        out, state = net(x[4], state=state)  # a single step goes on from a chunk's state
        chunks.append(out[None])
        chunks.append(net(x[5:], state=state)[0])  # and a chunk from a single step's
    assert steps.abs().sum() > 0
    assert torch.equal(torch.cat(chunks), steps)


@pytest.mark.parametrize("chunk_steps", [1, 2, 3, T])
def test_chunked_exits_are_those_of_the_per_step_rule(model, x, chunk_steps):
    threshold = _median_confidence(model, x)
    rule = exit_from_trajectory(model(x, mode="single"), "prime", threshold, min_steps=2)
    result = run_early_exit(model, x, "prime", threshold, min_steps=2, chunk_steps=chunk_steps)
    assert len(set(rule.steps.tolist())) > 2
    assert torch.equal(result.steps, rule.steps)
    # equal up to the rounding of the linear layer's GEMM, which depends on the batch size
    torch.testing.assert_close(result.outputs, rule.outputs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("chunk_steps", [1, 2, 3])
@pytest.mark.parametrize("min_steps", [1, 3])
def test_streamed_exits_are_those_of_the_per_step_rule(model, x, chunk_steps, min_steps):
    """5 samples at once out of 16: waiting samples join as others exit, so chunks mix
    samples at different steps; the exits stay those of deciding after every step."""
    threshold = _median_confidence(model, x)
    rule = exit_from_trajectory(model(x, mode="single"), "prime", threshold, min_steps)
    result = run_early_exit(
        model, x, "prime", threshold, min_steps, chunk_steps=chunk_steps, batch_size=5
    )
    assert len(set(rule.steps.tolist())) > 2
    assert torch.equal(result.steps, rule.steps)
    torch.testing.assert_close(result.outputs, rule.outputs, rtol=1e-6, atol=1e-6)


def test_observed_network_runs_batch_by_batch_single_steps(model, x):
    """Under forward hooks every step is a call of its own, on at most batch_size samples
    that all are at the same step (a chip's run, batch by batch)."""
    threshold = _median_confidence(model, x)
    rule = exit_from_trajectory(model(x, mode="single"), "prime", threshold)
    batches = []
    handle = model.register_forward_hook(lambda _m, args, _out: batches.append(len(args[0])))
    try:
        result = run_early_exit(model, x, "prime", threshold, batch_size=5)
    finally:
        handle.remove()
    assert torch.equal(result.steps, rule.steps)
    groups = [rule.steps[i : i + 5] for i in range(0, 16, 5)]
    expected = [int((g > t).sum()) for g in groups for t in range(int(g.max()))]
    assert batches == expected


@pytest.mark.parametrize("policy", POLICIES.names())
def test_threshold_one_is_full_T_inference(model, x, policy):
    result = run_early_exit(model, x, policy, threshold=1.0)
    assert (result.steps == T).all() and result.load_saved == 0.0
    assert torch.allclose(result.outputs, model.logits(x, mode="single"), atol=1e-6)
    assert torch.allclose(result.outputs, model.logits(x, mode="multi"), atol=1e-5)


def test_chip_read_every_step_is_followed(model, x):
    layers = model.memristor_layers()
    cells = [layer.g_us.clone() for layer in layers]
    calls = []

    def next_read() -> None:  # step t of a sequence reads the chip with conductances x (1 + 0.2 t)
        t = len(calls) % model.timesteps
        calls.append(t)
        for layer, g_us in zip(layers, cells, strict=True):
            layer.load_conductances(g_us * (1 + 0.2 * t))

    model.read_every_step(next_read)
    try:
        hooked = model(x, mode="single").mean(0)
        result = run_early_exit(model, x, threshold=1.0, batch_size=5)
    finally:
        model.read_every_step(None)
        for layer, g_us in zip(layers, cells, strict=True):
            layer.load_conductances(g_us)
    assert calls == list(range(model.timesteps)) * 2
    assert torch.allclose(result.outputs, hooked, atol=1e-6)
    assert not torch.allclose(hooked, model.logits(x, mode="single"), atol=1e-3)


def test_threshold_zero_exits_everyone_at_min_steps(model, x):
    result = run_early_exit(model, x, threshold=0.0, min_steps=3)
    assert (result.steps == 3).all()
    assert torch.allclose(result.outputs, model(x, mode="single")[:3].mean(0), atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize(("chunk_steps", "batch_size"), [(1, None), (3, None), (2, 7)])
def test_golden_early_exit_steps_of_the_prime_reference(chunk_steps, batch_size):
    from prime.snn.reference import load_prime_reference

    model = load_prime_reference(reference_file("prime/classification.pt"))
    golden = np.load(reference_file("prime/prime_golden.npz"))
    alpha = float(golden["early_exit_alpha"])
    checked = 0
    for prefix in ("", "real_"):
        x = torch.from_numpy(golden[f"{prefix}inputs"]).float().transpose(0, 1)
        for key in golden.files:
            if not key.startswith(f"{prefix}early_exit_steps_th"):
                continue
            threshold = float(key.rsplit("th", 1)[1])
            result = run_early_exit(
                model,
                x,
                "prime",
                threshold,
                alpha=alpha,
                chunk_steps=chunk_steps,
                batch_size=batch_size,
            )
            steps = torch.from_numpy(golden[key])
            output = torch.from_numpy(golden[key.replace("steps", "output")])
            assert torch.equal(result.steps, steps), (key, result.steps, steps)
            assert torch.allclose(result.outputs, output, atol=1e-4), key
            checked += 1
    assert checked == 8
    real = torch.from_numpy(golden["real_inputs"]).float().transpose(0, 1)
    assert run_early_exit(model, real, chunk_steps=chunk_steps).steps.tolist() == [9, 6]


@pytest.mark.slow
def test_evaluate_sweep_and_calibration_agree(model, x):
    labels = model.logits(x, mode="multi").argmax(1)
    labels[::3] = (labels[::3] + 1) % 10  # 6 of 16 wrong at full T
    dataset = FrameDataset(x.transpose(0, 1).contiguous(), labels)
    threshold = _median_confidence(model, x)
    evaluated = evaluate_early_exit(model, dataset, "prime", threshold, batch_size=10)
    (swept,) = sweep_thresholds(model, dataset, (threshold,), batch_size=7)
    assert evaluated["mean_steps"] == pytest.approx(swept["mean_steps"])
    assert evaluated["accuracy"] == pytest.approx(swept["accuracy"])
    assert sum(evaluated["steps_histogram"]) == 16 and len(evaluated["steps_histogram"]) == T
    assert len(evaluated["per_class_steps"]) == 10

    strict = calibrate_threshold(model, dataset, target_drop_pp=0.0, batch_size=16)
    loose = calibrate_threshold(model, dataset, target_drop_pp=20.0, batch_size=16)
    assert strict["full_accuracy"] == pytest.approx(10 / 16)
    for calibrated in (strict, loose):
        assert calibrated["drop_pp"] <= calibrated["target_drop_pp"] + 1e-9
        allowed = [
            row["mean_steps"]
            for row in calibrated["sweep"]
            if 100 * (calibrated["full_accuracy"] - row["accuracy"]) <= calibrated["target_drop_pp"]
        ]
        assert calibrated["mean_steps"] == min(allowed)
    assert loose["load_saved"] >= strict["load_saved"]
    assert loose["load_saved"] > 0
    with pytest.raises(PrimeError, match="target drop"):
        calibrate_threshold(model, dataset, target_drop_pp=-1)


@pytest.mark.slow
def test_eval_early_exit_command_reports_and_writes_files(tmp_path, capsys):
    from prime.cli.main import main
    from prime.runs.config import TrainConfig
    from prime.runs.train import train

    rng = np.random.default_rng(0)
    data_path = tmp_path / "tiny.npz"
    np.savez(data_path, features=0.2 * rng.random((60, 2, 34, 34)), labels=np.arange(60) % 10)
    data = {"data_path": str(data_path), "data_root": str(tmp_path), "val_fraction": 0.25}
    run = tmp_path / "run"
    config = TrainConfig(dataset="npz", model="nmnist-mlp", epochs=1, timesteps=T, data=data)
    train(config, run, progress=False)
    out = tmp_path / "report"
    assert main(["eval", str(run), "--early-exit", "--target-drop", "5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "calibrated on 15 validation samples for a 5-point drop" in printed
    assert "load saved" in printed and "mean steps per class: 0:" in printed
    names = {"sweep.csv", "accuracy_vs_steps.png", "steps_histogram.png", "early_exit.json"}
    assert {p.name for p in out.iterdir()} == names
    report = json.loads((out / "early_exit.json").read_text())
    assert report["samples"] == 12 and sum(report["steps_histogram"]) == 12
    assert report["load_saved"] == pytest.approx(1 - report["mean_steps"] / T)
    assert 100 * (report["calibration"]["full_accuracy"] - report["calibration"]["accuracy"]) <= 5
    rows = (out / "sweep.csv").read_text().splitlines()
    assert rows[0] == "policy,threshold,accuracy,mean_steps,load_saved,samples"
    assert len(rows) == 1 + len(report["sweep"]) and rows[-1].startswith("prime,1.0,")
    with pytest.raises(SystemExit):
        main(["eval", str(run), "--early-exit", "--threshold", "0.5", "--target-drop", "1"])
    assert "not allowed with argument" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # refused by the argument's type, before any work
        main(["eval", str(run), "--early-exit", "--threshold", "0.5", "--min-steps", "0"])
    assert "argument --min-steps: must be >= 1" in capsys.readouterr().err
    too_many = str(T + 1)
    assert (
        main(["eval", str(run), "--early-exit", "--threshold", "0.5", "--min-steps", too_many]) == 1
    )
    assert f"min_steps must be a whole number from 1 to T = {T}" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["shd-rsnn", "spoken-digits-crnn"])
def test_chunked_early_exit_of_recurrent_models_equals_the_per_step_rule(name):
    """Recurrent layers carry their hidden state through chunks as neurons do."""
    model = get_model(name, timesteps=6).eval()
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(6, 5, *model.input_shape, generator=g) < 0.2).float()
    per_step = run_early_exit(model, x, "prime", 0.3, chunk_steps=1)
    chunked = run_early_exit(model, x, "prime", 0.3, chunk_steps=3)
    assert torch.equal(per_step.steps, chunked.steps)
    torch.testing.assert_close(per_step.outputs, chunked.outputs, rtol=1e-5, atol=1e-6)
    full = exit_from_trajectory(model(x, mode="single"), "prime", 0.3)
    assert torch.equal(full.steps, per_step.steps)
