"""Fly vs. Fly / FlyTracker actions files (MATLAB v5 or v7.3).

Both namings are recognised: FlyTracker's ``<movie>-actions.mat`` / ``<movie>-track.mat`` and
the Fly vs. Fly 2014 release's ``movieN_actions.mat`` / ``movieN_track.mat``; the video id is
the part before the suffix (``movie3``).

``behs``: 1 x B cellstr of behavior names; ``bouts``: n_flies x B cell, ``bouts{fly, b}`` a
K x 2 (or K x 3, third column a flag, not kept) matrix of ``[start end]`` frames, **1-based and
inclusive** (FlyTracker visualizer.m). Subjects are ``fly1``, ``fly2``, ...; behaviors are
multi-label. Fly vs. Fly is exhaustively annotated -- every behavior of every fly of every
movie -- so every fly of ``bouts`` is labeled on every frame for every behavior, and an empty
list means "never": a fly, or a whole movie, without any bout is all negatives, not unlabeled
(FlyTracker's own FlyTrackerBouts2LabelIdx marks a fly unlabeled only per behavior). The movie's
length is ``n_frames`` when given, else read from the sibling track file (``trk.data``: flies x
frames x fields), else the last bout's end (with a warning; a movie without bouts then has no
labeled frame).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import ReadOptions
from prism_science.labels.formats._matlab import as_matrix, as_strings, load_mat
from prism_science.labels.table import Interval, LabelTable, Segment, frames_to_seconds

logger = logging.getLogger(__name__)


ACTIONS_SUFFIXES = ("-actions", "_actions")
"""FlyTracker's and the Fly vs. Fly 2014 release's actions-file suffixes (before ``.mat``)."""


def video_id_from_path(path: Path) -> str:
    """``movie3`` for ``movie3-actions.mat`` (FlyTracker) or ``movie3_actions.mat`` (FvF 2014)."""
    stem = path.stem
    for suffix in ACTIONS_SUFFIXES:
        if stem.endswith(suffix):
            return stem[: -len(suffix)]
    return stem


def _track_file(path: Path) -> Path | None:
    """The sibling track file, in the naming of the actions file first."""
    movie = video_id_from_path(path)
    separators = ("_", "-") if path.stem.endswith("_actions") else ("-", "_")
    for separator in separators:
        track = path.with_name(f"{movie}{separator}track.mat")
        if track.is_file():
            return track
    return None


def _track_length(path: Path) -> int | None:
    track = _track_file(path)
    if track is None:
        return None
    try:
        trk = load_mat(track).get("trk")
        data = trk.get("data") if isinstance(trk, dict) else None
        # v5 keeps MATLAB's 3-D shape; v7.3 arrays come back 2-D only for 2-D data.
        return int(data.shape[1]) if data is not None and data.ndim == 3 else None
    except LabelError:
        return None


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A Fly vs. Fly ``-actions.mat`` as ``{video_id: LabelTable}`` (one movie)."""
    variables = load_mat(path)
    for name in ("behs", "bouts"):
        if name not in variables:
            raise LabelError(f"{path}: missing variable {name!r} of a Fly vs. Fly actions file; "
                             f"found {sorted(variables)}. Check --format.")
    behs = as_strings(variables["behs"], path, "behs")
    bouts = variables["bouts"]
    if not isinstance(bouts, np.ndarray) or bouts.dtype != object or bouts.ndim != 2:
        raise LabelError(f"{path}, variable 'bouts': expected an n_flies x {len(behs)} cell "
                         f"array, found {type(bouts).__name__}.")
    if bouts.shape[1] != len(behs):
        raise LabelError(f"{path}, variable 'bouts': {bouts.shape[1]} columns but 'behs' names "
                         f"{len(behs)} behaviors; expected one column per behavior.")
    n_frames = options.n_frames
    if n_frames is None and options.timestamps is not None:
        n_frames = len(options.timestamps)
    if n_frames is None:
        n_frames = _track_length(path)
    intervals: list[Interval] = []
    for fly in range(bouts.shape[0]):
        subject = f"fly{fly + 1}"
        for b, behavior in enumerate(behs):
            field = f"bouts{{{fly + 1},{b + 1}}}"
            matrix = as_matrix(bouts[fly, b], path, field, columns=(2, 3))
            for k, row in enumerate(matrix):
                start, end = int(row[0]) - 1, int(row[1]) - 1  # 1-based inclusive -> 0-based
                s, e = frames_to_seconds(start, end, options.fps, options.timestamps)
                intervals.append(Interval(behavior, start, end, s, e, subject,
                                          options.annotator, "manual",
                                          origin=f"{path}, {field} row {k + 1}"))
    if n_frames is None:
        n_last = max((iv.end_frame for iv in intervals), default=-1) + 1
        if intervals:
            logger.warning("%s: movie length unknown; labeled frames end at the last bout (%d). "
                           "Pass n_frames for the whole movie.", path, n_last)
        else:
            logger.warning("%s: no bout and the movie length is unknown, so its negatives cannot "
                           "be placed: nothing is labeled. Pass n_frames or put %s_track.mat "
                           "beside it.", path, video_id_from_path(path))
        last = n_last - 1
    else:
        last = n_frames - 1
    # Exhaustive annotation: every fly is labeled on every frame, bouts or not.
    flies = [f"fly{fly + 1}" for fly in range(bouts.shape[0])]
    segments = [Segment(0, last, s) for s in flies] if last >= 0 else []
    video_id = options.video_id or video_id_from_path(path)
    bset = BehaviorSet(tuple(behs))
    if options.behaviors is not None:
        bset = options.behaviors.union(bset)
    return {video_id: LabelTable(intervals, segments, video_id, n_frames, options.fps,
                                 options.timestamps, bset, str(path))}
