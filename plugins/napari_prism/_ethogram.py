"""The Ethogram widget: define behaviors and label them with the keyboard or on the timeline;
the subject (animal) the keys label, and the tracks drawn over the video."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtCore import Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import LabelError, PrismError
from prism_science.session import Behavior, import_ethogram, read_ethogram

from ._context import current_frame, notify_error, notify_info
from ._link import link
from ._tracks import TracksWidget

if TYPE_CHECKING:
    import napari

__all__ = ["EthogramWidget", "key_problem"]


def key_problem(key: str) -> str:
    """Why ``key`` cannot label a behavior ("" when it can): one letter or digit only, since
    the other keys play, jump, switch videos and review (napari_prism._link.NAVIGATION_KEYS)."""
    if not key:
        return ""
    if len(key) != 1 or not (key.isascii() and key.isalnum()):
        return (f"key {key!r} cannot label: use one letter (a-z) or digit (0-9); the other "
                "keys play, jump, switch videos and review")
    return ""

_HELP = (
    "Key (a letter or a digit; it wins over napari's shortcuts while a video is open): start / "
    "stop a bout at the current frame (a point event: mark this frame).  Shift+key: toggle "
    "the frame.  Esc: drop open bouts.  "
    "Ctrl+Z / Ctrl+Shift+Z: undo / redo.  Space: play / pause;  + / -: speed;  Left / Right: "
    "one frame;  Ctrl+Left / Ctrl+Right: 10 frames;  PageUp / PageDown: previous / next video.  "
    "Tab / Shift+Tab: next / previous subject (animal) to label.  "
    "Review: . next bout, Enter accept, Delete reject, [ ] range, Shift+Enter accept the "
    "range.  Timeline: click to go to a frame, drag "
    "with the left button to label, right button to unlabel; wheel zooms, Shift+wheel pans."
)
_COLUMNS = ("name", "key", "colour", "group", "point")


class EthogramWidget(QWidget):
    """Behaviors of the current video's session (name, key, colour, exclusive group, point
    event), and the import of an ethogram from a BORIS project or a CSV."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        self._filling = False
        layout = QVBoxLayout(self)
        self.video_label = QLabel("no video: open one (File > Open, or drop it here)")
        self.video_label.setWordWrap(True)
        layout.addWidget(self.video_label)
        row = QHBoxLayout()
        row.addWidget(QLabel("annotator"))
        self.annotator = QLineEdit()
        self.annotator.editingFinished.connect(self._set_annotator)
        row.addWidget(self.annotator)
        layout.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("subject"))
        self.subject = QComboBox()
        self.subject.setEditable(True)
        self.subject.setToolTip("animal the keys and the timeline label (empty: no subject); "
                                "Tab / Shift+Tab on the video: next / previous subject")
        self.subject.lineEdit().editingFinished.connect(self._set_subject)
        self.subject.activated.connect(lambda _: self._set_subject())
        row.addWidget(self.subject, 1)
        layout.addLayout(row)
        self.tracks = TracksWidget(napari_viewer)
        layout.addWidget(self.tracks)
        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.itemChanged.connect(self._item_changed)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        self.new_name = QLineEdit()
        self.new_name.setPlaceholderText("new behavior")
        self.new_name.returnPressed.connect(self._add)
        row.addWidget(self.new_name)
        for text, slot in (("add", self._add), ("remove", self._remove)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        layout.addLayout(row)
        row = QHBoxLayout()
        for text, slot in (("undo", self._undo), ("redo", self._redo)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        self.import_button = QPushButton("import ethogram...")
        self.import_button.setToolTip("behaviors, keys and point/state types from a BORIS "
                                      "project (.boris) or a CSV of name,key[,type]")
        self.import_button.clicked.connect(self._import_dialog)
        row.addWidget(self.import_button)
        layout.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        help_label = QLabel(_HELP)
        help_label.setWordWrap(True)
        help_label.setStyleSheet("color: gray")
        layout.addWidget(help_label)
        layout.addStretch(1)
        self._session: Any = None
        self._counts = ""
        self.viewer.dims.events.current_step.connect(self._update_status)
        self.link.on_session_changed(self._follow)
        self._follow()

    # ------------------------------------------------------------------ session
    def _follow(self) -> None:
        if self._session is not None:
            self._session.unsubscribe(self._refresh)
        self._session = self.link.session
        if self._session is not None:
            self._session.subscribe(self._refresh)
        self._refresh()

    def _refresh(self) -> None:
        session = self._session
        self._filling = True
        try:
            if session is None:
                self.video_label.setText("no video: open one (File > Open, or drop it here)")
                self.table.setRowCount(0)
                self.status.setText("")
                return
            self.video_label.setText(f"video: {session.video_path}\nlabels: {session.path}")
            if not self.annotator.hasFocus():
                self.annotator.setText(session.annotator)
            subjects = self.link.subject_choices()
            if session.subject not in subjects:
                subjects.insert(0, session.subject)
            if [self.subject.itemText(i) for i in range(self.subject.count())] != subjects:
                self.subject.clear()
                self.subject.addItems(subjects)
            if not self.subject.lineEdit().hasFocus():
                self.subject.setCurrentText(session.subject)
            self.table.setRowCount(len(session.behaviors))
            for row, behavior in enumerate(session.behaviors):
                for col, field in enumerate(_COLUMNS):
                    value = getattr(behavior, field if field != "colour" else "color")
                    item = self.table.item(row, col)
                    if item is None:
                        item = QTableWidgetItem()
                        self.table.setItem(row, col, item)
                    if field == "point":  # a check box: point event, else state event
                        item.setFlags((item.flags() | Qt.ItemIsUserCheckable)
                                      & ~Qt.ItemIsEditable)
                        state = Qt.Checked if value else Qt.Unchecked
                        if item.checkState() != state:
                            item.setCheckState(state)
                        continue
                    if item.text() != value:
                        item.setText(value)
                    if field == "colour":
                        item.setBackground(QColor(value or "#888888"))
            self._counts = ", ".join(
                f"{name}: {int(session.mask(name).sum())} frames"
                for name in session.behavior_names()
            )
            self._update_status()
        finally:
            self._filling = False

    def _update_status(self, event: Any = None) -> None:
        session = self._session
        if session is None:
            return
        opened = ", ".join(
            f"{name} since frame {start}" for name, start in session.open_bouts.items()
        )
        from prism_science.search import format_time

        frame = min(current_frame(self.viewer), session.n_frames - 1)
        self.status.setText(
            f"frame {frame}  {format_time(session.timestamps[frame])}"
            + (f" - recording {opened}" if opened else "")
            + (f"\n{self._counts}" if self._counts else "")
        )

    # ------------------------------------------------------------------ edits
    def _item_changed(self, item: QTableWidgetItem) -> None:
        if self._filling or self._session is None:
            return
        row, col = item.row(), item.column()
        if row >= len(self._session.behaviors):
            return
        name = self._session.behaviors[row].name
        field = {"colour": "color"}.get(_COLUMNS[col], _COLUMNS[col])
        if field == "point":
            self._session.update_behavior(name, point=item.checkState() == Qt.Checked)
            return
        value = item.text().strip()
        if field == "key":
            problem = key_problem(value)
            if problem:
                notify_error(LabelError(f"behavior {name!r}: {problem}"))
                self._refresh()
                return
            value = value.lower()
        if field == "color" and value and not QColor(value).isValid():
            notify_error(PrismError(f"colour {value!r} is not valid; use #rrggbb"))
            self._refresh()
            return
        try:
            self._session.update_behavior(name, **{field: value})
        except PrismError as exc:
            notify_error(exc, "ethogram")
            self._refresh()

    def _add(self) -> None:
        if self._session is None:
            notify_error(PrismError("open a video before adding behaviors"))
            return
        name = self.new_name.text().strip()
        if not name:
            return
        try:
            self._session.add_behavior(Behavior(name))
        except PrismError as exc:
            notify_error(exc, "ethogram")
            return
        self.new_name.clear()

    def import_file(self, path: str | Path) -> list[str]:
        """Import the ethogram of a BORIS project or a CSV (name,key[,type]) into the current
        video's session (:func:`prism_science.session.read_ethogram`); a project makes it the
        ethogram of all its videos. Returns the messages shown to the user."""
        if self._session is None:
            notify_error(PrismError("open a video before importing an ethogram"))
            return []
        try:
            behaviors, messages = read_ethogram(path)
            messages += import_ethogram(self._session, behaviors)
        except PrismError as exc:
            notify_error(exc, "import ethogram")
            return []
        where = "the project's videos" if self.link.project is not None else "this video"
        summary = (f"imported {len(behaviors)} behavior(s) from {Path(path).name} for "
                   f"{where}: " + ", ".join(
                       f"{b.name} [{self._session.behavior(b.name).key or '-'}]"
                       + (" (point)" if b.point else "") for b in behaviors))
        notify_info("\n".join([summary, *messages]))
        return messages

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import an ethogram", "",
            "Ethogram (*.boris *.boris.gz *.csv);;All files (*)")
        if path:
            self.import_file(path)

    def _remove(self) -> None:
        if self._session is None:
            return
        rows = sorted({i.row() for i in self.table.selectedItems()})
        names = [self._session.behaviors[r].name for r in rows
                 if r < len(self._session.behaviors)]
        for name in names:
            self._session.remove_behavior(name)

    def _set_annotator(self) -> None:
        if self._session is not None and self.annotator.text() != self._session.annotator:
            self._session.set_annotator(self.annotator.text().strip())

    def _set_subject(self) -> None:
        if self._session is not None and not self._filling:
            self.link.set_subject(self.subject.currentText().strip())

    def _undo(self) -> None:
        if self._session is not None:
            self._session.undo()

    def _redo(self) -> None:
        if self._session is not None:
            self._session.redo()

    def keyPressEvent(self, event: Any) -> None:  # noqa: N802 - Qt API
        # Keys typed in the dock (outside text fields) label like on the canvas.
        text = event.text()
        if text and not key_problem(text) and not event.modifiers() & ~Qt.ShiftModifier:
            self.link.press(text.lower(), toggle=bool(event.modifiers() & Qt.ShiftModifier))
            return
        super().keyPressEvent(event)
