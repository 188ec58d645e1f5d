"""Animal tracks over the video: a points layer (and boxes) per video, the labeling target
highlighted, and the built-in tracker in a worker.

The tracks of the open video (:class:`prism_science.tracks.Tracks`, read by
:func:`prism_science.tracks.read_tracks`, checked against the video with
:meth:`~prism_science.tracks.Tracks.check_video`) are drawn as one napari Points layer of
``(frame, y, x)`` centroids, so napari's frame slider shows each frame's points; a Shapes layer of
``(frame, y, x)`` rectangles is added when the tracks have boxes. Each subject has its colour
(:func:`napari_prism._timeline.subject_color`, the colour of its group on the timeline); the
labeling target (the session's subject) is drawn larger with a white border, the others dimmed.

Where tracks come from: a file chosen with *open tracks...*, a tracks file dropped on the viewer
(the reader hands it over), the file ``VIDEO.tracks.csv`` beside the video (what ``prism-science
track VIDEO`` and *track it* write) or the CSV ``extract --subjects auto`` wrote beside the
video's store, which are loaded when the video opens. *track it* runs
:func:`prism_science.tracks.track_video` in a worker with progress and writes
``VIDEO.tracks.csv``.
"""

from __future__ import annotations

import logging
import queue
import threading
import weakref
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import PrismError, TracksError
from prism_science.tracks import Tracks

from ._context import notify_error, notify_info
from ._link import link
from ._tasks import Progress, TaskCancelled, TaskPanel
from ._timeline import subject_color

if TYPE_CHECKING:
    import napari

    from prism_science.session import LabelingSession

__all__ = [
    "TRACKS_KEY",
    "TracksView",
    "TracksWidget",
    "box_shapes",
    "default_tracks_file",
    "find_tracks_file",
    "points_data",
    "track_task",
    "tracks_layer_data",
    "tracks_view",
]

logger = logging.getLogger(__name__)

TRACKS_KEY = "prism_tracks"
"""Layer metadata key of the :class:`~prism_science.tracks.Tracks` a layer shows."""
TRACKS_PATH_KEY = "prism_tracks_path"
_DRAWN_KEY = "prism_tracks_drawn"  # the layer a TracksView draws (not one to take over)
MAX_BOXES = 20000
"""Boxes drawn as shapes at most (frames x subjects); beyond, the centroids alone."""
_DIMMED_ALPHA = 0.35
_VIEWS: weakref.WeakKeyDictionary[Any, TracksView] = weakref.WeakKeyDictionary()


def default_tracks_file(video: str | Path) -> Path:
    """``VIDEO.tracks.csv`` beside the video: where ``prism-science track`` and *track it*
    write the built-in tracker's tracks."""
    video = Path(video)
    return video.with_name(video.name + ".tracks.csv")


def find_tracks_file(session: LabelingSession) -> Path | None:
    """The tracks file of a session's video, if one was written: ``VIDEO.tracks.csv`` beside
    the video, else the CSV ``extract --subjects auto`` wrote beside the video's store."""
    candidates = []
    if session.video_path:
        candidates.append(default_tracks_file(session.video_path))
    if session.features is not None:
        from prism_science.extraction.subjects import default_tracks_path

        candidates.append(default_tracks_path(*session.features))
    return next((path for path in candidates if path.is_file()), None)


def points_data(tracks: Tracks) -> tuple[np.ndarray, np.ndarray]:
    """Centroids as napari points.

    Returns
    -------
    (np.ndarray, np.ndarray)
        (N, 3) float32 ``(frame, y, x)`` of every present (frame, subject), and (N,) int64 the
        subject index of each point.
    """
    frames, subjects = np.nonzero(tracks.present)
    xy = tracks.centroids[frames, subjects]
    data = np.column_stack([frames, xy[:, 1], xy[:, 0]]).astype(np.float32)
    return data, subjects.astype(np.int64)


def box_shapes(tracks: Tracks) -> tuple[list[np.ndarray], np.ndarray]:
    """Boxes as napari rectangles: a list of (4, 3) ``(frame, y, x)`` corners and (N,) the
    subject index of each; empty without boxes."""
    if tracks.boxes is None:
        return [], np.zeros(0, np.int64)
    finite = np.isfinite(tracks.boxes).all(axis=2)
    frames, subjects = np.nonzero(finite)
    shapes = []
    for t, s in zip(frames, subjects, strict=True):
        x0, y0, x1, y1 = (float(v) for v in tracks.boxes[t, s])
        shapes.append(np.array([[t, y0, x0], [t, y0, x1], [t, y1, x1], [t, y1, x0]],
                               np.float32))
    return shapes, subjects.astype(np.int64)


def _point_size(tracks: Tracks) -> float:
    """Marker size in pixels: a quarter of the median body length (the animal stays visible
    around it), else 1.5% of the frame; at least 4."""
    lengths = tracks.median_body_length() if tracks.body_length is not None else np.array([])
    lengths = lengths[np.isfinite(lengths)]
    if lengths.size:
        return float(max(4.0, 0.25 * np.median(lengths)))
    if tracks.frame_size is not None:
        return float(max(4.0, 0.015 * max(tracks.frame_size)))
    return 6.0


def _colours(subjects: np.ndarray, active: int | None) -> np.ndarray:
    """(N, 4) RGBA of points of ``subjects``: the subject's colour, dimmed unless active."""
    from napari.utils.colormaps.standardize_color import transform_color

    palette = np.array([transform_color(subject_color(i))[0]
                        for i in range(int(subjects.max(initial=-1)) + 1)] or
                       np.zeros((0, 4)), np.float32)
    rgba = palette[subjects] if len(subjects) else np.zeros((0, 4), np.float32)
    if active is not None:
        rgba[:, 3] = np.where(subjects == active, 1.0, _DIMMED_ALPHA)
    return rgba


def tracks_layer_data(tracks: Tracks, path: str | Path = "",
                      name: str | None = None) -> tuple[np.ndarray, dict[str, Any], str]:
    """A napari layer data tuple (points) of the tracks' centroids, the tracks in its metadata."""
    data, subjects = points_data(tracks)
    kwargs = {
        "name": name or f"tracks: {Path(path).name or tracks.source or 'tracks'}",
        "ndim": 3,
        "size": _point_size(tracks),
        "face_color": _colours(subjects, None),
        "border_color": "white",
        "border_width": 0.0,
        "properties": {"subject": np.array(tracks.subjects, dtype=object)[subjects]},
        "metadata": {TRACKS_KEY: tracks, TRACKS_PATH_KEY: str(path)},
    }
    return data, kwargs, "points"


def track_task(video: Path, n_animals: int, out: Path, *,
               cancel_event: threading.Event) -> Generator[Progress, None, Tracks]:
    """Worker: run the built-in tracker on ``video`` and write ``out`` (the plain tracks CSV).

    Yields ``(frames done, frames, message)`` after each chunk; returns the tracks read back
    from ``out`` (so what is shown is what the file holds).
    """
    from prism_science.tracks import read_tracks, track_video, write_tracks_csv

    reports: queue.Queue[tuple[int, int]] = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(done: int, total: int) -> None:
        if cancel_event.is_set():
            raise TaskCancelled()
        reports.put((done, total))

    def run() -> None:
        try:
            result = track_video(video, n_animals, progress=progress)
            write_tracks_csv(result.tracks, out, video=str(video))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the worker below
            outcome["error"] = exc

    yield 0, 1, f"tracking {n_animals} animal(s) in {video.name}: background"
    thread = threading.Thread(target=run, name="prism-track", daemon=True)
    thread.start()
    while thread.is_alive() or not reports.empty():
        try:
            done, total = reports.get(timeout=0.05)
        except queue.Empty:
            continue
        yield done, total, f"tracking {video.name}: frame {done} of {total}"
    thread.join()
    if cancel_event.is_set() or isinstance(outcome.get("error"), TaskCancelled):
        raise TaskCancelled()
    if "error" in outcome:
        raise outcome["error"]
    return read_tracks(out, video=str(video))


def tracks_view(viewer: napari.Viewer) -> TracksView:
    """The :class:`TracksView` of ``viewer`` (created on first use)."""
    view = _VIEWS.get(viewer)
    if view is None:
        view = TracksView(viewer)
        _VIEWS[viewer] = view
    return view


class TracksView:
    """The tracks of the current video, drawn over it (use :func:`tracks_view`)."""

    def __init__(self, viewer: napari.Viewer) -> None:
        self._viewer = weakref.ref(viewer)
        self.link = link(viewer)
        self.tracks: Tracks | None = None
        self.path: Path | None = None
        self.layer: Any = None
        self.boxes: Any = None
        self._session: Any = None
        self._styled: str | None = None
        self._listeners: list[Any] = []
        viewer.layers.events.inserted.connect(self._on_inserted)
        self.link.on_session_changed(self._follow)
        self._follow()

    @property
    def viewer(self) -> napari.Viewer:
        """The viewer the tracks are drawn in."""
        viewer = self._viewer()
        if viewer is None:
            raise RuntimeError("the napari viewer of these tracks was closed")
        return viewer

    def on_change(self, callback: Any) -> None:
        """Call ``callback()`` when tracks are loaded or dropped."""
        self._listeners.append(callback)

    # ------------------------------------------------------------------ following the video
    def _follow(self) -> None:
        session = self.link.session
        if session is self._session:
            return
        if self._session is not None:
            self._session.unsubscribe(self._on_edit)
        self._session = session
        self._drop_layers()
        self.tracks, self.path, self._styled = None, None, None
        self.link.set_track_subjects([])
        if session is not None:
            session.subscribe(self._on_edit)
            found = find_tracks_file(session)
            if found is not None:
                self.open(found)
        self._changed()

    def _changed(self) -> None:
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # noqa: BLE001 - a broken widget must not stop the others
                logger.exception("tracks listener %r failed", callback)

    def _drop_layers(self) -> None:
        for layer in (self.layer, self.boxes):
            if layer is not None and layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self.layer = self.boxes = None

    def _on_inserted(self, event: Any) -> None:
        """A tracks file dropped on the viewer (read by the plugin's reader): take it over."""
        layer = getattr(event, "value", None)
        metadata = getattr(layer, "metadata", {})
        tracks = metadata.get(TRACKS_KEY)
        if tracks is None or metadata.get(_DRAWN_KEY) or self.link.session is None:
            return  # not tracks, or the layer this view draws
        path = layer.metadata.get(TRACKS_PATH_KEY) or tracks.source

        def adopt() -> None:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
            self.set_tracks(tracks, Path(path) if path else None)

        QTimer.singleShot(0, adopt)  # not while napari is still inserting it

    # ------------------------------------------------------------------ loading
    def open(self, path: str | Path) -> Tracks | None:
        """Read a tracks file (any format of :func:`prism_science.tracks.read_tracks`) and draw
        it over the current video; a file of another video is refused with a notification."""
        from prism_science.tracks import read_tracks

        session = self.link.session
        if session is None:
            notify_error(TracksError("open a video before its tracks"), "tracks")
            return None
        try:
            tracks = read_tracks(path, video=session.video_path)
        except (PrismError, OSError) as exc:
            notify_error(exc, "cannot read the tracks")
            return None
        return self.set_tracks(tracks, Path(path))

    def set_tracks(self, tracks: Tracks, path: Path | None = None) -> Tracks | None:
        """Check ``tracks`` against the current video, then draw them (replacing any)."""
        session = self.link.session
        if session is None:
            return None
        info = getattr(getattr(self.link.layer, "data", None), "info", None)
        size = (info.height, info.width) if info is not None else None
        video = Path(session.video_path).name if session.video_path else "the video"
        try:
            tracks = tracks.check_video(session.n_frames, size, video=video)
        except TracksError as exc:
            notify_error(exc, "tracks not shown")
            return None
        self._drop_layers()
        self.tracks, self.path = tracks, path
        data, kwargs, _ = tracks_layer_data(tracks, path or "")
        kwargs["metadata"][_DRAWN_KEY] = True
        video_layer = self.link.layer
        self.layer = self.viewer.add_points(data, **kwargs)
        shapes, owners = box_shapes(tracks)
        if 0 < len(shapes) <= MAX_BOXES:
            self.boxes = self.viewer.add_shapes(
                shapes, shape_type="rectangle",
                name=kwargs["name"].replace("tracks: ", "boxes: ", 1),
                edge_color=_colours(owners, None), face_color="transparent", edge_width=2,
                metadata={"prism_boxes_owner": owners})
        elif shapes:
            logger.info("%d boxes: only the centroids are drawn", len(shapes))
        if video_layer is not None:
            self.viewer.layers.selection.active = video_layer  # the keys stay the video's
        if not session.subject:  # label the first animal (a subject of the labels stays)
            session.set_subject(tracks.subjects[0])
        self.link.set_track_subjects(tracks.subjects)
        self._styled = None
        self.highlight()
        notify_info(f"tracks of {len(tracks.subjects)} subject(s) "
                    f"({', '.join(tracks.subjects)}) from {path.name if path else 'the tracker'}"
                    f" over {video}; Tab / Shift+Tab switch the subject you label")
        self._changed()
        return tracks

    # ------------------------------------------------------------------ highlight
    def _on_edit(self) -> None:
        if self._session is not None and self._session.subject != self._styled:
            self.highlight()

    def highlight(self) -> None:
        """The labeling target larger, bright-bordered and opaque; the other subjects dimmed."""
        session, tracks, layer = self.link.session, self.tracks, self.layer
        if session is None or tracks is None or layer is None:
            return
        active = tracks.subjects.index(session.subject) \
            if session.subject in tracks.subjects else None
        _, owners = points_data(tracks)
        base = _point_size(tracks)
        chosen = owners == active
        layer.face_color = _colours(owners, active)
        layer.size = np.where(chosen, 1.6 * base, base)
        layer.border_width = np.where(chosen, 0.3, 0.0)
        layer.border_color = np.tile(np.array([[1.0, 1.0, 1.0, 1.0]], np.float32),
                                     (len(owners), 1))
        if self.boxes is not None:
            box_owners = self.boxes.metadata["prism_boxes_owner"]
            self.boxes.edge_color = _colours(box_owners, active)
            self.boxes.edge_width = np.where(box_owners == active, 3, 1).tolist()
        self._styled = session.subject


class TracksWidget(QWidget):
    """Tracks of the current video: open a file, or run the built-in tracker (*track it*)."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        self.view = tracks_view(napari_viewer)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout.addWidget(self.label)
        row = QHBoxLayout()
        self.open_button = QPushButton("open tracks...")
        self.open_button.setToolTip("SLEAP .slp/.h5, DeepLabCut .h5/.csv, our tracks CSV, "
                                    "KABR CVAT .xml, ChimpACT COCO .json, FlyTracker .mat")
        self.open_button.clicked.connect(self._open_dialog)
        row.addWidget(self.open_button)
        self.track_button = QPushButton("track it")
        self.track_button.setToolTip("run the built-in tracker (fixed camera, N animals) and "
                                     "save VIDEO.tracks.csv beside the video")
        self.track_button.clicked.connect(self.track)
        row.addWidget(self.track_button)
        self.n_animals = QSpinBox()
        self.n_animals.setRange(1, 50)
        self.n_animals.setValue(2)
        self.n_animals.setSuffix(" animals")
        row.addWidget(self.n_animals)
        layout.addLayout(row)
        self.task = TaskPanel()
        layout.addWidget(self.task)
        self.view.on_change(self._show)
        self._show()

    def _show(self) -> None:
        view = self.view
        if view.tracks is None:
            self.label.setText("tracks: none (open a tracks file or track the video)")
            return
        where = view.path.name if view.path is not None else "the tracker"
        self.label.setText(f"tracks: {where}, {view.tracks.n_frames} frames, subjects "
                           f"{', '.join(view.tracks.subjects)}")

    def _open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open the tracks of this video", "",
            "Tracks (*.slp *.h5 *.csv *.xml *.json *.mat);;All files (*)")
        if path:
            self.view.open(path)

    def track(self) -> None:
        """Run the built-in tracker on the current video in a worker; the tracks are written
        to ``VIDEO.tracks.csv`` and drawn when done."""
        session = self.link.session
        if session is None or not session.video_path:
            notify_error(TracksError("open a video to track"), "track it")
            return
        video = Path(session.video_path)
        out = default_tracks_file(video)
        self.task.run(track_task, video, self.n_animals.value(), out,
                      what=f"tracking {video.name}",
                      on_result=lambda tracks: self._tracked(tracks, out, session))

    def _tracked(self, tracks: Tracks, out: Path, session: Any) -> None:
        if self.link.session is not session:
            notify_info(f"tracks saved to {out}; they are shown when the video is open")
            return
        self.view.set_tracks(tracks, out)
        self.task.status.setText(f"tracks saved to {out}")
