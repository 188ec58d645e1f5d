"""Extract features: encode the project's videos (or the open ones, or a folder) into a
feature store, in a worker.

The work is the library's batch extraction (:mod:`prism_science.extraction`: record the video,
create the feature set, fill the missing chunks, mark it complete), done one chunk at a time so
that progress shows and cancel stops between chunks; a cancelled or failed run leaves the
finished chunks in the store, and the next run completes only what is missing.

With tracks drawn over the video (:mod:`napari_prism._tracks`), *per subject* extracts the
current video once per animal, from crops centred on its track
(:mod:`prism_science.extraction.subjects`: crop side given or 2.5 body lengths, optionally
rotated heading-up), into the feature sets ``<model>/<tokens>@<subject>`` that
``prism-science extract VIDEO --subjects TRACKS`` writes, with the same provenance.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtWidgets import (
    QCheckBox,
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
from ._tracks import tracks_view

if TYPE_CHECKING:
    import napari

__all__ = ["PER_SUBJECT", "WHOLE_FRAME", "ExtractWidget", "extract_task"]

WHOLE_FRAME = "whole frames"
PER_SUBJECT = "each subject (tracks)"


def extract_task(
    paths: list[Path],
    store_path: Path,
    model_name: str,
    device: str,
    hop: int,
    batch_size: int = 8,
    subjects: dict[str, Any] | None = None,
    *,
    cancel_event: threading.Event,
) -> Generator[Progress, None, dict[str, Any]]:
    """Extract features of ``paths`` into ``store_path``, one chunk at a time.

    ``subjects``: per-subject features of the one video in ``paths``, ``{"tracks": path of
    its tracks file, "crop_size": int or None (2.5 body lengths), "align_heading": bool}``;
    one feature set ``<key>@<subject>`` per subject of the tracks.

    Yields ``(frames done, frames to do, message)``; returns ``{"key", "videos": {resolved
    path: video_id}, "failed": [(path, reason)]}`` (``key``: the keys written, comma-separated).
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
    units: list[tuple[str, dict[str, Any], Any]] = [(key, provenance, None)]
    if subjects is not None:
        if len(sources) != 1:
            raise PrismError(f"per-subject features are extracted one video at a time (its "
                             f"tracks belong to one video); {len(sources)} videos were given")
        units = _subject_units(sources[0], subjects, key, provenance, int(model.image_size))

    def check_cancel(_: int) -> None:
        if cancel_event.is_set():
            raise TaskCancelled()

    with open_store(store_path, mode="a") as store:
        jobs = []
        for unit_key, unit_provenance, crop in units:
            check_store_compatible(store, unit_key, unit_provenance,
                                   (s.video_id for s in sources), False)
            for source in sources:
                try:
                    job = prepare_video(store, source, unit_key, shape, unit_provenance)
                except (PrismError, OSError) as exc:
                    failed.append((str(source.path), str(exc)))
                    continue
                videos[str(source.path.resolve())] = source.video_id
                if job is not None:
                    jobs.append((unit_key, crop, job))
        total = max(sum(job.missing_frames for _, _, job in jobs), 1)
        done = 0
        for unit_key, crop, job in jobs:
            vid = job.source.video_id
            what = vid if crop is None else f"{vid}@{crop.subject}"
            for start, stop in job.ranges:
                for piece in range(start, stop, job.chunk_frames):
                    end = min(piece + job.chunk_frames, stop)
                    check_cancel(0)
                    done += extract_ranges(model, store, vid, job.source.path, unit_key,
                                           params, [(piece, end)], batch_size=batch_size,
                                           on_frames=check_cancel, crop=crop)
                    yield done, total, f"{what}: frame {end} of {job.n_frames}"
            store.mark_complete(vid, unit_key)
    return {"key": ", ".join(unit_key for unit_key, _, _ in units), "videos": videos,
            "failed": failed}


def _subject_units(source: Any, subjects: dict[str, Any], key: str,
                   provenance: dict[str, Any],
                   image_size: int) -> list[tuple[str, dict[str, Any], Any]]:
    """(feature key, provenance, crop) of each subject of the tracks, as ``prism-science
    extract --subjects`` makes them (:func:`prism_science.extraction.subjects.subject_crops`)."""
    from prism_science.extraction.jobs import probe_video
    from prism_science.extraction.subjects import file_sha256, subject_crops, subject_key
    from prism_science.tracks import read_tracks

    tracks_path = Path(subjects["tracks"]).resolve()
    tracks = read_tracks(tracks_path, video=str(source.path))
    probe = probe_video(source)
    crops = subject_crops(tracks, probe.n_frames, (probe.height, probe.width), image_size,
                          crop_size=subjects.get("crop_size"),
                          align_heading=bool(subjects.get("align_heading")),
                          video=str(source.path))
    sha = file_sha256(tracks_path)
    return [(subject_key(key, crop.subject),
             {**provenance, "crop": crop.identity(sha), "tracks_path": str(tracks_path)}, crop)
            for crop in crops]


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
        self.per_subject = QComboBox()
        self.per_subject.addItems([WHOLE_FRAME, PER_SUBJECT])
        self.per_subject.setToolTip(
            "whole frames, or one feature set per animal from crops that follow its track "
            "(needs the video's tracks: Ethogram > open tracks... or track it)")
        self.per_subject.currentTextChanged.connect(lambda _: self._tracks_changed())
        form.addRow("features of", self.per_subject)
        self.crop_size = QSpinBox()
        self.crop_size.setRange(0, 4096)
        self.crop_size.setSpecialValueText("auto (2.5 body lengths)")
        self.crop_size.setSuffix(" px")
        self.crop_size.setToolTip("side of each subject's square crop (--crop-size); auto: "
                                  "2.5 times its median body length, at least 32 px")
        form.addRow("crop size", self.crop_size)
        self.align_heading = QCheckBox("rotate crops heading-up")
        self.align_heading.setToolTip("--align-heading: the tracks need headings")
        form.addRow("", self.align_heading)
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
        self.tracks = tracks_view(napari_viewer)
        self.tracks.on_change(self._tracks_changed)
        self._tracks_changed()

    def _tracks_changed(self) -> None:
        """Per subject is offered when the video has tracks."""
        has_tracks = self.tracks.tracks is not None
        item = self.per_subject.model().item(1)
        item.setEnabled(has_tracks)
        if not has_tracks and self.per_subject.currentText() == PER_SUBJECT:
            self.per_subject.setCurrentText(WHOLE_FRAME)
        per_subject = self.per_subject.currentText() == PER_SUBJECT
        self.crop_size.setEnabled(per_subject)
        self.align_heading.setEnabled(per_subject)

    def subject_options(self) -> dict[str, Any] | None:
        """The per-subject options chosen (``extract_task``'s ``subjects``), or None for whole
        frames."""
        if self.per_subject.currentText() != PER_SUBJECT or self.tracks.path is None:
            return None
        return {"tracks": self.tracks.path, "crop_size": self.crop_size.value() or None,
                "align_heading": self.align_heading.isChecked()}

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
        worker; per subject: the current video, one feature set per subject of its tracks."""
        subjects = self.subject_options()
        if subjects is not None:
            current = self.link.current_video()
            if paths is not None or current is None:
                notify_error(PrismError("per-subject features are extracted for the video "
                                        "whose tracks are shown; choose whole frames for a "
                                        "folder"), "extraction")
                return
            paths = [current]
        if paths is None:
            paths = self.link.videos()
        store = self.default_store()
        if not paths or store is None:
            notify_error(StoreError("open a video (or choose a folder) to extract features"))
            return
        what = "extracting features per subject" if subjects else "extracting features"
        self.task.run(extract_task, paths, store, self.model.currentText().strip(),
                      self.device.currentText(), self.hop.value(), 8, subjects, what=what,
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
