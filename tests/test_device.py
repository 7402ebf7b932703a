"""Device placement (docs/performance.md, "Devices"): ``--device``/``device=`` checked against
the machine, every tensor a forward and backward pass makes on the model's device (proved on
``meta`` where no GPU is), the same chip for a seed on every device, checkpoints that load on
any device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from helpers import TINY
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from prime.analysis.energy.counting import count_operations
from prime.core.device import module_device, resolve_device
from prime.core.errors import PrimeError
from prime.hardware.periphery import PERIPHERIES
from prime.inference.early_exit import run_early_exit
from prime.runs.config import TrainConfig
from prime.runs.distributed import rank_device
from prime.runs.rundir import load_run
from prime.runs.train import train
from prime.snn.models import get_model, list_models, model_spec
from prime.snn.switching import SwitchCounter

META = torch.device("meta")
#: ops that may make CPU tensors on a meta model: seeded draws on the CPU generator (the
#: same chip and noise on every device) and their copy to the model's device
ADC6 = PERIPHERIES.get("prime-512-adc6").to_dict()
CPU_DRAWS = {"randn", "rand", "randint", "normal", "uniform", "bernoulli", "randperm"}


class _Placement(TorchDispatchMode):
    """Records every op whose tensor arguments or outputs are off ``meta``; a scalar read of
    a meta tensor answers False (``bool()``: no NaN, no fault) or 1 (``.item()``), so code that
    branches on values still runs."""

    def __init__(self) -> None:
        super().__init__()
        self.off_meta: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__.rstrip("_")
        if name == "_local_scalar_dense" and args[0].is_meta:
            return False if args[0].dtype == torch.bool else 1
        out = func(*args, **kwargs)
        if name in CPU_DRAWS or name == "_to_copy" and _on_meta(out):
            return out
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        if any(not t.is_meta for t in tensors):
            self.off_meta.append(f"{func}: {[str(t.device) for t in tensors]}")
        return out


def _on_meta(value: Any) -> bool:
    return all(t.is_meta for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor))


@contextmanager
def _only_meta() -> Iterator[None]:
    with _Placement() as placement:
        yield
    assert placement.off_meta == [], "\n".join(placement.off_meta[:10])


def _meta_model(name: str, preset: str = "ideal") -> Any:
    """Model ``name`` on ``preset``, calibrated on the CPU (its ranges are values), on meta."""
    model = get_model(name, timesteps=3, read_path=PERIPHERIES.get(preset).to_dict())
    shape = model_spec(name).input_shape
    model.calibrate_read_paths([torch.rand(3, 2, *shape, generator=torch.Generator())])
    return model.to(META)


def _frames(name: str, batch: int = 2) -> torch.Tensor:
    return torch.ones(3, batch, *model_spec(name).input_shape, device=META)


@pytest.mark.parametrize("name", list_models())
def test_every_model_trains_on_its_device(name):
    model = _meta_model(name)
    model.set_read_noise(0.05, seed=1)
    with _only_meta():
        model(_frames(name)).sum().backward()
    assert all(p.grad is None or p.grad.is_meta for p in model.parameters())


@pytest.mark.parametrize("preset", PERIPHERIES.names())
def test_every_periphery_runs_on_the_models_device(preset):
    model = _meta_model("nmnist-conv", preset)
    with _only_meta():
        model(_frames("nmnist-conv")).sum().backward()
        model.eval()
        model(_frames("nmnist-conv"), mode="single")


@pytest.mark.parametrize("name", ["nmnist-conv", "shd-rsnn", "spoken-digits-crnn"])
def test_operation_counts_stay_on_the_models_device(name):
    model, placement = _meta_model(name).eval(), _Placement()
    with pytest.raises(NotImplementedError, match="meta tensor"):  # reading the counts out
        with placement, torch.no_grad(), count_operations(model):
            model(_frames(name))
            model(_frames(name), mode="single")
    assert placement.off_meta == [], "\n".join(placement.off_meta[:10])


class _Compacted(Exception):
    """Raised at the first compaction of an early-exit run on meta (where no sample would
    ever leave: its values are unknown)."""


class _UntilCompaction(_Placement):
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if func.overloadpacket.__name__ == "index_select":
            raise _Compacted
        return out


def test_early_exit_and_compaction_stay_on_the_models_device(monkeypatch):
    from torch.fx.experimental import _config

    monkeypatch.setattr(_config, "meta_nonzero_assume_all_nonzero", True)  # shapes on meta
    model = _meta_model("nmnist-mlp").eval()
    placement = _UntilCompaction()
    with pytest.raises(_Compacted), placement, torch.no_grad():
        run_early_exit(model, _frames("nmnist-mlp", 5), threshold=0.5, batch_size=2)
    assert placement.off_meta == [], "\n".join(placement.off_meta[:10])


def test_a_seed_forms_the_same_chip_and_it_moves_with_the_model():
    def chip(seed: int) -> list[torch.Tensor]:
        model = get_model("nmnist-conv", chip_seed=seed, timesteps=3, read_path=ADC6)
        return [t for layer in model.memristor_layers() for t in layer.state_dict().values()]

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:  # open ranges are NaN
        return all(
            x.equal(y) or x.isnan().all() and y.isnan().all() for x, y in zip(a, b, strict=True)
        )

    assert same(chip(3), chip(3)) and not same(chip(3), chip(4))
    model = get_model("nmnist-conv", chip_seed=3, timesteps=3, read_path=ADC6).to(META)
    model.memristor_layers()[0].hold(0.1)  # the held mask and scores are buffers too
    for name, module in model.named_modules():  # every tensor a buffer: .to() moves it
        loose = [k for k, v in vars(module).items() if isinstance(v, torch.Tensor)]
        assert loose == [], f"{name} keeps tensors {loose} that .to() leaves on the CPU"
    assert all(t.is_meta for t in model.state_dict().values())


def test_device_specs_are_checked_against_the_machine(monkeypatch):
    assert resolve_device(None) == torch.device("cpu") == resolve_device("cpu")
    assert resolve_device("meta") == META
    with pytest.raises(PrimeError, match="unknown torch device"):
        resolve_device("gpu0")
    with pytest.raises(PrimeError, match="prime runs on cpu or cuda"):
        resolve_device("mps")
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(PrimeError, match=r"no CUDA \(torch .*install a CUDA build"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("cuda") == torch.device("cuda", 0)
    with pytest.raises(
        PrimeError,
        match=r"--device cuda:7: this machine has 1 CUDA device "
        r"\(cuda:0\)",
    ) as error:
        resolve_device("cuda:7")
    assert "\n" not in str(error.value)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(PrimeError, match=r"2 CUDA devices \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PrimeError, match="finds no CUDA device"):
        resolve_device("cuda:0")


def test_a_checkpoint_loads_on_any_device(tmp_path):
    config = TrainConfig(dataset=TINY, epochs=1, batch_size=4)
    train(config, tmp_path, progress=False, summaries=False, device="cpu")
    cpu, _ = load_run(tmp_path)
    meta, _ = load_run(tmp_path, device="meta")
    assert module_device(cpu) == torch.device("cpu") and module_device(meta) == META
    assert all(t.is_meta for t in meta.state_dict().values())
    assert cpu.state_dict().keys() == meta.state_dict().keys()


def test_each_rank_of_a_cuda_job_takes_its_own_gpu(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert rank_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(PrimeError, match="one GPU per process.*--nproc 1 or fewer"):
        rank_device(torch.device("cuda", 0))
    chosen = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    assert rank_device(torch.device("cuda", 0)) == torch.device("cuda", 1) and chosen == [1]


def test_switch_counts_and_held_masks_load_onto_the_models_device():
    trained = SwitchCounter(get_model("nmnist-mlp", timesteps=3).memristor_layers())
    trained.program(0.1)
    model = get_model("nmnist-mlp", timesteps=3).to(META)
    resumed = SwitchCounter(model.memristor_layers())
    resumed.load_state_dict(trained.state_dict())  # as a checkpoint read on the CPU
    assert all(t.is_meta for t in resumed.previous + resumed.counts)
    assert all(t.is_meta for layer in model.memristor_layers() for t in layer.held or ())
    assert all(layer.held is not None for layer in model.memristor_layers())
