"""``prime bench BENCHMARK RUN``: benchmarks of a trained run.

Each benchmark is a sub-subcommand registered in :data:`BENCHMARKS` (name -> function adding
its parser); ``energy`` reports energy and latency per inference.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prime.cli.common import (
    add_compute_arguments,
    add_quiet_argument,
    apply_compute_arguments,
    int_arg,
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark a trained run (energy, ...)", description=__doc__)
    benchmarks = p.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for add in BENCHMARKS.values():
        add(benchmarks)


def add_energy(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "energy",
        help="energy and latency per inference: digital vs analog macro, pruning, early exit",
        description="Count operations while the run's test split is evaluated (full T and "
        "with early exit) and turn the counts into energy and latency per inference: digital "
        "dense baseline -> analog macro -> + pruning -> + early exit. Writes energy.json "
        "(every count), energy.md (tables) and energy.png (bar chart).",
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by prime train")
    p.add_argument("--out", type=Path, help="output folder (default: RUN_DIR/bench)")
    p.add_argument("--force", action="store_true", help="overwrite an earlier report")
    p.add_argument("--analog", default="rram-macro", help="analog energy model preset")
    p.add_argument("--baseline", default="digital-45nm-fp32", help="digital baseline preset")
    p.add_argument(
        "--analog-constants",
        type=Path,
        help='JSON file of analog constants, e.g. {"base": "rram-macro", "adc_pj": 0.5}',
    )
    p.add_argument("--baseline-constants", type=Path, help="JSON file of baseline constants")
    p.add_argument("--policy", default="prime", help="early-exit policy (prime, margin, entropy)")
    p.add_argument("--threshold", type=float, default=0.8, help="early-exit threshold")
    p.add_argument("--min-steps", type=int_arg(1), default=1, help="early exit: fewest steps run")
    p.add_argument("--no-early-exit", action="store_true", help="leave out the early-exit row")
    p.add_argument(
        "--periphery",
        help="count on this periphery (a preset or JSON file, docs/periphery.md; default: the "
        "run's own): conversions per tile and column, ADC energy by bits, DAC, digital unit",
    )
    p.add_argument("--limit", type=int_arg(1), help="count only the first N test samples")
    p.add_argument("--batch-size", type=int_arg(1), default=128)
    add_quiet_argument(p)
    add_compute_arguments(p)
    p.set_defaults(run=run_energy)


def run_energy(args: argparse.Namespace) -> int:
    from prime.analysis.energy.models import (
        AnalogMacro,
        DigitalAccelerator,
        EnergyModel,
        get_energy_model,
        load_energy_model,
    )
    from prime.analysis.energy.report import format_report
    from prime.core.errors import PrimeError
    from prime.hardware.periphery import load_periphery
    from prime.runs.evaluation import bench_energy

    apply_compute_arguments(args)
    models: dict[str, EnergyModel] = {}
    for role, kind in (("analog", "analog"), ("baseline", "digital")):
        path = getattr(args, f"{role}_constants")
        model = load_energy_model(path) if path else get_energy_model(getattr(args, role))
        if model.kind != kind:
            raise PrimeError(f"--{role} needs a model of kind {kind!r}, got {model.kind!r}")
        models[role] = model
    early_exit = None
    if not args.no_early_exit:
        early_exit = dict(policy=args.policy, threshold=args.threshold, min_steps=args.min_steps)
    analog, baseline = models["analog"], models["baseline"]
    assert isinstance(analog, AnalogMacro) and isinstance(baseline, DigitalAccelerator)  # kinds
    out = args.out or args.run_dir / "bench"
    report = bench_energy(
        args.run_dir,
        out,
        analog,
        baseline,
        early_exit,
        batch_size=args.batch_size,
        limit=args.limit,
        force=args.force,
        progress=not args.quiet,
        periphery=None if args.periphery is None else load_periphery(args.periphery),
        device=args.device,
    )
    print(format_report(report), end="")
    print(f"-> {out}/energy.json, energy.md, energy.png")
    return 0


def add_neurobench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "neurobench",
        help="NeuroBench's own harness on the run (needs the neurobench package)",
        description="Run NeuroBench's Benchmark on the run's test split, the network wrapped "
        "as a NeuroBench model (prime.interop.neurobench): footprint, connection sparsity, "
        "activation sparsity, synaptic operations (dense, effective MACs/ACs), accuracy; "
        "beside them prime's own counters of the same run (docs/interop.md).",
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by prime train")
    p.add_argument("--limit", type=int_arg(1), help="only the first N test samples")
    p.add_argument("--batch-size", type=int_arg(1), default=64)
    add_compute_arguments(p)
    p.set_defaults(run=run_neurobench)


def run_neurobench(args: argparse.Namespace) -> int:
    import json

    from prime.runs.evaluation import neurobench_run

    apply_compute_arguments(args)
    report = neurobench_run(
        args.run_dir, limit=args.limit, batch_size=args.batch_size, device=args.device
    )
    print(json.dumps(report, indent=2))
    return 0


#: benchmark name -> function adding its parser
BENCHMARKS = {"energy": add_energy, "neurobench": add_neurobench}
