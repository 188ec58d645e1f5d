"""Search by text: a query's similarity to every moment of the video, with jumps to its matches.

The science is :mod:`prism_science.search` (the same function as ``prism-science search``); this
widget only picks its inputs, runs it in a worker and shows the result: the per-frame cosine
similarity as a row of the timeline (absolute scale, labelled axis) and the best-matching frame
ranges as a list (click to jump to a range's first frame).

Only models that can search by text are offered (the bundled ``default`` first and preselected);
a model typed in that cannot (no text tower, no tokenizer) is refused before anything loads. A
video whose features are in a store is searched through the store, which keeps the clip
embeddings, so the next query skips the video; the clip embeddings of other videos are kept for
the widget's lifetime.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import PrismError
from prism_science.search import SearchResult, check_text_model, format_time, iter_search

from ._context import go_to_frame, notify_error
from ._link import link
from ._tasks import Progress, TaskCancelled, TaskPanel

if TYPE_CHECKING:
    import napari

__all__ = ["SearchWidget", "search_task"]

FRAME_ROLE = 256  # Qt.UserRole: the first frame of a listed range


def search_task(
    source: Path, query: str, model: str, video_id: str | None, hop: int | None, top: int,
    device: str, clip_cache: dict[Any, Any], *, cancel_event: threading.Event,
) -> Generator[Progress, None, SearchResult]:
    """Worker: :func:`prism_science.search.iter_search` for one query, stopping on cancel."""
    steps = iter_search(source, query, model=model, video_id=video_id, hop=hop, top=top,
                        device=device, clip_cache=clip_cache)
    try:
        while True:
            if cancel_event.is_set():
                steps.close()
                raise TaskCancelled()
            yield next(steps)
    except StopIteration as stop:
        return stop.value[0]


class SearchWidget(QWidget):
    """A text query -> similarity row on the timeline and a list of matching frame ranges."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        self.result: SearchResult | None = None
        self._clip_cache: dict[Any, Any] = {}
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.setToolTip("video-text models with a tokenizer; or type a weights folder")
        try:
            from prism_science.search import text_models

            self.model.addItems(text_models())  # the bundled default first
        except (ImportError, PrismError):
            pass
        form.addRow("model", self.model)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        form.addRow("device", self.device)
        self.hop = QSpinBox()
        self.hop.setRange(0, 64)
        self.hop.setSpecialValueText("auto")  # 0: half the model's clip
        self.hop.setValue(0)
        self.hop.setToolTip("frames between clip starts (auto: half the clip length)")
        form.addRow("clip hop", self.hop)
        self.peaks = QSpinBox()
        self.peaks.setRange(1, 100)
        self.peaks.setValue(5)
        form.addRow("matches", self.peaks)
        self.query = QLineEdit()
        self.query.setPlaceholderText("e.g. a mouse grooming")
        self.query.returnPressed.connect(self.search)
        form.addRow("query", self.query)
        layout.addLayout(form)
        button = QPushButton("search")
        button.clicked.connect(self.search)
        layout.addWidget(button)
        self.list = QListWidget()
        self.list.itemClicked.connect(
            lambda item: go_to_frame(self.viewer, int(item.data(FRAME_ROLE))))
        layout.addWidget(self.list)
        self.task = TaskPanel()
        layout.addWidget(self.task)
        layout.addStretch(1)

    def search(self) -> None:
        """Check the inputs, then search the current video for the query in a worker."""
        session = self.link.session
        query = self.query.text().strip()
        if session is None or not session.video_path or not query:
            notify_error(PrismError("open a video and type a query to search"), "search")
            return
        model = self.model.currentText().strip()
        try:
            check_text_model(model)  # reads config files only: refused before loading
        except PrismError as exc:
            self.task.last_error = exc
            self.task.status.setText(f"search refused: {exc}")
            notify_error(exc, "search")
            return
        source, video_id = Path(session.video_path), None
        if session.features is not None and Path(session.features[0]).exists():
            source, video_id = Path(session.features[0]), session.features[1]
        self.task.run(search_task, source, query, model, video_id, self.hop.value() or None,
                      self.peaks.value(), self.device.currentText(), self._clip_cache,
                      what=f"searching {query!r}", on_result=self._show)

    def _show(self, result: SearchResult) -> None:
        self.result = result
        timeline = self.link.timeline
        timeline.search_ranges = [(h.start_frame, h.end_frame) for h in result.hits]
        timeline.similarity = result.similarity
        self.list.clear()
        for hit in result.hits:
            item = QListWidgetItem(
                f"{hit.rank}. frames {hit.start_frame}-{hit.end_frame}  "
                f"{format_time(hit.start_s)}-{format_time(hit.end_s)}  cosine {hit.score:.3f}")
            item.setData(FRAME_ROLE, hit.start_frame)
            self.list.addItem(item)
