"""Suggest: the stretches of video to label next (active learning on the current predictions).

The ranking is :func:`prism_science.evaluation.active.suggest_bouts` over the probabilities of
the chosen prediction, with the frames already labeled (manual or curated) left out. The
suggestions appear as a list (click to jump) and as ticks on the timeline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import PrismError

from ._context import go_to_frame, notify_error
from ._link import link

if TYPE_CHECKING:
    import napari

__all__ = ["SuggestWidget"]


class SuggestWidget(QWidget):
    """Rank stretches of the current video by the uncertainty of its predictions."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        from prism_science.evaluation.active import UNCERTAINTY_METHODS

        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.prediction = QComboBox()
        form.addRow("predictions", self.prediction)
        self.method = QComboBox()
        self.method.addItems(list(UNCERTAINTY_METHODS))
        form.addRow("uncertainty", self.method)
        self.count = QSpinBox()
        self.count.setRange(1, 500)
        self.count.setValue(10)
        form.addRow("stretches", self.count)
        self.length = QSpinBox()
        self.length.setRange(1, 10000)
        self.length.setValue(30)
        form.addRow("frames each", self.length)
        layout.addLayout(form)
        button = QPushButton("suggest frames to label")
        button.clicked.connect(self.suggest)
        layout.addWidget(button)
        self.list = QListWidget()
        self.list.itemClicked.connect(self._jump)
        layout.addWidget(self.list)
        self.link.on_session_changed(self._refresh)
        self._refresh()

    def _refresh(self) -> None:
        session = self.link.session
        names = list(session.predictions) if session is not None else []
        self.prediction.clear()
        self.prediction.addItems(names)
        if names:
            self.prediction.setCurrentText(names[-1])

    def suggest(self) -> list[tuple[int, int, float]]:
        """Rank the stretches; returns ``(start, end, score)`` best first."""
        from prism_science.evaluation.active import suggest_bouts

        session = self.link.session
        self._refresh_if_needed()
        name = self.prediction.currentText()
        if session is None or name not in session.predictions:
            notify_error(PrismError("no predictions on this video: train a probe and predict "
                                    "first"), "suggest")
            return []
        labeled = np.zeros(session.n_frames, dtype=bool)
        for source in ("manual", "curated"):
            for behavior in session.behavior_names():
                for subject in session.subjects():
                    labeled |= session.mask(behavior, source, subject)
        try:
            ranked = suggest_bouts(session.predictions[name].proba, self.count.value(),
                                   self.length.value(), labeled=labeled,
                                   method=self.method.currentText())
        except PrismError as exc:
            notify_error(exc, "suggest")
            return []
        self.list.clear()
        for start, end, score in ranked:
            item = QListWidgetItem(f"frames {start}-{end}  uncertainty {score:.2f}")
            item.setData(256, start)
            self.list.addItem(item)
        self.link.timeline.suggestions = np.array([s for s, _, _ in ranked], dtype=np.int64)
        self.link.timeline.update()
        return ranked

    def _refresh_if_needed(self) -> None:
        session = self.link.session
        if session is not None and self.prediction.count() != len(session.predictions):
            self._refresh()

    def _jump(self, item: QListWidgetItem) -> None:
        go_to_frame(self.viewer, int(item.data(256)))
