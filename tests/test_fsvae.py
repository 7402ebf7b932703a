"""The inpainting FSVAE: its new layers (transposed supermask convolution, bias, tdBN), the
model's two execution paths, and parity with the PRIME reference implementation."""

from __future__ import annotations

import pytest
import torch
from helpers import reference_file
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.devices import chip_generator, get_device
from prime.hardware.readpath import IDEAL, ReadPathConfig
from prime.snn.digital import ChannelBias, TDBatchNorm
from prime.snn.fsvae import FSVAE_LIF, fsvae_loss, get_fsvae
from prime.snn.layers import MemristorConvTranspose2d
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF


def _convt(read_path: ReadPathConfig = IDEAL) -> MemristorConvTranspose2d:
    return MemristorConvTranspose2d(
        4,
        3,
        3,
        stride=2,
        padding=1,
        output_padding=1,
        device_model=get_device("prime-gaussian"),
        chip=chip_generator(1),
        scores_generator=torch.Generator().manual_seed(2),
        read_path=read_path,
    )


def test_transposed_convolution_is_torchs_with_the_crossbar_weight() -> None:
    layer = _convt()
    x = torch.rand(5, 4, 4, 4)
    weight = layer.weight()  # [C_out, C_in, k, k], output first as every crossbar
    expected = nn.functional.conv_transpose2d(x, weight.transpose(0, 1), None, 2, 1, 1)
    assert layer(x).shape == (5, 3, 8, 8)
    torch.testing.assert_close(layer(x), expected)
    assert layer.crossbar_shape == (4 * 9, 2 * 3)


def test_transposed_convolution_through_the_non_ideal_read_path_equals_the_fused_one() -> None:
    x = (torch.rand(2, 4, 4, 4) < 0.5).float()
    fused = _convt()(x)
    for config in (ReadPathConfig(tile_rows=7), ReadPathConfig(separate_columns=True)):
        torch.testing.assert_close(_convt(config)(x), fused, atol=1e-5, rtol=1e-5)


def _block() -> SpikingNetwork:
    g = torch.Generator().manual_seed(0)
    layers = [_convt(), ChannelBias(3, 36, g), TDBatchNorm(3, 0.2), LIF(FSVAE_LIF)]
    return SpikingNetwork(layers, (4, 4, 4), timesteps=5, num_classes=3)


def test_every_new_layer_agrees_single_and_multi_step() -> None:
    block = _block()
    x = (torch.rand(5, 3, 4, 4, 4) < 0.4).float()
    block.train()
    block(x)  # running statistics off their initial values
    block.eval()
    torch.testing.assert_close(block(x, "single"), block(x, "multi"))


def test_tdbn_statistics_follow_the_reference() -> None:
    """Reference tdBatchNorm: mean/biased var over (N, H, W, T), y = alpha Vth (x - mean) /
    sqrt(var + eps) w + b; running var updated with the unbiased var, momentum 0.1."""
    norm = TDBatchNorm(3, threshold=0.2, alpha=2.0)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        norm.bias.copy_(torch.tensor([0.0, 0.1, -0.2]))
    x = torch.randn(6, 4, 3, 5, 5) * 3 + 1  # [T, B, C, H, W]
    y = norm(x.flatten(0, 1)).unflatten(0, (6, 4))
    mean = x.mean((0, 1, 3, 4))
    var = x.var((0, 1, 3, 4), unbiased=False)
    n = x.numel() / 3
    view = (1, 1, 3, 1, 1)
    expected = 2.0 * 0.2 * (x - mean.view(view)) / torch.sqrt(var.view(view) + 1e-5)
    expected = expected * norm.weight.view(view) + norm.bias.view(view)
    torch.testing.assert_close(y, expected.detach())
    torch.testing.assert_close(norm.running_mean, 0.1 * mean)
    torch.testing.assert_close(norm.running_var, 0.9 + 0.1 * var * n / (n - 1))
    norm.eval()
    frame = x[2]  # evaluation: one frame at a time, the running statistics
    expected_eval = 0.4 * (frame - norm.running_mean.view(1, 3, 1, 1))
    expected_eval = expected_eval / torch.sqrt(norm.running_var.view(1, 3, 1, 1) + 1e-5)
    expected_eval = expected_eval * norm.weight.view(1, 3, 1, 1) + norm.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(norm(frame), expected_eval.detach())


@pytest.mark.parametrize("name", ["mnist-fsvae", "mnist-fsvae-chip"])
def test_step_by_step_reconstruction_equals_the_multi_step_pass(name: str) -> None:
    model = get_fsvae(name, timesteps=4, score_seed=3)
    images = torch.rand(3, 1, 32, 32) * 2 - 1
    index = model.latent_index(3, torch.Generator().manual_seed(0))
    model.train()
    model(model.frames(images), index)  # running statistics off their initial values
    model.eval()
    with torch.no_grad():
        multi = model(model.frames(images), index)
    steps = model.reconstructions(images, index)
    assert steps.shape == (4, 3, 1, 32, 32)
    torch.testing.assert_close(steps[-1], multi.recon)


def test_the_chip_variant_puts_prior_and_posterior_on_the_chip() -> None:
    faithful, chip = get_fsvae("mnist-fsvae"), get_fsvae("mnist-fsvae-chip")
    count = sum(m.scores.numel() for m in faithful.memristor_layers())
    assert count == 177_728  # the reference's frozen random weights
    assert len(chip.memristor_layers()) == len(faithful.memristor_layers()) + 6
    assert not faithful.posterior.memristor_layers()


def test_training_reaches_scores_biases_norms_and_dense_weights() -> None:
    model = get_fsvae("mnist-fsvae", timesteps=6)
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    g = torch.Generator().manual_seed(0)
    out = model(model.frames(images), model.latent_index(4, g), scheduled_p=1.0, generator=g)
    fsvae_loss(model, out, images)["loss"].backward()
    first = model.encoder.memristor_layers()[0]
    dense = model.posterior.layers[0]
    assert first.scores.grad is not None and first.scores.grad.abs().sum() > 0
    assert isinstance(dense, nn.Linear) and dense.weight.grad is not None
    assert first.g_us.grad is None  # the chip never trains


def test_images_of_the_wrong_shape_are_refused() -> None:
    model = get_fsvae("mnist-fsvae")
    with pytest.raises(PrimeError, match="32x32"):
        model.frames(torch.zeros(2, 1, 28, 28))
    with pytest.raises(PrimeError, match="one channel"):
        model.frames(torch.zeros(2, 3, 32, 32))
    with pytest.raises(PrimeError, match=r"\[B, C, H, W\]"):
        model.frames(torch.zeros(32, 32))
    with pytest.raises(PrimeError, match="32x32"):
        get_fsvae("mnist-fsvae", image_side=28)


def test_parity_with_the_reference_implementation() -> None:
    """Every golden tensor of PRIME's Pruning_FSVAE (seeded, frozen weights x 20) within 1e-4."""
    from prime.snn.reference import load_fsvae_reference

    golden = torch.load(reference_file("prime/inpainting_golden.pt"), weights_only=True)
    model = load_fsvae_reference(golden["state_dict"])
    model.eval()
    frames = golden["inputs"].permute(4, 0, 1, 2, 3)  # [N, C, H, W, T] -> [T, N, C, H, W]
    captured = []
    last_conv_lif = [m for m in model.encoder.layers if isinstance(m, LIF)][2]
    handle = last_conv_lif.register_forward_hook(lambda m, a, out: captured.append(out))
    with torch.no_grad():
        latent = model.encoder(frames)
    handle.remove()

    def reference_layout(x: torch.Tensor) -> torch.Tensor:  # [T, ...] -> [..., T]
        return x.movedim(0, -1)

    tol = dict(atol=1e-4, rtol=0)
    torch.testing.assert_close(reference_layout(captured[0]), golden["encoder_out"], **tol)
    torch.testing.assert_close(reference_layout(latent), golden["latent_x"], **tol)
    posterior_in = torch.cat([golden["latent_x"], golden["z_minus"]], 1).movedim(-1, 0)
    with torch.no_grad():
        q = model.posterior(posterior_in)
    torch.testing.assert_close(reference_layout(q), golden["posterior_q"], **tol)
    z = golden["z"].movedim(-1, 0)
    with torch.no_grad():
        recon = model.output(model.decoder(z))
    torch.testing.assert_close(recon, golden["recon"], **tol)
    # the decoder on every prefix z[..., :t+1]: prime's state carried step to step
    reads, state = model.decoder.crossbar_reads(), model.decoder.initial_state()
    membrane = torch.zeros_like(recon)
    for t in range(len(z)):
        with torch.no_grad():
            current, state = model.decoder.step(z[t], state, reads)
        membrane = membrane + model.output_weights[t] * current
        torch.testing.assert_close(torch.tanh(membrane), golden["recon_prefix"][t], **tol)


def test_a_state_dict_that_is_not_the_reference_is_refused() -> None:
    from prime.snn.reference import load_fsvae_reference

    with pytest.raises(PrimeError, match="missing before_latent_layer.weight"):
        load_fsvae_reference({"foo": torch.zeros(1)})
