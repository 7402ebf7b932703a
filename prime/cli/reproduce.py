"""``prime reproduce nmnist DATA``: check PRIME's N-MNIST results on real recordings.

Trains prime's own nmnist-conv, evaluates the authors' checkpoint when given, calibrates
early exit, measures read noise and energy, and writes report.md, reproduce.json and PNGs
(docs/reproduce.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from prime.cli.common import (
    add_compute_arguments,
    add_quiet_argument,
    apply_compute_arguments,
    int_arg,
    seed_arg,
)
from prime.core.resources import MAX_EPOCHS as EPOCH_LIMIT
from prime.core.resources import MAX_REPEATS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce", help="reproduce a paper's results in one command", description=__doc__
    )
    papers = p.add_subparsers(dest="paper", metavar="PAPER", required=True)
    add_nmnist(papers)
    add_pruning(papers)


def add_nmnist(sub: argparse._SubParsersAction) -> None:
    from prime.cli.train import add_recipe_arguments
    from prime.runs.reproduce.pipeline import EXIT_LOSS, MAX_EPOCHS, RECIPE_AUGMENT, SAMPLES_SEEN

    p = sub.add_parser(
        "nmnist",
        help="PRIME on N-MNIST: accuracy, early exit, read noise, energy",
        description="Reproduce the PRIME N-MNIST results on the recordings in DATA "
        "(tonic's layout: DATA/Train/<digit>/<id>.bin and/or DATA/Test/...; the full "
        "release or any subset). A folder without Test/ is split reproducibly into "
        "train/validation/test. Writes OUT/report.md, OUT/reproduce.json and PNGs. "
        "Training adds augmentation and the per-step loss to the reference recipe; "
        "--shift-px 0 --rotate-deg 0 --zoom 0 --exit-loss 0 gives the plain recipe.",
    )
    p.add_argument("data", type=Path, help="N-MNIST folder holding Train/ and/or Test/")
    p.add_argument(
        "--reference-checkpoint",
        type=Path,
        help="the PRIME authors' classification.pt, evaluated on the same splits",
    )
    p.add_argument("--out", type=Path, default=Path("runs/reproduce-nmnist"))
    p.add_argument(
        "--epochs",
        type=int_arg(1, EPOCH_LIMIT),
        help=f"training epochs (default: ceil({SAMPLES_SEEN} / training recordings), "
        f"at most {MAX_EPOCHS})",
    )
    p.add_argument("--batch-size", type=int_arg(1), default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    add_recipe_arguments(p, **RECIPE_AUGMENT, exit_loss=EXIT_LOSS)
    p.add_argument("--seed", type=seed_arg, default=0, help="training, chip and noise seed")
    p.add_argument("--split-seed", type=seed_arg, default=0, help="seed of the data split")
    p.add_argument("--test-fraction", type=float, default=0.2, help="without Test/ only")
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument(
        "--target-drop", type=float, default=1.0, help="early exit: accuracy drop allowed (pt)"
    )
    p.add_argument("--policies", type=_names, default=("prime", "margin", "entropy"))
    p.add_argument("--min-steps", type=_whole_numbers, default=(1, 2), help="e.g. 1,2")
    p.add_argument("--read-noise", type=_noise_levels, default=(0.0, 0.02, 0.05, 0.1))
    p.add_argument(
        "--repeats",
        type=int_arg(1, MAX_REPEATS),
        default=3,
        help="evaluations per read-noise level",
    )
    p.add_argument("--data-root", type=Path, help="frame cache folder (default: $PRIME_DATA)")
    p.add_argument("--no-energy", action="store_true", help="leave out the energy report")
    p.add_argument("--force", action="store_true", help="start over in an existing --out")
    p.add_argument("--resume", action="store_true", help="continue or reuse OUT/run")
    add_quiet_argument(p)
    add_compute_arguments(p)
    p.set_defaults(run=run_nmnist)


def run_nmnist(args: argparse.Namespace) -> int:
    from prime.cli.train import augment_options
    from prime.runs.reproduce.pipeline import ReproduceConfig, reproduce

    apply_compute_arguments(args)
    config = ReproduceConfig(
        data=args.data,
        out=args.out,
        reference_checkpoint=args.reference_checkpoint,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        augment=augment_options(args),
        exit_loss=args.exit_loss,
        seed=args.seed,
        split_seed=args.split_seed,
        test_fraction=args.test_fraction,
        val_fraction=args.val_fraction,
        target_drop_pp=args.target_drop,
        policies=args.policies,
        min_steps=args.min_steps,
        noise_levels=args.read_noise,
        repeats=args.repeats,
        data_root=args.data_root,
        energy=not args.no_energy,
        force=args.force,
        resume=args.resume,
        progress=not args.quiet,
    )
    results = reproduce(config, device=args.device)
    print((args.out / "report.md").read_text(), end="")
    print(f"-> {args.out}/report.md, reproduce.json, PNGs ({results['wall_seconds']:.0f} s)")
    return 0


def add_pruning(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pruning",
        help="pruning random resistive memory: pruning vs programmed weights",
        description="Reproduce 'Pruning random resistive memory for optimizing analogue AI' "
        "on the spoken-digit features in DATA (train.npz, test.npz) and, with "
        "--fashion-mnist, on FashionMNIST: pruning (with and without mask hysteresis) "
        "against trained weights programmed by write-verify, each with full-precision and "
        "quantised activations. Writes OUT/report.md, OUT/reproduce.json and PNGs "
        "(docs/pruning.md).",
    )
    p.add_argument("data", type=Path, help="folder holding the spoken digits' train/test.npz")
    p.add_argument("--fashion-mnist", type=Path, help="FashionMNIST IDX folder (optional)")
    p.add_argument("--out", type=Path, default=Path("runs/reproduce-pruning"))
    p.add_argument("--epochs", type=int_arg(1, EPOCH_LIMIT), default=20)
    p.add_argument("--batch-size", type=int_arg(1), default=30)
    p.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate of pruning")
    p.add_argument("--weights-lr", type=float, default=1e-3, help="... of the trained weights")
    p.add_argument("--seed", type=seed_arg, default=0, help="training, chip and programming seed")
    p.add_argument("--writer", default="write-verify", help="programming preset")
    p.add_argument(
        "--trace",
        type=Path,
        help="chip trace: adds pruning on its reads (training on read 0, testing one read per "
        "batch, the paper's convention)",
    )
    p.add_argument(
        "--pruned",
        default="reset-positive",
        help="pruned pairs under --trace: zero, reset, reset-positive (the paper's, default)",
    )
    p.add_argument(
        "--weight-sign",
        default="random-sign",
        help="weights under --trace: pair (G+ - G-) or random-sign (|G+ - G-| times a fixed "
        "random sign, the paper's, default)",
    )
    p.add_argument("--analog", default="rram-macro", help="energy model of the chip")
    p.add_argument("--digital", default="gpu", help="energy model of the digital baseline")
    p.add_argument("--limit-train", type=int_arg(1), help="train on this many samples only")
    p.add_argument("--force", action="store_true", help="retrain and overwrite --out")
    add_quiet_argument(p)
    add_compute_arguments(p)
    p.set_defaults(run=run_pruning)


def run_pruning(args: argparse.Namespace) -> int:
    from prime.runs.reproduce.pruning import PruningReproduceConfig, reproduce_pruning

    apply_compute_arguments(args)
    config = PruningReproduceConfig(
        data=args.data,
        fashion_mnist=args.fashion_mnist,
        out=args.out,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weights_lr=args.weights_lr,
        seed=args.seed,
        writer=args.writer,
        trace=args.trace,
        pruned=args.pruned,
        weight_sign=args.weight_sign,
        analog=args.analog,
        digital=args.digital,
        limit_train=args.limit_train,
        force=args.force,
        progress=not args.quiet,
    )
    results = reproduce_pruning(config, device=args.device)
    print((args.out / "report.md").read_text(), end="")
    print(f"-> {args.out}/report.md, reproduce.json, PNGs ({results['wall_seconds']:.0f} s)")
    return 0


def _names(text: str) -> tuple[str, ...]:
    from prime.inference.early_exit import POLICIES

    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in POLICIES.names()]
    if not names or unknown:
        known = ", ".join(POLICIES.names())
        raise argparse.ArgumentTypeError(f"expected policies from {known}, got {text!r}")
    return names


def _whole_numbers(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected whole numbers >= 1 like 1,2, got {text!r}")
    return values


def _noise_levels(text: str) -> tuple[float, ...]:
    from prime.cli.eval import noise_levels_arg

    return tuple(noise_levels_arg(text))
