"""Early stop for inpainting: end a sample's simulation once its reconstruction settles.

After step t the FSVAE's reconstruction is r_t; its change is
``m_t = sum |r_t - r_{t-1}| / 100`` per image (r_{-1} = 0, as the reference's list starts
with zeros). Rules (:data:`STOP_RULES`) read a sample's changes so far:

* ``reference``: PRIME's ``Pruning_FSVAE_EE``: stop at t >= 2 when m_{t-2} > m_{t-1} > m_t
  (strictly) and m_t < θ (θ = 0.2). The reference sums m over its batch (run with batch 1);
  here it is per image.
* ``change``: stop once m_t < θ, from step ``min_steps`` on; θ calibrated on validation
  images for a quality budget (:func:`calibrate_change_threshold`).

:func:`run_early_stop` carries the network state from step to step (O(T) steps) and compacts
the batch as samples stop. :func:`run_from_scratch` is the reference's way: after each step it
re-encodes and decodes the whole prefix x[:t+1] from a fresh state (O(T²) steps). In
evaluation every block is causal (tdBN on running statistics), so both give the same
reconstructions, given the same latent choices ``index`` (the reference draws new ones for
every prefix; then they differ by sampling alone). In training mode tdBN normalises over all
steps at once, and a prefix's statistics differ from the whole sequence's: there the two
are not equal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from prime.core.errors import PrimeError
from prime.core.registry import Registry
from prime.inference.reconstruction import region_mse
from prime.snn.fsvae import FSVAE

#: the reference's change normaliser: m = sum |Δ| / 100
CHANGE_DIVISOR = 100.0
#: thresholds tried by the calibration: quantiles of the observed changes
CANDIDATES = 201


def reconstruction_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """m per image: sum |after - before| / 100, [B] (images [B, ...])."""
    return (after - before).abs().flatten(1).sum(1) / CHANGE_DIVISOR


@dataclass(frozen=True)
class StopRule:
    """Base of the stop rules: ``done(changes)`` for changes m_0..m_t [B, t + 1]."""

    threshold: float = 0.2
    min_steps: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, int | float) or math.isnan(self.threshold):
            raise PrimeError(f"stop threshold must be a number (e.g. 0.2), got {self.threshold!r}")
        if isinstance(self.min_steps, bool) or not isinstance(self.min_steps, int):
            raise PrimeError(f"min_steps must be a whole number >= 1, got {self.min_steps!r}")
        if self.min_steps < 1:
            raise PrimeError(f"min_steps must be a whole number >= 1, got {self.min_steps!r}")

    def done(self, changes: torch.Tensor) -> torch.Tensor:
        """bool [B]: whether to stop after the last of ``changes`` [B, t + 1]."""
        raise NotImplementedError


STOP_RULES: Registry[type[StopRule]] = Registry("stop rule")


@STOP_RULES.register("reference")
@dataclass(frozen=True)
class ReferenceRule(StopRule):
    """PRIME's rule: three strictly falling changes, the last below θ (from step 3 on)."""

    def done(self, changes: torch.Tensor) -> torch.Tensor:
        if changes.shape[1] < max(3, self.min_steps):
            return torch.zeros(len(changes), dtype=torch.bool, device=changes.device)
        m0, m1, m2 = changes[:, -3], changes[:, -2], changes[:, -1]
        return (m2 < m1) & (m1 < m0) & (m2 < self.threshold)


@STOP_RULES.register("change")
@dataclass(frozen=True)
class ChangeRule(StopRule):
    """Stop once the last change is below θ (from step ``min_steps`` on, at least 2)."""

    def done(self, changes: torch.Tensor) -> torch.Tensor:
        if changes.shape[1] < max(2, self.min_steps):
            return torch.zeros(len(changes), dtype=torch.bool, device=changes.device)
        return changes[:, -1] < self.threshold


def get_stop_rule(name: str, threshold: float = 0.2, min_steps: int = 1) -> StopRule:
    return STOP_RULES.get(name)(threshold=threshold, min_steps=min_steps)


@dataclass
class EarlyStopResult:
    """Reconstructions at the stop ``recon`` [B, C, H, W], steps run ``steps`` [B] (1..T),
    and the change after every step run (``changes`` [B, T], NaN after the stop)."""

    recon: torch.Tensor
    steps: torch.Tensor
    changes: torch.Tensor
    timesteps: int
    #: steps simulated in all, summed over samples (the work done)
    steps_simulated: int

    @property
    def load_saved(self) -> float:
        """Share of timesteps not simulated: 1 - mean steps / T."""
        return 1.0 - self.steps.double().mean().item() / self.timesteps


class _Stopper:
    """Bookkeeping of a batch under a stop rule: who runs, what each stopped with."""

    def __init__(self, rule: StopRule, images: torch.Tensor, timesteps: int) -> None:
        batch, device = len(images), images.device
        self.rule, self.timesteps = rule, timesteps
        self.recon = torch.empty_like(images)
        self.steps = torch.full((batch,), timesteps, dtype=torch.int64, device=device)
        self.changes = torch.full((batch, timesteps), math.nan, device=device)
        self.running = torch.arange(batch, device=device)
        self.last = torch.zeros_like(images)  # r_{t-1} of the running samples
        self.steps_simulated = 0

    def after_step(self, t: int, recon: torch.Tensor) -> torch.Tensor | None:
        """Record step t's reconstructions of the running samples; returns the rows (of the
        running samples) that keep running, or None if none do."""
        self.steps_simulated += len(recon)
        self.changes[self.running, t] = reconstruction_change(self.last, recon)
        done = self.rule.done(self.changes[self.running, : t + 1])
        if t + 1 == self.timesteps:
            done[:] = True
        stopped = self.running[done]
        self.recon[stopped], self.steps[stopped] = recon[done], t + 1
        keep = (~done).nonzero().squeeze(1)
        self.running, self.last = self.running[keep], recon[keep]
        return keep if len(keep) else None

    def result(self) -> EarlyStopResult:
        return EarlyStopResult(
            self.recon, self.steps, self.changes, self.timesteps, self.steps_simulated
        )


@torch.no_grad()
def run_early_stop(
    model: FSVAE, images: torch.Tensor, index: torch.Tensor, rule: StopRule
) -> EarlyStopResult:
    """Incremental early stop of masked ``images`` [B, C, H, W] (latent choices ``index``
    [T, B, latent]): one step per timestep, the state carried, stopped samples dropped."""
    model.eval()
    frames, reads = model.frames(images), model.sequence_reads()
    stopper = _Stopper(rule, images, model.timesteps)
    state = model.initial_state(len(images))
    for t in range(model.timesteps):
        running = stopper.running
        recon, state = model.step(frames[t, running], t, index[t, running], state, reads)
        keep = stopper.after_step(t, recon)
        if keep is None:
            break
        state = state.select(keep)
    return stopper.result()


@torch.no_grad()
def run_from_scratch(
    model: FSVAE, images: torch.Tensor, index: torch.Tensor, rule: StopRule
) -> EarlyStopResult:
    """The reference's early stop: after each step t, encode and decode x[:t+1] anew from a
    fresh state (stopped samples dropped too); ``steps_simulated`` counts every re-run step."""
    model.eval()
    frames, reads = model.frames(images), model.sequence_reads()
    stopper = _Stopper(rule, images, model.timesteps)
    for t in range(model.timesteps):
        running = stopper.running
        state = model.initial_state(len(running))
        for s in range(t + 1):
            recon, state = model.step(frames[s, running], s, index[s, running], state, reads)
        stopper.steps_simulated += t * len(running)  # the re-run steps before t
        if stopper.after_step(t, recon) is None:
            break
    return stopper.result()


def stop_from_trajectory(recons: torch.Tensor, rule: StopRule) -> EarlyStopResult:
    """The stops :func:`run_early_stop` makes, read off the reconstructions after every
    step ``recons`` [T, B, C, H, W] (one full run serves a whole threshold sweep)."""
    T = len(recons)
    stopper = _Stopper(rule, recons[0], T)
    for t in range(T):
        if stopper.after_step(t, recons[t, stopper.running]) is None:
            break
    return stopper.result()


@dataclass(frozen=True)
class Calibration:
    """The calibrated change threshold and what it gave on the validation images."""

    threshold: float
    budget: float
    mse_region: float
    full_mse_region: float
    mse_image: float
    full_mse_image: float
    mean_steps: float
    timesteps: int


def calibrate_change_threshold(
    recons: torch.Tensor,
    clean: torch.Tensor,
    region: torch.Tensor,
    budget: float = 0.05,
    min_steps: int = 1,
) -> Calibration:
    """The θ of the ``change`` rule that saves most steps while the MSE over the blanked
    region and over the whole image both stay within (1 + ``budget``) times their MSE at
    full T, from validation reconstructions ``recons`` [T, B, C, H, W] of images ``clean``
    with blanked ``region``."""
    if not (isinstance(budget, int | float) and math.isfinite(budget) and budget >= 0):
        raise PrimeError(
            f"quality budget must be a number >= 0 (0.05 = 5 % more MSE), got {budget!r}"
        )
    T = len(recons)
    full = (region_mse(recons[-1], clean, region), region_mse(recons[-1], clean, None))
    changes = stop_from_trajectory(recons, ChangeRule(-math.inf)).changes
    observed = changes[torch.isfinite(changes)].double()
    levels = torch.linspace(0, 1, CANDIDATES, dtype=torch.float64, device=observed.device)
    candidates = torch.unique(torch.quantile(observed, levels)).tolist()
    best = Calibration(-math.inf, budget, full[0], full[0], full[1], full[1], float(T), T)
    for threshold in candidates:  # ascending: more steps saved as θ grows
        result = stop_from_trajectory(recons, ChangeRule(threshold + 1e-9, min_steps))
        mse = (region_mse(result.recon, clean, region), region_mse(result.recon, clean, None))
        if any(m > (1 + budget) * f for m, f in zip(mse, full, strict=True)):
            continue
        steps = result.steps.double().mean().item()
        if steps <= best.mean_steps:
            best = Calibration(threshold + 1e-9, budget, mse[0], full[0], mse[1], full[1], steps, T)
    return best
