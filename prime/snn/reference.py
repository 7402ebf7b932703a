"""Load the PRIME authors' checkpoints (reference code's state dicts) into prime models."""

from __future__ import annotations

import os
from typing import Any

import torch

from prime.core.errors import PrimeError
from prime.core.io import load_torch_file
from prime.snn.config import PRIME_SCALE
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
