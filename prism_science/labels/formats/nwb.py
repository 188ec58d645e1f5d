"""NWB (pynwb): behavior labels as TimeIntervals and ndx-ethogram bouts, written and read back;
the behavior tables of other tools' NWB files read wherever they sit.

Written layout (an NWB file nwbinspector passes without CRITICAL or error findings):

- ``/intervals/behavior_labels`` (TimeIntervals): ``start_time``/``stop_time`` in seconds
  (``stop_time`` = ``end_s``, the end of the last frame), ``behavior``, ``subject``,
  ``start_frame``, ``end_frame`` (inclusive), ``annotator``, ``source``, ``confidence`` (NaN when
  none), ``modifiers`` (when bouts have some), ``box_x0..box_y1`` (when intervals have boxes);
- ``/intervals/labeled_segments`` (``start_frame``, ``end_frame``, ``subject``, ``behaviors``:
  ``;``-joined, empty for all) keeps partial labeling;
- ``/processing/behavior``: an ndx-ethogram ``Ethogram`` catalogue (every behavior, its kind,
  ``exclusive`` when the behaviors form one exclusive group) and ``EthogramBouts``
  (``behavior_bouts``, or one table per source: ``manual_bouts``, ``predicted_bouts``...) with
  ``label``, ``subject`` and their ``labeling_method``, ``annotator`` and, for partially labeled
  videos, ``observation_intervals`` -> ``labeled_segments``;
- a ``Subject`` and a real ``session_start_time`` (the export time unless given), and the
  video's ``n_frames``, ``fps``, irregular timestamps, behavior set and observation as JSON
  scratch data.

Reading our own files uses ``behavior_labels`` (frames as written, seconds recomputed from them
with the video's timing). Other files are searched for behavior tables in ``/intervals``, every
processing module and ``/events``: TimeIntervals of any shape (one table per behavior, named
after it, or rows with a ``behavior``/``label`` column and a ``subject`` column), ndx-ethogram
``EthogramBouts`` (their ``observation_intervals`` become the labeled frames) and EventsTables
(neuroconv's BORIS layout: point events from the events table, state bouts from the
``<observation>Bouts`` table beside it). Each bouts or events table is an observation; seconds
snap to frames (fps or the video's timestamps) and are recomputed from the frames.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import (
    ReadOptions,
    keyed,
    media_stem,
    read_each,
    select_observations,
)
from prism_science.labels.table import (
    Interval,
    LabelTable,
    Segment,
    check_fps,
    frames_to_seconds,
    seconds_to_frames,
)

logger = logging.getLogger(__name__)

TABLE = "behavior_labels"
SEGMENTS = "labeled_segments"
SCRATCH = "prism_labels_video"
BOX = ("box_x0", "box_y0", "box_x1", "box_y1")
MODULE = "behavior"
# Column names other tools use for the behavior of a row, and for its subject (first match).
LABEL_COLUMNS = ("behavior", "label", "behavior_label", "behavior_name", "behaviour",
                 "event_type", "code")
SUBJECT_COLUMNS = ("subject", "subject_id", "individual", "animal", "identity", "track_id")
NOT_BEHAVIOR_TABLES = ("epochs", "trials", "invalid_times", SEGMENTS)
# ndx-ethogram labeling_method <-> our interval source.
METHOD_TO_SOURCE = {"manual": "manual", "automated": "predicted", "curated": "curated"}
SOURCE_TO_METHOD = {v: k for k, v in METHOD_TO_SOURCE.items()}


def sniff(path: Path, head: str) -> bool:
    return path.suffix.lower() == ".nwb"


def _ethogram_classes() -> tuple[Any, Any]:
    try:
        from ndx_ethogram import Ethogram, EthogramBouts
    except ImportError as exc:  # a main dependency; a broken install lands here
        raise LabelError(f"writing NWB behavior bouts needs the ndx-ethogram package ({exc}); "
                         "install it: pip install ndx-ethogram.") from exc
    return Ethogram, EthogramBouts


# --------------------------------------------------------------------------- writer
def write(table: LabelTable, path: Path, session_start: datetime | None = None,
          subject_id: str | None = None, species: str | None = None,
          age: str = "P0D/") -> None:
    """Write ``table`` as an NWB file (layout in the module docstring).

    Parameters
    ----------
    table : LabelTable
        Needs fps or timestamps (NWB times are seconds).
    path : Path
    session_start : datetime, optional
        The recording's start (timezone-aware or local); default: now.
    subject_id : str, optional
        The NWB Subject's id; default: the table's one subject, else its subjects joined with
        ``+``, else the video id.
    species : str, optional
        Latin binomial or NCBI taxonomy URL of the animals.
    age : str
        ISO 8601 duration; default ``P0D/`` (an open range: age unknown).
    """
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject

    Ethogram, EthogramBouts = _ethogram_classes()
    table = table.recompute_seconds()
    if any(math.isnan(iv.start_s) or math.isnan(iv.end_s) for iv in table.intervals):
        raise LabelError(f"labels of video {table.video_id!r}: NWB intervals need seconds and "
                         "the table has neither fps nor timestamps; set them (--fps) to export.")
    start = session_start or datetime.now(timezone.utc).astimezone()
    if start.tzinfo is None:
        start = start.astimezone()
    subjects = [s for s in table.subjects() if s is not None]
    sid = subject_id or (subjects[0] if len(subjects) == 1 else "+".join(subjects)
                         if subjects else str(table.video_id or "subject"))
    nwb = NWBFile(
        session_description=f"behavior labels of video {table.video_id}",
        identifier=str(uuid.uuid4()), session_start_time=start,
        subject=Subject(subject_id=sid, species=species, age=age, sex="U",
                        description=("animals labeled in the video: " + ", ".join(subjects))
                        if subjects else "the animal labeled in the video"),
        source_script="prism-science labels export", source_script_file_name="prism_science",
        experimenter=sorted({iv.annotator for iv in table.intervals if iv.annotator}) or None,
        keywords=["behavior", "ethogram", "behavior labels"],
    )
    intervals = table.sorted().intervals
    labels = TimeIntervals(name=TABLE, description="behavior bouts (prism-science labels); "
                           "end_frame is inclusive, stop_time is the end of its frame")
    has_box = any(iv.box is not None for iv in intervals)
    has_modifiers = any(iv.modifiers for iv in intervals)
    columns = {
        "behavior": "behavior name", "subject": "subject id ('' when none)",
        "start_frame": "first frame (0-based)", "end_frame": "last frame (0-based, inclusive)",
        "annotator": "annotator", "source": "manual / predicted / curated",
        "confidence": "confidence in [0, 1] (NaN when none)",
    }
    if has_modifiers:
        columns["modifiers"] = "the coder's modifiers of the bout ('|'-joined, '' when none)"
    if has_box:
        columns.update({c: f"box {c[-2:]} in pixels (NaN when none)" for c in BOX})
    for name, description in columns.items():
        labels.add_column(name=name, description=description)
    for iv in intervals:
        box = iv.box if iv.box is not None else (math.nan,) * 4
        extra = dict(zip(BOX, (float(v) for v in box), strict=True)) if has_box else {}
        if has_modifiers:
            extra["modifiers"] = iv.modifiers
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
    partial_labels = not _whole_video(table)
    for seg in sorted(table.segments or _interval_segments(table),
                      key=lambda s: (s.start_frame, s.end_frame)):
        s, e = frames_to_seconds(seg.start_frame, seg.end_frame, table.fps, table.timestamps)
        segments.add_row(start_time=float(s), stop_time=float(e), start_frame=seg.start_frame,
                         end_frame=seg.end_frame, subject=seg.subject or "",
                         behaviors=";".join(seg.behaviors) if seg.behaviors is not None else "")
    nwb.add_time_intervals(segments)
    _add_ethogram(nwb, table, intervals, segments if partial_labels else None, Ethogram,
                  EthogramBouts)
    meta = {"video_id": table.video_id, "n_frames": table.n_frames, "fps": table.fps,
            "observation": table.observation, "timestamps": table.to_dict()["timestamps"],
            "behavior_set": table.behavior_set.to_dict() if table.behavior_set else None}
    nwb.add_scratch(json.dumps(meta), name=SCRATCH, description="prism-science video metadata")
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)


def _whole_video(table: LabelTable) -> bool:
    last = table.last_frame()
    return len(table.segments) == 1 and table.segments[0].start_frame == 0 and \
        table.segments[0].end_frame == last and table.segments[0].subject is None and \
        table.segments[0].behaviors is None


def _add_ethogram(nwb, table: LabelTable, intervals: list[Interval], observed, Ethogram,
                  EthogramBouts) -> None:
    """The ndx-ethogram catalogue and bouts tables in ``/processing/behavior``."""
    bset = table.behaviors()
    module = nwb.create_processing_module(name=MODULE, description="behavior annotations "
                                          "(ndx-ethogram ethogram and bouts)")
    one_group = len(bset.exclusive_groups) == 1 and set(bset.exclusive_groups[0]) == \
        set(bset.names)
    catalogue = Ethogram(name="ethogram", description="the behaviors of the labels (coding "
                         "scheme), in column order", exclusive=bool(one_group))
    catalogue.add_column(name="key", description="keyboard key used to label the behavior")
    for b in bset.names:
        kind = "point" if any(iv.behavior == b for iv in intervals) and all(
            iv.n_frames == 1 for iv in intervals if iv.behavior == b) else "state"
        catalogue.add_row(behavior=b, definition=b, behavior_type=kind, key=bset.keys.get(b, ""))
    module.add(catalogue)
    by_source: dict[str, list[Interval]] = {}
    for iv in intervals:
        by_source.setdefault(iv.source, []).append(iv)
    if not by_source:
        by_source = {"manual": []}
    for source, ivs in by_source.items():
        annotators = sorted({iv.annotator for iv in ivs if iv.annotator})
        kw = {"annotator": ", ".join(annotators)} if annotators else {}
        if observed is not None:
            kw["observation_intervals"] = observed
        bouts = EthogramBouts(
            name="behavior_bouts" if len(by_source) == 1 else f"{source}_bouts",
            description=f"{source} behavior bouts; stop_time is the end of the bout's last "
            "frame", labeling_method=SOURCE_TO_METHOD.get(source, "manual"),
            source_software="prism-science", ethogram=catalogue, **kw)
        bouts.add_column(name="subject", description="subject id ('' when none)")
        with_conf = any(iv.confidence is not None for iv in ivs)
        if with_conf:
            bouts.add_column(name="confidence", description="confidence in [0, 1] (NaN: none)")
        for iv in ivs:
            extra = {"confidence": math.nan if iv.confidence is None else float(iv.confidence)
                     } if with_conf else {}
            bouts.add_row(start_time=float(iv.start_s), stop_time=float(iv.end_s),
                          label=iv.behavior, subject=iv.subject or "", **extra)
        module.add(bouts)


def _interval_segments(table: LabelTable) -> list[Segment]:
    """Segments meaning what an empty segment list means: only the intervals' frames are labeled
    (for their behavior's exclusive group). Written explicitly because a reader of the file
    takes a missing segment table for a fully labeled video."""
    bset = table.behaviors()
    return [Segment(iv.start_frame, iv.end_frame, iv.subject,
                    tuple(bset.group_of(iv.behavior) or (iv.behavior,)))
            for iv in table.intervals]


# --------------------------------------------------------------------------- reading
def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _column(table, name: str, n: int, default) -> list:
    if name in table.colnames:
        return list(table[name].data[:])
    return [default] * n


def _first_column(table, names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in table.colnames), None)


@dataclass
class _Row:
    behavior: str
    start: float
    stop: float | None  # None: a point event
    subject: str | None = None
    annotator: str = ""
    source: str = "manual"
    confidence: float | None = None
    modifiers: str = ""
    where: str = ""


@dataclass
class _Group:
    """The rows of one observation (a bouts table, an events table, or per-behavior tables)."""

    name: str
    rows: list[_Row] = field(default_factory=list)
    observed: list[tuple[float, float]] | None = None  # labeled spans, None: the whole video
    behaviors: list[str] = field(default_factory=list)


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """The behavior tables of an NWB file as ``{key: LabelTable}`` (one per observation)."""
    from pynwb import NWBHDF5IO

    # registers the ndx-ethogram classes when installed; files carry their own spec too
    with contextlib.suppress(ImportError):
        import ndx_ethogram  # noqa: F401
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
        intervals = dict(nwb.intervals) if nwb.intervals else {}
        video_id = meta.get("video_id") or _video_name(nwb) or path.stem
        if TABLE in intervals:
            builds = [(f"{path}, {TABLE}", partial(_read_ours, path, intervals, meta,
                                                   options))]
            entries = [(video_id, meta.get("observation") or TABLE)]
        else:
            groups, vocabulary = _foreign_groups(path, nwb, intervals, options)
            file_fps = _video_rate(nwb)
            builds = [(f"{path}, {g.name}", partial(_group_table, path, g, vocabulary, file_fps,
                                                    options)) for g in groups]
            entries = [(video_id, g.name) for g in groups]
        chosen = select_observations(path, entries, options)
        items = [(builds[i][0], partial(builds[i][1], vid)) for i, vid in chosen]
        tables = read_each(items, options.report)
    finally:
        io.close()
    return keyed(tables)


def _video_name(nwb) -> str | None:
    """The stem of the (single) external video file an ImageSeries of the file points to."""
    names = set()
    for series in _image_series(nwb):
        files = getattr(series, "external_file", None)
        if files is not None and len(files):
            names.add(media_stem(_text(files[0])))
    return names.pop() if len(names) == 1 else None


def _image_series(nwb) -> list:
    from pynwb.image import ImageSeries

    found = [obj for obj in nwb.acquisition.values() if isinstance(obj, ImageSeries)]
    for module in nwb.processing.values():
        found += [obj for obj in module.data_interfaces.values() if isinstance(obj, ImageSeries)]
    return found


def _video_rate(nwb) -> float | None:
    """The frame rate of the file's (single-rate) video ImageSeries, when it states one."""
    rates = {round(float(s.rate), 6) for s in _image_series(nwb) if getattr(s, "rate", None)}
    return rates.pop() if len(rates) == 1 else None


def _read_ours(path: Path, intervals: dict, meta: dict, options: ReadOptions,
               video_id: str) -> LabelTable:
    opts = options.for_video(video_id)
    fps = check_fps(meta.get("fps"), opts.fps, str(path))
    n_frames = opts.n_frames if opts.n_frames is not None else meta.get("n_frames")
    ts = opts.timestamps
    if ts is None and meta.get("timestamps") is not None:  # irregular frame times, as written
        ts = np.asarray(meta["timestamps"], dtype=np.float64)
    t = intervals[TABLE]
    n = len(t)
    starts, stops = list(t["start_time"].data[:]), list(t["stop_time"].data[:])
    behaviors = _column(t, "behavior", n, "")
    sf = _column(t, "start_frame", n, None)
    ef = _column(t, "end_frame", n, None)
    subjects = _column(t, "subject", n, "")
    annotators = _column(t, "annotator", n, options.annotator)
    sources = _column(t, "source", n, "manual")
    conf = _column(t, "confidence", n, math.nan)
    modifiers = _column(t, "modifiers", n, "")
    boxes = [_column(t, c, n, math.nan) for c in BOX]
    rows = []
    for i in range(n):
        if sf[i] is None or ef[i] is None:
            a, b = seconds_to_frames(float(starts[i]), float(stops[i]), fps, ts)
        else:
            a, b = int(sf[i]), int(ef[i])
        s, e = frames_to_seconds(a, b, fps, ts)
        if math.isnan(s):  # no timing known: keep the file's seconds
            s, e = float(starts[i]), float(stops[i])
        box = tuple(float(col[i]) for col in boxes)
        rows.append(Interval(
            _text(behaviors[i]), a, b, s, e, _text(subjects[i]) or None, _text(annotators[i]),
            _text(sources[i]), None if np.isnan(conf[i]) else float(conf[i]),
            None if any(np.isnan(box)) else box, _text(modifiers[i]),
            origin=f"{path}, {TABLE} row {i}"))
    segments = []
    if SEGMENTS in intervals:
        st = intervals[SEGMENTS]
        m = len(st)
        for a, b, s, bs in zip(_column(st, "start_frame", m, 0), _column(st, "end_frame", m, 0),
                               _column(st, "subject", m, ""), _column(st, "behaviors", m, ""),
                               strict=True):
            bs = _text(bs)
            segments.append(Segment(int(a), int(b), _text(s) or None,
                                    tuple(bs.split(";")) if bs else None))
    bset = BehaviorSet.from_dict(meta["behavior_set"]) if meta.get("behavior_set") else None
    if options.behaviors is not None:
        bset = options.behaviors.union(bset) if bset else options.behaviors
    table = LabelTable(rows, segments, video_id, n_frames, fps, ts, bset, str(path),
                       meta.get("observation"))
    return table if segments else table.mark_fully_labeled()


def _rows_of_intervals(path: Path, where: str, t, behavior: str | None) -> list[_Row]:
    """Rows of a TimeIntervals (or EthogramBouts) table; ``behavior`` for per-behavior tables."""
    n = len(t)
    starts, stops = _column(t, "start_time", n, math.nan), _column(t, "stop_time", n, math.nan)
    label_col = _first_column(t, LABEL_COLUMNS)
    subject_col = _first_column(t, SUBJECT_COLUMNS)
    labels = _column(t, label_col, n, "") if label_col else [behavior] * n
    subjects = _column(t, subject_col, n, "") if subject_col else [""] * n
    annotator = _text(getattr(t, "annotator", None) or "")
    annotators = _column(t, "annotator", n, annotator)
    method = _text(getattr(t, "labeling_method", None) or "manual")
    sources = _column(t, "source", n, METHOD_TO_SOURCE.get(method, "manual"))
    conf = _column(t, "confidence", n, math.nan)
    modifiers = _modifier_values(t, n)
    rows = []
    for i in range(n):
        label = _text(labels[i]).strip()
        if not label:
            raise LabelError(f"{path}, {where} row {i}, field {label_col!r}: expected a "
                             "behavior name, found ''.")
        source = _text(sources[i])
        c = float(conf[i]) if conf[i] is not None else math.nan
        rows.append(_Row(label, float(starts[i]), float(stops[i]), _text(subjects[i]) or None,
                         _text(annotators[i]), source if source in METHOD_TO_SOURCE.values()
                         else "manual", None if math.isnan(c) else c, modifiers[i],
                         f"{path}, {where} row {i}"))
    return rows


def _modifier_values(t, n: int) -> list[str]:
    """``|``-joined modifiers of a row (a ``modifiers`` column, or neuroconv's ``modifier_*``)."""
    if "modifiers" in t.colnames:
        return [_text(v) for v in t["modifiers"].data[:]]
    cols = [c for c in t.colnames if c.startswith("modifier_") and not c.startswith("stop_")]
    if not cols:
        return [""] * n
    values = [[_text(v) for v in t[c].data[:]] for c in cols]
    return ["|".join(v[i] for v in values).strip("|") for i in range(n)]


def _events_rows(path: Path, where: str, t, types: dict[str, str], bouts_elsewhere: bool,
                 options: ReadOptions) -> list[_Row]:
    """Rows of an EventsTable: point events, and durations when no bouts table holds them."""
    n = len(t)
    times = _column(t, "timestamp", n, math.nan)
    durations = _column(t, "duration", n, math.nan)
    label_col = _first_column(t, LABEL_COLUMNS)
    labels = _column(t, label_col, n, t.name) if label_col else [t.name] * n
    subject_col = _first_column(t, SUBJECT_COLUMNS)
    subjects = _column(t, subject_col, n, "") if subject_col else [""] * n
    modifiers = _modifier_values(t, n)
    rows, unclosed = [], 0
    for i in range(n):
        label = _text(labels[i]).strip()
        d = float(durations[i]) if durations[i] is not None else math.nan
        if math.isnan(d) and types.get(label) == "state":
            unclosed += 1
            continue
        if not math.isnan(d) and bouts_elsewhere:
            continue  # the bouts table beside it holds this bout
        stop = None if math.isnan(d) else float(times[i]) + d
        rows.append(_Row(label, float(times[i]), stop, _text(subjects[i]) or None,
                         options.annotator, "manual", None, modifiers[i],
                         f"{path}, {where} row {i}"))
    if unclosed:
        options.report.note(f"{path}, {where}: {unclosed} state event(s) without a stop "
                            "(never closed by the coder) not imported")
    return rows


def _foreign_groups(path: Path, nwb, intervals: dict, options: ReadOptions
                    ) -> tuple[list[_Group], BehaviorSet | None]:
    """Every behavior table of a file not written by us, grouped into observations."""
    from pynwb.epoch import TimeIntervals

    candidates = [(f"intervals {name!r}", t) for name, t in intervals.items()
                  if name not in NOT_BEHAVIOR_TABLES]
    catalogues = []
    for mname, module in nwb.processing.items():
        for name, obj in module.data_interfaces.items():
            kind = getattr(obj, "neurodata_type", "")
            if kind == "Ethogram":
                catalogues.append(obj)
            elif isinstance(obj, TimeIntervals) and name not in NOT_BEHAVIOR_TABLES:
                candidates.append((f"processing/{mname}/{name}", obj))
    events = dict(getattr(nwb, "events", None) or {})
    names, types, exclusive = [], {}, False
    for cat in catalogues:
        n = len(cat)
        kinds = _column(cat, "behavior_type", n, "state")
        for b, k in zip(_column(cat, "behavior", n, ""), kinds, strict=True):
            names.append(_text(b))
            types[_text(b)] = _text(k)
        exclusive = exclusive or bool(getattr(cat, "exclusive", False))
    vocabulary = BehaviorSet.from_names(dict.fromkeys(names), exclusive=exclusive) \
        if names else None
    # spans that bouts tables link as their observation_intervals are not behaviors
    linked = {getattr(getattr(t, "observation_intervals", None), "object_id", None)
              for _, t in candidates} - {None}
    candidates = [(where, t) for where, t in candidates if t.object_id not in linked]
    groups: dict[str, _Group] = {}
    per_behavior = _Group("intervals")
    bouts_names = set()
    for where, t in candidates:
        is_bouts = getattr(t, "neurodata_type", "") == "EthogramBouts"
        if _first_column(t, LABEL_COLUMNS) is None and not is_bouts:
            per_behavior.rows += _rows_of_intervals(path, where, t, t.name)
            per_behavior.behaviors.append(t.name)
            continue
        name = t.name[:-len("Bouts")] if is_bouts and t.name.endswith("Bouts") and \
            len(t.name) > 5 else t.name
        bouts_names.add(name)
        group = groups.setdefault(name, _Group(name))
        group.rows += _rows_of_intervals(path, where, t, None)
        observed = getattr(t, "observation_intervals", None)
        if observed is not None:
            group.observed = [(float(a), float(b)) for a, b in zip(
                observed["start_time"].data[:], observed["stop_time"].data[:], strict=True)]
    for name, t in events.items():
        rows = _events_rows(path, f"events {name!r}", t, types, bool(bouts_names), options)
        if rows:
            groups.setdefault(name, _Group(name)).rows += rows
    out = list(groups.values())
    if per_behavior.rows or per_behavior.behaviors:
        out.insert(0, per_behavior)
    if not out:
        found = sorted(intervals) + [f"processing/{m}/{n}" for m, mod in nwb.processing.items()
                                     for n in mod.data_interfaces] + [f"events/{n}"
                                                                      for n in events]
        raise LabelError(
            f"{path}: no behavior tables found (looked in /intervals, every processing module "
            f"and /events; the file has {found or 'none of them'}); expected TimeIntervals "
            "with start/stop times, ndx-ethogram EthogramBouts, or an EventsTable.")
    return out, vocabulary


def _group_table(path: Path, group: _Group, vocabulary: BehaviorSet | None,
                 file_fps: float | None, options: ReadOptions, video_id: str) -> LabelTable:
    opts = options.for_video(video_id)
    fps = check_fps(file_fps, opts.fps, f"{path}, {group.name}")
    ts = opts.timestamps
    if fps is None and ts is None:
        raise LabelError(f"{path}, {group.name}: NWB times are seconds and neither the file "
                         "(a video ImageSeries rate) nor the caller gives the frame rate; pass "
                         "--fps / fps=..., or import into a store that holds the video.")
    intervals = []
    for row in group.rows:
        a, b = seconds_to_frames(row.start, row.stop, fps, ts)
        s, e = frames_to_seconds(a, b, fps, ts)
        intervals.append(Interval(row.behavior, a, b, s, e, row.subject,
                                  row.annotator or options.annotator, row.source,
                                  row.confidence, modifiers=row.modifiers, origin=row.where))
    bset = vocabulary
    if group.behaviors:  # per-behavior tables declare their behaviors even without rows
        bset = BehaviorSet(tuple(group.behaviors)) if bset is None else bset.union(
            group.behaviors)
    if options.behaviors is not None:
        bset = options.behaviors.union(bset) if bset else options.behaviors
    table = LabelTable(intervals, [], video_id, opts.n_frames, fps, ts, bset, str(path),
                       group.name)
    if group.observed is None:
        return table.mark_fully_labeled()
    table.segments = [Segment(*seconds_to_frames(a, b, fps, ts)) for a, b in group.observed]
    return table
