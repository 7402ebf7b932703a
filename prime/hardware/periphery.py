"""The crossbar's periphery: tiles, input DACs, column ADCs and the fixed-point digital unit.

:class:`ReadPathConfig` (frozen) says which stages of the read path
(:mod:`prime.hardware.readpath`) are non-ideal; named presets live in :data:`PERIPHERIES`,
each citing its numbers, and :func:`load_periphery` reads a preset name or a JSON file
(``{"base": PRESET, FIELD: VALUE, ...}`` or plain fields). The quantisers here are pure
functions with straight-through gradients, so masks can be trained through them:

* :func:`uniform_quantise`: an n-bit converter over ``[low, low + span]``; rounding to the
  nearest level, clipping outside. Gradient: 1 inside the range, 0 where it clips.
* :func:`fixed_point`: a signed two's-complement word of ``bits`` bits with ``frac_bits``
  fraction bits; rounding, saturation (never wrap-around). Gradient: 1 unless saturated.
* :func:`adc_convert`: the non-ideal ADC of Ghosh et al. (arXiv 2408.06390): per-column
  gain and offset, a smooth bow non-linearity (INL), conversion noise, all in LSB.

:class:`FixedPoint` is a word format as a value (the neurons' membranes,
:meth:`ReadPathConfig.membrane_words`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prime.core.device import drawn_like
from prime.core.errors import PrimeError
from prime.core.io import read_json_object
from prime.core.registry import Registry
from prime.hardware.ir_drop import TRANSFER_MODELS, WireParams
from prime.kernels.quantise import ColumnQuantiser, quantise_columns

#: widest converter or word prime simulates (float32 holds 24-bit integers exactly)
MAX_BITS = 32
#: the fields of the neurons' fixed point (:meth:`ReadPathConfig.membrane_words`), no stage
#: of the crossbar's path
NEURON_FIELDS = ("neuron_bits", "membrane_integer_bits", "integrator_integer_bits")


@dataclass(frozen=True)
class ReadPathConfig:
    """The periphery of every crossbar of a model (all ideal by default).

    Attributes:
        tile_rows: crossbar rows per tile; a layer with a larger fan-in is split onto
            several tiles whose partial sums the digital unit adds. None: one tile per layer.
        tile_columns: crossbar columns per tile (G+ and G- columns both count); sets the
            tiles, and so the ADCs and conversions, that energy counts. None: one tile wide.
        separate_columns: convert the G+ and G- columns apart (two conversions per output,
            subtracted digitally) instead of their current difference (one per output pair).
        dac_bits: resolution of the input drive (a parallel n-bit DAC per row, one cycle);
            None: exact drive. Spikes (0/1) are exact at any resolution.
        dac_range: the DAC's full scale, in input units (event counts, features); None:
            calibrated per layer as the largest input of a few training batches.
        adc_bits: resolution of the column ADCs; None: ideal conversion.
        adc_range_ua: the ADC full scale (µA for inputs in V; the G+/G- difference spans
            ± this); None: calibrated per tile and column on a few training batches.
        adc_gain_sigma: relative σ of each column ADC's gain (drawn per chip).
        adc_offset_lsb: σ of each column ADC's offset, LSB (drawn per chip).
        adc_inl_lsb: σ of each column ADC's bow non-linearity at mid-scale, LSB (per chip).
        adc_noise_lsb: σ of the noise of each conversion, LSB (drawn every read).
        correct_variation: the digital unit's per-column affine correction also removes the
            chip's measured gain and offset (a calibrated macro); False: nominal correction,
            the variation is left for training to absorb (Ghosh et al.).
        digital_bits: width of the digital unit's signed fixed-point words (partial sums
            and layer outputs); the integer bits of each layer's words come from its
            calibrated range, the rest are fraction bits. None: floating point.
        fold_batch_norm: in evaluation, the digital unit's per-column affine correction
            also applies the batch norm (and channel bias) right after each crossbar
            (:func:`prime.snn.digital.fold_batch_norms`), so it is computed in the unit's
            fixed point instead of floating point after it.
        neuron_bits: width of the neurons' signed fixed-point membrane words (the LIF
            update: decay, LeakyReLU, threshold, reset; the output integrator); their
            constants are rounded to the same fraction bits. None: floating point.
        membrane_integer_bits: integer bits of the LIF membranes' words (the rest of
            ``neuron_bits`` less the sign are fraction bits).
        integrator_integer_bits: integer bits of the output integrator's words.
    """

    tile_rows: int | None = None
    tile_columns: int | None = None
    separate_columns: bool = False
    dac_bits: int | None = None
    dac_range: float | None = None
    adc_bits: int | None = None
    adc_range_ua: float | None = None
    adc_gain_sigma: float = 0.0
    adc_offset_lsb: float = 0.0
    adc_inl_lsb: float = 0.0
    adc_noise_lsb: float = 0.0
    correct_variation: bool = False
    digital_bits: int | None = None
    fold_batch_norm: bool = False
    neuron_bits: int | None = None
    membrane_integer_bits: int = 4
    integrator_integer_bits: int = 8
    r_wordline_ohm: float = 0.0
    r_bitline_ohm: float = 0.0
    ir_model: str = "exact"
    ir_refresh: int = 25

    def __post_init__(self) -> None:
        for name in ("tile_rows", "tile_columns"):
            _check_whole(name, getattr(self, name), 1, None)
        if self.tile_columns is not None and self.separate_columns and self.tile_columns % 2:
            raise PrimeError(
                f"tile_columns={self.tile_columns} splits a G+/G- pair; give an even number"
            )
        for name in ("dac_bits", "adc_bits", "digital_bits", "neuron_bits"):
            _check_whole(name, getattr(self, name), 1, MAX_BITS)
        for name in ("membrane_integer_bits", "integrator_integer_bits"):
            value = getattr(self, name)
            _check_whole(name, value, 0, MAX_BITS - 1)
            if self.neuron_bits is not None and value >= self.neuron_bits:
                raise PrimeError(
                    f"{name}={value} leaves no sign bit in neuron_bits={self.neuron_bits} "
                    f"words; give neuron_bits > {value} or fewer integer bits"
                )
        for name in ("dac_range", "adc_range_ua"):
            value = getattr(self, name)
            if value is not None and not _positive_number(value):
                raise PrimeError(
                    f"{name} must be a number > 0 (or null: calibrated), got {value!r}"
                )
        for name in ("adc_gain_sigma", "adc_offset_lsb", "adc_inl_lsb", "adc_noise_lsb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
                raise PrimeError(f"{name} must be a number >= 0, got {value!r}")
        for name in ("separate_columns", "correct_variation", "fold_batch_norm"):
            if not isinstance(getattr(self, name), bool):
                raise PrimeError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.adc_bits is None and self.adc_variation:
            raise PrimeError("ADC gain, offset, INL and noise need adc_bits (a real converter)")
        WireParams(self.r_wordline_ohm, self.r_bitline_ohm)  # resistances >= 0, else fails
        if self.ir_model not in TRANSFER_MODELS:
            raise PrimeError(
                f"ir_model must be one of {', '.join(TRANSFER_MODELS)}, got {self.ir_model!r}"
            )
        refresh = self.ir_refresh
        if isinstance(refresh, bool) or not isinstance(refresh, int) or refresh < 1:
            raise PrimeError(f"ir_refresh must be a whole number >= 1 (reads), got {refresh!r}")

    @property
    def wire(self) -> WireParams | None:
        """The tiles' wire resistances, or None: ideal wires (no IR drop)."""
        if not (self.r_wordline_ohm or self.r_bitline_ohm):
            return None
        return WireParams(self.r_wordline_ohm, self.r_bitline_ohm)

    @property
    def converts(self) -> bool:
        """Whether any converter or fixed-point word is simulated (DAC, ADC, digital)."""
        return any(b is not None for b in (self.dac_bits, self.adc_bits, self.digital_bits))

    @property
    def adc_variation(self) -> bool:
        """Whether the ADCs vary per chip or add noise."""
        return any((self.adc_gain_sigma, self.adc_offset_lsb, self.adc_inl_lsb, self.adc_noise_lsb))

    @property
    def fused(self) -> bool:
        """Whether every stage of the crossbar's path is ideal, so it folds into one weight
        (the neurons' words are no stage of it; how an IR drop would be computed does not
        matter without one)."""
        return self.wire is None and all(
            getattr(self, f.name) == getattr(IDEAL, f.name)
            for f in dataclasses.fields(self)
            if f.name not in NEURON_FIELDS and not f.name.startswith("ir_")
        )

    def membrane_words(self) -> tuple[FixedPoint, FixedPoint] | None:
        """The (LIF membrane, output integrator) words, or None: floating point."""
        bits = self.neuron_bits
        if bits is None:
            return None
        integer = (self.membrane_integer_bits, self.integrator_integer_bits)
        return FixedPoint(bits, bits - 1 - integer[0]), FixedPoint(bits, bits - 1 - integer[1])

    @property
    def calibrated(self) -> tuple[str, ...]:
        """The ranges this config calibrates on training batches: 'dac', 'adc', 'digital'."""
        needs = {
            "dac": self.dac_bits is not None and self.dac_range is None,
            "adc": self.adc_bits is not None and self.adc_range_ua is None,
            "digital": self.digital_bits is not None,
        }
        return tuple(name for name, needed in needs.items() if needed)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(
        cls, config: dict[str, Any] | None, source: str = "read path config"
    ) -> ReadPathConfig:
        """The config a model or run records (None or {}: ideal); unknown keys fail."""
        config = dict(config or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise PrimeError(
                f"{source} has unknown fields {', '.join(unknown)}; "
                f"known: {', '.join(sorted(known))}"
            )
        return cls(**config)


def _positive_number(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and math.isfinite(value)
        and value > 0
    )


def _check_whole(name: str, value: Any, low: int, high: int | None) -> None:
    if value is None:
        return
    bad = isinstance(value, bool) or not isinstance(value, int) or value < low
    if bad or (high is not None and value > high):
        limits = f"{low}..{high}" if high is not None else f">= {low}"
        raise PrimeError(f"{name} must be a whole number {limits} (or null: ideal), got {value!r}")


IDEAL = ReadPathConfig()

#: named peripheries (``prime train --periphery NAME``); sources in each entry's comment
PERIPHERIES: Registry[ReadPathConfig] = Registry("periphery")
PERIPHERIES.register("ideal")(IDEAL)
# PRIME's macro: Li et al.'s 40 nm 256 Kb RRAM macro, 512 x 512 cells (PRIME paper, Methods).
# 8-bit ADCs as ISAAC's SAR ADC (Shafiee et al., ISCA 2016), the converter the energy model
# (prime.analysis.energy.models.AnalogMacro) already charges; 8-bit DACs; 16-bit digital words
# (Ferro et al., arXiv 2402.07549, find fixed point of this order within 0.12 % of FP16).
PERIPHERIES.register("prime-512")(
    ReadPathConfig(tile_rows=512, tile_columns=512, dac_bits=8, adc_bits=8, digital_bits=16)
)
# The same macro with a 6-bit ADC: the speed acceptance point of issue 15.
PERIPHERIES.register("prime-512-adc6")(
    ReadPathConfig(tile_rows=512, tile_columns=512, dac_bits=8, adc_bits=6, digital_bits=16)
)
# ISAAC's tile (Shafiee et al., ISCA 2016): 128 x 128 crossbars, 8-bit ADCs.
PERIPHERIES.register("isaac-128")(
    ReadPathConfig(tile_rows=128, tile_columns=128, dac_bits=8, adc_bits=8, digital_bits=16)
)
# An approximate 4-bit ADC in the sense of Ghosh et al. (arXiv 2408.06390): gain and offset
# variation, a smooth INL and noise left uncalibrated, for training to absorb. The figures are
# prime's assumption of a modest SAR converter (INL and offset of half an LSB, 2 % gain σ, 0.3
# LSB noise), not the paper's measurements.
PERIPHERIES.register("approx-adc-4b")(
    ReadPathConfig(
        tile_rows=512,
        tile_columns=512,
        dac_bits=8,
        adc_bits=4,
        adc_gain_sigma=0.02,
        adc_offset_lsb=0.5,
        adc_inl_lsb=0.5,
        adc_noise_lsb=0.3,
        digital_bits=16,
    )
)


def load_periphery(spec: str | Path) -> ReadPathConfig:
    """A periphery from a preset name or a JSON file of fields (``"base"``: a preset the
    file's fields change; without it the fields change the ideal config)."""
    text = str(spec)
    if not text.endswith(".json"):
        return PERIPHERIES.get(text)
    fields = read_json_object(text, "periphery")
    base = PERIPHERIES.get(fields.pop("base")) if "base" in fields else IDEAL
    return ReadPathConfig.from_dict({**base.to_dict(), **fields}, source=text)


def periphery_generator(chip_seed: int) -> torch.Generator:
    """The generator of a chip's periphery (its ADCs' variation), from the chip seed; apart
    from the chip's cell generator, so an ideal periphery forms the same cells."""
    seed = np.random.SeedSequence([int(chip_seed), 0xADC]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(seed))


def uniform_quantise(
    x: torch.Tensor, low: torch.Tensor | float, span: torch.Tensor | float, bits: int
) -> torch.Tensor:
    """``x`` on the nearest of 2^bits levels spanning ``[low, low + span]``, clipped outside.

    Error at most half an LSB (``span / (2^bits - 1) / 2``) inside the range; gradient 1
    inside, 0 where it clips. Spikes (0, 1) on [0, 1] stay exact.
    """
    levels = 2**bits - 1
    low_t, span_t = (torch.as_tensor(v, dtype=torch.float32, device=x.device) for v in (low, span))
    per_lsb = levels / span_t
    q = ColumnQuantiser(
        mul=per_lsb,
        add=-low_t * per_lsb,
        out_mul=span_t / levels,
        out_add=low_t,
        slope=torch.ones_like(per_lsb),
        low=0.0,
        high=float(levels),
    )
    return quantise_columns(x, q)


def fixed_point(x: torch.Tensor, bits: int, frac_bits: int) -> torch.Tensor:
    """``x`` as a signed ``bits``-bit word with ``frac_bits`` fraction bits: rounded to
    2^-frac_bits, saturated at [-2^(bits-1), 2^(bits-1) - 1] LSB. Gradient 1 unless
    saturated."""
    one = torch.ones((), dtype=torch.float32, device=x.device)
    scale, low, high = word(bits, frac_bits)
    q = ColumnQuantiser(one * scale, 0 * one, one / scale, 0 * one, one, low, high)
    return quantise_columns(x, q)


@dataclass(frozen=True)
class FixedPoint:
    """A signed fixed-point word format: ``bits`` wide, ``frac_bits`` fraction bits.

    Called on a tensor, it rounds and saturates it (:func:`fixed_point`); :meth:`constant`
    rounds a constant (a decay factor, a threshold) to the same grid.
    """

    bits: int
    frac_bits: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return fixed_point(x, self.bits, self.frac_bits)

    def constant(self, value: float) -> float:
        """``value`` on the word's grid, saturated at its bounds."""
        scale, low, high = word(self.bits, self.frac_bits)
        return min(max(round(value * scale), low), high) / scale


def word(bits: int, frac_bits: int) -> tuple[float, float, float]:
    """(scale, lowest, highest code) of a signed fixed-point word."""
    return 2.0**frac_bits, -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1


def fraction_bits(bits: int, max_abs: float) -> int:
    """Fraction bits of a ``bits``-bit signed word whose integer part holds ``max_abs``."""
    integer = max(math.ceil(math.log2(max_abs)), 0) if max_abs > 0 else 0
    return bits - 1 - integer


@dataclass(frozen=True)
class ADCColumns:
    """Per-column ADC parameters, each broadcasting against the column currents.

    Attributes:
        bits: resolution.
        low, span: the range [low, low + span], µA.
        gain: relative gain; offset_lsb, inl_lsb: offset and mid-scale bow, LSB.
        correct: whether the digital correction removes the gain and offset.
    """

    bits: int
    low: torch.Tensor
    span: torch.Tensor
    gain: torch.Tensor
    offset_lsb: torch.Tensor
    inl_lsb: torch.Tensor
    correct: bool = False


def adc_convert(
    currents: torch.Tensor,
    adc: ADCColumns,
    out_scale: torch.Tensor | float = 1.0,
    noise_lsb: float = 0.0,
    generator: torch.Generator | None = None,
    word: tuple[float, float, float] | None = None,
) -> torch.Tensor:
    """Column currents (µA) through non-ideal ADCs and the digital affine correction, times
    ``out_scale``: ``out_scale * (low + code * span / (2^bits - 1))``, then rounded to the
    fixed-point ``word`` (:func:`word`) if given.

    The ideal code ``u = (I - low) / span * L`` (L = 2^bits - 1) becomes ``gain u + offset +
    4 inl (u/L)(1 - u/L) + noise`` (the bow is 0 at both ends, ``inl`` at mid-scale),
    rounded and clipped to [0, L]; with ``adc.correct`` the correction removes the measured
    gain and offset, ``(code - offset) / gain``. Straight-through gradient: that of the code
    before rounding, 0 where it (or the word) clips.
    """
    levels = 2**adc.bits - 1
    per_lsb = adc.gain * levels / adc.span  # code per µA
    if bool(adc.inl_lsb.any()) or noise_lsb:  # the non-affine part, as a current
        fraction = (currents - adc.low) / adc.span
        extra_lsb = 4 * adc.inl_lsb * fraction * (1 - fraction)
        if noise_lsb:
            extra_lsb = extra_lsb + noise_lsb * drawn_like(currents, generator)
        currents = currents + extra_lsb / per_lsb
    out_mul = adc.span * out_scale / levels
    out_add = adc.low * out_scale
    if adc.correct:
        out_mul = out_mul / adc.gain
        out_add = out_add - adc.offset_lsb * out_mul
    q = ColumnQuantiser(
        mul=per_lsb.float(),
        add=(adc.offset_lsb - per_lsb * adc.low).float(),
        out_mul=out_mul.float(),
        out_add=out_add.float(),
        slope=(per_lsb * out_mul).float(),
        low=0.0,
        high=float(levels),
        word=word,
    )
    return quantise_columns(currents, q)
