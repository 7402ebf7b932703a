"""Evaluating a trained run directory: accuracy (``prime eval``), early exit
(``prime eval --early-exit``) and the energy report (``prime bench energy``)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from prime.analysis.energy.models import AnalogMacro, DigitalAccelerator
from prime.analysis.energy.report import (
    energy_report,
    limit_dataset,
    report_paths,
    write_energy_report,
)
from prime.core.errors import PrimeError
from prime.core.lock import exclusive
from prime.data import dataset_len
from prime.hardware.periphery import ReadPathConfig
from prime.hardware.programming import PULSE_COSTS
from prime.inference.early_exit import early_exit_report
from prime.inference.evaluate import evaluate
from prime.interop.neurobench import prime_figures, run_neurobench
from prime.runs.config import TrainConfig
from prime.runs.rundir import (
    load_run,
    prepare_loaded,
    prepare_run,
    replaying,
)
from prime.snn.network import SpikingNetwork


def evaluate_run(
    run_dir: str | Path,
    read_noise: float = 0.0,
    noise_seed: int = 0,
    chip_seed: int | None = None,
    mode: str = "multi",
    batch_size: int = 128,
    progress: bool = True,
    replay: dict[str, Any] | None = None,
    periphery: ReadPathConfig | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Re-evaluate a run on its test split, on ``device`` (default cpu); see ``prime eval``.

    A run trained on a chip trace is evaluated on it (unless ``chip_seed`` re-forms a random
    chip); ``replay`` overrides its trace/replay/pruned/tile settings (None: keep);
    ``periphery`` evaluates it on another periphery (calibrated on its training data).
    """
    model, config, data = prepare_run(run_dir, chip_seed, replay, periphery, device)
    model.set_read_noise(read_noise, seed=noise_seed)
    with replaying(model, config):
        result = evaluate(model, data.test, batch_size=batch_size, mode=mode, progress=progress)
    return {
        **result,
        "model": config.model_name,
        "dataset": config.dataset,
        "read_noise": read_noise,
        "chip_seed": model.config.chip_seed,
        "trace": config.trace,
        "replay": config.replay if config.trace else None,
        "periphery": config.read_path,
    }


def early_exit_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    read_noise: float = 0.0,
    noise_seed: int = 0,
    chip_seed: int | None = None,
    replay: dict[str, Any] | None = None,
    periphery: ReadPathConfig | None = None,
    device: str | torch.device | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`early_exit_report` for a trained run (``out_dir`` defaults to
    ``RUN_DIR/early-exit``), optionally under read noise, on another chip or on a chip
    trace, or periphery (``replay``, ``periphery``, ``device`` as :func:`evaluate_run`)."""
    out_dir = Path(run_dir) / "early-exit" if out_dir is None else Path(out_dir)
    with exclusive(out_dir):  # before any work: an unwritable folder fails at once
        model, config, data = prepare_run(run_dir, chip_seed, replay, periphery, device)
        model.set_read_noise(read_noise, seed=noise_seed)
        with replaying(model, config):
            report = early_exit_report(model, data, out_dir, val_seed=config.seed, **options)
    return {
        "model": config.model_name,
        "dataset": config.dataset,
        "chip": chip_name(config, model),
        "read_noise": read_noise,
        "out_dir": str(out_dir),
        **report,
    }


def bench_energy(
    run_dir: str | Path,
    out_dir: str | Path,
    analog: AnalogMacro,
    baseline: DigitalAccelerator,
    early_exit: dict[str, Any] | None,
    batch_size: int = 128,
    limit: int | None = None,
    force: bool = False,
    progress: bool = True,
    periphery: ReadPathConfig | None = None,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Count the run's test split, write ``energy.json``, ``energy.md`` and ``energy.png``
    to ``out_dir`` and return the report (``early_exit=None`` leaves out that row);
    ``periphery``: counted on that periphery (default: the run's own); ``device``: where
    the network runs and the counts accumulate (default cpu; the counts are the same)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise PrimeError(f"batch size must be a whole number >= 1, got {batch_size!r}")
    with exclusive(out_dir):  # before any work: an unwritable folder fails at once
        outputs = report_paths(out_dir)
        existing = [str(p) for p in outputs if p.exists()]
        if existing and not force:
            raise PrimeError(f"{', '.join(existing)} exist; pass --force to overwrite or use --out")
        model, payload = load_run(run_dir, device)
        model, config, data = prepare_loaded(model, payload, periphery=periphery)
        test = limit_dataset(data.test, limit)
        with replaying(model, config):  # a run trained on a trace is counted on it
            counted = energy_report(model, test, analog, baseline, early_exit, batch_size, progress)
        report: dict[str, Any] = {
            "run": str(run_dir),
            "model": config.model_name,
            "dataset": config.dataset,
            "chip": chip_name(config, model),
            "periphery": config.read_path,
        }
        report.update(counted)
        report["programming"] = training_programming(payload)
        write_energy_report(report, out_dir)
    return report


def chip_name(config: TrainConfig, model: SpikingNetwork) -> str:
    """The chip a run is evaluated on: its trace (replay and pruned modes) or its chip seed."""
    if config.trace:
        return f"trace {config.trace} ({config.replay} replay, pruned {config.pruned})"
    return f"chip seed {model.config.chip_seed}"


def neurobench_run(
    run_dir: str | Path,
    limit: int | None = None,
    batch_size: int = 64,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """NeuroBench's harness on a run's test split (its trace bound, as trained) beside the
    same figures from prime's counters (:mod:`prime.interop.neurobench`), on ``device``
    (default cpu; NeuroBench's ``Benchmark.run(device=)`` moves the batches there)."""
    # the trace and the data checked as for eval
    model, config, data = prepare_run(run_dir, device=device)
    test = limit_dataset(data.test, limit)
    loader = DataLoader(test, batch_size=batch_size)
    with replaying(model, config):
        figures = {"neurobench": run_neurobench(model, loader)}
        figures["prime"] = prime_figures(model, loader)
    samples = dataset_len(test)
    return {"model": config.model_name, "dataset": config.dataset, "samples": samples, **figures}


def training_programming(payload: dict[str, Any]) -> dict[str, Any] | None:
    """The set/reset pulses training cost the chip (one per mask switch: a switch resets or
    sets the pair's positive cell, the pruning paper's convention), their energy and time
    (:data:`prime.hardware.programming.PULSE_COSTS` ``rram-40nm``); None for runs that
    counted none."""
    switches = payload.get("switches")
    if not switches or not switches["counts"]:
        return None
    costs = PULSE_COSTS.get("rram-40nm")
    total = int(sum(int(c.sum()) for c in switches["counts"]))
    initial = sum(switches["initial"] or [])
    return {
        "steps": switches["steps"],
        "switches": total,
        "initial_pruning": initial,
        "reprogrammed": total - initial,
        "costs": dataclasses.asdict(costs),
        **costs.cost(total, 0),
    }
