"""Exit policies: how confident a sample's mean output so far is (``prime``, ``margin``,
``entropy``; see :mod:`prime.inference.early_exit`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from prime.core.errors import PrimeError
from prime.core.registry import Registry


@dataclass(frozen=True)
class ExitPolicy:
    """Base of exit policies: ``confidence`` in [0, 1] of ``softmax(mean_output / alpha)``."""

    alpha: float = 2.0

    def __post_init__(self) -> None:
        if not (isinstance(self.alpha, int | float) and math.isfinite(self.alpha)) or (
            self.alpha <= 0
        ):
            raise PrimeError(f"exit policy alpha must be a number > 0, got {self.alpha!r}")

    def probabilities(self, mean_output: torch.Tensor) -> torch.Tensor:
        return torch.softmax(mean_output / self.alpha, dim=1)

    def confidence(self, mean_output: torch.Tensor) -> torch.Tensor:
        """Confidence per sample: mean_output [B, C] -> [B]."""
        raise NotImplementedError

    def done(self, mean_output: torch.Tensor, threshold: float) -> torch.Tensor:
        """bool [B]: confidence strictly above ``threshold``."""
        return self.confidence(mean_output) > threshold


POLICIES: Registry[type[ExitPolicy]] = Registry("exit policy")


@POLICIES.register("prime")
@dataclass(frozen=True)
class PrimePolicy(ExitPolicy):
    """PRIME's rule: the largest softmax probability."""

    def confidence(self, mean_output: torch.Tensor) -> torch.Tensor:
        return self.probabilities(mean_output).amax(dim=1)


@POLICIES.register("margin")
@dataclass(frozen=True)
class MarginPolicy(ExitPolicy):
    """Top-1 minus top-2 softmax probability."""

    def confidence(self, mean_output: torch.Tensor) -> torch.Tensor:
        top2 = self.probabilities(mean_output).topk(2, dim=1).values
        return top2[:, 0] - top2[:, 1]


@POLICIES.register("entropy")
@dataclass(frozen=True)
class EntropyPolicy(ExitPolicy):
    """One minus the normalised entropy of the softmax probabilities."""

    def confidence(self, mean_output: torch.Tensor) -> torch.Tensor:
        p = self.probabilities(mean_output)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(dim=1)
        return 1.0 - entropy / math.log(p.shape[1])


def get_policy(name: str | ExitPolicy, **params: Any) -> ExitPolicy:
    """The registered policy ``name`` with ``params`` (e.g. ``alpha``); instances pass through."""
    if isinstance(name, ExitPolicy):
        return name
    cls = POLICIES.get(name)
    try:
        return cls(**params)
    except TypeError:
        raise PrimeError(
            f"exit policy {name!r} takes only alpha, got {', '.join(sorted(params))}"
        ) from None


def policy_name(policy: ExitPolicy) -> str:
    """The registered name of ``policy``'s class (its class name if unregistered)."""
    names = (name for name in POLICIES if type(policy) is POLICIES.get(name))
    return next(names, type(policy).__name__)
