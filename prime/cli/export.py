"""``prime export RUN_DIR``: a trained run as a NIR graph (``--nir``) and as the chip's
programming file (``--program``): docs/interop.md."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a run: NIR graph, chip programming file", description=__doc__
    )
    p.add_argument("run_dir", type=Path, help="a run directory written by prime train")
    p.add_argument("--nir", type=Path, help="write the network as a NIR graph (.nir, HDF5)")
    p.add_argument(
        "--readout",
        choices=("integrator", "currents"),
        default="integrator",
        help="the output integrator as nir.I (default), or left out: the graph ends with the "
        "output layer's currents (what snnTorch's NIR reader takes)",
    )
    p.add_argument(
        "--program",
        type=Path,
        help="write the cells to reset and keep per tile (HDF5; .csv for small networks)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prime.core.errors import PrimeError
    from prime.interop.chip_program import read_program, write_program
    from prime.interop.nir_export import export_nir, write_nir
    from prime.runs.rundir import load_run, replaying, run_config

    if args.nir is None and args.program is None:
        raise PrimeError("nothing to export: pass --nir FILE.nir and/or --program FILE.h5")
    model, payload = load_run(args.run_dir)
    config = run_config(payload)
    chip = f"trace {config.trace}" if config.trace else f"seed {model.config.chip_seed}"
    with replaying(model, config):
        if args.nir is not None:
            write_nir(args.nir, export_nir(model, args.readout))
            print(f"wrote {args.nir}: {config.model_name} ({chip}, {args.readout} readout)")
        if args.program is not None:
            tiles = write_program(model, args.program, config.tile, chip)
            if args.program.suffix != ".csv":
                read_program(args.program)  # read back and checked
            reset = sum(len(t.reset) for t in tiles)
            keep = sum(len(t.keep) for t in tiles)
            print(
                f"wrote {args.program}: {reset} cells to reset, {keep} to keep on "
                f"{len({t.tile for t in tiles})} {config.tile[0]}x{config.tile[1]} tiles ({chip})"
            )
    return 0
