"""SimBA per-frame CSVs (``csv/targets_inserted/<video>.csv`` and ``csv/machine_results``).

One row per frame: an index column, pose columns (``<bodypart>_x/_y/_p``), feature columns, and
one 0/1 column per classifier. The behavior columns are the ones named by the project's behavior
set when given, else every column whose values are all 0 or 1 and whose name is not a pose or
probability column. In ``machine_results`` files a ``Probability_<behavior>`` column gives the
per-frame probability: the intervals are then ``source="predicted"`` with the bout's mean
probability as confidence. Every frame is labeled; behaviors are multi-label.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.formats._common import ReadOptions, csv_rows, field_error
from prism_science.labels.matrix import from_frame_matrix
from prism_science.labels.table import LabelTable

_POSE = re.compile(r"(_x|_y|_p|_likelihood|_score)$", re.IGNORECASE)
_INDEX = ("", "Unnamed: 0", "index", "frame", "Frame", "frame_index")
PROBABILITY = "Probability_"


def sniff(path: Path, head: str) -> bool:
    first = head.splitlines()[0] if head else ""
    cols = [c.strip() for c in first.split(",")]
    return sum(bool(_POSE.search(c)) for c in cols) >= 3


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A SimBA per-frame CSV as ``{video_id: LabelTable}`` (one video)."""
    header, rows = csv_rows(path, delimiter=",")
    data = list(rows)
    if options.behaviors is not None:
        behaviors = [b for b in options.behaviors.names if b in header]
        if not behaviors:
            raise LabelError(f"{path}, line 1 (header): none of the behaviors "
                             f"{list(options.behaviors.names)} is a column; found {header[:12]}.. "
                             "Check the behavior names or the file.")
    else:
        behaviors = []
        for c in header:
            if c in _INDEX or _POSE.search(c) or c.startswith(PROBABILITY):
                continue
            values = {row[c] for _, row in data}
            if values and values <= {"0", "1", "0.0", "1.0"}:
                behaviors.append(c)
        if not behaviors:
            raise LabelError(f"{path}: no 0/1 behavior column found among {header[:12]}...; "
                             "expected SimBA classifier columns. Pass the behavior names.")
    matrix = np.zeros((len(data), len(behaviors)), dtype=np.int8)
    prob_cols = [PROBABILITY + b for b in behaviors]
    has_prob = all(c in header for c in prob_cols)
    scores = np.zeros(matrix.shape, dtype=np.float64) if has_prob else None
    for i, (line, row) in enumerate(data):
        for j, b in enumerate(behaviors):
            v = row[b]
            if v not in ("0", "1", "0.0", "1.0"):
                raise field_error(path, line, b, "0 or 1", v)
            matrix[i, j] = int(float(v))
            if scores is not None:
                try:
                    scores[i, j] = float(row[prob_cols[j]])
                except ValueError:
                    raise field_error(path, line, prob_cols[j], "a probability",
                                      row[prob_cols[j]]) from None
    if options.n_frames is not None and options.n_frames != len(data):
        raise LabelError(f"{path}: {len(data)} frame rows but the video has n_frames="
                         f"{options.n_frames}; expected one row per frame.")
    video_id = options.video_id or path.stem
    table = from_frame_matrix(matrix, behaviors, fps=options.fps, timestamps=options.timestamps,
                              annotator=options.annotator,
                              source="predicted" if has_prob else "manual", scores=scores,
                              video_id=video_id, origin=str(path))
    if options.behaviors is not None:
        table.behavior_set = options.behaviors.union(table.behavior_set)
    return {video_id: table}
