"""Bout post-processing: bouts, gap filling, minimum bout length, multi-class smoothing."""

from __future__ import annotations

import numpy as np

from prism_science.probes import (
    binary_to_bouts,
    bouts_to_binary,
    postprocess_binary,
    smooth_labels,
)


def test_bouts_are_inclusive_and_roundtrip():
    active = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1])
    bouts = binary_to_bouts(active)
    assert bouts.tolist() == [[1, 2], [5, 5], [7, 9]]
    assert bouts_to_binary(bouts, 10).astype(int).tolist() == active.tolist()
    assert binary_to_bouts(np.zeros(4)).shape == (0, 2)


def test_gap_filling_then_minimum_bout_length():
    x = np.array([0, 1, 1, 0, 1, 1, 0, 0, 0, 1, 0, 0])
    filled = postprocess_binary(x, min_bout=1, max_gap=1)
    assert filled.tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0]
    both = postprocess_binary(x, min_bout=2, max_gap=1)
    assert both.tolist() == [0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    # Leading / trailing off-runs are never "gaps".
    edge = np.array([0, 0, 1, 1, 0])
    assert postprocess_binary(edge, max_gap=5).tolist() == edge.tolist()


def test_postprocessing_respects_videos_and_columns():
    x = np.array([[1, 0], [1, 1], [0, 1], [1, 1], [1, 0], [0, 0]])
    groups = np.array([0, 0, 0, 1, 1, 1])
    out = postprocess_binary(x, min_bout=2, groups=groups)
    # Column 1: frames 1-2 (video 0) and 3 (video 1) are separate bouts: the 1-frame one goes.
    assert out[:, 1].tolist() == [0, 1, 1, 0, 0, 0]
    assert out[:, 0].tolist() == [1, 1, 0, 1, 1, 0]
    gap = np.array([1, 0, 1, 1, 0, 1])
    assert postprocess_binary(gap, max_gap=1, groups=np.array([0, 0, 0, 1, 1, 1])).tolist() == [
        1, 1, 1, 1, 1, 1]
    assert postprocess_binary(gap, max_gap=1, groups=np.array([0, 0, 1, 1, 1, 1])).tolist() == [
        1, 0, 1, 1, 1, 1]


def test_smooth_labels_merges_short_runs():
    labels = np.array(["a", "a", "a", "b", "a", "a", "c", "c", "c"])
    assert smooth_labels(labels, 2).tolist() == ["a"] * 6 + ["c"] * 3
    start = np.array([2, 1, 1, 1, 3, 3, 3])
    assert smooth_labels(start, 2).tolist() == [1, 1, 1, 1, 3, 3, 3]
    assert smooth_labels(start, 1).tolist() == start.tolist()
