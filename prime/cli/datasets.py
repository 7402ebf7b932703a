"""``prime datasets``: the registered datasets, their files on disk and their frame caches.

Also the data options of ``prime train`` (:func:`add_data_arguments`), which go into
``TrainConfig.data`` as keyword options of the dataset's loader.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

#: ``prime train`` options passed to the dataset's loader when given
DATA_OPTIONS = (
    "data_root",
    "data_path",
    "test_path",
    "split_mode",
    "downsample",
    "encoding",
    "test_fraction",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "datasets",
        help="list datasets and which are present on disk",
        description="List the registered datasets, their default models, the files present "
        "under the data root and the frame caches built there.",
    )
    p.add_argument("--data-root", type=Path, help="data root (default: $PRIME_DATA or datasets/)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prime.data import dataset_spec, list_datasets
    from prime.data.cache import cache_files
    from prime.data.splits import resolve_root

    root = resolve_root(args.data_root, create=False)
    print(f"data root: {root}")
    for name in list_datasets():
        spec = dataset_spec(name)
        print(f"  {name:12s} model {spec.default_model}: {spec.description}")
        on_disk = spec.on_disk(root) if spec.on_disk else "built in, made on first use"
        print(f"  {'':12s} on disk: {on_disk}")
    caches = cache_files(root)
    megabytes = sum(path.stat().st_size for path in caches) / 1e6
    print(f"frame caches: {len(caches)} files, {megabytes:.1f} MB in {root / 'cache'}")
    return 0


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """Dataset options of ``prime train`` (each dataset takes the ones that apply to it)."""
    g = p.add_argument_group("data (see docs/datasets.md)")
    g.add_argument("--data-root", help="data root and cache (default: $PRIME_DATA or datasets/)")
    g.add_argument("--data-path", help="the dataset's folder (tonic layout) or .npz file")
    g.add_argument("--test-path", help="npz: the test .npz (default: split --data-path)")
    g.add_argument(
        "--split-mode",
        choices=("time", "events"),
        help="frames of equal duration or equal event count (nmnist, dvsgesture; default: time)",
    )
    g.add_argument("--downsample", type=int, help="dvsgesture: frame side in pixels (32, 64)")
    g.add_argument("--encoding", choices=("rate", "latency"), help="npz: spike encoding")
    g.add_argument("--test-fraction", type=float, help="test share of a single folder or file")
    g.add_argument("--download", action="store_true", help="let tonic download missing files")


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The data options given on the command line, as ``TrainConfig.data``."""
    options = {name: getattr(args, name) for name in DATA_OPTIONS}
    options = {name: value for name, value in options.items() if value is not None}
    if args.download:
        options["download"] = True
    return options
