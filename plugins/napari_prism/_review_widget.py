"""Review predictions: jump to the next low-confidence or disagreeing bout; accept, reject or
edit it; or accept every predicted bout of a frame range at once. Decisions go to the curated
labels, kept apart from the manual and predicted ones."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import PrismError
from prism_science.session import ReviewItem

from ._context import current_frame, go_to_frame, notify_error, notify_info
from ._link import link

if TYPE_CHECKING:
    import napari

__all__ = ["ReviewWidget"]


class ReviewWidget(QWidget):
    """Step through the predicted bouts that need a person's look."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        self.item: ReviewItem | None = None
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.prediction = QComboBox()
        form.addRow("predictions", self.prediction)
        self.margin = QDoubleSpinBox()
        self.margin.setRange(0.0, 0.5)
        self.margin.setSingleStep(0.05)
        self.margin.setValue(0.15)
        self.margin.setToolTip("a bout is uncertain when its mean probability is this close to "
                               "the threshold")
        form.addRow("uncertain within", self.margin)
        layout.addLayout(form)
        next_button = QPushButton("next bout to review")
        next_button.clicked.connect(self.next_item)
        layout.addWidget(next_button)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        layout.addWidget(self.info)
        row = QHBoxLayout()
        self.start = QSpinBox()
        self.end = QSpinBox()
        for spin in (self.start, self.end):
            spin.setRange(0, 0)
            row.addWidget(spin)
        layout.addWidget(QLabel("bounds (edit, then 'accept edited'):"))
        layout.addLayout(row)
        row = QHBoxLayout()
        for text, slot in (("accept", self.accept), ("reject", self.reject),
                           ("accept edited", self.accept_edited)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        layout.addLayout(row)
        self.progress = QLabel("")
        layout.addWidget(self.progress)
        layout.addWidget(QLabel("accept the predictions of frames (bulk):"))
        row = QHBoxLayout()
        self.range_start = QSpinBox()
        self.range_end = QSpinBox()
        for spin in (self.range_start, self.range_end):
            spin.setRange(0, 0)
            row.addWidget(spin)
        self.accept_range_button = QPushButton("accept range")
        self.accept_range_button.setToolTip("every predicted bout of these frames becomes a "
                                            "curated label (Shift+Enter)")
        self.accept_range_button.clicked.connect(self.accept_range)
        row.addWidget(self.accept_range_button)
        layout.addLayout(row)
        keys = QLabel("Keys on the video: . next bout, Enter accept, Delete (or Backspace) "
                      "reject; [ and ] set the range to the current frame, Shift+Enter accepts "
                      "the range's predictions. Rejected bouts are crossed out on the timeline.")
        keys.setWordWrap(True)
        keys.setStyleSheet("color: gray")
        layout.addWidget(keys)
        layout.addStretch(1)
        self._session = None
        self.link.reviewer = self  # the review keys drive this widget
        self.link.on_session_changed(self._follow)
        self._follow()

    def _follow(self) -> None:
        if self._session is not None:
            self._session.unsubscribe(self._refresh)
        self._session = self.link.session
        if self._session is not None:
            self._session.subscribe(self._refresh)
        self.item = None
        self._refresh()

    def _refresh(self) -> None:
        session = self._session
        names = list(session.predictions) if session is not None else []
        if [self.prediction.itemText(i) for i in range(self.prediction.count())] != names:
            current = self.prediction.currentText()
            self.prediction.clear()
            self.prediction.addItems(names)
            if current in names:
                self.prediction.setCurrentText(current)
            elif names:
                self.prediction.setCurrentText(names[-1])
        if session is not None and self.prediction.currentText():
            items = session.review_items(self.prediction.currentText(), self.margin.value())
            done = sum(1 for it in items if it.key in session.review)
            self.progress.setText(f"{done} of {len(items)} bouts reviewed")
            for spin in (self.start, self.end, self.range_start, self.range_end):
                spin.setMaximum(session.n_frames - 1)

    def next_item(self) -> ReviewItem | None:
        """Go to the next unreviewed bout after the current frame (wrapping around)."""
        session = self._session
        name = self.prediction.currentText()
        if session is None or not name:
            notify_error(PrismError("no predictions to review: train a probe and predict first"))
            return None
        self.item = session.next_review_item(name, current_frame(self.viewer),
                                             margin=self.margin.value())
        if self.item is None:
            self.info.setText("nothing left to review")
            notify_info("every uncertain or disagreeing bout has been reviewed")
            return None
        item = self.item
        self.start.setValue(item.start_frame)
        self.end.setValue(item.end_frame)
        reason = {"low_confidence": "uncertain", "disagreement": "disagrees with manual labels"}
        self.info.setText(f"{item.behavior}: frames {item.start_frame}-{item.end_frame}, "
                          f"{reason.get(item.reason, item.reason)}, mean p = {item.score:.2f}")
        go_to_frame(self.viewer, item.start_frame)
        span = item.end_frame - item.start_frame + 1
        self.link.timeline.set_view(item.start_frame - 2 * span, 5 * span)
        return item

    def _decide(self, how: str) -> None:
        if self._session is None or self.item is None:
            notify_error(PrismError("press 'next bout to review' first"))
            return
        if how == "accept":
            self._session.accept(self.item)
        elif how == "reject":
            self._session.reject(self.item)
        else:
            self._session.edit(self.item, self.start.value(), self.end.value())
        self.next_item()

    def accept(self) -> None:
        """The bout is right: its frames become curated labels."""
        self._decide("accept")

    def set_range_start(self, frame: int | None = None) -> int:
        """Start of the bulk range: ``frame``, by default the current frame."""
        frame = current_frame(self.viewer) if frame is None else int(frame)
        self._refresh()
        self.range_start.setValue(frame)
        if self.range_end.value() < frame:
            self.range_end.setValue(frame)
        return self.range_start.value()

    def set_range_end(self, frame: int | None = None) -> int:
        """End of the bulk range: ``frame``, by default the current frame."""
        frame = current_frame(self.viewer) if frame is None else int(frame)
        self._refresh()
        self.range_end.setValue(frame)
        if self.range_start.value() > frame:
            self.range_start.setValue(frame)
        return self.range_end.value()

    def accept_range(self) -> dict[str, int]:
        """Accept the chosen prediction's bouts on the range's frames as curated labels
        (:meth:`prism_science.session.LabelingSession.accept_predictions`; one undo step)."""
        session = self._session
        name = self.prediction.currentText()
        if session is None or not name:
            notify_error(PrismError("no predictions to accept: train a probe and predict first"))
            return {}
        start, end = self.range_start.value(), self.range_end.value()
        try:
            added = session.accept_predictions(name, start, end)
        except PrismError as exc:
            notify_error(exc, "accept range")
            return {}
        total = sum(added.values())
        detail = ", ".join(f"{b} {n}" for b, n in added.items() if n) or "nothing new"
        self.info.setText(f"accepted {name} on frames {start}-{end}: {total} frame(s) "
                          f"labeled curated ({detail})")
        notify_info(f"accepted the predictions of frames {start}-{end} as curated labels "
                    f"({detail}); Ctrl+Z undoes")
        return added

    def reject(self) -> None:
        """The bout is wrong: recorded as rejected."""
        self._decide("reject")

    def accept_edited(self) -> None:
        """The bout is right with the bounds typed in the two boxes."""
        self._decide("edit")
