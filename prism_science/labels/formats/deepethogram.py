"""DeepEthogram label CSV (``DATA/<video>/<video>_labels.csv``), read and written.

One row per frame; a first index column, then ``background`` and one column per behavior, with
1 present, 0 absent and -1 unlabeled (DeepEthogram's docs/file_structure.md). ``background``
(no behavior) is implied by the other columns, so it is dropped on reading and rebuilt on writing
(1 where the frame is labeled and no behavior is present). Behaviors are multi-label. The file
has no subject column, so it holds one animal: writing a table of several subjects is refused
(write each with ``table.select(subject=...)``, or ``labels export --subject``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.formats._common import ReadOptions, csv_rows, field_error
from prism_science.labels.matrix import from_frame_matrix, to_frame_matrix
from prism_science.labels.table import LabelTable

BACKGROUND = "background"
_INDEX_NAMES = ("", "Unnamed: 0", "index", "frame")


def sniff(path: Path, head: str) -> bool:
    first = head.splitlines()[0] if head else ""
    cols = [c.strip().strip('"') for c in first.split(",")]
    return BACKGROUND in cols and (cols[0] in _INDEX_NAMES or cols[0] == BACKGROUND)


def video_id_from_path(path: Path) -> str:
    stem = path.stem
    return stem[: -len("_labels")] if stem.endswith("_labels") else stem


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A DeepEthogram label CSV as ``{video_id: LabelTable}`` (one video)."""
    header, rows = csv_rows(path, delimiter=",")
    has_index = header[0] in _INDEX_NAMES
    columns = header[1:] if has_index else header
    if BACKGROUND not in columns:
        raise LabelError(f"{path}, line 1 (header): expected a 'background' column among the "
                         f"behavior columns (DeepEthogram labels), found {header}.")
    behaviors = [c for c in columns if c != BACKGROUND]
    values = []
    for line, row in rows:
        out = []
        for c in behaviors:
            v = row[c]
            if v not in ("1", "0", "-1", "1.0", "0.0", "-1.0"):
                raise field_error(path, line, c, "1 (present), 0 (absent) or -1 (unlabeled)", v)
            out.append(int(float(v)))
        values.append(out)
    matrix = np.asarray(values, dtype=np.int8).reshape(len(values), len(behaviors))
    n = matrix.shape[0]
    if options.n_frames is not None and options.n_frames != n:
        raise LabelError(
            f"{path}: {n} label rows but the video has n_frames={options.n_frames}; expected one "
            "row per frame. Check that the labels belong to this video.")
    video_id = options.video_id or video_id_from_path(path)
    table = from_frame_matrix(matrix, behaviors, fps=options.fps, timestamps=options.timestamps,
                              annotator=options.annotator, source="manual", video_id=video_id,
                              origin=str(path))
    if options.behaviors is not None:
        table.behavior_set = options.behaviors.union(table.behavior_set)
    return {video_id: table}


def write(table: LabelTable, path: Path) -> None:
    """Write ``table`` as a DeepEthogram label CSV (one row per frame, 0..last frame).

    Raises
    ------
    LabelError
        When the table holds several subjects (DeepEthogram labels one animal per file).
    """
    subjects = table.subjects()
    if len(subjects) > 1:
        named = ", ".join("(no subject)" if s is None else repr(s) for s in subjects[:8])
        raise LabelError(
            f"labels of video {table.video_id!r}: {len(subjects)} subjects ({named}); a "
            "DeepEthogram label file holds one animal and merging them would lose who did "
            "what. Export one subject per file: --subject NAME (table.select(subject=NAME)).")
    bset = table.behaviors()
    n = table.last_frame() + 1
    matrix = to_frame_matrix(table, bset, n_frames=n)
    any_present = (matrix == 1).any(axis=1)
    all_labeled = (matrix >= 0).all(axis=1)
    background = np.where(any_present, 0, np.where(all_labeled, 1, -1))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["", BACKGROUND, *bset.names])
        for i in range(n):
            writer.writerow([i, int(background[i]), *(int(v) for v in matrix[i])])
