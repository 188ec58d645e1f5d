"""JAABA scores files (``scores_<Behavior>.mat``, MATLAB v5 or v7.3): classifier predictions.

``allScores`` holds per fly (cells): ``scores{fly}`` (1 x T raw classifier scores by absolute
frame, NaN where untracked), ``tStart(fly)``/``tEnd(fly)`` (1-based, inclusive),
``postprocessed{fly}`` (0/1), and the bouts ``t0s{fly}`` / ``t1s{fly}`` (1-based; ``t1`` is
**exclusive**: the bout covers frames t0..t1-1), plus ``scoreNorm``. ``behaviorName`` names the
behavior (else the file name ``scores_<name>.mat``). Bouts come from ``t0s``/``t1s`` when present,
else from ``postprocessed``, else ``scores > 0``. Intervals are ``source="predicted"``, subject
``fly<i>``; ``confidence`` is the bout's mean of ``0.5 + 0.5 * clip(score / scoreNorm, -1, 1)``.
Each fly is labeled for the behavior on its tracked frames ``tStart..tEnd``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import ReadOptions
from prism_science.labels.formats._matlab import as_strings, cell_items, load_mat
from prism_science.labels.matrix import bool_runs
from prism_science.labels.table import Interval, LabelTable, Segment, frames_to_seconds


def _vector(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype != object:
        return np.asarray(value, dtype=np.float64).ravel(order="F")
    return np.zeros(0)


def _behavior_name(variables: dict, path: Path) -> str:
    name = variables.get("behaviorName")
    if name is not None:
        names = as_strings(name, path, "behaviorName")
        if names and names[0]:
            return names[0]
    stem = path.stem
    if stem.startswith("scores_") and len(stem) > len("scores_"):
        return stem[len("scores_"):]
    raise LabelError(f"{path}: no 'behaviorName' variable and the file is not named "
                     "scores_<Behavior>.mat; expected one of them to name the behavior.")


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A JAABA scores file as ``{video_id: LabelTable}`` (one experiment, one behavior)."""
    variables = load_mat(path)
    scores_struct = variables.get("allScores")
    if not isinstance(scores_struct, dict):
        raise LabelError(f"{path}: missing struct variable 'allScores' of a JAABA scores file; "
                         f"found {sorted(variables)}. Check --format.")
    behavior = _behavior_name(variables, path)
    if "scores" not in scores_struct:
        raise LabelError(f"{path}, variable 'allScores': missing field 'scores'; found "
                         f"{sorted(scores_struct)}.")
    scores = [_vector(s) for s in cell_items(scores_struct["scores"])]
    n_flies = len(scores)
    t_start = _vector(scores_struct.get("tStart", np.ones((1, n_flies))))
    t_end = _vector(scores_struct.get("tEnd", np.asarray([[len(s) for s in scores]])))
    if len(t_start) != n_flies or len(t_end) != n_flies:
        raise LabelError(f"{path}, variable 'allScores': tStart/tEnd have {len(t_start)}/"
                         f"{len(t_end)} entries for {n_flies} flies; expected one per fly.")
    norm = _vector(scores_struct.get("scoreNorm", np.ones((1, 1))))
    norm_value = float(norm[0]) if norm.size and norm[0] > 0 else 1.0
    t0s = cell_items(scores_struct["t0s"]) if "t0s" in scores_struct else None
    t1s = cell_items(scores_struct["t1s"]) if "t1s" in scores_struct else None
    post = cell_items(scores_struct["postprocessed"]) if "postprocessed" in scores_struct \
        else None
    n_frames = options.n_frames
    if n_frames is None and options.timestamps is not None:
        n_frames = len(options.timestamps)
    if n_frames is None:
        n_frames = int(max(t_end.max(initial=0), max((len(s) for s in scores), default=0)))
    intervals, segments = [], []
    for fly in range(n_flies):
        subject = f"fly{fly + 1}"
        first, last = int(t_start[fly]) - 1, int(t_end[fly]) - 1
        if last >= first:
            segments.append(Segment(first, last, subject, (behavior,)))
        if t0s is not None and t1s is not None:
            starts, stops = _vector(t0s[fly]), _vector(t1s[fly])
            if len(starts) != len(stops):
                raise LabelError(f"{path}, allScores.t0s{{{fly + 1}}}: {len(starts)} bout starts"
                                 f" but {len(stops)} ends in t1s; expected as many.")
            bouts = [(int(a) - 1, int(b) - 2) for a, b in zip(starts, stops, strict=True)]
        else:
            source = _vector(post[fly]) if post is not None else scores[fly]
            bouts = bool_runs(np.nan_to_num(source, nan=0.0) > 0)
        for k, (a, b) in enumerate(bouts):
            fly_scores = scores[fly][a:b + 1]
            finite = fly_scores[np.isfinite(fly_scores)]
            conf = float(np.mean(0.5 + 0.5 * np.clip(finite / norm_value, -1, 1))) \
                if finite.size else None
            s, e = frames_to_seconds(a, b, options.fps, options.timestamps)
            intervals.append(Interval(behavior, a, b, s, e, subject, options.annotator or "JAABA",
                                      "predicted", conf,
                                      origin=f"{path}, allScores bout {k + 1} of fly {fly + 1}"))
    video_id = options.video_id or path.parent.name or path.stem
    bset = BehaviorSet((behavior,))
    if options.behaviors is not None:
        bset = options.behaviors.union(bset)
    return {video_id: LabelTable(intervals, segments, video_id, n_frames, options.fps,
                                 options.timestamps, bset, str(path))}
