"""Labels in the feature store, next to the features: ``labels/<name>`` JSON documents per video.

``name`` is free ("manual", "predicted/linear", "curated"); the document is
:meth:`LabelTable.to_dict`. The store is a :class:`prism_science.store.FeatureStore` (or any
object with ``write_json(video_id, key, obj)`` / ``read_json(video_id, key)``); when it records
the video (``video_info``), the video's frame count and real timestamps are used: the labels'
seconds are recomputed from them and labels longer than the video are refused.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace
from typing import Any

from prism_science.errors import LabelError, PrismError
from prism_science.labels.table import LabelTable, check_fps

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")


def labels_key(name: str) -> str:
    """The store key of a label set: ``labels/<name>`` (name: letters, digits, ``_.-``, ``/``)."""
    if not isinstance(name, str) or not _NAME.match(name) or any(
            part in (".", "..") for part in name.split("/")):
        raise LabelError(
            f"label set name {name!r} is not allowed; expected letters, digits, '_', '.', '-' "
            "and '/' between parts (e.g. 'manual', 'predicted/linear')."
        )
    return f"labels/{name}"


def _video_info(store: Any, video_id: str) -> Any | None:
    has_video = getattr(store, "has_video", None)
    if has_video is None or not has_video(video_id):
        return None
    return store.video_info(video_id)


def align_to_video(table: LabelTable, info: Any, where: str) -> LabelTable:
    """``table`` with the stored video's n_frames / timestamps, seconds recomputed.

    Raises LabelError when the table's frame count differs from the video's or a bout ends
    beyond it.
    """
    n_frames = int(info.n_frames)
    if table.n_frames is not None and table.n_frames != n_frames:
        raise LabelError(
            f"{where}: the labels are for a video of {table.n_frames} frames but the stored "
            f"video {info.video_id!r} has {n_frames}; expected the same length. Check that the "
            "labels belong to this video.")
    fps = check_fps(table.fps, float(info.fps) or None, where)
    timestamps = info.timestamps if len(info.timestamps) == n_frames else None
    out = replace(table, n_frames=n_frames).with_timing(fps=fps, timestamps=timestamps,
                                                        n_frames=n_frames)
    if not table.segments or table.n_frames is not None:
        return out.validate()
    # Formats that label "up to the last bout" when the length was unknown: extend to the video.
    last = table.last_frame()
    if len(table.segments) == 1 and table.segments[0].start_frame == 0 \
            and table.segments[0].end_frame == last and last < n_frames - 1:
        out = out.mark_fully_labeled()
    return out.validate()


def save_labels(store: Any, video_id: str, table: LabelTable, name: str = "manual") -> str:
    """Write ``table`` as the label set ``name`` of ``video_id``; returns the store key.

    Parameters
    ----------
    store : FeatureStore
        Opened writable; the video must be recorded in it (feature extraction records it).
    video_id : str
    table : LabelTable
        Validated first; aligned to the stored video's frame count and timestamps.
    name : str
        Label set name ("manual", "curated", "predicted/<probe>", ...).

    Raises
    ------
    LabelError
        Bad rows, a length that differs from the stored video's, or frames beyond it.
    """
    key = labels_key(name)
    where = f"{getattr(store, 'path', 'store')}: video {video_id!r}"
    info = _video_info(store, video_id)
    table = align_to_video(table, info, where) if info is not None else table.validate()
    doc = table.to_dict()
    doc["video_id"] = video_id
    try:
        store.write_json(video_id, key, doc)
    except PrismError as exc:
        raise LabelError(f"{where}: cannot write {key!r}: {exc}. Record the video first "
                         "(prism-science extract) or check the store.") from exc
    logger.info("saved %d intervals of video %s as %s", len(table.intervals), video_id, key)
    return key


def load_labels(store: Any, video_id: str, name: str = "manual") -> LabelTable:
    """Read the label set ``name`` of ``video_id`` (LabelError when it is absent or malformed)."""
    key = labels_key(name)
    where = f"{getattr(store, 'path', 'store')}: video {video_id!r}"
    try:
        doc = store.read_json(video_id, key)
    except (KeyError, FileNotFoundError, PrismError) as exc:
        known = list_labels(store, video_id)
        raise LabelError(
            f"{where} has no label set {key!r} (has: {known or 'none'}); import labels first "
            "(prism-science labels import FILE --store STORE).") from exc
    return LabelTable.from_dict(doc, origin=f"{where}, {key}")


def match_video_id(label_video_id: str, store_video_ids: list[str]) -> str | None:
    """The store's id of the video a label file calls ``label_video_id``, or None.

    Label files name videos by stem (``fly_01``) while the store keeps the file name and its
    folders (``fly_01.mp4``, ``day2__fly_01.mp4``): an exact match wins, else the one stored id
    whose name without extension (with or without its folders) is ``label_video_id``.

    Raises
    ------
    LabelError
        When several stored videos match (the message lists them).
    """
    if label_video_id in store_video_ids:
        return label_video_id
    names = {label_video_id, label_video_id.rsplit(".", 1)[0]}
    matches = []
    for vid in store_video_ids:
        base = vid.rsplit(".", 1)[0]
        if names & {base, base.split("__")[-1]}:
            matches.append(vid)
    if len(matches) > 1:
        raise LabelError(
            f"labels of video {label_video_id!r} match several stored videos {matches}; pass "
            "the stored id with --video-id.")
    return matches[0] if matches else None


def list_labels(store: Any, video_id: str) -> list[str]:
    """Names of the label sets of ``video_id`` (e.g. ``["manual", "predicted/linear"]``)."""
    list_items = getattr(store, "list_items", None)
    if list_items is None:
        return []
    try:
        out, todo = [], [""]
        while todo:
            prefix = todo.pop()
            base = "labels" + (f"/{prefix}" if prefix else "")
            for child in list_items(video_id, base):
                name = f"{prefix}/{child}" if prefix else child
                if list_items(video_id, f"labels/{name}"):
                    todo.append(name)
                else:
                    out.append(name)
        return sorted(out)
    except PrismError:
        return []
