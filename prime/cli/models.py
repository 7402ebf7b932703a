"""``prime models``: list the registered models and device presets."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list models and device presets", description=__doc__)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from prime.hardware.devices import DEVICES
    from prime.snn.models import list_models, model_spec

    print("models:")
    for name in list_models():
        spec = model_spec(name)
        print(f"  {name:20s} input {spec.input_shape}, T={spec.timesteps}: {spec.description}")
    print("device presets:")
    for name in DEVICES.names():
        doc = (DEVICES.get(name).__doc__ or "").strip().splitlines()[0]
        print(f"  {name:20s} {doc}")
    return 0
