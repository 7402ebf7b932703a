"""Energy and latency models: operation counts -> pJ and ns per inference.

:class:`AnalogMacro` and :class:`DigitalAccelerator` are presets in :data:`ENERGY_MODELS`
(every constant's source in its docstring); :func:`load_energy_model` reads user constants
from a JSON file. :class:`Scenario` is one row of a report: a model applied to counts.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prime.analysis.energy.counting import OperationCounts
from prime.core.errors import PrimeError
from prime.core.io import read_json_object
from prime.core.registry import Registry


@dataclass(frozen=True)
class AnalogMacro:
    """An RRAM compute-in-memory macro with digital neurons. Energies in pJ, times in ns.

    Defaults: ISAAC (Shafiee et al., ISCA 2016, Table 6, 32 nm), the standard published
    breakdown of an RRAM crossbar tile, and Horowitz (ISSCC 2014, 45 nm) for digital logic.

    Attributes:
        cell_read_pj: one cell conducting during one evaluation. ISAAC: a 128x128 array
            draws 0.3 mW over its 100 ns read cycle, 30 pJ / 16384 cells = 0.0018 pJ.
        row_drive_pj: one row driven (1-bit DAC + driver). ISAAC: 1024 1-bit DACs draw
            4 mW, 4 mW x 100 ns / 1024 = 0.39 pJ per row per evaluation.
        adc_pj: one ADC conversion. ISAAC: 8-bit SAR ADC, 2 mW at 1.28 GS/s = 1.56 pJ.
        neuron_update_pj: one digital LIF update: a 32-bit add (0.1 pJ) for the input
            current and an 8-bit multiply (0.2 pJ) for the leak, Horowitz 2014.
        digital_op_pj: one digital control/accumulate op, one per ADC conversion (shift-add
            of the converted column into the neuron current): a 32-bit add, Horowitz 2014.
        conversions_per_output: 1 when the G+ and G- column currents are subtracted in
            analog before one conversion (differential sensing), 2 when both are converted.
        read_ns: row drive and settling per evaluation. ISAAC's 100 ns cycle is set by its
            ADC; we take 10 ns, an assumption (RRAM reads settle in about 10 ns).
        adc_ns: one conversion: 1 / 1.28 GS/s = 0.78 ns (ISAAC).
        columns_per_adc: columns sharing one ADC (converted one after another). ISAAC: 128.
        neuron_step_ns: one parallel neuron update of a layer: one 1 GHz cycle (assumption).
        adc_reference_bits: the resolution ``adc_pj`` and ``adc_ns`` are for (ISAAC: 8).
        word_bits: the digital unit's word where the periphery leaves it floating (32).
        multiply_pj: one ``word_bits`` multiply (the affine correction of a conversion):
            a 32-bit integer multiply, 3.1 pJ, Horowitz 2014.

    Where a layer's periphery (its ``read_path`` in the counts,
    :class:`~prime.hardware.periphery.ReadPathConfig`) is not ideal, the energy follows it:
    conversions per row tile and per converted column (2 per output where the G+ and G-
    columns are converted apart); an n-bit conversion costs ``adc_pj * 2^(n - 8)`` (a
    constant Walden figure of merit, E = FOM 2^n, Walden, IEEE JSAC 1999, fixed at ISAAC's
    8-bit SAR ADC: 6.1 fJ per level) and ``adc_ns * n / 8`` (a SAR converter decides one bit
    per cycle); graded inputs drive each active row through an n-bit DAC at ``n`` times the
    1-bit driver's energy (an assumption: ISAAC gives 1-bit drivers only); the digital unit
    corrects every conversion (a multiply and an add) and adds the tiles' partial sums, each
    at its word width, adds at ``digital_op_pj * bits / 32`` and multiplies at ``multiply_pj
    (bits / 32)^2`` (Horowitz: an 8-bit add 0.03 pJ, a multiply 0.2 pJ).
    """

    kind: str = "analog"
    description: str = "RRAM crossbar macro (ISAAC 32 nm constants, Horowitz 45 nm neurons)"
    cell_read_pj: float = 0.0018
    row_drive_pj: float = 0.39
    adc_pj: float = 1.56
    neuron_update_pj: float = 0.3
    digital_op_pj: float = 0.1
    conversions_per_output: int = 1
    read_ns: float = 10.0
    adc_ns: float = 0.78
    columns_per_adc: int = 128
    neuron_step_ns: float = 1.0
    adc_reference_bits: int = 8
    word_bits: int = 32
    multiply_pj: float = 3.1

    def energy_pj(self, counts: OperationCounts, pruned: bool = True) -> dict[str, float]:
        """Energy per inference by component and their ``total``, pJ; ``pruned=False``
        keeps every cell. Plain digital layers' multiply-accumulates and every bias
        addition are the digital unit's (a multiply and an add each; an add)."""
        digital_mac_pj = self.multiply_pj + self.digital_op_pj
        per_sample = {
            "cells": counts.cell_reads(pruned) * self.cell_read_pj,
            "rows": 0.0,
            "adc": 0.0,
            "digital": counts.total("digital_macs") * digital_mac_pj
            + counts.total("bias_adds") * self.digital_op_pj,
            "neurons": counts.total("neuron_updates") * self.neuron_update_pj,
        }
        for layer in counts.synapse_layers():
            periphery = layer.get("read_path") or {}
            c = layer["counts"]
            conversions = sum(c["evaluations"]) * self.conversions_per_evaluation(layer)
            dac_bits = periphery.get("dac_bits") or 1
            graded = sum(c["macs"]) > 0  # inputs other than spikes
            per_sample["rows"] += (
                sum(c["row_activations"]) * self.row_drive_pj * (dac_bits if graded else 1)
            )
            per_sample["adc"] += conversions * self.adc_conversion_pj(periphery.get("adc_bits"))
            per_sample["digital"] += conversions * self.digital_op_pj
            if periphery.get("adc_bits") is not None or periphery.get("digital_bits"):
                bits = periphery.get("digital_bits") or self.word_bits
                add_pj = self.digital_op_pj * bits / 32
                partial_sums = sum(c["evaluations"]) * layer["outputs"]
                partial_sums *= layer.get("row_tiles", 1) - 1
                correction_pj = self.multiply_pj * (bits / 32) ** 2 + add_pj
                per_sample["digital"] += conversions * correction_pj + partial_sums * add_pj
        return with_total({k: v / max(counts.samples, 1) for k, v in per_sample.items()})

    def conversions_per_evaluation(self, layer: dict[str, Any]) -> int:
        """ADC conversions of one evaluation of a counted synapse layer: per converted
        column (G+ and G- apart, or their difference) and per row tile."""
        periphery = layer.get("read_path") or {}
        per_output = 2 if periphery.get("separate_columns") else self.conversions_per_output
        return layer["outputs"] * per_output * layer.get("row_tiles", 1)

    def adc_conversion_pj(self, bits: int | None) -> float:
        """One conversion at ``bits`` (None: the reference converter), constant Walden FOM."""
        return self.adc_pj * 2.0 ** ((bits or self.adc_reference_bits) - self.adc_reference_bits)

    def latency_ns(self, counts: OperationCounts) -> float:
        """Time per inference: layers in sequence, evaluations of a layer one after another."""
        total = 0.0
        for layer in counts.synapse_layers():
            conversions = self.conversions_per_evaluation(layer)
            bits = (layer.get("read_path") or {}).get("adc_bits") or self.adc_reference_bits
            adcs = math.ceil(conversions / self.columns_per_adc)
            adc_ns = self.adc_ns * bits / self.adc_reference_bits
            eval_ns = self.read_ns + math.ceil(conversions / adcs) * adc_ns
            total += sum(layer["counts"]["evaluations"]) * eval_ns
        neuron_layers = sum(layer["kind"] == "neuron" for layer in counts.layers)
        total += sum(counts.sample_steps) * neuron_layers * self.neuron_step_ns
        return total / max(counts.samples, 1)

    def synaptic_ops(self, counts: OperationCounts, pruned: bool = True) -> float:
        """Synaptic operations per inference: kept (``pruned``) or all pairs on active rows."""
        return counts.cell_reads(pruned) / 2 / max(counts.samples, 1)


@dataclass(frozen=True)
class DigitalAccelerator:
    """A digital accelerator: dense (every multiply-accumulate of every frame) or
    event-driven (only the effective synaptic operations, as SpikingJelly estimates SNNs).

    Attributes:
        mac_pj: one multiply-accumulate (fp32 45 nm: 3.7 pJ multiply + 0.9 pJ add = 4.6 pJ,
            Horowitz, ISSCC 2014; the constant SpikingJelly uses).
        ac_pj: one accumulate (fp32 add, 0.9 pJ, Horowitz 2014); event-driven only.
        neuron_update_pj: one neuron update, counted as one MAC (leak multiply + add).
        macs_per_ns: throughput for latency: Eyeriss (Chen et al., JSSC 2017), 168 PEs at
            200 MHz = 33.6 MAC/ns, an assumption for a dense accelerator.
        event_driven: count ``acs`` x ``ac_pj`` + ``macs`` x ``mac_pj`` instead of all
            ``dense_ops`` x ``mac_pj``.
    """

    kind: str = "digital"
    description: str = "dense digital accelerator, fp32 at 45 nm (Horowitz 2014)"
    mac_pj: float = 4.6
    ac_pj: float = 0.9
    neuron_update_pj: float = 4.6
    macs_per_ns: float = 33.6
    event_driven: bool = False

    def energy_pj(self, counts: OperationCounts, pruned: bool = True) -> dict[str, float]:
        """Energy per inference by component and their ``total``, pJ (``pruned`` is
        ignored: the weights tell). Plain digital layers' multiply-accumulates count as
        MACs, bias additions as accumulates."""
        digital = counts.per_sample("digital_macs") * self.mac_pj
        digital += counts.per_sample("bias_adds") * self.ac_pj
        if self.event_driven:
            synapses = {
                "acs": counts.per_sample("acs") * self.ac_pj,
                "macs": counts.per_sample("macs") * self.mac_pj + digital,
            }
        else:
            synapses = {"macs": counts.per_sample("dense_ops") * self.mac_pj + digital}
        neurons = counts.per_sample("neuron_updates") * self.neuron_update_pj
        return with_total({**synapses, "neurons": neurons})

    def latency_ns(self, counts: OperationCounts) -> float:
        return (self.synaptic_ops(counts) + counts.per_sample("neuron_updates")) / self.macs_per_ns

    def synaptic_ops(self, counts: OperationCounts, pruned: bool = True) -> float:
        """Synaptic operations per inference: effective (event-driven) or dense, and every
        MAC of the plain digital layers."""
        digital = counts.per_sample("digital_macs")
        if self.event_driven:
            return counts.per_sample("acs") + counts.per_sample("macs") + digital
        return counts.per_sample("dense_ops") + digital


def with_total(components: dict[str, float]) -> dict[str, float]:
    """Energy components (pJ) and their sum as ``total``."""
    return {**components, "total": sum(components.values())}


EnergyModel = AnalogMacro | DigitalAccelerator
M = TypeVar("M", AnalogMacro, DigitalAccelerator)
ENERGY_MODELS: Registry[EnergyModel] = Registry("energy model")
ENERGY_MODELS.register("rram-macro")(AnalogMacro())
ENERGY_MODELS.register("digital-45nm-fp32")(DigitalAccelerator())
# GPU: 0.48 pJ per operation, the GPU figure of the PRIME authors' group as cited in issue #6
# (not re-derived here). Throughput: an A100's 19.5 fp32 TFLOPS peak = 9750 MAC/ns, an
# optimistic bound (small-batch SNN inference runs far from peak).
ENERGY_MODELS.register("gpu")(
    DigitalAccelerator(
        description="GPU-class digital baseline, 0.48 pJ per operation",
        mac_pj=0.48,
        ac_pj=0.48,
        neuron_update_pj=0.48,
        macs_per_ns=9750.0,
    )
)

_KINDS = {"analog": AnalogMacro, "digital": DigitalAccelerator}


def get_energy_model(name: str) -> EnergyModel:
    return ENERGY_MODELS.get(name)


def energy_model_of_kind(name: str, kind: type[M]) -> M:
    """The preset ``name``, which must be a ``kind`` (``PrimeError`` if it is not)."""
    model = ENERGY_MODELS.get(name)
    if not isinstance(model, kind):
        raise PrimeError(f"energy model {name!r} is {model.kind}, not {kind.__name__}")
    return model


def load_energy_model(path: str | Path) -> EnergyModel:
    """A model from a JSON file: ``{"base": PRESET, FIELD: VALUE, ...}`` or
    ``{"kind": "analog"|"digital", FIELD: VALUE, ...}``; unset fields keep the defaults.

    Without a ``description`` of its own the model is described by its base and the
    constants the file changes (the preset's description names its sources, which the file's
    constants no longer are)."""
    spec = read_json_object(path, "energy constants")
    if "base" in spec:
        label = f"{spec['base']} preset"
        base = get_energy_model(spec.pop("base"))
    else:
        kind = spec.pop("kind", None)
        if kind not in _KINDS:
            raise PrimeError(f"{path}: give 'base' (a preset) or 'kind' ({', '.join(_KINDS)})")
        label, base = f"{kind} defaults", _KINDS[kind]()
    if "description" not in spec:
        changed = ", ".join(f"{name} {value}" for name, value in spec.items())
        spec["description"] = f"{label} with {changed or 'no change'} ({Path(path).name})"
    return with_constants(base, spec, source=str(path))


def with_constants(model: EnergyModel, constants: dict[str, Any], source: str) -> EnergyModel:
    """``model`` with some constants replaced; unknown names and bad values fail."""
    fields = {f.name: f for f in dataclasses.fields(model) if f.name != "kind"}
    unknown = sorted(set(constants) - set(fields))
    if unknown:
        raise PrimeError(
            f"{source}: unknown constants {', '.join(unknown)}; known: {', '.join(fields)}"
        )
    for name, value in constants.items():
        kind = fields[name].type
        if kind in ("str", "bool"):
            if type(value).__name__ != kind:
                expected = "text" if kind == "str" else "true or false"
                raise PrimeError(f"{source}: {name} must be {expected}, got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise PrimeError(f"{source}: {name} must be a number > 0, got {value!r}")
        elif kind == "int" and value != int(value):
            raise PrimeError(f"{source}: {name} must be a whole number, got {value!r}")
    return dataclasses.replace(model, **constants)


@dataclass
class Scenario:
    """One row of the report: an energy model applied to one run's counts."""

    name: str
    model: EnergyModel
    counts: OperationCounts
    pruned: bool = True
    accuracy: float | None = None
    energy: dict[str, float] = field(init=False)

    def __post_init__(self) -> None:
        self.energy = self.model.energy_pj(self.counts, self.pruned)

    @property
    def energy_pj(self) -> float:
        return self.energy["total"]

    @property
    def latency_ns(self) -> float:
        return self.model.latency_ns(self.counts)

    @property
    def synaptic_ops(self) -> float:
        return self.model.synaptic_ops(self.counts, self.pruned)

    def versus(self, baseline: Scenario) -> dict[str, float]:
        """× energy efficiency, % computational load saved and × latency (speed-up)."""
        return {
            "energy_efficiency_x": baseline.energy_pj / self.energy_pj,
            "load_saved_pct": 100 * (1 - self.synaptic_ops / baseline.synaptic_ops),
            "speedup_x": baseline.latency_ns / self.latency_ns,
        }
