"""GPU checks (``pytest -m gpu``, scripts/gpu_check.sh): training on CUDA, CUDA outputs against
the CPU's, the authors' checkpoint on CUDA. Skipped, saying why, on a machine without CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import TINY, reference_file

from prime.core.device import module_device
from prime.hardware.periphery import IDEAL, PERIPHERIES
from prime.runs.config import TrainConfig
from prime.runs.rundir import load_run
from prime.runs.train import train
from prime.snn.models import get_model
from prime.snn.reference import load_prime_reference

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason=f"no CUDA device (torch {torch.__version__}, CUDA {torch.version.cuda})",
    ),
]
CUDA = torch.device("cuda")


def _frames(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(3, 8, 2, 34, 34, generator=g) < 0.1).float()


@pytest.mark.parametrize("preset", ["ideal", "prime-512-adc6"])
def test_cuda_outputs_match_the_cpu_on_the_same_chip(preset):
    read_path = PERIPHERIES.get(preset).to_dict()
    cpu = get_model("nmnist-conv", chip_seed=2, timesteps=3, read_path=read_path).eval()
    cpu.calibrate_read_paths([_frames(1)])
    gpu = get_model("nmnist-conv", chip_seed=2, timesteps=3, read_path=read_path).eval()
    gpu.calibrate_read_paths([_frames(1)])
    gpu.to(CUDA)
    for a, b in zip(cpu.state_dict().values(), gpu.state_dict().values(), strict=True):
        assert b.is_cuda  # the same chip, moved
        torch.testing.assert_close(b.cpu(), a, rtol=0, atol=0, equal_nan=True)
    x = _frames()
    with torch.no_grad():
        for mode in ("multi", "single"):
            torch.testing.assert_close(
                gpu(x.to(CUDA), mode=mode).cpu(), cpu(x, mode=mode), rtol=1e-4, atol=1e-4
            )


def test_a_run_trains_on_cuda_and_loads_on_the_cpu(tmp_path):
    config = TrainConfig(dataset=TINY, epochs=1, batch_size=4)
    metrics = train(config, tmp_path, progress=False, summaries=False, device="cuda")
    assert 0.0 <= metrics["test_accuracy"] <= 1.0
    model, _ = load_run(tmp_path)
    assert module_device(model) == torch.device("cpu")
    assert module_device(load_run(tmp_path, device="cuda")[0]).type == "cuda"


def test_the_authors_checkpoint_on_cuda_matches_the_golden_outputs():
    golden = np.load(reference_file("prime/prime_golden.npz"))
    model = (
        load_prime_reference(reference_file("prime/classification.pt"), read_path=IDEAL.to_dict())
        .eval()
        .to(CUDA)
    )
    x = torch.from_numpy(golden["inputs"]).float().transpose(0, 1).to(CUDA)
    with torch.no_grad():
        out = model(x).mean(0).cpu()
    np.testing.assert_allclose(out.numpy(), golden["mean_output"], rtol=1e-4, atol=1e-4)
