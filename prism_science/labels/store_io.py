"""Labels in the feature store, next to the features: ``labels/<name>`` JSON documents per video.

``name`` is free ("manual", "predicted/linear", "curated"); the document is
:meth:`LabelTable.to_dict`. The store is a :class:`prism_science.store.FeatureStore` (or any
object with ``write_json(video_id, key, obj)`` / ``read_json(video_id, key)``); when it records
the video (``video_info``), the video's frame count and real timestamps are used: the labels'
seconds are recomputed from them and labels longer than the video are refused.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, replace
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


def _document(store: Any, video_id: str, table: LabelTable, name: str
              ) -> tuple[str, str, LabelTable, dict[str, Any]]:
    """(key, where, aligned table, document) of ``table`` saved as ``name`` of ``video_id``."""
    key = labels_key(name)
    where = f"{getattr(store, 'path', 'store')}: video {video_id!r}"
    info = _video_info(store, video_id)
    table = align_to_video(table, info, where) if info is not None else table.validate()
    doc = table.to_dict()
    doc["video_id"] = video_id
    return key, where, table, doc


def save_labels(store: Any, video_id: str, table: LabelTable, name: str = "manual") -> str:
    """Write ``table`` as the label set ``name`` of ``video_id``; returns the store key.

    An existing set of that name is replaced as is (the GUI session saves this way); imports
    go through :func:`import_labels`, which never replaces labels without saying so.

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
    key, where, table, doc = _document(store, video_id, table, name)
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


BACKUP_MARK = ".backup-"
"""Backups of a label set ``name`` are the sets ``name.backup-1``, ``name.backup-2``, ..."""
DAMAGED_MARK = ".damaged-"
"""A label set ``name`` that does not read is kept as ``name.damaged-1`` (``-2``, ...)."""


def set_aside_unreadable(store: Any, video_id: str, key: str) -> str | None:
    """Move a label set that does not read (a write killed midway, or damage) out of the way.

    Its stored bytes are copied as they are to ``<key>.damaged-<n>`` (an array item with the
    attribute ``damaged_copy_of``) and the item is deleted, so that the next write of ``key``
    starts clean and nothing that was there is lost.

    Parameters
    ----------
    store : FeatureStore
        Opened writable.
    video_id, key : str
        The video and the store key (``labels/<name>``).

    Returns
    -------
    str or None
        The key the bytes were copied to, or None when even they do not read (the item is then
        deleted all the same: there was nothing left to keep).
    """
    n = 1
    while store.has_item(video_id, f"{key}{DAMAGED_MARK}{n}"):
        n += 1
    aside: str | None = f"{key}{DAMAGED_MARK}{n}"
    try:
        raw = store.read_array(video_id, key)
        store.write_array(video_id, aside, raw, {"damaged_copy_of": key})
    except (PrismError, ValueError, OSError) as exc:
        logger.warning("video %s: %r does not read at all (%s); removed", video_id, key, exc)
        aside = None
    store.delete_item(video_id, key)
    return aside


@dataclass(frozen=True)
class ImportOutcome:
    """What :func:`import_labels` did (or would do) to one video's label set.

    Attributes
    ----------
    video_id, key : str
        The video and the store key of the label set (``labels/<name>``).
    action : str
        ``"new"`` (no such set before), ``"unchanged"`` (the same labels were there),
        ``"replace"`` (another set is there; refused without ``replace=True``) or
        ``"replaced"`` (done, the old set kept as ``backup``).
    old_bouts, new_bouts : int
        Bouts in the existing set (0 when none) and in the imported one.
    backup : str or None
        Name of the label set the old labels were copied to (``manual.backup-1``).
    """

    video_id: str
    key: str
    action: str
    old_bouts: int
    new_bouts: int
    backup: str | None = None


def backup_labels(store: Any, video_id: str, name: str = "manual") -> str:
    """Copy the label set ``name`` of ``video_id`` to ``name.backup-<n>`` (the next free n).

    Returns
    -------
    str
        The backup's label set name (load it with ``load_labels(store, video_id, name)``).

    Raises
    ------
    LabelError
        No set ``name``, or it does not read.
    """
    key = labels_key(name)
    try:
        doc = store.read_json(video_id, key)
    except (KeyError, FileNotFoundError, PrismError) as exc:
        raise LabelError(f"{getattr(store, 'path', 'store')}: video {video_id!r} has no label "
                         f"set {key!r} to back up ({exc})") from exc
    existing = set(list_labels(store, video_id))
    n = 1
    while f"{name}{BACKUP_MARK}{n}" in existing:
        backup_key = labels_key(f"{name}{BACKUP_MARK}{n}")
        try:
            if store.read_json(video_id, backup_key) == doc:
                return f"{name}{BACKUP_MARK}{n}"  # kept already (a rerun after a crash)
        except (PrismError, ValueError):
            # a backup whose write was interrupted: set aside, and this slot reused
            set_aside_unreadable(store, video_id, backup_key)
            break
        n += 1
    backup = f"{name}{BACKUP_MARK}{n}"
    store.write_json(video_id, labels_key(backup), doc)
    logger.info("kept labels/%s of video %s as labels/%s", name, video_id, backup)
    return backup


def import_labels(store: Any, video_id: str, table: LabelTable, name: str = "manual", *,
                  replace: bool = False, dry_run: bool = False) -> ImportOutcome:
    """Save imported labels, never replacing existing ones without saying so.

    A video without the label set ``name`` gets it (``"new"``); one holding the very same
    labels is left as it is (``"unchanged"``); one holding other labels keeps them unless
    ``replace`` (``"replace"``: nothing written), in which case they are first copied to
    ``name.backup-<n>`` (:func:`backup_labels`) and then replaced (``"replaced"``). An
    existing set that does not read (its write was killed midway) holds no labels to protect:
    its bytes are kept as ``name.damaged-<n>`` (:func:`set_aside_unreadable`) and the import
    counts as ``"new"``, so a rerun after a crash completes.

    Parameters
    ----------
    store : FeatureStore
        Opened writable (readable is enough with ``dry_run``).
    video_id : str
    table : LabelTable
        Aligned to the stored video as by :func:`save_labels`.
    name : str
        Label set name.
    replace : bool
        Replace a different existing set (after backing it up).
    dry_run : bool
        Only say what would happen (check every video of a file before writing any).

    Returns
    -------
    ImportOutcome

    Raises
    ------
    LabelError
        As :func:`save_labels`.
    """
    key, where, table, doc = _document(store, video_id, table, name)
    new_bouts = len(table.intervals)
    old = None
    has_item = getattr(store, "has_item", None)
    if has_item is not None and _video_info(store, video_id) is not None \
            and has_item(video_id, key):
        try:
            old = store.read_json(video_id, key)
        except (PrismError, ValueError) as exc:
            if dry_run:  # the real import sets it aside (below); nothing is refused
                logger.warning("%s: the existing label set %r does not read (%s)", where, key,
                               exc)
            else:
                aside = set_aside_unreadable(store, video_id, key)
                logger.warning("%s: the existing label set %r does not read (%s; a write "
                               "interrupted by a crash, or damage); its bytes are kept as %r",
                               where, key, exc, aside)
    if old is None:
        action = "new"
    elif json.loads(json.dumps(doc, default=str)) == old:
        action = "unchanged"
    else:
        action = "replaced" if replace else "replace"
    old_bouts = len(old.get("intervals") or []) if isinstance(old, dict) else 0
    outcome = ImportOutcome(video_id, key, action, old_bouts, new_bouts)
    if dry_run or action in ("unchanged", "replace"):
        return outcome
    backup = backup_labels(store, video_id, name) if action == "replaced" else None
    try:
        store.write_json(video_id, key, doc)
    except PrismError as exc:
        raise LabelError(f"{where}: cannot write {key!r}: {exc}. Record the video first "
                         "(prism-science extract) or check the store.") from exc
    logger.info("imported %d intervals of video %s as %s (%s)", new_bouts, video_id, key,
                action)
    return ImportOutcome(video_id, key, action, old_bouts, new_bouts, backup)
