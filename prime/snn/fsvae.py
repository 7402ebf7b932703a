"""PRIME's inpainting network: a fully spiking VAE (FSVAE, Kamata et al., AAAI 2022) whose
encoder and decoder are supermasks over frozen random conductances (PRIME, arXiv 2407.18625;
reference code bo-wang-up/PRIME, ``Inpainting/fsvae_models``).

Four blocks, each a :class:`~prime.snn.network.SpikingNetwork` (so reads, hooks, energy
counting and both execution modes work as for the classifiers); shapes multi-step::

    encoder    frames [T, B, 1, 32, 32] -> latent spikes x [T, B, 128]
               3 x (conv 3x3 stride 2, bias, tdBN, LIF) 1-32-32-32, FC 512-128, bias, tdBN, LIF
    posterior  [x_t, z_{t-1}] [T, B, 256] -> q [T, B, 128 k]    q(z_t | x_<=t, z_<t)
    prior      z_{t-1} [T, B, 128]       -> p [T, B, 128 k]    p(z_t | z_<t)
               both FC 256-512-128k (prior 128-256-512-128k), bias, tdBN (alpha 2), LIF
    decoder    z [T, B, 128] -> currents [T, B, 1, 32, 32]
               FC 128-512, bias, tdBN, LIF, as 32x4x4; 3 x (transposed conv 3x3 stride 2,
               bias, tdBN, LIF); transposed conv 32-1 3x3, bias
    output     tanh(sum_t 0.8^(T-1-t) currents_t)  (the reference's membrane output layer)

A Bernoulli latent z_t takes, per channel, one of its k posterior spikes, chosen by
``index`` [T, B, 128] (ints in [0, k), drawn by the caller from a seed). LIF: threshold 0.2,
``U <- 0.25 U (1 - S) + I`` (decay 0.75, no leaky ReLU), as the reference's ``LIFSpike``;
the surrogate window sits at the threshold as in prime's other models (the reference centres
it at 0).

In evaluation every block is causal (tdBN uses running statistics, one frame at a time),
so :meth:`FSVAE.step` carries the state from step to step and equals decoding every prefix
from scratch. In training tdBN normalises over all T at once and is not causal.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from prime.core.device import drawn_like
from prime.core.errors import PrimeError
from prime.core.registry import Registry
from prime.hardware.devices import device_from_config
from prime.hardware.periphery import ReadPathConfig
from prime.hardware.readpath import CrossbarRead
from prime.snn.config import ModelConfig
from prime.snn.digital import ChannelBias, TDBatchNorm
from prime.snn.layers import MemristorLayer
from prime.snn.models import LayerFactory, set_membrane_words
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, LIFParams

#: the reference's LIFSpike: Vth 0.2, tau 0.25 (U <- 0.25 U (1 - S) + I), no leaky ReLU
FSVAE_LIF = LIFParams(threshold=0.2, decay=0.75, leak_slope=1.0, surrogate_width=0.5)
#: weight of step t in the membrane output: OUTPUT_DECAY ** (T - 1 - t)
OUTPUT_DECAY = 0.8
#: the prior is fed its own prediction (scheduled sampling) from this step on
SCHEDULED_FROM_STEP = 5
#: PSP filter time constant of the MMD loss (reference: ``PSP.tau_s``)
PSP_TAU = 2.0


@dataclass(frozen=True)
class FSVAEConfig:
    """Everything that builds an FSVAE: the chip, the initial scores, the sizes.

    Attributes:
        name: the preset's name.
        bernoulli_on_chip: prior and posterior as supermasks on the chip too (else dense
            digital layers with trained weights, as the reference).
        device_model: the conductance model of the chip (a device config).
        scale: conductance-to-weight scale (1/µS); the reference's 0.003.
        keep, mask_rule: kept fraction and rule of the supermasks (reference: 50 %, PRIME's
            percentile rule).
        chip_seed, score_seed: seeds of the chip and of every trained initial value.
        timesteps: T; image_side, channels: the images (1 x 32 x 32); hidden: conv
            channels; latent: latent channels; k: posterior/prior spikes per latent.
        read_path: the read path's configuration (empty: ideal).
    """

    name: str
    bernoulli_on_chip: bool = False
    device_model: dict[str, Any] = field(
        default_factory=lambda: {"name": "prime-gaussian", "delta_std_us": 6.91593}
    )
    scale: float = 0.003
    keep: float = 0.5
    mask_rule: str = "prime"
    chip_seed: int = 0
    score_seed: int = 0
    timesteps: int = 16
    image_side: int = 32
    channels: int = 1
    hidden: int = 32
    latent: int = 128
    k: int = 20
    read_path: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("timesteps", "hidden", "latent", "k", "channels"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise PrimeError(f"FSVAE {name} must be a whole number >= 1, got {value!r}")
        if self.image_side != 32:
            raise PrimeError(
                f"the FSVAE's encoder and decoder fit 32x32 images, got image_side="
                f"{self.image_side!r}; resize the images to 32x32"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> FSVAEConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise PrimeError(f"FSVAE config has unknown fields: {', '.join(unknown)}")
        return cls(**config)


#: named FSVAE presets
FSVAE_MODELS: Registry[FSVAEConfig] = Registry("inpainting model")
# PRIME's Inpainting/NetworkConfigs/MNIST.yaml (T 16, latent 128, k 20) and
# fsvae_models/fsvae.py: Pruning_FSVAE (chip encoder/decoder, dense prior/posterior),
# snn_layers.py (N(0, 6.91593) weights x 0.003, GetSubnet at 50 %)
FSVAE_MODELS.register("mnist-fsvae")(FSVAEConfig("mnist-fsvae"))
# the same with the prior and posterior as supermasks on the chip (prime's variant)
FSVAE_MODELS.register("mnist-fsvae-chip")(FSVAEConfig("mnist-fsvae-chip", bernoulli_on_chip=True))


def get_fsvae(name: str, **overrides: Any) -> FSVAE:
    """Build the preset ``name``; keyword arguments replace :class:`FSVAEConfig` fields."""
    preset = FSVAE_MODELS.get(name)
    try:
        config = dataclasses.replace(preset, **overrides)
    except TypeError:
        known = ", ".join(f.name for f in dataclasses.fields(FSVAEConfig))
        raise PrimeError(f"unknown FSVAE option in {sorted(overrides)}; known: {known}") from None
    return build_fsvae(config)


class _Makers:
    """The chip's layers (in build order: same seeds, same chip) and the digital ones."""

    def __init__(self, config: FSVAEConfig) -> None:
        model_config = ModelConfig(
            name=config.name,
            device_model=config.device_model,
            chip_seed=config.chip_seed,
            score_seed=config.score_seed,
            keep=config.keep,
            scale=config.scale,
            mask_rule=config.mask_rule,
            read_path=config.read_path,
        )
        self.chip = LayerFactory(model_config, device_from_config(config.device_model))
        self.generator: torch.Generator = self.chip.kwargs["scores_generator"]
        self.on_chip = config.bernoulli_on_chip

    def cell(
        self, synapse: nn.Module, out: int, fan_in: int, alpha: float = 1.0, neuron: bool = True
    ) -> list[nn.Module]:
        """synapse, bias, and (unless ``neuron`` is False) tdBN and LIF."""
        layers = [synapse, ChannelBias(out, fan_in, self.generator)]
        if neuron:
            layers += [TDBatchNorm(out, FSVAE_LIF.threshold, alpha), LIF(FSVAE_LIF)]
        return layers

    def linear(
        self, n_in: int, n_out: int, alpha: float = 1.0, chip: bool = True
    ) -> list[nn.Module]:
        if chip:
            return self.cell(self.chip.linear(n_in, n_out), n_out, n_in, alpha)
        dense = nn.Linear(n_in, n_out, bias=False)
        nn.init.kaiming_uniform_(dense.weight, a=math.sqrt(5), generator=self.generator)
        return self.cell(dense, n_out, n_in, alpha)

    def bernoulli(self, n_in: int, latent: int, k: int) -> list[nn.Module]:
        sizes = (n_in, 2 * latent, 4 * latent, k * latent)
        return [
            layer
            for a, b in zip(sizes[:-1], sizes[1:], strict=True)
            for layer in self.linear(a, b, alpha=2.0, chip=self.on_chip)
        ]


def build_fsvae(config: FSVAEConfig) -> FSVAE:
    """The FSVAE of ``config`` (see the module docstring for the layers)."""
    make = _Makers(config)
    T, c, h, z, k = config.timesteps, config.channels, config.hidden, config.latent, config.k
    encoder: list[nn.Module] = []
    for n_in in (c, h, h):
        encoder += make.cell(make.chip.conv(n_in, h, 3, stride=2, padding=1), h, 9 * n_in)
    encoder += [nn.Flatten(), *make.linear(16 * h, z)]
    posterior = make.bernoulli(2 * z, z, k)
    prior = make.bernoulli(z, z, k)
    decoder = [*make.linear(z, 16 * h), nn.Unflatten(1, (h, 4, 4))]
    for _ in range(3):
        convt = make.chip.conv_transpose(h, h, 3, stride=2, padding=1, output_padding=1)
        decoder += make.cell(convt, h, 9 * h)
    decoder += make.cell(make.chip.conv_transpose(h, c, 3, padding=1), c, 9 * h, neuron=False)
    side = config.image_side
    model = FSVAE(
        SpikingNetwork(encoder, (c, side, side), T, z),
        SpikingNetwork(posterior, (2 * z,), T, z * k),
        SpikingNetwork(prior, (z,), T, z * k),
        SpikingNetwork(decoder, (z,), T, c * side * side),
        config,
    )
    set_membrane_words(model, ReadPathConfig.from_dict(config.read_path))
    return model


@dataclass
class FSVAEOutput:
    """A multi-step pass: ``recon`` [B, C, H, W] in (-1, 1), posterior ``q`` and prior
    ``p`` [T, B, latent * k] (spikes), sampled latent ``z`` [T, B, latent]."""

    recon: torch.Tensor
    q: torch.Tensor
    p: torch.Tensor
    z: torch.Tensor


@dataclass
class FSVAEState:
    """The state one :meth:`FSVAE.step` carries to the next, every tensor [B, ...]."""

    encoder: list[torch.Tensor | None]
    posterior: list[torch.Tensor | None]
    decoder: list[torch.Tensor | None]
    z: torch.Tensor  # the last latent z_{t-1} [B, latent]
    membrane: torch.Tensor  # the output membrane so far [B, C, H, W]

    def select(self, rows: torch.Tensor) -> FSVAEState:
        """The state of the samples at ``rows`` (early stop drops the others)."""

        def pick(states: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
            return [None if s is None else s.index_select(0, rows) for s in states]

        return FSVAEState(
            pick(self.encoder),
            pick(self.posterior),
            pick(self.decoder),
            self.z.index_select(0, rows),
            self.membrane.index_select(0, rows),
        )


@dataclass
class FSVAEReads:
    """The crossbar reads of one input sequence per block, one list per timestep."""

    encoder: list[list[CrossbarRead | None]]
    posterior: list[list[CrossbarRead | None]]
    decoder: list[list[CrossbarRead | None]]


class FSVAE(nn.Module):
    """The spiking VAE (see the module docstring). Images are [B, C, 32, 32] in [-1, 1]."""

    output_weights: torch.Tensor  # buffer [T], OUTPUT_DECAY ** (T - 1 - t)

    def __init__(
        self,
        encoder: SpikingNetwork,
        posterior: SpikingNetwork,
        prior: SpikingNetwork,
        decoder: SpikingNetwork,
        config: FSVAEConfig,
    ) -> None:
        super().__init__()
        self.encoder, self.posterior, self.prior, self.decoder = encoder, posterior, prior, decoder
        self.config = config
        steps = torch.arange(config.timesteps - 1, -1, -1, dtype=torch.float32)
        self.register_buffer("output_weights", OUTPUT_DECAY**steps)

    @property
    def timesteps(self) -> int:
        return self.config.timesteps

    @property
    def image_shape(self) -> tuple[int, int, int]:
        side = self.config.image_side
        return (self.config.channels, side, side)

    def blocks(self) -> dict[str, SpikingNetwork]:
        """The four blocks by name, in the order a step runs them (the prior last)."""
        return {
            "encoder": self.encoder,
            "posterior": self.posterior,
            "decoder": self.decoder,
            "prior": self.prior,
        }

    def memristor_layers(self) -> list[MemristorLayer]:
        return [m for block in self.blocks().values() for m in block.memristor_layers()]

    def check_images(self, images: torch.Tensor) -> None:
        """Images must be [B, C, H, W] of this model's C x H x W."""
        if not torch.is_tensor(images) or images.dim() != 4:
            got = tuple(images.shape) if torch.is_tensor(images) else type(images).__name__
            raise PrimeError(f"images must be [B, C, H, W] = [B, {self.image_shape}], got {got}")
        if tuple(images.shape[1:]) != self.image_shape:
            raise PrimeError(
                f"images of {tuple(images.shape[1:])} (C, H, W) do not fit {self.config.name}, "
                f"which takes {self.image_shape}: give one channel, resized to 32x32"
            )

    def frames(self, images: torch.Tensor) -> torch.Tensor:
        """Direct input: the images [B, C, H, W] repeated at every step, [T, B, C, H, W]."""
        self.check_images(images)
        return images.unsqueeze(0).expand(self.timesteps, *images.shape)

    def latent_index(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Which of the k spikes each latent takes at each step: int64 [T, B, latent]."""
        shape = (self.timesteps, batch, self.config.latent)
        return torch.randint(0, self.config.k, shape, generator=generator)

    def pick(self, q: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Bernoulli latents: spike ``index`` of each channel's k, q [..., latent * k] ->
        [..., latent] (the gradient reaches the chosen spikes)."""
        k = self.config.k
        chosen = q.unflatten(-1, (-1, k)).gather(-1, index.unsqueeze(-1))
        return chosen.squeeze(-1)

    def output(self, currents: torch.Tensor) -> torch.Tensor:
        """Membrane output of currents [L, B, C, H, W] (L <= T): tanh of their weighted sum."""
        weights = self.output_weights[: len(currents)].view(-1, *(1,) * (currents.dim() - 1))
        return torch.tanh((currents * weights).sum(0))

    def forward(
        self,
        frames: torch.Tensor,
        index: torch.Tensor,
        scheduled_p: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> FSVAEOutput:
        """A whole sequence, multi-step: frames [T, B, C, H, W], ``index`` [T, B, latent].

        The posterior's inputs z_<t are sampled step by step first (no gradient; tdBN on its
        running statistics, where the reference re-runs each prefix in training mode). In
        training, ``scheduled_p`` is the chance per step (from step 5) that the prior is fed
        its own prediction instead of the posterior's sample, drawn from ``generator``.
        """
        latent = self.encoder(frames)
        z_before = self._posterior_inputs(latent, index)
        q = self.posterior(torch.cat([latent, z_before], 2))
        z = self.pick(q, index)
        p = self.prior(self._prior_inputs(z.detach(), scheduled_p, generator))
        return FSVAEOutput(self.output(self.decoder(z)), q, p, z)

    @torch.no_grad()
    def _posterior_inputs(self, latent: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """z_{t-1} for every t (z_{-1} = 0), [T, B, latent], sampled step by step."""
        with _evaluating(self.posterior):
            reads = list(self.posterior.sequence_reads(len(latent)))
            state = self.posterior.initial_state()
            z = latent.new_zeros(latent.shape[1:])
            before = []
            for t in range(len(latent)):
                before.append(z)
                q, state = self.posterior.step(torch.cat([latent[t], z], 1), state, reads[t])
                z = self.pick(q, index[t])
        return torch.stack(before)

    @torch.no_grad()
    def _prior_inputs(
        self, z: torch.Tensor, scheduled_p: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """The prior's inputs z_{t-1} (z_{-1} = 0), with scheduled sampling in training."""
        zero = torch.zeros_like(z[0])
        if not (self.training and scheduled_p > 0):
            return torch.cat([zero[None], z[:-1]])
        with _evaluating(self.prior):
            reads = list(self.prior.sequence_reads(len(z)))
            state = self.prior.initial_state()
            inputs = [zero]
            for t in range(len(z) - 1):
                p, state = self.prior.step(inputs[-1], state, reads[t])
                own = torch.rand((), generator=generator).item() < scheduled_p
                if t >= SCHEDULED_FROM_STEP and own:
                    rate = self.pick_rate(p)
                    noise = 1e-3 * drawn_like(rate, generator)
                    inputs.append((rate + noise > 0.5).to(z.dtype))
                else:
                    inputs.append(z[t])
        return torch.stack(inputs)

    def pick_rate(self, spikes: torch.Tensor) -> torch.Tensor:
        """Mean of each latent's k spikes: [..., latent * k] -> [..., latent]."""
        return spikes.unflatten(-1, (-1, self.config.k)).mean(-1)

    # ---------------------------------------------------------------- step by step

    def sequence_reads(self) -> FSVAEReads:
        """The crossbar reads of one input sequence (once, or per step: see
        :meth:`SpikingNetwork.sequence_reads`)."""
        T = self.timesteps
        return FSVAEReads(
            *(list(b.sequence_reads(T)) for b in (self.encoder, self.posterior, self.decoder))
        )

    def initial_state(self, batch: int) -> FSVAEState:
        return FSVAEState(
            self.encoder.initial_state(),
            self.posterior.initial_state(),
            self.decoder.initial_state(),
            torch.zeros(batch, self.config.latent, device=self.output_weights.device),
            torch.zeros(batch, *self.image_shape, device=self.output_weights.device),
        )

    def step(
        self,
        frame: torch.Tensor,
        t: int,
        index: torch.Tensor,
        state: FSVAEState,
        reads: FSVAEReads,
    ) -> tuple[torch.Tensor, FSVAEState]:
        """Step t: frame [B, C, H, W], ``index`` [B, latent] -> (reconstruction after t + 1
        steps [B, C, H, W], new state). The prior is not run (inference needs no p)."""
        latent, encoder = self.encoder.step(frame, state.encoder, reads.encoder[t])
        q, posterior = self.posterior.step(
            torch.cat([latent, state.z], 1), state.posterior, reads.posterior[t]
        )
        z = self.pick(q, index)
        current, decoder = self.decoder.step(z, state.decoder, reads.decoder[t])
        membrane = state.membrane + self.output_weights[t] * current
        return torch.tanh(membrane), FSVAEState(encoder, posterior, decoder, z, membrane)

    @torch.no_grad()
    def reconstructions(self, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """The reconstruction after every step, [T, B, C, H, W] (eval mode, step by step)."""
        self.eval()
        frames, reads = self.frames(images), self.sequence_reads()
        state = self.initial_state(len(images))
        recons = []
        for t in range(self.timesteps):
            recon, state = self.step(frames[t], t, index[t], state, reads)
            recons.append(recon)
        return torch.stack(recons)


def fsvae_cells(block: SpikingNetwork) -> list[tuple[nn.Module, ChannelBias, TDBatchNorm | None]]:
    """(synapse, bias, tdBN or None) of every cell of a block, in order."""
    layers = list(block.layers)
    cells = []
    for i, layer in enumerate(layers):
        if isinstance(layer, ChannelBias):
            norm = layers[i + 1] if i + 1 < len(layers) else None
            cells.append((layers[i - 1], layer, norm if isinstance(norm, TDBatchNorm) else None))
    return cells


class _evaluating:
    """Within the block, ``module`` is in eval mode; its mode is restored after."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.was_training = module, module.training

    def __enter__(self) -> None:
        self.module.eval()

    def __exit__(self, *exc: object) -> None:
        self.module.train(self.was_training)


def psp(spikes: torch.Tensor, tau: float = PSP_TAU) -> torch.Tensor:
    """Post-synaptic potential filter over time: x [T, ...] -> syn [T, ...],
    syn_t = syn_{t-1} + (x_t - syn_{t-1}) / tau, syn_{-1} = 0."""
    syn = torch.zeros_like(spikes[0])
    out = []
    for x in spikes:
        syn = syn + (x - syn) / tau
        out.append(syn)
    return torch.stack(out)


def fsvae_loss(model: FSVAE, output: FSVAEOutput, clean: torch.Tensor) -> dict[str, torch.Tensor]:
    """The reference's loss: MSE(reconstruction, clean image) + MMD, the mean squared
    difference of the PSP-filtered posterior and prior rates. Returns loss, mse, mmd."""
    mse = F.mse_loss(output.recon, clean)
    mmd = (psp(model.pick_rate(output.q)) - psp(model.pick_rate(output.p))).pow(2).mean()
    return {"loss": mse + mmd, "mse": mse, "mmd": mmd}
