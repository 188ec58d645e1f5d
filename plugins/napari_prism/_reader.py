"""napari readers: video files (lazy, frame-exact), prism-science feature stores and tracks files.

A tracks file (SLEAP ``.slp`` / analysis ``.h5``, DeepLabCut ``.h5`` / ``.csv``, our tracks CSV)
dropped on the viewer becomes a points layer that the plugin takes over: it is checked against
the open video and drawn as its tracks (:mod:`napari_prism._tracks`).

A store opens one layer per video whose file can be found (its recorded source path, else its
path relative to the store's folder), each with its session read from the store: the labels
the GUI saved, or the ``labels/manual`` / ``labels/curated`` sets, and the predictions.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prism_science.errors import PrismError, StoreError
from prism_science.store import is_store

from ._context import (
    SESSION_KEY,
    STORE_KEY,
    VIDEO_EXTENSIONS,
    VIDEO_ID_KEY,
    notify_error,
    open_store_session,
    video_layer_data,
)
from ._lazy_video import LazyVideo

__all__ = ["get_reader", "is_store", "read_store", "read_tracks_file", "read_video"]

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict[str, Any], str]


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader hook: a reader for a video file or a feature store, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS:
        return read_video
    if is_store(p):
        return read_store
    if p.is_file() and p.suffix.lower() in TRACKS_SUFFIXES:
        from prism_science.errors import TracksError
        from prism_science.tracks import detect_tracks_format

        try:
            detect_tracks_format(p)
        except TracksError:
            return None  # another CSV or HDF5 file: napari's own readers may take it
        return read_tracks_file
    return None


TRACKS_SUFFIXES = (".slp", ".csv", ".h5", ".hdf5")
"""Tracks files the reader offers to open (the others: *open tracks...* in the Ethogram)."""


def read_tracks_file(path: str | list[str]) -> list[LayerData]:
    """A points layer of a tracks file's centroids; the plugin checks it against the open video.

    Raises
    ------
    prism_science.errors.TracksError
        The file cannot be read as tracks.
    """
    from prism_science.tracks import read_tracks

    from ._tracks import tracks_layer_data

    p = Path(path[0] if isinstance(path, list) else path)
    return [tracks_layer_data(read_tracks(p), p)]


def read_video(path: str | list[str]) -> list[LayerData]:
    """One Image layer over the video (lazy frames) with its labeling session."""
    paths = path if isinstance(path, list) else [path]
    return [video_layer_data(p) for p in paths]


def _find_video(store_path: Path, source_path: str, relative_path: str) -> Path | None:
    for candidate in (source_path, store_path.parent / relative_path if relative_path else ""):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def read_store(path: str | list[str]) -> list[LayerData]:
    """One layer per video of a feature store whose file is found, with labels and predictions.

    Raises
    ------
    StoreError
        The store cannot be opened (another schema version, not a store) or none of its videos
        can be found on disk.
    """
    from prism_science.store import open_store

    store_path = Path(path[0] if isinstance(path, list) else path)
    with open_store(store_path, mode="r") as store:
        records = [store.video_info(v) for v in store.video_ids()]
    layers: list[LayerData] = []
    missing: list[str] = []
    for info in records:
        video_path = _find_video(store_path, info.source_path, info.relative_path)
        if video_path is None:
            missing.append(f"{info.video_id} ({info.source_path or info.relative_path})")
            continue
        try:
            video = LazyVideo(video_path)
            session = open_store_session(store_path, info.video_id, video.info.timestamps)
            session.features = (store_path, info.video_id)
        except PrismError as exc:
            notify_error(exc, f"video {info.video_id} of {store_path.name}")
            continue
        kwargs = {
            "name": info.video_id, "rgb": True, "contrast_limits": [0, 255], "multiscale": False,
            "metadata": {SESSION_KEY: session, STORE_KEY: str(store_path),
                         VIDEO_ID_KEY: info.video_id},
        }
        layers.append((video, kwargs, "image"))
    if missing:
        message = (f"{store_path}: video files not found for {', '.join(missing[:5])}"
                   f"{' ...' if len(missing) > 5 else ''}; move them back or re-extract")
        if not layers:
            raise StoreError(message)
        notify_error(StoreError(message))
    return layers
