"""The near-memory digital unit beyond the converters (docs/periphery.md): the neurons'
membranes in fixed point, and batch norm folded into the per-column affine correction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.periphery import FixedPoint, ReadPathConfig
from prime.inference.early_exit import run_early_exit
from prime.runs.rundir import with_periphery
from prime.snn.digital import ChannelBias, TDBatchNorm, channel_affine, fold_batch_norms
from prime.snn.models import get_model
from prime.snn.neurons import LIF, Integrator, LIFParams, scan_steps


def _currents(steps: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.randn(steps, 64, 30, generator=torch.Generator().manual_seed(seed)) * 0.6


@pytest.mark.parametrize("bits", [24, 32])
def test_wide_membrane_words_equal_floating_point(bits):
    currents = _currents()
    word = FixedPoint(bits, bits - 1 - 4)
    for float_layer, fixed_layer in (
        (LIF(LIFParams(threshold=0.2)), LIF(LIFParams(threshold=0.2), word)),
        (Integrator(0.1), Integrator(0.1, word)),
    ):
        exact, state = scan_steps(float_layer.step, currents, torch.zeros_like(currents[0]))
        fixed, fixed_state = fixed_layer.scan_from(currents, torch.zeros_like(currents[0]))
        if isinstance(float_layer, LIF):
            assert torch.equal(fixed, exact)  # the same spikes
        assert (fixed_state - state).abs().max() <= 1e-5
        assert (fixed - exact).abs().max() <= 1e-5


def test_membrane_words_round_and_saturate_at_their_bounds_never_wrap():
    word = FixedPoint(8, 4)  # 3 integer bits: [-8, 8 - 1/16]
    top, lsb = 8 - 2.0**-4, 2.0**-4
    integrator = Integrator(0.1, word)
    mems = integrator.scan(torch.full((5, 1), 3.0))
    assert mems.flatten().tolist() == [3.0, 6.0, top, top, top]  # saturated, not wrapped
    assert integrator.scan(torch.full((3, 1), -100.0)).flatten().tolist() == [-1.0] * 3
    lif = LIF(LIFParams(threshold=0.2), word)
    spikes, mem = lif.step(torch.tensor([1000.0, -1000.0, 0.03]), torch.zeros(3))
    # -8 after the LeakyReLU's 0.1 (on the grid: 0.125): -1; 0.03 rounds to 0
    assert mem.tolist() == [top, -1.0, 0.0] and spikes.tolist() == [1.0, 0.0, 0.0]
    assert word.constant(0.2) == 3 * lsb and word.constant(100.0) == top


def test_fixed_point_neurons_train_and_run_single_and_multi_step_alike():
    config = ReadPathConfig(neuron_bits=12)
    assert config.fused  # the neurons' words are no stage of the crossbar's path
    model = get_model("nmnist-conv", timesteps=3, read_path=config.to_dict())
    lifs = [m for m in model.modules() if isinstance(m, LIF | Integrator)]
    assert [m.word for m in lifs] == [FixedPoint(12, 7)] * 2 + [FixedPoint(12, 3)]
    x = (torch.rand(3, 6, 2, 34, 34, generator=torch.Generator().manual_seed(4)) < 0.1).float()
    model(x).sum().backward()  # straight through the words, the surrogate at the threshold
    grads = [m.scores.grad for m in model.memristor_layers()]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)
    model.eval()
    with torch.no_grad():
        multi, single = model(x), model(x, "single")
        exact = get_model("nmnist-conv", timesteps=3).eval()(x)
    assert torch.equal(multi, single)
    assert not torch.equal(multi, exact) and (multi - exact).abs().max() < 0.5
    result = run_early_exit(model, x, threshold=0.0)  # every sample exits after one step
    assert torch.equal(result.steps, torch.ones(6, dtype=torch.long))
    assert torch.equal(result.outputs, multi[0])


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"neuron_bits": 0}, "neuron_bits must be a whole number 1..32"),
        ({"neuron_bits": 8, "membrane_integer_bits": 8}, "leaves no sign bit"),
        ({"neuron_bits": 12, "integrator_integer_bits": 12}, "leaves no sign bit"),
        ({"membrane_integer_bits": -1}, "membrane_integer_bits must be a whole number 0..31"),
        ({"fold_batch_norm": 1}, "fold_batch_norm must be true or false"),
    ],
)
def test_bad_digital_unit_fields_are_refused(fields, words):
    with pytest.raises(PrimeError, match=words):
        ReadPathConfig.from_dict(fields)


def test_channel_affines_equal_the_layers_in_evaluation():
    g = torch.Generator().manual_seed(1)
    norm = TDBatchNorm(4, threshold=0.5, alpha=2.0)
    norm.running_mean.copy_(torch.randn(4, generator=g))
    norm.running_var.copy_(torch.rand(4, generator=g) + 0.5)
    nn.init.normal_(norm.weight, generator=g)
    nn.init.normal_(norm.bias, generator=g)
    x = torch.randn(8, 4, 3, 3, generator=g)
    for layer in (norm.eval(), ChannelBias(4, 9, g), nn.BatchNorm2d(4, affine=False).eval()):
        scale, shift = channel_affine(layer)
        torch.testing.assert_close(scale.view(4, 1, 1) * x + shift.view(4, 1, 1), layer(x))


def _gesture(read_path: ReadPathConfig) -> nn.Module:
    model = get_model("dvsgesture-conv32", timesteps=2, read_path=read_path.to_dict())
    g = torch.Generator().manual_seed(3)
    for norm in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        norm.running_mean.copy_(torch.randn(norm.num_features, generator=g) * 0.05)
        norm.running_var.copy_(torch.rand(norm.num_features, generator=g) * 0.01 + 0.005)
        nn.init.normal_(norm.weight, 1.0, 0.3, generator=g)
        nn.init.normal_(norm.bias, 0.0, 0.3, generator=g)
    return model.eval()


def _frames() -> torch.Tensor:
    return (torch.rand(2, 4, 2, 32, 32, generator=torch.Generator().manual_seed(5)) < 0.2).float()


def _first_cell(model: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """The first crossbar's output through the layer after it (batch norm, or its folded
    identity), for the frames of the first timestep."""
    with torch.no_grad():
        return model.layers[1](model.layers[0](frames[0]))


def test_folded_batch_norm_equals_unfolded_in_floating_point():
    model = _gesture(ReadPathConfig(fold_batch_norm=True))
    x = _frames()
    unfolded, cell = model(x).detach(), _first_cell(model, x)
    assert fold_batch_norms(model.layers) == 3
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(_first_cell(model, x), cell, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(model(x), unfolded, rtol=1e-4, atol=1e-4)
        assert torch.equal(model(x), model(x, "single"))


def test_folded_batch_norm_is_within_the_words_lsb_bounds_in_fixed_point():
    x = _frames()
    unfolded = _gesture(ReadPathConfig(digital_bits=10))
    folded = _gesture(ReadPathConfig(digital_bits=10, fold_batch_norm=True))
    assert fold_batch_norms(folded.layers) == 3
    for model in (unfolded, folded):
        model.calibrate_read_paths([x])
    lsb = [2.0 ** -m.layers[0].read_path._fraction_bits(10) for m in (unfolded, folded)]
    scale, _ = channel_affine(unfolded.layers[1])
    bound = (scale.abs().view(-1, 1, 1) * lsb[0] + lsb[1]) / 2
    difference = (_first_cell(folded, x) - _first_cell(unfolded, x)).abs()
    assert difference.max() > 0 and torch.all(difference <= bound + 1e-6)


def test_folding_is_refused_in_training_and_without_a_batch_norm():
    model = _gesture(ReadPathConfig(fold_batch_norm=True)).train()
    with pytest.raises(PrimeError, match="evaluation only"):
        fold_batch_norms(model.layers)
    digits = get_model("digits-conv", timesteps=2)
    with pytest.raises(PrimeError, match="no batch norm right after a crossbar"):
        with_periphery(digits, ReadPathConfig(fold_batch_norm=True))
