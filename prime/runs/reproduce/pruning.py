"""``prime reproduce pruning DATA``: "Pruning random resistive memory for optimizing analogue
AI" (Li et al., arXiv 2311.07164) checked on its own spoken-digit features (and on
FashionMNIST where its IDX files are given).

For every task and activation precision (full precision and the paper's bits) it trains:

* ``pruning``: the paper's model as a supermask over a random chip (edge-popup);
* ``pruning-hysteresis``: the same with the paper's mask-hysteresis schedule;
* ``weights``: the same architecture with plain trained weights, then programmed onto a chip
  that keeps every edge by write–verify (:mod:`prime.hardware.programming`) and evaluated
  through the same read path (``programmed``);
* ``pruning-replay`` (with a chip trace): pruning on the trace's reads with the paper's
  replay convention (``per-test-batch``: training on read 0, testing one read per batch).

It counts the mask switches of pruning (set/reset pulses) and the write pulses and verify
reads of programming, and their energy and time; and the inference energy of pruning and of
the programmed chip on an RRAM macro against the same model on a digital baseline (dense),
the comparison behind the paper's energy-efficiency claims (its gains come "thanks to
analogue in-memory computing"). Everything lands in one folder::

    runs/<task>-<bits>-<approach>/   each training run (prime train)
    accuracy.png, programming.png,   accuracy, programming energy and inference energy
    inference.png                    per approach
    reproduce.json, report.md        every number; the report, each goal met or not
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prime.analysis.energy.models import (
    AnalogMacro,
    DigitalAccelerator,
    Scenario,
    energy_model_of_kind,
)
from prime.analysis.energy.report import count_run
from prime.core.device import resolve_device
from prime.core.errors import PrimeError
from prime.core.io import atomic_write, write_json
from prime.core.tables import new_figure, save_figure
from prime.hardware.programming import PULSE_COSTS, WRITE_VERIFY
from prime.hardware.replay import PRUNED_MODES
from prime.inference.evaluate import evaluate
from prime.runs.config import TrainConfig
from prime.runs.rundir import load_data, load_run, run_config
from prime.runs.train import train
from prime.snn.config import WEIGHT_SIGNS
from prime.snn.models import build_model
from prime.snn.network import SpikingNetwork
from prime.snn.programmed import program_network

#: the paper's claims: accuracy gain of pruning over programmed weights (points) and the
#: energy-efficiency gains of its inference (abstract; the fraction of the digital
#: baseline's energy saved)
PAPER_GAIN_PP = {"spoken-digits": 19.9, "fashion-mnist": 17.3}
PAPER_ENERGY_GAIN = {"spoken-digits": 0.512, "fashion-mnist": 0.821}
#: task -> (model, activation bits of the paper's hardware run, hysteresis schedule)
TASKS = {
    "spoken-digits": ("spoken-digits-crnn", 3, "pruning-spoken-digits"),
    "fashion-mnist": ("fashion-cnn", 4, "pruning-fashion-mnist"),
}
APPROACHES = ("pruning", "pruning-hysteresis", "weights")
#: the approaches whose inference energy is counted (the trained weights run on a chip)
ON_CHIP = ("pruning", "pruning-hysteresis", "programmed")


@dataclass
class PruningReproduceConfig:
    """One reproduction: data, recipe, programming model."""

    data: Path  # folder of the spoken-digit features: train.npz and test.npz
    fashion_mnist: Path | None = None  # folder of FashionMNIST's IDX files (optional)
    out: Path = Path("runs/reproduce-pruning")
    epochs: int = 20
    batch_size: int = 30
    lr: float = 1e-2  # Adam, pruning (scores)
    weights_lr: float = 1e-3  # Adam, the trained-weights baseline
    seed: int = 0
    writer: str = "write-verify"  # prime.hardware.programming.WRITE_VERIFY
    costs: str = "rram-40nm"  # prime.hardware.programming.PULSE_COSTS
    trace: Path | None = None  # a chip trace: adds pruning-replay (per-test-batch)
    #: pruning-replay's conventions, the paper's by default: pruned pairs
    #: (prime.hardware.replay.PRUNED_MODES) and weight signs (ModelConfig.weight_sign)
    pruned: str = "reset-positive"
    weight_sign: str = "random-sign"
    analog: str = "rram-macro"  # energy model of the chip's inference (ENERGY_MODELS)
    digital: str = "gpu"  # energy model of the digital baseline (ENERGY_MODELS)
    limit_train: int | None = None
    force: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        WRITE_VERIFY.get(self.writer)
        PULSE_COSTS.get(self.costs)
        energy_model_of_kind(self.analog, AnalogMacro)
        energy_model_of_kind(self.digital, DigitalAccelerator)
        if self.pruned not in PRUNED_MODES:
            raise PrimeError(f"unknown --pruned {self.pruned!r}; known: {', '.join(PRUNED_MODES)}")
        if self.weight_sign not in WEIGHT_SIGNS:
            raise PrimeError(
                f"unknown --weight-sign {self.weight_sign!r}; known: {', '.join(WEIGHT_SIGNS)}"
            )
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise PrimeError(f"--{name.replace('_', '-')} must be a whole number >= 1")


def task_data(config: PruningReproduceConfig) -> dict[str, tuple[str, dict[str, Any]]]:
    """Task -> (dataset name, dataset options) for the data that is there."""
    folder = Path(config.data).expanduser()
    files = [folder / "train.npz", folder / "test.npz"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise PrimeError(
            f"no spoken-digit features: {', '.join(missing)} missing; pass the folder holding "
            "train.npz and test.npz (features [N, 23, 20], labels [N]), e.g. "
            "../shared/reference/spoken_digits"
        )
    tasks = {
        "spoken-digits": (
            "npz",
            {"data_path": str(files[0]), "test_path": str(files[1]), "encoding": "repeat"},
        )
    }
    if config.fashion_mnist is not None:
        tasks["fashion-mnist"] = ("fashion-mnist", {"data_path": str(config.fashion_mnist)})
    return tasks


def task_run_config(
    config: PruningReproduceConfig,
    task: str,
    dataset: str,
    options: dict[str, Any],
    bits: int | None,
    approach: str,
) -> TrainConfig:
    """The training run of one (task, bits, approach)."""
    model, _, schedule = TASKS[task]
    weights = approach == "weights"
    replay = approach == "pruning-replay"
    return TrainConfig(
        dataset=dataset,
        model=model,
        epochs=config.epochs,
        batch_size=config.batch_size,
        lr=config.weights_lr if weights else config.lr,
        seed=config.seed,
        scale="fan-in",
        timesteps=1,
        data=options,
        limit_train=config.limit_train,
        hysteresis=schedule if approach == "pruning-hysteresis" else "none",
        synapses="weights" if weights else "supermask",
        activation_bits=bits,
        trace=str(config.trace) if replay else None,
        replay="per-test-batch" if replay else "static",
        pruned=config.pruned if replay else "zero",
        weight_sign=config.weight_sign if replay else "pair",
    )


def reproduce_pruning(
    config: PruningReproduceConfig, device: str | torch.device | None = None
) -> dict[str, Any]:
    """Train, program and evaluate everything; write the report files to ``config.out``.
    ``device``: where the networks train, run and are counted (default cpu); the chips and
    the write-verify programming are drawn on the CPU, so the results are any device's."""
    started = time.perf_counter()
    device = resolve_device(device)  # a device this machine lacks fails before any work
    out = Path(config.out)
    tasks = task_data(config)
    if (out / "report.md").exists() and not config.force:
        raise PrimeError(f"{out} holds an earlier reproduction; pass --force or choose --out")
    costs = PULSE_COSTS.get(config.costs)
    analog = energy_model_of_kind(config.analog, AnalogMacro)
    digital = energy_model_of_kind(config.digital, DigitalAccelerator)
    approaches = APPROACHES + (("pruning-replay",) if config.trace is not None else ())
    results: dict[str, Any] = {"tasks": {}}
    for task, (dataset, options) in tasks.items():
        rows = []
        for bits in (None, TASKS[task][1]):
            row: dict[str, Any] = {"bits": bits}
            for approach in approaches:
                train_config = task_run_config(config, task, dataset, options, bits, approach)
                run_dir = out / "runs" / f"{task}-{bits or 'fp'}-{approach}"
                row[approach] = _trained(train_config, run_dir, config, device)
            chips = {a: load_run(row[a]["run"], device)[0] for a in ON_CHIP if a != "programmed"}
            row["programmed"], chips["programmed"] = _programmed(
                row["weights"]["run"], config, device
            )
            test = load_data(task_run_config(config, task, dataset, options, bits, "pruning")).test
            for approach, chip in chips.items():
                row[approach]["inference"] = inference_energy(chip, test, analog, digital)
            for approach in ("pruning", "pruning-hysteresis"):
                switches = row[approach]["switches"]
                # a switch resets or sets the pair's positive cell (the paper's convention)
                row[approach]["programming"] = costs.cost(switches["switches"], 0)
            row["programmed"]["programming"] = costs.cost(
                row["programmed"]["pulses"], row["programmed"]["verifies"]
            )
            row["gain_pp"] = 100 * (
                row["pruning"]["test_accuracy"] - row["programmed"]["test_accuracy"]
            )
            rows.append(row)
        results["tasks"][task] = {"dataset": dataset, "model": TASKS[task][0], "rows": rows}
    results["writer"] = dataclasses.asdict(WRITE_VERIFY.get(config.writer))
    results["costs"] = dataclasses.asdict(costs)
    results["energy_models"] = {
        "analog": dataclasses.asdict(analog),
        "digital": dataclasses.asdict(digital),
    }
    results["config"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
    }
    results["wall_seconds"] = time.perf_counter() - started
    results["platform"] = platform.platform()
    results["goals"] = goals(results)
    plot(out, results)
    write_json(out / "reproduce.json", results)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(format_report(results)))
    return results


def _trained(
    train_config: TrainConfig, run_dir: Path, config: PruningReproduceConfig, device: torch.device
) -> dict:
    """A finished run's metrics (trained now on ``device`` unless ``run_dir`` finished
    before)."""
    metrics_path = run_dir / "metrics.json"
    if metrics_path.is_file() and not config.force:
        metrics = json.loads(metrics_path.read_text())
    else:
        if config.force and (run_dir / "checkpoint.pt").exists():
            (run_dir / "checkpoint.pt").unlink()
        metrics = train(train_config, run_dir, progress=config.progress, device=device)
    keep = ("test_accuracy", "kept_fraction", "switches", "wall_seconds", "epochs")
    return {"run": str(run_dir), **{k: metrics[k] for k in keep}}


def _programmed(
    run_dir: str, config: PruningReproduceConfig, device: torch.device
) -> tuple[dict[str, Any], SpikingNetwork]:
    """The trained weights of ``run_dir`` programmed onto a chip keeping every edge (on the
    CPU: its write-verify draws are the CPU generator's) and evaluated on the test split
    through the same read path, on ``device``; the results and the chip there."""
    software, payload = load_run(run_dir)
    train_config = run_config(payload)
    chip_config = dataclasses.replace(software.config, synapses="supermask", keep=1.0)
    chip = build_model(chip_config).eval()
    writer = WRITE_VERIFY.get(config.writer)
    programming = program_network(
        chip, software, writer, torch.Generator().manual_seed(config.seed)
    )
    chip, software = chip.to(device), software.to(device)
    data = load_data(train_config)
    results = {
        "writer": config.writer,
        **programming,
        "test_accuracy": evaluate(chip, data.test)["accuracy"],
        "software_accuracy": evaluate(software, data.test)["accuracy"],
    }
    return results, chip


def inference_energy(
    chip: SpikingNetwork, test: Any, analog: AnalogMacro, digital: DigitalAccelerator
) -> dict[str, Any]:
    """Energy per inference of ``chip`` on ``test``, counted (:func:`count_run`): on the
    analog macro (the cells it conducts) and the same network on the digital baseline
    (every multiply-accumulate, dense); ``saving``: the baseline's energy saved."""
    counts, _ = count_run(chip, test)
    on_chip = Scenario("analog", analog, counts)
    baseline = Scenario("digital", digital, counts)
    return {
        "analog_pj": on_chip.energy_pj,
        "analog_breakdown_pj": on_chip.energy,
        "digital_pj": baseline.energy_pj,
        "saving": 1 - on_chip.energy_pj / baseline.energy_pj,
        "synaptic_ops": on_chip.synaptic_ops,
        "dense_ops": baseline.synaptic_ops,
    }


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each claim against its measurement, met or not."""
    rows = []
    for task, entry in results["tasks"].items():
        for row in entry["rows"]:
            label = f"{task}, {_bits(row['bits'])} activations"
            paper, paper_saving = PAPER_GAIN_PP[task], PAPER_ENERGY_GAIN[task]
            plain, held = row["pruning"], row["pruning-hysteresis"]
            energy, programmed_energy = plain["inference"], row["programmed"]["inference"]
            rows += [
                {
                    "goal": f"{label}: pruning beats programmed weights by {paper} pt (paper)",
                    "measured": f"{row['gain_pp']:+.2f} pt",
                    "met": row["gain_pp"] >= paper,
                },
                {
                    "goal": f"{label}: hysteresis lowers the mask switches",
                    "measured": f"{plain['switches']['switches']} -> "
                    f"{held['switches']['switches']} switches, accuracy "
                    f"{100 * (held['test_accuracy'] - plain['test_accuracy']):+.2f} pt",
                    "met": held["switches"]["switches"] < plain["switches"]["switches"],
                },
                {
                    "goal": f"{label}: pruning programs the chip with less energy than "
                    "write-verify of the trained weights",
                    "measured": f"{plain['programming']['energy_pj'] / 1e6:.3g} µJ vs "
                    f"{row['programmed']['programming']['energy_pj'] / 1e6:.3g} µJ",
                    "met": plain["programming"]["energy_pj"]
                    < row["programmed"]["programming"]["energy_pj"],
                },
                {
                    "goal": f"{label}: pruning's inference on the RRAM macro saves "
                    f"{100 * paper_saving:.1f} % of the digital baseline's energy (paper)",
                    "measured": f"{100 * energy['saving']:.1f} % ({energy['analog_pj'] / 1e3:.4g}"
                    f" vs {energy['digital_pj'] / 1e3:.4g} nJ per inference)",
                    "met": energy["saving"] >= paper_saving,
                },
                {
                    "goal": f"{label}: pruning's inference takes less energy than the "
                    "programmed chip's",
                    "measured": f"{energy['analog_pj'] / 1e3:.4g} vs "
                    f"{programmed_energy['analog_pj'] / 1e3:.4g} nJ per inference",
                    "met": energy["analog_pj"] < programmed_energy["analog_pj"],
                },
            ]
    return rows


def plot(out: Path, results: dict[str, Any]) -> None:
    """accuracy.png, programming.png and inference.png: one bar group per (task, bits)."""
    groups = [
        (f"{task}\n{row['bits'] or 'fp'}-bit", row)
        for task, entry in results["tasks"].items()
        for row in entry["rows"]
    ]
    replayed = all("pruning-replay" in row for _, row in groups)
    for name, value, ylabel, series in (
        (
            "accuracy.png",
            lambda r, s: 100 * r[s]["test_accuracy"],
            "test accuracy (%)",
            ON_CHIP + (("pruning-replay",) if replayed else ()),
        ),
        (
            "programming.png",
            lambda r, s: r[s]["programming"]["energy_pj"] / 1e6,
            "programming energy (µJ)",
            ON_CHIP,
        ),
        (
            "inference.png",
            lambda r, s: r[s]["inference"]["analog_pj"] / 1e3,
            "inference energy on the RRAM macro (nJ)",
            ON_CHIP,
        ),
    ):
        fig, ax = new_figure(1.8 + 1.6 * len(groups), 3.5)
        width = 0.8 / len(series)
        for i, s in enumerate(series):
            xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, [value(row, s) for _, row in groups], width, label=s)
        ax.set_xticks(range(len(groups)), [label for label, _ in groups])
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        save_figure(fig, out / name)


def _pct(value: float) -> str:
    return f"{100 * value:.2f} %"


def format_report(results: dict[str, Any]) -> str:
    """The Markdown report."""
    writer = results["writer"]
    lines = [
        "# Pruning random resistive memory: reproduction",
        "",
        "Li et al., arXiv 2311.07164. Models: the paper's (ReLU, one timestep), trained with "
        f"Adam ({results['config']['epochs']} epochs, batch {results['config']['batch_size']}), "
        "50 % of the edges kept per layer. Programmed weights: the same architecture trained "
        f"with plain weights, then written by write–verify (σ {writer['sigma_us']} µS per "
        f"pulse, tolerance {writer['tolerance_us']} µS, at most {writer['max_pulses']} pulses, "
        f"relaxation {writer['relaxation_us']} µS, window {writer['g_min_us']}-"
        f"{writer['g_max_us']} µS) onto a chip keeping every edge, evaluated through the "
        "same read path.",
        "",
        "## Goals",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
        *(
            f"| {g['goal']} | {g['measured']} | {'met' if g['met'] else '**NOT met**'} |"
            for g in results["goals"]
        ),
        "",
    ]
    trace = results["config"]["trace"]
    for task, entry in results["tasks"].items():
        replay = f" | + replayed reads ({trace})" if trace is not None else ""
        lines += [
            f"## {task} (`{entry['model']}`)",
            "",
            "| activations | pruning | + hysteresis | trained weights (software) "
            f"| programmed | gain (paper: {PAPER_GAIN_PP[task]} pt){replay} |",
            "|---|---|---|---|---|---|" + ("---|" if replay else ""),
        ]
        for row in entry["rows"]:
            replayed = row.get("pruning-replay")
            lines.append(
                f"| {_bits(row['bits'])} | {_pct(row['pruning']['test_accuracy'])} "
                f"| {_pct(row['pruning-hysteresis']['test_accuracy'])} "
                f"| {_pct(row['programmed']['software_accuracy'])} "
                f"| {_pct(row['programmed']['test_accuracy'])} | {row['gain_pp']:+.2f} pt |"
                + (f" {_pct(replayed['test_accuracy'])} |" if replayed else "")
            )
        lines += [
            "",
            "Programming the chip (pruning: one set/reset pulse per mask switch, the initial "
            "pruning included; programmed: every write pulse and verify read):",
            "",
            "| activations | approach | switches / pulses | verifies | energy (µJ) | time (ms) |",
            "|---|---|---|---|---|---|",
        ]
        for row in entry["rows"]:
            for approach in ("pruning", "pruning-hysteresis", "programmed"):
                cost = row[approach]["programming"]
                lines.append(
                    f"| {_bits(row['bits'])} | {approach} | {cost['pulses']:,} "
                    f"| {cost['verifies']:,} | {cost['energy_pj'] / 1e6:.4g} "
                    f"| {cost['time_ns'] / 1e6:.4g} |"
                )
        lines += [
            "",
            "Inference energy per sample, counted on the test split: the chip on the RRAM "
            "macro against the same network on the digital baseline (dense); the paper "
            f"claims {100 * PAPER_ENERGY_GAIN[task]:.1f} % saved:",
            "",
            "| activations | approach | synaptic ops | dense MACs | RRAM macro (nJ) "
            "| digital (nJ) | saved |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in entry["rows"]:
            for approach in ON_CHIP:
                energy = row[approach]["inference"]
                lines.append(
                    f"| {_bits(row['bits'])} | {approach} | {energy['synaptic_ops']:,.0f} "
                    f"| {energy['dense_ops']:,.0f} | {energy['analog_pj'] / 1e3:.4g} "
                    f"| {energy['digital_pj'] / 1e3:.4g} | {_pct(energy['saving'])} |"
                )
        lines.append("")
    costs, models = results["costs"], results["energy_models"]
    lines += [
        f"Pulse costs: {costs['description']}. Inference: {models['analog']['description']} "
        f"against {models['digital']['description']} (prime.analysis.energy.models).",
        "",
        f"Wall time: {results['wall_seconds']:.0f} s on {results['platform']}.",
        "",
    ]
    return "\n".join(lines)


def _bits(bits: int | None) -> str:
    return "full-precision" if bits is None else f"{bits}-bit"
