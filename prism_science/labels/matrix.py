"""Per-frame label matrices: intervals <-> (n_frames, n_behaviors) int8 with -1 / 0 / 1.

-1 means unlabeled (left out of training and evaluation), 0 absent, 1 present. A frame is
labeled for a behavior when a segment of the table covers it (for that subject and behavior),
when an interval of that behavior covers it, or when an interval of another behavior of the same
exclusive group covers it (a frame labeled "attack" is thereby labeled "not mount").
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.table import Interval, LabelTable, Segment, frames_to_seconds

UNLABELED, ABSENT, PRESENT = -1, 0, 1


def _as_set(behaviors: BehaviorSet | Sequence[str]) -> BehaviorSet:
    return behaviors if isinstance(behaviors, BehaviorSet) else BehaviorSet(tuple(behaviors))


def _n_frames(table: LabelTable, n_frames: int | None) -> int:
    n = n_frames if n_frames is not None else table.n_frames
    if n is None:
        raise LabelError(
            f"{table.origin or 'label table'}: the frame matrix needs the video's frame count; "
            "the table has no n_frames. Pass n_frames=... (the video's length)."
        )
    return int(n)


def _check_range(table: LabelTable, start: int, end: int, n: int, what: str) -> None:
    if start < 0 or end >= n or end < start:
        raise LabelError(
            f"{table.origin or 'label table'}: {what} frames {start}-{end} are outside the "
            f"video's {n} frames (0..{n - 1}); expected 0 <= start <= end < n_frames. Check "
            "n_frames and that the labels belong to this video."
        )


def labeled_mask(table: LabelTable, behaviors: BehaviorSet | Sequence[str],
                 n_frames: int | None = None, subject: str | None = None,
                 labeled_ranges: Sequence[Segment | tuple[int, int]] | None = None) -> np.ndarray:
    """Which (frame, behavior) cells are labeled.

    Parameters
    ----------
    table : LabelTable
    behaviors : BehaviorSet or sequence of str
        Column order.
    n_frames : int, optional
        Defaults to ``table.n_frames``.
    subject : str, optional
        Only this subject's intervals (and segments for it or for all subjects); None: all.
    labeled_ranges : sequence of Segment or (start, end), optional
        Inclusive labeled ranges replacing ``table.segments``.

    Returns
    -------
    numpy.ndarray
        bool (n_frames, n_behaviors).
    """
    bset = _as_set(behaviors)
    n = _n_frames(table, n_frames)
    mask = np.zeros((n, len(bset)), dtype=bool)
    col = {name: j for j, name in enumerate(bset.names)}
    segments = table.segments if labeled_ranges is None else [
        s if isinstance(s, Segment) else Segment(int(s[0]), int(s[1])) for s in labeled_ranges
    ]
    for seg in segments:
        if subject is not None and seg.subject is not None and seg.subject != subject:
            continue
        _check_range(table, seg.start_frame, seg.end_frame, n, "labeled segment")
        if seg.behaviors is None:
            mask[seg.start_frame:seg.end_frame + 1, :] = True
        else:
            cols = [col[b] for b in seg.behaviors if b in col]
            mask[seg.start_frame:seg.end_frame + 1, cols] = True
    for iv in _subject_intervals(table, subject):
        if iv.behavior not in col:
            continue
        _check_range(table, iv.start_frame, iv.end_frame, n, f"interval {iv.behavior!r}")
        group = bset.group_of(iv.behavior) or (iv.behavior,)
        mask[iv.start_frame:iv.end_frame + 1, [col[b] for b in group]] = True
    return mask


def _subject_intervals(table: LabelTable, subject: str | None) -> list[Interval]:
    if subject is None:
        return list(table.intervals)
    return [iv for iv in table.intervals if iv.subject == subject]


def to_frame_matrix(table: LabelTable, behaviors: BehaviorSet | Sequence[str],
                    n_frames: int | None = None, subject: str | None = None,
                    labeled_ranges: Sequence[Segment | tuple[int, int]] | None = None
                    ) -> np.ndarray:
    """The per-frame label matrix of a table.

    Parameters
    ----------
    table : LabelTable
    behaviors : BehaviorSet or sequence of str
        Column order; intervals of behaviors not listed are ignored.
    n_frames : int, optional
        Rows; defaults to ``table.n_frames`` (LabelError when neither is known).
    subject : str, optional
        Only this subject; None merges all subjects (present when any subject shows it).
    labeled_ranges : sequence of Segment or (start, end), optional
        Inclusive labeled frame ranges replacing the table's ``segments``; ``[(0, n - 1)]``
        declares a fully annotated video.

    Returns
    -------
    numpy.ndarray
        int8 (n_frames, n_behaviors): -1 unlabeled, 0 absent, 1 present.
    """
    bset = _as_set(behaviors)
    mask = labeled_mask(table, bset, n_frames, subject, labeled_ranges)
    present = np.zeros(mask.shape, dtype=bool)
    col = {name: j for j, name in enumerate(bset.names)}
    for iv in _subject_intervals(table, subject):
        j = col.get(iv.behavior)
        if j is not None:
            present[iv.start_frame:iv.end_frame + 1, j] = True
    out = np.full(mask.shape, UNLABELED, dtype=np.int8)
    out[mask] = ABSENT
    out[present] = PRESENT
    return out


def bool_runs(values: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive (start, end) runs of True in a 1-D bool array."""
    if values.size == 0:
        return []
    padded = np.concatenate([[False], values, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def from_frame_matrix(matrix: np.ndarray, behaviors: BehaviorSet | Sequence[str],
                      subject: str | None = None, fps: float | None = None,
                      timestamps: np.ndarray | None = None, annotator: str = "",
                      source: str = "predicted", scores: np.ndarray | None = None,
                      video_id: str | None = None, origin: str | None = None) -> LabelTable:
    """Intervals and labeled segments from a per-frame matrix (inverse of :func:`to_frame_matrix`).

    Parameters
    ----------
    matrix : numpy.ndarray
        int (n_frames, n_behaviors) with -1 unlabeled, 0 absent, 1 present (a bool or 0/1 matrix
        is fully labeled).
    behaviors : BehaviorSet or sequence of str
        Column names; kept as the table's ``behavior_set``.
    subject, annotator, source : str
        Written on every interval.
    fps, timestamps : optional
        The video's timing, for the intervals' seconds.
    scores : numpy.ndarray, optional
        float (n_frames, n_behaviors) per-frame probabilities; each interval's ``confidence``
        is their mean over the bout.

    Returns
    -------
    LabelTable
        One interval per run of 1 per column; segments from the runs of labeled frames (one set
        for all behaviors when every column is labeled on the same frames, else per behavior).
    """
    bset = _as_set(behaviors)
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[1] != len(bset):
        raise LabelError(
            f"{origin or 'frame matrix'}: expected shape (n_frames, {len(bset)}) for behaviors "
            f"{list(bset.names)}, found {m.shape}. Pass one column per behavior."
        )
    if scores is not None and np.shape(scores) != m.shape:
        raise LabelError(f"{origin or 'frame matrix'}: scores have shape {np.shape(scores)}, "
                         f"expected {m.shape} like the matrix.")
    m = m.astype(np.int8)
    n = m.shape[0]
    intervals: list[Interval] = []
    for j, name in enumerate(bset.names):
        for a, b in bool_runs(m[:, j] == PRESENT):
            s, e = frames_to_seconds(a, b, fps, timestamps)
            conf = None
            if scores is not None:
                conf = float(np.clip(np.mean(np.asarray(scores)[a:b + 1, j]), 0.0, 1.0))
            intervals.append(Interval(name, a, b, s, e, subject, annotator, source, conf))
    labeled = m >= 0
    segments: list[Segment] = []
    if n and np.all(labeled == labeled[:, :1]):
        segments = [Segment(a, b, subject) for a, b in bool_runs(labeled[:, 0])]
    else:
        for j, name in enumerate(bset.names):
            segments += [Segment(a, b, subject, (name,)) for a, b in bool_runs(labeled[:, j])]
    intervals.sort(key=lambda iv: (iv.start_frame, iv.behavior))
    return LabelTable(intervals, segments, video_id, n, fps,
                      np.asarray(timestamps, np.float64) if timestamps is not None else None,
                      bset, origin)


def label_vector_to_matrix(labels: np.ndarray, n_classes: int,
                           unlabeled: Sequence[int] = ()) -> np.ndarray:
    """One-hot matrix of single-label per-frame class ids (CalMS21, KABR).

    Parameters
    ----------
    labels : numpy.ndarray
        int (n_frames,) class ids in [0, n_classes), or values in ``unlabeled``.
    n_classes : int
    unlabeled : sequence of int
        Ids meaning "not labeled" (rows of -1).

    Returns
    -------
    numpy.ndarray
        int8 (n_frames, n_classes).
    """
    labels = np.asarray(labels, dtype=np.int64)
    out = np.zeros((labels.size, n_classes), dtype=np.int8)
    valid = (labels >= 0) & (labels < n_classes)
    out[np.flatnonzero(valid), labels[valid]] = PRESENT
    out[np.isin(labels, list(unlabeled))] = UNLABELED
    return out


def table_summary(table: LabelTable, behaviors: BehaviorSet | Sequence[str] | None = None
              ) -> list[dict]:
    """Per-behavior rows of a label table: bouts, frames, seconds, labeled frames and coverage.

    ``coverage`` is the fraction of the video's frames that are labeled for the behavior
    (NaN when ``n_frames`` is unknown); ``frames`` counts frames where any subject shows the
    behavior.
    """
    bset = behaviors if isinstance(behaviors, BehaviorSet) else (
        BehaviorSet(tuple(behaviors)) if behaviors is not None else table.behaviors())
    n = table.last_frame() + 1
    rows = []
    if n <= 0:
        return [{"behavior": b, "bouts": 0, "frames": 0, "seconds": 0.0, "labeled_frames": 0,
                 "coverage": math.nan} for b in bset.names]
    matrix = to_frame_matrix(table, bset, n_frames=n)
    labeled = labeled_mask(table, bset, n_frames=n)
    for j, name in enumerate(bset.names):
        ivs = [iv for iv in table.intervals if iv.behavior == name]
        seconds = float(np.nansum([iv.duration_s for iv in ivs])) if ivs else 0.0
        rows.append({
            "behavior": name,
            "bouts": len(ivs),
            "frames": int((matrix[:, j] == 1).sum()),
            "seconds": seconds,
            "labeled_frames": int(labeled[:, j].sum()),
            "coverage": (float(labeled[:, j].sum()) / table.n_frames
                         if table.n_frames else math.nan),
        })
    return rows
