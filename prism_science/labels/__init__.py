"""Behavior labels: interval tables, per-frame matrices, import and export of other formats.

>>> from prism_science.labels import read_labels, to_frame_matrix
>>> table = read_labels("session1.boris", fps=30, n_frames=9000)     # doctest: +SKIP
>>> y = to_frame_matrix(table, table.behaviors())                     # doctest: +SKIP

See docs/labels.md for the table's conventions (inclusive frames, seconds from real timestamps,
partial labeling) and for how each tool's format maps onto it.
"""

from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats import (
    FORMATS,
    LabelFormat,
    detect_format,
    format_names,
    read_label_tables,
    read_labels,
    write_labels,
)
from prism_science.labels.matrix import (
    ABSENT,
    PRESENT,
    UNLABELED,
    from_frame_matrix,
    labeled_mask,
    table_summary,
    to_frame_matrix,
)
from prism_science.labels.store_io import load_labels, save_labels
from prism_science.labels.table import (
    SOURCES,
    Interval,
    LabelTable,
    Segment,
    check_fps,
    frames_to_seconds,
    merge_tables,
    seconds_to_frames,
)

__all__ = [
    "table_summary",
    "ABSENT", "FORMATS", "PRESENT", "SOURCES", "UNLABELED", "BehaviorSet", "Interval",
    "LabelFormat", "LabelTable", "Segment", "check_fps", "detect_format", "format_names",
    "frames_to_seconds", "from_frame_matrix", "labeled_mask", "load_labels", "merge_tables",
    "read_label_tables", "read_labels", "save_labels", "seconds_to_frames", "to_frame_matrix",
    "write_labels",
]
