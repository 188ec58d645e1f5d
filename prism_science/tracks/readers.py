"""Read tracks files into :class:`~prism_science.tracks.core.Tracks`, and write the plain CSV.

Pose files go through the ecosystem's own readers: ``movement`` (SLEAP ``.slp`` and analysis
``.h5``, DeepLabCut ``.h5`` / ``.csv`` single- and multi-animal, LightningPose, Anipose), which
itself reads ``.slp`` with ``sleap-io`` (the ``[tracks]`` extra). The dataset formats read here are
KABR's CVAT track XML, ChimpACT's COCO boxes, CalMS21 keypoints and FlyTracker's ``-track.mat``,
plus our plain CSV ``frame,subject,x,y[,w,h,angle,confidence,body_length]``, which is also what
the built-in tracker writes. See docs/tracks.md.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import TracksError
from prism_science.tracks.core import Tracks, from_boxes, from_keypoints, interpolate_gaps

__all__ = [
    "DEFAULT_MAX_GAP",
    "TRACKS_FORMATS",
    "detect_tracks_format",
    "read_tracks",
    "write_tracks_csv",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_GAP = 5
# ChimpACT annotates every 10th frame and its own tools interpolate boxes linearly in between.
_CHIMPACT_KEYFRAME_GAP = 10
CSV_COLUMNS = ("frame", "subject", "x", "y", "w", "h", "angle", "confidence", "body_length")
_CSV_MAGIC = "# prism-science tracks "

TRACKS_FORMATS = {
    "csv": "plain CSV: frame,subject,x,y[,w,h,angle(deg),confidence,body_length] (ours)",
    "sleap": "SLEAP labels .slp or analysis .h5 (via movement / sleap-io)",
    "dlc": "DeepLabCut .h5 or .csv, single- or multi-animal (via movement)",
    "lightningpose": "LightningPose predictions .csv (via movement)",
    "anipose": "Anipose triangulated .csv (via movement; x, y of the 3-D points)",
    "kabr-cvat": "KABR CVAT for video 1.1 XML tracks (<track><box>/<points>)",
    "chimpact": "ChimpACT COCO JSON boxes (raw per clip or COCO-VID)",
    "calms21": "CalMS21 JSON keypoints (resident, intruder; 7 keypoints)",
    "flytracker": "FlyTracker -track.mat (trk.names, trk.data)",
}

CALMS21_KEYPOINTS = ("nose", "left_ear", "right_ear", "neck", "left_hip", "right_hip", "tail_base")
CALMS21_SUBJECTS = ("resident", "intruder")
_MOVEMENT_SOFTWARE = {"sleap": "SLEAP", "dlc": "DeepLabCut", "lightningpose": "LightningPose",
                      "anipose": "Anipose"}


# ----------------------------------------------------------------------------------- detection
def _head(path: Path, n: int = 4096) -> str:
    with open(path, "rb") as fh:
        return fh.read(n).decode("utf-8", errors="replace")


def detect_tracks_format(path: str | os.PathLike[str]) -> str:
    """Name of the tracks format of ``path`` (a key of :data:`TRACKS_FORMATS`).

    Raises
    ------
    TracksError
        The file does not exist or its format is not recognised.
    """
    path = Path(path)
    if not path.is_file():
        raise TracksError(f"{path}: no such tracks file; give the path of a tracks file "
                          f"({', '.join(TRACKS_FORMATS)}).")
    suffix = path.suffix.lower()
    if suffix == ".slp":
        return "sleap"
    if suffix in (".h5", ".hdf5"):
        import h5py

        try:
            with h5py.File(path, "r") as f:
                keys = set(f.keys())
        except OSError as exc:
            raise TracksError(f"{path}: cannot open as HDF5 ({exc}); expected a SLEAP analysis "
                              "or DeepLabCut .h5 file.") from exc
        if {"tracks", "node_names"} <= keys:
            return "sleap"
        if "df_with_missing" in keys or any(k.startswith("df") for k in keys):
            return "dlc"
        raise TracksError(f"{path}: an HDF5 file with groups {sorted(keys)[:8]}, neither a SLEAP "
                          "analysis file (tracks, node_names) nor a DeepLabCut one "
                          "(df_with_missing); pass format= to say which it is.")
    if suffix == ".mat":
        return "flytracker"
    if suffix == ".xml":
        return "kabr-cvat"
    head = _head(path)
    if suffix == ".json":
        if '"images"' in head:
            return "chimpact"
        if '"keypoints"' in head or "annotator-id" in head:
            return "calms21"
        raise TracksError(f"{path}: a JSON file that is neither ChimpACT COCO ('images', "
                          "'annotations') nor CalMS21 ('keypoints' per sequence); pass format=.")
    if suffix in (".csv", ".txt", ".tsv"):
        lines = [ln for ln in head.splitlines() if ln.strip()]
        first = lines[0].split(",")[0].strip().lower() if lines else ""
        if first == "scorer":
            return "dlc"  # LightningPose writes the same layout: pass format="lightningpose"
        header = _csv_header(lines)
        if {"frame", "subject", "x", "y"} <= set(header):
            return "csv"
        if any(c.endswith("_x") for c in header) and any(c.endswith("_z") for c in header):
            return "anipose"
        raise TracksError(
            f"{path}: a CSV whose header {header[:8]} is neither our tracks CSV (frame, subject, "
            "x, y[, w, h, angle]) nor DeepLabCut/LightningPose (scorer, bodyparts, coords rows); "
            "pass format= to say which it is.")
    raise TracksError(f"{path}: unknown tracks file type {suffix!r}; expected one of .slp, .h5, "
                      ".csv, .xml, .json, .mat (formats: " + ", ".join(TRACKS_FORMATS) + ").")


def _csv_header(lines: list[str]) -> list[str]:
    for line in lines:
        if not line.lstrip().startswith("#"):
            return [c.strip().lower() for c in line.split(",")]
    return []


# ------------------------------------------------------------------------------------ entry
def read_tracks(
    path: str | os.PathLike[str],
    format: str | None = None,
    *,
    max_gap: int | None = None,
    video: str | None = None,
    heading_keypoints: tuple[str, str] | None = None,
) -> Tracks:
    """Read a tracks file, fill short gaps and mask the long ones.

    Parameters
    ----------
    path : str or PathLike
        A tracks file (see :data:`TRACKS_FORMATS`).
    format : str, optional
        Format name; detected from the file when omitted.
    max_gap : int, optional
        Longest gap (frames) filled by linear interpolation; longer gaps stay absent (NaN).
        Default 5 (10 for raw ChimpACT files, annotated every 10th frame).
    video : str, optional
        Which video of a file that holds several: a COCO-VID video name or id, a CalMS21
        sequence id (or its last part).
    heading_keypoints : (str, str), optional
        (front, back) keypoints for the heading of pose files (default: nose/snout/head and
        tail base/abdomen when present).

    Returns
    -------
    Tracks

    Raises
    ------
    TracksError
        Unknown format, malformed file (the message names the line, element or field), or a
        file with several videos and no ``video`` given.
    """
    path = Path(path)
    fmt = format or detect_tracks_format(path)
    if fmt not in TRACKS_FORMATS:
        raise TracksError(f"unknown tracks format {fmt!r}; expected one of "
                          f"{', '.join(TRACKS_FORMATS)}.")
    if not path.is_file():
        raise TracksError(f"{path}: no such tracks file.")
    readers: dict[str, Callable[[], tuple[Tracks, int]]] = {
        "csv": lambda: (_read_csv(path), DEFAULT_MAX_GAP),
        "kabr-cvat": lambda: (_read_cvat(path), DEFAULT_MAX_GAP),
        "chimpact": lambda: _read_chimpact(path, video),
        "calms21": lambda: (_read_calms21(path, video, heading_keypoints), DEFAULT_MAX_GAP),
        "flytracker": lambda: (_read_flytracker(path), DEFAULT_MAX_GAP),
    }
    if fmt in readers:
        tracks, default_gap = readers[fmt]()
    else:
        tracks, default_gap = _read_movement(path, fmt, heading_keypoints), DEFAULT_MAX_GAP
    logger.info("%s: %s tracks, %d frames, subjects %s", path, fmt, tracks.n_frames,
                tracks.subjects)
    return interpolate_gaps(tracks, default_gap if max_gap is None else max_gap)


# ----------------------------------------------------------------------------------- movement
def _read_movement(path: Path, fmt: str, heading_keypoints: tuple[str, str] | None) -> Tracks:
    software = _MOVEMENT_SOFTWARE[fmt]
    try:
        import movement.io as movement_io
    except ImportError as exc:
        raise TracksError(f"{path}: reading {software} files needs the 'movement' package; "
                          "install it with: pip install 'prism-science[tracks]'") from exc
    try:
        load = getattr(movement_io, "load_dataset", None)  # movement >= 0.15
        ds = load(path, source_software=software) if load is not None else \
            movement_io.load_poses.from_file(path, source_software=software)
    except Exception as exc:  # movement and its readers raise many types on malformed files
        raise TracksError(f"{path}: movement cannot read this as a {software} file "
                          f"({type(exc).__name__}: {exc}). Check that the file is complete and "
                          "of that tool, or pass the right format.") from exc
    position = ds["position"].transpose("time", "individuals", "keypoints", "space").values
    confidence = ds["confidence"].transpose("time", "individuals", "keypoints").values
    subjects = [str(v) for v in ds["individuals"].values]
    names = [str(v) for v in ds["keypoints"].values]
    # A .slp file does not state the video's length (frames after the last labeled one are not
    # in it); the array files (analysis .h5, DLC, LightningPose, Anipose) have a row per frame.
    return from_keypoints(position[..., :2], subjects, names, confidence,
                          heading_keypoints=heading_keypoints, source=str(path), format=fmt,
                          n_frames_known=path.suffix.lower() != ".slp",
                          fps=ds.attrs.get("fps"))


# ---------------------------------------------------------------------------------- plain CSV
def _number(path: Path, line: int, name: str, value: str | None) -> float:
    if value is None or value.strip() == "":
        return math.nan
    try:
        return float(value)
    except ValueError:
        raise TracksError(f"{path}, line {line}, column {name!r}: expected a number, found "
                          f"{value!r}; fix that cell or leave it empty.") from None


def _read_csv(path: Path) -> Tracks:
    meta: dict[str, Any] = {}
    rows: list[tuple[int, dict[str, str]]] = []
    with open(path, newline="", encoding="utf-8-sig") as fh:
        lines = enumerate(fh, start=1)
        data_lines = []
        for number, text in lines:
            if text.startswith(_CSV_MAGIC):
                try:
                    meta = json.loads(text[len(_CSV_MAGIC):])
                except json.JSONDecodeError as exc:
                    raise TracksError(f"{path}, line {number}: the metadata comment is not valid "
                                      f"JSON ({exc.msg}); fix or delete that line.") from exc
            elif text.lstrip().startswith("#") or not text.strip():
                continue
            else:
                data_lines.append((number, text))
    if not data_lines:
        raise TracksError(f"{path}: empty tracks CSV; expected a header "
                          f"{','.join(CSV_COLUMNS[:4])} and one row per frame and subject.")
    reader = csv.DictReader([t for _, t in data_lines])
    header = [h.strip().lower() for h in reader.fieldnames or []]
    reader.fieldnames = header
    missing = [c for c in CSV_COLUMNS[:4] if c not in header]
    if missing:
        raise TracksError(f"{path}, line {data_lines[0][0]}: columns {missing} missing from the "
                          f"header {header}; a tracks CSV needs frame, subject, x, y (optionally "
                          "w, h, angle, confidence, body_length).")
    for (number, _), row in zip(data_lines[1:], reader, strict=False):
        rows.append((number, row))
    subjects: list[str] = []
    seen: dict[tuple[int, str], int] = {}
    parsed = []
    for number, row in rows:
        subject = (row.get("subject") or "").strip()
        if not subject:
            raise TracksError(f"{path}, line {number}, column 'subject': empty; name the animal "
                              "(the same name on every row of its track).")
        try:
            frame = int(float(row["frame"]))
        except (TypeError, ValueError):
            raise TracksError(f"{path}, line {number}, column 'frame': expected a 0-based frame "
                              f"index, found {row.get('frame')!r}.") from None
        if frame < 0:
            raise TracksError(f"{path}, line {number}, column 'frame': {frame} is negative; "
                              "frames are 0-based.")
        if (frame, subject) in seen:
            raise TracksError(f"{path}, line {number}: frame {frame} of subject {subject!r} "
                              f"already given on line {seen[frame, subject]}; keep one row per "
                              "frame and subject.")
        seen[frame, subject] = number
        if subject not in subjects:
            subjects.append(subject)
        values = {c: _number(path, number, c, row.get(c)) for c in CSV_COLUMNS[2:]}
        parsed.append((frame, subject, values))
    n_frames = max((f for f, _, _ in parsed), default=-1) + 1
    stated = meta.get("n_frames")
    if isinstance(stated, int) and stated >= n_frames:
        n_frames = stated
    elif stated is not None:
        raise TracksError(f"{path}: the metadata line states n_frames={stated!r} but rows go up "
                          f"to frame {n_frames - 1}; fix the metadata or the rows.")
    shape = (n_frames, len(subjects))
    centroids = np.full((*shape, 2), np.nan, dtype=np.float32)
    boxes = np.full((*shape, 4), np.nan, dtype=np.float32)
    heading = np.full(shape, np.nan, dtype=np.float32)
    confidence = np.full(shape, 1.0, dtype=np.float32)
    body_length = np.full(shape, np.nan, dtype=np.float32)
    for frame, subject, v in parsed:
        k = subjects.index(subject)
        centroids[frame, k] = v["x"], v["y"]
        if np.isfinite(v["w"]) and np.isfinite(v["h"]):
            boxes[frame, k] = (v["x"] - v["w"] / 2, v["y"] - v["h"] / 2,
                               v["x"] + v["w"] / 2, v["y"] + v["h"] / 2)
        heading[frame, k] = math.radians(v["angle"]) if np.isfinite(v["angle"]) else np.nan
        if np.isfinite(v["confidence"]):
            confidence[frame, k] = v["confidence"]
        body_length[frame, k] = v["body_length"] if np.isfinite(v["body_length"]) else \
            max(v["w"], v["h"]) if np.isfinite(v["w"]) and np.isfinite(v["h"]) else np.nan
    size = None
    if isinstance(meta.get("width"), int) and isinstance(meta.get("height"), int):
        size = (int(meta["height"]), int(meta["width"]))
    heading = (heading + np.pi) % (2 * np.pi) - np.pi
    return Tracks(
        centroids=centroids, subjects=subjects, heading=heading, confidence=confidence,
        boxes=boxes if np.isfinite(boxes).any() else None,
        body_length=body_length if np.isfinite(body_length).any() else None,
        source=str(path), format="csv", frame_size=size,
        n_frames_known=isinstance(stated, int), fps=meta.get("fps"))


def _cell(value: float, digits: int) -> str:
    return "" if not np.isfinite(value) else f"{value:.{digits}f}"


def write_tracks_csv(tracks: Tracks, path: str | os.PathLike[str], *,
                     video: str | None = None) -> Path:
    """Write tracks as the plain CSV (one row per present frame and subject).

    Columns ``frame,subject,x,y,w,h,angle,confidence,body_length``: 0-based frame, subject name,
    centroid in pixels, box width and height (a box centred on the centroid; empty without
    boxes), heading in degrees (``atan2(dy, dx)`` in image coordinates, y down), confidence and
    body length in pixels. A first comment line (``# prism-science tracks {json}``) records the
    video, frame count, frame size and fps so that :func:`read_tracks` can check them; spreadsheet
    tools and ``pandas.read_csv(path, comment="#")`` skip it. The file is written to a temporary
    name and renamed, so an interrupted write never leaves half a file.

    Parameters
    ----------
    tracks : Tracks
    path : str or PathLike
    video : str, optional
        The video the tracks belong to (recorded in the metadata line).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    meta = {"video": video or tracks.source, "n_frames": tracks.n_frames,
            "subjects": tracks.subjects}
    if tracks.frame_size is not None:
        meta["height"], meta["width"] = (int(v) for v in tracks.frame_size)
    if tracks.fps:
        meta["fps"] = float(tracks.fps)
    present = tracks.present
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        fh.write(_CSV_MAGIC + json.dumps(meta) + "\n")
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for t, k in zip(*np.nonzero(present), strict=True):
            x, y = tracks.centroids[t, k]
            w = h = math.nan
            if tracks.boxes is not None:
                x0, y0, x1, y1 = tracks.boxes[t, k]
                w, h = x1 - x0, y1 - y0
            heading = tracks.heading[t, k]
            length = tracks.body_length[t, k] if tracks.body_length is not None else math.nan
            writer.writerow([int(t), tracks.subjects[k], f"{x:.2f}", f"{y:.2f}", _cell(w, 1),
                             _cell(h, 1), _cell(math.degrees(heading), 1),
                             _cell(tracks.confidence[t, k], 3), _cell(length, 1)])
    os.replace(tmp, path)
    return path


# ------------------------------------------------------------------------------- KABR CVAT XML
def _xml_number(path: Path, where: str, elem: ET.Element, name: str) -> float:
    value = elem.get(name)
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TracksError(f"{path}: {where} attribute {name!r}: expected a number, found "
                          f"{value!r}.") from None


def _read_cvat(path: Path) -> Tracks:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise TracksError(f"{path}: not valid XML ({exc}); expected CVAT for video 1.1 "
                          "<annotations><track id=...><box frame=... xtl=.../>.") from exc
    tracks = root.findall("track")
    if not tracks:
        raise TracksError(f"{path}: no <track> elements; expected CVAT for video 1.1 tracks "
                          "(<annotations><track id=...><box .../> or <points .../>).")
    per_subject: dict[str, dict[int, tuple[float, float, float, float]]] = {}
    for number, track in enumerate(tracks):
        subject = str(track.get("id", number))
        frames = per_subject.setdefault(subject, {})
        for elem in track:
            if elem.tag not in ("box", "points"):
                continue
            where = f"track {subject} <{elem.tag}> #{len(frames)}"
            frame = int(_xml_number(path, where, elem, "frame"))
            if elem.get("outside") == "1":
                continue
            if elem.tag == "box":
                frames[frame] = tuple(_xml_number(path, f"{where} frame {frame}", elem, k)
                                      for k in ("xtl", "ytl", "xbr", "ybr"))  # type: ignore
            else:
                try:
                    pts = np.array([[float(c) for c in p.split(",")]
                                    for p in (elem.get("points") or "").split(";") if p])
                    x, y = pts[:, 0].mean(), pts[:, 1].mean()
                except (ValueError, IndexError):
                    raise TracksError(f"{path}: {where} frame {frame} attribute 'points': "
                                      "expected 'x,y;x,y;...', found "
                                      f"{elem.get('points')!r}.") from None
                frames[frame] = (x, y, x, y)
    subjects = list(per_subject)
    last = max((f for frames in per_subject.values() for f in frames), default=-1)
    size = root.findtext("meta/task/size") or root.findtext("meta/job/size")
    stated = int(size) if size and size.strip().isdigit() else None
    n_frames = max(last + 1, stated or 0)
    boxes = np.full((n_frames, len(subjects), 4), np.nan, dtype=np.float32)
    for k, subject in enumerate(subjects):
        for frame, box in per_subject[subject].items():
            boxes[frame, k] = box
    width = root.findtext("meta/task/original_size/width") or \
        root.findtext("meta/original_size/width")
    height = root.findtext("meta/task/original_size/height") or \
        root.findtext("meta/original_size/height")
    frame_size = (int(height), int(width)) if width and height else None
    point_only = np.isclose(boxes[..., 0], boxes[..., 2]) & np.isclose(boxes[..., 1], boxes[..., 3])
    tracks_out = from_boxes(boxes, subjects, source=str(path), format="kabr-cvat",
                            frame_size=frame_size, n_frames_known=stated is not None and
                            stated >= last + 1)
    if point_only[np.isfinite(boxes[..., 0])].all():
        tracks_out.boxes = None
        tracks_out.body_length = None
    return tracks_out


# ------------------------------------------------------------------------------ ChimpACT COCO
CHIMPACT_KEYFRAME_STEP = 10
"""Frames between two annotated ChimpACT keyframes (a raw file_name ordinal k is frame 10 * k)."""


def chimpact_is_raw(data: dict) -> bool:
    """Whether a ChimpACT JSON is a raw per-clip file (no ``videos[]``, images without
    ``video_id`` / ``frame_id``) rather than the processed COCO-VID one."""
    return "videos" not in data and not any(
        isinstance(im, dict) and ("video_id" in im or "frame_id" in im) for im in data["images"])


def chimpact_frame(image: dict, raw: bool) -> int | None:
    """The video frame of a ChimpACT ``images[]`` entry, None when it names none.

    Raw per-clip files: ``file_name`` ends in the keyframe ordinal k and the frame is ``10 * k``
    (the official ``tools/create_coco_format.py``). Processed files: the number ending
    ``file_name`` is the frame (extracted by ffmpeg from 0); ``frame_id`` is only a running count
    of the images written, used when the name holds no number.
    """
    m = re.search(r"(\d+)(?=\.\w+$)|(\d+)$", str(image.get("file_name", "")))
    number = int(m.group(1) or m.group(2)) if m else None
    if raw:
        return None if number is None else CHIMPACT_KEYFRAME_STEP * number
    if number is not None:
        return number
    return int(image["frame_id"]) if image.get("frame_id") is not None else None


def _frame_of(path: Path, image: dict, raw: bool) -> int:
    frame = chimpact_frame(image, raw)
    if frame is None:
        expected = ("the keyframe ordinal (e.g. 000002.jpg = frame 20)" if raw
                    else "the frame index (e.g. clip/000010.jpg)")
        raise TracksError(
            f"{path}, images id {image.get('id')!r}, field 'file_name': expected a name ending "
            f"in {expected}, found {str(image.get('file_name', ''))!r}.")
    return frame


def _load_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TracksError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); expected a "
                          f"{what} file.") from exc


def _read_chimpact(path: Path, video: str | None) -> tuple[Tracks, int]:
    data = _load_json(path, "ChimpACT COCO")
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise TracksError(f"{path}: expected COCO keys 'images' and 'annotations', found "
                          f"{list(data)[:8] if isinstance(data, dict) else type(data).__name__}.")
    videos = {v["id"]: v for v in data.get("videos", []) if isinstance(v, dict) and "id" in v}
    chosen = None
    if videos:
        if video is None and len(videos) > 1:
            raise TracksError(f"{path} holds {len(videos)} videos "
                              f"({', '.join(str(v.get('name', k)) for k, v in videos.items())}); "
                              "pass video= (--video) with the name of the one to read.")
        if video is None:
            chosen = next(iter(videos))
        else:
            for key, meta in videos.items():
                name = str(meta.get("name", ""))
                if video in (str(key), name, Path(name).stem, Path(name).name):
                    chosen = key
            if chosen is None:
                raise TracksError(f"{path}: no video named {video!r}; its videos are "
                                  f"{', '.join(str(v.get('name', k)) for k, v in videos.items())}.")
    images: dict[Any, tuple[int, dict]] = {}
    raw = chimpact_is_raw(data)
    for image in data["images"]:
        if chosen is None or image.get("video_id") == chosen:
            images[image.get("id")] = (_frame_of(path, image, raw), image)
    per_subject: dict[str, dict[int, tuple[float, ...]]] = {}
    kp_per_subject: dict[str, dict[int, np.ndarray]] = {}
    for i, ann in enumerate(data["annotations"]):
        if ann.get("image_id") not in images:
            if chosen is None:
                raise TracksError(f"{path}, annotations[{i}], field 'image_id': "
                                  f"{ann.get('image_id')!r} is not the id of any image.")
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise TracksError(f"{path}, annotations[{i}], field 'bbox': expected [x, y, w, h], "
                              f"found {bbox!r}.")
        frame = images[ann["image_id"]][0]
        subject = str(ann.get("bbox_id", ann.get("instance_id", ann.get("track_id", i))))
        x, y, w, h = (float(v) for v in bbox)
        per_subject.setdefault(subject, {})[frame] = (x, y, x + w, y + h)
        kps = ann.get("keypoints")
        if isinstance(kps, list) and kps and len(kps) % 3 == 0:
            arr = np.asarray(kps, dtype=np.float32).reshape(-1, 3)
            arr[arr[:, 2] <= 0, :2] = np.nan  # COCO visibility 0: not labeled
            kp_per_subject.setdefault(subject, {})[frame] = arr[:, :2]
    if not per_subject:
        raise TracksError(f"{path}: no box annotations" +
                          (f" for video {video!r}" if video else "") + ".")
    subjects = sorted(per_subject, key=lambda s: (len(s), s))
    frames = [f for s in per_subject.values() for f in s]
    meta = videos.get(chosen, {}) if chosen is not None else {}
    stated = int(meta["frames"]) if meta.get("frames") else None
    n_frames = max(max(frames) + 1, stated or 0)
    boxes = np.full((n_frames, len(subjects), 4), np.nan, dtype=np.float32)
    for k, s in enumerate(subjects):
        for f, b in per_subject[s].items():
            boxes[f, k] = b
    first_image = next(iter(images.values()))[1] if images else {}
    width = meta.get("width") or first_image.get("width")
    height = meta.get("height") or first_image.get("height")
    tracks = from_boxes(boxes, subjects, source=str(path), format="chimpact",
                        frame_size=(int(height), int(width)) if width and height else None,
                        n_frames_known=stated is not None, fps=meta.get("fps"))
    n_kp = {a.shape[0] for d in kp_per_subject.values() for a in d.values()}
    if len(n_kp) == 1:
        (k_count,) = n_kp
        keypoints = np.full((n_frames, len(subjects), k_count, 2), np.nan, dtype=np.float32)
        for k, s in enumerate(subjects):
            for f, a in kp_per_subject.get(s, {}).items():
                keypoints[f, k] = a
        categories = data.get("categories") or [{}]
        names = list(categories[0].get("keypoints") or [f"kp{j}" for j in range(k_count)])
        if len(names) == k_count:
            tracks.keypoints, tracks.keypoint_names = keypoints, names
    # raw per-clip files hold only the keyframes (every 10th frame); COCO-VID has every frame
    return tracks, DEFAULT_MAX_GAP if videos else _CHIMPACT_KEYFRAME_GAP


# ----------------------------------------------------------------------------------- CalMS21
def _read_calms21(path: Path, video: str | None,
                  heading_keypoints: tuple[str, str] | None) -> Tracks:
    data = _load_json(path, "CalMS21 JSON")
    sequences: dict[str, dict] = {}
    if isinstance(data, dict):
        for group in data.values():
            if isinstance(group, dict):
                for seq_id, seq in group.items():
                    if isinstance(seq, dict) and "keypoints" in seq:
                        sequences.setdefault(str(seq_id), seq)
    if not sequences:
        raise TracksError(f"{path}: no sequences with 'keypoints'; expected CalMS21 JSON "
                          "{group: {sequence id: {keypoints: [T][2][2][7], scores: ...}}}.")
    if video is None:
        if len(sequences) > 1:
            names = list(sequences)
            raise TracksError(f"{path} holds {len(sequences)} sequences ({', '.join(names[:5])}"
                              f"{' ...' if len(names) > 5 else ''}); pass video= (--video) with "
                              "the sequence to read.")
        seq_id = next(iter(sequences))
    else:
        matches = [s for s in sequences if video in (s, s.rsplit("/", 1)[-1])]
        if not matches:
            raise TracksError(f"{path}: no sequence {video!r}; its sequences are "
                              f"{', '.join(list(sequences)[:8])}.")
        seq_id = matches[0]
    seq = sequences[seq_id]
    try:
        kp = np.asarray(seq["keypoints"], dtype=np.float32)  # (T, mice, xy, keypoints)
    except ValueError as exc:
        raise TracksError(f"{path}, sequence {seq_id!r}, field 'keypoints': ragged or "
                          f"non-numeric ({exc}); expected [T][2][2][7].") from exc
    if kp.ndim != 4 or kp.shape[2] != 2:
        raise TracksError(f"{path}, sequence {seq_id!r}, field 'keypoints': expected shape "
                          f"[T][mice][2][keypoints], found {list(kp.shape)}.")
    keypoints = np.transpose(kp, (0, 1, 3, 2))  # (T, mice, keypoints, xy)
    scores = seq.get("scores")
    scores = None if scores is None else np.asarray(scores, dtype=np.float32)
    n_mice, n_kp = keypoints.shape[1], keypoints.shape[2]
    subjects = list(CALMS21_SUBJECTS[:n_mice]) + [f"mouse{i}" for i in range(2, n_mice)]
    names = list(CALMS21_KEYPOINTS) if n_kp == len(CALMS21_KEYPOINTS) else \
        [f"kp{j}" for j in range(n_kp)]
    return from_keypoints(keypoints, subjects, names, scores, heading_keypoints=heading_keypoints,
                          source=f"{path}#{seq_id}", format="calms21", n_frames_known=True,
                          fps=30.0)


# ---------------------------------------------------------------------------------- FlyTracker
def _mat_strings(value: Any) -> list[str]:
    out = []
    for item in np.asarray(value, dtype=object).ravel(order="F"):
        while isinstance(item, np.ndarray) and item.dtype == object and item.size == 1:
            item = item.ravel()[0]
        out.append(str(item.ravel()[0]) if isinstance(item, np.ndarray) and item.size else
                   str(item))
    return out


def _load_flytracker(path: Path) -> tuple[list[str], np.ndarray]:
    """``trk.names`` and ``trk.data`` (flies, frames, fields) of a v5 or v7.3 -track.mat."""
    import h5py

    if h5py.is_hdf5(str(path)):
        with h5py.File(path, "r") as f:
            if "trk" not in f:
                raise TracksError(f"{path}: no variable 'trk'; expected a FlyTracker -track.mat.")
            trk = f["trk"]
            # v7.3 stores MATLAB's column-major arrays transposed: (fields, frames, flies)
            data = np.asarray(trk["data"], dtype=np.float64).transpose()
            names = []
            for ref in np.asarray(trk["names"]).ravel():
                chars = np.asarray(f[ref]).ravel()
                names.append("".join(chr(c) for c in chars))
        return names, data
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), squeeze_me=False, struct_as_record=True)
    except Exception as exc:  # scipy raises several types on corrupt files
        raise TracksError(f"{path}: cannot read as a MATLAB .mat file ({exc}); expected a "
                          "FlyTracker -track.mat.") from exc
    if "trk" not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise TracksError(f"{path}: no variable 'trk' (found {found}); expected a FlyTracker "
                          "-track.mat.")
    trk = mat["trk"]
    if not trk.dtype.names or "data" not in trk.dtype.names or "names" not in trk.dtype.names:
        raise TracksError(f"{path}: 'trk' has no fields 'names' and 'data'; expected a "
                          "FlyTracker -track.mat.")
    data = np.asarray(trk["data"][0, 0], dtype=np.float64)
    if data.ndim == 2:  # MATLAB drops a trailing singleton dimension
        data = data[:, :, None]
    return _mat_strings(trk["names"][0, 0]), data


def _read_flytracker(path: Path) -> Tracks:
    names, data = _load_flytracker(path)
    if data.ndim != 3 or data.shape[2] != len(names):
        raise TracksError(f"{path}: trk.data has shape {data.shape} but trk.names has "
                          f"{len(names)} fields; expected data [flies x frames x fields].")
    missing = [n for n in ("pos x", "pos y", "ori") if n not in names]
    if missing:
        raise TracksError(f"{path}: trk.names lacks {missing} (found {names[:6]}...); expected "
                          "FlyTracker fields 'pos x', 'pos y', 'ori'.")
    field_of = {n: names.index(n) for n in names}
    data = np.transpose(data, (1, 0, 2))  # (frames, flies, fields)
    # MATLAB pixels are 1-based; FlyTracker's 'ori' is regionprops' orientation (counter-
    # clockwise on screen, y up), so the head direction in image coordinates is -ori.
    centroids = data[..., [field_of["pos x"], field_of["pos y"]]] - 1.0
    heading = -data[..., field_of["ori"]]
    body_length = data[..., field_of["major axis len"]] if "major axis len" in field_of else None
    subjects = [f"fly{k + 1}" for k in range(data.shape[1])]
    return Tracks(centroids=centroids, subjects=subjects,
                  heading=(heading + np.pi) % (2 * np.pi) - np.pi, body_length=body_length,
                  source=str(path), format="flytracker", n_frames_known=True)
