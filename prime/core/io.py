"""Atomic files and safe checkpoint loading.

Everything prime writes (checkpoints, metrics, caches, traces) goes to a temporary file in
the destination folder first and is renamed over the destination only when complete, so a
kill never leaves a half-written file behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h5py
import torch

from prime.core.errors import PrimeError
from prime.core.lock import pid_alive

CHECKPOINT_FORMAT = "prime-checkpoint"
CHECKPOINT_VERSION = 1


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success, fsync it and rename it to ``path``.

    The temporary file's name carries the writer's PID (``.<name>.p<pid>.<random>.tmp``), so
    temporary files left by killed writers are found and removed by the next write into the
    folder. A write that fails (a full disk, a file size limit, no permission) raises a
    PrimeError naming the file; ``path`` keeps its previous content and the temporary file is
    removed.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp", dir=path.parent
        )
    except OSError as exc:
        raise PrimeError(f"cannot write {path}: {_reason(exc)}") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            yield tmp
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
            os.replace(tmp, path)
        except OSError as exc:
            kept = "its previous content is kept" if path.exists() else "nothing was written"
            raise PrimeError(f"writing {path} failed ({_reason(exc)}); {kept}") from None
    finally:
        tmp.unlink(missing_ok=True)


_TEMPORARY = re.compile(r"^\..+\.p(\d+)\.[^.]+\.tmp$")


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of :func:`atomic_path` in ``folder`` whose writer process
    has ended (killed mid-write); return them."""
    removed = []
    for entry in os.scandir(os.fspath(folder)):
        match = _TEMPORARY.match(entry.name)
        if match and not pid_alive(int(match.group(1))):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed


def _reason(exc: BaseException) -> str:
    """What went wrong in a failed write, with the fix for the usual causes."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    errors = [exc.errno] if isinstance(exc, OSError) else []
    if errno.ENOSPC in errors or "No space left" in text:
        return "no space left on the device: free some space or write elsewhere"
    if errno.EFBIG in errors or "too large" in text.lower():
        return "file size limit reached (ulimit -f): raise the limit or write elsewhere"
    if isinstance(exc, PermissionError) or errno.EROFS in errors:
        return "permission denied or read-only: write to a writable folder"
    return text


@contextlib.contextmanager
def atomic_hdf5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """An HDF5 file open for writing, moved to ``path`` atomically when the block ends.

    HDF5 leaves its objects in a state that crashes the interpreter (a segmentation fault at
    exit) when the operating system refuses a write. So HDF5 writes through
    :class:`_DeferredErrors`, which never fails a write but remembers the first error; the
    error is raised as a PrimeError (through :func:`atomic_path`) once the file is closed.
    """
    with atomic_path(path) as tmp, open(tmp, "r+b", buffering=0) as raw:
        target = _DeferredErrors(raw)
        with h5py.File(target, "w") as f:
            yield f
        if target.error is not None:
            raise target.error


class _DeferredErrors(io.RawIOBase):
    """A file that reports write errors only afterwards (``error``); writes after the first
    error are dropped, and the file is deleted by :func:`atomic_path`."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self.raw = raw
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def readinto(self, buffer: Any) -> int:
        return self.raw.readinto(buffer)

    def write(self, data: Any) -> int:
        size = memoryview(data).nbytes
        if self.error is None:
            try:
                written = self.raw.write(data)
                if written == size:
                    return size
                self.error = OSError(errno.EFBIG, f"short write ({written} of {size} bytes)")
            except OSError as exc:
                self.error = exc
        self.raw.seek(size, os.SEEK_CUR)
        return size

    def truncate(self, size: int | None = None) -> int:
        try:
            return self.raw.truncate(size)
        except OSError as exc:
            self.error = self.error or exc
            return self.raw.tell() if size is None else size

    def flush(self) -> None:
        try:
            self.raw.flush()
        except OSError as exc:
            self.error = self.error or exc


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
    """Save a prime checkpoint (tensors and plain Python values only) atomically.

    It is serialised in memory first and written with plain file I/O, so a full disk is an
    OSError that :func:`atomic_path` reports (torch's writer would hide its cause).
    """
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **payload}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


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


def check_finite(state: Any, what: str) -> None:
    """A PrimeError naming the first tensor of ``state`` (nested dicts and lists of tensors)
    that holds NaN or infinite values."""
    for name, tensor in _tensors(state, ""):
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise PrimeError(
                f"{what}{name} holds {bad} NaN or infinite values (a damaged or diverged "
                "checkpoint): train the run again or restore the file"
            )


def _tensors(value: Any, name: str) -> Iterator[tuple[str, torch.Tensor]]:
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{name}.{key}" if name else f" {key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{name}[{index}]")


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's content (hex); a PrimeError if it cannot be read."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise PrimeError(f"cannot read {path} ({exc.strerror})") from None


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
