"""Digital periphery layers between a crossbar and its neurons: a bias per channel and
threshold-dependent batch norm (tdBN, Zheng et al., AAAI 2021, arXiv 2011.05280).

Both take frames [N, C, ...] (N = T * B frames in multi-step runs, B in single-step ones).
In evaluation both are affine per channel, so :func:`fold_batch_norms` folds them into the
digital unit's per-column correction of the crossbar before them (Ferro et al., arXiv
2402.07549: batch norm in the near-memory unit's fixed point).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from prime.core.errors import PrimeError
from prime.snn.layers import MemristorLayer


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


def channel_affine(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) per channel of a channel bias or a batch norm in evaluation (its
    running statistics): ``layer(x) = scale * x + shift``."""
    if isinstance(layer, ChannelBias):
        return torch.ones_like(layer.bias), layer.bias.detach()
    assert isinstance(layer, nn.modules.batchnorm._BatchNorm)
    if layer.running_mean is None or layer.running_var is None:
        raise PrimeError("a batch norm without running statistics cannot be folded")
    gain = layer.alpha * layer.threshold if isinstance(layer, TDBatchNorm) else 1.0
    weight = layer.weight.detach() * gain if layer.affine else 1.0
    scale = weight / torch.sqrt(layer.running_var + layer.eps)
    bias = layer.bias.detach() if layer.affine else 0.0
    return scale, bias - layer.running_mean * scale


def fold_batch_norms(layers: nn.ModuleList) -> int:
    """Fold the channel biases and batch norms right after every crossbar whose periphery
    asks for it (``fold_batch_norm``) into its digital unit
    (:meth:`~prime.hardware.readpath.ReadPath.fold_affine`); each folded layer becomes an
    ``nn.Identity``. In evaluation only (training normalises with batch statistics);
    returns the crossbars folded into. Calibrate the digital words after."""
    if layers.training:
        raise PrimeError(
            "batch norm folds in evaluation only (training normalises with the batch's "
            "statistics): call model.eval() first"
        )
    folded = 0
    for i, layer in enumerate(layers):
        if not (isinstance(layer, MemristorLayer) and layer.read_path.config.fold_batch_norm):
            continue
        scale = torch.ones(layer.read_path.outputs)
        shift = torch.zeros(layer.read_path.outputs)
        j = i + 1
        while j < len(layers) and isinstance(
            layers[j], ChannelBias | nn.modules.batchnorm._BatchNorm
        ):
            a, b = channel_affine(layers[j])
            scale, shift = a * scale, a * shift + b
            layers[j] = nn.Identity()
            j += 1
        if j > i + 1:
            layer.read_path.fold_affine(scale, shift)
            folded += 1
    return folded
