"""Input-aware early exit: stop simulating a sample once its output is confident.

After every timestep t the controller scores each running sample's mean output so far
(sum of the output integrator over steps 1..t, divided by t) with an exit policy; samples
that are done (and have run at least ``min_steps``) retire: their mean output and step
count are kept, and they leave the batch, so later steps compute only for the samples still
running (the network runs a few steps multi-step between compactions, with the exits of
deciding after every step), and waiting samples take their places (``batch_size``). A
sample that is never confident runs all T steps.

Policies score ``p = softmax(mean_output / alpha)``; a sample is done when its confidence is
strictly above the threshold θ, so θ = 1.0 never exits early:

* ``prime``: max p (PRIME's rule; α = 2, θ = 0.8 in the paper),
* ``margin``: top-1 p minus top-2 p,
* ``entropy``: 1 - H(p) / log C.

The load saved is 1 - mean steps / T: the fraction of timesteps not simulated.
"""

from prime.inference.early_exit.calibration import (
    DEFAULT_THRESHOLDS,
    calibrate_threshold,
    step_outputs,
    sweep_thresholds,
    validation_split,
)
from prime.inference.early_exit.controller import (
    CHUNK_STEPS,
    EarlyExitResult,
    evaluate_early_exit,
    exit_from_trajectory,
    run_early_exit,
)
from prime.inference.early_exit.policies import POLICIES, ExitPolicy, get_policy, policy_name
from prime.inference.early_exit.report import early_exit_report

__all__ = [
    "CHUNK_STEPS",
    "DEFAULT_THRESHOLDS",
    "POLICIES",
    "EarlyExitResult",
    "ExitPolicy",
    "calibrate_threshold",
    "early_exit_report",
    "evaluate_early_exit",
    "exit_from_trajectory",
    "get_policy",
    "policy_name",
    "run_early_exit",
    "step_outputs",
    "sweep_thresholds",
    "validation_split",
]
