"""Load the PRIME authors' checkpoints (reference code's state dicts) into prime models."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.core.io import load_torch_file
from prime.snn.config import PRIME_SCALE
from prime.snn.digital import ChannelBias, TDBatchNorm
from prime.snn.fsvae import FSVAE, fsvae_cells, get_fsvae
from prime.snn.layers import MemristorLayer
from prime.snn.models import get_model
from prime.snn.network import SpikingNetwork

#: reference state-dict prefix -> index of the supermask layer in ``nmnist-conv``
_NMNIST_CONV_KEYS = ("features.conv0", "features.conv1", "classifier.linear0")


def load_prime_reference(
    path: str | os.PathLike, timesteps: int = 10, read_path: dict[str, Any] | None = None
) -> SpikingNetwork:
    """``nmnist-conv`` carrying a PRIME reference checkpoint (e.g. ``classification.pt``).

    The reference ``weight`` is the frozen conductance difference ΔG (µS); it becomes a pair
    G+ = max(ΔG, 0), G- = max(-ΔG, 0), with PRIME's scale 0.01 and PRIME's mask rule at 50 %.
    ``read_path``: a periphery (:class:`~prime.hardware.periphery.ReadPathConfig` fields;
    default ideal), whose open ranges are then to be calibrated.
    """
    state = load_torch_file(path)
    expected = {f"{p}.{k}" for p in _NMNIST_CONV_KEYS for k in ("scores", "weight")}
    if not isinstance(state, dict) or not expected <= set(state):
        found = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise PrimeError(
            f"{path} is not a PRIME N-MNIST checkpoint: expected keys {sorted(expected)}, "
            f"found {found}"
        )
    model = get_model(
        "nmnist-conv",
        keep=0.5,
        scale=PRIME_SCALE,
        mask_rule="prime",
        timesteps=timesteps,
        read_path=read_path or {},
    )
    with torch.no_grad():
        for prefix, layer in zip(_NMNIST_CONV_KEYS, model.memristor_layers(), strict=True):
            weight, scores = state[f"{prefix}.weight"], state[f"{prefix}.scores"]
            if weight.shape != layer.scores.shape or scores.shape != layer.scores.shape:
                raise PrimeError(
                    f"{path}: {prefix} has shape {tuple(weight.shape)}, nmnist-conv expects "
                    f"{tuple(layer.scores.shape)}"
                )
            delta = weight.float()
            layer.load_conductances(torch.stack([delta.clamp(min=0), (-delta).clamp(min=0)]))
            layer.scores.copy_(scores)
    return model


#: the reference Pruning_FSVAE's layer prefixes, block by block, in layer order
_FSVAE_KEYS = {
    "encoder": ("encoder.0", "encoder.1", "encoder.2", "before_latent_layer"),
    "posterior": ("posterior.layers.0", "posterior.layers.1", "posterior.layers.2"),
    "prior": ("prior.layers.0", "prior.layers.1", "prior.layers.2"),
    "decoder": ("decoder_input", "decoder.0", "decoder.1", "final_layer.0", "final_layer.1"),
}
_TRANSPOSED = ("decoder.0", "decoder.1", "final_layer.0", "final_layer.1")


def load_fsvae_reference(state: dict[str, torch.Tensor], name: str = "mnist-fsvae") -> FSVAE:
    """The FSVAE preset ``name`` carrying a reference ``Pruning_FSVAE`` state dict.

    Supermasked ``weight`` [out, in, 3, 3, 1] (transposed convolutions [in, out, 3, 3, 1])
    is the frozen ΔG, loaded as G+ = max(ΔG, 0), G- = max(-ΔG, 0) with the reference's
    scale 0.003; ``scores`` become the layer's scores, ``bias`` its ChannelBias, ``bn.*``
    its tdBN. The prior and posterior are dense (``mnist-fsvae``).
    """
    model = get_fsvae(name)
    if model.config.bernoulli_on_chip:
        raise PrimeError(
            f"{name} has its prior and posterior on the chip; the reference's are dense"
        )
    missing = sorted(
        f"{prefix}.weight"
        for prefixes in _FSVAE_KEYS.values()
        for prefix in prefixes
        if f"{prefix}.weight" not in state
    )
    if missing:
        raise PrimeError(
            f"not a reference Pruning_FSVAE state dict: missing {', '.join(missing[:4])}"
        )
    with torch.no_grad():
        for block_name, prefixes in _FSVAE_KEYS.items():
            cells = fsvae_cells(model.blocks()[block_name])
            for prefix, (synapse, bias, norm) in zip(prefixes, cells, strict=True):
                _load_cell(state, prefix, synapse, bias, norm)
    return model


def _load_cell(
    state: dict[str, torch.Tensor],
    prefix: str,
    synapse: nn.Module,
    bias: ChannelBias,
    norm: TDBatchNorm | None,
) -> None:
    weight = state[f"{prefix}.weight"].float()
    if weight.dim() == 5:  # [.., .., kh, kw, 1] of the reference's 3-D convolutions
        weight = weight.squeeze(-1)
    if prefix in _TRANSPOSED:
        weight = weight.transpose(0, 1)
    if isinstance(synapse, MemristorLayer):
        scores = state[f"{prefix}.scores"].float().squeeze(-1)
        if prefix in _TRANSPOSED:
            scores = scores.transpose(0, 1)
        _check_shape(prefix, weight, synapse.scores)
        synapse.load_conductances(torch.stack([weight.clamp(min=0), (-weight).clamp(min=0)]))
        synapse.scores.copy_(scores)
    else:
        assert isinstance(synapse, nn.Linear)
        _check_shape(prefix, weight, synapse.weight)
        synapse.weight.copy_(weight)
    bias.bias.copy_(state[f"{prefix}.bias"])
    if norm is not None:
        norm.load_state_dict({k: state[f"{prefix}.bn.{k}"] for k in norm.state_dict()}, strict=True)


def _check_shape(prefix: str, weight: torch.Tensor, target: torch.Tensor) -> None:
    if weight.shape != target.shape:
        raise PrimeError(
            f"reference layer {prefix} has weight {tuple(weight.shape)}, prime's layer "
            f"expects {tuple(target.shape)}"
        )
