"""KABR (Kenyan Animal Behavior Recognition): annotation CSVs and CVAT XML tracks.

(../shared/data/formats/kabr/FORMAT.md, Imageomics/kabr-tools.) Three layouts:

- dataset annotation CSV (``annotation/{train,val}.csv``, space-separated, Charades style):
  ``original_vido_id video_id frame_id path labels``, one row per frame of a mini-scene,
  ``frame_id`` **1-based** over the extracted frames, ``labels`` a class id (or comma-separated
  ids) of ``classes.json``; one table per ``original_vido_id``;
- behavior-model output CSV (miniscene2behavior): ``video track frame label``, ``frame`` 0-based
  (frames of the drone video; the mini-scenes are frame-aligned with it); one table per
  ``video``, subject = track id, ``source="predicted"``; ``tracks=`` a CVAT detection-tracks XML
  (``<track id><box frame xtl ytl xbr ybr>``, e.g. ``DJI_tracks.xml``) attaches each frame's box
  of the track (a new interval where the box changes);
- CVAT for video 1.1 XML of a mini-scene (``actions/<track>.xml``): ``<track>`` elements with
  ``<points>`` or ``<box>`` per frame (``outside="1"`` frames skipped) whose ``<attribute>`` text
  is the behavior (legacy names mapped by ``old2new.json``); boxes are kept on the intervals.

Class names come from a ``classes.json`` next to the file when present, else KABR's eight; a
CVAT XML's own vocabulary (the ``<values>`` of its behavior attribute in ``<meta>``) comes first
when it declares one. Behaviors are one per frame and subject (one exclusive group); rows
present are labeled frames. The mini-scenes and drone videos run at 29.97 fps, the default rate
(a rate passed by the caller is checked against it and wins).
"""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import (
    ReadOptions,
    csv_rows,
    field_error,
    parse_int,
    require_columns,
)
from prism_science.labels.matrix import from_frame_matrix
from prism_science.labels.table import (
    Interval,
    LabelTable,
    Segment,
    check_fps,
    frames_to_seconds,
    merge_tables,
)

logger = logging.getLogger(__name__)

# kabr-tools ethogram/classes.json and old2new.json (MIT, Imageomics Institute).
KABR_CLASSES = {"Walk": 0, "Graze": 1, "Browse": 2, "Head Up": 3, "Auto-Groom": 4, "Trot": 5,
                "Run": 6, "Occluded": 7}
OLD2NEW = {"Walking": "Walk", "Browsing": "Browse", "Trotting": "Trot", "Running": "Run"}
KABR_FPS = 29.97


def sniff_csv(path: Path, head: str) -> bool:
    first = head.splitlines()[0].split() if head else []
    return first[:3] == ["original_vido_id", "video_id", "frame_id"] or \
        first == ["video", "track", "frame", "label"]


def sniff_xml(path: Path, head: str) -> bool:
    return "<annotations" in head and "<track" in head


def _classes(path: Path) -> dict[int, str]:
    for candidate in (path.with_name("classes.json"), path.parent.parent / "classes.json"):
        if candidate.is_file():
            try:
                mapping = json.loads(candidate.read_text(encoding="utf-8"))
                return {int(v): str(k) for k, v in mapping.items()}
            except (ValueError, AttributeError) as exc:
                raise LabelError(f"{candidate}: expected a JSON object {{name: id}} of KABR "
                                 f"classes ({exc}).") from exc
    return {v: k for k, v in KABR_CLASSES.items()}


def _table_from_frames(frames: dict[str | None, dict[int, list[int]]], names: list[str],
                       video_id: str, options: ReadOptions, path: Path, source: str,
                       n_frames: int | None) -> LabelTable:
    """One table from per-subject {frame: [class columns]} of single- or multi-label rows."""
    multi_label = any(len(c) > 1 for per in frames.values() for c in per.values())
    bset = BehaviorSet.from_names(names, exclusive=not multi_label)
    last = max((f for per in frames.values() for f in per), default=-1)
    # frames beyond n_frames are kept here so that validation names them
    n = max(n_frames or 0, last + 1)
    parts = []
    for subject, per_frame in frames.items():
        matrix = np.full((n, len(names)), -1, dtype=np.int8)
        for frame, cols in per_frame.items():
            matrix[frame] = 0
            matrix[frame, cols] = 1
        parts.append(from_frame_matrix(matrix, bset, subject=subject, fps=options.fps,
                                       timestamps=options.timestamps,
                                       annotator=options.annotator, source=source,
                                       video_id=video_id, origin=str(path)))
    table = merge_tables(parts, video_id)
    table.n_frames = n_frames
    table.behavior_set = options.behaviors.union(bset) if options.behaviors else bset
    return table


def read_track_boxes(path: Path) -> dict[str, dict[int, tuple[float, float, float, float]]]:
    """Per track id, per frame, the ``(x0, y0, x1, y1)`` box of a CVAT detection-tracks XML."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise LabelError(f"{path}: cannot read as CVAT tracks XML ({exc}); expected "
                         "<annotations><track id=...><box frame=... xtl=... .../>.") from exc
    boxes: dict[str, dict[int, tuple[float, float, float, float]]] = {}
    for track in root.findall("track"):
        per_frame = boxes.setdefault(str(track.get("id")), {})
        for box in track.findall("box"):
            if box.get("outside") == "1":
                continue
            try:
                per_frame[int(box.get("frame"))] = tuple(
                    float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            except (TypeError, ValueError):
                raise field_error(path, None, f"track {track.get('id')} <box> "
                                  f"frame={box.get('frame')!r}",
                                  "numeric frame, xtl, ytl, xbr, ybr", dict(box.attrib)) from None
    return boxes


def _attach_boxes(table: LabelTable, boxes: dict[str, dict[int, tuple]]) -> LabelTable:
    """Split each interval where its track's box changes and keep the box on each piece."""
    out = []
    for iv in table.intervals:
        track = boxes.get(str(iv.subject), {})
        start = iv.start_frame
        for f in range(iv.start_frame, iv.end_frame + 1):
            if f == iv.end_frame or track.get(f + 1) != track.get(f):
                out.append(replace(iv, start_frame=start, end_frame=f, box=track.get(f)))
                start = f + 1
    return replace(table, intervals=out).recompute_seconds()


def read_csv(path: Path, options: ReadOptions,
             tracks: str | Path | None = None) -> dict[str, LabelTable]:
    """A KABR dataset or behavior-model CSV as ``{video_id: LabelTable}``.

    ``tracks``: a CVAT detection-tracks XML whose per-frame boxes are attached to the
    behavior-model CSV's tracks.
    """
    options = replace(options, fps=check_fps(KABR_FPS, options.fps, str(path)))
    header, rows = csv_rows(path, delimiter=" ")
    classes = _classes(path)
    names = [classes[i] for i in sorted(classes)]
    col_of = {i: j for j, i in enumerate(sorted(classes))}
    predictions = header == ["video", "track", "frame", "label"]
    if not predictions:
        require_columns(path, header, ["original_vido_id", "frame_id", "labels"],
                        "KABR annotation CSV")
    per_video: dict[str, dict[str | None, dict[int, list[int]]]] = defaultdict(
        lambda: defaultdict(dict))
    for line, row in rows:
        if predictions:
            video, subject = row["video"], row["track"]
            frame = parse_int(path, line, "frame", row["frame"])
            label_field, label_text = "label", row["label"]
        else:
            video, subject = row["original_vido_id"], None
            frame = parse_int(path, line, "frame_id", row["frame_id"]) - 1  # 1-based
            label_field, label_text = "labels", row["labels"]
        if frame < 0:
            raise field_error(path, line, "frame_id" if not predictions else "frame",
                              "a frame number >= 1" if not predictions else "a frame >= 0",
                              frame + (0 if predictions else 1))
        cols = []
        for part in label_text.split(","):
            cid = parse_int(path, line, label_field, part)
            if cid not in col_of:
                raise field_error(path, line, label_field, f"a class id in {sorted(classes)} "
                                  f"({', '.join(names)})", label_text,
                                  "Put the dataset's classes.json next to the file.")
            cols.append(col_of[cid])
        per_video[video][subject][frame] = cols
    source = "predicted" if predictions else "manual"
    single = len(per_video) == 1
    tables = {}
    for video, frames in per_video.items():
        video_id = options.video_id if options.video_id and single else video
        n_frames = options.n_frames if single else None
        tables[video_id] = _table_from_frames(frames, names, video_id, options, path, source,
                                              n_frames)
    if tracks is not None:
        boxes = read_track_boxes(Path(tracks))
        tables = {v: _attach_boxes(t, boxes) for v, t in tables.items()}
    return tables


def _cvat_vocabulary(root: ET.Element, attribute_names: set[str | None]) -> list[str]:
    """The values of the behavior attribute(s) declared in a CVAT XML's ``<meta>`` (in order,
    legacy names mapped by ``old2new.json``); empty when the file declares none."""
    names: list[str] = []
    for attribute in root.iterfind("meta//labels/label/attributes/attribute"):
        if attribute.findtext("name") not in attribute_names:
            continue
        for value in (attribute.findtext("values") or "").splitlines():
            value = OLD2NEW.get(value.strip(), value.strip())
            if value and value not in names:
                names.append(value)
    return names


def read_xml(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """A KABR mini-scene CVAT XML as ``{video_id: LabelTable}`` (one mini-scene)."""
    options = replace(options, fps=check_fps(KABR_FPS, options.fps, str(path)))
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise LabelError(f"{path}, line {exc.position[0]}: not well-formed XML ({exc}); "
                         "expected a CVAT for video 1.1 annotation file.") from exc
    tracks = root.findall("track")
    if not tracks:
        raise LabelError(f"{path}: no <track> elements; expected CVAT for video 1.1 tracks.")
    per_subject: dict[str, list[tuple[int, str, tuple | None]]] = {}
    any_attribute = False
    for track in tracks:
        subject = track.get("id", str(len(per_subject)))
        rows = []
        for elem in track:
            if elem.tag not in ("points", "box", "polygon", "skeleton"):
                continue
            if elem.get("outside") == "1":
                continue
            frame_text = elem.get("frame")
            if frame_text is None or not frame_text.lstrip("-").isdigit():
                raise field_error(path, None, f"track {subject} <{elem.tag}> frame",
                                  "an integer frame", frame_text)
            attribute = elem.find("attribute")
            if attribute is None:
                continue
            any_attribute = True
            behavior = "".join(attribute.itertext()).strip()
            behavior = OLD2NEW.get(behavior, behavior)
            if not behavior:
                continue
            box = None
            if elem.tag == "box":
                box = tuple(float(elem.get(k, "nan")) for k in ("xtl", "ytl", "xbr", "ybr"))
            rows.append((int(frame_text), behavior, box))
        per_subject[subject] = sorted(rows)
    if not any_attribute:
        raise LabelError(
            f"{path}: the tracks (labels {sorted({t.get('label') for t in tracks})}) carry no "
            "behavior <attribute>; this looks like a KABR detection-tracks file. Import the "
            "mini-scene behavior annotations (actions/<track>.xml), or the behavior CSV with "
            "tracks=<this file> (--tracks) to attach its boxes.")
    attribute_names = {a.get("name") for track in tracks for elem in track
                       for a in elem.findall("attribute")}
    names = _cvat_vocabulary(root, attribute_names) or list(KABR_CLASSES)
    found = [b for rows in per_subject.values() for _, b, _ in rows]
    extra = [b for b in dict.fromkeys(found) if b not in names]
    if extra and len(names) != len(KABR_CLASSES):
        logger.warning("%s: behaviors %s are not in the file's own vocabulary %s; kept as "
                       "extra behaviors", path, extra, names)
    names += extra
    intervals, segments = [], []
    for subject, rows in per_subject.items():
        start = prev = None
        for frame, behavior, box in rows + [(None, None, None)]:
            if prev is not None and (frame != prev[0] + 1 or behavior != prev[1] or box != prev[2]):
                s, e = frames_to_seconds(start, prev[0], options.fps, options.timestamps)
                intervals.append(Interval(prev[1], start, prev[0], s, e, subject,
                                          options.annotator, "manual", box=prev[2],
                                          origin=f"{path}, track {subject} frame {start}"))
                start = None
            if frame is not None and start is None:
                start = frame
            prev = (frame, behavior, box) if frame is not None else None
        frames = sorted({f for f, _, _ in rows})
        run_start = None
        for i, f in enumerate(frames):
            if run_start is None:
                run_start = f
            if i + 1 == len(frames) or frames[i + 1] != f + 1:
                segments.append(Segment(run_start, f, subject))
                run_start = None
    stem = path.stem
    video_id = options.video_id or (f"{path.parent.parent.name}_{stem}"
                                    if path.parent.name == "actions" else stem)
    bset = BehaviorSet.from_names(names, exclusive=True)
    if options.behaviors is not None:
        bset = options.behaviors.union(bset)
    return {video_id: LabelTable(intervals, segments, video_id, options.n_frames, options.fps,
                                 options.timestamps, bset, str(path))}
