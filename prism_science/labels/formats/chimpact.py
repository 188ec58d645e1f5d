"""ChimpACT COCO-style JSON: boxes of individual chimpanzees with per-box behavior ids.

(../shared/data/formats/chimpact/FORMAT.md.) Two layouts are read:

- the raw per-clip JSON (``labels/<clip>.json``): ``images[]`` whose ``file_name`` ends in the
  **keyframe ordinal** k (``.../000002.jpg``), the video frame being ``10 * k`` (the official
  ``tools/create_coco_format.py``: ``full_image_set_index[ordinal]``, frame ``frame_id // 10``);
  ``annotations[]`` with ``image_id``, ``bbox`` ``[x, y, w, h]`` px, ``bbox_id`` (the
  individual) and ``behaviors`` (0-based ids of 23 classes, multi-label);
- the processed COCO-VID JSON: ``videos[]`` (``id, name, fps, frames``), ``images[]`` with
  ``video_id``, ``file_name`` ``<clip>/<frame:06d>.jpg`` (the video frame, as extracted by
  ffmpeg from 0) and ``frame_id`` (a running count of the images written, which skips the
  blocks of 10 frames without a keyframe: the frame only when none is missing; used when the
  file name has no number), annotations with ``instance_id`` and ``iskeyframe`` (``true``/
  ``false`` or the official ``1``/``0``).

Only keyframes are annotated (every 10th frame; the processed files interpolate the rest, which
``keyframes_only`` skips). Each (box, behavior) becomes a one-frame interval with its box as
``(x0, y0, x1, y1)``; subject = the individual's id. The labeled frames are the annotated
keyframes of each individual, so the frames between keyframes stay unlabeled.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import ReadOptions, read_text
from prism_science.labels.table import (
    Interval,
    LabelTable,
    Segment,
    check_fps,
    frames_to_seconds,
)
from prism_science.tracks.readers import CHIMPACT_KEYFRAME_STEP as KEYFRAME_STEP
from prism_science.tracks.readers import chimpact_frame, chimpact_is_raw

# ChimpACT tools/vis_annot.py BEHAVE_ID_SET, 0-based.
CHIMPACT_BEHAVIORS = (
    "moving", "climbing", "resting", "sleeping", "solitary object playing", "eating",
    "manipulating object", "grooming", "being groomed", "aggressing", "embracing", "begging",
    "being begged", "taking object", "losing object", "carrying", "being carried", "nursing",
    "being nursed", "playing", "touching", "erection", "displaying",
)


def sniff(path: Path, head: str) -> bool:
    # COCO keys; a long image list can push "annotations" past the bytes looked at.
    return '"images"' in head and any(k in head for k in ('"annotations"', '"categories"',
                                                          '"videos"'))


def _frame_of(image: dict, path: Path, raw: bool) -> int:
    """The video frame of an ``images[]`` entry (see the module docstring)."""
    frame = chimpact_frame(image, raw)
    if frame is not None:
        return frame
    name = str(image.get("file_name", ""))
    if raw:
        raise LabelError(
            f"{path}, images id {image.get('id')!r}, field 'file_name': expected a name "
            f"ending in the keyframe ordinal (e.g. 000002.jpg = frame 20), found {name!r}.")
    raise LabelError(f"{path}, images id {image.get('id')!r}: neither 'file_name' ending in the "
                     f"frame index (e.g. clip/000010.jpg) nor 'frame_id', found {name!r}.")


def read(path: Path, options: ReadOptions, keyframes_only: bool = True) -> dict[str, LabelTable]:
    """Every video of a ChimpACT COCO-style JSON as ``{video_id: LabelTable}``."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); expected a "
                         "ChimpACT COCO-style JSON.") from exc
    if not isinstance(data, dict) or "annotations" not in data or "images" not in data:
        raise LabelError(f"{path}: expected COCO keys 'images' and 'annotations', found "
                         f"{list(data)[:8] if isinstance(data, dict) else type(data).__name__}.")
    videos = {v["id"]: v for v in data.get("videos", []) if isinstance(v, dict) and "id" in v}
    # Raw per-clip files have no videos[] and images without video_id / frame_id.
    raw = chimpact_is_raw(data)
    images = {}
    for image in data["images"]:
        images[image.get("id")] = (image.get("video_id"), _frame_of(image, path, raw))
    if raw and options.n_frames is not None and images:
        last = max(frame for _, frame in images.values())
        if last >= options.n_frames:
            raise LabelError(
                f"{path}: an image's 'file_name' ends in {last // KEYFRAME_STEP}, keyframe "
                f"ordinal -> frame {last}, beyond the clip's {options.n_frames} frames: the raw "
                f"ChimpACT file names count keyframes (frame = {KEYFRAME_STEP} x ordinal). If "
                "this file names frame indices, convert it to the processed COCO-VID layout "
                "(videos[] + images[].video_id) or check n_frames.")
    names = list(CHIMPACT_BEHAVIORS)
    by_video: dict[Any, list[Interval]] = defaultdict(list)
    keyframes: dict[Any, set[tuple[str, int]]] = defaultdict(set)
    for i, ann in enumerate(data["annotations"]):
        where = f"{path}, annotations[{i}]"
        keyframe = ann.get("iskeyframe")
        if keyframes_only and keyframe is not None and not bool(keyframe):  # false or 0
            continue
        if ann.get("image_id") not in images:
            raise LabelError(f"{where}, field 'image_id': {ann.get('image_id')!r} is not the id "
                             "of any image; expected an id from 'images'.")
        video_key, frame = images[ann["image_id"]]
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise LabelError(f"{where}, field 'bbox': expected [x, y, w, h], found {bbox!r}.")
        x, y, w, h = (float(v) for v in bbox)
        subject = str(ann.get("bbox_id", ann.get("instance_id", ann.get("track_id", i))))
        behaviors = ann.get("behaviors", [])
        if not isinstance(behaviors, list):
            raise LabelError(f"{where}, field 'behaviors': expected a list of behavior ids, "
                             f"found {behaviors!r}.")
        keyframes[video_key].add((subject, frame))
        for b in behaviors:
            if not isinstance(b, int) or not 0 <= b < len(names):
                raise LabelError(f"{where}, field 'behaviors': id {b!r} is outside 0..."
                                 f"{len(names) - 1} ({len(names)} ChimpACT behaviors).")
            by_video[video_key].append(Interval(
                names[b], frame, frame, subject=subject, annotator=options.annotator,
                source="manual", box=(x, y, x + w, y + h), origin=where))
    bset = BehaviorSet(tuple(names))
    if options.behaviors is not None:
        bset = options.behaviors.union(bset)
    tables = {}
    single = len(keyframes) <= 1
    for video_key in keyframes:
        meta = videos.get(video_key, {})
        video_id = options.video_id if (options.video_id and single) else (
            Path(str(meta["name"])).stem if meta.get("name") else path.stem)
        fps = check_fps(float(meta["fps"]) if meta.get("fps") else None, options.fps,
                        f"{path}, video {video_id!r}")
        n_frames = options.n_frames if single and options.n_frames is not None else (
            int(meta["frames"]) if meta.get("frames") else None)
        intervals = []
        for iv in by_video[video_key]:
            s, e = frames_to_seconds(iv.start_frame, iv.end_frame, fps, options.timestamps)
            intervals.append(Interval(iv.behavior, iv.start_frame, iv.end_frame, s, e,
                                      iv.subject, iv.annotator, iv.source, None, iv.box,
                                      iv.origin))
        segments = [Segment(f, f, s) for s, f in sorted(keyframes[video_key],
                                                        key=lambda t: (t[1], t[0]))]
        tables[video_id] = LabelTable(intervals, segments, video_id, n_frames, fps,
                                      options.timestamps, bset, str(path))
    return tables
