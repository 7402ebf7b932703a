"""Accuracy against time since forming of the PRIME authors' N-MNIST checkpoint.

Loads ``classification.pt`` into ``nmnist-conv`` and evaluates it on every recording of an
N-MNIST folder (tonic's layout; the 1,000 reference recordings: ``Train/``), aged by an
ageing model (:mod:`prime.hardware.ageing`), ``--repeats`` relaxation seeds per age, and
writes ``age.csv``, ``age_repeats.csv``, ``age.json`` and ``age.png`` to ``--out``.

    python scripts/age_reference.py ../shared/reference/prime/classification.pt \
        ../shared/reference/nmnist --ages 0,1s,1h,1d,1w --repeats 3 --out runs/age-reference
"""

from __future__ import annotations

import argparse
from pathlib import Path

from torch.utils.data import ConcatDataset

from prime.data.nmnist import load_nmnist
from prime.hardware.ageing import ageing_model, format_age, parse_ages
from prime.inference.robustness import AGE, age_sweep, summarize, write_report
from prime.snn.reference import load_prime_reference


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("nmnist", type=Path, help="folder holding Train/ and/or Test/")
    p.add_argument("--ages", default="0,1s,1h,1d,1w")
    p.add_argument("--age-model", default="wan2022")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--out", type=Path, default=Path("runs/age-reference"))
    args = p.parse_args()

    model = load_prime_reference(args.checkpoint).eval()
    splits = load_nmnist(10, data_path=str(args.nmnist.resolve()))
    parts = [s for s in (splits.train, splits.val, splits.test) if s is not None]
    recordings = ConcatDataset(parts)
    rows = age_sweep(
        model,
        recordings,
        parse_ages(args.ages),
        args.repeats,
        ageing_model(args.age_model),
        batch_size=args.batch_size,
    )
    title = f"PRIME authors' N-MNIST checkpoint, {len(recordings)} recordings"
    paths = write_report(args.out, rows, title, AGE)
    print(f"{title}, ageing model {args.age_model}:")
    for s in summarize(rows, AGE):
        print(
            f"  {format_age(s['age_s']):<6} {100 * s['accuracy_mean']:6.2f} ± "
            f"{100 * s['accuracy_std']:.2f} % ({s['repeats']} seeds)"
        )
    print(f"wrote {', '.join(p.name for p in paths)} to {args.out}")


if __name__ == "__main__":
    main()
