"""prime: spiking neural networks on random memristor arrays that learn their topology.

The names a user builds on, re-exported from the subpackages that own them
(docs/architecture.md draws the layout)::

    import prime
    model = prime.get_model("nmnist-conv", device_model="rram-lognormal", chip_seed=3)
    data = prime.load_dataset("digits")
    chip = prime.convert(torch_model, input_shape=(1, 28, 28), timesteps=10, mode="program")
"""

from prime.analysis.energy.counting import OperationCounts, count_operations
from prime.analysis.energy.models import get_energy_model, load_energy_model
from prime.core.errors import PrimeError
from prime.data import list_datasets, load_dataset
from prime.hardware.devices import get_device, list_devices
from prime.hardware.readpath import ReadPathConfig
from prime.inference.early_exit import (
    calibrate_threshold,
    evaluate_early_exit,
    get_policy,
    run_early_exit,
)
from prime.inference.evaluate import evaluate
from prime.interop.convert import convert
from prime.runs.config import TrainConfig
from prime.runs.rundir import load_run
from prime.runs.train import train
from prime.snn.layers import MemristorConv2d, MemristorLinear
from prime.snn.models import get_model, list_models
from prime.snn.network import SpikingNetwork
from prime.snn.neurons import LIF, Integrator, LIFParams, SubtractiveLIF
from prime.version import __version__

__all__ = [
    "LIF",
    "Integrator",
    "LIFParams",
    "MemristorConv2d",
    "MemristorLinear",
    "OperationCounts",
    "PrimeError",
    "ReadPathConfig",
    "SpikingNetwork",
    "SubtractiveLIF",
    "TrainConfig",
    "__version__",
    "calibrate_threshold",
    "convert",
    "count_operations",
    "evaluate",
    "evaluate_early_exit",
    "get_device",
    "get_energy_model",
    "get_model",
    "get_policy",
    "list_datasets",
    "list_devices",
    "list_models",
    "load_dataset",
    "load_energy_model",
    "load_run",
    "run_early_exit",
    "train",
]
