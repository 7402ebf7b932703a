"""Supermasks (edge-popup, Ramanujan et al. 2020): which edges of a random network to keep.

Training learns one score per edge; the mask keeps the edges with the largest |score|, and the
gradient reaches the scores straight through the binary mask.
"""

from __future__ import annotations

import math

import torch

from prime.core.errors import PrimeError

MASK_RULES = ("topk", "prime")


def check_keep(keep: float) -> float:
    """Validate a kept fraction: it must lie in (0, 1]."""
    if not (isinstance(keep, int | float) and math.isfinite(keep) and 0 < keep <= 1):
        raise PrimeError(f"kept fraction must be in (0, 1], got {keep!r} (e.g. --keep 0.5)")
    return float(keep)


def kept_count(numel: int, keep: float) -> int:
    """How many of ``numel`` edges a kept fraction keeps: round(keep * numel), at least 1."""
    return max(1, round(check_keep(keep) * numel))


def topk_mask(score_abs: torch.Tensor, keep: float) -> torch.Tensor:
    """Binary mask (same shape, float) keeping exactly ``kept_count`` largest values."""
    flat = score_abs.detach().reshape(-1)
    mask = torch.zeros_like(flat)
    mask[flat.topk(kept_count(flat.numel(), keep), sorted=False).indices] = 1.0
    return mask.view_as(score_abs)


def prime_mask(score_abs: torch.Tensor, keep: float) -> torch.Tensor:
    """PRIME's rule: keep |score| >= the value of rank ``1 + round(0.01 q (n - 1))``.

    ``q = 100 (1 - keep)`` is the pruned percentage (PRIME's ``percentile``/``kthvalue``);
    ties at the threshold are all kept, so the kept count can differ from ``topk_mask`` by the
    rounding of that rank.
    """
    flat = score_abs.detach().reshape(-1)
    rank = 1 + round(0.01 * (100 * (1 - check_keep(keep))) * (flat.numel() - 1))
    threshold = flat.kthvalue(rank).values
    return (score_abs.detach() >= threshold).to(score_abs.dtype)


class _StraightThrough(torch.autograd.Function):
    """Forward: a precomputed binary mask; backward: the gradient passes unchanged."""

    @staticmethod
    def forward(ctx, score_abs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return mask

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


def straight_through(x: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` in the forward pass, with the gradient passed to ``x`` unchanged."""
    return _StraightThrough.apply(x, value)


def check_margin(margin: float) -> float:
    """Validate a hysteresis margin: a finite number >= 0 (0: no hysteresis)."""
    if not (isinstance(margin, int | float) and math.isfinite(margin) and margin >= 0):
        raise PrimeError(
            f"hysteresis margin must be a finite number >= 0, got {margin!r} (0 turns it off; "
            "the pruning paper uses 0.01 to 0.007)"
        )
    return float(margin)


def hold_mask(
    mask: torch.Tensor,
    score_abs: torch.Tensor,
    held_mask: torch.Tensor,
    held_score_abs: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """Mask hysteresis (the pruning paper's ``GetSubnet`` with ``limit_size``): an edge keeps
    its held state unless its |score| moved by at least ``margin`` relative to the held
    |score|, ``| |s| - |s_held| | / |s_held| >= margin``; the others take ``mask``.

    Shapes: all the weight shape. Margin 0 returns ``mask`` itself (no edge is held); an edge
    whose held |score| is 0 always takes ``mask``.
    """
    if check_margin(margin) == 0:
        return mask
    score_abs = score_abs.detach()
    moved = (score_abs - held_score_abs).abs() >= margin * held_score_abs
    return torch.where(moved | (held_score_abs == 0), mask, held_mask)


def supermask(
    scores: torch.Tensor,
    keep: float,
    rule: str = "topk",
    held: tuple[torch.Tensor, torch.Tensor] | None = None,
    margin: float = 0.0,
) -> torch.Tensor:
    """Mask of ``scores``' shape from |scores|, with a straight-through gradient to ``scores``.

    As PRIME and edge-popup, d loss / d score = d loss / d mask * sign(score). ``held``:
    (mask, |scores|) last programmed on the chip, which :func:`hold_mask` keeps for edges
    whose score moved by less than ``margin``.
    """
    score_abs = scores.abs()
    if rule == "topk":
        mask = topk_mask(score_abs, keep)
    elif rule == "prime":
        mask = prime_mask(score_abs, keep)
    else:
        raise PrimeError(f"unknown mask rule {rule!r}; known: {', '.join(MASK_RULES)}")
    if held is not None:
        mask = hold_mask(mask, score_abs, held[0], held[1], margin)
    return _StraightThrough.apply(score_abs, mask)


def global_supermasks(scores: list[torch.Tensor], keep: float) -> list[torch.Tensor]:
    """One top-k over all layers' |scores| together: exactly ``kept_count`` of all edges kept."""
    score_abs = [s.abs() for s in scores]
    flat = torch.cat([s.detach().reshape(-1) for s in score_abs])
    masks = topk_mask(flat, keep).split([s.numel() for s in scores])
    return [_StraightThrough.apply(s, m.view_as(s)) for s, m in zip(score_abs, masks, strict=True)]
