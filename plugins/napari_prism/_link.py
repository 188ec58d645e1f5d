"""One link per viewer: the timeline dock, frame sync, labeling keys and the autosave timer.

Every plugin widget calls :func:`link` with its viewer and gets the same :class:`ViewerLink`. It
follows the selected prism video layer, shows that layer's session on the timeline docked under
the canvas, keeps the timeline and napari's frame slider in sync both ways, binds each
behavior's key (start/stop a bout; Shift+key toggles the current frame; Escape drops open bouts;
Ctrl+Z / Ctrl+Shift+Z undo and redo) and autosaves the session every second when it changed.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import QObject, QTimer

from prism_science.errors import PrismError
from prism_science.session import LabelingSession

from ._context import SESSION_KEY, current, current_frame, go_to_frame, notify_error
from ._timeline import TimelineWidget

if TYPE_CHECKING:
    import napari

__all__ = ["ViewerLink", "link"]

logger = logging.getLogger(__name__)

_LINKS: weakref.WeakKeyDictionary[Any, ViewerLink] = weakref.WeakKeyDictionary()
AUTOSAVE_MS = 1000


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
        self._bound_keys: list[str] = []
        self._session_listeners: list[Callable[[], None]] = []
        self._dock_timeline()
        viewer.dims.events.current_step.connect(self._on_step)
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self._on_removed)
        viewer.layers.selection.events.active.connect(self.refresh)
        self._timer = QTimer(self)
        self._timer.setInterval(AUTOSAVE_MS)
        self._timer.timeout.connect(self.autosave)
        self._timer.start()
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
        """Call ``callback()`` when another video's session becomes current."""
        self._session_listeners.append(callback)

    def refresh(self, event: Any = None) -> None:
        """Follow the selected prism video layer (called on layer events)."""
        found = current(self.viewer)
        layer, session = found if found is not None else (None, None)
        if session is self.session:
            return
        if self.session is not None:
            self.session.unsubscribe(self._on_session_edit)
            self.session.maybe_autosave(force=True)
        self.layer, self.session = layer, session
        if session is not None:
            session.subscribe(self._on_session_edit)
        if _alive(self._timeline):
            self._timeline.set_session(session)
            if session is not None:
                self._timeline.set_current_frame(current_frame(self.viewer))
        self._bind_keys()
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

    def _on_step(self, event: Any = None) -> None:
        if self.session is not None and _alive(self._timeline):
            self._timeline.set_current_frame(current_frame(self.viewer))

    def autosave(self) -> None:
        """Save the current session if it changed (the timer calls this every second)."""
        if self.session is not None:
            self.session.maybe_autosave(force=True)

    # ------------------------------------------------------------------ keys
    def _bind_keys(self) -> None:
        for key in self._bound_keys:
            for combo in (key, f"Shift-{key}"):
                self.viewer.bind_key(combo, None, overwrite=True)
        self._bound_keys = []
        if self.session is None:
            return
        for behavior in self.session.behaviors:
            key = behavior.key.lower()
            if not key or key in self._bound_keys:
                continue
            self.viewer.bind_key(key, self._make_handler(key, toggle=False), overwrite=True)
            self.viewer.bind_key(f"Shift-{key}", self._make_handler(key, toggle=True),
                                 overwrite=True)
            self._bound_keys.append(key)
        self.viewer.bind_key("Escape", lambda v: self._cancel_open(), overwrite=True)
        self.viewer.bind_key("Control-Z", lambda v: self._undo(False), overwrite=True)
        self.viewer.bind_key("Control-Shift-Z", lambda v: self._undo(True), overwrite=True)

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
