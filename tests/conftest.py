"""Shared pytest fixtures: paths to ../shared (skipped with a reason when absent) and tmp stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED = Path(os.environ.get("PRISM_SHARED", REPO_ROOT.parent / "shared"))

# Two cores: keep each test process from oversubscribing them.
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the repository (override with PRISM_SHARED); skips when absent."""
    if not SHARED.is_dir():
        pytest.skip(f"../shared not found at {SHARED}; set PRISM_SHARED to run tests on real data")
    return SHARED


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """Small fixture files committed with the tests (always present)."""
    return FIXTURES
