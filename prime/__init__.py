"""prime: spiking neural networks on random memristor arrays that learn their topology."""

__version__ = "0.1.0"
