"""Networks people write by hand: memristor layers with defaults, tuple kernels and a bias;
``prime.convert`` of a PyTorch/snnTorch network (the snnTorch tutorial's convolutional
network); snnTorch neurons refused inside a SpikingNetwork; plain digital layers counted."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from snntorch import utils as snn_utils
from torch import nn

import prime
from prime.analysis.energy.counting import count_operations
from prime.analysis.energy.models import AnalogMacro, DigitalAccelerator
from prime.core.errors import PrimeError
from prime.snn.layers import MemristorConv2d, MemristorLinear
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, Integrator, SubtractiveLIF


def test_hand_written_layers_take_defaults_tuples_and_a_bias():
    conv = MemristorConv2d(2, 4, (3, 5), stride=(1, 2), padding=(1, 0), bias=True)
    torch_conv = nn.Conv2d(2, 4, (3, 5), stride=(1, 2), padding=(1, 0))
    x = torch.rand(3, 2, 9, 11)
    assert conv(x).shape == torch_conv(x).shape == (3, 4, 9, 4)
    with torch.no_grad():
        weight = conv.weight()
        expected = nn.functional.conv2d(x, weight, conv.bias, stride=(1, 2), padding=(1, 0))
        assert torch.allclose(conv(x), expected, atol=1e-5)
    # defaults: the project's device, chip seed 0; the same seed forms the same chip
    a, b = MemristorLinear(6, 3), MemristorLinear(6, 3)
    assert torch.equal(a.g_us, b.g_us) and torch.equal(a.scores, b.scores) and a.bias is None
    assert not torch.equal(MemristorLinear(6, 3, chip=1).g_us, a.g_us)
    rram = MemristorLinear(6, 3, device_model="rram-lognormal", keep=0.25, bias=True)
    assert rram.bias is not None and rram.bias.requires_grad
    assert rram.mask().sum() == round(0.25 * 18)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"kernel_size": (3, 0)}, "kernel_size must be a whole number >= 1 or a pair"),
        ({"kernel_size": 3, "stride": 0}, "stride must be a whole number >= 1"),
        ({"kernel_size": 3, "padding": "same"}, "padding must be a whole number >= 0"),
        ({"kernel_size": 3, "chip": -1}, "chip seed must be a whole number >= 0"),
        ({"kernel_size": 3, "device_model": 3.0}, "a device model is a preset name"),
    ],
)
def test_bad_layer_settings_are_one_clear_error(kwargs, words):
    with pytest.raises(PrimeError, match=words):
        MemristorConv2d(2, 4, **kwargs)


def tutorial_network(reset: str = "subtract") -> nn.Sequential:
    """snnTorch tutorial 6's convolutional network (28x28 MNIST, beta 0.5), its initial
    weights x 3 so that every layer spikes (at torch's initialisation the output is silent)."""
    torch.manual_seed(0)
    leaky = dict(beta=0.5, spike_grad=snn.surrogate.fast_sigmoid(slope=25), init_hidden=True,
                 reset_mechanism=reset)  # fmt: skip
    net = nn.Sequential(
        nn.Conv2d(1, 12, 5),
        nn.MaxPool2d(2),
        snn.Leaky(**leaky),
        nn.Conv2d(12, 64, 5),
        nn.MaxPool2d(2),
        snn.Leaky(**leaky),
        nn.Flatten(),
        nn.Linear(64 * 4 * 4, 10),
        snn.Leaky(**leaky, output=True),
    )
    with torch.no_grad():
        for module in net:
            if isinstance(module, nn.Linear | nn.Conv2d):
                module.weight.mul_(3.0)
    return net


def snntorch_spikes(net: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """The tutorial's forward pass: the output spikes of every step [T, B, 10]."""
    snn_utils.reset(net)
    with torch.no_grad():
        return torch.stack([net(frame)[0] for frame in x])


def input_spikes(timesteps: int = 6, batch: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return (torch.rand(timesteps, batch, 1, 28, 28, generator=g) < 0.3).float()


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_program_mode_computes_the_tutorial_networks_outputs(reset):
    net = tutorial_network(reset)
    x = input_spikes()
    expected = snntorch_spikes(net, x)
    chip = prime.convert(net, input_shape=(1, 28, 28), timesteps=6, mode="program").eval()
    neuron = SubtractiveLIF if reset == "subtract" else LIF
    assert [type(m) for m in chip.layers if not isinstance(m, nn.MaxPool2d | nn.Flatten)] == [
        MemristorConv2d, neuron, MemristorConv2d, neuron, MemristorLinear, neuron,
    ]  # fmt: skip
    assert expected.mean() > 0.05  # the outputs spike
    with torch.no_grad():
        for mode in ("multi", "single"):
            assert torch.allclose(chip(x, mode), expected, atol=1e-6)


def test_supermask_mode_gives_a_trainable_network_of_the_same_shapes():
    net = tutorial_network()
    chip = prime.convert(net, input_shape=(1, 28, 28), timesteps=6, chip_seed=3, keep=0.5)
    torch_weights = [m.weight.shape for m in net if isinstance(m, nn.Linear | nn.Conv2d)]
    assert [m.scores.shape for m in chip.memristor_layers()] == torch_weights
    assert chip.kept_fraction() == pytest.approx(0.5, abs=1e-3)
    out = chip(input_spikes())
    assert out.shape == (6, 4, 10)
    loss = nn.functional.cross_entropy(out.mean(0), torch.arange(4))
    loss.backward()
    assert all(m.scores.grad is not None for m in chip.memristor_layers())
    assert all(m.bias is not None and m.bias.grad is not None for m in chip.memristor_layers())


def test_convert_refuses_what_it_cannot_place():
    with pytest.raises(PrimeError, match="takes an nn.Sequential"):
        prime.convert(nn.Linear(3, 2), input_shape=(3,), timesteps=1)
    with pytest.raises(PrimeError, match="layer 0 \\(Bilinear\\) has parameters of a kind"):
        prime.convert(nn.Sequential(nn.Bilinear(3, 3, 2)), input_shape=(3,), timesteps=1)
    with pytest.raises(PrimeError, match="layer 1 \\(Linear\\) cannot take .* shapes do not"):
        prime.convert(nn.Sequential(nn.Flatten(), nn.Linear(5, 2)), input_shape=(3,), timesteps=1)
    with pytest.raises(PrimeError, match="unknown conversion mode 'analog'"):
        prime.convert(nn.Sequential(nn.Linear(3, 2)), input_shape=(3,), timesteps=1, mode="analog")


@pytest.mark.parametrize("init_hidden", [True, False])
def test_an_snntorch_neuron_inside_a_network_is_refused(init_hidden):
    layers = [MemristorLinear(6, 3), snn.Leaky(beta=0.5, init_hidden=init_hidden)]
    with pytest.raises(PrimeError, match="layer 1 \\(snntorch.Leaky\\) keeps its neuron state.*"
                                         "prime.convert"):  # fmt: skip
        SpikingNetwork(layers, (6,), 3, 3)


def test_plain_digital_layers_are_counted_as_digital_macs():
    network = SpikingNetwork(
        [nn.Linear(6, 4), LIF(), MemristorLinear(4, 2, bias=True), Integrator()], (6,), 3, 2
    )
    x = (torch.rand(3, 5, 6, generator=torch.Generator().manual_seed(0)) < 0.5).float()
    with torch.no_grad(), count_operations(network) as counts:
        network(x)
    digital, _, crossbar, _ = counts.layers
    assert digital["kind"] == "digital" and digital["counts"]["digital_macs"] == [5 * 24.0] * 3
    assert digital["counts"]["bias_adds"] == [5 * 4.0] * 3  # nn.Linear has a bias
    assert crossbar["counts"]["bias_adds"] == [5 * 2.0] * 3
    macro = AnalogMacro(digital_op_pj=1, multiply_pj=2)
    energy = macro.energy_pj(counts)
    assert energy["digital"] >= (3 * 120 * 3 + 3 * 30) / 5  # MACs 3 pJ, bias adds 1 pJ
    dense = DigitalAccelerator(mac_pj=1, ac_pj=1)
    assert dense.synaptic_ops(counts) == (3 * 5 * 8 + 3 * 120) / 5


def test_weights_of_an_unknown_kind_are_refused_by_the_counters():
    network = SpikingNetwork([nn.Sequential(nn.Linear(6, 2)), Integrator()], (6,), 3, 2)
    with pytest.raises(PrimeError, match="cannot count layer 0 \\(Sequential\\).*0.weight"):
        with count_operations(network):
            pass
