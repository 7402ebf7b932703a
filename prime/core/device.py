"""The torch device a network runs on: ``resolve_device`` checks a ``--device``/``device=``
spec against this machine; ``module_device`` says where a model lives.

Random draws stay on CPU generators whatever the device (a chip drawn for ``cuda`` is the
chip drawn for ``cpu``): a model is built on the CPU and moved (``model.to(device)``: its
conductances are buffers), and per-read draws are made on the CPU and moved
(:func:`drawn_like`; no copy on the CPU).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from prime.core.errors import PrimeError

#: the device types a network runs on ("meta": shapes only, for placement tests)
DEVICE_TYPES = ("cpu", "cuda", "meta")


def resolve_device(spec: str | torch.device | None) -> torch.device:
    """``spec`` ("cpu", "cuda", "cuda:N", "meta"; None: cpu) as a device this machine has."""
    if spec is None:
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, TypeError):
        raise PrimeError(f"unknown torch device {spec!r}; use cpu, cuda or cuda:N") from None
    if device.type not in DEVICE_TYPES:
        raise PrimeError(f"--device {spec}: prime runs on cpu or cuda; use --device cpu")
    if device.type != "cuda":
        return device
    if torch.version.cuda is None:
        raise PrimeError(
            f"--device {spec}: this torch build has no CUDA (torch {torch.__version__}); "
            "install a CUDA build of torch or use --device cpu"
        )
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise PrimeError(
            f"--device {spec}: torch {torch.__version__} finds no CUDA device on this machine "
            "(driver missing or CUDA_VISIBLE_DEVICES empty); use --device cpu"
        )
    index = 0 if device.index is None else device.index
    if index >= count:
        have = "cuda:0" if count == 1 else f"cuda:0 to cuda:{count - 1}"
        devices = "device" if count == 1 else "devices"
        raise PrimeError(
            f"--device {spec}: this machine has {count} CUDA {devices} ({have}); "
            f"choose one of them or use --device cpu"
        )
    return torch.device("cuda", index)


def drawn_like(
    like: torch.Tensor, generator: torch.Generator | None, uniform: bool = False
) -> torch.Tensor:
    """Standard normal (``uniform``: [0, 1)) draws shaped like ``like``, in its dtype, from
    the CPU ``generator`` and moved to ``like``'s device: the same draws on every device."""
    draw = torch.rand if uniform else torch.randn
    return draw(like.shape, generator=generator, dtype=like.dtype).to(like.device)


def module_device(module: nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (cpu for one without either)."""
    for tensor in itertools.chain(module.parameters(), module.buffers()):
        return tensor.device
    return torch.device("cpu")
