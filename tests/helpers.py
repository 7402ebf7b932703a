"""Shared test helpers, imported as ``from helpers import ...`` (``tests/`` is on the path).

* :func:`reference_file`: a file under ``../shared/reference``, or skip the test;
* :data:`TINY` / :func:`load_tiny`: a tiny registered dataset ("tiny-events") for fast
  training tests, also in subprocesses (importing this module registers it; spawned ranks
  import it through the test modules, ``python -c "import helpers"`` in a subprocess);
* :func:`crossbar_layer`: a linear (700 -> 20) or conv (12 -> 8, k5) layer on an RRAM chip,
  with a given read path;
* :func:`tiny_network`: 6 inputs -> 3 LIF -> 2 outputs on crossbars of 6x6 and 3x4 cells;
* :func:`hand_masked_network`: 3 -> 2 -> 1 with hand-set masks and unit weights, whose
  operation counts are worked out by hand;
* :func:`load_factor`: how much slower than idle the machine runs now (scales the deadlines
  of tests that wait on other processes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from prime.data import DATASETS, DatasetSpec, DataSplits, FrameDataset
from prime.hardware.devices import chip_generator, get_device
from prime.hardware.readpath import ReadPathConfig
from prime.snn.layers import MemristorConv2d, MemristorLayer, MemristorLinear
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, Integrator, LIFParams

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference"


def reference_file(relative: str) -> Path:
    """A file under ../shared/reference, or skip the test saying why."""
    path = REFERENCE / relative
    if not path.exists():
        pytest.skip(f"reference data {path} is absent (it lives beside the repository)")
    return path


def load_factor() -> float:
    """The 1-minute load average per CPU core, at least 1: a deadline for another process
    (a subprocess's start, a timeout it must notice) is multiplied by it, so that a loaded
    machine gets the same margin as an idle one."""
    return max(1.0, os.getloadavg()[0] / (os.cpu_count() or 1))


# ---------------------------------------------------------------- tiny dataset

TINY = "tiny-events"


def load_tiny(timesteps: int = 10, seed: int = 0, train_size: int = 7) -> DataSplits:
    """Random sparse frames [T, 2, 34, 34] whose label lights a row: learnable, fast.

    ``train_size`` training samples, 10 test samples (one per class).
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(train_size + 10) % 10
    frames = (torch.rand(len(labels), timesteps, 2, 34, 34, generator=g) < 0.05).to(torch.uint8)
    frames[torch.arange(len(labels)), :, :, 3 * labels] = 1
    return DataSplits(
        train=FrameDataset(frames[:train_size], labels[:train_size]),
        test=FrameDataset(frames[train_size:], labels[train_size:]),
        input_shape=(2, 34, 34),
        num_classes=10,
        timesteps=timesteps,
    )


if TINY not in DATASETS:
    DATASETS.register(TINY)(DatasetSpec(load_tiny, "nmnist-conv", "tiny test data"))


# ---------------------------------------------------------------- tiny networks


def tiny_network(seed: int = 0, **layer_kwargs: Any) -> SpikingNetwork:
    """6 inputs -> 3 LIF -> 2 outputs: crossbars of 6x6 and 3x4 cells, T = 3.

    The chip and the initial scores come from ``seed``; ``layer_kwargs`` (e.g. ``scale``)
    go to both :class:`MemristorLinear` layers.
    """
    kwargs: dict[str, Any] = dict(
        device_model=get_device("prime-gaussian"),
        chip=chip_generator(seed),
        scores_generator=torch.Generator().manual_seed(seed),
        **layer_kwargs,
    )
    layers = [MemristorLinear(6, 3, **kwargs), LIF(), MemristorLinear(3, 2, **kwargs)]
    return SpikingNetwork([*layers, Integrator()], input_shape=(6,), timesteps=3, num_classes=2)


def unit_weight_linear(
    in_features: int, out_features: int, scores: list[list[float]]
) -> MemristorLinear:
    """A layer whose kept edges are the largest ``scores`` and whose weights are all 1."""
    layer = MemristorLinear(
        in_features,
        out_features,
        device_model=get_device("prime-gaussian"),
        chip=chip_generator(0),
        scores_generator=torch.Generator().manual_seed(0),
        keep=0.5,
    )
    g_us = torch.zeros(2, out_features, in_features)
    g_us[0] = 100.0  # G+ - G- = 100 µS -> weight 0.01 * 100 = 1 on every kept edge
    layer.load_conductances(g_us)
    with torch.no_grad():
        layer.scores.copy_(torch.tensor(scores))
    return layer


def hand_masked_network() -> SpikingNetwork:
    """3 -> 2 (LIF, threshold 0.5) -> 1 (integrator); masks [[1,0,1],[0,1,0]] and [[1,0]]."""
    layers = [
        unit_weight_linear(3, 2, [[3.0, 0.1, 2.0], [0.2, 1.0, 0.3]]),
        LIF(LIFParams(threshold=0.5)),
        unit_weight_linear(2, 1, [[1.0, 0.1]]),
        Integrator(),
    ]
    return SpikingNetwork(layers, input_shape=(3,), timesteps=3, num_classes=1).eval()


def crossbar_layer(kind: str, read_path: ReadPathConfig) -> MemristorLayer:
    """``"linear"``: 700 -> 20; ``"conv"``: 12 -> 8 channels, kernel 5, padding 1; chip 3."""
    kwargs: dict[str, Any] = dict(
        device_model=get_device("rram-lognormal"),
        chip=chip_generator(3),
        scores_generator=torch.Generator().manual_seed(1),
        read_path=read_path,
    )
    if kind == "linear":
        return MemristorLinear(700, 20, **kwargs)
    return MemristorConv2d(12, 8, 5, padding=1, **kwargs)
