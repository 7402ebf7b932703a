"""What determines a model's chip and initial scores: :class:`ModelConfig` (checkpoints
store it; :func:`prime.snn.models.build_model` builds the same network from it)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from prime.core.errors import PrimeError

#: PRIME's fixed conductance-to-weight scale (reference code ``software_scale``).
PRIME_SCALE = 0.01
SYNAPSES = ("supermask", "weights")
#: how a pair's cells make a weight: ``pair``, the signed G+ - G- (prime's default);
#: ``random-sign``, |G+ - G-| times a random sign fixed in software (the pruning paper's
#: ``self.sign * |hardware_weight|``, :func:`prime.hardware.readpath.orient`)
WEIGHT_SIGNS = ("pair", "random-sign")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that determines a model's chip and initial scores."""

    name: str
    device_model: dict[str, Any] = field(default_factory=lambda: {"name": "prime-gaussian"})
    chip_seed: int = 0
    score_seed: int = 0
    keep: float = 0.5
    scale: float | str = "matched"  # prime.snn.layers.matched_scale
    mask_rule: str = "topk"
    mask_scope: str = "layer"
    timesteps: int | None = None
    #: the read path's configuration (:class:`~prime.hardware.readpath.ReadPathConfig`;
    #: empty: ideal)
    read_path: dict[str, Any] = field(default_factory=dict)
    #: neuron kind (:data:`prime.snn.neurons.NEURON_KINDS`): PRIME's LIF with a LeakyReLU on
    #: the membrane, or the standard LIF (exact in NIR)
    neuron: str = "prime"
    #: ``"supermask"`` (random crossbars, learned masks) or ``"weights"`` (plain trainable
    #: weights of the same architecture: the software model that programmed-weight
    #: baselines write onto a chip, :mod:`prime.hardware.programming`)
    synapses: str = "supermask"
    #: bits of the activation quantisers models place before their crossbars
    #: (:mod:`prime.snn.quantize`); None: none
    activation_bits: int | None = None
    activation_quantizer: str = "uniform"
    weight_sign: str = "pair"  # WEIGHT_SIGNS

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> ModelConfig:
        config = dict(config)
        if "device" in config and "device_model" not in config:  # runs before the rename
            config["device_model"] = config.pop("device")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise PrimeError(f"model config has unknown fields: {', '.join(unknown)}")
        return cls(**config)

    def __post_init__(self) -> None:
        if self.synapses not in SYNAPSES:
            raise PrimeError(f"unknown synapses {self.synapses!r}; known: {', '.join(SYNAPSES)}")
        if self.weight_sign not in WEIGHT_SIGNS:
            raise PrimeError(
                f"unknown --weight-sign {self.weight_sign!r}; known: {', '.join(WEIGHT_SIGNS)}"
            )
