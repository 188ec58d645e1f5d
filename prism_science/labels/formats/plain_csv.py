"""The plain interval CSV of our own (docs/ARCHITECTURE.md), read and written.

Columns ``behavior,subject,start_frame,end_frame,start_s,end_s,annotator,source,confidence``
(``end_frame`` inclusive; empty ``subject``/``confidence`` allowed), plus ``x0,y0,x1,y1`` when
intervals carry boxes and ``modifiers`` when bouts carry modifiers. The CSV has no column for
labeled ranges: on reading, the whole video (``n_frames`` when given, else up to the last bout)
counts as labeled.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from prism_science.labels.formats._common import (
    ReadOptions,
    csv_rows,
    field_error,
    parse_float,
    parse_int,
    require_columns,
)
from prism_science.labels.table import SOURCES, Interval, LabelTable

logger = logging.getLogger(__name__)

COLUMNS = ["behavior", "subject", "start_frame", "end_frame", "start_s", "end_s", "annotator",
           "source", "confidence"]
BOX_COLUMNS = ["x0", "y0", "x1", "y1"]


def video_id_from_path(path: Path) -> str:
    """``NAME`` of ``NAME.labels.csv`` (the synthetic world's naming) or of ``NAME.csv``."""
    name = path.name
    return name[: -len(".labels.csv")] if name.endswith(".labels.csv") else path.stem


def sniff(path: Path, head: str) -> bool:
    first = head.splitlines()[0] if head else ""
    return all(c in first for c in ("behavior", "start_frame", "end_frame"))


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A plain interval CSV as ``{video_id: LabelTable}`` (one video)."""
    header, rows = csv_rows(path, delimiter=",")
    require_columns(path, header, ["behavior", "start_frame", "end_frame"], "plain interval CSV")
    has_box = all(c in header for c in BOX_COLUMNS)
    intervals = []
    for line, row in rows:
        behavior = row["behavior"]
        if not behavior:
            raise field_error(path, line, "behavior", "a behavior name", behavior)
        source = row.get("source") or "manual"
        if source not in SOURCES:
            raise field_error(path, line, "source", f"one of {list(SOURCES)}", source)
        conf = parse_float(path, line, "confidence", row.get("confidence", ""), allow_empty=True)
        box = None
        if has_box and any(row[c] for c in BOX_COLUMNS):
            box = tuple(parse_float(path, line, c, row[c]) for c in BOX_COLUMNS)
        start_s = parse_float(path, line, "start_s", row.get("start_s", ""), allow_empty=True)
        end_s = parse_float(path, line, "end_s", row.get("end_s", ""), allow_empty=True)
        intervals.append(Interval(
            behavior=behavior,
            start_frame=parse_int(path, line, "start_frame", row["start_frame"]),
            end_frame=parse_int(path, line, "end_frame", row["end_frame"]),
            start_s=math.nan if start_s is None else start_s,
            end_s=math.nan if end_s is None else end_s,
            subject=row.get("subject") or None,
            annotator=row.get("annotator") or options.annotator,
            source=source, confidence=conf, box=box, modifiers=row.get("modifiers") or "",
            origin=f"{path}, line {line}",
        ))
    video_id = options.video_id or video_id_from_path(path)
    table = LabelTable(intervals, [], video_id, options.n_frames, options.fps,
                       options.timestamps, options.behaviors, str(path))
    if options.fps is not None or options.timestamps is not None:
        table = table.recompute_seconds()
    return {video_id: table.mark_fully_labeled()}


def _fmt(value: float | None, digits: int = 6) -> str:
    if value is None or math.isnan(value):
        return ""
    return f"{value:.{digits}f}".rstrip("0").rstrip(".")


def write(table: LabelTable, path: Path) -> None:
    """Write ``table`` as a plain interval CSV (rows ordered by start frame)."""
    has_box = any(iv.box is not None for iv in table.intervals)
    has_modifiers = any(iv.modifiers for iv in table.intervals)
    labeled = table.last_frame()
    if table.segments and not (len(table.segments) == 1 and table.segments[0].start_frame == 0
                               and table.segments[0].end_frame == labeled):
        logger.warning("%s: the plain CSV cannot hold partial labeling (%d labeled segments); "
                       "readers will treat the whole video as labeled. Keep the store's copy "
                       "or export to NWB to keep it.", path, len(table.segments))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS + (BOX_COLUMNS if has_box else [])
                        + (["modifiers"] if has_modifiers else []))
        for iv in table.sorted().intervals:
            row = [iv.behavior, iv.subject or "", iv.start_frame, iv.end_frame,
                   _fmt(iv.start_s), _fmt(iv.end_s), iv.annotator, iv.source,
                   _fmt(iv.confidence, 4) if iv.confidence is not None else ""]
            if has_box:
                row += [_fmt(v, 2) for v in iv.box] if iv.box is not None else [""] * 4
            if has_modifiers:
                row.append(iv.modifiers)
            writer.writerow(row)
