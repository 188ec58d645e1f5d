"""Fixtures of the fault and bad-input suite: small file systems that fill up or are read-only.

Mounting needs root and a working ``mount`` (containers often have both, laptops neither): the
tests that need it skip with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch

from tests.store.conftest import write_video

__all__ = ["run_cli", "write_video"]


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)


def run_cli(*args: str, cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``prism-science ARGS`` in a fresh process (a crash there cannot take pytest down)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "0"}
    return subprocess.run([sys.executable, "-m", "prism_science", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, env=env)


def _mount_unavailable() -> str | None:
    if not sys.platform.startswith("linux"):
        return "tmpfs mounts are Linux-only"
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return "no mount/umount command"
    return None


@pytest.fixture(scope="module")
def tmpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Path]]:
    """``tmpfs(size_kib) -> Path``: a fresh tmpfs of that size, unmounted after the module.

    ``tmpfs.read_only(path)`` remounts one read-only. Skips when mounting is not possible.
    """
    reason = _mount_unavailable()
    if reason:
        pytest.skip(reason)
    mounted: list[Path] = []

    def make(size_kib: int) -> Path:
        target = tmp_path_factory.mktemp("tmpfs")
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs",
                                 str(target)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
        mounted.append(target)
        return target

    def read_only(target: Path) -> None:
        subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)

    make.read_only = read_only  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)
