"""The writer lock of an HDF5 feature store: one writing process at a time, readers never wait.

An HDF5 store (docs/store.md) is changed by reading its main file, changing it in memory and
replacing it atomically, so two processes writing at once would each drop the other's changes.
The first writer takes an advisory lock on ``X.h5.d/writer.lock`` (``fcntl.flock``, released by
the kernel when the process ends, however it ends) and writes its pid, host, start time and
command into it; a second writer is refused at once with a message naming them. Readers take
no lock. Where ``flock`` is unavailable (Windows, some network file systems) the pid and host
in the file are the lock: a holder on this host whose pid is gone is taken over, one on another
host must be removed by hand.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from prism_science.errors import StoreError

__all__ = ["LOCK_NAME", "WriterLock"]

logger = logging.getLogger(__name__)

LOCK_NAME = "writer.lock"
"""File name of the lock inside an HDF5 store's data folder (``X.h5.d/``)."""

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

_NO_FLOCK = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 65536).decode("utf-8", errors="replace").strip()
        holder = json.loads(text) if text else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError) as exc:
        return isinstance(exc, PermissionError)  # it exists, owned by someone else
    return True


def _describe(holder: dict[str, Any]) -> str:
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, since "
            f"{holder.get('since', '?')}: {holder.get('command', '?')}")


class WriterLock:
    """A held writer lock; :meth:`release` (or the end of the process) frees it.

    Use :meth:`acquire`.
    """

    def __init__(self, path: Path, fd: int, flocked: bool) -> None:
        self.path = path
        self._fd: int | None = fd
        self._flocked = flocked

    @classmethod
    def acquire(cls, path: str | os.PathLike[str], store: str | os.PathLike[str]) -> WriterLock:
        """Take the writer lock ``path`` of ``store`` now, or refuse.

        Parameters
        ----------
        path : str or PathLike
            The lock file (created, with its folder, when missing).
        store : str or PathLike
            The store, named in messages.

        Returns
        -------
        WriterLock

        Raises
        ------
        StoreError
            Another live process holds the lock (the message names the lock file, the
            holder's pid, host and command, and what to do), or the lock file cannot be made.
        """
        path, store = Path(path), Path(store)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(
                f"{store}: cannot create the writer lock {path} ({exc.strerror or exc}); the "
                "folder holding the store must be writable: fix its permissions or free space, "
                "or write the store elsewhere") from exc
        try:
            flocked = cls._flock(fd, path, store)
            previous = _read_holder(fd)
            if not flocked:
                cls._check_pid_file(previous, path, store)
            if previous.get("pid") is not None and (
                    previous.get("pid") != os.getpid()
                    or previous.get("host") != socket.gethostname()):
                logger.warning("%s: taking over the writer lock %s left by a process that is no "
                               "longer running (%s)", store, path, _describe(previous))
            record = {"pid": os.getpid(), "host": socket.gethostname(),
                      "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                      "command": " ".join(sys.argv)[:500]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(record).encode("utf-8"), 0)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, flocked)

    @staticmethod
    def _flock(fd: int, path: Path, store: Path) -> bool:
        """True once flock holds the lock, False where flock is unavailable; refuses when held."""
        if fcntl is None:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _refusal(store, path, _read_holder(fd)) from None
        except OSError as exc:
            if exc.errno in _NO_FLOCK:
                logger.info("%s: flock is not available on this file system (%s); the pid and "
                            "host in %s are the lock", store, exc, path)
                return False
            raise
        return True

    @staticmethod
    def _check_pid_file(holder: dict[str, Any], path: Path, store: Path) -> None:
        """Without flock: refuse when the recorded holder may still be running."""
        pid, host = holder.get("pid"), holder.get("host")
        if pid is None or (pid == os.getpid() and host == socket.gethostname()):
            return
        if host != socket.gethostname() or _pid_alive(pid):
            raise _refusal(store, path, holder)

    def release(self) -> None:
        """Clear the lock file and free the lock (nothing happens when already released)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        if self._flocked and fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock."""
        return self._fd is not None


def _refusal(store: Path, path: Path, holder: dict[str, Any]) -> StoreError:
    return StoreError(
        f"{store}: another process is writing this store ({_describe(holder)}); lock file "
        f"{path}. An HDF5 store takes one writer at a time: wait for that process to finish "
        "and rerun, or write into another store (a Zarr store takes several extractions at "
        "once); if that process is no longer running, delete the lock file and rerun"
    )
