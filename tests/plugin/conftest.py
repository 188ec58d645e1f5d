"""Fixtures of the plugin tests; Qt tests (files test_qt_*.py) skip when Qt cannot run.

The Qt tests need napari, qtpy and pytest-qt, and a display: a real one ($DISPLAY) or Xvfb,
which pytest-xvfb starts. Each test's HOME is a temporary folder, so sample clips and sessions
never land in the user's cache.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest


def _qt_unavailable() -> str | None:
    for module in ("napari", "qtpy", "pytestqt", "npe2"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'prism-science[napari,dev]')"
    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and \
            shutil.which("Xvfb") is None:
        return "no display and no Xvfb to start one (apt install xvfb)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _qt_unavailable()
    for item in items:
        if Path(str(item.fspath)).name.startswith("test_qt_"):
            item.add_marker(pytest.mark.qt)
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"Qt tests skipped: {reason}"))


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))
    import torch

    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def synth_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 90-frame 64x64 synthetic clip of one animal (with NAME.labels.csv beside it)."""
    from prism_science.synth import SynthConfig, generate_clip, write_clip

    out = tmp_path_factory.mktemp("clip")
    config = SynthConfig(size=(64, 64), fps=15.0, seconds=(6.0, 6.0), n_animals=1)
    return write_clip(generate_clip(3, config), out, "clip")


@pytest.fixture
def video(synth_clip: Path, tmp_path: Path) -> Path:
    """A private copy of the synthetic clip (its session file is written beside it)."""
    target = tmp_path / "videos" / synth_clip.name
    target.parent.mkdir()
    shutil.copy(synth_clip, target)
    return target


def fake_predictions(n_frames: int, n_classes: int, seed: int = 0) -> np.ndarray:
    """Smooth probabilities in [0, 1], (n_frames, n_classes) float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[:, None]
    phase = rng.uniform(0, 2 * np.pi, n_classes)[None, :]
    return (0.5 + 0.45 * np.sin(t / 9.0 + phase)).astype(np.float32)
