"""BORIS: the .boris project (JSON), its tabular and aggregated CSV exports; tabular CSV export.

Times in BORIS are seconds of media time; they become frames through the video's timestamps
(dropped frames) or fps (:func:`prism_science.labels.table.seconds_to_frames`): a state event
from START at t0 to STOP at t1 covers the frames shown during ``[t0, t1)``; a point event the
frame shown at its time. In a project, the events of a state behavior alternate START / STOP
per (subject, behavior, modifiers), as in BORIS itself. Modifiers and comments are not kept.
The whole media counts as labeled (or the observation's time interval when one is set).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import (
    ReadOptions,
    csv_rows,
    field_error,
    parse_float,
    read_text,
    require_columns,
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

NO_FOCAL_SUBJECT = ("", "No focal subject")

# BORIS 8 tabular export columns (boris/export_observation.py, export_tabular_events).
TABULAR_COLUMNS = [
    "Observation id", "Observation date", "Description", "Observation duration",
    "Observation type", "Source", "Time offset (s)", "Media duration (s)", "FPS", "Subject",
    "Behavior", "Behavioral category", "Behavior type", "Time", "Media file name", "Image index",
    "Image file path", "Comment",
]


@dataclass
class _Event:
    time: float
    subject: str | None
    behavior: str
    status: str  # START / STOP / POINT
    key: str  # pairing key of state events (subject, behavior, modifiers)
    where: str


# --------------------------------------------------------------------------- sniffing
def sniff_project(path: Path, head: str) -> bool:
    return path.suffix.lower() == ".boris" or (
        '"observations"' in head and ('"behaviors_conf"' in head or '"ethogram"' in head))


def _header_line(head: str, *needles: str) -> bool:
    return any(all(n in line for n in needles) for line in head.splitlines()[:40])


def sniff_tabular(path: Path, head: str) -> bool:
    return _header_line(head, "Behavior", "Time") and (
        _header_line(head, "Behavior type", "Time", "Subject")
        or _header_line(head, "Status", "Time", "Subject")) and "Start (s)" not in head


def sniff_aggregated(path: Path, head: str) -> bool:
    return _header_line(head, "Behavior", "Start (s)", "Stop (s)")


# --------------------------------------------------------------------------- events -> table
def _parse_time(value: str, path: Path, line: int, field: str) -> float:
    """Seconds from ``12.345`` or ``hh:mm:ss.zzz`` (BORIS's two time formats)."""
    value = value.strip()
    if re.fullmatch(r"-?\d+:\d{1,2}:\d{1,2}(\.\d+)?", value):
        h, m, s = value.split(":")
        sign = -1 if h.startswith("-") else 1
        return sign * (abs(int(h)) * 3600 + int(m) * 60 + float(s))
    t = parse_float(path, line, field, value)
    if t is None or not math.isfinite(t):
        raise field_error(path, line, field, "a time in seconds", value)
    return t


def _events_to_table(events: list[_Event], *, video_id: str, fps: float | None,
                     options: ReadOptions, n_frames: int | None, path: Path,
                     bset: BehaviorSet | None, annotator: str,
                     coded: tuple[float, float] | None = None) -> LabelTable:
    timestamps = options.timestamps
    if fps is None and timestamps is None:
        raise LabelError(
            f"{path}: observation {video_id!r} gives no frame rate and none was passed; "
            "expected the media's fps to convert BORIS times to frames. Pass --fps / fps=...")
    open_states: dict[str, _Event] = {}
    intervals: list[Interval] = []
    for ev in sorted(events, key=lambda e: e.time):
        if ev.status == "POINT":
            a, b = seconds_to_frames(ev.time, None, fps, timestamps)
        elif ev.status == "START":
            if ev.key in open_states:
                raise LabelError(
                    f"{ev.where}: START of {ev.behavior!r} at {ev.time:g} s while the one "
                    f"started at {open_states[ev.key].time:g} s ({open_states[ev.key].where}) "
                    "has no STOP yet; expected START/STOP pairs. Fix the events in BORIS.")
            open_states[ev.key] = ev
            continue
        elif ev.status == "STOP":
            start = open_states.pop(ev.key, None)
            if start is None:
                raise LabelError(f"{ev.where}: STOP of {ev.behavior!r} at {ev.time:g} s without "
                                 "a START before it; expected START/STOP pairs.")
            a, b = seconds_to_frames(start.time, ev.time, fps, timestamps)
        else:
            raise LabelError(f"{ev.where}: unknown event status {ev.status!r}; expected START, "
                             "STOP or POINT.")
        s, e = frames_to_seconds(a, b, fps, timestamps)
        intervals.append(Interval(ev.behavior, a, b, s, e, ev.subject, annotator, "manual",
                                  origin=ev.where))
    if open_states:
        ev = next(iter(open_states.values()))
        raise LabelError(
            f"{ev.where}: state event {ev.behavior!r} started at {ev.time:g} s is never "
            "stopped; expected a STOP for every START. Close it in BORIS and export again.")
    if n_frames is not None:
        first, last = 0, n_frames - 1
        if coded is not None:
            first = seconds_to_frames(coded[0], None, fps, timestamps)[0]
            last = min(last, seconds_to_frames(0.0, coded[1], fps, timestamps)[1])
        segments = [Segment(first, last)] if last >= first else []
    else:
        ends = [iv.end_frame for iv in intervals]
        segments = [Segment(0, max(ends))] if ends else []
        if ends:
            logger.warning("%s: the media length of %r is unknown; counting frames 0..%d (the "
                           "last event) as labeled. Pass n_frames for the whole video.",
                           path, video_id, max(ends))
    return LabelTable(intervals, segments, video_id, n_frames, fps, timestamps, bset, str(path))


def _n_frames(options: ReadOptions, duration: float | None, fps: float | None) -> int | None:
    if options.n_frames is not None:
        return options.n_frames
    if options.timestamps is not None:
        return len(options.timestamps)
    if duration and fps:
        return int(round(duration * fps))
    return None


def _subject(value: str | None) -> str | None:
    return None if value is None or value.strip() in NO_FOCAL_SUBJECT else value.strip()


def _first_number(value: str) -> float | None:
    m = re.search(r"-?\d+(\.\d+)?", value or "")
    return float(m.group()) if m else None


# --------------------------------------------------------------------------- project
def _ethogram(pj: dict, path: Path) -> tuple[BehaviorSet, dict[str, str]]:
    conf = pj.get("behaviors_conf", pj.get("ethogram"))
    if not isinstance(conf, dict):
        raise LabelError(f"{path}, field 'behaviors_conf': expected the project's ethogram "
                         f"(a dict of behaviors), found {type(conf).__name__}.")
    entries = [conf[k] for k in sorted(conf, key=lambda k: int(k) if str(k).isdigit() else 0)]
    names, types, keys, colors = [], {}, {}, {}
    excluded: dict[str, set[str]] = {}
    for i, b in enumerate(entries):
        if not isinstance(b, dict) or not b.get("code"):
            raise LabelError(f"{path}, field 'behaviors_conf' entry {i}: expected a behavior "
                             f"with a 'code', found {b!r}.")
        code = str(b["code"])
        names.append(code)
        types[code] = str(b.get("type", "Point event"))
        if b.get("key"):
            keys[code] = str(b["key"])
        if b.get("color"):
            colors[code] = str(b["color"])
        excl = b.get("excluded", "") or ""
        excluded[code] = {x.strip() for x in str(excl).split(",") if x.strip()}
    # Mutually exclusive groups: connected components of the exclusion graph that are cliques.
    groups, seen = [], set()
    for code in names:
        if code in seen or not excluded[code]:
            continue
        comp, stack = set(), [code]
        while stack:
            c = stack.pop()
            if c in comp or c not in excluded:
                continue
            comp.add(c)
            stack.extend(x for x in excluded[c] if x in excluded)
        seen |= comp
        if len(comp) > 1 and all(comp - {c} <= excluded[c] for c in comp):
            groups.append(tuple(n for n in names if n in comp))
        elif len(comp) > 1:
            logger.warning("%s: exclusions among %s are not all mutual; treated as independent "
                           "behaviors", path, sorted(comp))
    return BehaviorSet(tuple(names), tuple(groups), keys, colors), types


def read_project(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """Every observation of a .boris project as ``{video_id: LabelTable}`` (see module doc)."""
    try:
        pj = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); expected a "
                         "BORIS project (.boris).") from exc
    if not isinstance(pj, dict) or "observations" not in pj:
        raise LabelError(f"{path}: expected a BORIS project with 'observations', found keys "
                         f"{list(pj)[:10] if isinstance(pj, dict) else type(pj).__name__}.")
    bset, types = _ethogram(pj, path)
    if options.behaviors is not None:
        bset = options.behaviors.union(bset)
    state = {c for c, t in types.items() if "state" in t.lower()}
    tables: dict[str, LabelTable] = {}
    for obs_id, obs in pj["observations"].items():
        where = f"{path}, observation {obs_id!r}"
        media = [m for m in (obs.get("file", {}) or {}).get("1", []) if m]
        if len(media) > 1:
            raise LabelError(f"{where}, field 'file': {len(media)} media files in player 1; "
                             "expected one video per observation. Split the observation.")
        info = obs.get("media_info", {}) or {}
        media_fps = (info.get("fps", {}) or {}).get(media[0]) if media else None
        duration = (info.get("length", {}) or {}).get(media[0]) if media else None
        fps = check_fps(float(media_fps) if media_fps else None, options.fps, where)
        offset = float(obs.get("time offset", 0) or 0)
        events = []
        counts: dict[str, int] = {}
        for i, ev in enumerate(obs.get("events", [])):
            at = f"{where}, events[{i}]"
            if not isinstance(ev, list) or len(ev) < 3:
                raise LabelError(f"{at}: expected [time, subject, behavior, modifiers, comment"
                                 f", ...], found {ev!r}.")
            try:
                t = float(ev[0]) - offset
            except (TypeError, ValueError):
                raise LabelError(f"{at}, field 'time': expected seconds, found {ev[0]!r}."
                                 ) from None
            subject, code = _subject(ev[1]), str(ev[2])
            modifiers = str(ev[3]) if len(ev) > 3 else ""
            key = f"{subject}\x00{code}\x00{modifiers}"
            if code in state:
                counts[key] = counts.get(key, 0) + 1
                status = "START" if counts[key] % 2 == 1 else "STOP"
            else:
                status = "POINT"
            events.append(_Event(t, subject, code, status, key, at))
        interval = obs.get("observation time interval") or [0, 0]
        coded = (float(interval[0]), float(interval[1])) if float(interval[1] or 0) > 0 else None
        video_id = Path(media[0]).stem if media else str(obs_id)
        if options.video_id is not None and len(pj["observations"]) == 1:
            video_id = options.video_id
        tables[video_id] = _events_to_table(
            events, video_id=video_id, fps=fps, options=options,
            n_frames=_n_frames(options, float(duration) if duration else None, fps),
            path=path, bset=bset, annotator=options.annotator, coded=coded)
    return tables


# --------------------------------------------------------------------------- CSV exports
def _group_rows(path: Path, rows, obs_column: str) -> dict[str, list]:
    groups: dict[str, list] = {}
    for line, row in rows:
        groups.setdefault(row.get(obs_column, "") or path.stem, []).append((line, row))
    return groups


def _video_id(rows: list, options: ReadOptions, obs_id: str, n_groups: int) -> str:
    if options.video_id is not None and n_groups == 1:
        return options.video_id
    for _, row in rows:
        name = row.get("Media file name") or row.get("Media file path") or ""
        name = name.split("player #1:")[-1].split(";")[0].split("|")[0].strip()
        if name and name not in ("NA", "Not found"):
            return Path(name.replace("\\", "/")).stem
    return obs_id


def read_tabular(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A BORIS tabular events export as ``{video_id: LabelTable}``, one per observation."""
    header, rows = csv_rows(path, is_header=lambda line: "Behavior" in line and "Time" in line
                            and ("Behavior type" in line or "Status" in line))
    status_col = "Behavior type" if "Behavior type" in header else "Status"
    require_columns(path, header, ["Time", "Behavior", status_col], "BORIS tabular events")
    groups = _group_rows(path, rows, "Observation id")
    tables = {}
    for obs_id, obs_rows in groups.items():
        where = f"{path}, observation {obs_id!r}"
        fps_text = obs_rows[0][1].get("FPS", "")
        fps = check_fps(_first_number(fps_text), options.fps, where)
        duration = _first_number(obs_rows[0][1].get("Media duration (s)", "")
                                 or obs_rows[0][1].get("Total length", ""))
        offset = _first_number(obs_rows[0][1].get("Time offset (s)", "")) or 0.0
        events = []
        for line, row in obs_rows:
            status = row[status_col].upper()
            if status not in ("START", "STOP", "POINT"):
                raise field_error(path, line, status_col, "START, STOP or POINT", row[status_col])
            behavior = row["Behavior"]
            if not behavior:
                raise field_error(path, line, "Behavior", "a behavior code", behavior)
            subject = _subject(row.get("Subject"))
            modifiers = "|".join(v for k, v in row.items() if k.startswith("Modifier"))
            t = _parse_time(row["Time"], path, line, "Time") - offset
            events.append(_Event(t, subject, behavior, status,
                                 f"{subject}\x00{behavior}\x00{modifiers}", f"{path}, line {line}"))
        video_id = _video_id(obs_rows, options, obs_id, len(groups))
        tables[video_id] = _events_to_table(
            events, video_id=video_id, fps=fps, options=options,
            n_frames=_n_frames(options, duration, fps), path=path, bset=options.behaviors,
            annotator=options.annotator)
    return tables


def read_aggregated(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A BORIS aggregated events export as ``{video_id: LabelTable}``, one per observation."""
    header, rows = csv_rows(path, is_header=lambda line: "Start (s)" in line)
    require_columns(path, header, ["Behavior", "Start (s)", "Stop (s)"],
                    "BORIS aggregated events")
    fps_col = "FPS (frame/s)" if "FPS (frame/s)" in header else "FPS"
    groups = _group_rows(path, rows, "Observation id")
    tables = {}
    for obs_id, obs_rows in groups.items():
        where = f"{path}, observation {obs_id!r}"
        fps = check_fps(_first_number(obs_rows[0][1].get(fps_col, "")), options.fps, where)
        duration = _first_number(obs_rows[0][1].get("Media duration (s)", ""))
        events = []
        for line, row in obs_rows:
            behavior = row["Behavior"]
            if not behavior:
                raise field_error(path, line, "Behavior", "a behavior code", behavior)
            subject = _subject(row.get("Subject"))
            kind = (row.get("Behavior type") or "STATE").upper()
            start = _parse_time(row["Start (s)"], path, line, "Start (s)")
            at = f"{path}, line {line}"
            key = f"{subject}\x00{behavior}\x00{line}"
            if kind == "POINT":
                events.append(_Event(start, subject, behavior, "POINT", key, at))
                continue
            stop = _parse_time(row["Stop (s)"], path, line, "Stop (s)")
            if stop < start:
                raise field_error(path, line, "Stop (s)", f"a time >= Start (s) = {start:g}",
                                  row["Stop (s)"], "Swap Start and Stop or fix the row.")
            events += [_Event(start, subject, behavior, "START", key, at),
                       _Event(stop, subject, behavior, "STOP", key, at)]
        video_id = _video_id(obs_rows, options, obs_id, len(groups))
        tables[video_id] = _events_to_table(
            events, video_id=video_id, fps=fps, options=options,
            n_frames=_n_frames(options, duration, fps), path=path, bset=options.behaviors,
            annotator=options.annotator)
    return tables


# --------------------------------------------------------------------------- writer
def write_tabular(table: LabelTable, path: Path) -> None:
    """BORIS 8 tabular events CSV: START/STOP rows per bout (POINT for behaviors whose bouts
    are all one frame). ``Image index`` is the frame shown at the row's time, so a STOP row
    names the first frame after the bout."""
    if table.fps is None and table.timestamps is None:
        raise LabelError(f"labels of video {table.video_id!r}: BORIS times are seconds and the "
                         "table has neither fps nor timestamps; set them (--fps) to export.")
    table = table.recompute_seconds()
    times = table.frame_times()
    duration = float(times[-1]) if times is not None else math.nan
    point = {b for b in {iv.behavior for iv in table.intervals}
             if all(iv.n_frames == 1 for iv in table.intervals if iv.behavior == b)}
    events = []  # (time, order, frame, interval, status)
    for iv in table.intervals:
        if iv.behavior in point:
            events.append((iv.start_s, 1, iv.start_frame, iv, "POINT"))
        else:
            events.append((iv.start_s, 2, iv.start_frame, iv, "START"))
            events.append((iv.end_s, 0, iv.end_frame + 1, iv, "STOP"))
    events.sort(key=lambda e: (e[0], e[1]))
    fps = table.fps or (1.0 / float(np.median(np.diff(table.timestamps)))
                        if table.timestamps is not None and len(table.timestamps) > 1 else math.nan)
    vid = table.video_id or "video"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(TABULAR_COLUMNS)
        for t, _, frame, iv, status in events:
            writer.writerow([
                vid, "", "", f"{duration:.3f}", "Media file(s)", f"player #1:{vid}", "0.0",
                f"{duration:.3f}", f"{fps:.3f}", iv.subject or "", iv.behavior, "", status,
                f"{t:.4f}", vid, frame, "NA", "",
            ])
