"""The programmed-weights baseline on a network: a model trained with plain weights
(``synapses="weights"``) written onto the crossbars of the same model built as a chip that
keeps every edge, cell by cell (:mod:`prime.hardware.programming`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from prime.core.errors import PrimeError
from prime.hardware.programming import WriteVerify, program_weight
from prime.snn.network import SpikingNetwork


def program_network(
    chip: SpikingNetwork,
    software: SpikingNetwork,
    writer: WriteVerify,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Write ``software``'s trained weights onto ``chip``'s crossbars and copy its other
    state (batch-norm statistics). ``chip`` must keep every edge (keep = 1). Returns the
    cells written and the write pulses and verify reads it took."""
    crossbars = chip.memristor_layers()
    weights = [m for m in software.layers.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    shapes = [tuple(m.scores.shape) for m in crossbars]
    if shapes != [tuple(m.weight.shape) for m in weights]:
        raise PrimeError(
            "the trained model's weights do not fit the chip's crossbars: build both from the "
            "same model name (synapses='weights' and 'supermask')"
        )
    if any(m.keep != 1.0 for m in crossbars):
        raise PrimeError("a chip for programmed weights keeps every edge: build it with keep=1")
    pulses = 0
    for layer, trained in zip(crossbars, weights, strict=True):
        programmed = program_weight(trained.weight, writer, generator)
        layer.load_conductances(programmed.g_us, scale=programmed.scale)
        pulses += int(programmed.pulses.sum())
    for mine, theirs in zip(_batch_norms(chip), _batch_norms(software), strict=True):
        mine.load_state_dict(theirs.state_dict())
    cells = sum(2 * m.scores.numel() for m in crossbars)
    return {"cells": cells, "pulses": pulses, "verifies": pulses}


def _batch_norms(model: SpikingNetwork) -> list[nn.Module]:
    return [m for m in model.layers.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
