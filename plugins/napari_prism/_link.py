"""One link per viewer: the timeline dock, frame sync, the keyboard, the project and autosave.

Every plugin widget calls :func:`link` with its viewer and gets the same :class:`ViewerLink`. It
follows the selected prism video layer, shows that layer's session on the timeline docked under
the canvas, keeps the timeline and napari's frame slider in sync both ways and autosaves the
session every second when it changed.

Keys (:data:`NAVIGATION_KEYS`): each behavior's key starts/stops a bout, Shift+key toggles the
current frame, Esc drops open bouts, Ctrl+Z / Ctrl+Shift+Z undo and redo, Space plays at the
video's own frame rate times the speed, +/- change the speed, Ctrl+Left/Right jump
:attr:`ViewerLink.jump_frames` frames, PageUp/PageDown switch to the previous/next video of the
project, Return / Delete / . accept, reject and skip to the next bout in review, [ and ] mark a
frame range whose predictions Shift+Return accepts in bulk, Tab / Shift+Tab make the next /
previous subject the labeling target (:meth:`ViewerLink.cycle_subject`). The keys are
bound on the viewer *and* on every layer, whose own bindings napari consults first, so that
napari's image-layer shortcuts (c, o, x, y, z, 1, 2) never swallow a label key while a video is
open. A click on any button of the workbench gives the keyboard back to the canvas
(:meth:`ViewerLink.keep_keyboard`).

Closing the viewer while a background task runs asks first, cancels the task and waits for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QAbstractButton, QMessageBox

from prism_science.errors import LabelError, PrismError
from prism_science.session import LabelingSession, Project

from ._context import (
    SESSION_KEY,
    STORE_KEY,
    VIDEO_ID_KEY,
    current,
    current_frame,
    go_to_frame,
    notify_error,
    prism_layers,
    video_layer_data,
)
from ._tasks import running_panels
from ._timeline import TimelineWidget

if TYPE_CHECKING:
    import napari

__all__ = ["NAVIGATION_KEYS", "SPEEDS", "ViewerLink", "link"]

logger = logging.getLogger(__name__)

_LINKS: weakref.WeakKeyDictionary[Any, ViewerLink] = weakref.WeakKeyDictionary()
AUTOSAVE_MS = 1000
SPEEDS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
"""Playback speeds, times the video's frame rate (+ and - step through them)."""
NAVIGATION_KEYS = {
    "Escape": "drop open bouts",
    "Control-Z": "undo",
    "Control-Shift-Z": "redo",
    "Space": "play / pause at the video's frame rate",
    "=": "faster (+ too)",
    "-": "slower",
    "Numpad_Add": "faster",
    "Numpad_Subtract": "slower",
    "Control-Left": "back N frames",
    "Control-Right": "forward N frames",
    "PageUp": "previous video",
    "PageDown": "next video",
    "Enter": "review: accept the bout",
    "Delete": "review: reject the bout",
    "Backspace": "review: reject the bout",
    ".": "review: next bout",
    "[": "review: bulk range starts at this frame",
    "]": "review: bulk range ends at this frame",
    "Shift-Enter": "review: accept the predictions of the bulk range",
}
"""Keys of the plugin besides the behaviors' keys (napari key names) and what they do."""


def link(viewer: napari.Viewer) -> ViewerLink:
    """The :class:`ViewerLink` of ``viewer`` (created, with its timeline dock, on first use)."""
    existing = _LINKS.get(viewer)
    if existing is None:
        existing = ViewerLink(viewer)
        _LINKS[viewer] = existing
    else:
        existing.ensure_timeline()
    return existing


def _alive(widget: Any) -> bool:
    """Whether Qt still has the widget (closing a dock deletes it)."""
    try:
        widget.objectName()
    except RuntimeError:
        return False
    return True


class ViewerLink(QObject):
    """Shared state of the plugin for one viewer (use :func:`link`)."""

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__()
        self._viewer = weakref.ref(viewer)  # the link must not keep a closed viewer alive
        self.layer: Any = None
        self.session: LabelingSession | None = None
        self.project: Project | None = None
        self.jump_frames = 10
        self.speed = 1.0
        self.reviewer: Any = None  # the Review widget, which the review keys drive
        self._sessions: dict[Path, LabelingSession] = {}  # project videos opened in this run
        self._bound_keys: list[str] = []
        self._keyed_layers: list[Any] = []
        self._session_listeners: list[Callable[[], None]] = []
        self.track_subjects: list[str] = []  # subjects of the tracks drawn over the video
        self._store_listeners: list[Callable[[], None]] = []
        self._dock_timeline()
        viewer.dims.events.current_step.connect(self._on_step)
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.layers.selection.events.active.connect(self.refresh)
        self._timer = QTimer(self)
        self._timer.setInterval(AUTOSAVE_MS)
        self._timer.timeout.connect(self.autosave)
        self._timer.start()
        window = viewer.window._qt_window
        canvas = viewer.window._qt_viewer.canvas.native
        # weak references: the link must not keep a closed viewer's widgets alive
        self._window, self._canvas = weakref.ref(window), weakref.ref(canvas)
        window.installEventFilter(self)
        canvas.installEventFilter(self)
        self.refresh()

    @property
    def viewer(self) -> napari.Viewer:
        """The linked viewer."""
        viewer = self._viewer()
        if viewer is None:
            raise RuntimeError("the napari viewer of this plugin link was closed")
        return viewer

    def _dock_timeline(self) -> None:
        self._timeline = TimelineWidget()
        self.dock = self.viewer.window.add_dock_widget(
            self._timeline, name="prism timeline", area="bottom"
        )
        self._timeline.frameRequested.connect(lambda f: go_to_frame(self.viewer, f))
        self._timeline.subjectRequested.connect(self.set_subject)
        self._timeline.set_track_subjects(self.track_subjects)

    # ------------------------------------------------------------------ focus and closing
    def focus_canvas(self) -> None:
        """Give the keyboard to the canvas (after a click on a button, a list, ...)."""
        with contextlib.suppress(RuntimeError, AttributeError):  # the viewer is closing
            self.viewer.window._qt_viewer.canvas.native.setFocus()

    def keep_keyboard(self, widget: Any) -> None:
        """After a click on any button of ``widget``, the canvas gets the keyboard back (so the
        next label key or arrow is not lost in the button)."""
        for button in widget.findChildren(QAbstractButton):
            button.clicked.connect(lambda *_: self.focus_canvas())

    def eventFilter(self, obj: Any, event: Any) -> bool:  # noqa: N802 - Qt API
        """The viewer window closing while a task runs: ask, cancel and wait (or stay open).
        "+" pressed on the canvas: faster (napari's key names have no "+"). Tab / Shift+Tab on
        the canvas: next / previous subject (Qt would move the keyboard focus instead)."""
        try:
            kind = event.type()
            if kind == QEvent.KeyPress and obj is self._canvas() and self.session is not None:
                if event.text() == "+":
                    self.change_speed(+1)
                    return True
                if event.key() in (Qt.Key_Tab, Qt.Key_Backtab):
                    backward = event.key() == Qt.Key_Backtab or bool(
                        event.modifiers() & Qt.ShiftModifier)
                    self.cycle_subject(-1 if backward else +1)
                    return True
            if kind == QEvent.Close and obj is self._window() and not self.confirm_close():
                event.ignore()
                return True
        except RuntimeError:  # Qt deleted the window or the widget meanwhile
            return False
        return False

    def confirm_close(self) -> bool:
        """Whether the viewer may close: when tasks run, ask; yes cancels them and waits."""
        panels = running_panels()
        if not panels:
            self.autosave()
            return True
        what = ", ".join(f"{panel.what} ({panel.bar.value()} of {panel.bar.maximum()})"
                         for panel in panels)
        answer = QMessageBox.question(
            self._window(), "prism-science",
            f"Still running: {what}.\nCancel and close? Finished chunks stay in the store.",
            QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        if answer != QMessageBox.Yes:
            return False
        for panel in panels:
            panel.cancel()
        for panel in panels:
            if not panel.wait(10.0):
                logger.warning("%s did not stop within 10 s; closing anyway", panel.what)
        self.autosave()
        return True

    @property
    def timeline(self) -> TimelineWidget:
        """The timeline widget (docked again first if the user closed it)."""
        self.ensure_timeline()
        return self._timeline

    def _docked(self) -> bool:
        if not _alive(self._timeline):
            return False
        docked = self.viewer.window.dock_widgets.values()
        return any(widget is self._timeline for widget in docked)

    def ensure_timeline(self) -> None:
        """Dock the timeline again if the user closed it."""
        if not self._docked():
            if _alive(self._timeline):
                self._timeline.set_session(None)  # the closed one stops following the session
            self._dock_timeline()
            self._timeline.set_session(self.session)
            self._timeline.set_current_frame(current_frame(self.viewer))

    # ------------------------------------------------------------------ session tracking
    def on_session_changed(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` when another video's session becomes current (and when the
        feature stores changed, see :meth:`stores_changed`)."""
        self._session_listeners.append(callback)

    def stores_changed(self) -> None:
        """Features were written: widgets that list feature sets read them again."""
        for callback in list(self._session_listeners):
            try:
                callback()
            except Exception:  # noqa: BLE001 - one broken widget must not stop the others
                logger.exception("listener %r failed", callback)

    def refresh(self, event: Any = None) -> None:
        """Follow the selected prism video layer (called on layer events)."""
        found = current(self.viewer)
        layer, session = found if found is not None else (None, None)
        if session is self.session:
            if session is not None and [id(x) for x in self.viewer.layers] != [
                    id(x) for x in self._keyed_layers]:
                self._bind_keys()  # a layer was added: it gets the keys too
            return
        if self.session is not None:
            self.session.unsubscribe(self._on_session_edit)
            self.session.maybe_autosave(force=True)
        self.layer, self.session = layer, session
        if session is not None:
            if self.project is not None:
                self.project.apply_ethogram(session)
            session.subscribe(self._on_session_edit)
            self._stop_playing()
            if self.viewer.dims.ndim == 3:  # (frames, y, x) of an RGB video: not "-3"
                self.viewer.dims.axis_labels = ("frame", "y", "x")
        if _alive(self._timeline):
            self._timeline.set_session(session)
            if session is not None:
                self._timeline.set_current_frame(current_frame(self.viewer))
        self._bind_keys()
        self._show_time()
        for callback in list(self._session_listeners):
            callback()

    def _on_removed(self, event: Any = None) -> None:
        """A layer left the viewer: save its session and stop its video's read-ahead."""
        layer = getattr(event, "value", None)
        session = getattr(layer, "metadata", {}).get(SESSION_KEY)
        if session is not None:
            session.maybe_autosave(force=True)
            close = getattr(layer.data, "close", None)
            if callable(close):
                close()
        self.refresh()

    def _on_session_edit(self) -> None:
        keys = {b.key.lower() for b in self.session.behaviors if b.key} if self.session else set()
        if keys != set(self._bound_keys):
            self._bind_keys()
        if self.project is not None and self.session is not None:
            self.project.take_ethogram(self.session)
        self._show_time()  # the labeling target is on the canvas

    def _on_step(self, event: Any = None) -> None:
        if self.session is not None and _alive(self._timeline):
            self._timeline.set_current_frame(current_frame(self.viewer))
        self._show_time()

    def _show_time(self) -> None:
        """Frame, hh:mm:ss.mmm (the frame's own timestamp) and speed, on the canvas."""
        try:
            overlay = self.viewer.canvas.overlays["text"]
        except (KeyError, AttributeError, RuntimeError):
            return
        if self.session is None:
            overlay.visible = False
            return
        from prism_science.search import format_time

        frame = min(current_frame(self.viewer), self.session.n_frames - 1)
        speed = f"  x{self.speed:g}" if self.speed != 1.0 else ""
        subject = f"  labeling {self.session.subject}" if self.session.subject else ""
        overlay.text = (f"frame {frame}  {format_time(self.session.timestamps[frame])}"
                        f"{speed}{subject}")
        overlay.position = "top_left"
        overlay.visible = True

    def autosave(self) -> None:
        """Save the current session, and the project's other sessions held in memory, if
        they changed (the timer calls this every second)."""
        for session in {id(s): s for s in [self.session, *self._sessions.values()]
                        if s is not None}.values():
            if session.dirty:
                session.maybe_autosave(force=True)

    # ------------------------------------------------------------------ keys
    def _providers(self) -> list[Any]:
        """Where the keys are bound: the viewer and every layer (layers are asked first)."""
        return [self.viewer, *self.viewer.layers]

    def _bind_keys(self) -> None:
        combos = [c for key in self._bound_keys for c in (key, f"Shift-{key}")]
        combos += list(NAVIGATION_KEYS) if self._bound_keys or self._keyed_layers else []
        for provider in [self.viewer, *self._keyed_layers]:
            for combo in combos:
                provider.keymap.pop(_combo(combo), None)
        self._bound_keys = []
        self._keyed_layers = []
        if self.session is None:
            return
        bindings: dict[str, Callable[[Any], Any]] = {}
        for behavior in self.session.behaviors:
            key = behavior.key.lower()
            if not key or key in self._bound_keys:
                continue
            bindings[key] = self._make_handler(key, toggle=False)
            bindings[f"Shift-{key}"] = self._make_handler(key, toggle=True)
            self._bound_keys.append(key)
        actions: dict[str, Callable[[], Any]] = {
            "Escape": self._cancel_open,
            "Control-Z": lambda: self._undo(False),
            "Control-Shift-Z": lambda: self._undo(True),
            "Space": self.toggle_play,
            "=": lambda: self.change_speed(+1),
            "-": lambda: self.change_speed(-1),
            "Numpad_Add": lambda: self.change_speed(+1),
            "Numpad_Subtract": lambda: self.change_speed(-1),
            "Control-Left": lambda: self.jump(-self.jump_frames),
            "Control-Right": lambda: self.jump(self.jump_frames),
            "PageUp": lambda: self.step_video(-1),
            "PageDown": lambda: self.step_video(+1),
            "Enter": lambda: self._review("accept"),
            "Delete": lambda: self._review("reject"),
            "Backspace": lambda: self._review("reject"),
            ".": lambda: self._review("next"),
            "[": lambda: self._review("range_start"),
            "]": lambda: self._review("range_end"),
            "Shift-Enter": lambda: self._review("accept_range"),
        }
        for combo, action in actions.items():
            bindings[combo] = _handler(action, NAVIGATION_KEYS[combo])
        self._keyed_layers = list(self.viewer.layers)
        for provider in self._providers():
            for combo, handler in bindings.items():
                provider.bind_key(combo, handler, overwrite=True)

    def _make_handler(self, key: str, toggle: bool) -> Callable[[Any], None]:
        def handler(viewer: Any) -> None:
            self.press(key, toggle=toggle)

        handler.__doc__ = f"prism: {'toggle frame of' if toggle else 'start/stop'} behavior {key}"
        return handler

    def press(self, key: str, toggle: bool = False) -> str | None:
        """Apply a labeling key at the current frame; returns what happened (or None)."""
        if self.session is None:
            return None
        name = self.session.behavior_for_key(key)
        if name is None:
            return None
        frame = current_frame(self.viewer)
        try:
            if toggle:
                return "on" if self.session.toggle_frame(name, frame) else "off"
            return self.session.start_stop(name, frame)
        except PrismError as exc:
            notify_error(exc, "labeling")
            return None

    def _cancel_open(self) -> None:
        if self.session is not None and self.session.open_bouts:
            self.session.cancel_open()

    def _undo(self, redo: bool) -> None:
        if self.session is not None:
            self.session.redo() if redo else self.session.undo()

    # ------------------------------------------------------------------ subjects
    def set_track_subjects(self, subjects: list[str]) -> None:
        """The subjects of the tracks drawn over the video (the timeline groups them)."""
        self.track_subjects = [str(s) for s in subjects]
        if _alive(self._timeline):
            self._timeline.set_track_subjects(self.track_subjects)
        for callback in list(self._session_listeners):
            try:
                callback()
            except Exception:  # noqa: BLE001 - one broken widget must not stop the others
                logger.exception("listener %r failed", callback)

    def subject_choices(self) -> list[str]:
        """Subjects to label: the tracks' subjects, then the other subjects of the labels."""
        names = list(self.track_subjects)
        if self.session is not None:
            names += [s for s in self.session.subjects() if s and s not in names]
        return names

    def set_subject(self, subject: str) -> None:
        """Make ``subject`` the labeling target; the status bar and the canvas say so."""
        if self.session is None:
            return
        self.session.set_subject(subject)
        self.viewer.status = f"labeling {subject or 'no subject'}"
        self._show_time()

    def cycle_subject(self, step: int) -> str | None:
        """The next (``step`` 1) or previous (-1) subject of :meth:`subject_choices` becomes
        the labeling target; returns it (None when there is no subject to choose)."""
        if self.session is None:
            return None
        names = self.subject_choices()
        if not names:
            notify_error(LabelError(
                "no subject to switch to: open the tracks of this video (Ethogram > open "
                "tracks... or track it) or type a subject name in the Ethogram's subject box"))
            return None
        now = self.session.subject
        index = names.index(now) + step if now in names else (0 if step > 0 else -1)
        subject = names[index % len(names)]
        self.set_subject(subject)
        return subject

    # ------------------------------------------------------------------ playing and jumping
    def _qt_dims(self) -> Any:
        return self.viewer.window._qt_viewer.dims

    @property
    def playing(self) -> bool:
        """Whether the video is playing."""
        try:
            return bool(self._qt_dims().is_playing)
        except (AttributeError, RuntimeError):
            return False

    def playback_fps(self) -> int:
        """Frames per second of playback: the video's own rate times :attr:`speed`."""
        fps = self.session.fps if self.session is not None else 30.0
        return max(1, round(fps * self.speed))

    def toggle_play(self) -> None:
        """Play from the current frame at :meth:`playback_fps`, or pause."""
        if self.session is None:
            return
        if self.playing:
            self._stop_playing()
        else:
            self._qt_dims().play(0, fps=self.playback_fps(), loop_mode="once")

    def _stop_playing(self) -> None:
        if self.playing:
            self._qt_dims().stop()

    def change_speed(self, step: int) -> float:
        """Faster (``step`` > 0) or slower through :data:`SPEEDS`; returns the new speed."""
        index = min(range(len(SPEEDS)), key=lambda i: abs(SPEEDS[i] - self.speed))
        self.speed = SPEEDS[min(max(index + step, 0), len(SPEEDS) - 1)]
        if self.playing:
            self._qt_dims().play(0, fps=self.playback_fps(), loop_mode="once")
        self._show_time()
        self.viewer.status = f"playback speed x{self.speed:g} ({self.playback_fps()} fps)"
        return self.speed

    def jump(self, frames: int) -> int:
        """Move ``frames`` frames (clamped to the video); returns the new frame."""
        if self.session is None:
            return current_frame(self.viewer)
        target = min(max(current_frame(self.viewer) + int(frames), 0), self.session.n_frames - 1)
        go_to_frame(self.viewer, target)
        return target

    def _review(self, how: str) -> None:
        reviewer = self.reviewer
        if reviewer is None or not _alive(reviewer):
            notify_error(PrismError("open the Review section (Review predictions) to review "
                                    "with the keys"))
            return
        {"accept": reviewer.accept, "reject": reviewer.reject, "next": reviewer.next_item,
         "range_start": reviewer.set_range_start, "range_end": reviewer.set_range_end,
         "accept_range": reviewer.accept_range}[how]()

    # ------------------------------------------------------------------ project and videos
    def set_project(self, project: Project | None) -> None:
        """Work on a project's videos (the video list, PageUp/PageDown, one ethogram)."""
        self.project = project
        if project is not None and self.session is not None:
            project.apply_ethogram(self.session)
        self.stores_changed()

    def videos(self) -> list[Path]:
        """The project's videos, else the open prism videos."""
        if self.project is not None:
            return self.project.videos
        return [Path(layer.metadata[SESSION_KEY].video_path) for layer in prism_layers(self.viewer)
                if layer.metadata[SESSION_KEY].video_path]

    def current_video(self) -> Path | None:
        """The video of the current session."""
        if self.session is None or not self.session.video_path:
            return None
        return Path(self.session.video_path)

    def step_video(self, step: int) -> Path | None:
        """Show the previous (-1) or next (+1) video of the project."""
        videos = self.videos()
        if len(videos) < 2:
            return None
        now = self.current_video()
        resolved = [v.resolve() for v in videos]
        index = resolved.index(now.resolve()) if now is not None and now.resolve() in resolved \
            else -step
        return self.show_video(videos[(index + step) % len(videos)])

    def show_video(self, path: str | os.PathLike[str]) -> Path | None:
        """Show ``path`` instead of the open video(s): their sessions are saved and their
        layers removed, then the video opens with its session (the project's session file
        and features when it belongs to the project). The frame slider keeps its place when
        the new video is long enough."""
        path = Path(path)
        frame = current_frame(self.viewer)
        self._stop_playing()
        try:
            session_path = self.project.session_path(path) if self.project is not None else None
            cached = self._sessions.get(path.resolve())
            data, kwargs, _ = video_layer_data(path, session_path=session_path)
        except (PrismError, OSError) as exc:
            notify_error(exc, f"cannot open {path.name}")
            return None
        if cached is not None and cached.n_frames == data.info.n_frames:
            kwargs["metadata"][SESSION_KEY] = cached  # unsaved undo history stays
        session = kwargs["metadata"][SESSION_KEY]
        self._sessions[path.resolve()] = session
        if session.features is None and self.project is not None:
            found = features_in_store(self.project.store_path, path)
            if found is not None:
                session.set_features(*found)
        if session.features is not None:
            kwargs["metadata"][STORE_KEY] = str(session.features[0])
            kwargs["metadata"][VIDEO_ID_KEY] = session.features[1]
        for layer in prism_layers(self.viewer):
            self.viewer.layers.remove(layer)
        layer = self.viewer.add_image(data, **kwargs)
        self.viewer.layers.selection.active = layer
        self.viewer.reset_view()
        go_to_frame(self.viewer, min(frame, session.n_frames - 1))
        self.refresh()
        return path

    def sessions(self) -> list[tuple[str, LabelingSession]]:
        """(name, session) of every video to train on: the open ones, then the project's
        videos opened earlier in this run or with a session file."""
        out: list[tuple[str, LabelingSession]] = []
        seen: set[Path] = set()
        for layer in prism_layers(self.viewer):
            session = layer.metadata[SESSION_KEY]
            out.append((layer.name, session))
            if session.video_path:
                seen.add(Path(session.video_path).resolve())
        if self.project is None:
            return out
        for video in self.project.videos:
            key = video.resolve()
            if key in seen:
                continue
            session = self._sessions.get(key)
            if session is None:
                path = self.project.session_path(video)
                if path.is_file():
                    try:
                        session = LabelingSession.load(path)
                    except LabelError as exc:
                        notify_error(exc, video.name)
                        continue
                    self._sessions[key] = session
            if session is not None:
                out.append((video.name, session))
        return out


def features_in_store(store_path: Path, video: Path) -> tuple[Path, str] | None:
    """(store, video id) of ``video`` in a feature store that has some of its features."""
    from prism_science.store import open_store

    if not Path(store_path).exists():
        return None
    try:
        with open_store(store_path, mode="r") as store:
            for video_id in store.video_ids():
                info = store.video_info(video_id)
                if info.source_path and Path(info.source_path).resolve() == video.resolve() \
                        and store.feature_keys(video_id):
                    return Path(store_path), video_id
    except (PrismError, OSError) as exc:
        logger.warning("%s: cannot read the store (%s)", store_path, exc)
    return None


def _combo(combo: str) -> Any:
    from napari.utils.key_bindings import coerce_keybinding

    return coerce_keybinding(combo)


def _handler(action: Callable[[], Any], doc: str) -> Callable[[Any], None]:
    def handler(_: Any) -> None:
        action()

    handler.__doc__ = f"prism: {doc}"
    return handler
