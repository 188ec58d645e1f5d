"""Bout post-processing: bouts, gap filling, minimum bout length, multi-class smoothing, and
thresholds + post-processing of probabilities (binarize_predictions)."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.errors import ProbeError
from prism_science.probes import (
    DEFAULT_POSTPROCESS,
    binarize_predictions,
    binary_to_bouts,
    bouts_to_binary,
    postprocess_binary,
    postprocess_settings,
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


def test_binarize_predictions_thresholds_then_gap_filling_and_min_bout():
    scores = np.zeros((20, 2), np.float32)
    scores[2:8, 0] = 0.8
    scores[5, 0] = 0.6  # one frame under the 0.7 threshold: a gap inside the bout
    scores[12, 0] = 0.9  # a one-frame spurious bout
    scores[10:15, 1] = 0.4  # above behavior 1's lower threshold
    post = {"min_bout": 2, "max_gap": 1}
    binary = binarize_predictions(scores, [0.7, 0.3], post)
    assert binary.dtype == np.int64 and binary.shape == (20, 2)
    assert binary_to_bouts(binary[:, 0]).tolist() == [[2, 7]]
    assert binary_to_bouts(binary[:, 1]).tolist() == [[10, 14]]
    # The same as thresholding, then postprocess_binary (what `probe predict` did before).
    thresholded = (scores >= np.array([0.7, 0.3])).astype(np.int64)
    np.testing.assert_array_equal(binary, postprocess_binary(thresholded, 2, 1))
    # No settings: thresholds only; None thresholds: 0.5.
    assert binarize_predictions(scores, [0.7, 0.3])[12, 0] == 1
    assert binarize_predictions(scores, None)[:, 1].sum() == 0


def test_binarize_predictions_rejects_bad_thresholds_and_settings():
    scores = np.zeros((5, 2))
    with pytest.raises(ProbeError, match="3 thresholds for 2 behaviors"):
        binarize_predictions(scores, [0.5, 0.5, 0.5])
    with pytest.raises(ProbeError, match="'min_frames' is unknown"):
        binarize_predictions(scores, 0.5, {"min_frames": 3})
    with pytest.raises(ProbeError, match="out of range"):
        binarize_predictions(scores, 0.5, {"min_bout": 0})
    with pytest.raises(ProbeError, match=r"expected \(frames, behaviors\)"):
        binarize_predictions(np.zeros(5), 0.5)
    assert postprocess_settings(None) == DEFAULT_POSTPROCESS
    assert postprocess_settings({"max_gap": "2"}) == {"min_bout": 1, "max_gap": 2}
