"""Resources checked before work: counts with named limits, memory a command would allocate.

The limits are far above any real use (PRIME trains 30 epochs at T = 10; the largest macro
prime models is 512x512) and far below what makes a machine swap, hang or kill a worker.
"""

from __future__ import annotations

import os

from prime.core.errors import PrimeError

MAX_EPOCHS = 100_000
MAX_TIMESTEPS = 10_000
MAX_TRACE_READS = 1_000_000
MAX_ARRAY_SIDE = 65_536  # rows or columns of a crossbar array (trace synthesis)
MAX_REPEATS = 10_000
MAX_SEED = 2**63 - 1


def check_count(name: str, value: int, low: int = 1, high: int | None = None) -> int:
    """``value`` if it is a whole number in [low, high]; else a PrimeError naming the limit."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise PrimeError(f"{name} must be a whole number >= {low}, got {value!r}")
    if high is not None and value > high:
        raise PrimeError(f"{name} {value} is above the limit of {high:,}; choose at most {high:,}")
    return value


def available_memory_bytes() -> int:
    """Memory available to new allocations (``MemAvailable`` of /proc/meminfo, else free
    physical pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(nbytes: int, what: str, fix: str) -> None:
    """A PrimeError if allocating ``nbytes`` for ``what`` would exceed the available memory."""
    available = available_memory_bytes()
    if nbytes > available:
        raise PrimeError(
            f"{what} needs {nbytes / 2**30:.1f} GiB of memory, {available / 2**30:.1f} GiB is "
            f"available: {fix}"
        )
