"""Glue between napari layers and prism-science: which layer is a video, and its session.

A video opened by the plugin is an Image layer over a :class:`LazyVideo` whose ``metadata`` holds
its :class:`~prism_science.session.LabelingSession` (``"prism_session"``) and, when the video
comes from a feature store, the store path and video id. Widgets find the session of the
selected (or first) such layer with :func:`current`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prism_science.session import LabelingSession, default_session_path, set_aside_in_store
from prism_science.video import VIDEO_EXTENSIONS

from ._lazy_video import LazyVideo

if TYPE_CHECKING:
    import napari

__all__ = [
    "SESSION_KEY",
    "VIDEO_EXTENSIONS",
    "current",
    "current_frame",
    "go_to_frame",
    "notify_error",
    "notify_warning",
    "open_session",
    "open_store_session",
    "prism_layers",
    "video_layer_data",
]

logger = logging.getLogger(__name__)

SESSION_KEY = "prism_session"
STORE_KEY = "prism_store"
VIDEO_ID_KEY = "prism_video_id"


def open_session(video: LazyVideo, path: str | os.PathLike[str] | None = None) -> LabelingSession:
    """The labeling session of a video: its autosaved file when there is one, else a new one.

    A session file that cannot be read (truncated, garbage, wrong types, another video's, a
    newer version) is renamed aside with a ``.damaged-<time>`` suffix, so nothing is
    overwritten, a notification names it, and a fresh session starts
    (:meth:`LabelingSession.open_or_new`).
    """
    info = video.info
    path = Path(path) if path is not None else default_session_path(info.path)
    session, notices = LabelingSession.open_or_new(
        path, n_frames=info.n_frames, fps=info.fps, timestamps=info.timestamps,
        video_path=info.path, annotator=os.environ.get("USER", ""))
    for notice in notices:
        notify_warning(notice)
    return session


def open_store_session(store_path: str | os.PathLike[str], video_id: str,
                       timestamps: Any = None) -> LabelingSession:
    """The session of a video of a feature store; damaged documents never stop it opening.

    A session document or label set of the video that does not read is moved aside in the
    store (``gui/session.damaged-<time>``, :func:`~prism_science.session._persist.
    set_aside_in_store`), a notification names it, and the session is built from what reads
    (the label sets, else empty).

    Raises
    ------
    prism_science.errors.StoreError
        The store or the video cannot be opened.
    """
    damaged: list[tuple[str, str]] = []
    session = LabelingSession.from_store(store_path, video_id, timestamps=timestamps,
                                         damaged=damaged)
    if damaged:
        moved = set_aside_in_store(store_path, video_id, [relpath for relpath, _ in damaged])
        for relpath, reason in damaged:
            kept = (f"kept in the store as {moved[relpath]}" if relpath in moved
                    else "left in place (the store cannot be written)")
            notify_warning(f"{Path(store_path).name}, video {video_id}: {relpath} is damaged "
                           f"({reason}); {kept}. The video opens with "
                           + ("its label sets." if relpath == "gui/session" else
                              "the labels that read."))
    return session


def video_layer_data(
    path: str | os.PathLike[str], *, session_path: str | os.PathLike[str] | None = None,
    metadata: dict[str, Any] | None = None,
) -> tuple[LazyVideo, dict[str, Any], str]:
    """A napari layer data tuple for a video, with its session in the metadata.

    Raises
    ------
    prism_science.errors.VideoError
        The video cannot be opened.
    """
    video = LazyVideo(path)
    session = open_session(video, session_path)
    metadata = dict(metadata or {})
    if session.features is not None and STORE_KEY not in metadata:
        metadata[STORE_KEY], metadata[VIDEO_ID_KEY] = str(session.features[0]), session.features[1]
    kwargs = {
        "name": video.path.name,
        "rgb": True,
        "contrast_limits": [0, 255],
        "multiscale": False,
        "metadata": {SESSION_KEY: session, **metadata},
    }
    return video, kwargs, "image"


def prism_layers(viewer: napari.Viewer) -> list[Any]:
    """Layers of the viewer that are prism-science videos, in layer order."""
    return [layer for layer in viewer.layers if SESSION_KEY in getattr(layer, "metadata", {})]


def current(viewer: napari.Viewer) -> tuple[Any, LabelingSession] | None:
    """(layer, session) of the selected prism video layer, else of the first one, else None."""
    layers = prism_layers(viewer)
    if not layers:
        return None
    active = viewer.layers.selection.active
    layer = active if active in layers else layers[0]
    return layer, layer.metadata[SESSION_KEY]


def current_frame(viewer: napari.Viewer) -> int:
    """The frame index shown (the first dimension's slider)."""
    return int(viewer.dims.current_step[0]) if viewer.dims.ndim else 0


def go_to_frame(viewer: napari.Viewer, frame: int) -> None:
    """Move the frame slider to ``frame``."""
    viewer.dims.set_current_step(0, int(frame))


def _show(level: str, message: str) -> None:
    try:
        from napari.utils import notifications

        getattr(notifications, f"show_{level}")(message)
    except Exception:  # noqa: BLE001 - outside a viewer the log has it already
        logger.debug("notification not shown: %s", message)


def notify_error(exc: BaseException, what: str = "") -> None:
    """Show an error in napari's notifications with the library's message (and log it)."""
    prefix = f"{what}: " if what else ""
    logger.warning("%s%s", prefix, exc)
    _show("error", f"{prefix}{exc}")


def notify_warning(message: str) -> None:
    """Show a warning in napari's notifications (and log it)."""
    logger.warning("%s", message)
    _show("warning", message)


def notify_info(message: str) -> None:
    """Show an information message in napari's notifications."""
    logger.info("%s", message)
    _show("info", message)
