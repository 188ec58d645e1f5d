"""Fixtures of the probe tests: synthetic per-frame features with planted behaviors."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)


def planted_videos(
    n_videos: int = 6, n_frames: int = 120, dim: int = 8, seed: int = 0, rare: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features ``(N, dim)`` float32, labels ``(N, 3)`` int64 and video ids ``(N,)``.

    Behaviors come in bouts; each behavior shifts its own feature axis by +2.5 (behavior 2 is
    rare when ``rare``); the features are otherwise Gaussian noise.
    """
    rng = np.random.default_rng(seed)
    xs, ys, groups = [], [], []
    for video in range(n_videos):
        y = np.zeros((n_frames, 3), np.int64)
        for k, n_bouts in enumerate((4, 3, 1 if rare else 3)):
            for _ in range(n_bouts):
                start = int(rng.integers(0, n_frames - 12))
                y[start : start + int(rng.integers(5, 12)), k] = 1
        x = rng.normal(size=(n_frames, dim)).astype(np.float32)
        x[:, :3] += 2.5 * y
        xs.append(x)
        ys.append(y)
        groups.append(np.full(n_frames, video))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)


@pytest.fixture
def planted():
    return planted_videos()
