"""Core: devices, supermasks, neurons, execution modes, reference parity, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import snntorch as snn
import torch
from helpers import reference_file

from prime.core.errors import PrimeError
from prime.hardware.devices import get_device, read_conductance
from prime.snn.masks import kept_count, prime_mask, supermask, topk_mask
from prime.snn.models import get_model, list_models
from prime.snn.neurons import LIFParams, RectangularSpike, lif_scan, lif_step
from prime.snn.reference import load_prime_reference


def random_frames(model, batch=3, density=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    shape = (model.timesteps, batch, *model.input_shape)
    return (torch.rand(shape, generator=g) < density).float()


# ---------------------------------------------------------------- devices


def test_same_seed_same_chip_and_mask_other_seed_other_chip():
    a = get_model("nmnist-conv", chip_seed=7, score_seed=1)
    b = get_model("nmnist-conv", chip_seed=7, score_seed=1)
    c = get_model("nmnist-conv", chip_seed=8, score_seed=1)
    layers = zip(a.memristor_layers(), b.memristor_layers(), c.memristor_layers(), strict=True)
    for la, lb, lc in layers:
        assert torch.equal(la.g_us, lb.g_us)
        assert torch.equal(la.export_mask(), lb.export_mask())
        assert not torch.equal(la.g_us, lc.g_us)


# every preset's shape, seeding and sign: tests/test_registries.py


def test_rram_lognormal_matches_measured_statistics():
    g = get_device("rram-lognormal").sample_cells((200_000,), torch.Generator().manual_seed(0))
    formed = g[g > 0]
    assert abs((g == 0).float().mean().item() - 0.507) < 0.005
    assert abs(formed.log().median().exp().item() - 12.21) < 0.1
    assert abs(formed.log().std().item() - 0.149) < 0.003
    assert abs(formed.mean().item() - 12.35) < 0.1


def test_prime_gaussian_difference_std():
    g = get_device("prime-gaussian").sample((100_000,), torch.Generator().manual_seed(0))
    assert abs((g[0] - g[1]).std().item() - 6.352) < 0.06


def test_empirical_resamples_given_values():
    values = np.array([0.0, 10.0, 20.0])
    g = get_device("empirical", values_us=values).sample((1000,), torch.Generator().manual_seed(0))
    assert set(g.unique().tolist()) == {0.0, 10.0, 20.0}


@pytest.mark.parametrize("bad", [[1.0, -2.0], [1.0, float("nan")], [float("inf")]])
def test_empirical_rejects_negative_or_nan(bad):
    with pytest.raises(PrimeError, match="negative|NaN"):
        get_device("empirical", values_us=np.array(bad))


def test_unknown_preset_and_parameter():
    with pytest.raises(PrimeError, match="unknown device preset 'foo'.*rram-lognormal"):
        get_device("foo")
    with pytest.raises(PrimeError, match="no parameter median"):
        get_device("prime-gaussian", median=3)


def test_read_noise_is_multiplicative_and_fresh_per_read():
    g = torch.full((10_000,), 10.0)
    gen = torch.Generator().manual_seed(0)
    first, second = read_conductance(g, 0.02, gen), read_conductance(g, 0.02, gen)
    assert not torch.equal(first, second)
    assert abs((first / 10 - 1).std().item() - 0.02) < 0.001
    assert read_conductance(g, 0.0) is g


def test_layer_rejects_bad_conductances():
    layer = get_model("nmnist-conv").memristor_layers()[0]
    bad = layer.g_us.clone()
    bad[0, 0, 0, 0, 0] = -1
    with pytest.raises(PrimeError, match="negative"):
        layer.load_conductances(bad)
    bad[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(PrimeError, match="NaN"):
        layer.load_conductances(bad)
    with pytest.raises(PrimeError, match="do not fit"):
        layer.load_conductances(bad[:, :1])


# ---------------------------------------------------------------- masks


@pytest.mark.parametrize("keep", [0.5, 0.1, 0.37, 1.0])
def test_kept_fraction_is_exact_per_layer(keep):
    model = get_model("nmnist-conv", keep=keep)
    for layer in model.memristor_layers():
        assert layer.export_mask().sum().item() == kept_count(layer.scores.numel(), keep)
        assert layer.export_mask().sum().item() == round(keep * layer.scores.numel())


def test_global_mask_keeps_exact_total():
    model = get_model("nmnist-conv", keep=0.3, mask_scope="global")
    masks = model.masks()
    total = sum(m.numel() for m in masks)
    assert sum(m.sum().item() for m in masks) == round(0.3 * total)
    assert model.kept_fraction() == pytest.approx(round(0.3 * total) / total)
    # global: layers need not keep 30 % each
    assert len({round(m.mean().item(), 3) for m in masks}) > 1


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.5, float("nan")])
def test_kept_fraction_outside_range_is_refused(keep):
    with pytest.raises(PrimeError, match=r"kept fraction must be in \(0, 1\]"):
        get_model("nmnist-mlp", keep=keep)


def test_mask_keeps_largest_abs_scores_and_gradient_is_straight_through():
    scores = torch.tensor([0.3, -0.9, 0.1, -0.2], requires_grad=True)
    mask = supermask(scores, 0.5)
    assert mask.tolist() == [1.0, 1.0, 0.0, 0.0]
    (mask * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    # d/dscore = d/dmask * sign(score), also for pruned edges
    assert scores.grad.tolist() == [1.0, -2.0, 3.0, -4.0]


def test_prime_rule_equals_topk_on_reference_sizes():
    g = torch.Generator().manual_seed(0)
    for n in (300, 18432, 23040):
        s = torch.randn(n, generator=g).abs()
        assert torch.equal(prime_mask(s, 0.5), topk_mask(s, 0.5))


def test_scores_learn_and_conductances_never_change():
    torch.manual_seed(0)
    model = get_model("nmnist-conv")
    before = [layer.g_us.clone() for layer in model.memristor_layers()]
    assert all(not b.requires_grad for b in before)
    assert {n for n, _ in model.named_parameters()} == {f"layers.{i}.scores" for i in (0, 3, 7)}
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    x, y = random_frames(model, batch=4), torch.tensor([0, 1, 2, 3])
    masks_before = [m.clone() for m in model.masks()]
    for _ in range(5):
        loss = torch.nn.functional.cross_entropy(model.logits(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for b, layer in zip(before, model.memristor_layers(), strict=True):
        assert torch.equal(b, layer.g_us)  # bit-identical
    assert any(not torch.equal(a, b) for a, b in zip(masks_before, model.masks(), strict=True))


def test_pruned_cells_are_both_cells_of_each_pruned_pair():
    layer = get_model("nmnist-mlp", keep=0.25).memristor_layers()[2]  # 250 -> 10
    cells = layer.pruned_cells()
    mask = layer.export_mask()
    assert cells.shape == (2 * (~mask).sum().item(), 2)
    rows, cols = cells[:, 0], cells[:, 1]
    assert rows.max() < layer.crossbar_shape[0] and cols.max() < layer.crossbar_shape[1]
    out, inp = cols // 2, rows
    assert not mask[out, inp].any()


# ---------------------------------------------------------------- neurons


def test_surrogate_gradient_is_rectangle():
    x = torch.tensor([-0.6, -0.5, -0.49, 0.0, 0.3, 0.49, 0.5, 0.7], requires_grad=True)
    spikes = RectangularSpike.apply(x, 0.5)
    assert spikes.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    spikes.sum().backward()
    assert x.grad.tolist() == [0, 0, 1, 1, 1, 1, 0, 0]  # 1 / (2 * 0.5) inside |x| < 0.5


def test_lif_step_follows_prime_neuron():
    p = LIFParams(threshold=0.5)
    mem = torch.tensor([0.0, 0.6, 0.4, 0.0])
    spikes, mem = lif_step(torch.tensor([0.7, 0.1, 0.1, -1.0]), mem, p)
    # [0.7 -> spike], [0.6 spiked: reset, 0 + 0.1], [0.4*0.2 + 0.1], [leaky relu(-1) = -0.1]
    assert torch.allclose(mem, torch.tensor([0.7, 0.1, 0.18, -0.1]))
    assert spikes.tolist() == [1, 0, 0, 0]


def test_lif_equals_snntorch_leaky_reset_to_zero_without_leaky_relu():
    """prime's LIF is snnTorch's Leaky (reset to zero, beta = 1 - decay) plus LeakyReLU."""
    g = torch.Generator().manual_seed(0)
    currents = torch.rand(12, 5, 7, generator=g)  # positive: LeakyReLU is the identity
    ours = lif_scan(currents, LIFParams(threshold=0.5))
    leaky = snn.Leaky(beta=0.2, threshold=0.5, reset_mechanism="zero")
    mem, theirs = torch.zeros(5, 7), []
    for current in currents:
        spike, mem = leaky(current, mem)
        theirs.append(spike)
    snn.SpikingNeuron.instances.clear()
    assert torch.equal(ours, torch.stack(theirs))


@pytest.mark.parametrize("name", ["nmnist-conv", "nmnist-mlp"])
def test_single_and_multi_step_give_identical_outputs_and_gradients(name):
    model = get_model(name, chip_seed=3)
    x = random_frames(model)
    outs, grads = {}, {}
    for mode in ("multi", "single"):
        model.zero_grad()
        outs[mode] = model(x, mode)
        outs[mode].mean(0).sum().backward()
        grads[mode] = [p.grad.clone() for p in model.parameters()]
    assert outs["multi"].shape == (model.timesteps, 3, 10)
    assert torch.allclose(outs["multi"], outs["single"], atol=1e-6)
    for a, b in zip(grads["multi"], grads["single"], strict=True):
        assert torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------- reference parity


@pytest.mark.parametrize("mode", ["multi", "single"])
@pytest.mark.parametrize("prefix", ["", "real_"])
def test_reference_checkpoint_reproduces_golden_outputs(mode, prefix):
    model = load_prime_reference(reference_file("prime/classification.pt"))
    golden = np.load(reference_file("prime/prime_golden.npz"))
    x = torch.tensor(golden[f"{prefix}inputs"]).float().transpose(0, 1)
    with torch.no_grad():
        out = model(x, mode)
    steps = torch.tensor(golden[f"{prefix}step_outputs"]).transpose(0, 1)
    assert torch.allclose(out, steps, atol=1e-4)
    assert torch.allclose(out.mean(0), torch.tensor(golden[f"{prefix}mean_output"]), atol=1e-4)
    if prefix == "real_":
        assert out.mean(0).argmax(1).tolist() == [4, 4]  # the authors' model says 4


def test_reference_loader_refuses_foreign_and_corrupt_files(tmp_path):
    foreign = tmp_path / "foreign.pt"
    torch.save({"conv.weight": torch.zeros(3)}, foreign)
    with pytest.raises(PrimeError, match="not a PRIME N-MNIST checkpoint"):
        load_prime_reference(foreign)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not a checkpoint")
    with pytest.raises(PrimeError, match="not a readable PyTorch checkpoint"):
        load_prime_reference(corrupt)


# ---------------------------------------------------------------- bad input


def test_wrong_input_shape_and_timesteps_are_named():
    model = get_model("nmnist-conv")
    with pytest.raises(PrimeError, match=r"input frames have shape \(1, 34, 34\)"):
        model(torch.zeros(10, 2, 1, 34, 34))
    with pytest.raises(PrimeError, match="input has 7 timesteps, this model runs 10"):
        model(torch.zeros(7, 2, 2, 34, 34))
    with pytest.raises(PrimeError, match=r"input must have shape \[T, B, ...\]"):
        model(torch.zeros(2, 2, 34, 34))
    with pytest.raises(PrimeError, match="unknown execution mode"):
        model(torch.zeros(10, 1, 2, 34, 34), mode="fast")


def test_unknown_model_lists_known():
    with pytest.raises(PrimeError, match="unknown model 'lenet'; known: .*nmnist-conv"):
        get_model("lenet")
    assert {"nmnist-conv", "nmnist-mlp", "digits-conv"} <= set(list_models())


def test_atomic_write_replaces_whole_file_with_usual_mode(tmp_path):
    import os

    from prime.core.io import atomic_write

    def killed_halfway(tmp):
        tmp.write_text("half")
        raise RuntimeError("killed")

    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        atomic_write(target, killed_halfway)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]
    atomic_write(target, lambda tmp: tmp.write_text("new"))
    assert target.read_text() == "new"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
