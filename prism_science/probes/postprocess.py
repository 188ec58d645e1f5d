"""Bout post-processing of per-frame binary predictions: gap filling and minimum bout length.

A *bout* is a maximal run of consecutive frames where a behavior is on; bouts are
``(start, end)`` frame pairs with ``end`` inclusive (the project's convention). Videos never
share a bout: pass ``groups`` (video id per row, rows of a video contiguous and in time order).
"""

from __future__ import annotations

import numpy as np


def binary_to_bouts(active: np.ndarray) -> np.ndarray:
    """Bouts of a 1-D binary sequence.

    Parameters
    ----------
    active : np.ndarray
        ``(T,)`` bool or 0/1.

    Returns
    -------
    np.ndarray
        ``(n_bouts, 2)`` int64 ``[start, end]`` with ``end`` inclusive, in time order.
    """
    active = np.asarray(active).astype(bool).reshape(-1)
    padded = np.r_[False, active, False].astype(np.int8)
    edges = np.diff(padded)
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return np.stack([starts, ends], axis=1).astype(np.int64) if len(starts) else np.zeros(
        (0, 2), np.int64
    )


def bouts_to_binary(bouts: np.ndarray, n_frames: int) -> np.ndarray:
    """Inverse of :func:`binary_to_bouts`: ``(n_bouts, 2)`` inclusive bouts -> ``(T,)`` bool."""
    active = np.zeros(n_frames, bool)
    for start, end in np.asarray(bouts, np.int64).reshape(-1, 2):
        active[start : end + 1] = True
    return active


def _postprocess_sequence(active: np.ndarray, min_bout: int, max_gap: int) -> np.ndarray:
    active = np.asarray(active).astype(bool).copy()
    if max_gap > 0:
        gaps = binary_to_bouts(~active)
        for start, end in gaps:
            # Only gaps between two bouts are filled, never the video's leading/trailing off run.
            if start > 0 and end < len(active) - 1 and end - start + 1 <= max_gap:
                active[start : end + 1] = True
    if min_bout > 1:
        for start, end in binary_to_bouts(active):
            if end - start + 1 < min_bout:
                active[start : end + 1] = False
    return active


def postprocess_binary(
    binary: np.ndarray, min_bout: int = 1, max_gap: int = 0, groups: np.ndarray | None = None
) -> np.ndarray:
    """Fill short gaps, then drop short bouts, independently per behavior and per video.

    Parameters
    ----------
    binary : np.ndarray
        ``(T,)`` or ``(T, n_behaviors)`` 0/1 (or bool) per-frame predictions.
    min_bout : int
        Bouts shorter than this many frames are removed (after gap filling).
    max_gap : int
        Off-runs of at most this many frames between two bouts are switched on.
    groups : np.ndarray, optional
        ``(T,)`` video id per row; bouts and gaps never cross a change of id.

    Returns
    -------
    np.ndarray
        Same shape as ``binary``, int64 0/1.
    """
    binary = np.asarray(binary)
    matrix = binary.reshape(len(binary), -1)
    out = np.zeros(matrix.shape, np.int64)
    for lo, hi in group_runs(groups, len(matrix)):
        for k in range(matrix.shape[1]):
            out[lo:hi, k] = _postprocess_sequence(matrix[lo:hi, k], int(min_bout), int(max_gap))
    return out.reshape(binary.shape)


def smooth_labels(
    labels: np.ndarray, min_bout: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Multi-class smoothing: runs shorter than ``min_bout`` take the label of the previous run
    (the next one at the start of a video).

    Parameters
    ----------
    labels : np.ndarray
        ``(T,)`` per-frame class labels.
    min_bout : int
        Minimum run length in frames.
    groups : np.ndarray, optional
        ``(T,)`` video id per row.

    Returns
    -------
    np.ndarray
        ``(T,)`` smoothed labels, same dtype.
    """
    labels = np.asarray(labels).copy()
    if min_bout <= 1:
        return labels
    for lo, hi in group_runs(groups, len(labels)):
        seq = labels[lo:hi]
        change = np.flatnonzero(seq[1:] != seq[:-1]) + 1
        bounds = np.r_[0, change, len(seq)]
        runs = list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=False))
        long_runs = [run for run in runs if run[1] - run[0] >= min_bout]
        if not long_runs:
            continue
        # Leading short runs take the first long run's label; later ones the previous frame's.
        first_long = long_runs[0][0]
        seq[:first_long] = seq[first_long]
        for start, stop in runs:
            if start > first_long and stop - start < min_bout:
                seq[start:stop] = seq[start - 1]
        labels[lo:hi] = seq
    return labels


def group_runs(groups: np.ndarray | None, n: int) -> list[tuple[int, int]]:
    """``[lo, hi)`` row ranges of constant group id (the whole range without groups)."""
    if groups is None or n == 0:
        return [(0, n)]
    groups = np.asarray(groups)
    change = np.flatnonzero(groups[1:] != groups[:-1]) + 1
    bounds = np.r_[0, change, n]
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=False))
