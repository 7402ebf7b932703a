"""User code in the command line: a module of the user's own registers a dataset, a model,
a device and an exit policy; ``--import`` loads it, the run records it, and every later
command on the run imports it by itself (each command in its own process, as a user runs
them)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from prime.core.errors import PrimeError
from prime.core.plugins import import_modules
from prime.runs.config import TrainConfig

ROOT = Path(__file__).resolve().parents[1]

USER_MODULE = '''
"""A researcher's own dataset, model, device and exit policy."""
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from prime.data import DATASETS, DatasetSpec, DataSplits, FrameDataset
from prime.hardware.devices import DEVICES, GaussianDifferential
from prime.inference.early_exit.policies import POLICIES, ExitPolicy
from prime.snn.models import MODELS, ModelSpec


@DEVICES.register("lab-gaussian")
@dataclass(frozen=True)
class LabGaussian(GaussianDifferential):
    name: ClassVar[str] = "lab-gaussian"
    delta_std_us: float = 4.0


def load_blobs(timesteps=4, seed=0, **options):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(40) % 4
    frames = (torch.rand(40, timesteps, 2, 8, 8, generator=g) < 0.05).float()
    frames[torch.arange(40), :, 0, 2 * labels] = 1.0
    return DataSplits(
        FrameDataset(frames[:28], labels[:28]), FrameDataset(frames[28:], labels[28:]),
        (2, 8, 8), 4, timesteps,
    )


DATASETS.register("lab-blobs")(DatasetSpec(load_blobs, "lab-mlp", "rows lit by the label"))
MODELS.register("lab-mlp")(
    ModelSpec(
        lambda make: [nn.Flatten(), make.linear(128, 4), make.integrator()],
        (2, 8, 8), 4, 4, "flatten, FC 128-4 integrator",
    )
)


@POLICIES.register("lab-top1")
@dataclass(frozen=True)
class Top1(ExitPolicy):
    def confidence(self, mean_output):
        return self.probabilities(mean_output).amax(dim=1)
'''


def prime(args: list[str], path: list[Path]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(p) for p in [ROOT, *path]))
    return subprocess.run(
        [sys.executable, "-m", "prime", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def user_module(tmp_path: Path) -> Path:
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "lab_models.py").write_text(textwrap.dedent(USER_MODULE))
    return folder


def test_user_registered_entries_run_in_every_command(tmp_path, user_module):
    run = tmp_path / "run"
    common = ["--threads", "1"]
    train = [
        "train", "--import", "lab_models", "--dataset", "lab-blobs",
        "--device-model", "lab-gaussian", "--epochs", "1", "--out", str(run), "--quiet",
    ]  # fmt: skip
    result = prime([*train, *common], [user_module])
    assert result.returncode == 0, result.stderr
    assert "lab-mlp on lab-blobs" in result.stdout
    # later commands find the module by the run's record, with no --import
    result = prime(["eval", str(run), *common], [user_module])
    assert result.returncode == 0, result.stderr
    assert "over 12 samples" in result.stdout
    result = prime(["bench", "energy", str(run), "--quiet", "--policy", "lab-top1", *common],
                   [user_module])  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert (run / "bench" / "energy.json").is_file()
    early = [
        "eval",
        str(run),
        "--early-exit",
        "--policy",
        "lab-top1",
        "--out",
        str(tmp_path / "ee"),
    ]
    result = prime([*early, *common], [user_module])
    assert result.returncode == 0, result.stderr
    assert "lab-top1 policy" in result.stdout
    # the module gone: one line naming it and the fix
    result = prime(["eval", str(run), *common], [])
    assert result.returncode == 1
    assert "cannot import the user module 'lab_models'" in result.stderr
    assert "PYTHONPATH" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_name_says_how_to_bring_user_code():
    from prime.snn.models import get_model

    with pytest.raises(PrimeError, match="unknown model 'lab-net'.*--import MODULE"):
        get_model("lab-net")


def test_imports_are_module_names():
    with pytest.raises(PrimeError, match="list of names, got the string 'lab_models'"):
        import_modules("lab_models")
    with pytest.raises(PrimeError, match="cannot import the user module 'no_such_lab_module'"):
        TrainConfig(imports=["no_such_lab_module"])


PLUGIN_MODULE = """
from torch import nn

from prime.snn.models import MODELS, ModelSpec

MODELS.register("plugin-mlp")(
    ModelSpec(
        lambda make: [nn.Flatten(), make.linear(3, 2), make.integrator()],
        (3,), 2, 2, "FC 3-2 integrator, from an installed plugin",
    )
)
"""


def test_an_installed_plugin_registers_its_model_without_import(tmp_path, monkeypatch):
    from prime.core.plugins import load_plugins
    from prime.snn.models import MODELS, get_model

    info = tmp_path / "fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[prime.plugins]\nmine = fake_prime_plugin\n")
    (tmp_path / "fake_prime_plugin.py").write_text(PLUGIN_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(MODELS, "_entries", dict(MODELS._entries))  # forgets it afterwards
    monkeypatch.delitem(sys.modules, "fake_prime_plugin", raising=False)
    load_plugins.cache_clear()
    try:
        assert "plugin-mlp" not in MODELS.names()
        model = get_model("plugin-mlp", timesteps=2)
        assert model.input_shape == (3,) and model.num_classes == 2
    finally:
        load_plugins.cache_clear()
        sys.modules.pop("fake_prime_plugin", None)
