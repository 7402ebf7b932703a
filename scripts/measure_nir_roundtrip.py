"""How closely snnTorch's NIR reader reproduces prime on the 24 golden inputs.

The PRIME authors' N-MNIST model is exported (``readout="currents"``), read by snnTorch's
``import_from_nir`` and run one sample at a time; the output currents summed over time are
compared with prime's output integrator, for the standard LIF (exact) and PRIME's neuron
(nearest NIR LIF: its LeakyReLU is lost). Prints the largest |difference|, the largest
|output| and the fraction of equal predictions. Needs ../shared/reference and nir, nirtorch.

    PYTHONPATH=$PWD python scripts/measure_nir_roundtrip.py
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import snntorch.utils
import torch
from snntorch.import_nir import import_from_nir

from prime.interop.nir_export import export_nir
from prime.snn.neurons import LIF, Integrator
from prime.snn.reference import load_prime_reference

REFERENCE = Path(__file__).resolve().parents[1].parent / "shared" / "reference" / "prime"


def roundtrip(neuron: str) -> dict[str, float]:
    """The authors' model with ``neuron`` ("lif": leak slope 1, "prime": its own) exported,
    read back by snnTorch and run on the golden inputs: the largest output difference, the
    largest output, the fraction of equal predictions and the number of inputs."""
    golden = np.load(REFERENCE / "prime_golden.npz")
    x = torch.from_numpy(golden["inputs"]).float().transpose(0, 1)
    model = load_prime_reference(REFERENCE / "classification.pt")
    for m in model.modules() if neuron == "lif" else ():
        if isinstance(m, LIF):
            m.params = dataclasses.replace(m.params, leak_slope=1.0)
        elif isinstance(m, Integrator):
            m.leak_slope = 1.0
    with torch.no_grad():
        expected = model(x)
        net = import_from_nir(export_nir(model, readout="currents"))
        outs = []
        for b in range(x.shape[1]):
            snntorch.utils.reset(net)
            outs.append(torch.stack([net(frame[b])[0] for frame in x]).cumsum(0))
    out = torch.stack(outs, 1)
    agree = (out.mean(0).argmax(1) == expected.mean(0).argmax(1)).float().mean()
    return {
        "max_diff": float((out - expected).abs().max()),
        "max_out": float(expected.abs().max()),
        "equal": float(agree),
        "inputs": x.shape[1],
    }


def main() -> int:
    for neuron in ("lif", "prime"):
        r = roundtrip(neuron)
        print(
            f"{neuron:5s}: max |snnTorch - prime| {r['max_diff']:.3g} "
            f"(max |output| {r['max_out']:.3g}), predictions equal "
            f"{100 * r['equal']:.1f} % of {r['inputs']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
