"""Every registered member is tested: parametrised over the registries, so a new model,
device preset, exit policy, dataset or energy model is covered without editing a test."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import hand_masked_network

from prime.analysis.energy.counting import count_operations
from prime.analysis.energy.models import ENERGY_MODELS
from prime.data import dataset_spec, list_datasets
from prime.hardware.devices import device_from_config, get_device, list_devices
from prime.inference.early_exit import POLICIES, get_policy, policy_name
from prime.snn.models import get_model, list_models, model_spec

# ---------------------------------------------------------------- models

#: at most this many timesteps and this many input values per sample x batch (fast forwards)
MAX_STEPS = 4
MAX_BATCH_INPUTS = 5000


@pytest.mark.parametrize("name", list_models())
def test_model_builds_and_single_and_multi_step_agree(name):
    spec = model_spec(name)
    assert spec.description and spec.num_classes > 1 and spec.timesteps > 0
    steps = min(spec.timesteps, MAX_STEPS)
    model = get_model(name, chip_seed=1, timesteps=steps).eval()
    assert model.timesteps == steps and tuple(model.input_shape) == spec.input_shape
    batch = 1 if math.prod(spec.input_shape) > MAX_BATCH_INPUTS else 2
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, batch, *spec.input_shape, generator=g) < 0.2).float()
    with torch.no_grad():
        multi = model(x, "multi")
        single = model(x, "single")
    assert multi.shape == (steps, batch, spec.num_classes)
    assert torch.isfinite(multi).all()
    assert torch.allclose(multi, single, atol=1e-5)


# ---------------------------------------------------------------- device presets

#: parameters a preset cannot do without
DEVICE_PARAMS = {"empirical": {"values_us": np.array([0.0, 0.0, 4.5, 12.0, 20.0])}}


@pytest.mark.parametrize("name", list_devices())
def test_device_preset_samples_reproducible_nonnegative_pairs(name):
    device = get_device(name, **DEVICE_PARAMS.get(name, {}))
    assert device.name == name

    def sample(seed: int) -> torch.Tensor:
        return device.sample((64, 64), torch.Generator().manual_seed(seed))

    g = sample(0)
    assert g.shape == (2, 64, 64) and g.dtype == torch.float32
    assert (g >= 0).all() and torch.isfinite(g).all()
    assert torch.equal(g, sample(0))  # same seed, same chip
    assert not torch.equal(g, sample(1))
    cells = device.sample_cells((3, 5), torch.Generator().manual_seed(0))
    assert cells.shape == (3, 5) and (cells >= 0).all()
    again = device_from_config(device.to_config())  # what checkpoints store
    assert torch.equal(again.sample((64, 64), torch.Generator().manual_seed(0)), g)


# ---------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", list_datasets())
def test_dataset_has_description_and_registered_default_model(name):
    spec = dataset_spec(name)
    assert isinstance(spec.description, str) and spec.description.strip()
    assert callable(spec.load)
    assert spec.default_model in list_models()


# ---------------------------------------------------------------- exit policies

THRESHOLDS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99, 1.0]


@pytest.mark.parametrize("name", POLICIES.names())
def test_policy_confidence_in_unit_interval_and_done_monotone(name):
    policy = get_policy(name)
    assert policy_name(policy) == name and get_policy(policy) is policy
    g = torch.Generator().manual_seed(0)
    outputs = torch.cat(
        [
            torch.randn(64, 10, generator=g) * 3,
            torch.zeros(1, 10),  # uniform: no confidence
            torch.tensor([[1e4] + [0.0] * 9]),  # certain
        ]
    )
    for alpha in (0.5, 2.0):
        confidence = get_policy(name, alpha=alpha).confidence(outputs)
        assert confidence.shape == (len(outputs),)
        assert ((confidence >= -1e-6) & (confidence <= 1 + 1e-6)).all()
    done = [policy.done(outputs, t) for t in THRESHOLDS]
    for looser, stricter in zip(done, done[1:], strict=False):
        assert (looser | ~stricter).all()  # done at a higher threshold -> done at a lower one
    assert not done[-1].any()  # θ = 1 never exits early
    assert done[0].sum() > done[-2].sum()


# ---------------------------------------------------------------- energy models


@pytest.mark.parametrize("name", ENERGY_MODELS.names())
def test_energy_model_gives_nonnegative_energy_and_latency(name):
    energy_model = ENERGY_MODELS.get(name)
    assert energy_model.description and energy_model.kind in ("analog", "digital")
    model = hand_masked_network()
    x = torch.tensor([[[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]] * 3)
    with torch.no_grad(), count_operations(model) as counts:
        model(x)
    energy = energy_model.energy_pj(counts)
    assert energy and all(math.isfinite(v) and v >= 0 for v in energy.values())
    assert energy["total"] > 0
    assert energy["total"] == pytest.approx(sum(v for k, v in energy.items() if k != "total"))
    assert math.isfinite(energy_model.latency_ns(counts)) and energy_model.latency_ns(counts) > 0
    assert energy_model.synaptic_ops(counts) >= 0
