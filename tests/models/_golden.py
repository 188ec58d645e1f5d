"""Helpers shared by the parity tests: the golden fixtures copied from the official Flax code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
TOL = 1e-5


def io(case: str) -> dict[str, np.ndarray]:
    """Inputs and official outputs of one golden case."""
    with np.load(GOLDEN / f"{case}_io.npz") as data:
        return {k: data[k] for k in data.files}


def assert_close(found: torch.Tensor, expected: np.ndarray, what: str) -> None:
    """Max abs difference within 1e-5 (float32)."""
    assert tuple(found.shape) == expected.shape, (what, tuple(found.shape), expected.shape)
    diff = float((found.detach().float() - torch.from_numpy(expected)).abs().max())
    assert diff <= TOL, f"{what}: max abs diff {diff:.3g} > {TOL}"
