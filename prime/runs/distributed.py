"""Several processes, one job: torch.distributed set up from torchrun's environment.

``torchrun --nproc_per_node N -m prime train ...`` (or ``prime train --nproc N``) starts N
processes with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``
set; :func:`process_group` joins them into one group: gloo for CPU tensors, plus NCCL for
CUDA tensors where a GPU is present. Every collective gives up after a timeout
(``PRIME_DIST_TIMEOUT_S``, default 600 s), so a dead or stuck rank stops the job with a clear
message instead of hanging it forever.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from prime.core.errors import PrimeError

#: environment variable: seconds a collective may wait for the other ranks
TIMEOUT_ENV = "PRIME_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world_size`` (one process: 0 of 1)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and prints progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = Ranks()


def timeout_s() -> float:
    """The collective timeout in seconds, from ``PRIME_DIST_TIMEOUT_S``."""
    text = os.environ.get(TIMEOUT_ENV, str(DEFAULT_TIMEOUT_S))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise PrimeError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {text!r}")
    return value


def backend() -> str:
    """gloo for CPU tensors (the counts every rank adds up), and NCCL for CUDA tensors (the
    score gradients of a run on GPUs) when a GPU is present."""
    return "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"


def rank_device(device: torch.device) -> torch.device:
    """This process's device: in a job of several processes on CUDA, one GPU per process
    (``cuda:LOCAL_RANK``); otherwise ``device`` itself."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if device.type != "cuda" or world_size == 1:
        return device
    local_rank, gpus = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
    if local_rank >= gpus:
        raise PrimeError(
            f"--device cuda with {world_size} processes needs one GPU per process on each node; "
            f"this machine has {gpus}: choose --nproc {gpus} or fewer"
        )
    torch.cuda.set_device(local_rank)  # NCCL's collectives run on this GPU
    return torch.device("cuda", local_rank)


def current() -> Ranks:
    """The ranks of the process group this process has joined (one process if none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return Ranks(dist.get_rank(), dist.get_world_size())


@contextlib.contextmanager
def process_group() -> Iterator[Ranks]:
    """Join the group torchrun describes in the environment for the ``with`` block.

    Without torchrun's variables (or with ``WORLD_SIZE=1``) this is one process and does
    nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1 or dist.is_initialized():
        yield current()
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        dist.init_process_group(backend(), timeout=timedelta(seconds=timeout_s()))
    except dist.DistError as exc:
        raise PrimeError(
            f"could not join the {world_size} processes at {os.environ.get('MASTER_ADDR')}:"
            f"{os.environ.get('MASTER_PORT')} ({_first_line(exc)}); check torchrun's "
            "--rdzv-endpoint / --master-addr and that every node started"
        ) from None
    try:
        yield current()
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def collectives(ranks: Ranks, checkpoint: str | os.PathLike) -> Iterator[None]:
    """Turn a failed collective (a rank died, or none answered in time) into a PrimeError."""
    try:
        yield
    except RuntimeError as exc:  # gloo raises plain RuntimeErrors, c10d DistErrors
        if not (ranks.distributed and _is_collective_error(exc)):
            raise
        raise PrimeError(
            f"rank {ranks.rank} of {ranks.world_size} lost the other ranks: a process died or "
            f"did not answer within {timeout_s():g} s ({_first_line(exc)}); the job stops. "
            f"Continue from the last checkpoint with --resume ({checkpoint})"
        ) from None


def all_sum(values: Sequence[float], ranks: Ranks) -> list[float]:
    """Elementwise sum of ``values`` over all ranks (the values themselves on one process)."""
    if not ranks.distributed:
        return list(values)
    total = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(total)
    return total.tolist()


def shard(indices: Sequence[int], ranks: Ranks) -> list[int]:
    """This rank's part of ``indices``: every world_size-th one from its rank on."""
    return list(indices[ranks.rank :: ranks.world_size])


def launch(nproc: int, entrypoint: Callable[..., Any], *args: Any) -> dict[int, Any]:
    """Run ``entrypoint(*args)`` in ``nproc`` local processes, as torchrun --standalone does.

    Each process finds torchrun's environment variables set; a :class:`PrimeError` in any of
    them is printed by that process and stops the job. Returns the return values by rank.
    The processes are spawned: ``entrypoint`` must be importable, and a script calling
    ``launch`` needs the usual ``if __name__ == "__main__":`` guard.
    """
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if nproc < 1:
        raise PrimeError(f"--nproc must be >= 1, got {nproc}")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=str(uuid.uuid4()),
        rdzv_backend="c10d",
        rdzv_endpoint="localhost:0",
        max_restarts=0,
    )
    # as torchrun, do not oversubscribe the cores; an explicit OMP_NUM_THREADS wins
    threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or max(1, (os.cpu_count() or 1) // nproc)
    agent_log = logging.getLogger("torch.distributed.elastic")
    level = agent_log.level
    agent_log.setLevel(logging.CRITICAL)  # its tracebacks repeat what the ranks printed
    try:
        return elastic_launch(config, _run_rank)(threads, entrypoint, *args)
    except ChildFailedError as exc:
        failed = ", ".join(
            f"rank {rank} ({_ending(failure)})" for rank, failure in sorted(exc.failures.items())
        )
        stopped = "the job stopped (--resume continues it)"
        raise PrimeError(f"{failed} of {nproc} failed; {stopped}") from None
    finally:
        agent_log.setLevel(level)


def _ending(failure: Any) -> str:
    """How a failed process ended: its exit code, or the signal that killed it."""
    if failure.exitcode < 0:
        return f"killed by {failure.signal_name()}"
    return f"exit code {failure.exitcode}, see its message above"


def _run_rank(threads: int, entrypoint: Callable[..., Any], *args: Any) -> Any:
    torch.set_num_threads(threads)
    try:
        return entrypoint(*args)
    except PrimeError as exc:
        print(f"prime (rank {os.environ.get('RANK', '?')}): error: {exc}", file=sys.stderr)
        sys.exit(1)


def _is_collective_error(exc: RuntimeError) -> bool:
    text = str(exc).lower()
    return isinstance(exc, dist.DistError) or any(k in text for k in ("gloo", "nccl", "c10d"))


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
