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


@pytest.fixture(scope="module")
def adc_run(tmp_path_factory):
    """A tiny run trained on the CPU, on the ADC periphery."""
    run = tmp_path_factory.mktemp("adc") / "run"
    read_path = PERIPHERIES.get("prime-512-adc6").to_dict()
    config = TrainConfig(dataset=TINY, epochs=1, batch_size=4, timesteps=3, read_path=read_path)
    train(config, run, progress=False, summaries=False)
    return run


def _close(cuda: list[dict], cpu: list[dict], keys: tuple[str, ...]) -> None:
    """Rows of a CUDA run against the CPU's: the same labels, accuracy within one of the ten
    test samples, energies within a few percent (float sums may flip a rare spike)."""
    assert len(cuda) == len(cpu)
    for a, b in zip(cuda, cpu, strict=True):
        assert a["samples"] == b["samples"]
        assert abs(a["accuracy"] - b["accuracy"]) <= 0.1 + 1e-9
        for key in keys:
            assert a[key] == pytest.approx(b[key], rel=0.05), key


def test_the_sweeps_and_reports_on_cuda_give_the_cpus_results(adc_run, tmp_path):
    from prime.hardware.ageing import ageing_model
    from prime.inference.robustness import age_sweep, stuck_cells_sweep
    from prime.runs.periphery_sweep import sweep_ir_drop, sweep_periphery
    from prime.runs.rundir import prepare_run

    periphery = PERIPHERIES.get("prime-512-adc6")
    rows = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        rows[device] = (
            sweep_periphery(adc_run, "adc_bits", [6, 4], out / "p", periphery, device=device),
            sweep_ir_drop(adc_run, [0.0, 2.0], [(64, 64)], out / "ir", periphery, device=device),
        )
    for cuda, cpu in zip(rows["cuda"], rows["cpu"], strict=True):
        _close(cuda, cpu, ("energy_pj", "adc_pj"))
    accuracies = {}
    for device in ("cpu", "cuda"):
        model, _, data = prepare_run(adc_run, device=device)
        assert module_device(model).type == device
        aged = age_sweep(model, data.test, [3600.0], 2, ageing_model("wan2022"), seed=1)
        stuck = stuck_cells_sweep(model, data.test, [(0.1, 0.05)], 2, seed=2)
        accuracies[device] = [row["accuracy"] for row in aged + stuck]
    assert np.allclose(accuracies["cuda"], accuracies["cpu"], atol=0.1 + 1e-9)


def test_the_energy_bench_and_a_sweep_on_cuda(adc_run, tmp_path):
    from prime.analysis.energy.models import AnalogMacro, DigitalAccelerator
    from prime.runs.evaluation import bench_energy
    from prime.runs.sweep import sweep_chips

    early = {"policy": "prime", "threshold": 0.8, "min_steps": 1}
    reports = {
        device: bench_energy(
            adc_run,
            tmp_path / device,
            AnalogMacro(),
            DigitalAccelerator(),
            early,
            progress=False,
            device=device,
        )
        for device in ("cpu", "cuda")
    }
    assert reports["cuda"]["samples"] == reports["cpu"]["samples"]
    names = [row["name"] for row in reports["cpu"]["rows"]]
    assert [row["name"] for row in reports["cuda"]["rows"]] == names
    config = TrainConfig(dataset=TINY, epochs=1, batch_size=4, timesteps=3, chip_seed=3)
    sweep_chips(config, 1, tmp_path / "sweep-cpu", device="cpu")
    sweep_chips(config, 1, tmp_path / "sweep-cuda", device="cuda")
    runs = (tmp_path / "sweep-cpu" / "chip-3", tmp_path / "sweep-cuda" / "chip-3")
    chips = [load_run(run)[0].memristor_layers()[0].g_us for run in runs]
    assert torch.equal(chips[0], chips[1])  # the same chip, trained on either device
