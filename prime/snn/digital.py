"""Digital periphery layers between a crossbar and its neurons: a bias per channel and
threshold-dependent batch norm (tdBN, Zheng et al., AAAI 2021, arXiv 2011.05280).

Both take frames [N, C, ...] (N = T * B frames in multi-step runs, B in single-step ones).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class ChannelBias(nn.Module):
    """A learned offset per channel, added after the crossbar: x [N, C, ...] -> x + b.

    Initialised as torch's layers do, uniform in ±1 / sqrt(``fan_in``), from ``generator``.
    """

    def __init__(self, channels: int, fan_in: int, generator: torch.Generator) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(fan_in)
        self.bias = nn.Parameter(torch.empty(channels).uniform_(-bound, bound, generator=generator))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bias.view(-1, *(1,) * (x.dim() - 2))


class TDBatchNorm(nn.BatchNorm1d):
    """tdBN: batch norm over every frame and position of a channel (all of T, B, H, W
    together in multi-step training), scaled to the neurons' threshold.

    ``y = alpha * threshold * (x - mean) / sqrt(var + eps) * weight + bias``: torch's batch
    norm (one fused kernel) with its weight scaled by alpha * threshold. Training normalises
    with the batch's biased variance and updates the running statistics with momentum 0.1
    and the unbiased variance; evaluation uses the running statistics, so it is causal in
    time (each frame alone). Same state-dict names as torch's batch norm.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor
    num_batches_tracked: torch.Tensor

    def __init__(self, channels: int, threshold: float, alpha: float = 1.0) -> None:
        super().__init__(channels)
        self.threshold, self.alpha = threshold, alpha

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"tdBN takes frames [N, C, ...], got shape {tuple(input.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if self.training:
            self.num_batches_tracked.add_(1)
        gain = self.alpha * self.threshold
        return F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight * gain,
            self.bias,
            self.training,
            self.momentum if self.momentum is not None else 0.1,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, threshold={self.threshold}, alpha={self.alpha}"
