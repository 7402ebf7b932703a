"""``prime import FILE.nir``: a network trained elsewhere, programmed onto a chip of prime's
device models and evaluated through its read path (docs/interop.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prime.cli.common import (
    add_compute_arguments,
    apply_compute_arguments,
    device_arg,
    float_arg,
    int_arg,
    seed_arg,
)
from prime.core.resources import MAX_TIMESTEPS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="program a NIR graph onto a chip and evaluate it", description=__doc__
    )
    p.add_argument("nir_file", type=Path, help="a NIR graph (.nir) of linear/conv layers and LIF")
    p.add_argument("--device-model", type=device_arg, default="prime-gaussian")
    p.add_argument("--chip-seed", type=seed_arg, default=0, help="seed of the chip programmed")
    p.add_argument(
        "--weight-quantile",
        type=float,
        default=1.0,
        help="quantile of |w| mapped to the device's largest conductance; larger weights are "
        "clipped (default 1: none)",
    )
    p.add_argument(
        "--programming",
        default="ideal",
        help="how the cells are written: ideal (default: every cell on its target), "
        "write-verify (write noise, verified up to 10 pulses), write-once (one noisy pulse); "
        "the window's top is the device's programmable maximum",
    )
    p.add_argument("--write-seed", type=seed_arg, default=0, help="seed of the write noise")
    p.add_argument(
        "--timesteps",
        type=int_arg(1, MAX_TIMESTEPS),
        help="timesteps T (default: the graph's, or 10)",
    )
    p.add_argument("--dataset", help="evaluate on this dataset's test split")
    p.add_argument(
        "--read-noise", type=float_arg(0), default=0.0, help="multiplicative read noise σ"
    )
    p.add_argument("--noise-seed", type=seed_arg, default=0)
    p.add_argument("--batch-size", type=int_arg(1), default=64)
    add_compute_arguments(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prime.data import load_dataset
    from prime.hardware.devices import device_from_config, get_device
    from prime.inference.evaluate import evaluate
    from prime.interop.nir_import import import_nir, read_nir

    apply_compute_arguments(args)
    graph = read_nir(args.nir_file)
    spec = args.device_model
    device_model = get_device(spec) if isinstance(spec, str) else device_from_config(spec)
    timesteps = args.timesteps or int(graph.metadata.get("timesteps", 10))
    model, report = import_nir(
        graph,
        device_model,
        timesteps,
        args.chip_seed,
        args.weight_quantile,
        programming=args.programming,
        write_seed=args.write_seed,
    )
    print(
        f"{args.nir_file}: {len(report.layers)} layers programmed on {device_model.name} "
        f"({args.programming} programming, write seed {args.write_seed}): {report.pulses} "
        "write pulses"
    )
    for line in report.lines():
        print(f"  {line}")
    if args.dataset:
        data = load_dataset(args.dataset, timesteps=timesteps)
        model.to(args.device)  # programmed on the CPU (its write noise the CPU's), then moved
        model.set_read_noise(args.read_noise, args.noise_seed)
        result = evaluate(model, data.test, batch_size=args.batch_size)
        print(
            f"{args.dataset} test accuracy {100 * result['accuracy']:.2f} % over "
            f"{result['samples']} "
            f"samples (read noise σ {args.read_noise:g})"
        )
    return 0
