"""Bout post-processing of per-frame binary predictions: gap filling and minimum bout length.

:func:`binarize_predictions` is the one place where probabilities become the predictions a user
sees: per-behavior thresholds, then the probe's bout post-processing. ``prism-science probe
predict`` (:func:`prism_science.pipeline.predict_to_store`) and the napari plugin's
timeline (through :class:`prism_science.session.PredictionTrack`) both call it.

A *bout* is a maximal run of consecutive frames where a behavior is on; bouts are
``(start, end)`` frame pairs with ``end`` inclusive (the project's convention). Videos never
share a bout: pass ``groups`` (video id per row, rows of a video contiguous and in time order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from prism_science.errors import ProbeError

DEFAULT_POSTPROCESS: dict[str, int] = {"min_bout": 1, "max_gap": 0}
"""No post-processing: every thresholded frame stays, no gap is filled."""


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


def postprocess_settings(postprocess: Mapping[str, int] | None) -> dict[str, int]:
    """A probe's ``postprocess`` settings, checked, with the defaults filled in.

    Parameters
    ----------
    postprocess : mapping or None
        ``{"min_bout": int, "max_gap": int}`` as kept in a probe's ``postprocess_`` and in the
        prediction attrs; missing keys (or None) mean no post-processing.

    Returns
    -------
    dict
        ``{"min_bout": int >= 1, "max_gap": int >= 0}``.

    Raises
    ------
    ProbeError
        An unknown key, or a value that is not a whole number in range.
    """
    settings = dict(DEFAULT_POSTPROCESS)
    for key, value in dict(postprocess or {}).items():
        if key not in settings:
            raise ProbeError(
                f"postprocess setting {key!r} is unknown; expected {sorted(DEFAULT_POSTPROCESS)}"
            )
        try:
            settings[key] = int(value)
        except (TypeError, ValueError) as exc:
            raise ProbeError(f"postprocess {key!r} must be a whole number of frames, got "
                             f"{value!r}") from exc
    if settings["min_bout"] < 1 or settings["max_gap"] < 0:
        raise ProbeError(f"postprocess {settings} is out of range: min_bout must be >= 1 and "
                         "max_gap >= 0 frames")
    return settings


def binarize_predictions(
    scores: np.ndarray,
    thresholds: float | Sequence[float] | np.ndarray | None,
    postprocess: Mapping[str, int] | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Probabilities -> the binary predictions that are saved and shown.

    A frame is on where its probability is at least the behavior's threshold; then
    :func:`postprocess_binary` fills short gaps and drops short bouts. ``prism-science probe
    predict`` and the plugin's timeline both use this function, so they show the same bouts.

    Parameters
    ----------
    scores : np.ndarray
        ``(T, K)`` float probabilities (columns are behaviors).
    thresholds : float, sequence of float or None
        One threshold for all behaviors or ``(K,)`` per behavior (a probe's ``thresholds_``);
        None means 0.5.
    postprocess : mapping, optional
        ``{"min_bout": int, "max_gap": int}`` (a probe's ``postprocess_``); None: none.
    groups : np.ndarray, optional
        ``(T,)`` video id per row; bouts and gaps never cross a change of id.

    Returns
    -------
    np.ndarray
        ``(T, K)`` int64 0/1.

    Raises
    ------
    ProbeError
        ``scores`` is not 2-D, the thresholds do not match its columns, or bad settings.
    """
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise ProbeError(f"scores have shape {scores.shape}; expected (frames, behaviors)")
    cut = np.asarray(0.5 if thresholds is None else thresholds, dtype=np.float64).reshape(-1)
    if cut.size not in (1, scores.shape[1]):
        raise ProbeError(f"{cut.size} thresholds for {scores.shape[1]} behaviors; give one per "
                         "behavior (the probe's thresholds_) or a single one")
    settings = postprocess_settings(postprocess)
    binary = (scores >= cut[None, :]).astype(np.int64)
    return postprocess_binary(binary, settings["min_bout"], settings["max_gap"], groups)


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
