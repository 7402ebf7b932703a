"""``prime eval RUN_DIR``: re-evaluate a trained run, optionally under read noise, aged, with
stuck cells or on another chip."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prime.cli import inpaint
from prime.cli.common import (
    add_compute_arguments,
    add_fault_arguments,
    add_replay_arguments,
    apply_compute_arguments,
    float_arg,
    int_arg,
    require_with,
    seed_arg,
)
from prime.core.resources import MAX_REPEATS

if TYPE_CHECKING:
    from prime.hardware.periphery import ReadPathConfig
    from prime.inference.robustness import Sweep


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a trained run", description=__doc__)
    p.add_argument("run_dir", type=Path, help="a run directory written by prime train")
    p.add_argument(
        "--read-noise",
        type=noise_levels_arg,
        default=[0.0],
        help="multiplicative read noise σ per crossbar read (PRIME: 0.02); several, comma "
        "separated (0,0.02,0.05), write a robustness report (docs/distributed.md)",
    )
    p.add_argument("--noise-seed", type=seed_arg, default=0, help="seed of the read noise")
    p.add_argument(
        "--repeats",
        type=int_arg(1, MAX_REPEATS),
        default=1,
        help="evaluations per noise level, seeds --noise-seed, +1, ... (a robustness report)",
    )
    p.add_argument(
        "--chip-seed",
        type=seed_arg,
        help="re-form the conductances on another chip (same learned scores)",
    )
    p.add_argument("--mode", choices=("multi", "single"), default="multi")
    p.add_argument("--batch-size", type=int_arg(1), default=128)
    add_replay_arguments(p, run_defaults=True)
    add_periphery_arguments(p)
    add_cell_condition_arguments(p)
    add_early_exit_arguments(p)
    inpaint.add_arguments(p)
    add_compute_arguments(p)
    p.set_defaults(run=run)


def add_periphery_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("periphery (docs/periphery.md)")
    g.add_argument(
        "--periphery",
        help="evaluate on this periphery (a preset or a JSON file) instead of the run's own",
    )
    g.add_argument(
        "--r-wire",
        type=resistances_arg,
        metavar="OHM[,OHM...]",
        help="IR-drop sweep: resistance of every word- and bit-line segment (0,0.5,1,2,5), "
        "against the partitions of --tile; accuracy and energy to ir_drop.csv, ir_drop.json, "
        "ir_drop.png (docs/ir_drop.md)",
    )
    g.add_argument(
        "--ir-model",
        choices=("exact", "first-order"),
        help="how the IR drop of --r-wire is computed (default: the periphery's, exact)",
    )
    for name, what in (
        ("adc-bits", "ADC resolution"),
        ("dac-bits", "DAC resolution"),
        ("tile-rows", "crossbar rows per tile"),
        ("digital-bits", "digital unit word width"),
        ("neuron-bits", "the neurons' membrane word width"),
    ):
        g.add_argument(
            f"--{name}",
            type=whole_numbers_arg,
            help=f"{what}; several, comma separated (8,6,4), sweep it: accuracy and energy "
            "per inference to sweep.csv, sweep.json, sweep.png",
        )


def resistances_arg(text: str) -> list[float]:
    parse = float_arg(0.0)
    values = [parse(v) for v in text.split(",") if v.strip()]
    if not values:
        raise argparse.ArgumentTypeError("expected at least one resistance in ohms, e.g. 0,1,2")
    return values


def whole_numbers_arg(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers like 8,6,4, got {text!r}"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one whole number")
    return values


def periphery_options(
    args: argparse.Namespace,
) -> tuple[ReadPathConfig | None, str | None, list[int]]:
    """(the periphery to evaluate on or None, the swept field or None, its values)."""
    from prime.core.errors import PrimeError
    from prime.hardware.periphery import load_periphery
    from prime.runs.periphery_sweep import SWEEPABLE

    given = {f: getattr(args, f) for f in SWEEPABLE if getattr(args, f) is not None}
    swept = [f for f, values in given.items() if len(values) > 1]
    if len(swept) > 1:
        raise PrimeError(f"sweep one periphery field at a time, got {', '.join(swept)}")
    if args.periphery is None and not given:
        return None, None, []
    if args.periphery is not None:
        periphery = load_periphery(args.periphery)
    else:  # the run's own periphery, with the given fields changed
        periphery = _run_periphery(args.run_dir)
    fixed = {f: values[0] for f, values in given.items() if len(values) == 1}
    periphery = dataclasses.replace(periphery, **fixed)
    if swept:
        return periphery, swept[0], given[swept[0]]
    return periphery, None, []


def run(args: argparse.Namespace) -> int:
    from prime.runs.evaluation import evaluate_run

    apply_compute_arguments(args)
    if args.inpaint:
        return inpaint.run_eval(args)
    report = len(args.read_noise) > 1 or args.repeats > 1
    early = ("--early-exit", args.early_exit)
    names = ("threshold", "target_drop", "policy", "alpha", "min_steps")
    require_with(args, {name: early for name in names})
    if args.r_wire is not None:
        return run_ir_drop_sweep(args)
    periphery, field, values = periphery_options(args)
    cells = args.age is not None or args.stuck_off != [0.0] or args.stuck_on != [0.0]
    wants_out = args.early_exit or report or field is not None or cells
    require_with(args, {"out": ("--early-exit, a report or a sweep", wants_out)})
    if field is not None:
        return run_sweep(args, periphery, field, values)
    if cells:
        return run_cell_conditions(args)
    if report:
        return run_read_noise(args)
    args.read_noise = args.read_noise[0]
    if args.early_exit:
        return run_early_exit(args, periphery)
    result = evaluate_run(
        args.run_dir,
        read_noise=args.read_noise,
        noise_seed=args.noise_seed,
        chip_seed=args.chip_seed,
        mode=args.mode,
        batch_size=args.batch_size,
        replay=replay_options(args),
        periphery=periphery,
        device=args.device,
    )
    chip = f"chip seed {result['chip_seed']}"
    if result["trace"]:
        chip = f"trace {result['trace']}, {result['replay']} replay"
    print(
        f"{result['model']} on {result['dataset']} ({chip}, read noise σ "
        f"{result['read_noise']:g}): test accuracy {100 * result['accuracy']:.2f} % "
        f"over {result['samples']} samples"
    )
    return 0


def run_sweep(
    args: argparse.Namespace, periphery: ReadPathConfig | None, field: str, values: list[int]
) -> int:
    from prime.core.errors import PrimeError
    from prime.runs.periphery_sweep import sweep_periphery

    if args.early_exit or len(args.read_noise) > 1 or args.read_noise[0] or args.repeats > 1:
        raise PrimeError("a periphery sweep runs without --early-exit, --read-noise, --repeats")
    out = args.out or args.run_dir / f"periphery-{field.replace('_', '-')}"
    rows = sweep_periphery(
        args.run_dir,
        field,
        values,
        out,
        periphery,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(f"{args.run_dir}: test accuracy and energy per inference over {field}")
    for row in rows:
        print(
            f"  {field} {row[field]:>4}: {100 * row['accuracy']:6.2f} %, "
            f"{row['energy_pj'] / 1e3:8.2f} nJ (ADC {row['adc_pj'] / 1e3:.2f} nJ)"
        )
    print(f"wrote sweep.csv, sweep.json, sweep.png to {out}")
    return 0


def replay_options(args: argparse.Namespace) -> dict[str, Any]:
    """The run's trace/replay/pruned/tile settings to override (None: keep); one --tile."""
    from prime.core.errors import PrimeError

    replay = {k: getattr(args, k) for k in ("trace", "replay", "pruned")}
    if args.tile is not None and len(args.tile) > 1:
        raise PrimeError("several --tile partitions need --r-wire (an IR-drop sweep)")
    return {**replay, "tile": None if args.tile is None else args.tile[0]}


def run_ir_drop_sweep(args: argparse.Namespace) -> int:
    """``--r-wire`` against the partitions of ``--tile``."""
    from prime.core.errors import PrimeError
    from prime.runs.periphery_sweep import sweep_ir_drop

    others = args.early_exit or len(args.read_noise) > 1 or args.read_noise[0] or args.repeats > 1
    if others or args.trace or args.chip_seed is not None:
        raise PrimeError(
            "an IR-drop sweep (--r-wire) runs on the run's own chip without --early-exit, "
            "--read-noise, --repeats, --trace, --chip-seed"
        )
    periphery, field, _ = periphery_options(args)
    if field is not None:
        raise PrimeError(f"sweep --r-wire or {field.replace('_', '-')}, not both at once")
    base = periphery or _run_periphery(args.run_dir)
    if args.ir_model is not None:
        base = dataclasses.replace(base, ir_model=args.ir_model)
    tiles = args.tile or [(base.tile_rows, base.tile_columns)]
    out = args.out or args.run_dir / "ir-drop"
    rows = sweep_ir_drop(
        args.run_dir, args.r_wire, tiles, out, base, batch_size=args.batch_size, device=args.device
    )
    print(f"{args.run_dir}: test accuracy and energy per inference, IR drop ({base.ir_model})")
    for row in rows:
        print(
            f"  tile {row['tile']:>9}, {row['r_wire_ohm']:g} ohm: "
            f"{100 * row['accuracy']:6.2f} %, {row['energy_pj'] / 1e3:8.2f} nJ"
        )
    print(f"wrote ir_drop.csv, ir_drop.json, ir_drop.png to {out}")
    return 0


def _run_periphery(run_dir: Path) -> ReadPathConfig:
    from prime.hardware.periphery import ReadPathConfig
    from prime.runs.rundir import load_run, run_config

    return ReadPathConfig.from_dict(run_config(load_run(run_dir)[1]).read_path)


def noise_levels_arg(text: str) -> list[float]:
    from prime.core.errors import PrimeError
    from prime.inference.robustness import parse_noise_levels

    try:
        return parse_noise_levels(text)
    except PrimeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_read_noise(args: argparse.Namespace) -> int:
    from prime.core.errors import PrimeError
    from prime.inference.robustness import READ_NOISE, read_noise_sweep

    if args.early_exit:
        raise PrimeError("--early-exit takes one --read-noise value and no --repeats")

    def rows(model, data, config):
        return read_noise_sweep(
            model,
            data.test,
            args.read_noise,
            args.repeats,
            seed=args.noise_seed,
            mode=args.mode,
            batch_size=args.batch_size,
            replay=config,
        )

    return run_report(args, READ_NOISE, rows, lambda s: f"σ {s['read_noise']:<6g}")


def run_cell_conditions(args: argparse.Namespace) -> int:
    """``--age`` or ``--stuck-off/--stuck-on``: a report of accuracy on aged or faulty cells."""
    from prime.core.errors import PrimeError
    from prime.hardware.ageing import ageing_model, format_age
    from prime.inference.robustness import AGE, STUCK_CELLS, age_sweep, stuck_cells_sweep

    faults = args.stuck_off != [0.0] or args.stuck_on != [0.0]
    if args.age is not None and faults:
        raise PrimeError("--age and --stuck-off/--stuck-on are separate reports: pass one")
    if args.early_exit or args.read_noise != [0.0]:
        raise PrimeError("--age and --stuck-* reports take no --early-exit and no --read-noise")
    if args.trace:
        raise PrimeError(
            "--age and --stuck-* change the model's own cells; a --trace replaces them: drop one"
        )
    if args.age is not None:
        relaxation = ageing_model(args.age_model)

        def aged(model, data, config):
            return age_sweep(
                model,
                data.test,
                args.age,
                args.repeats,
                relaxation,
                seed=args.age_seed,
                mode=args.mode,
                batch_size=args.batch_size,
            )

        return run_report(args, AGE, aged, lambda s: format_age(s["age_s"]))
    fractions = paired(args.stuck_off, args.stuck_on)

    def stuck(model, data, config):
        return stuck_cells_sweep(
            model,
            data.test,
            fractions,
            args.repeats,
            stuck_on_us=args.stuck_on_us,
            seed=args.fault_seed,
            mode=args.mode,
            batch_size=args.batch_size,
        )

    return run_report(
        args, STUCK_CELLS, stuck, lambda s: f"off {s['stuck_off']:g}, on {s['stuck_on']:g}"
    )


def paired(stuck_off: list[float], stuck_on: list[float]) -> list[tuple[float, float]]:
    """The (stuck_off, stuck_on) levels: lists of equal length pair up, one value repeats."""
    from prime.core.errors import PrimeError

    if len(stuck_off) != len(stuck_on) and 1 not in (len(stuck_off), len(stuck_on)):
        raise PrimeError(
            f"--stuck-off has {len(stuck_off)} values and --stuck-on {len(stuck_on)}: give "
            "lists of the same length (paired) or one value for either"
        )
    n = max(len(stuck_off), len(stuck_on))
    return list(
        zip(stuck_off * (n // len(stuck_off)), stuck_on * (n // len(stuck_on)), strict=True)
    )


def run_report(
    args: argparse.Namespace,
    sweep: Sweep,
    rows_of: Callable[[Any, Any, Any], list[dict[str, Any]]],
    describe_level: Callable[[dict[str, Any]], str],
) -> int:
    """Evaluate the run (``rows_of(model, data, config)``), write ``sweep``'s report to
    ``--out`` (default RUN_DIR/<sweep name>) and print one line per level."""
    from prime.core.lock import exclusive
    from prime.inference.robustness import summarize, write_report
    from prime.runs.evaluation import chip_name
    from prime.runs.rundir import prepare_run

    replay = replay_options(args)
    with exclusive(args.out or args.run_dir / sweep.name.replace("_", "-")) as out:
        model, config, data = prepare_run(args.run_dir, args.chip_seed, replay, device=args.device)
        rows = rows_of(model, data, config)
        title = f"{config.model_name} on {config.dataset}, {chip_name(config, model)}"
        paths = write_report(out, rows, title, sweep)
    print(f"{title}: test accuracy ({len(data.test)} samples)")
    for s in summarize(rows, sweep):
        print(
            f"  {describe_level(s):<16} {100 * s['accuracy_mean']:6.2f} ± "
            f"{100 * s['accuracy_std']:.2f} % (min {100 * s['accuracy_min']:.2f}, max "
            f"{100 * s['accuracy_max']:.2f}, {s['repeats']} repeats)"
        )
    print(f"wrote {', '.join(p.name for p in paths)} to {paths[0].parent}")
    return 0


def add_cell_condition_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ageing and stuck cells (docs/devices.md)")
    g.add_argument(
        "--age",
        type=ages_arg,
        help="times since forming, comma separated with units s, m, h, d, w (1s,1h,1d,1w): "
        "write accuracy against age (CSV, JSON, PNG); mean ± std over --repeats seeds",
    )
    g.add_argument(
        "--age-model",
        default="wan2022",
        help="ageing model: a preset (wan2022, none) or a JSON file of Relaxation fields",
    )
    g.add_argument("--age-seed", type=seed_arg, default=0, help="seed of the cells' relaxation")
    add_fault_arguments(g, several=True)


def ages_arg(text: str) -> list[float]:
    from prime.core.errors import PrimeError
    from prime.hardware.ageing import parse_ages

    try:
        return parse_ages(text)
    except PrimeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_early_exit_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("early exit (docs/early_exit.md)")
    g.add_argument(
        "--early-exit",
        action="store_true",
        help="stop each sample's timesteps once its output is confident; report accuracy, "
        "steps and load saved, and write a threshold sweep (CSV, PNG)",
    )
    choice = g.add_mutually_exclusive_group()
    choice.add_argument("--threshold", type=float, help="exit threshold θ (default 0.8)")
    choice.add_argument(
        "--target-drop",
        type=float,
        metavar="PP",
        help="calibrate θ on a validation split for this accuracy drop (percentage points)",
    )
    g.add_argument(
        "--policy",
        default="prime",
        help="exit policy: prime (default), margin, entropy, or one a --import module registers",
    )
    g.add_argument("--alpha", type=float, default=2.0, help="softmax temperature α (PRIME: 2)")
    g.add_argument("--min-steps", type=int_arg(1), default=1, help="never exit before this step")
    g.add_argument(
        "--out",
        type=Path,
        help="folder for the report (default RUN_DIR/early-exit, or RUN_DIR/read-noise)",
    )


def run_early_exit(args: argparse.Namespace, periphery: ReadPathConfig | None = None) -> int:
    from prime.runs.evaluation import early_exit_run

    r = early_exit_run(
        args.run_dir,
        args.out,
        read_noise=args.read_noise,
        noise_seed=args.noise_seed,
        chip_seed=args.chip_seed,
        replay=replay_options(args),
        periphery=periphery,
        device=args.device,
        policy=args.policy,
        threshold=args.threshold,
        target_drop_pp=args.target_drop,
        min_steps=args.min_steps,
        alpha=args.alpha,
        batch_size=args.batch_size,
    )
    how = f"θ = {r['threshold']:g}"
    if "calibration" in r:
        c = r["calibration"]
        how += (
            f", calibrated on {c['val_samples']} validation samples for a "
            f"{c['target_drop_pp']:g}-point drop (validation {100 * c['accuracy']:.2f} % vs "
            f"{100 * c['full_accuracy']:.2f} % at full T)"
        )
    per_class = ", ".join(
        f"{c}: {s:.2f}" for c, s in enumerate(r["per_class_steps"]) if s is not None
    )
    print(
        f"{r['model']} on {r['dataset']} ({r['chip']}, read noise σ {r['read_noise']:g}), "
        f"early exit ({r['policy']} policy, α {r['alpha']:g}, {how}, min steps "
        f"{r['min_steps']}):\n"
        f"test accuracy {100 * r['accuracy']:.2f} % (full T {100 * r['full_accuracy']:.2f} %) "
        f"over {r['samples']} samples; mean steps {r['mean_steps']:.2f} of "
        f"{r['timesteps']}, load saved {100 * r['load_saved']:.1f} %\n"
        f"mean steps per class: {per_class}\n"
        f"wrote sweep.csv, accuracy_vs_steps.png, steps_histogram.png, early_exit.json "
        f"to {r['out_dir']}"
    )
    return 0
