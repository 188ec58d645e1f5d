"""Extract features: encode the project's videos (or the open ones, or a folder) into a
feature store, in a worker.

The work is the library's batch extraction (:mod:`prism_science.extraction`: record the video,
create the feature set, fill the missing chunks, mark it complete), done one chunk at a time so
that progress shows and cancel stops between chunks; a cancelled or failed run leaves the
finished chunks in the store, and the next run completes only what is missing.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import PrismError, StoreError

from ._context import STORE_KEY, VIDEO_ID_KEY, notify_error, notify_info, prism_layers
from ._link import link
from ._tasks import Progress, TaskCancelled, TaskPanel

if TYPE_CHECKING:
    import napari

__all__ = ["ExtractWidget", "extract_task"]


def extract_task(
    paths: list[Path],
    store_path: Path,
    model_name: str,
    device: str,
    hop: int,
    batch_size: int = 8,
    *,
    cancel_event: threading.Event,
) -> Generator[Progress, None, dict[str, Any]]:
    """Extract features of ``paths`` into ``store_path``, one chunk at a time.

    Yields ``(frames done, frames to do, message)``; returns ``{"key", "videos": {resolved
    path: video_id}, "failed": [(path, reason)]}``.
    """
    from prism_science.extraction import (
        check_store_compatible,
        extract_ranges,
        find_videos,
        prepare_video,
    )
    from prism_science.extraction.features import (
        feature_key,
        feature_provenance,
        load_encoder,
        model_feature_shape,
    )
    from prism_science.extraction.windows import WindowParams
    from prism_science.store import open_store

    yield 0, 1, f"loading {model_name}"
    model = load_encoder(model_name, device=device)
    params = WindowParams(hop=max(1, min(hop, int(model.num_frames))))
    params.check(int(model.num_frames))
    key = feature_key(model, params)
    provenance = feature_provenance(model, params)
    shape = model_feature_shape(model, params)
    sources, failed = find_videos(paths)
    videos: dict[str, str] = {}

    def check_cancel(_: int) -> None:
        if cancel_event.is_set():
            raise TaskCancelled()

    with open_store(store_path, mode="a") as store:
        check_store_compatible(store, key, provenance, (s.video_id for s in sources), False)
        jobs = []
        for source in sources:
            try:
                job = prepare_video(store, source, key, shape, provenance)
            except (PrismError, OSError) as exc:
                failed.append((str(source.path), str(exc)))
                continue
            videos[str(source.path.resolve())] = source.video_id
            if job is not None:
                jobs.append(job)
        total = max(sum(job.missing_frames for job in jobs), 1)
        done = 0
        for job in jobs:
            vid = job.source.video_id
            for start, stop in job.ranges:
                for piece in range(start, stop, job.chunk_frames):
                    end = min(piece + job.chunk_frames, stop)
                    check_cancel(0)
                    done += extract_ranges(model, store, vid, job.source.path, key, params,
                                           [(piece, end)], batch_size=batch_size,
                                           on_frames=check_cancel)
                    yield done, total, f"{vid}: frame {end} of {job.n_frames}"
            store.mark_complete(vid, key)
    return {"key": key, "videos": videos, "failed": failed}


def _model_names() -> list[str]:
    try:
        from prism_science.models import list_models

        return list(list_models())
    except (ImportError, PrismError):
        return ["default"]


class ExtractWidget(QWidget):
    """Model, device, store and window hop; extract with progress and cancel."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems(_model_names())
        form.addRow("model", self.model)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        form.addRow("device", self.device)
        self.hop = QSpinBox()
        self.hop.setRange(1, 64)
        self.hop.setValue(8)
        self.hop.setToolTip("frames between clip starts (sliding windows)")
        form.addRow("window hop", self.hop)
        row = QHBoxLayout()
        self.store = QLineEdit()
        self.store.setPlaceholderText("store (.zarr folder or .h5); default beside the video")
        row.addWidget(self.store, 1)
        browse = QPushButton("...")
        browse.clicked.connect(self._browse_store)
        row.addWidget(browse)
        form.addRow("store", row)
        layout.addLayout(form)
        row = QHBoxLayout()
        current = QPushButton("extract the project's videos")
        current.clicked.connect(lambda: self.extract())
        row.addWidget(current)
        folder = QPushButton("extract a folder...")
        folder.clicked.connect(self._extract_folder_dialog)
        row.addWidget(folder)
        layout.addLayout(row)
        self.task = TaskPanel()
        layout.addWidget(self.task)
        layout.addStretch(1)

    def default_store(self) -> Path | None:
        """The store path typed, else the project's store, else ``features.zarr`` beside the
        current video."""
        if self.store.text().strip():
            return Path(self.store.text().strip()).expanduser()
        if self.link.project is not None:
            return self.link.project.store_path
        session = self.link.session
        if session is not None and session.store is not None:
            return session.store[0]
        if session is not None and session.video_path:
            return Path(session.video_path).parent / "features.zarr"
        return None

    def extract(self, paths: list[Path] | None = None) -> None:
        """Extract ``paths`` (default: the project's videos, else the open prism videos) in a
        worker."""
        if paths is None:
            paths = self.link.videos()
        store = self.default_store()
        if not paths or store is None:
            notify_error(StoreError("open a video (or choose a folder) to extract features"))
            return
        self.task.run(extract_task, paths, store, self.model.currentText().strip(),
                      self.device.currentText(), self.hop.value(), what="extracting features",
                      on_result=lambda result: self._done(result, store))

    def _done(self, result: dict[str, Any], store: Path) -> None:
        for layer in prism_layers(self.viewer):
            session = layer.metadata["prism_session"]
            if not session.video_path:
                continue
            video_id = result["videos"].get(str(Path(session.video_path).resolve()))
            if video_id is not None:
                layer.metadata[STORE_KEY] = str(store)
                layer.metadata[VIDEO_ID_KEY] = video_id
        for _, session in self.link.sessions():  # the project's other videos too
            video_id = result["videos"].get(str(Path(session.video_path or "").resolve()))
            if session.video_path and video_id is not None:
                session.set_features(store, video_id)  # remembered when the video reopens
                session.maybe_autosave(force=True)
        message = f"features {result['key']} of {len(result['videos'])} video(s) in {store}"
        for path, reason in result["failed"]:
            notify_error(PrismError(f"{path}: {reason}"), "extraction")
        self.task.status.setText(message)
        notify_info(message)
        self.link.stores_changed()  # the Train section lists the new feature set at once

    def _browse_store(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Feature store (.zarr folder)")
        if path:
            self.store.setText(path)

    def _extract_folder_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of videos")
        if folder:
            self.extract([Path(folder)])
