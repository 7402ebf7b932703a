"""``prime trace``: chip conductance traces (HDF5): inspect, validate, import, fit, synthesise,
plot. The format is specified in hw_traces/README.md."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from prime.cli.common import float_arg, int_arg, seed_arg, tile_arg
from prime.core.resources import MAX_ARRAY_SIDE, MAX_TRACE_READS, check_memory


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="chip conductance traces (HDF5)", description=__doc__)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    info = actions.add_parser("info", help="describe a trace")
    info.add_argument("file", type=Path)
    info.set_defaults(run=run_info)

    validate = actions.add_parser(
        "validate", help="check a trace's schema, units and every value; exit 1 if invalid"
    )
    validate.add_argument("file", type=Path)
    validate.set_defaults(run=run_validate)

    imp = actions.add_parser(
        "import", help="convert a conductance matrix (.npy .npz .csv .mat) to a trace"
    )
    imp.add_argument("file", type=Path, help="[rows, cols] matrix or [n_reads, rows, cols] stack")
    imp.add_argument("--out", type=Path, help="trace to write (default: FILE with .h5)")
    imp.add_argument("--key", help="array name inside .npz/.mat (default: the only one)")
    imp.add_argument("--units", default="uS", help="units of the values: uS, mS, S, nS")
    imp.add_argument("--reset", type=Path, help="matrix of the same cells in the reset state")
    imp.add_argument(
        "--layout",
        choices=("matrix", "set-reset"),
        default="matrix",
        help='set-reset: the pruning paper\'s chip data, a .npz/.pt dict of "set" and "reset" '
        "reads [n_reads, cells]",
    )
    imp.add_argument("--shape", type=tile_arg, help="ROWSxCOLS of flat set-reset reads")
    imp.add_argument("--synthetic", action="store_true", help="label the data synthetic")
    _add_info(imp)
    _add_force(imp)
    imp.set_defaults(run=run_import)

    fit = actions.add_parser("fit", help="fit device models to the formed cells")
    fit.add_argument("file", type=Path)
    fit.add_argument(
        "--unformed-below",
        type=float_arg(0.0),
        default=1.0,
        help="cells below this conductance (µS) count as unformed (default 1)",
    )
    fit.add_argument("--max-reads", type=int_arg(1), help="fit the mean of the first N reads")
    fit.add_argument(
        "--save", type=Path, help="write the fitted preset as JSON for prime train --device-model"
    )
    fit.add_argument(
        "--save-ageing",
        type=Path,
        help="fit the log-time relaxation of reads at several times (/timestamp_s) and write "
        "it as JSON for prime eval --age-model",
    )
    _add_force(fit)
    fit.set_defaults(run=run_fit)

    synth = actions.add_parser("synth", help="generate a synthetic trace from a device preset")
    synth.add_argument("--preset", default="rram-lognormal", help="preset name or JSON file")
    synth.add_argument("--out", type=Path, required=True)
    side = int_arg(1, MAX_ARRAY_SIDE, "the largest array prime synthesises")
    synth.add_argument("--rows", type=side, default=512)
    synth.add_argument("--cols", type=side, default=512)
    synth.add_argument("--reads", type=int_arg(1, MAX_TRACE_READS), default=4)
    synth.add_argument(
        "--read-noise", type=float_arg(0.0), default=0.02, help="σ per read (default 0.02)"
    )
    synth.add_argument("--seed", type=seed_arg, default=0, help="chip and read-noise seed")
    synth.add_argument(
        "--reset-ratio",
        type=float,
        help="also write a reset-state read at this fraction of each formed cell's conductance",
    )
    synth.add_argument("--no-compress", action="store_true", help="store reads uncompressed")
    _add_info(synth)
    _add_force(synth)
    synth.set_defaults(run=run_synth)

    plot = actions.add_parser(
        "plot", help="PNG: conductance histogram with fitted densities, read-to-read variation"
    )
    plot.add_argument("file", type=Path)
    plot.add_argument("--out", type=Path, help="PNG to write (default: FILE with .png)")
    plot.add_argument("--unformed-below", type=float_arg(0.0), default=1.0)
    plot.add_argument("--max-reads", type=int_arg(1), help="use the first N reads")
    _add_force(plot)
    plot.set_defaults(run=run_plot)


def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chip-id", default="unknown")
    p.add_argument("--technology", default="unknown", help="e.g. 'TaOx RRAM, 180 nm 1T1R'")
    p.add_argument("--read-voltage", type=float, default=math.nan, help="read voltage (V)")
    p.add_argument("--temperature", type=float, default=math.nan, help="temperature (K)")
    p.add_argument(
        "--provenance",
        help="who/what produced the data (default: the source file's name, or the synthesis "
        "settings)",
    )


def _add_force(p: argparse.ArgumentParser) -> None:
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")


def _info(args: argparse.Namespace, kind: str, provenance: str):
    from prime.hardware.traces.format import TraceInfo

    return TraceInfo(
        chip_id=args.chip_id,
        technology=args.technology,
        read_voltage_v=args.read_voltage,
        temperature_k=args.temperature,
        provenance_kind=kind,
        provenance=args.provenance or provenance,
    )


def run_info(args: argparse.Namespace) -> int:
    from prime.hardware.traces.format import Trace

    with Trace(args.file) as trace:
        rows, cols = trace.shape
        print(f"{args.file}: {trace.n_reads} reads of a {rows}x{cols} array (µS)")
        print(f"  file size: {args.file.stat().st_size / 1e6:.2f} MB")
        reset = "none" if trace.reset is None else f"{trace.reset.shape[0]} reads"
        print(f"  reset-state reads: {reset}")
        t = trace.timestamps_s
        if t is not None:
            print(f"  timestamps: {t[0]:g} s .. {t[-1]:g} s")
        for key, value in sorted(trace.attrs.items()):
            print(f"  {key}: {value}")
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from prime.hardware.traces.format import validate_trace

    problems = validate_trace(args.file)
    if not problems:
        print(f"{args.file}: valid prime trace")
        return 0
    print(f"{args.file}: INVALID, {len(problems)} problem(s):")
    for problem in problems:
        print(f"  - {problem}")
    return 1


def run_import(args: argparse.Namespace) -> int:
    from prime.hardware.traces.importers import import_matrix, import_set_reset

    out = args.out or args.file.with_suffix(".h5")
    kind = "synthetic" if args.synthetic else "measured"
    info = _info(args, kind, f"imported from {args.file.name}")
    if args.layout == "set-reset":
        import_set_reset(args.file, out, info, args.units, args.shape, args.force)
    else:
        import_matrix(args.file, out, info, args.units, args.key, args.reset, args.force)
    print(f"wrote {out}")
    return 0


def run_fit(args: argparse.Namespace) -> int:
    from prime.core.io import write_json
    from prime.hardware.fitting import fit_trace
    from prime.hardware.traces.format import Trace, check_writable

    with Trace(args.file) as trace:
        fit = fit_trace(trace, args.unformed_below, args.max_reads)
    print(fit.report())
    if fit.preferred == "normal":
        print("note: the saved rram-lognormal preset is the worse fit for these cells")
    if args.save:
        write_json(check_writable(args.save, args.force), fit.device().to_config())
        print(f"wrote {args.save} (use: prime train --device-model {args.save})")
    if args.save_ageing:
        from dataclasses import asdict

        from prime.hardware.fitting import fit_relaxation

        with Trace(args.file) as trace:
            relaxation = fit_relaxation(trace, args.unformed_below, max_reads=args.max_reads)
        print(
            f"relaxation: drift {relaxation.drift_per_decade:.4g} ± "
            f"{relaxation.spread_per_decade:.4g} per decade of t / {relaxation.t0_s:g} s"
        )
        write_json(check_writable(args.save_ageing, args.force), asdict(relaxation))
        use = f"prime eval RUN --age 1d --age-model {args.save_ageing}"
        print(f"wrote {args.save_ageing} (use: {use})")
    return 0


def run_synth(args: argparse.Namespace) -> int:
    import numpy as np

    from prime.cli.common import device_arg
    from prime.hardware.devices import device_from_config
    from prime.hardware.traces.format import write_trace
    from prime.hardware.traces.synthesis import synth_reads

    preset = device_arg(args.preset)
    device = device_from_config({"name": preset} if isinstance(preset, str) else preset)
    check_memory(
        args.rows * args.cols * 4 * 4,  # the formed cells, a read, its noise and a copy
        f"a {args.rows}x{args.cols} synthetic array",
        "choose smaller --rows/--cols",
    )
    reads, reset = synth_reads(
        device, (args.rows, args.cols), args.reads, args.read_noise, args.seed, args.reset_ratio
    )
    provenance = (
        f"prime trace synth: preset {device.to_config()['name']} {_params(device)}, "
        f"seed {args.seed}, read noise σ {args.read_noise:g}"
        + (f", reset ratio {args.reset_ratio:g}" if args.reset_ratio else "")
    )
    write_trace(
        args.out,
        reads,
        _info(args, "synthetic", provenance),
        reset_us=reset,
        timestamps_s=np.arange(args.reads, dtype=np.float64),
        force=args.force,
        compress=not args.no_compress,
    )
    print(f"wrote {args.out}: {provenance}")
    return 0


def _params(device) -> str:
    config = {k: v for k, v in device.to_config().items() if k != "name"}
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} …" for k, v in config.items())


def run_plot(args: argparse.Namespace) -> int:
    from prime.hardware.traces.format import Trace, check_writable
    from prime.hardware.traces.plot import plot_trace

    out = check_writable(args.out or args.file.with_suffix(".png"), args.force)
    with Trace(args.file) as trace:
        plot_trace(trace, out, args.unformed_below, args.max_reads)
    print(f"wrote {out}")
    return 0
