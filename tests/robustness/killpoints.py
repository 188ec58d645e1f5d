"""Kill a writer before its N-th file-system change: the crash-point harness of the suite.

A *change* is one call, inside the folders watched, of ``os.replace`` / ``os.rename`` /
``os.link`` (publishing a file), ``os.unlink`` / ``os.remove`` / ``os.rmdir`` (deleting; also
the ones ``shutil.rmtree`` makes) or an open for writing (``open``/``io.open`` in a mode that
writes, ``os.open`` with a write flag: creating or truncating a file). Everything the Python
side of a writer does to a file passes through these, whichever library wrote it (zarr's
``LocalStore``, ``tempfile``, ``pathlib``, ``np.savez``...).

:func:`count_changes` runs an action in a forked child and counts its changes;
:func:`run_killed` runs it in a forked child that dies (``os._exit``) just before its N-th
change, as a ``kill -9`` would leave it (nothing flushed, no ``finally``). Linux only (``fork``
and ``/proc/self/fd``).
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

# A forked child hangs in torch's OpenMP pool if the parent ever ran it with several threads
# (module-scoped fixtures run before the suite's one-thread fixture): one thread from the start.
torch.set_num_threads(1)

KILLED, FINISHED, FAILED = 17, 3, 1
"""Exit codes of the child: killed at the change asked for, ran to the end, raised."""

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _absolute(path, dir_fd: int | None = None) -> str | None:
    if isinstance(path, int):
        return None  # an open file descriptor: not a path
    path = os.fsdecode(os.fspath(path))
    if dir_fd is not None and not os.path.isabs(path):
        try:
            path = os.path.join(os.readlink(f"/proc/self/fd/{dir_fd}"), path)
        except OSError:
            return None
    return os.path.realpath(path)


@contextmanager
def hooked_changes(roots: list[Path], on_change: Callable[[str, str], None]) -> Iterator[None]:
    """Call ``on_change(what, path)`` before each file-system change inside ``roots``."""
    prefixes = [os.path.realpath(r) for r in roots]

    def inside(path) -> str | None:
        if path is None:
            return None
        hit = any(path == p or path.startswith(p + os.sep) for p in prefixes)
        return path if hit else None

    originals = {name: getattr(os, name) for name in
                 ("replace", "rename", "link", "unlink", "remove", "rmdir", "open")}
    original_open = builtins.open

    def two_paths(name):
        def hooked(src, dst, *args, **kwargs):
            target = inside(_absolute(dst, kwargs.get("dst_dir_fd")))
            if target is not None:
                on_change(name, target)
            return originals[name](src, dst, *args, **kwargs)
        return hooked

    def one_path(name):
        def hooked(path, *args, **kwargs):
            target = inside(_absolute(path, kwargs.get("dir_fd")))
            if target is not None:
                on_change(name, target)
            return originals[name](path, *args, **kwargs)
        return hooked

    def os_open(path, flags, *args, **kwargs):
        if flags & _WRITE_FLAGS:
            target = inside(_absolute(path, kwargs.get("dir_fd")))
            if target is not None:
                on_change("open", target)
        return originals["open"](path, flags, *args, **kwargs)

    def py_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            target = inside(_absolute(file))
            if target is not None:
                on_change("open", target)
        return original_open(file, mode, *args, **kwargs)

    patched = {name: two_paths(name) for name in ("replace", "rename", "link")}
    patched |= {name: one_path(name) for name in ("unlink", "remove", "rmdir")}
    patched["open"] = os_open
    for name, function in patched.items():
        setattr(os, name, function)
    builtins.open = io.open = py_open
    try:
        yield
    finally:
        for name, function in originals.items():
            setattr(os, name, function)
        builtins.open = io.open = original_open


def _child(action: Callable[[], object], roots: list[Path], n_kill: int | None,
           report: int | None) -> None:
    """The forked child: never returns."""
    count = [0]

    def on_change(what: str, path: str) -> None:
        count[0] += 1
        if count[0] == n_kill:
            os._exit(KILLED)

    code = FINISHED
    try:
        with hooked_changes(roots, on_change):
            action()
    except BaseException:  # noqa: BLE001 - the parent sees the exit code and the traceback
        traceback.print_exc()
        code = FAILED
    if report is not None:
        os.write(report, str(count[0]).encode())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _wait(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def count_changes(action: Callable[[], object], *roots: Path) -> int:
    """Run ``action`` in a forked child; the number of changes it made inside ``roots``.

    Raises
    ------
    AssertionError
        The action raised (its traceback is on stderr).
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        _child(action, list(roots), None, write)
    os.close(write)
    with os.fdopen(read) as pipe:
        text = pipe.read()
    code = _wait(pid)
    assert code == FINISHED, f"the uninterrupted run failed (exit {code})"
    return int(text)


def run_killed(action: Callable[[], object], n_kill: int, *roots: Path) -> int:
    """Run ``action`` in a forked child that dies just before its ``n_kill``-th change inside
    ``roots``; the exit code (:data:`KILLED`, or :data:`FINISHED` when it made fewer)."""
    pid = os.fork()
    if pid == 0:
        _child(action, list(roots), n_kill, None)
    return _wait(pid)


def kill_points(action: Callable[[], object], *roots: Path,
                prepare: Callable[[], object] | None = None) -> Iterator[tuple[int, int]]:
    """``(n, exit code)`` for a run killed before each change ``n = 1, 2, ...`` until one runs
    to the end (``prepare()`` first, each time: restore the starting state)."""
    n = 0
    while True:
        n += 1
        if prepare is not None:
            prepare()
        code = run_killed(action, n, *roots)
        assert code in (KILLED, FINISHED), f"the run crashed (exit {code}) at change {n}"
        yield n, code
        if code == FINISHED:
            return
