"""Training: learn only the supermask scores; the chip's conductances never change.

A run directory holds ``checkpoint.pt`` (scores, conductances, masks, optimizer, config,
seed, versions), ``metrics.json``, ``summary.md``, ``metrics.csv`` (one line per epoch) and
``training_curves.png`` (:mod:`prime.runs.training_log`); all written atomically. ``resume``
continues a killed run from its last checkpoint, bit for bit where it stopped: the data
order of every epoch is drawn from (seed, epoch).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, Subset

from prime.core.device import resolve_device
from prime.core.errors import PrimeError
from prime.core.io import atomic_write, file_sha256, save_checkpoint, write_json
from prime.core.lock import exclusive
from prime.core.progress import progress_bar
from prime.data import DataSplits, dataset_len, iterate_batches
from prime.data.augment import FrameAugmentation
from prime.hardware.replay import open_replay
from prime.inference.calibrate import calibrate_periphery
from prime.inference.evaluate import evaluate
from prime.runs.config import TrainConfig, model_config, resolve_paths, versions
from prime.runs.distributed import Ranks, all_sum, collectives, current, rank_device, shard
from prime.runs.rundir import (
    RESUME_KEYS,
    RUN_KEYS,
    SPLITS,
    changed_data,
    check_trace_unchanged,
    data_fingerprints,
    load_checkpoint,
    load_data,
    load_run_data,
    run_config,
)
from prime.runs.training_log import (
    plot_training_curves,
    write_epoch_log,
    write_tensorboard_epoch,
)
from prime.snn.layers import MATCHED, matched_scale
from prime.snn.models import build_model
from prime.snn.network import SpikingNetwork
from prime.snn.switching import SwitchCounter, hysteresis_schedule


def training_loss(outputs: torch.Tensor, labels: torch.Tensor, exit_loss: float) -> torch.Tensor:
    """Cross-entropy of the mean output over T (outputs [T, B, C], labels [B]).

    With ``exit_loss`` w > 0: (1 - w) times that plus w times the mean over t of the
    cross-entropy of the running mean output after step t, the quantity early exit reads
    (:mod:`prime.inference.early_exit`), so that the first steps are trained to be right as well.
    """
    loss = F.cross_entropy(outputs.mean(0), labels)
    if not exit_loss:
        return loss
    steps = torch.arange(1, len(outputs) + 1, dtype=outputs.dtype, device=outputs.device)
    steps = steps.view(-1, 1, 1)
    running = outputs.cumsum(0) / steps
    per_step = F.cross_entropy(running.flatten(0, 1), labels.repeat(len(outputs)))
    return (1 - exit_loss) * loss + exit_loss * per_step


def train(
    config: TrainConfig | None,
    out_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    ranks: Ranks | None = None,
    expect: dict[str, Any] | None = None,
    summaries: bool = True,
    device: str | torch.device | None = None,
) -> dict[str, Any]:
    """Train into ``out_dir`` and return the metrics.

    ``device`` (cpu, cuda, cuda:N; default cpu) runs the model and batches there; the chip and
    every seeded draw are those of the CPU (:mod:`prime.core.device`), and it is no part of
    the run's identity: a run trained on one device resumes on another.

    ``progress`` draws progress bars (on a terminal only, :mod:`prime.core.progress`);
    ``summaries`` prints one line per epoch (and where a resume starts).

    ``resume`` continues the run in ``out_dir`` with its own config (``config`` may be None);
    ``expect`` holds settings the caller asks for (TrainConfig fields, ``data.<option>``,
    ``augment.<option>``): one that differs from the run's is refused, never ignored.
    ``ranks`` (default: the joined process group, see :mod:`prime.runs.distributed`) trains data
    parallel: every rank builds the same chip and scores, takes its share of each global batch,
    and DistributedDataParallel averages the score gradients; rank 0 alone writes and prints,
    and holds the run directory's write lock (:func:`prime.core.lock.exclusive`) meanwhile.
    """
    ranks = current() if ranks is None else ranks
    with exclusive(out_dir) if ranks.is_main else contextlib.nullcontext():
        return _train(
            config,
            Path(out_dir),
            resume,
            progress,
            summaries,
            ranks,
            expect or {},
            rank_device(resolve_device(device)),
        )


def _train(
    config: TrainConfig | None,
    out_dir: Path,
    resume: bool,
    progress: bool,
    summaries: bool,
    ranks: Ranks,
    expect: dict[str, Any],
    device: torch.device,
) -> dict[str, Any]:
    checkpoint_path = out_dir / "checkpoint.pt"
    if resume:
        if not checkpoint_path.is_file():
            raise PrimeError(f"nothing to resume: {checkpoint_path} does not exist")
        payload = load_checkpoint(checkpoint_path, RUN_KEYS + RESUME_KEYS)
        config = run_config(payload)
        check_resume_settings(config, expect, out_dir)
        check_trace_unchanged(config, payload)
    elif config is None:
        raise PrimeError("a new run needs a TrainConfig")
    elif checkpoint_path.exists():
        raise PrimeError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    else:
        config = resolve_paths(config)
    fingerprints: dict[str, Any] = (
        {"trace_sha256": file_sha256(config.trace)} if config.trace else {}
    )
    torch.manual_seed(config.seed)
    data = load_run_data(config) if resume else load_data(config)
    if resume and (changed := changed_data(payload, data, SPLITS)):
        raise PrimeError(
            f"the {' and '.join(changed)} data of {config.dataset} changed since {out_dir} was "
            "trained (the files differ): restore them, or train a new run on the new data"
        )
    fingerprints["data_sha256"] = data_fingerprints(data)
    model = build_model(model_config(config)).to(device)
    _check_data_fits(model, data, config)
    faults = config.stuck_cells
    if faults.active and not resume:  # known faults, learned around (a resume loads them)
        model.load_conductances(faults.apply([m.g_us for m in model.memristor_layers()]))
    augment = FrameAugmentation.from_config(config.augment)
    if augment.active and data.train[0][0].dim() != 4:
        raise PrimeError(
            f"frame augmentation moves image frames [T, C, H, W]; {config.dataset} samples "
            f"are {tuple(data.train[0][0].shape)}: drop --shift-px/--rotate-deg/--zoom"
        )
    _check_shards(dataset_len(data.train), config.batch_size, ranks)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    steps_per_epoch = math.ceil(dataset_len(data.train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=config.epochs * steps_per_epoch
    )
    state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "history": [], "wall_seconds": 0.0}
    schedule = hysteresis_schedule(config.hysteresis)
    if schedule.start > 0 and config.mask_scope != "layer":
        raise PrimeError("mask hysteresis works per layer: use --mask-scope layer")
    # per-layer masks are what the chip programs; a global top-k is not counted
    switches = SwitchCounter(model.memristor_layers() if config.mask_scope == "layer" else [])
    if resume:
        model.load_state_dict(payload["model_state"])
        if "switches" in payload:
            switches.load_state_dict(payload["switches"])
        optimizer.load_state_dict(payload["optimizer_state"])
        scheduler.load_state_dict(payload["scheduler_state"])
        state = payload["progress"]
        if summaries and ranks.is_main and state["epoch"] >= config.epochs:
            print(f"{out_dir} finished all {config.epochs} epochs; nothing left to train")
        elif summaries and ranks.is_main:
            print(
                f"resuming {out_dir} at epoch {state['epoch'] + 1}, step {state['step_in_epoch']}"
            )
    progress, summaries = progress and ranks.is_main, summaries and ranks.is_main
    # the same chip on every rank (seeded): only score gradients are exchanged
    net: nn.Module = model
    if ranks.distributed:
        with collectives(ranks, checkpoint_path):
            on_gpu = [device.index] if device.type == "cuda" else None  # one GPU per rank
            net = DistributedDataParallel(model, device_ids=on_gpu, forward_sync_buffers=False)
    replay = open_replay(model, config, position=state.get("trace_read", 0))
    if replay and config.scale == MATCHED and not resume:  # matched to the trace's cells
        trace_scale = matched_scale(replay.device())
        for layer in model.memristor_layers():
            layer.scale.fill_(trace_scale)
    if replay and summaries:
        print(f"replaying {config.trace} ({config.replay}): {replay.placement.report()}")
    conductances = [layer.g_us.clone() for layer in model.memristor_layers()]
    started = time.perf_counter() - state["wall_seconds"]

    def save() -> None:
        state["wall_seconds"] = time.perf_counter() - started
        if replay:
            state["trace_read"] = replay.position
        if not ranks.is_main:
            return
        save_checkpoint(
            checkpoint_path,
            {
                "train_config": dataclasses.asdict(config),
                "model_config": model.config.to_dict(),
                "model_state": model.state_dict(),
                "masks": [m.bool() for m in model.masks()],
                "optimizer_state": optimizer.state_dict(),
                "scheduler_state": scheduler.state_dict(),
                "switches": switches.state_dict(),
                "progress": state,
                "versions": versions(),
                "fingerprints": fingerprints,
            },
        )

    while state["epoch"] < config.epochs:
        epoch = state["epoch"]
        if state["step_in_epoch"] == 0:  # the periphery's open ranges follow the masks
            calibrate_periphery(model, data.train, config.seed * 100_003 + epoch)
        model.train()
        loader, count = _epoch_batches(data.train, config, epoch, ranks, device)
        bar = progress_bar(
            total=count,
            initial=state["step_in_epoch"],
            desc=f"epoch {epoch + 1}/{config.epochs}",
            show=progress,
            leave=False,
        )
        sums = state.setdefault("epoch_sums", {"loss": 0.0, "correct": 0, "n": 0})
        sums.setdefault("data_seconds", 0.0)  # (a checkpoint from before it was counted)
        sums.setdefault("train_seconds", 0.0)
        epoch_started = time.perf_counter() - sums["train_seconds"]
        for step, (x, y) in enumerate(_waited(loader, sums)):
            if step < state["step_in_epoch"]:
                continue
            global_n = min(config.batch_size, dataset_len(data.train) - step * config.batch_size)
            if augment.active:  # the global batch's draws, this rank's share of them
                draws = torch.Generator().manual_seed(_draw_seed(config.seed, epoch, step))
                x = augment.apply(x, augment.draw(global_n, draws)[ranks.rank :: ranks.world_size])
            switches.program(schedule.margin(epoch))  # the chip's masks for this step
            if config.train_read_noise:  # fresh noise per read, drawn from (seed, epoch, step)
                noise_seed = _draw_seed(config.seed, epoch, step, stream=1)
                model.set_read_noise(config.train_read_noise, seed=noise_seed)
            with collectives(ranks, checkpoint_path):
                outputs = net(x, config.mode)
                logits = outputs.mean(0)
                # local mean x (share of the global batch) x ranks: DDP's average over ranks
                # is then exactly the mean loss over the global batch
                loss = training_loss(outputs, y, config.exit_loss)
                loss = loss * (len(y) * ranks.world_size / global_n)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                local = [loss.item() * global_n / ranks.world_size, (logits.argmax(1) == y).sum()]
                loss_sum, correct = all_sum([float(v) for v in local], ranks)
            sums["loss"] += loss_sum
            sums["correct"] += int(correct)
            sums["n"] += global_n
            state["step_in_epoch"] = step + 1
            sums["train_seconds"] = time.perf_counter() - epoch_started
            bar.update()
            bar.set_postfix(
                loss=f"{sums['loss'] / sums['n']:.3f}", acc=f"{sums['correct'] / sums['n']:.3f}"
            )
            if state["step_in_epoch"] % config.save_every == 0 and step + 1 < count:
                save()
        bar.close()
        model.set_read_noise(0.0)  # the test accuracy is the noise-free chip's
        with collectives(ranks, checkpoint_path):
            test = _evaluate_shared(model, data.test, config.mode, ranks)
            val = (
                None if data.val is None else _evaluate_shared(model, data.val, config.mode, ranks)
            )
        h = {
            "epoch": epoch + 1,
            "train_loss": sums["loss"] / max(sums["n"], 1),
            "train_accuracy": sums["correct"] / max(sums["n"], 1),
            **({"val_accuracy": val["accuracy"]} if val else {}),
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "lr": scheduler.get_last_lr()[0],
            "data_seconds": sums["data_seconds"],
            "train_seconds": sums["train_seconds"],
            "wall_seconds": time.perf_counter() - started,
        }
        state["history"].append(h)
        if summaries:
            validation = f"val acc {h['val_accuracy']:.4f} | " if val else ""
            print(
                f"epoch {epoch + 1}/{config.epochs}: train loss {h['train_loss']:.3f} "
                f"acc {h['train_accuracy']:.3f} | {validation}test acc {h['test_accuracy']:.4f} "
                f"| {h['wall_seconds']:.0f} s",
                flush=True,
            )
        state.update(epoch=epoch + 1, step_in_epoch=0)
        del state["epoch_sums"]
        save()
        if ranks.is_main:
            write_epoch_log(out_dir, state["history"])
            if config.tensorboard:
                write_tensorboard_epoch(out_dir, h)

    if replay:  # the layers hold the last read loaded, not the chip they started on
        unchanged = replay.conductances_match()
        replay.close()
    else:
        unchanged = all(
            torch.equal(before, layer.g_us)
            for before, layer in zip(conductances, model.memristor_layers(), strict=True)
        )
    metrics = {
        "model": config.model_name,
        "dataset": config.dataset,
        "test_accuracy": state["history"][-1]["test_accuracy"],
        "kept_fraction": model.kept_fraction(),
        "conductances_unchanged": unchanged,
        "switches": switches.summary() if switches.layers else None,
        "epochs": config.epochs,
        "wall_seconds": state["wall_seconds"],
        "history": state["history"],
        "config": dataclasses.asdict(config),
    }
    if ranks.is_main:
        write_json(out_dir / "metrics.json", metrics)
        _write_summary(out_dir / "summary.md", metrics, model)
        title = f"{config.model_name} on {config.dataset}: {out_dir}"
        plot_training_curves(out_dir, state["history"], title)
    return metrics


def check_resume_settings(config: TrainConfig, expect: dict[str, Any], out_dir: Path) -> None:
    """Refuse settings (``expect``: field or ``data.<option>`` -> value) that differ from
    those the run in ``out_dir`` was trained with: a resume continues the same run."""
    requested = resolve_paths(config_with(config, expect))
    changed = [
        f"{name} {_setting(requested, name)!r} (the run has {_setting(config, name)!r})"
        for name in expect
        if _setting(requested, name) != _setting(config, name)
    ]
    if changed:
        raise PrimeError(
            f"--resume continues {out_dir} with the settings it was trained with, but "
            f"{'; '.join(changed)}: drop those options, or train a new run with another --out"
        )


def config_with(config: TrainConfig, settings: dict[str, Any]) -> TrainConfig:
    """``config`` with ``settings`` (field or ``group.option`` -> value) applied."""
    fields: dict[str, Any] = {}
    for name, value in settings.items():
        group, _, option = name.partition(".")
        if option:
            fields[group] = {**fields.get(group, getattr(config, group)), option: value}
        else:
            fields[name] = value
    return dataclasses.replace(config, **fields)


def _setting(config: TrainConfig, name: str) -> Any:
    group, _, option = name.partition(".")
    value = getattr(config, group)
    return value.get(option) if option else value


def _draw_seed(seed: int, epoch: int, step: int, stream: int = 0) -> int:
    """Seed of a step's draws (stream 0: augmentation, 1: read noise): fixed by (seed, epoch,
    step), so resumes redraw."""
    entropy = [seed, epoch, step] + ([stream] if stream else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def _waited(batches: Iterable[Any], sums: dict[str, Any]) -> Iterator[Any]:
    """``batches``, adding the seconds spent waiting for each to ``sums["data_seconds"]``
    (reading, collating and copying to the device, against the step's compute)."""
    iterator = iter(batches)
    while True:
        started = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            return
        sums["data_seconds"] += time.perf_counter() - started
        yield batch


def _epoch_batches(
    dataset: Dataset,
    config: TrainConfig,
    epoch: int,
    ranks: Ranks,
    device: torch.device | str = "cpu",
) -> tuple[Iterator[tuple[torch.Tensor, torch.Tensor]], int]:
    """This rank's share of every global batch of the epoch, in the seeded order of (seed, epoch).

    A DistributedSampler for the global batches: rank r takes samples r, r + world, ... of
    each, so one process with batch B and N processes with B/N each see the same batches.
    """
    generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    order = torch.randperm(dataset_len(dataset), generator=generator).tolist()
    size = config.batch_size
    mine = [i for at in range(0, len(order), size) for i in shard(order[at : at + size], ranks)]
    return iterate_batches(Subset(dataset, mine), size // ranks.world_size, device=device)


def _evaluate_shared(
    model: SpikingNetwork, dataset: Dataset, mode: str, ranks: Ranks
) -> dict[str, float]:
    """Test accuracy and loss over ``dataset``, every rank evaluating its share."""
    if not ranks.distributed:
        return evaluate(model, dataset, mode=mode)
    part = evaluate(model, Subset(dataset, shard(range(dataset_len(dataset)), ranks)), mode=mode)
    n = part["samples"]
    correct, loss_sum, total = all_sum([round(part["accuracy"] * n), part["loss"] * n, n], ranks)
    return {"accuracy": correct / total, "loss": loss_sum / total, "samples": int(total)}


def _check_shards(samples: int, batch_size: int, ranks: Ranks) -> None:
    """Every rank needs an equal share of every global batch (and at least one sample)."""
    last = samples % batch_size or batch_size
    if batch_size % ranks.world_size or last < ranks.world_size:
        raise PrimeError(
            f"{ranks.world_size} processes cannot share batches of {batch_size} (the last one "
            f"has {last} samples): choose a --batch-size divisible by {ranks.world_size} "
            f"whose last batch has at least {ranks.world_size} samples, or fewer processes"
        )


def _check_data_fits(model: SpikingNetwork, data: DataSplits, config: TrainConfig) -> None:
    if tuple(data.input_shape) != model.input_shape or data.num_classes != model.num_classes:
        raise PrimeError(
            f"model {config.model_name!r} expects input {model.input_shape} and "
            f"{model.num_classes} classes, dataset {config.dataset!r} gives "
            f"{tuple(data.input_shape)} and {data.num_classes}; choose a matching --model"
        )


def _write_summary(path: Path, metrics: dict[str, Any], model: SpikingNetwork) -> None:
    lines = [
        f"# {metrics['model']} on {metrics['dataset']}",
        "",
        f"- test accuracy: {100 * metrics['test_accuracy']:.2f} %",
        f"- kept fraction of edges: {metrics['kept_fraction']:.4f}",
        f"- conductances unchanged by training: {metrics['conductances_unchanged']}",
        f"- epochs: {metrics['epochs']}, wall time: {metrics['wall_seconds']:.1f} s",
        "",
        "| epoch | train loss | train acc | test acc | wall s |",
        "|---|---|---|---|---|",
        *(
            f"| {h['epoch']} | {h['train_loss']:.4f} | {h['train_accuracy']:.4f} "
            f"| {h['test_accuracy']:.4f} | {h['wall_seconds']:.1f} |"
            for h in metrics["history"]
        ),
        "",
        "```",
        str(model),
        "```",
        "",
    ]
    atomic_write(path, lambda tmp: tmp.write_text("\n".join(lines)))
