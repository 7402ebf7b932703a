"""One writer per directory: an advisory lock file that names its holder.

``with exclusive(run_dir):`` creates the folder (a clear :class:`PrimeError` where it cannot
be created or written) and takes an exclusive ``flock`` on ``<dir>/.prime.lock``, which
records the holder's PID, command and start time. A second writer is refused with the
holder named. The kernel releases the lock when its process ends however it ends (kill -9
included); a PID in the file whose process is gone is a stale record and is overwritten.
The holder removes the file when it finishes. Readers never take the lock. The lock is
re-entrant within one process (a sweep locks its folder and each chip's run folder; nested
calls on one folder share the lock).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from prime.core.errors import PrimeError

LOCK_NAME = ".prime.lock"
_held: dict[Path, int] = {}  # resolved folder -> nesting depth in this process


def pid_alive(pid: int) -> bool:
    """Whether a process with this PID exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def writable_dir(path: str | os.PathLike, what: str = "--out", fix: str | None = None) -> Path:
    """``path`` created as a folder; a PrimeError naming the problem where that fails, and
    ``fix`` (default: choose another ``what``)."""
    path = Path(path)
    fix = fix or f"choose a writable {what} or change the folder's permissions"
    if path.exists() and not path.is_dir():
        raise PrimeError(f"{what} {path} is a file, not a folder: {fix}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise PrimeError(f"{what} {path} lies under a file, not a folder: {fix}") from None
    except OSError as exc:
        raise PrimeError(f"cannot create {what} {path} ({exc.strerror}): {fix}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PrimeError(f"{what} {path} is not writable: {fix}")
    return path


@contextlib.contextmanager
def exclusive(directory: str | os.PathLike, what: str = "--out") -> Iterator[Path]:
    """Hold the write lock of ``directory`` (created if missing) for the block."""
    directory = writable_dir(directory, what)
    key = directory.resolve()
    if key in _held:
        _held[key] += 1
        try:
            yield directory
        finally:
            _held[key] -= 1
        return
    lock_path = directory / LOCK_NAME
    fd = _acquire(lock_path, directory, what)
    try:
        record = {"pid": os.getpid(), "command": " ".join(sys.argv), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        _held[key] = 1
        try:
            yield directory
        finally:
            del _held[key]
            lock_path.unlink(missing_ok=True)  # while still held: see _acquire
    finally:
        os.close(fd)  # releases the flock


def _acquire(lock_path: Path, directory: Path, what: str) -> int:
    """An open descriptor of ``lock_path`` holding its flock. A holder removes the file
    before it releases the lock, so a lock taken on a file that is no longer at
    ``lock_path`` is retried on the new file."""
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as exc:
            raise PrimeError(
                f"cannot write {lock_path} ({exc.strerror}): choose another {what}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _holder(fd)
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise PrimeError(f"cannot lock {lock_path} ({exc.strerror})") from None
            raise PrimeError(_busy_message(directory, holder, what)) from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return record if isinstance(record, dict) else {}


def _busy_message(directory: Path, holder: dict, what: str) -> str:
    pid = holder.get("pid")
    if isinstance(pid, int) and not pid_alive(pid):
        return (
            f"{directory} is still locked by the child processes of PID {pid}, which has "
            "ended; retry in a few seconds"
        )
    started = holder.get("started")
    since = time.strftime(" since %H:%M:%S", time.localtime(started)) if started else ""
    who = f"PID {pid} ({holder.get('command', '?')}){since}" if pid else "another process"
    return f"{directory} is being written by {who}; wait for it to finish or choose another {what}"
