"""The PRIME authors' N-MNIST checkpoint through a periphery, at several ADC resolutions (or,
with ``--r-wire``, several wire resistances and tile sizes: IR drop, docs/ir_drop.md).

Loads ``classification.pt`` (:func:`prime.snn.reference.load_prime_reference`) and the real
N-MNIST recordings (:func:`prime.data.nmnist.load_nmnist`, time bins, T = 10), calibrates the
periphery's open ranges on a few seeded batches of the recordings
(:func:`prime.inference.calibrate.calibrate_periphery`), and evaluates every recording with
the ideal path and with ``--periphery`` at each of ``--adc-bits`` (or at each ``--tile`` and
``--r-wire``); accuracies in one table.

    python scripts/eval_reference_periphery.py --periphery prime-512 --adc-bits 8,6,4
    python scripts/eval_reference_periphery.py --periphery ideal --r-wire 0.5,1,2,5 \
        --tile 512x512,256x256,128x128
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from torch.utils.data import ConcatDataset

from prime.cli.common import tile_arg
from prime.core.io import write_json
from prime.data.nmnist import load_nmnist
from prime.hardware.periphery import IDEAL, ReadPathConfig, load_periphery
from prime.inference.calibrate import calibrate_periphery
from prime.inference.evaluate import evaluate
from prime.snn.reference import load_prime_reference

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--periphery", default="prime-512")
    parser.add_argument("--adc-bits", default="8,6,4")
    parser.add_argument("--r-wire", help="sweep wire resistances (ohm) instead, e.g. 0.5,1,2")
    parser.add_argument("--tile", default="512x512,256x256,128x128", help="with --r-wire")
    parser.add_argument("--ir-model", default="exact", choices=("exact", "first-order"))
    parser.add_argument("--json", type=Path, help="write the accuracies to this JSON file")
    args = parser.parse_args(argv)
    data = load_nmnist(10, data_path=str(args.reference / "nmnist"))
    recordings = ConcatDataset([data.train, data.test])
    base = load_periphery(args.periphery)
    rows = []
    if args.r_wire:
        changes = [
            (
                f"{args.periphery}, {tile} tiles, {r:g} ohm",
                {"tile_rows": rows, "tile_columns": cols, "r_wordline_ohm": r, "r_bitline_ohm": r},
            )
            for tile, (rows, cols) in zip(
                args.tile.split(","), map(tile_arg, args.tile.split(",")), strict=True
            )
            for r in map(float, args.r_wire.split(","))
        ]
        base = dataclasses.replace(base, ir_model=args.ir_model)
    else:
        changes = [
            (f"{args.periphery}, ADC {bits} bits", {"adc_bits": bits})
            for bits in map(int, args.adc_bits.split(","))
        ]
    points = [("ideal", IDEAL)] + [
        (name, ReadPathConfig.from_dict({**base.to_dict(), **fields})) for name, fields in changes
    ]
    for name, periphery in points:
        model = load_prime_reference(
            args.reference / "prime" / "classification.pt", read_path=periphery.to_dict()
        )
        calibrate_periphery(model, recordings, seed=0)
        result = evaluate(model, recordings)
        rows.append({"periphery": name, **periphery.to_dict(), **result})
        print(
            f"{name:40} {100 * result['accuracy']:6.2f} % of {result['samples']} recordings",
            flush=True,
        )
    if args.json:
        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
