"""NWB (pynwb): behavior labels as TimeIntervals, written and read back.

Written layout: one TimeIntervals table ``behavior_labels`` in ``/intervals`` with
``start_time``/``stop_time`` in seconds (``stop_time`` = ``end_s``, the end of the last frame)
and the columns ``behavior``, ``subject``, ``start_frame``, ``end_frame`` (inclusive),
``annotator``, ``source``, ``confidence`` (NaN when none), and ``box_x0..box_y1`` when intervals
have boxes; a second table ``labeled_segments`` (``start_frame``, ``end_frame``, ``subject``,
``behaviors``: ``;``-joined, empty for all) keeps partial labeling; the video's ``n_frames``,
``fps`` and behavior set are a JSON scratch entry ``prism_labels_video``.

Reading also accepts NWB files of other tools with one TimeIntervals table per behavior (the
table name is the behavior; frames come from the seconds via fps or timestamps).
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import ReadOptions
from prism_science.labels.table import (
    Interval,
    LabelTable,
    Segment,
    check_fps,
    frames_to_seconds,
    seconds_to_frames,
)

TABLE = "behavior_labels"
SEGMENTS = "labeled_segments"
SCRATCH = "prism_labels_video"
BOX = ("box_x0", "box_y0", "box_x1", "box_y1")


def sniff(path: Path, head: str) -> bool:
    return path.suffix.lower() == ".nwb"


def write(table: LabelTable, path: Path) -> None:
    """Write ``table`` as an NWB file (layout in the module docstring)."""
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals

    table = table.recompute_seconds()
    if any(math.isnan(iv.start_s) or math.isnan(iv.end_s) for iv in table.intervals):
        raise LabelError(f"labels of video {table.video_id!r}: NWB intervals need seconds and "
                         "the table has neither fps nor timestamps; set them (--fps) to export.")
    nwb = NWBFile(
        session_description=f"behavior labels of video {table.video_id}",
        identifier=str(uuid.uuid4()),
        session_start_time=datetime(1970, 1, 1, tzinfo=timezone.utc),
    )
    labels = TimeIntervals(name=TABLE, description="behavior bouts (prism-science labels); "
                           "end_frame is inclusive, stop_time is the end of its frame")
    has_box = any(iv.box is not None for iv in table.intervals)
    columns = {
        "behavior": "behavior name", "subject": "subject id ('' when none)",
        "start_frame": "first frame (0-based)", "end_frame": "last frame (0-based, inclusive)",
        "annotator": "annotator", "source": "manual / predicted / curated",
        "confidence": "confidence in [0, 1] (NaN when none)",
    }
    if has_box:
        columns.update({c: f"box {c[-2:]} in pixels (NaN when none)" for c in BOX})
    for name, description in columns.items():
        labels.add_column(name=name, description=description)
    for iv in table.sorted().intervals:
        box = iv.box if iv.box is not None else (math.nan,) * 4
        extra = dict(zip(BOX, (float(v) for v in box), strict=True)) if has_box else {}
        labels.add_row(
            start_time=float(iv.start_s), stop_time=float(iv.end_s), behavior=iv.behavior,
            subject=iv.subject or "", start_frame=int(iv.start_frame),
            end_frame=int(iv.end_frame), annotator=iv.annotator, source=iv.source,
            confidence=math.nan if iv.confidence is None else float(iv.confidence), **extra)
    nwb.add_time_intervals(labels)
    segments = TimeIntervals(name=SEGMENTS, description="labeled (annotated) frame ranges")
    for name, description in {"start_frame": "first labeled frame",
                              "end_frame": "last labeled frame (inclusive)",
                              "subject": "subject ('' for all)",
                              "behaviors": "';'-joined behaviors ('' for all)"}.items():
        segments.add_column(name=name, description=description)
    for seg in table.segments or _interval_segments(table):
        s, e = frames_to_seconds(seg.start_frame, seg.end_frame, table.fps, table.timestamps)
        segments.add_row(start_time=float(s), stop_time=float(e), start_frame=seg.start_frame,
                         end_frame=seg.end_frame, subject=seg.subject or "",
                         behaviors=";".join(seg.behaviors) if seg.behaviors is not None else "")
    nwb.add_time_intervals(segments)
    meta = {"video_id": table.video_id, "n_frames": table.n_frames, "fps": table.fps,
            "behavior_set": table.behavior_set.to_dict() if table.behavior_set else None}
    nwb.add_scratch(json.dumps(meta), name=SCRATCH, description="prism-science video metadata")
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def _column(table, name: str, n: int, default):
    if name in table.colnames:
        return list(table[name].data[:])
    return [default] * n


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """An NWB file's behavior intervals as ``{video_id: LabelTable}`` (one video)."""
    from pynwb import NWBHDF5IO

    try:
        io = NWBHDF5IO(str(path), "r", load_namespaces=True)
        nwb = io.read()
    except Exception as exc:  # pynwb/hdmf raise many types on foreign files
        raise LabelError(f"{path}: cannot read as NWB ({exc}); expected an NWB 2 file.") from exc
    try:
        meta = {}
        if SCRATCH in nwb.scratch:
            data = nwb.scratch[SCRATCH].data
            meta = json.loads(data if isinstance(data, str) else data[()])
        fps = check_fps(meta.get("fps"), options.fps, str(path))
        n_frames = options.n_frames if options.n_frames is not None else meta.get("n_frames")
        ts = options.timestamps
        intervals: list[Interval] = []
        tables = dict(nwb.intervals) if nwb.intervals else {}
        if TABLE in tables:
            t = tables[TABLE]
            n = len(t)
            starts, stops = list(t["start_time"].data[:]), list(t["stop_time"].data[:])
            behaviors = _column(t, "behavior", n, "")
            sf = _column(t, "start_frame", n, None)
            ef = _column(t, "end_frame", n, None)
            subjects = _column(t, "subject", n, "")
            annotators = _column(t, "annotator", n, options.annotator)
            sources = _column(t, "source", n, "manual")
            conf = _column(t, "confidence", n, math.nan)
            boxes = [_column(t, c, n, math.nan) for c in BOX]
            for i in range(n):
                if sf[i] is None or ef[i] is None:
                    a, b = seconds_to_frames(float(starts[i]), float(stops[i]), fps, ts)
                else:
                    a, b = int(sf[i]), int(ef[i])
                box = tuple(float(col[i]) for col in boxes)
                intervals.append(Interval(
                    _text(behaviors[i]), a, b, float(starts[i]), float(stops[i]),
                    _text(subjects[i]) or None, _text(annotators[i]), _text(sources[i]),
                    None if np.isnan(conf[i]) else float(conf[i]),
                    None if any(np.isnan(box)) else box, origin=f"{path}, {TABLE} row {i}"))
        else:
            for name, t in tables.items():
                if name == SEGMENTS or name in ("epochs", "trials", "invalid_times"):
                    continue
                for i, (s, e) in enumerate(zip(t["start_time"].data[:], t["stop_time"].data[:],
                                               strict=True)):
                    a, b = seconds_to_frames(float(s), float(e), fps, ts)
                    intervals.append(Interval(name, a, b, float(s), float(e),
                                              annotator=options.annotator,
                                              origin=f"{path}, intervals {name!r} row {i}"))
        segments = []
        if SEGMENTS in tables:
            t = tables[SEGMENTS]
            n = len(t)
            for a, b, s, bs in zip(_column(t, "start_frame", n, 0), _column(t, "end_frame", n, 0),
                                   _column(t, "subject", n, ""), _column(t, "behaviors", n, ""),
                                   strict=True):
                bs = _text(bs)
                segments.append(Segment(int(a), int(b), _text(s) or None,
                                        tuple(bs.split(";")) if bs else None))
        bset = BehaviorSet.from_dict(meta["behavior_set"]) if meta.get("behavior_set") else None
        if options.behaviors is not None:
            bset = options.behaviors.union(bset) if bset else options.behaviors
        video_id = options.video_id or meta.get("video_id") or path.stem
    finally:
        io.close()
    table = LabelTable(intervals, segments, video_id, n_frames, fps, ts, bset, str(path))
    if not segments:
        table = table.mark_fully_labeled()
    return {video_id: table}


def _interval_segments(table: LabelTable) -> list[Segment]:
    """Segments meaning what an empty segment list means: only the intervals' frames are labeled
    (for their behavior's exclusive group). Written explicitly because a reader of the file
    takes a missing segment table for a fully labeled video."""
    bset = table.behaviors()
    return [Segment(iv.start_frame, iv.end_frame, iv.subject,
                    tuple(bset.group_of(iv.behavior) or (iv.behavior,)))
            for iv in table.intervals]


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
