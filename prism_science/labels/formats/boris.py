"""BORIS: .boris projects (JSON, or gzipped .boris.gz), the tabular and aggregated exports;
writes .boris projects that BORIS opens and the tabular export.

Times in BORIS are seconds of observation time (media time + the observation's ``time offset``,
which is subtracted); they become frames through the video's timestamps (dropped frames) or fps
(:func:`prism_science.labels.table.seconds_to_frames`): a state event from START at t0 to STOP
at t1 covers the frames shown during ``[t0, t1)``; a point event the frame shown at its time.
In a project, the events of a state behavior alternate START / STOP per (subject, behavior,
modifiers), as in BORIS itself (``project_functions.events_start_stop``).

Observations are first-class: every observation (one per coder, focal animal or media file) is
its own table, with ``observation`` = the observation id and ``annotator`` = its independent
variable named coder / observer / annotator / rater / scorer when it has one. An observation
that cannot be imported (several media files played in sequence, unpaired events, an image
directory, no frame rate, no events) is skipped and reported while the others are read.
Modifiers are kept on the intervals (``|``-joined, as BORIS writes them); comments are not.
The whole media counts as labeled (or the observation's time interval when one is set).
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import math
import re
from collections.abc import Callable, Sequence
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
    csv_rows,
    field_error,
    keyed,
    media_stem,
    parse_float,
    read_each,
    read_text,
    require_columns,
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

NO_FOCAL_SUBJECT = ("", "No focal subject")
NA = ("", "NA", "Not found", "nan")
# Independent variables of an observation that name its coder (first match, any case).
ANNOTATOR_VARIABLES = ("coder", "observer", "annotator", "rater", "scorer")
STATE_EVENT, POINT_EVENT = "State event", "Point event"
# The project format version BORIS 8 and 9 write (boris/config.py, project_format_version).
PROJECT_FORMAT_VERSION = "7.0"

# BORIS 9 tabular export columns (boris/export_observation.py, export_tabular_events), without
# the independent variables (after FPS) and the "Modifier #i" columns (after the category).
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
    modifiers: str = ""


@dataclass
class _Observation:
    """One observation before its events are parsed (parsing errors skip only it)."""

    obs_id: str
    video_id: str
    where: str
    events: Callable[[], list[_Event]]
    media: list[str] = field(default_factory=list)
    fps: float | None = None
    duration: float | None = None
    annotator: str = ""
    coded: tuple[float, float] | None = None
    refuse: str | None = None  # why it cannot be imported, found before parsing


# --------------------------------------------------------------------------- sniffing
def sniff_project(path: Path, head: str) -> bool:
    return path.suffix.lower() == ".boris" or path.name.lower().endswith(".boris.gz") or (
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


def _check_not_before_video(ev: _Event, fps: float | None) -> None:
    """Refuse an event before the media's start: clamped, it would land on frame 0 silently."""
    if ev.time < -(0.5 / fps if fps else 1e-3):
        raise LabelError(
            f"{ev.where}: {ev.status} of {ev.behavior!r} at {ev.time:g} s is before the start "
            "of the video (0 s); expected times inside the media. Check the observation's time "
            "offset in BORIS, or delete the event, and export again.")


def _events_to_table(events: list[_Event], *, video_id: str, fps: float | None,
                     options: ReadOptions, n_frames: int | None, path: Path,
                     bset: BehaviorSet | None, annotator: str,
                     coded: tuple[float, float] | None = None) -> LabelTable:
    timestamps = options.timestamps
    if fps is None and timestamps is None:
        raise LabelError(
            f"{path}: observation {video_id!r} gives no frame rate and none was passed; "
            "expected the media's fps to convert BORIS times to frames. Pass --fps / fps=..., "
            "or import into a store that holds the video (its rate is used).")
    open_states: dict[str, _Event] = {}
    intervals: list[Interval] = []
    for ev in sorted(events, key=lambda e: e.time):
        _check_not_before_video(ev, fps)
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
            ev = start  # the bout keeps the modifiers and origin of its START
        else:
            raise LabelError(f"{ev.where}: unknown event status {ev.status!r}; expected START, "
                             "STOP or POINT.")
        s, e = frames_to_seconds(a, b, fps, timestamps)
        intervals.append(Interval(ev.behavior, a, b, s, e, ev.subject, annotator, "manual",
                                  modifiers=ev.modifiers, origin=ev.where))
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


def _annotator(variables: object) -> str:
    """The value of the first independent variable naming the coder (see ANNOTATOR_VARIABLES)."""
    if not isinstance(variables, dict):
        return ""
    lowered = {str(k).strip().lower(): v for k, v in variables.items()}
    for name in ANNOTATOR_VARIABLES:
        value = lowered.get(name)
        if value not in (None, "", "NA"):
            return str(value).strip()
    return ""


def _read_observations(path: Path, observations: Sequence[_Observation], options: ReadOptions,
                       bset: BehaviorSet | None) -> dict[str, LabelTable]:
    """One table per selected observation; bad ones are reported and skipped (read_each)."""
    chosen = select_observations(path, [(o.video_id, o.obs_id) for o in observations], options)
    items = [(f"observation {observations[i].obs_id!r} ({observations[i].video_id})",
              partial(_observation_table, observations[i], video_id, path, options, bset))
             for i, video_id in chosen]
    return keyed(read_each(items, options.report))


def _observation_table(obs: _Observation, video_id: str, path: Path, options: ReadOptions,
                       bset: BehaviorSet | None) -> LabelTable:
    if obs.refuse:
        raise LabelError(f"{obs.where}: {obs.refuse}")
    if len(obs.media) > 1:
        names = ", ".join(media_stem(m) for m in obs.media[:4])
        raise LabelError(
            f"{obs.where}: plays {len(obs.media)} media files in sequence ({names}); expected "
            "one video per observation (its times run across the files). Split it in BORIS "
            "into one observation per media file, or export it per media file.")
    opts = options.for_video(video_id)
    events = obs.events()
    if not events:
        raise LabelError(f"{obs.where}: no events coded; nothing to import.")
    fps = check_fps(obs.fps, opts.fps, obs.where)
    table = _events_to_table(events, video_id=video_id, fps=fps, options=opts,
                             n_frames=_n_frames(opts, obs.duration, fps), path=path, bset=bset,
                             annotator=obs.annotator or options.annotator, coded=obs.coded)
    table.observation = obs.obs_id
    table.origin = obs.where
    return table


# --------------------------------------------------------------------------- project
def _load_project(path: Path) -> dict:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8-sig") as fh:
                text = fh.read()
        else:
            text = read_text(path)
        pj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); expected a "
                         "BORIS project (.boris).") from exc
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read as a BORIS project ({exc}); expected .boris "
                         "JSON or .boris.gz.") from exc
    if not isinstance(pj, dict) or "observations" not in pj:
        raise LabelError(f"{path}: expected a BORIS project with 'observations', found keys "
                         f"{list(pj)[:10] if isinstance(pj, dict) else type(pj).__name__}.")
    return pj


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
        types[code] = str(b.get("type", POINT_EVENT))
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


def _project_events(obs: dict, where: str, offset: float, state: set[str],
                    report_comments: Callable[[int], None]) -> list[_Event]:
    events, counts, comments = [], {}, 0
    for i, ev in enumerate(obs.get("events", []) or []):
        at = f"{where}, events[{i}]"
        if not isinstance(ev, list) or len(ev) < 3:
            raise LabelError(f"{at}: expected [time, subject, behavior, modifiers, comment"
                             f", ...], found {ev!r}.")
        try:
            t = float(ev[0]) - offset
        except (TypeError, ValueError):
            raise LabelError(f"{at}, field 'time': expected seconds, found {ev[0]!r}.") from None
        if not math.isfinite(t):
            raise LabelError(f"{at}, field 'time': expected seconds, found {ev[0]!r} (an image "
                             "observation without times?).")
        subject, code = _subject(ev[1]), str(ev[2])
        modifiers = str(ev[3]) if len(ev) > 3 and ev[3] is not None else ""
        comments += bool(len(ev) > 4 and ev[4])
        key = f"{subject}\x00{code}\x00{modifiers}"
        if code in state:
            counts[key] = counts.get(key, 0) + 1
            status = "START" if counts[key] % 2 == 1 else "STOP"
        else:
            status = "POINT"
        events.append(_Event(t, subject, code, status, key, at, modifiers))
    if comments:
        report_comments(comments)
    return events


def read_project(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """Every observation of a .boris project as ``{key: LabelTable}`` (see module doc)."""
    pj = _load_project(path)
    bset, types = _ethogram(pj, path)
    if options.behaviors is not None:
        bset = options.behaviors.union(bset)
    state = {c for c, t in types.items() if "state" in t.lower()}
    observations = []
    raw = pj["observations"] if isinstance(pj["observations"], dict) else {}
    for obs_id, obs in raw.items():
        where = f"{path}, observation {obs_id!r}"
        if not isinstance(obs, dict):
            observations.append(_Observation(str(obs_id), str(obs_id), where, list,
                                             refuse=f"expected an observation (a dict), found "
                                             f"{type(obs).__name__}"))
            continue
        files = obs.get("file") or {}
        player1 = files.get("1", []) if isinstance(files, dict) else files[:1]
        media = [str(m) for m in player1 or [] if m]
        info = obs.get("media_info", {}) or {}
        media_fps = (info.get("fps", {}) or {}).get(media[0]) if media else None
        duration = (info.get("length", {}) or {}).get(media[0]) if media else None
        offset = _project_number(obs.get("time offset"), where, "time offset", 0.0)
        interval = obs.get("observation time interval") or [0, 0]
        coded = None
        if isinstance(interval, list) and len(interval) == 2 \
                and _project_number(interval[1], where, "observation time interval", 0.0) > 0:
            coded = (_project_number(interval[0], where, "observation time interval", 0.0)
                     - offset, float(interval[1]) - offset)
        media_fps = _project_number(media_fps, where, "media_info fps", None, positive=True)
        duration = _project_number(duration, where, "media_info length", None, positive=True)
        obs_type = str(obs.get("type", "MEDIA")).upper()
        refuse = None
        if obs_type == "IMAGES":
            refuse = ("an observation of image directories (type IMAGES); expected a media or "
                      "live observation. Code the video itself in BORIS.")
        note = partial(_note_comments, options, where)
        observations.append(_Observation(
            str(obs_id), media_stem(media[0]) if media else str(obs_id), where,
            partial(_project_events, obs, where, offset, state, note), media,
            float(media_fps) if media_fps else None, float(duration) if duration else None,
            _annotator(obs.get("independent_variables")), coded, refuse))
    return _read_observations(path, observations, options, bset)


def _project_number(value: Any, where: str, field: str, default: float | None,
                    positive: bool = False) -> float | None:
    """A number of a .boris project: ``default`` when absent (None, 0, ""), LabelError naming
    the field when it is text, infinite, NaN (or not positive where ``positive``)."""
    if value is None or value == "" or value == 0:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number) or (positive and number <= 0):
        raise LabelError(f"{where}, field {field!r}: expected a finite "
                         f"{'positive ' if positive else ''}number, found {value!r}; fix it in "
                         "BORIS (or the file) and export again.")
    return number


def _note_comments(options: ReadOptions, where: str, n: int) -> None:
    options.report.note(f"{where}: {n} event comment(s) not kept (comments have no column; "
                        "modifiers are kept)")


# --------------------------------------------------------------------------- CSV exports
def _preamble(path: Path, header_test: Callable[[str], bool]) -> dict[str, list[str]]:
    """``{label: values}`` of the metadata lines above the header (BORIS 7 / 8.0-8.9 exports:
    ``Observation id``, ``Player #1``, independent variables, ...)."""
    out: dict[str, list[str]] = {}
    for line in read_text(path).splitlines():
        if header_test(line):
            break
        fields = next(csv.reader([line], delimiter="\t" if "\t" in line else ","), [])
        fields = [f.strip() for f in fields if f.strip()]
        if len(fields) >= 2:
            out.setdefault(fields[0], []).extend(fields[1:])
    return out


def _player1_media(source: str) -> list[str]:
    """The player-1 media of BORIS's ``Source`` (``player #1:a.mp4;b.mp4|player #2:c.mp4``)."""
    for part in (source or "").split("|"):
        part = part.strip()
        if part.lower().startswith("player #1:"):
            return [m.strip() for m in part.split(":", 1)[1].split(";") if m.strip()]
    return []


def _group_rows(path: Path, rows, obs_column: str, default: str) -> dict[str, list]:
    groups: dict[str, list] = {}
    for line, row in rows:
        groups.setdefault(row.get(obs_column, "") or default, []).append((line, row))
    return groups


def _csv_observation(path: Path, obs_id: str, obs_rows: list, preamble: dict[str, list[str]],
                     fps_column: str, events: Callable[[], list[_Event]]) -> _Observation:
    """An observation of a tabular or aggregated export: its media, rate, length, coder."""
    first = obs_rows[0][1]
    where = f"{path}, observation {obs_id!r}"
    media = _player1_media(first.get("Source", ""))
    if not media:  # older exports: the media of each row, or the "Player #1" preamble lines
        media = preamble.get("Player #1", []) or list(dict.fromkeys(
            (row.get("Media file name") or row.get("Media file path") or "").strip()
            for _, row in obs_rows))
        media = [m for m in media if m not in NA and m.upper() != "LIVE"]
    fps_text = first.get(fps_column, "")
    duration = _first_number(first.get("Media duration (s)", "") or first.get("Total length", ""))
    observation_type = (first.get("Observation type", "") or "").lower()
    refuse = None
    if "picture" in observation_type or "images" in observation_type:
        refuse = ("an observation of image directories; expected a media or live observation. "
                  "Code the video itself in BORIS.")
    variables = {k: v for k, v in first.items() if k.strip().lower() in ANNOTATOR_VARIABLES}
    for name, values in preamble.items():
        if name.strip().lower() in ANNOTATOR_VARIABLES and values:
            variables.setdefault(name, values[0])
    return _Observation(obs_id, media_stem(media[0]) if media else obs_id, where, events, media,
                        _first_number(fps_text.split("|")[0]) if fps_text else None, duration,
                        _annotator(variables), None, refuse)


def _offset(row: dict) -> float:
    return _first_number(row.get("Time offset (s)", "")) or 0.0


def _tabular_events(path: Path, obs_rows: list, status_col: str,
                    preamble_offset: float = 0.0) -> list[_Event]:
    offset = _offset(obs_rows[0][1]) or preamble_offset
    modifier_columns = [k for k in obs_rows[0][1] if k.startswith("Modifier")]
    events = []
    for line, row in obs_rows:
        status = row[status_col].upper()
        if status not in ("START", "STOP", "POINT"):
            raise field_error(path, line, status_col, "START, STOP or POINT", row[status_col])
        behavior = row["Behavior"]
        if not behavior:
            raise field_error(path, line, "Behavior", "a behavior code", behavior)
        subject = _subject(row.get("Subject"))
        modifiers = _join_modifiers(row[k] for k in modifier_columns)
        t = _parse_time(row["Time"], path, line, "Time") - offset
        events.append(_Event(t, subject, behavior, status,
                             f"{subject}\x00{behavior}\x00{modifiers}", f"{path}, line {line}",
                             modifiers))
    return events


def _join_modifiers(values) -> str:
    parts = [v.strip() for v in values]
    while parts and not parts[-1]:
        parts.pop()
    return "|".join(parts)


def read_tabular(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A BORIS tabular events export as ``{key: LabelTable}``, one per observation."""
    def is_header(line: str) -> bool:
        return "Behavior" in line and "Time" in line and (
            "Behavior type" in line or "Status" in line)

    header, rows = csv_rows(path, is_header=is_header)
    status_col = "Behavior type" if "Behavior type" in header else "Status"
    require_columns(path, header, ["Time", "Behavior", status_col], "BORIS tabular events")
    preamble = _preamble(path, is_header)
    default_id = (preamble.get("Observation id") or [path.stem])[0]
    groups = _group_rows(path, rows, "Observation id", default_id)
    _check_comments(groups, options, path, "Comment")
    offset = _first_number((preamble.get("Time offset (s)") or [""])[0]) or 0.0
    observations = [
        _csv_observation(path, obs_id, obs_rows, preamble, "FPS",
                         partial(_tabular_events, path, obs_rows, status_col, offset))
        for obs_id, obs_rows in groups.items()]
    return _read_observations(path, observations, options, options.behaviors)


def _check_comments(groups: dict[str, list], options: ReadOptions, path: Path,
                    *columns: str) -> None:
    n = sum(1 for rows in groups.values() for _, row in rows
            if any((row.get(c) or "").strip() not in NA for c in columns))
    if n:
        options.report.note(f"{path}: {n} row comment(s) not kept (comments have no column; "
                            "modifiers are kept)")


def _aggregated_events(path: Path, obs_rows: list) -> list[_Event]:
    offset = _offset(obs_rows[0][1])
    modifier_columns = [k for k in obs_rows[0][1] if k.startswith("Modifier")]
    events = []
    for line, row in obs_rows:
        behavior = row["Behavior"]
        if not behavior:
            raise field_error(path, line, "Behavior", "a behavior code", behavior)
        subject = _subject(row.get("Subject"))
        kind = (row.get("Behavior type") or "STATE").upper()
        modifiers = _join_modifiers(row[k] for k in modifier_columns)
        start = _parse_time(row["Start (s)"], path, line, "Start (s)") - offset
        at = f"{path}, line {line}"
        key = f"{subject}\x00{behavior}\x00{line}"
        if kind == "POINT":
            events.append(_Event(start, subject, behavior, "POINT", key, at, modifiers))
            continue
        if (row["Stop (s)"] or "").strip() in NA:
            raise field_error(path, line, "Stop (s)", "the stop time of the state event",
                              row["Stop (s)"], "The bout was never stopped; close it in BORIS.")
        stop = _parse_time(row["Stop (s)"], path, line, "Stop (s)") - offset
        if stop < start:
            raise field_error(path, line, "Stop (s)", f"a time >= Start (s) = {start + offset:g}",
                              row["Stop (s)"], "Swap Start and Stop or fix the row.")
        events += [_Event(start, subject, behavior, "START", key, at, modifiers),
                   _Event(stop, subject, behavior, "STOP", key, at, modifiers)]
    return events


def read_aggregated(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A BORIS aggregated events export as ``{key: LabelTable}``, one per observation."""
    header, rows = csv_rows(path, is_header=lambda line: "Start (s)" in line)
    require_columns(path, header, ["Behavior", "Start (s)", "Stop (s)"],
                    "BORIS aggregated events")
    fps_col = "FPS (frame/s)" if "FPS (frame/s)" in header else "FPS"
    groups = _group_rows(path, rows, "Observation id", path.stem)
    _check_comments(groups, options, path, "Comment start", "Comment stop")
    observations = [
        _csv_observation(path, obs_id, obs_rows, {}, fps_col,
                         partial(_aggregated_events, path, obs_rows))
        for obs_id, obs_rows in groups.items()]
    return _read_observations(path, observations, options, options.behaviors)


# --------------------------------------------------------------------------- writers
def _table_fps(table: LabelTable) -> float:
    if table.fps:
        return float(table.fps)
    if table.timestamps is not None and len(table.timestamps) > 1:
        return 1.0 / float(np.median(np.diff(table.timestamps)))
    raise LabelError(f"labels of video {table.video_id!r}: BORIS times are seconds and the "
                     "table has neither fps nor timestamps; set them (--fps) to export.")


def _point_behaviors(table: LabelTable) -> set[str]:
    """Behaviors whose bouts are all one frame: written as BORIS point events."""
    behaviors = {iv.behavior for iv in table.intervals}
    return {b for b in behaviors
            if all(iv.n_frames == 1 for iv in table.intervals if iv.behavior == b)}


def write_tabular(table: LabelTable, path: Path) -> None:
    """BORIS 9 tabular events CSV: START/STOP rows per bout (POINT for behaviors whose bouts
    are all one frame), ``Modifier #i`` columns when bouts have modifiers. ``Image index`` is
    the frame shown at the row's time, so a STOP row names the first frame after the bout."""
    fps = _table_fps(table)
    table = table.recompute_seconds()
    times = table.frame_times()
    duration = float(times[-1]) if times is not None else math.nan
    point = _point_behaviors(table)
    n_modifiers = max((len(iv.modifiers.split("|")) for iv in table.intervals if iv.modifiers),
                      default=0)
    events = []  # (time, order, frame, interval, status)
    for iv in table.intervals:
        if iv.behavior in point:
            events.append((iv.start_s, 1, iv.start_frame, iv, "POINT"))
        else:
            events.append((iv.start_s, 2, iv.start_frame, iv, "START"))
            events.append((iv.end_s, 0, iv.end_frame + 1, iv, "STOP"))
    events.sort(key=lambda e: (e[0], e[1]))
    vid = table.video_id or "video"
    obs_id = table.observation or vid
    columns = TABULAR_COLUMNS[:12] + [f"Modifier #{i + 1}" for i in range(n_modifiers)] \
        + TABULAR_COLUMNS[12:]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for t, _, frame, iv, status in events:
            modifiers = (iv.modifiers.split("|") if iv.modifiers else [])
            modifiers += [""] * (n_modifiers - len(modifiers))
            writer.writerow([
                obs_id, "", "", f"{duration:.3f}", "Media file(s)", f"player #1:{vid}", "0.0",
                f"{duration:.3f}", f"{fps:.3f}", iv.subject or "", iv.behavior, "",
                *modifiers, status, f"{t:.3f}", vid, frame, "NA", "",
            ])


def _subject_conf(subjects: Sequence[str]) -> dict[str, dict]:
    return {str(i): {"key": "", "name": s, "description": ""} for i, s in enumerate(subjects)}


def _modifier_sets(intervals: Sequence[Interval]) -> dict[str, dict]:
    """BORIS modifier sets of one behavior from the values its bouts carry (BORIS checks that
    each coded event has as many ``|``-parts as the behavior has sets)."""
    coded = [iv.modifiers.split("|") for iv in intervals if iv.modifiers]
    n = max((len(m) for m in coded), default=0)
    return {str(i): {"name": f"modifier {i + 1}", "type": 0,
                     "values": sorted({m[i] for m in coded if i < len(m) and m[i]})}
            for i in range(n)}


def project_document(tables: Sequence[LabelTable], media_paths: Sequence[str] | None = None,
                     project_name: str = "") -> dict:
    """A BORIS project (the .boris JSON document) holding one observation per table.

    Parameters
    ----------
    tables : sequence of LabelTable
        Each becomes an observation (id: the table's ``observation``, else its video id) of
        the media file ``media_paths[i]`` (default: the video id); every table needs fps or
        timestamps. Bouts become START/STOP state events (point events for behaviors whose
        bouts are all one frame), with their subject and modifiers.
    media_paths : sequence of str, optional
        The video file of each table, as BORIS should open it.
    project_name : str
        The project's name.

    Returns
    -------
    dict
        The project, in BORIS's project format 7.0 (BORIS 8 and 9).
    """
    if not tables:
        raise LabelError("no label tables to write as a BORIS project; expected at least one.")
    bset = tables[0].behaviors()
    for t in tables[1:]:
        bset = bset.union(t.behaviors())
    all_intervals = [iv for t in tables for iv in t.intervals]
    point = {b for b in {iv.behavior for iv in all_intervals}
             if all(iv.n_frames == 1 for iv in all_intervals if iv.behavior == b)}
    excluded = {b: [] for b in bset.names}
    for group in bset.exclusive_groups:
        for b in group:
            excluded[b] = [x for x in group if x != b]
    ethogram = {}
    for i, b in enumerate(bset.names):
        ethogram[str(i)] = {
            "type": POINT_EVENT if b in point else STATE_EVENT, "key": bset.keys.get(b, ""),
            "code": b, "description": "", "color": bset.colors.get(b, ""), "category": "",
            "modifiers": _modifier_sets([iv for iv in all_intervals if iv.behavior == b]),
            "excluded": ",".join(excluded[b]), "coding map": ""}
    subjects = list(dict.fromkeys(iv.subject for iv in all_intervals if iv.subject))
    annotators = {t.observation or t.video_id: sorted({iv.annotator for iv in t.intervals
                                                       if iv.annotator}) for t in tables}
    now = datetime.now(timezone.utc).astimezone().replace(microsecond=0).isoformat()
    observations = {}
    for i, table in enumerate(tables):
        media = (media_paths[i] if media_paths is not None and i < len(media_paths)
                 and media_paths[i] else table.video_id or f"video_{i}")
        obs_id = table.observation or table.video_id or f"observation {i + 1}"
        if obs_id in observations:
            obs_id = f"{obs_id} ({i + 1})"
        observations[obs_id] = _observation_document(table, str(media), point, now,
                                                     annotators.get(obs_id, []))
    variables = {}
    if any(annotators.values()):
        variables = {"0": {"label": "coder", "description": "who coded the observation",
                           "type": "text", "default value": "", "possible values": ""}}
    return {
        "time_format": "hh:mm:ss", "project_date": now,
        "project_name": project_name or "prism-science labels",
        "project_description": "Exported by prism-science (behavior labels).",
        "project_format_version": PROJECT_FORMAT_VERSION,
        "subjects_conf": _subject_conf(subjects), "behaviors_conf": ethogram,
        "observations": observations, "behavioral_categories": [],
        "behavioral_categories_conf": {}, "independent_variables": variables,
        "coding_map": {}, "behaviors_coding_map": [], "converters": {},
    }


def _observation_document(table: LabelTable, media: str, point: set[str], date: str,
                          annotators: list[str]) -> dict:
    fps = _table_fps(table)
    table = table.recompute_seconds()
    times = table.frame_times()
    if times is None:  # length unknown: the media lasts until the last bout
        times = np.arange(table.last_frame() + 2, dtype=np.float64) / fps
    duration = round(float(times[-1]), 3)
    events = []  # [time, subject, code, modifiers, comment, frame index]
    for iv in table.intervals:
        subject = iv.subject or ""
        if iv.behavior in point:
            events.append([round(iv.start_s, 3), subject, iv.behavior, iv.modifiers, "",
                           int(iv.start_frame)])
            continue
        events.append([round(iv.start_s, 3), subject, iv.behavior, iv.modifiers, "",
                       int(iv.start_frame)])
        events.append([round(iv.end_s, 3), subject, iv.behavior, iv.modifiers, "",
                       int(iv.end_frame + 1)])
    # BORIS keeps events sorted by (time, subject, code) (project_functions.open_project_json)
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    interval = [0, 0]
    segs = sorted(table.segments, key=lambda s: s.start_frame)
    whole = not segs or (len(segs) == 1 and segs[0].start_frame == 0
                         and segs[0].end_frame >= len(times) - 2)
    if not whole:
        first, last = segs[0].start_frame, max(s.end_frame for s in segs)
        interval = [round(float(times[first]), 3), round(float(times[last + 1]), 3)]
        if len(segs) > 1 or any(s.subject or s.behaviors for s in segs):
            logger.warning("labels of %r: BORIS holds one observed interval; the %d labeled "
                           "segments are written as %s..%s s", table.video_id, len(segs),
                           interval[0], interval[1])
    return {
        "file": {"1": [media], **{str(p): [] for p in range(2, 9)}},
        "type": "MEDIA", "date": date,
        "description": f"labels of {table.video_id} (prism-science)", "time offset": 0.0,
        "events": events, "observation time interval": interval,
        "independent_variables": {"coder": ", ".join(annotators)} if annotators else {},
        "visualize_spectrogram": False, "visualize_waveform": False,
        "media_creation_date_as_offset": False, "media_scan_sampling_duration": 0,
        "image_display_duration": 1, "close_behaviors_between_videos": False,
        "media_info": {"length": {media: duration}, "fps": {media: round(fps, 6)},
                       "hasVideo": {media: True}, "hasAudio": {media: False},
                       "offset": {"1": 0.0}},
    }


def write_project(table: LabelTable, path: Path, media_path: str | None = None) -> None:
    """Write ``table`` as a .boris project BORIS opens (one observation; see
    :func:`project_document`). ``media_path``: the video file BORIS should play (default: the
    video id; BORIS asks for the file when it is not found)."""
    doc = project_document([table], [media_path] if media_path else None,
                           project_name=f"labels of {table.video_id}")
    text = json.dumps(doc, indent=1)
    if path.name.lower().endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(text)
    else:
        path.write_text(text, encoding="utf-8")
