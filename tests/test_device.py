"""Device placement (docs/performance.md, "Devices"): ``--device``/``device=`` checked against
the machine, every tensor a forward and backward pass makes on the model's device (proved on
``meta`` where no GPU is), the same chip for a seed on every device, checkpoints that load on
any device."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import TINY, load_tiny
from torch.utils._python_dispatch import TorchDispatchMode, _disable_current_modes
from torch.utils._pytree import tree_flatten
from torch.utils.data import Dataset

from prime.analysis.energy.counting import count_operations
from prime.analysis.energy.models import AnalogMacro, DigitalAccelerator
from prime.core.device import module_device, resolve_device
from prime.core.errors import PrimeError
from prime.data import DATASETS, DatasetSpec, DataSplits
from prime.hardware import ir_drop
from prime.hardware.ageing import ageing_model
from prime.hardware.periphery import PERIPHERIES
from prime.inference.early_exit import run_early_exit
from prime.inference.robustness import age_sweep, read_noise_sweep, stuck_cells_sweep
from prime.runs.config import TrainConfig
from prime.runs.distributed import rank_device
from prime.runs.evaluation import bench_energy, neurobench_run
from prime.runs.periphery_sweep import sweep_ir_drop, sweep_periphery
from prime.runs.rundir import load_run, prepare_run
from prime.runs.train import train
from prime.snn.models import get_model, list_models, model_spec
from prime.snn.switching import SwitchCounter

META = torch.device("meta")
#: ops that may make CPU tensors on a meta model: seeded draws on the CPU generator (the
#: same chip and noise on every device) and their copy to the model's device
ADC6 = PERIPHERIES.get("prime-512-adc6").to_dict()
CPU_DRAWS = {"randn", "rand", "randint", "normal", "uniform", "bernoulli", "randperm"}
#: inside a solver that runs on the CPU by design (the exact IR-drop transfer: scipy's sparse
#: LU), a meta tensor copied to the CPU reads ones (as a scalar read of one reads 1) and the
#: solver's own CPU tensors are not recorded
_COPY_OUT = {"solver": False}
#: ops on one CPU scalar: a DataLoader's base seed for its workers or a scheduled-sampling
#: coin, drawn and read on the CPU
SEED_OPS = {"empty", "random", "_local_scalar_dense"}


class _Placement(TorchDispatchMode):
    """Records every op whose tensor arguments or outputs are off ``meta``; a scalar read of
    a meta tensor answers False (``bool()``: no NaN, no fault) or 1 (``.item()``), and
    ``torch.equal`` of meta tensors True, so code that branches on values still runs."""

    def __init__(self) -> None:
        super().__init__()
        self.off_meta: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__.rstrip("_")
        if name == "_local_scalar_dense" and args[0].is_meta:
            return False if args[0].dtype == torch.bool else 1
        if name == "equal" and _on_meta(args):  # (torch.equal): the same tensors, a cache holds
            return True
        if name == "_to_copy" and args[0].is_meta and _COPY_OUT["solver"]:
            if torch.device(kwargs.get("device", META)).type == "cpu":  # a CPU solver's input
                return torch.ones(args[0].shape, dtype=kwargs.get("dtype") or args[0].dtype)
        out = func(*args, **kwargs)
        if name in CPU_DRAWS or name == "_to_copy" and _on_meta(out):
            return out
        tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
        if name in SEED_OPS and all(_is_seed(t) for t in tensors):
            return out
        if _COPY_OUT["solver"] and not any(t.is_meta for t in tensors):  # the solver's own
            return out
        if any(not t.is_meta for t in tensors):
            self.off_meta.append(f"{func}: {[str(t.device) for t in tensors]}")
        return out


def _is_seed(t: torch.Tensor) -> bool:
    return t.device.type == "cpu" and t.dim() == 0


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


@pytest.fixture
def shapes_on_meta() -> Iterator[None]:
    """``nonzero`` on meta assumes every element nonzero (an output shape without values),
    for one test (torch's config patch: undone exactly, whatever pytest's monkeypatch does)."""
    from torch.fx.experimental import _config

    with _config.patch(meta_nonzero_assume_all_nonzero=True):
        yield


class _Compacted(Exception):
    """Raised at the first compaction of an early-exit run on meta (where no sample would
    ever leave: its values are unknown)."""


class _UntilCompaction(_Placement):
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if func.overloadpacket.__name__ == "index_select":
            raise _Compacted
        return out


def test_early_exit_and_compaction_stay_on_the_models_device(shapes_on_meta):
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


# ---------------------------------------------------------------- run-level commands on meta

#: a dataset whose samples live on ``_PLACED_ON["device"]`` (a run trains on the CPU, then is
#: evaluated on meta with its batches made there: no CPU op stacks them)
PLACED = "tiny-placed"
_PLACED_ON = {"device": "cpu"}


class _Samples(Dataset):
    """Frames [N, T, 2, 34, 34] and labels [N] on one device, served as tensors (so the
    batches are stacked there); it holds no stored tensors, so no data fingerprint."""

    def __init__(self, frames: torch.Tensor, labels: torch.Tensor) -> None:
        self.frames, self.labels = frames, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.frames[index], self.labels[index]


def _load_placed(timesteps: int = 3, seed: int = 0, **options: Any) -> DataSplits:
    if _PLACED_ON["device"] == "meta":  # shapes only, made on meta

        def split(n: int) -> _Samples:
            frames = torch.zeros(n, timesteps, 2, 34, 34, device=META)
            return _Samples(frames, torch.zeros(n, dtype=torch.int64, device=META))

        train_split, test_split = split(7), split(10)
    else:
        tiny = load_tiny(timesteps, seed)
        train_split = _Samples(tiny.train.frames.float(), tiny.train.labels)
        test_split = _Samples(tiny.test.frames.float(), tiny.test.labels)
    return DataSplits(train_split, test_split, (2, 34, 34), 10, timesteps)


if PLACED not in DATASETS:
    DATASETS.register(PLACED)(DatasetSpec(_load_placed, "nmnist-conv", "placement test data"))


@pytest.fixture(scope="module")
def placed_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run trained on the CPU, on the ADC periphery (its sweeps have fields to change)."""
    run = tmp_path_factory.mktemp("placed") / "run"
    config = TrainConfig(dataset=PLACED, epochs=1, batch_size=4, timesteps=3, read_path=ADC6)
    train(config, run, progress=False, summaries=False)
    return run


@pytest.fixture
def on_meta(monkeypatch: pytest.MonkeyPatch) -> None:
    """The placed dataset's samples on meta, and the recorder blind to what happens on the
    CPU by design: reading and checking a checkpoint (``load_run``, whose model must come
    back on meta unless the caller programs it first), building a model (``build_model``:
    the chip of a seed is the CPU's, and the caller moves it) and programming one
    (``program_network``); the exact IR-drop transfer is solved on the CPU (scipy) on ones
    for the cells (:data:`_COPY_OUT`) and must come back on the cells' device. The real
    functions run, unchanged."""
    from prime.runs import evaluation, rundir
    from prime.runs.reproduce import pruning

    monkeypatch.setitem(_PLACED_ON, "device", "meta")

    def unrecorded(real: Callable[..., Any], moved: bool) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            with _disable_current_modes():
                out = real(*args, **kwargs)
            if moved:
                assert module_device(out[0]) == META, f"{real.__name__} left the model on the CPU"
            return out

        return call

    for module, name, moved in (
        (rundir, "load_run", True),
        (evaluation, "load_run", True),
        (pruning, "load_run", False),  # the trained weights, programmed on the CPU
        (rundir, "build_model", False),
        (pruning, "build_model", False),
        (pruning, "program_network", False),  # write-verify's draws: the CPU generator's
    ):
        monkeypatch.setattr(module, name, unrecorded(getattr(module, name), moved))
    exact = ir_drop.TRANSFER_MODELS["exact"]

    def solved_on_the_cpu(g_us: torch.Tensor, wire: Any) -> torch.Tensor:
        monkeypatch.setitem(_COPY_OUT, "solver", True)
        try:
            transfer = exact(g_us, wire)
        finally:
            monkeypatch.setitem(_COPY_OUT, "solver", False)
        assert transfer.device == g_us.device, "the exact transfer stayed on the CPU"
        return transfer

    monkeypatch.setitem(ir_drop.TRANSFER_MODELS, "exact", solved_on_the_cpu)


def _until_counts_are_read(run: Callable[[], Any]) -> None:
    """Run ``run`` under the recorder until the first read-out of operation counts (they
    are values: a meta tensor has none), failing on any op that touched the CPU before."""
    placement = _Placement()
    with pytest.raises(NotImplementedError, match="meta tensor") as stopped, placement:
        run()
    assert placement.off_meta == [], "\n".join(placement.off_meta[:10])
    where = [(Path(entry.path).name, entry.name) for entry in stopped.traceback]
    assert ("counting.py", "compute") in where, f"stopped early, at {where[-3:]}"


def test_a_periphery_sweep_runs_on_the_device_it_is_given(placed_run, on_meta, tmp_path):
    periphery = PERIPHERIES.get("prime-512-adc6")
    _until_counts_are_read(
        lambda: sweep_periphery(
            placed_run, "adc_bits", [6, 4], tmp_path, periphery, batch_size=4, device="meta"
        )
    )


@pytest.mark.parametrize("ir_model", ["exact", "first-order"])
def test_an_ir_drop_sweep_solves_on_the_device_it_is_given(placed_run, on_meta, tmp_path, ir_model):
    base = dataclasses.replace(PERIPHERIES.get("prime-512-adc6"), ir_model=ir_model)
    _until_counts_are_read(
        lambda: sweep_ir_drop(placed_run, [2.0], [(64, 64)], tmp_path, base, device="meta")
    )


def test_the_energy_bench_counts_on_the_device_it_is_given(placed_run, on_meta, tmp_path):
    early_exit = {"policy": "prime", "threshold": 0.8, "min_steps": 1}
    _until_counts_are_read(
        lambda: bench_energy(
            placed_run,
            tmp_path,
            AnalogMacro(),
            DigitalAccelerator(),
            early_exit,
            batch_size=4,
            progress=False,
            device="meta",
        )
    )


def test_neurobench_runs_its_harness_on_the_device_it_is_given(placed_run, on_meta):
    pytest.importorskip("neurobench")
    _until_counts_are_read(lambda: neurobench_run(placed_run, batch_size=4, device="meta"))


def test_read_noise_aged_and_stuck_cells_evaluate_on_the_runs_device(placed_run, on_meta):
    with _only_meta():
        model, config, data = prepare_run(placed_run, device="meta")
        assert module_device(model) == META
        rows = read_noise_sweep(model, data.test, [0.0, 0.05], 2, seed=1, batch_size=4)
        rows += age_sweep(model, data.test, [3600.0], 2, ageing_model("wan2022"), batch_size=4)
        rows += stuck_cells_sweep(model, data.test, [(0.1, 0.05)], 2, seed=2, batch_size=4)
        chip = model.memristor_layers()[0].g_us
    assert len(rows) == 1 + 2 + 2 + 2 and chip.is_meta


def test_programmed_weights_are_evaluated_on_the_reproductions_device(tmp_path, on_meta):
    from prime.runs.reproduce.pruning import PruningReproduceConfig, _programmed

    _PLACED_ON["device"] = "cpu"  # the weights trained on the CPU
    run = tmp_path / "weights"
    config = TrainConfig(dataset=PLACED, epochs=1, batch_size=4, timesteps=3, synapses="weights")
    train(config, run, progress=False, summaries=False)
    _PLACED_ON["device"] = "meta"
    with _only_meta():
        results, chip = _programmed(str(run), PruningReproduceConfig(data=tmp_path), "meta")
    assert module_device(chip) == META and {"test_accuracy", "software_accuracy"} <= set(results)


class _Reached(Exception):
    """A function that runs a network, reached with this device (the test's stand-in raises it)."""


def _train_reached(monkeypatch: pytest.MonkeyPatch, module: Any) -> None:
    """``module``'s ``train`` raises :class:`_Reached` with the device it is given."""

    def reached(*args: Any, device: Any = None, **kwargs: Any) -> None:
        raise _Reached(device)

    monkeypatch.setattr(module, "train", reached)


def test_both_reproductions_train_on_their_device(tmp_path, monkeypatch):
    from prime.data.fake import write_fake_nmnist
    from prime.runs import train as training
    from prime.runs.reproduce import pruning
    from prime.runs.reproduce.pipeline import ReproduceConfig, reproduce

    write_fake_nmnist(tmp_path / "nmnist", per_class=1, events=50)
    nmnist = ReproduceConfig(data=tmp_path / "nmnist", out=tmp_path / "a", data_root=tmp_path)
    _train_reached(monkeypatch, training)  # the pipeline imports it when it trains
    with pytest.raises(_Reached) as reached:
        reproduce(nmnist, device="meta")
    assert reached.value.args == (META,)
    for name in ("train.npz", "test.npz"):  # present (read by the training, which is not)
        (tmp_path / name).touch()
    _train_reached(monkeypatch, pruning)
    with pytest.raises(_Reached) as reached:
        pruning.reproduce_pruning(pruning.PruningReproduceConfig(data=tmp_path), device="meta")
    assert reached.value.args == (META,)
    with pytest.raises(PrimeError, match="unknown torch device"):
        reproduce(dataclasses.replace(nmnist, out=tmp_path / "b"), device="gpu0")
    assert not (tmp_path / "b").exists()  # refused before anything is written


def test_inpainting_and_its_early_stop_run_on_the_models_device(shapes_on_meta):
    from prime.inference.early_stop import (
        ChangeRule,
        get_stop_rule,
        run_early_stop,
        run_from_scratch,
        stop_from_trajectory,
    )
    from prime.runs.inpaint_eval import count_energy
    from prime.snn.fsvae import get_fsvae

    model = get_fsvae("mnist-fsvae", timesteps=3).eval().to(META)
    rule = get_stop_rule("reference", 0.2)
    with _only_meta():
        images = torch.zeros(4, 1, 32, 32, device=META)
        index = model.latent_index(4, torch.Generator().manual_seed(0)).to(META)
        trajectory = model.reconstructions(images, index)
        for result in (
            run_early_stop(model, images, index, rule),
            run_from_scratch(model, images, index, ChangeRule(0.1)),
            stop_from_trajectory(trajectory, rule),
        ):
            assert result.recon.is_meta and result.steps.is_meta and result.changes.is_meta
    _until_counts_are_read(lambda: count_energy(model, images, index, rule, batch_size=2))


def test_the_fsvae_trains_on_its_device():
    from prime.snn.fsvae import fsvae_loss, get_fsvae

    model = get_fsvae("mnist-fsvae", timesteps=7).train().to(META)  # sampling from step 5
    with _only_meta():
        images = torch.zeros(4, 1, 32, 32, device=META)
        draws = torch.Generator().manual_seed(0)
        index = model.latent_index(4, draws).to(META)
        output = model(model.frames(images), index, scheduled_p=1.0, generator=draws)
        fsvae_loss(model, output, images)["loss"].backward()
    assert all(p.grad is None or p.grad.is_meta for p in model.parameters())


def test_an_inpainting_run_loads_on_any_device(tmp_path):
    from prime.core.io import save_checkpoint
    from prime.runs.inpaint import InpaintConfig, load_inpainting_run
    from prime.snn.fsvae import get_fsvae

    model = get_fsvae("mnist-fsvae", timesteps=3)
    payload = {"fsvae_config": model.config.to_dict(), "model_state": model.state_dict()}
    save_checkpoint(tmp_path / "checkpoint.pt", {**payload, "inpaint_config": {}})
    assert InpaintConfig() == load_inpainting_run(tmp_path)[1]
    loaded, _ = load_inpainting_run(tmp_path, device="meta")
    assert all(t.is_meta for t in loaded.state_dict().values()) and not loaded.training


def test_a_sweep_trains_every_chip_on_its_device(tmp_path, monkeypatch):
    from prime.runs import sweep

    devices = []

    def recording(*args: Any, device: Any = None, **kwargs: Any) -> dict[str, Any]:
        devices.append(device)
        return train(*args, device=device, **kwargs)

    monkeypatch.setattr(sweep, "train", recording)
    config = TrainConfig(dataset=TINY, epochs=1, batch_size=4, timesteps=3)
    sweep.sweep_chips(config, 2, tmp_path, device="cpu")
    assert devices == [torch.device("cpu")] * 2
    with pytest.raises(PrimeError, match="unknown torch device"):
        sweep.sweep_chips(config, 2, tmp_path / "other", device="gpu0")
    assert not (tmp_path / "other").exists()  # refused before anything is written


# ---------------------------------------------------------------- --device on every command


#: command line (after ``prime``; RUN: a run folder, OUT: an output folder) -> the run-level
#: function (module:name) it calls with ``device=``
COMMANDS = {
    "sweep --dataset tiny-events --out OUT": "prime.runs.sweep:sweep_chips",
    "bench energy RUN": "prime.runs.evaluation:bench_energy",
    "bench neurobench RUN": "prime.runs.evaluation:neurobench_run",
    "eval RUN --adc-bits 6,4 --periphery ideal": "prime.runs.periphery_sweep:sweep_periphery",
    "eval RUN --r-wire 0,1 --periphery ideal": "prime.runs.periphery_sweep:sweep_ir_drop",
    "eval RUN --age 1h --out OUT": "prime.runs.rundir:prepare_run",
    "eval RUN --stuck-off 0.1 --out OUT": "prime.runs.rundir:prepare_run",
    "eval RUN --read-noise 0,0.05 --out OUT": "prime.runs.rundir:prepare_run",
    "reproduce nmnist OUT --out OUT": "prime.runs.reproduce.pipeline:reproduce",
    "reproduce pruning OUT --out OUT": "prime.runs.reproduce.pruning:reproduce_pruning",
    "eval RUN --inpaint": "prime.runs.inpaint_eval:evaluate_inpainting",
    "train --model mnist-fsvae --out OUT": "prime.runs.inpaint:train_inpainting",
}


def _command_line(command: str, tmp_path: Path) -> list[str]:
    folders = {"RUN": str(tmp_path / "run"), "OUT": str(tmp_path / "out")}
    return [folders.get(word, word) for word in command.split()]


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_passes_its_device_on(name, tmp_path, monkeypatch):
    """A faked machine with one GPU: the command reaches its run-level function with it."""
    import importlib

    from prime.cli.main import build_parser

    module, function = COMMANDS[name].split(":")

    def reached(*args: Any, device: Any = None, **kwargs: Any) -> None:
        raise _Reached(device)

    monkeypatch.setattr(importlib.import_module(module), function, reached)
    monkeypatch.setattr(torch.version, "cuda", "12.4")  # a machine with one GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    args = build_parser().parse_args([*_command_line(name, tmp_path), "--device", "cuda"])
    with pytest.raises(_Reached) as reached_with:
        args.run(args)
    assert reached_with.value.args == ("cuda:0",)


def test_an_imported_nir_network_is_evaluated_on_the_device_given(tmp_path, monkeypatch):
    pytest.importorskip("nir")
    from prime.cli.main import build_parser
    from prime.inference import evaluate
    from prime.interop.nir_export import export_nir, write_nir

    write_nir(tmp_path / "m.nir", export_nir(get_model("nmnist-mlp", neuron="lif", timesteps=3)))

    def reached(model: Any, *args: Any, **kwargs: Any) -> None:
        raise _Reached(module_device(model))

    monkeypatch.setattr(evaluate, "evaluate", reached)
    argv = ["import", str(tmp_path / "m.nir"), "--dataset", TINY, "--device", "meta"]
    args = build_parser().parse_args(argv)
    with pytest.raises(_Reached) as reached_with:
        args.run(args)
    assert reached_with.value.args == (META,)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_names_the_cuda_this_torch_lacks(name, tmp_path, monkeypatch, capsys):
    from prime.cli.main import main

    monkeypatch.setattr(torch.version, "cuda", None)  # as this CPU build of torch
    with pytest.raises(SystemExit) as exited:
        main([*_command_line(name, tmp_path), "--device", "cuda"])
    line = capsys.readouterr().err
    assert exited.value.code == 2 and line.count("\n") == 1
    assert "--device cuda: this torch build has no CUDA" in line and "CPU only" not in line
