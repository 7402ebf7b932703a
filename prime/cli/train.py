"""``prime train``: learn a topology (supermask) on a random chip."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prime.cli.common import (
    add_compute_arguments,
    add_fault_arguments,
    add_quiet_argument,
    add_replay_arguments,
    apply_compute_arguments,
    device_arg,
    float_arg,
    given_settings,
    int_arg,
    require_replay,
    scale_arg,
    seed_arg,
)
from prime.cli.config_file import add_config_file_argument
from prime.cli.datasets import add_data_arguments, data_options
from prime.cli.nproc import add_nproc, launch_command
from prime.core.resources import MAX_EPOCHS, MAX_TIMESTEPS

if TYPE_CHECKING:
    from prime.runs.config import TrainConfig


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a supermask (with no arguments: the default model on the built-in digits)",
        description="Train only the edge scores of a network on random memristor "
        "conductances; the conductances are never changed.",
    )
    p.add_argument("--out", type=Path, help="run directory (default: runs/<model>-seed<seed>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    add_config_arguments(p)
    add_quiet_argument(p)
    add_nproc(p)
    add_compute_arguments(p)
    p.set_defaults(run=run)


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """The options that make a :class:`~prime.runs.config.TrainConfig` (config_from_args),
    and ``--config FILE`` that sets them from a file (:mod:`prime.cli.config_file`)."""
    add_config_file_argument(p)
    p.add_argument("--dataset", default="digits", help="dataset name (default: digits)")
    p.add_argument("--model", help="model name (default: the dataset's default model)")
    p.add_argument("--epochs", type=int_arg(1, MAX_EPOCHS), default=6)
    p.add_argument("--batch-size", type=int_arg(1), default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of scores and data order")
    p.add_argument("--chip-seed", type=seed_arg, help="seed of the chip (default: --seed)")
    p.add_argument(
        "--device-model",
        default="prime-gaussian",
        help="memristor device model: a preset, or a JSON device config (prime trace fit --save)",
    )
    p.add_argument("--keep", type=float, default=0.5, help="kept fraction of edges, (0, 1]")
    p.add_argument(
        "--scale",
        type=scale_arg,
        default="matched",
        help="weight per µS; matched (default: the weights get the RMS of PRIME's chip, "
        "0.01 on prime-gaussian), or fan-in",
    )
    p.add_argument("--mask-scope", choices=("layer", "global"), default="layer")
    p.add_argument(
        "--neuron",
        choices=("prime", "lif"),
        default="prime",
        help="prime: PRIME's LIF (LeakyReLU on the membrane); lif: the standard LIF, exact in "
        "NIR (docs/interop.md)",
    )
    p.add_argument(
        "--timesteps", type=int_arg(1, MAX_TIMESTEPS), help="timesteps T (default: the model's)"
    )
    p.add_argument("--mode", choices=("multi", "single"), default="multi")
    p.add_argument("--save-every", type=int_arg(1), default=50, help="checkpoint every N steps")
    p.add_argument("--limit-train", type=int_arg(1), help="train on a seeded subset of N samples")
    p.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log each epoch's metrics.csv line as TensorBoard scalars in OUT/tensorboard/",
    )
    p.add_argument(
        "--hysteresis",
        default="none",
        help="mask hysteresis: a schedule (pruning-spoken-digits, pruning-fashion-mnist) or "
        "a constant margin >= 0 (default: none)",
    )
    p.add_argument(
        "--weight-sign",
        default="pair",
        help="a pair's weight: its signed G+ - G- (pair, default) or |G+ - G-| times a fixed "
        "random sign (random-sign, the pruning paper's convention)",
    )
    add_periphery_argument(p)
    p.add_argument(
        "--train-read-noise",
        type=float_arg(0.0),
        default=0.0,
        metavar="SIGMA",
        help="multiplicative read noise σ on every crossbar read while training (fresh per "
        "step, seeded; noise-aware training)",
    )
    add_fault_arguments(p, several=False)
    add_recipe_arguments(p)
    add_replay_arguments(p)
    add_data_arguments(p)


def add_periphery_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--periphery",
        help="DACs, tiles, ADCs and digital unit of the crossbars: a preset (ideal, prime-512, "
        "prime-512-adc6, isaac-128, approx-adc-4b) or a JSON file (docs/periphery.md); "
        "default: ideal",
    )
    p.add_argument(
        "--r-wire",
        type=float_arg(0.0),
        metavar="OHM",
        help="resistance of every word- and bit-line segment of the periphery's tiles (IR "
        "drop, docs/ir_drop.md); default: the periphery's (ideal wires)",
    )
    p.add_argument(
        "--ir-model",
        choices=("exact", "first-order"),
        help="how IR drop is computed: the exact transfer matrix (refreshed every "
        "ir_refresh training reads) or the first-order closed form (default: the periphery's)",
    )


def periphery_arg(
    spec: str | dict | None, r_wire: float | None = None, ir_model: str | None = None
) -> dict:
    """The read path config of ``--periphery`` (none: ideal; a config file may give its
    fields inline, a dict) with ``--r-wire`` and ``--ir-model`` set where given, as a dict
    ({} when none is given)."""
    import dataclasses

    from prime.hardware.periphery import IDEAL, ReadPathConfig, load_periphery

    if spec is None and r_wire is None and ir_model is None:
        return {}
    if isinstance(spec, dict):
        periphery = ReadPathConfig.from_dict(spec, source="--periphery")
    else:
        periphery = IDEAL if spec is None else load_periphery(spec)
    if r_wire is not None:
        periphery = dataclasses.replace(periphery, r_wordline_ohm=r_wire, r_bitline_ohm=r_wire)
    if ir_model is not None:
        periphery = dataclasses.replace(periphery, ir_model=ir_model)
    return periphery.to_dict()


def add_recipe_arguments(
    p: argparse.ArgumentParser,
    shift_px: int = 0,
    rotate_deg: float = 0.0,
    zoom: float = 0.0,
    exit_loss: float = 0.0,
) -> None:
    """Frame augmentation (prime.data.augment.FrameAugmentation; image frames only) and the
    per-step loss weight (prime.runs.train.training_loss), with these defaults."""
    p.add_argument(
        "--shift-px",
        type=int,
        default=shift_px,
        help=f"augment: random shifts up to N px (default {shift_px})",
    )
    p.add_argument(
        "--rotate-deg",
        type=float,
        default=rotate_deg,
        help=f"augment: random rotations up to N degrees (default {rotate_deg})",
    )
    p.add_argument(
        "--zoom", type=float, default=zoom, help=f"augment: random scale 1 +- Z (default {zoom})"
    )
    p.add_argument(
        "--exit-loss",
        type=float,
        default=exit_loss,
        help="weight in [0, 1] of the per-step loss that trains early steps for early exit "
        f"(default {exit_loss})",
    )


def augment_options(args: argparse.Namespace) -> dict[str, float]:
    options = {"shift_px": args.shift_px, "rotate_deg": args.rotate_deg, "zoom": args.zoom}
    return {name: value for name, value in options.items() if value}


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    from prime.runs.config import TrainConfig

    return TrainConfig(
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        chip_seed=args.chip_seed,
        device_model=device_arg(args.device_model),
        keep=args.keep,
        scale=args.scale,
        mask_scope=args.mask_scope,
        neuron=args.neuron,
        timesteps=args.timesteps,
        mode=args.mode,
        save_every=args.save_every,
        limit_train=args.limit_train,
        trace=args.trace,
        replay=args.replay,
        pruned=args.pruned,
        tile=args.tile,
        data=data_options(args),
        augment=augment_options(args),
        exit_loss=args.exit_loss,
        hysteresis=args.hysteresis,
        weight_sign=args.weight_sign,
        read_path=periphery_arg(args.periphery, args.r_wire, args.ir_model),
        train_read_noise=args.train_read_noise,
        faults=fault_options(args),
        imports=args.imports,
        tensorboard=args.tensorboard,
    )


#: the file ``prime train`` writes into the run directory: its options, to rerun it
RUN_CONFIG = "run_config.json"
#: TrainConfig fields set by the option of the same name
FLAG_FIELDS = (
    "dataset",
    "model",
    "epochs",
    "batch_size",
    "lr",
    "seed",
    "chip_seed",
    "device_model",
    "keep",
    "scale",
    "mask_scope",
    "neuron",
    "timesteps",
    "mode",
    "save_every",
    "limit_train",
    "exit_loss",
    "hysteresis",
    "train_read_noise",
    "tensorboard",
)


def config_options(config: TrainConfig) -> dict[str, Any]:
    """The options of ``prime train`` that make ``config`` (the inverse of
    :func:`config_from_args`), as a ``--config`` file holds them; unset options are left out."""
    from prime.core.errors import PrimeError
    from prime.runs.config import TrainConfig

    defaults = TrainConfig()
    fixed = ("synapses", "activation_bits", "activation_quantizer")
    if any(getattr(config, name) != getattr(defaults, name) for name in fixed):
        raise PrimeError(
            f"this run's {', '.join(fixed)} have no prime train options; rerun it with the "
            "command that made it"
        )
    options: dict[str, Any] = {name: getattr(config, name) for name in FLAG_FIELDS}
    if config.trace:  # --replay/--pruned/--tile apply only with a trace
        rows, cols = config.tile
        options.update(
            trace=config.trace, replay=config.replay, pruned=config.pruned, tile=f"{rows}x{cols}"
        )
    if config.read_path:
        options["periphery"] = config.read_path
    faults = dict(config.faults)
    if faults:
        options["fault_seed"] = faults.pop("seed")
        options.update(faults)
    options.update(config.augment)
    options.update(config.data)
    return {name: value for name, value in options.items() if value is not None}


def fault_options(args: argparse.Namespace) -> dict[str, float | int]:
    """The stuck-cell settings of ``--stuck-*``/``--fault-seed`` (empty where none)."""
    if not (args.stuck_off or args.stuck_on):
        return {}
    options = {"stuck_off": args.stuck_off, "stuck_on": args.stuck_on, "seed": args.fault_seed}
    return options if args.stuck_on_us is None else {**options, "stuck_on_us": args.stuck_on_us}


def run(args: argparse.Namespace) -> int:
    from contextlib import nullcontext

    from prime.cli import inpaint
    from prime.core.errors import PrimeError
    from prime.core.io import write_json
    from prime.core.lock import exclusive
    from prime.runs.config import TrainConfig
    from prime.runs.distributed import process_group
    from prime.runs.train import train

    if inpaint.is_inpainting_model(args.model):
        apply_compute_arguments(args)
        return inpaint.run_train(args)
    if args.nproc > 1:
        return launch_command(args)
    apply_compute_arguments(args)
    requested = config_from_args(args)
    if args.resume:
        if args.out is None:
            raise PrimeError("--resume needs --out RUN_DIR: the run to continue")
        config, out = None, args.out
    else:
        require_replay(args)
        config = requested
        out = args.out or Path("runs") / f"{config.model_name}-seed{config.seed}"
    expect = given_settings(args, requested) if args.resume else None
    with process_group() as ranks, exclusive(out) if ranks.is_main else nullcontext():
        # the run's lock (train() takes it again) over both writes of the run's config
        if config is not None and ranks.is_main:  # first, so that a killed run reruns
            write_json(out / RUN_CONFIG, config_options(config))
        metrics = train(config, out, args.resume, not args.quiet, expect=expect, device=args.device)
        if ranks.is_main:
            write_json(out / RUN_CONFIG, config_options(TrainConfig(**metrics["config"])))
    if not ranks.is_main:
        return 0
    print(
        f"{metrics['model']} on {metrics['dataset']}: test accuracy "
        f"{100 * metrics['test_accuracy']:.2f} %, kept fraction {metrics['kept_fraction']:.4f}, "
        f"conductances unchanged: {metrics['conductances_unchanged']}, "
        f"wall time {metrics['wall_seconds']:.1f} s -> {out} (rerun: prime train --config "
        f"{out / RUN_CONFIG} --out NEW)"
    )
    return 0
