"""``prime reproduce nmnist``: PRIME's N-MNIST claims checked on real recordings, one report.

Everything lands in one output folder::

    run/                       prime's own nmnist-conv, trained from scratch (prime train)
    early-exit/<model>/<policy>-min<k>/   θ calibrated on validation, applied to test
    read-noise/<model>/        accuracy under multiplicative read noise, several repeats
    energy/                    prime bench energy of the run (with the chosen early exit)
    early_exit_tradeoff.png    test accuracy against mean timesteps, every policy
    reproduce.json             every number of the report
    report.md                  the report: data, results, "paper claim | prime | authors"

``<model>`` is ``prime`` (the run) or ``authors`` (the PRIME authors' checkpoint, when
given). Both are measured on the same test split. The split is stratified and depends only
on the labels and ``split_seed``; a folder with ``Test/`` keeps it as the test split.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import ConcatDataset, Dataset

from prime.core.device import resolve_device
from prime.core.errors import PrimeError
from prime.core.io import atomic_write, load_checkpoint, write_json
from prime.core.lock import exclusive
from prime.core.tables import new_figure, save_figure
from prime.data import DataSplits, dataset_len
from prime.data.nmnist import load_nmnist
from prime.inference.early_exit import early_exit_report, sweep_thresholds
from prime.inference.evaluate import evaluate
from prime.inference.robustness import read_noise_sweep, summarize, write_report
from prime.snn.network import SpikingNetwork

#: recordings of the full N-MNIST release (Orchard et al. 2015)
FULL_NMNIST = {"train": 60_000, "test": 10_000}
#: epoch rule: about this many training samples seen in all, within [1, MAX_EPOCHS] epochs
SAMPLES_SEEN = 48_000
MAX_EPOCHS = 150
#: additions to the reference recipe for small data (prime.data.augment, prime.runs.train):
#: recordings moved as a whole, and the per-step loss that trains the early steps
RECIPE_AUGMENT: dict[str, Any] = {"shift_px": 3, "rotate_deg": 12.0, "zoom": 0.1}
EXIT_LOSS = 0.5
#: the paper's early-exit claim: computational load saved (within --target-drop of accuracy)
PAPER_LOAD_SAVED = 0.77
#: the PRIME paper's policy (max softmax, α = 2) at the thresholds of its reference code
PAPER_THRESHOLDS = (0.8, 0.5, 0.3, 0.2)
TIMESTEPS = 10  # T of PRIME's N-MNIST network
#: what the report keeps of each early-exit setting (prime.inference.early_exit.early_exit_report)
EXIT_KEYS = (
    "policy",
    "threshold",
    "min_steps",
    "alpha",
    "accuracy",
    "full_accuracy",
    "mean_steps",
    "load_saved",
)
REPORT_FILES = ("report.md", "reproduce.json", "early_exit_tradeoff.png")


@dataclass
class ReproduceConfig:
    """One reproduction: data, optional authors' checkpoint, training recipe, studies."""

    data: Path  # N-MNIST folder (holding Train/ and/or Test/), or its Train/ or Test/
    out: Path = Path("runs/reproduce-nmnist")
    reference_checkpoint: Path | None = None
    epochs: int | None = None  # None: the epoch rule (epochs_for)
    batch_size: int = 16
    lr: float = 1e-3
    augment: dict[str, Any] = field(default_factory=lambda: dict(RECIPE_AUGMENT))
    exit_loss: float = EXIT_LOSS
    seed: int = 0
    split_seed: int = 0
    test_fraction: float = 0.2
    val_fraction: float = 0.2
    target_drop_pp: float = 1.0
    policies: tuple[str, ...] = ("prime", "margin", "entropy")
    min_steps: tuple[int, ...] = (1, 2)
    noise_levels: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1)
    repeats: int = 3
    data_root: Path | None = None  # where the frame cache goes (default: $PRIME_DATA)
    energy: bool = True
    force: bool = False
    resume: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        """Reject bad settings before hours of training, not after."""
        if not isinstance(self.repeats, int) or self.repeats < 1:
            raise PrimeError(f"--repeats must be a whole number >= 1, got {self.repeats!r}")
        if not 0 <= self.target_drop_pp < math.inf:
            raise PrimeError(f"--target-drop must be >= 0 points, got {self.target_drop_pp!r}")
        if not self.min_steps or not all(1 <= m <= TIMESTEPS for m in self.min_steps):
            raise PrimeError(f"--min-steps must be from 1 to T = {TIMESTEPS}, got {self.min_steps}")


def epochs_for(train_samples: int) -> int:
    """The epoch rule: ceil(SAMPLES_SEEN / training samples), within [1, MAX_EPOCHS]."""
    return max(1, min(MAX_EPOCHS, math.ceil(SAMPLES_SEEN / max(train_samples, 1))))


def nmnist_folder(path: str | Path) -> Path:
    """The folder holding ``Train/`` and/or ``Test/``: ``path`` itself, its ``NMNIST/``, or,
    for a ``Train``/``Test`` folder, its parent."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise PrimeError(f"no such folder: {path}; pass the N-MNIST folder (tonic's layout)")
    for folder in (path, path / "NMNIST", path.parent):
        if any((folder / split).is_dir() for split in ("Train", "Test")):
            if folder == path.parent and path.name not in ("Train", "Test"):
                continue
            return folder
    raise PrimeError(
        f"{path} holds no N-MNIST recordings: expected Train/<digit>/<id>.bin and/or "
        "Test/<digit>/<id>.bin (tonic's layout), e.g. ../shared/reference/nmnist"
    )


def load_splits(config: ReproduceConfig, split_mode: str) -> DataSplits:
    """Train/validation/test frames (T = 10) of the data, binned by time or by events."""
    return load_nmnist(TIMESTEPS, **_data_options(config, split_mode))


def _data_options(config: ReproduceConfig, split_mode: str = "time") -> dict[str, Any]:
    options = {
        "split_mode": split_mode,
        "data_path": str(nmnist_folder(config.data).resolve()),
        "test_fraction": config.test_fraction,
        "val_fraction": config.val_fraction,
        "split_seed": config.split_seed,
    }
    if config.data_root is not None:
        options["data_root"] = str(config.data_root)
    return options


def describe_data(config: ReproduceConfig, data: DataSplits) -> dict[str, Any]:
    """Where the data came from, split counts, and whether it is the full N-MNIST."""
    folder = nmnist_folder(config.data)
    on_disk = {s: sum(1 for _ in (folder / s).glob("*/*.bin")) for s in ("Train", "Test")}
    full = on_disk["Train"] >= FULL_NMNIST["train"] and on_disk["Test"] >= FULL_NMNIST["test"]
    return {
        "folder": str(folder),
        "recordings": on_disk,
        "subset": not full,
        "test_from": "Test/" if on_disk["Test"] else "Train/ (split off)",
        "splits": {
            "train": dataset_len(data.train),
            "val": dataset_len(_val(data)),
            "test": dataset_len(data.test),
        },
        "split_seed": config.split_seed,
        "test_fraction": config.test_fraction,
        "val_fraction": config.val_fraction,
    }


def reproduce(config: ReproduceConfig, device: str | torch.device | None = None) -> dict[str, Any]:
    """Run every step, write the report files to ``config.out`` and return the results;
    the folder's write lock (:func:`prime.core.lock.exclusive`) is held meanwhile.
    ``device``: where the networks train and run (default cpu; the chips, splits and noise
    are the CPU's draws, so the results are those of any device)."""
    device = resolve_device(device)  # a device this machine lacks fails before any work
    with exclusive(config.out):
        return _reproduce(config, device)


def _reproduce(config: ReproduceConfig, device: torch.device) -> dict[str, Any]:
    started = time.perf_counter()
    out = Path(config.out)
    _check_out(out, config)
    models: dict[str, SpikingNetwork] = {}
    if config.reference_checkpoint is not None:
        from prime.snn.reference import load_prime_reference

        authors = load_prime_reference(config.reference_checkpoint, TIMESTEPS)
        models["authors"] = authors.to(device)
    data = {"time": load_splits(config, "time")}
    if data["time"].val is None:
        raise PrimeError("the reproduction needs a validation split: --val-fraction > 0")
    results: dict[str, Any] = {"data": describe_data(config, data["time"]), "models": {}}
    if "authors" in models:
        data["events"] = load_splits(config, "events")
        results["models"]["authors"] = {
            "checkpoint": str(config.reference_checkpoint),
            "kept_fraction": models["authors"].kept_fraction(),
            **_accuracy_both_binnings(models["authors"], data, config),
            "paper_thresholds": _paper_thresholds(models["authors"], data["time"]),
        }
    models["prime"], results["models"]["prime"] = _train_own(config, data["time"], out, device)
    for name, model in models.items():
        entry = results["models"][name]
        entry["early_exit"] = _early_exit(model, data["time"], out / "early-exit" / name, config)
        entry["read_noise"] = _read_noise(model, data["time"], out / "read-noise" / name, config)
    if config.energy:
        best = results["models"]["prime"]["early_exit"]["best"]
        results["energy"] = _energy(out, best, config, device)
    results["wall_seconds"] = time.perf_counter() - started
    results["config"] = {
        k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()
    }
    results["platform"] = platform.platform()
    results["resumed"] = config.resume
    results["goals"] = goals(results)
    plot_tradeoff(out / "early_exit_tradeoff.png", results)
    write_json(out / "reproduce.json", results)
    atomic_write(out / "report.md", lambda tmp: tmp.write_text(format_report(results)))
    return results


def _check_out(out: Path, config: ReproduceConfig) -> None:
    """Refuse to overwrite an earlier reproduction unless --force (start over) or --resume."""
    earlier = [p for p in (*REPORT_FILES, "run/checkpoint.pt") if (out / p).exists()]
    if earlier and not (config.force or config.resume):
        raise PrimeError(
            f"{out} holds an earlier reproduction ({', '.join(earlier)}); pass --resume to "
            "continue or reuse its training run, --force to start over, or choose another --out"
        )
    if config.force and not config.resume and (out / "run").exists():
        shutil.rmtree(out / "run")


def _val(data: DataSplits) -> Dataset:
    """The validation split, which the reproduction always asks for (val_fraction > 0)."""
    if data.val is None:
        raise PrimeError("the reproduction needs a validation split: use --val-fraction > 0")
    return data.val


def _accuracy_both_binnings(
    model: SpikingNetwork, data: dict[str, DataSplits], config: ReproduceConfig
) -> dict[str, Any]:
    """Test-split and all-recordings accuracy with time- and event-count-binned frames."""
    result: dict[str, Any] = {}
    for mode, splits in data.items():
        everything: ConcatDataset = ConcatDataset([splits.train, _val(splits), splits.test])
        result[f"{mode}_bins"] = {
            "test_accuracy": evaluate(model, splits.test, progress=config.progress)["accuracy"],
            "all_accuracy": evaluate(model, everything, progress=config.progress)["accuracy"],
            "all_samples": len(everything),
        }
    result["test_accuracy"] = result["time_bins"]["test_accuracy"]
    return result


def _paper_thresholds(model: SpikingNetwork, data: DataSplits) -> list[dict[str, Any]]:
    """PRIME's own rule (max softmax, α = 2, min 1 step) at the reference code's θ, on test."""
    rows = sweep_thresholds(model, data.test, PAPER_THRESHOLDS, "prime")
    return [{k: r[k] for k in ("threshold", "accuracy", "mean_steps", "load_saved")} for r in rows]


def _train_own(
    config: ReproduceConfig, data: DataSplits, out: Path, device: torch.device
) -> tuple[SpikingNetwork, dict[str, Any]]:
    """nmnist-conv trained from scratch on the training split (the reference recipe), on
    ``device``, and loaded there."""
    from prime.runs.config import TrainConfig
    from prime.runs.rundir import load_run
    from prime.runs.train import train

    run_dir = out / "run"
    epochs = epochs_for(dataset_len(data.train)) if config.epochs is None else config.epochs
    train_config = TrainConfig(
        dataset="nmnist",
        model="nmnist-conv",
        epochs=epochs,
        batch_size=config.batch_size,
        lr=config.lr,
        seed=config.seed,
        keep=0.5,
        data=_data_options(config),
        augment=config.augment,
        exit_loss=config.exit_loss,
    )
    resume = config.resume and (run_dir / "checkpoint.pt").exists()
    if resume:
        _check_same_data(run_dir, train_config.data)
    metrics = train(
        None if resume else train_config, run_dir, resume, config.progress, device=device
    )
    model, _ = load_run(run_dir, device)
    return model, {
        "run": str(run_dir),
        "epochs": metrics["epochs"],
        "epoch_rule": config.epochs is None,
        "batch_size": metrics["config"]["batch_size"],
        "lr": metrics["config"]["lr"],
        "augment": metrics["config"].get("augment", {}),
        "exit_loss": metrics["config"].get("exit_loss", 0.0),
        "kept_fraction": metrics["kept_fraction"],
        "conductances_unchanged": metrics["conductances_unchanged"],
        "train_seconds": metrics["wall_seconds"],
        "history": metrics["history"],
        "test_accuracy": evaluate(model, data.test)["accuracy"],
    }


def _check_same_data(run_dir: Path, data: dict[str, Any]) -> None:
    """A run to resume must have been trained on the same recordings and split."""
    trained = dict(load_checkpoint(run_dir / "checkpoint.pt")["train_config"]["data"])
    ours = dict(data)
    for options in (trained, ours):
        options["data_path"] = str(Path(options["data_path"]).resolve())
    if trained != ours:
        raise PrimeError(
            f"{run_dir} was trained on other data or another split ({trained}); "
            "pass --force to start over or choose another --out"
        )


def _early_exit(
    model: SpikingNetwork, data: DataSplits, out: Path, config: ReproduceConfig
) -> dict[str, Any]:
    """Every policy and min-steps setting, calibrated on validation for the target drop and
    applied to test; ``best`` is the one with the fewest validation steps."""
    runs = []
    for policy in config.policies:
        for min_steps in config.min_steps:
            folder = out / f"{policy}-min{min_steps}"
            report = early_exit_report(
                model,
                data,
                folder,
                policy=policy,
                target_drop_pp=config.target_drop_pp,
                min_steps=min_steps,
                progress=config.progress,
            )
            runs.append(
                {
                    **{k: report[k] for k in EXIT_KEYS},
                    "drop_pp": 100 * (report["full_accuracy"] - report["accuracy"]),
                    "validation": report["calibration"],
                    "folder": str(folder),
                    "sweep": [(r["mean_steps"], r["accuracy"]) for r in report["sweep"]],
                }
            )
    best = min(runs, key=lambda r: (r["validation"]["mean_steps"], -r["validation"]["accuracy"]))
    return {
        "target_drop_pp": config.target_drop_pp,
        "runs": runs,
        "best": best,
        "test_bound": _test_bound(runs, config.target_drop_pp),
    }


def _test_bound(runs: list[dict[str, Any]], target_drop_pp: float) -> dict[str, Any]:
    """The fewest mean steps within the target drop with θ picked on the test sweep itself:
    a bound on what any calibration could reach, not a result."""
    steps, accuracy, run = min(
        (
            (steps, accuracy, r)
            for r in runs
            for steps, accuracy in r["sweep"]
            if 100 * (r["full_accuracy"] - accuracy) <= target_drop_pp + 1e-9
        ),
        key=lambda c: (c[0], -c[1]),
    )
    return {
        "policy": run["policy"],
        "min_steps": run["min_steps"],
        "mean_steps": steps,
        "accuracy": accuracy,
        "load_saved": 1 - steps / TIMESTEPS,
    }


def _read_noise(
    model: SpikingNetwork, data: DataSplits, out: Path, config: ReproduceConfig
) -> list[dict[str, Any]]:
    """Test accuracy per read-noise level (mean, std, min, max over the repeats)."""
    rows = read_noise_sweep(model, data.test, config.noise_levels, config.repeats, config.seed)
    write_report(out, rows, f"{out.name}: N-MNIST test split")
    return summarize(rows)


def _energy(
    out: Path, early_exit: dict[str, Any], config: ReproduceConfig, device: torch.device
) -> dict[str, Any]:
    """``prime bench energy`` of the run with its chosen early exit; the report's rows."""
    from prime.analysis.energy.models import AnalogMacro, DigitalAccelerator, energy_model_of_kind
    from prime.runs.evaluation import bench_energy

    report = bench_energy(
        out / "run",
        out / "energy",
        energy_model_of_kind("rram-macro", AnalogMacro),
        energy_model_of_kind("digital-45nm-fp32", DigitalAccelerator),
        {k: early_exit[k] for k in ("policy", "threshold", "min_steps")},
        force=True,
        progress=config.progress,
        device=device,
    )
    return {"folder": str(out / "energy"), "rows": report["rows"]}


def goals(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's goals on this data: accuracy gap to the authors, best early exit."""
    own = results["models"]["prime"]
    best = own["early_exit"]["best"]
    goal = {
        "early_exit_load_saved": best["load_saved"],
        "early_exit_drop_pp": best["drop_pp"],
        "early_exit_met": best["load_saved"] >= PAPER_LOAD_SAVED
        and best["drop_pp"] <= best["validation"]["target_drop_pp"] + 1e-9,
    }
    authors = results["models"].get("authors")
    if authors is not None:
        gap = 100 * (authors["test_accuracy"] - own["test_accuracy"])
        goal.update(accuracy_gap_pp=gap, accuracy_met=gap <= 2.0)
    return goal


def plot_tradeoff(path: Path, results: dict[str, Any]) -> None:
    """Test accuracy (%) against mean timesteps for every model, policy and min steps."""
    fig, ax = new_figure(7, 4.5)
    for name, entry in results["models"].items():
        for run in entry["early_exit"]["runs"]:
            steps, accuracy = zip(*run["sweep"], strict=True)
            label = f"{name} model, {run['policy']} policy, min {run['min_steps']}"
            style = "-" if name == "prime" else "--"
            ax.plot(steps, [100 * a for a in accuracy], style, lw=1, label=label)
        best = entry["early_exit"]["best"]
        ax.plot(best["mean_steps"], 100 * best["accuracy"], "k*", ms=10)
    ax.axvline(TIMESTEPS * (1 - PAPER_LOAD_SAVED), color="gray", ls=":", label="77 % load saved")
    ax.set(
        xlabel="mean timesteps (of T = 10)",
        ylabel="test accuracy (%)",
        title="early exit on the N-MNIST test split (★ calibrated choice)",
        ylim=(max(0, ax.get_ylim()[0]), 100.5),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    save_figure(fig, path)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f} %"


def _accuracy_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not given"
    return f"{_pct(entry['test_accuracy'])}, kept {entry['kept_fraction']:.3f} of the edges"


def _exit_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not given"
    b = entry["early_exit"]["best"]
    return (
        f"{100 * b['load_saved']:.1f} % saved ({b['mean_steps']:.2f} steps), "
        f"{b['drop_pp']:+.2f} pt drop ({b['policy']}, min {b['min_steps']}, θ {b['threshold']:g})"
    )


def _noise_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "not given"
    rows = entry["read_noise"]
    return ", ".join(
        f"σ {r['read_noise']:g}: {100 * r['accuracy_mean']:.1f}±{100 * r['accuracy_std']:.1f}"
        for r in rows
    )


def format_report(results: dict[str, Any]) -> str:
    """The Markdown report."""
    d, own = results["data"], results["models"]["prime"]
    authors = results["models"].get("authors")
    n = d["splits"]
    kind = "a SUBSET of N-MNIST" if d["subset"] else "the full N-MNIST release"
    lines = [
        "# PRIME on N-MNIST: reproduction on real recordings",
        "",
        f"Data: {kind}, {d['recordings']['Train']:,} Train/ and {d['recordings']['Test']:,} "
        f"Test/ recordings in `{d['folder']}`. Splits (stratified, split seed "
        f"{d['split_seed']}): **{n['train']} train / {n['val']} validation / {n['test']} test** "
        f"recordings; test from {d['test_from']}. Frames: T = 10, tonic `ToFrame` event counts.",
        "",
        "## Paper claims",
        "",
        "| paper claim | prime (this data) | authors' checkpoint (this data) |",
        "|---|---|---|",
        "| N-MNIST accuracy comparable to software, 50 % of edges pruned "
        f"| {_accuracy_cell(own)} | {_accuracy_cell(authors)} |",
        f"| early exit saves 77 % of the load (≤ {own['early_exit']['target_drop_pp']:g} pt "
        f"drop) | {_exit_cell(own)} | {_exit_cell(authors)} |",
        f"| robust to stochastic synaptic (read) noise | {_noise_cell(own)} "
        f"| {_noise_cell(authors)} |",
        "",
        "Accuracies on the test split; read noise: test accuracy (%) mean±std over repeats.",
        "",
        "## Goals",
        "",
    ]
    g = results["goals"]
    if "accuracy_gap_pp" in g:
        lines.append(
            f"- prime at most 2 points below the authors' checkpoint: gap "
            f"{g['accuracy_gap_pp']:+.2f} pt, **{'met' if g['accuracy_met'] else 'NOT met'}**"
        )
    lines += [
        f"- early exit ≥ 77 % load saved (≤ 2.3 mean steps) at ≤ "
        f"{own['early_exit']['target_drop_pp']:g} pt drop on test: "
        f"{100 * g['early_exit_load_saved']:.1f} % saved, {g['early_exit_drop_pp']:+.2f} pt, "
        f"**{'met' if g['early_exit_met'] else 'NOT met'}**",
        "",
    ]
    if authors is not None:
        lines += _authors_section(authors)
    lines += _own_section(own)
    for name, entry in results["models"].items():
        lines += _early_exit_section(name, entry["early_exit"])
    lines += _noise_section(results["models"])
    if "energy" in results:
        lines += _energy_section(results["energy"])
    resumed = " (resumed: training time is in the run's section)" if results["resumed"] else ""
    lines += [
        f"Wall time of this command: {results['wall_seconds']:.0f} s{resumed} on "
        f"{results['platform']}.",
        "",
    ]
    return "\n".join(lines)


def _authors_section(authors: dict[str, Any]) -> list[str]:
    t, e = authors["time_bins"], authors["events_bins"]
    return [
        "## Authors' checkpoint",
        "",
        f"`{authors['checkpoint']}`, T = 10. It was trained on the full N-MNIST training set, "
        "so on recordings taken from Train/ its accuracy is not a held-out score.",
        "",
        "| frames | test split | all recordings |",
        "|---|---|---|",
        f"| time bins | {_pct(t['test_accuracy'])} | {_pct(t['all_accuracy'])} "
        f"({t['all_samples']}) |",
        f"| event-count bins | {_pct(e['test_accuracy'])} | {_pct(e['all_accuracy'])} "
        f"({e['all_samples']}) |",
        "",
        "PRIME's early-exit rule (max softmax, α = 2, test split, time bins):",
        "",
        "| θ | accuracy | mean steps | load saved |",
        "|---|---|---|---|",
        *(
            f"| {r['threshold']:g} | {_pct(r['accuracy'])} | {r['mean_steps']:.2f} "
            f"| {100 * r['load_saved']:.1f} % |"
            for r in authors["paper_thresholds"]
        ),
        "",
    ]


def _own_section(own: dict[str, Any]) -> list[str]:
    rule = f"epoch rule ceil({SAMPLES_SEEN:,} / train samples), at most {MAX_EPOCHS}"
    return [
        "## prime's own run",
        "",
        f"`nmnist-conv` trained from scratch in `{own['run']}`: Adam lr {own['lr']:g}, cosine "
        f"schedule, batch {own['batch_size']}, 50 % kept per layer, epochs: {own['epochs']} "
        f"({rule if own['epoch_rule'] else 'set by --epochs'}); {own['train_seconds']:.0f} s. "
        f"Kept fraction {own['kept_fraction']:.4f}; conductances unchanged by training: "
        f"{own['conductances_unchanged']}. Test accuracy **{_pct(own['test_accuracy'])}**.",
        "",
        f"Additions to the reference recipe: {_additions(own)}.",
        "",
        "| epoch | train acc | test acc |",
        "|---|---|---|",
        *(
            f"| {h['epoch']} | {_pct(h['train_accuracy'])} | {_pct(h['test_accuracy'])} |"
            for h in own["history"]
        ),
        "",
    ]


def _additions(own: dict[str, Any]) -> str:
    """The recipe's additions in words (augmentation, exit loss), or "none"."""
    names = {
        "shift_px": "shifts up to {} px",
        "rotate_deg": "rotations up to {}°",
        "zoom": "scale 1 ± {}",
    }
    moves = [names[k].format(v) for k, v in own.get("augment", {}).items() if v]
    parts = [f"every training recording moved at random ({', '.join(moves)})"] if moves else []
    if own.get("exit_loss"):
        parts.append(
            f"per-step loss weight {own['exit_loss']:g} (the running mean output after every "
            "step is trained too, for early exit)"
        )
    return "; ".join(parts) or "none (the plain reference recipe)"


def _early_exit_section(name: str, early_exit: dict[str, Any]) -> list[str]:
    bound = early_exit["test_bound"]
    return [
        f"## Early exit: {name}",
        "",
        f"θ calibrated on the validation split for at most {early_exit['target_drop_pp']:g} "
        "point accuracy drop, then applied to the test split (the controller retires "
        "confident samples and computes only the rest). Trade-off curves: "
        "`early_exit_tradeoff.png` and each folder's `accuracy_vs_steps.png`.",
        "",
        "| policy | min steps | θ | val steps | test accuracy | full T | drop | mean steps "
        "| load saved |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['policy']} | {r['min_steps']} | {r['threshold']:g} "
            f"| {r['validation']['mean_steps']:.2f} | {_pct(r['accuracy'])} "
            f"| {_pct(r['full_accuracy'])} | {r['drop_pp']:+.2f} pt | {r['mean_steps']:.2f} "
            f"| {100 * r['load_saved']:.1f} %{' ★' if r is early_exit['best'] else ''} |"
            for r in early_exit["runs"]
        ),
        "",
        "★ the calibrated choice (fewest validation steps). With θ picked on the test sweep "
        f"itself (a bound, not a result), the fewest mean steps within "
        f"{early_exit['target_drop_pp']:g} pt are {bound['mean_steps']:.2f} "
        f"({100 * bound['load_saved']:.1f} % saved, {_pct(bound['accuracy'])}; "
        f"{bound['policy']}, min {bound['min_steps']}).",
        "",
    ]


def _noise_section(models: dict[str, Any]) -> list[str]:
    lines = [
        "## Read noise",
        "",
        "Multiplicative noise σ on every conductance read (fresh per forward pass); test split.",
        "",
        "| model | σ | repeats | accuracy mean | std | min | max |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in models.items():
        lines += [
            f"| {name} | {r['read_noise']:g} | {r['repeats']} | {_pct(r['accuracy_mean'])} "
            f"| {100 * r['accuracy_std']:.2f} | {_pct(r['accuracy_min'])} "
            f"| {_pct(r['accuracy_max'])} |"
            for r in entry["read_noise"]
        ]
    return [*lines, ""]


def _energy_section(energy: dict[str, Any]) -> list[str]:
    return [
        "## Energy (prime bench energy of the run)",
        "",
        "| configuration | energy (nJ) | steps | accuracy | × energy efficiency "
        "| synaptic ops saved vs digital dense |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['name']} | {r['energy_pj'] / 1e3:.4g} | {r['steps_per_sample']:.2f} "
            f"| {_pct(r['accuracy'])} | {r['energy_efficiency_x']:.3g} "
            f"| {r['load_saved_pct']:.1f} % |"
            for r in energy["rows"]
        ),
        "",
        f"Details: `{energy['folder']}/energy.md`.",
        "",
    ]
