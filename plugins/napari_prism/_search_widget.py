"""Search by text: a query's similarity to every moment of the video, with jumps to its peaks.

Needs a video-text (LvT) model with a tokenizer. The video is cut into sliding clips (the same
window plan as feature extraction); each clip's contrastive embedding is compared with the
query's (cosine similarity); a frame's score is the mean over the clips that contain it. The
curve is drawn under the timeline and the highest peaks, at least one clip apart, are listed.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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

from ._context import go_to_frame, notify_error
from ._link import link
from ._tasks import Progress, TaskCancelled, TaskPanel

if TYPE_CHECKING:
    import napari

__all__ = ["SearchWidget", "find_peaks", "similarity_curve", "similarity_task"]


def similarity_curve(
    model: Any, video_path: Path, text_embedding: Any, hop: int, batch_size: int = 4,
    cancel_event: threading.Event | None = None,
) -> Generator[Progress, None, np.ndarray]:
    """Per-frame cosine similarity between a video's sliding clips and a text embedding.

    Parameters
    ----------
    model : VideoTextModel
        Has ``encode_video``, ``num_frames`` and ``image_size``.
    video_path : Path
    text_embedding : torch.Tensor
        (D,) or (1, D) L2-normalised text embedding.
    hop : int
        Frames between clip starts.

    Yields
    ------
    (int, int, str)
        Clips done, clips in all, message.

    Returns
    -------
    np.ndarray
        (n_frames,) float32 similarity of each frame.
    """
    import torch

    from prism_science.extraction.windows import WindowParams, plan_windows
    from prism_science.video import open_video

    size = int(model.image_size)
    num_frames = int(model.num_frames)
    device = next(model.parameters()).device
    text = text_embedding.reshape(-1).to(device)
    with open_video(video_path) as reader:
        n = reader.info.n_frames
        plan = plan_windows(n, num_frames, WindowParams(hop=max(1, min(hop, num_frames))))
        total = np.zeros(n, np.float64)
        count = np.zeros(n, np.float64)
        for w in range(0, plan.n_windows, batch_size):
            if cancel_event is not None and cancel_event.is_set():
                raise TaskCancelled()
            stop = min(w + batch_size, plan.n_windows)
            indices = plan.decode_indices(slice(w, stop))  # (b, T)
            frames = reader.get_frames(indices.ravel(), size=(size, size))
            video = torch.from_numpy(frames).reshape(*indices.shape, size, size, 3)
            paddings = torch.from_numpy(plan.frame_paddings[w:stop]).to(device)
            with torch.inference_mode():
                emb = model.encode_video(video.to(device).float().div_(255.0), paddings)
                sims = (emb @ text).float().cpu().numpy()  # (b,)
            for row, sim in enumerate(sims):
                covered = plan.frame_indices[w + row][plan.contributes[w + row]]
                total[covered] += sim
                count[covered] += 1
            yield stop, plan.n_windows, f"clip {stop} of {plan.n_windows}"
    curve = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    # Frames no clip covers (stride > 1) take their nearest sampled frame's value.
    return curve[plan.source].astype(np.float32)


def find_peaks(curve: np.ndarray, n: int, spacing: int) -> list[int]:
    """The ``n`` highest frames of a curve, each at least ``spacing`` frames from the others."""
    chosen: list[int] = []
    for frame in np.argsort(-curve, kind="stable"):
        if all(abs(int(frame) - c) >= spacing for c in chosen):
            chosen.append(int(frame))
            if len(chosen) >= n:
                break
    return chosen


def similarity_task(
    model_name: str, video_path: Path, query: str, hop: int, device: str,
    *, cancel_event: threading.Event,
) -> Generator[Progress, None, tuple[np.ndarray, int]]:
    """Worker: load the model, encode the query, compute the curve; returns (curve, T)."""
    from prism_science.extraction.features import load_encoder

    yield 0, 1, f"loading {model_name}"
    model = load_encoder(model_name, device=device)
    if not hasattr(model, "encode_texts"):
        raise PrismError(f"model {model_name!r} has no text tower; choose a video-text (lvt) "
                         "model to search by text")
    text = model.encode_texts([query])
    curve = yield from similarity_curve(model, video_path, text, hop, cancel_event=cancel_event)
    return curve, int(model.num_frames)


class SearchWidget(QWidget):
    """A text query -> similarity curve on the timeline and a list of its peaks."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        self.curve: np.ndarray | None = None
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.model = QComboBox()
        self.model.setEditable(True)
        try:
            from prism_science.models import list_models

            self.model.addItems([m for m in list_models() if "lvt" in m])
        except (ImportError, PrismError):
            pass
        form.addRow("model", self.model)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        form.addRow("device", self.device)
        self.hop = QSpinBox()
        self.hop.setRange(1, 64)
        self.hop.setValue(4)
        form.addRow("clip hop", self.hop)
        self.peaks = QSpinBox()
        self.peaks.setRange(1, 100)
        self.peaks.setValue(5)
        form.addRow("peaks", self.peaks)
        self.query = QLineEdit()
        self.query.setPlaceholderText("e.g. a mouse grooming")
        self.query.returnPressed.connect(self.search)
        form.addRow("query", self.query)
        layout.addLayout(form)
        button = QPushButton("search")
        button.clicked.connect(self.search)
        layout.addWidget(button)
        self.list = QListWidget()
        self.list.itemClicked.connect(lambda item: go_to_frame(self.viewer, int(item.data(256))))
        layout.addWidget(self.list)
        self.task = TaskPanel()
        layout.addWidget(self.task)
        layout.addStretch(1)

    def search(self) -> None:
        """Compute the query's similarity curve in a worker."""
        session = self.link.session
        query = self.query.text().strip()
        if session is None or not session.video_path or not query:
            notify_error(PrismError("open a video and type a query to search"), "search")
            return
        self.task.run(similarity_task, self.model.currentText().strip(), Path(session.video_path),
                      query, self.hop.value(), self.device.currentText(),
                      what=f"searching {query!r}", on_result=self._show)

    def _show(self, result: tuple[np.ndarray, int]) -> None:
        curve, clip_frames = result
        self.curve = curve
        self.link.timeline.similarity = curve
        self.link.timeline.updateGeometry()
        self.link.timeline.update()
        self.list.clear()
        for frame in find_peaks(curve, self.peaks.value(), clip_frames):
            item = QListWidgetItem(f"frame {frame}  similarity {curve[frame]:.3f}")
            item.setData(256, frame)
            self.list.addItem(item)
