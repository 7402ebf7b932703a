"""The PRIME authors' N-MNIST checkpoint through a periphery, at several ADC resolutions.

Loads ``classification.pt`` (:func:`prime.snn.reference.load_prime_reference`) and the real
N-MNIST recordings (:func:`prime.data.nmnist.load_nmnist`, time bins, T = 10), calibrates the
periphery's open ranges on a few seeded batches of the recordings
(:func:`prime.inference.calibrate.calibrate_periphery`), and evaluates every recording with
the ideal path and with ``--periphery`` at each of ``--adc-bits``; accuracies in one table.

    python scripts/eval_reference_periphery.py --periphery prime-512 --adc-bits 8,6,4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch.utils.data import ConcatDataset

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
    parser.add_argument("--json", type=Path, help="write the accuracies to this JSON file")
    args = parser.parse_args(argv)
    data = load_nmnist(10, data_path=str(args.reference / "nmnist"))
    recordings = ConcatDataset([data.train, data.test])
    base = load_periphery(args.periphery)
    rows = []
    points = [("ideal", IDEAL)] + [
        (
            f"{args.periphery}, ADC {bits} bits",
            ReadPathConfig.from_dict({**base.to_dict(), "adc_bits": bits}),
        )
        for bits in map(int, args.adc_bits.split(","))
    ]
    for name, periphery in points:
        model = load_prime_reference(
            args.reference / "prime" / "classification.pt", read_path=periphery.to_dict()
        )
        calibrate_periphery(model, recordings, seed=0)
        result = evaluate(model, recordings)
        rows.append({"periphery": name, **periphery.to_dict(), **result})
        print(f"{name:32} {100 * result['accuracy']:6.2f} % of {result['samples']} recordings")
    if args.json:
        write_json(args.json, {"rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
