"""The read path: how a memristor layer's crossbar cells become its output numbers.

One object per layer owns the way from cells to numbers, in stages::

    input x  --drive-->     DAC: graded inputs on 2^dac_bits levels (spikes exact)
    cells g_us [2, *w]  --read-->      this read's conductances (read noise, trace replay)
                        --mask-->      conducting cells: kept pairs; pruned pairs reset or 0
                        --wires-->     IR drop: each tile's transfer matrix (word- and
                                       bit-line resistance; prime.hardware.ir_drop)
                        --crossbar-->  column currents per tile: I+ - I- (one ADC per pair)
                                       or the G+ and G- columns apart
                        --convert-->   ADC codes (bits, range, gain, offset, INL, noise),
                                       affine-corrected back to µA per column
                        --digital-->   scale * (I+ - I-) per tile (a folded batch norm's
                                       affine too) in fixed point, the tiles' partial sums
                                       added, saturating

The crossbar has one row per input (a convolution's im2col rows: C_in * KH * KW) and a G+
and a G- column per output. ``w`` is the layer's weight shape, output first. The tiles'
column currents are one batched op of the layer (:meth:`Crossbar.tiled_map`).

:class:`~prime.hardware.periphery.ReadPathConfig` says which stages are non-ideal. With the
ideal configuration every stage after the mask is linear and exact, so they fold into one
weight ``scale * (G+ - G-) * mask`` (the fused fast path, bit for bit what the layers always
computed); only a non-ideal configuration pays for columns, tiles and converters. Wires
without converters fold too: the tiles' transfer matrices are one weight again.

Ranges the config leaves open (DAC and ADC full scale, the digital words' integer bits) are
buffers, calibrated on a few training batches (:meth:`ReadPath.start_calibration`, a forward
pass with ideal conversion, :meth:`ReadPath.finish_calibration`) and saved with the model.
The ADCs' per-column gain, offset and INL are buffers drawn once from the chip's periphery
generator (the chip seed); the conversion noise is drawn from a generator of the same seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.devices import read_conductance
from prime.hardware.ir_drop import WireParams, crossbar_transfer
from prime.hardware.periphery import (
    IDEAL,
    ADCColumns,
    ReadPathConfig,
    adc_convert,
    fixed_point,
    fraction_bits,
    uniform_quantise,
    word,
)

__all__ = ["CHIP_BUFFERS", "IDEAL", "Crossbar", "CrossbarRead", "ReadPath", "ReadPathConfig"]

#: the read path's buffers drawn from the chip seed (they change with the chip)
CHIP_BUFFERS = ("adc_gain", "adc_offset_lsb", "adc_inl_lsb")


class Crossbar(Protocol):
    """What a read path needs of its layer: the layer's linear map and its tiled twin."""

    def linear_map(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """(input [N, ...], weight [out, ...]) -> output [N, out, ...]."""
        ...

    def tiled_map(
        self, x: torch.Tensor, columns: torch.Tensor, tile_rows: int | None
    ) -> torch.Tensor:
        """Column currents of every row tile: [N, tiles, columns, ...], one batched op."""
        ...


@dataclass(frozen=True)
class CrossbarRead:
    """One read of a layer's crossbar, for one input sequence (or one timestep).

    Attributes:
        weight: the effective weight ``scale * conducting (G+ - G-)``, weight shape; what the
            fused path applies and what counters and exports read.
        columns_us: the conducting cells the converters see, µS: ``G+ - G-`` [out, ...]
            (one ADC per pair) or the G+ columns then the G- columns [2 * out, ...]
            (``separate_columns``); None on the fused path.
        scale: conductance-to-weight scale (1/µS), a 0-d tensor.
    """

    weight: torch.Tensor
    columns_us: torch.Tensor | None
    scale: torch.Tensor


@dataclass
class _WireAttenuation:
    """The exact IR drop of one set of conducting cells [2, *w]: the per-cell attenuation
    ``G_eff / G`` of the tiles' exact transfer matrix (1 where a cell does not conduct), and
    the reads it has served."""

    cells: torch.Tensor
    attenuation: torch.Tensor
    reads: int = field(default=0)


def orient(cells: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Cells [2, *w] with each pair's two cells swapped where needed so that the pair's
    weight ``G+ - G-`` is ``sign * |G+ - G-|`` (the pruning paper's weight convention: the
    cell wired to the positive column is chosen by a sign fixed in software)."""
    swap = (cells[0] - cells[1]) * sign < 0
    return torch.where(swap, cells.flip(0), cells)


class ReadPath(nn.Module):
    """A layer's way from cells to numbers (see the module docstring).

    :meth:`read` reads the cells once (read noise drawn, mask applied); :meth:`forward`
    runs one input through that read.

    Args:
        config: the periphery.
        rows: the crossbar's rows (the layer's fan-in).
        outputs: the layer's outputs (a G+ and a G- column each).
        generator: the chip's periphery generator (ADC variation, noise seed); needed only
            where the config varies the ADCs.
    """

    adc_full_scale_ua: torch.Tensor  # [tiles, converted columns], µA
    adc_gain: torch.Tensor  # [tiles, converted columns]
    adc_offset_lsb: torch.Tensor  # [tiles, converted columns]
    adc_inl_lsb: torch.Tensor  # [tiles, converted columns]
    dac_range: torch.Tensor  # 0-d, input units
    digital_range: torch.Tensor  # 0-d, largest |partial sum| or |output|, weight units
    affine_scale: torch.Tensor | None  # [out], or None (not saved)
    affine_shift: torch.Tensor | None  # [out], weight units, or None (not saved)

    def __init__(
        self,
        config: ReadPathConfig = IDEAL,
        rows: int = 1,
        outputs: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.outputs = outputs
        self.calibrating = False
        self.noise_generator: torch.Generator | None = None
        #: a per-output affine folded into the digital unit's correction (:attr:`affine`)
        self.register_buffer("affine_scale", None, persistent=False)
        self.register_buffer("affine_shift", None, persistent=False)
        self._wires: _WireAttenuation | None = None
        if config.adc_bits is not None:
            shape = (self.tiles(rows), outputs * (2 if config.separate_columns else 1))
            self.register_buffer("adc_full_scale_ua", _range(config.adc_range_ua, shape))
            draws = _adc_draws(config, shape, generator)
            for name, value in zip(CHIP_BUFFERS, draws, strict=True):
                self.register_buffer(name, value)
            if config.adc_noise_lsb:
                assert generator is not None  # _adc_draws checked it
                seed = int(torch.randint(2**62, (1,), generator=generator))
                self.noise_generator = torch.Generator().manual_seed(seed)
        if config.dac_bits is not None:
            self.register_buffer("dac_range", _range(config.dac_range, ()))
        if config.digital_bits is not None:
            self.register_buffer("digital_range", _range(None, ()))

    def read(
        self,
        g_us: torch.Tensor,
        mask: torch.Tensor,
        scale: torch.Tensor,
        read_noise: float = 0.0,
        generator: torch.Generator | None = None,
        reset_us: torch.Tensor | None = None,
        sign: torch.Tensor | None = None,
    ) -> CrossbarRead:
        """One read of cells ``g_us`` [2, *w] (µS) under binary ``mask`` [*w].

        ``read_noise``: multiplicative σ drawn from ``generator``. ``reset_us`` [2, *w]:
        the cells of pruned pairs in the reset state (they still conduct); None: pruned
        pairs are ideal zeros. ``sign`` [*w] (±1): every pair's weight is ``sign`` times its
        |G+ - G-| (:func:`orient`); None: the signed G+ - G-.
        """
        g_us = read_conductance(g_us, read_noise, generator)
        if sign is not None:
            g_us = orient(g_us, sign)
            reset_us = None if reset_us is None else orient(reset_us, sign)
        wire = self.config.wire
        if wire is not None:
            return self._read_through_wires(g_us, mask, scale, reset_us, wire)
        delta_us = (g_us[0] - g_us[1]) * mask
        if reset_us is not None:
            delta_us = delta_us + (reset_us[0] - reset_us[1]) * (1 - mask)
        weight = scale * delta_us
        if self.config.fused:
            return CrossbarRead(weight, None, scale)
        if not self.config.separate_columns:
            return CrossbarRead(weight, delta_us, scale)
        conducting = g_us * mask
        if reset_us is not None:
            conducting = conducting + reset_us * (1 - mask)
        return CrossbarRead(weight, conducting.flatten(0, 1), scale)

    def _read_through_wires(
        self,
        g_us: torch.Tensor,
        mask: torch.Tensor,
        scale: torch.Tensor,
        reset_us: torch.Tensor | None,
        wire: WireParams,
    ) -> CrossbarRead:
        """A read of tiles with wire resistance: the conducting cells replaced by the tiles'
        transfer matrices (IR drop); without converters it folds into one weight."""
        conducting = g_us * mask
        if reset_us is not None:
            conducting = conducting + reset_us * (1 - mask)
        cells = self.through_wires(conducting, wire)
        delta_us = cells[0] - cells[1]
        weight = scale * delta_us
        if not self.config.converts:  # every stage after the wires is linear
            return CrossbarRead(weight, None, scale)
        if self.config.separate_columns:
            return CrossbarRead(weight, cells.flatten(0, 1), scale)
        return CrossbarRead(weight, delta_us, scale)

    def through_wires(self, conducting: torch.Tensor, wire: WireParams) -> torch.Tensor:
        """The conducting cells [2, *w] (µS) as the sense nodes see them: each tile's transfer
        matrix G_eff (column currents ``I = v @ G_eff`` for row voltages v; rows that do not
        spike are driven at 0 V).

        Physical layout: row = flat input index, columns 2j (G+) and 2j+1 (G-) hold output j,
        so ``tile_columns`` sets the word-line length. "first-order": closed form every read,
        gradients through the wires. "exact": the exact transfer, computed once per set of
        cells (evaluation: whenever the cells change; training: every ``ir_refresh`` reads),
        applied as a detached per-cell attenuation, so gradients reach each cell directly.
        Both keep a cell that does not conduct at 0: the exact transfer's sneak current at
        such cells (the wires coupling a row to bit lines it has no cell on) is left out, so
        the weight keeps the mask's zeros (docs/ir_drop.md measures what that leaves out).
        """
        config = self.config
        tiles = (config.tile_rows, config.tile_columns)
        if config.ir_model == "first-order":
            transfer = crossbar_transfer(_crossbar(conducting), wire, *tiles, "first-order")
            return _cells(transfer, conducting.shape)
        cells = conducting.detach()
        known = self._wires
        if (
            known is None
            or known.cells.device != cells.device
            or not (
                torch.equal(known.cells, cells)
                or (self.training and known.reads < config.ir_refresh)
            )
        ):
            transfer = _cells(crossbar_transfer(_crossbar(cells), wire, *tiles), cells.shape)
            formed = cells > 0
            attenuation = torch.where(formed, transfer / torch.where(formed, cells, 1.0), 1.0)
            known = self._wires = _WireAttenuation(cells.clone(), attenuation)
        known.reads += 1
        return known.attenuation * conducting

    def forward(self, x: torch.Tensor, read: CrossbarRead, crossbar: Crossbar) -> torch.Tensor:
        """The layer's output for input x [N, ...] through ``read``: [N, out, ...]."""
        if read.columns_us is None:
            return crossbar.linear_map(x, read.weight)
        if not self.calibrating:
            self._check_calibrated()
        currents = crossbar.tiled_map(self.drive(x), read.columns_us, self.config.tile_rows)
        separate = self.config.separate_columns
        fused_word = self.config.adc_bits is not None and not separate and self.affine is None
        values = self.convert(currents, read.scale, self.word() if fused_word else None)
        if separate:
            values = values[:, :, : self.outputs] - values[:, :, self.outputs :]
        if self.affine is not None:
            values = self._apply_affine(values)
        if not fused_word or self.calibrating:  # each tile's partial sum in the unit's word
            values = self.digital(values)
        if values.shape[1] == 1:  # one tile: its partial sum is the output
            out = values.squeeze(1)
        else:
            out = self.digital(values.sum(1))
        return out.contiguous(memory_format=torch.channels_last) if out.dim() == 4 else out

    @property
    def affine(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The per-output affine (scale [out], shift [out]) folded into the digital unit's
        correction (:meth:`fold_affine`); None: none."""
        if self.affine_scale is None or self.affine_shift is None:
            return None
        return self.affine_scale, self.affine_shift

    def fold_affine(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """Have the digital unit's per-column correction also apply ``scale * y + shift``
        per output (a batch norm folded into it, :func:`prime.snn.digital.fold_batch_norms`),
        before its fixed-point word; the shift enters the first tile's partial sum. The
        digital words' ranges change: calibrate them after."""
        if self.config.fused:
            raise PrimeError("an ideal read path has no digital unit to fold into")
        if scale.shape != (self.outputs,) or shift.shape != (self.outputs,):
            raise PrimeError(
                f"a folded affine needs a scale and shift per output ({self.outputs}), got "
                f"{tuple(scale.shape)} and {tuple(shift.shape)}"
            )
        self.affine_scale, self.affine_shift = scale.detach().clone(), shift.detach().clone()

    def _apply_affine(self, values: torch.Tensor) -> torch.Tensor:
        """The folded affine on per-tile values [N, tiles, out, ...]."""
        assert self.affine is not None
        scale, shift = self.affine
        tiles, trailing = values.shape[1], (1,) * (values.dim() - 3)
        on_first_tile = F.pad(shift.view(1, -1), (0, 0, 0, tiles - 1))  # [tiles, out]
        return values * scale.view(-1, *trailing) + on_first_tile.view(tiles, -1, *trailing)

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """Input drive: graded inputs through the n-bit DAC over [0, range]; binary inputs
        (spikes) and an ideal DAC pass exactly."""
        if self.config.dac_bits is None:
            return x
        if self.calibrating:
            _raise_to(self.dac_range, x.detach().max())
            return x
        if float(self.dac_range) != 1.0 and bool(((x == 0) | (x == 1)).all()):
            return x  # (on a range of 1, spikes are exact levels anyway)
        return uniform_quantise(x, 0.0, self.dac_range, self.config.dac_bits)

    def convert(
        self,
        currents: torch.Tensor,
        scale: torch.Tensor,
        word: tuple[float, float, float] | None = None,
    ) -> torch.Tensor:
        """Column currents [N, tiles, columns, ...] (µA) -> ``scale`` times the digital
        unit's numbers: the ADC's codes, corrected per column (nominally, or with the
        measured gain and offset where ``correct_variation``), in fixed-point ``word`` if
        given."""
        bits = self.config.adc_bits
        if bits is None:
            return scale * currents
        if self.calibrating:
            per_tile_column = currents.detach().abs().amax(dim=(0, *range(3, currents.dim())))
            _raise_to(self.adc_full_scale_ua, per_tile_column)
            return scale * currents
        per_column = (*self.adc_full_scale_ua.shape, *(1,) * (currents.dim() - 3))
        full_scale = self.adc_full_scale_ua.view(per_column)
        separate = self.config.separate_columns
        adc = ADCColumns(
            bits,
            low=torch.zeros_like(full_scale) if separate else -full_scale,
            span=full_scale if separate else 2 * full_scale,
            gain=self.adc_gain.view(per_column),
            offset_lsb=self.adc_offset_lsb.view(per_column),
            inl_lsb=self.adc_inl_lsb.view(per_column),
            correct=self.config.correct_variation,
        )
        noise = self.config.adc_noise_lsb
        return adc_convert(currents, adc, scale, noise, self.noise_generator, word)

    def word(self) -> tuple[float, float, float] | None:
        """The digital unit's fixed-point word (:func:`~prime.hardware.periphery.word`), or
        None: floating point (or calibrating)."""
        bits = self.config.digital_bits
        if bits is None or self.calibrating:
            return None
        return word(bits, self._fraction_bits(bits))

    def digital(self, values: torch.Tensor) -> torch.Tensor:
        """A number of the digital unit (weight units) in its fixed-point word, saturating."""
        bits = self.config.digital_bits
        if bits is None:
            return values
        if self.calibrating:
            _raise_to(self.digital_range, values.detach().abs().max())
            return values
        return fixed_point(values, bits, self._fraction_bits(bits))

    def _fraction_bits(self, bits: int) -> int:
        """Fraction bits of this layer's words: the integer bits hold its calibrated range."""
        return fraction_bits(bits, float(self.digital_range))

    def calibrated_buffers(self) -> list[torch.Tensor]:
        """The buffers calibration fills (those the config leaves open)."""
        names = {"dac": "dac_range", "adc": "adc_full_scale_ua", "digital": "digital_range"}
        return [getattr(self, names[kind]) for kind in self.config.calibrated]

    def start_calibration(self) -> None:
        """Record the ranges of the following forward passes (with ideal conversion)."""
        for buffer in self.calibrated_buffers():
            buffer.zero_()
        self.calibrating = True

    def finish_calibration(self) -> None:
        """Fix the recorded ranges; a column never driven takes its layer's largest range."""
        self.calibrating = False
        for buffer in self.calibrated_buffers():
            largest = buffer.max() if buffer.numel() else buffer
            fallback = largest if float(largest) > 0 else torch.ones_like(largest)
            buffer.copy_(torch.where(buffer > 0, buffer, fallback))

    def _check_calibrated(self) -> None:
        for buffer in self.calibrated_buffers():
            if bool(torch.isnan(buffer).any()):
                raise PrimeError(
                    "this read path's converter ranges are not calibrated: calibrate the "
                    "model on a few training batches first (SpikingNetwork.calibrate_read_paths)"
                )

    def tiles(self, rows: int) -> int:
        """Tiles a crossbar of ``rows`` rows is split onto."""
        return 1 if self.config.tile_rows is None else math.ceil(rows / self.config.tile_rows)

    def extra_repr(self) -> str:
        return "ideal" if self.config.fused else repr(self.config)


def _crossbar(cells: torch.Tensor) -> torch.Tensor:
    """Cells [2, out, *k] as the physical crossbar [rows, 2 out]: G+ of output j in column
    2j, its G- in column 2j + 1."""
    rows = cells[0, 0].numel()
    return cells.flatten(2).permute(2, 1, 0).reshape(rows, -1)


def _cells(crossbar: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of :func:`_crossbar`."""
    rows = crossbar.shape[0]
    return crossbar.view(rows, -1, 2).permute(2, 1, 0).reshape(shape)


def _range(value: float | None, shape: tuple[int, ...]) -> torch.Tensor:
    """A range buffer: the fixed value, or NaN until calibrated."""
    return torch.full(shape, math.nan if value is None else float(value))


def _raise_to(buffer: torch.Tensor, values: torch.Tensor) -> None:
    torch.maximum(buffer, values.to(buffer.dtype), out=buffer)


def _adc_draws(
    config: ReadPathConfig, shape: tuple[int, ...], generator: torch.Generator | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-column ADC gain, offset (LSB) and INL (LSB), drawn from the chip's generator."""
    if not config.adc_variation:
        return torch.ones(shape), torch.zeros(shape), torch.zeros(shape)
    if generator is None:
        raise PrimeError("ADC variation needs the chip's periphery generator (its chip seed)")
    normal = [torch.randn(shape, generator=generator) for _ in range(3)]
    gain = 1 + config.adc_gain_sigma * normal[0]
    return gain, config.adc_offset_lsb * normal[1], config.adc_inl_lsb * normal[2]
