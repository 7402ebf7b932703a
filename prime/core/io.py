"""Atomic files and safe checkpoint loading.

Everything prime writes (checkpoints, metrics, caches, traces) goes to a temporary file in
the destination folder first and is renamed over the destination only when complete, so a
kill never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from prime.core.errors import PrimeError

CHECKPOINT_FORMAT = "prime-checkpoint"
CHECKPOINT_VERSION = 1


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success, fsync it and rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> None:
    """Call ``write(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The JSON object in ``path``, a ``what`` file (e.g. "energy constants"); a missing,
    unreadable or non-object file is a ``PrimeError`` saying which."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PrimeError(f"no such {what} file: {path}") from None
    except (OSError, ValueError) as exc:
        raise PrimeError(f"{path} is not a readable JSON file ({exc})") from None
    if not isinstance(data, dict):
        raise PrimeError(f"{path} must hold a JSON object (a {what} file)")
    return data


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Save a prime checkpoint (tensors and plain Python values only) atomically."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_torch_file(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` on the CPU, with clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise PrimeError(f"no such file: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt/foreign files
        raise PrimeError(
            f"{path} is not a readable PyTorch checkpoint (corrupt, truncated or not a "
            f"checkpoint; only tensors and plain values are loaded; torch said "
            f"{type(exc).__name__})"
        ) from None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`; refuse foreign files clearly."""
    payload = load_torch_file(path)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise PrimeError(
            f"{path} is not a prime checkpoint (for a PRIME reference checkpoint use "
            "prime.snn.reference.load_prime_reference)"
        )
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise PrimeError(
            f"{path} has checkpoint format version {payload.get('format_version')!r}; this "
            f"prime reads version {CHECKPOINT_VERSION}"
        )
    return payload
