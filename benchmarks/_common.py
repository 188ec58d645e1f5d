"""Shared helpers of the benchmark scripts: where ../shared is, and the settings line.

Every figure a benchmark prints carries :func:`settings` beside it (model, threads, precision,
hop, machine load), so a number copied into a document says how it was made.
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_ENV = "PRISM_SHARED"


def add_shared_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--shared FOLDER`` (the project's shared data folder) to ``parser``."""
    parser.add_argument("--shared", type=Path, default=None,
                        help=f"the shared data folder (default: ${SHARED_ENV}, else "
                        f"{REPO.parent / 'shared'})")


def find_shared(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The shared data folder: ``explicit`` (``--shared``), ``$PRISM_SHARED``, REPO/../shared.

    Returns None, after printing where it looked, when none of them exists; a folder given
    explicitly (flag or variable) that does not exist stops the script with that message.
    """
    looked = []
    for origin, candidate in (("--shared", explicit), (f"${SHARED_ENV}",
                                                       os.environ.get(SHARED_ENV))):
        if candidate:
            path = Path(candidate).expanduser()
            if path.is_dir():
                return path.resolve()
            raise SystemExit(f"{origin} {path}: no such folder; give the folder that holds "
                             "data/real (the project's shared data)")
        looked.append(origin)
    default = REPO.parent / "shared"
    if default.is_dir():
        return default.resolve()
    print(f"shared data: not found ({default} does not exist, no --shared, no ${SHARED_ENV}); "
          "the parts that need it are skipped", flush=True)
    return None


def load_average() -> float:
    """The 1-minute load average (NaN where the OS has none)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def machine() -> str:
    """CPU model, logical cores, torch version and build's BLAS, one line."""
    caps = torch.backends.cpu.get_cpu_capability()
    return (f"{platform.processor() or platform.machine()} {_cpu_name()}, {os.cpu_count()} "
            f"logical CPUs ({caps}), torch {torch.__version__}")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def settings(model: str | None = None, *, threads: int | None = None,
             precision: str | None = None, hop: int | None = None, **extra: object) -> str:
    """``[model X, N threads, fp32, hop 16, load 1.2]``: the settings that made a figure."""
    parts = []
    if model is not None:
        parts.append(f"model {model}")
    parts.append(f"{threads or torch.get_num_threads()} thread(s)")
    if precision is not None:
        parts.append(precision)
    if hop is not None:
        parts.append(f"hop {hop}")
    parts += [f"{key.replace('_', ' ')} {value}" for key, value in extra.items()]
    parts.append(f"load {load_average():.1f}")
    return "[" + ", ".join(parts) + "]"
