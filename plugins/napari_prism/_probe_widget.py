"""Train and predict: a probe from the labels of one or many videos, validation metrics, and
predictions of a video or of every video of a store, shown on the timeline.

The timeline shows the bouts of :func:`prism_science.probes.postprocess.binarize_predictions`
with the probe's thresholds and bout post-processing (min bout, gap filling), the same bouts
``prism-science probe predict`` saves; the two spin boxes here are the probe's ``postprocess_``.
"""

from __future__ import annotations

import math
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
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import PrismError, ProbeError, StoreError
from prism_science.session.training import (
    LabeledVideo,
    TrainResult,
    build_training_set,
    predict_stored_video,
    train_probe,
)

from ._context import STORE_KEY, VIDEO_ID_KEY, notify_error, notify_info, prism_layers
from ._link import link
from ._tasks import Progress, TaskCancelled, TaskPanel

if TYPE_CHECKING:
    import napari

__all__ = ["ProbeWidget", "predict_task", "train_task"]


def train_task(
    videos: list[LabeledVideo], key: str, kind: str, params: dict[str, Any],
    sources: tuple[str, ...], fully_labeled: bool, *, cancel_event: threading.Event,
) -> Generator[Progress, None, TrainResult]:
    """Worker: read features and labels, train with validation, refit on everything."""
    yield 0, 3, f"reading features of {len(videos)} video(s)"
    data = build_training_set(videos, key, sources, fully_labeled)
    if cancel_event.is_set():
        raise TaskCancelled()
    yield 1, 3, (f"training a {kind} probe on {len(data.X)} frames of {len(data.videos)} "
                 f"video(s), {len(data.behaviors)} behaviors")
    result = train_probe(kind, data, **params)
    yield 3, 3, "trained"
    return result


def predict_task(
    probe: Any, targets: list[tuple[Path, str]], key: str, name: str, write_store: bool,
    *, cancel_event: threading.Event,
) -> Generator[Progress, None, dict[tuple[str, str], tuple[Any, ...]]]:
    """Worker: predict each (store, video id); optionally write ``predictions/<name>``.

    Returns (store path, video id) -> ``predict_stored_video``'s (classes, probabilities,
    thresholds, post-processing).
    """
    from prism_science.store import open_store

    out = {}
    for index, (store_path, video_id) in enumerate(targets):
        if cancel_event.is_set():
            raise TaskCancelled()
        yield index, len(targets), f"predicting {video_id}"
        classes, proba, thresholds, post = predict_stored_video(probe, store_path, video_id, key)
        if write_store:
            with open_store(store_path, mode="a") as store:
                store.write_array(video_id, f"predictions/{name}", proba,
                                  {"classes": classes, "thresholds": thresholds,
                                   "postprocess": post, "key": key})
        out[(str(store_path), video_id)] = (classes, proba, thresholds, post)
    yield len(targets), len(targets), f"predicted {len(targets)} video(s)"
    return out


def format_metrics(result: TrainResult) -> str:
    """Validation metrics as a few lines of text."""
    if not result.metrics:
        return "no validation (too little labeled data to hold some out)"
    lines = [f"validation on {result.validation}:"]
    for name, m in result.metrics.items():
        if math.isnan(m["AP"]):
            lines.append(f"  {name}: no held-out positive")
        else:
            lines.append(f"  {name}: AP {m['AP']:.2f}  F1 {m['F1']:.2f}  "
                         f"({int(m['positives'])} positive frames)")
    return "\n".join(lines)


class ProbeWidget(QWidget):
    """Train a probe on the open videos' labels; predict the current video or a whole store."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        from prism_science.probes import PROBE_KINDS

        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        self.probe: Any = None
        self.probe_key: str | None = None
        layout = QVBoxLayout(self)
        form = QFormLayout()
        row = QHBoxLayout()
        self.key = QComboBox()
        row.addWidget(self.key, 1)
        refresh = QPushButton("refresh")
        refresh.clicked.connect(self.refresh_keys)
        row.addWidget(refresh)
        form.addRow("features", row)
        self.kind = QComboBox()
        self.kind.addItems(sorted(PROBE_KINDS))
        self.kind.setCurrentText("linear")
        form.addRow("probe", self.kind)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10000)
        self.epochs.setValue(100)
        form.addRow("max epochs", self.epochs)
        self.min_bout = QSpinBox()
        self.min_bout.setRange(1, 100000)
        self.min_bout.setToolTip("predicted bouts shorter than this many frames are dropped "
                                 "(--min-bout of `prism-science probe train`)")
        form.addRow("min bout (frames)", self.min_bout)
        self.max_gap = QSpinBox()
        self.max_gap.setRange(0, 100000)
        self.max_gap.setToolTip("gaps of at most this many frames between two predicted bouts "
                                "are filled (--max-gap)")
        form.addRow("fill gaps up to (frames)", self.max_gap)
        self.name = QLineEdit("probe")
        form.addRow("prediction name", self.name)
        layout.addLayout(form)
        self.use_curated = QCheckBox("use curated labels too")
        self.use_curated.setChecked(True)
        layout.addWidget(self.use_curated)
        self.fully_labeled = QCheckBox("frames without a bout are negatives")
        self.fully_labeled.setChecked(True)
        layout.addWidget(self.fully_labeled)
        self.store_labels = QCheckBox("also train on the store's other labeled videos")
        layout.addWidget(self.store_labels)
        row = QHBoxLayout()
        for text, slot in (("train", self.train), ("predict video", self.predict_current),
                           ("predict store", self.predict_store)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        layout.addLayout(row)
        row = QHBoxLayout()
        for text, slot in (("save probe...", self._save_dialog),
                           ("load probe...", self._load_dialog)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        layout.addLayout(row)
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        layout.addWidget(self.metrics)
        self.task = TaskPanel()
        layout.addWidget(self.task)
        layout.addStretch(1)
        self.link.on_session_changed(self.refresh_keys)
        self.refresh_keys()

    # ------------------------------------------------------------------ helpers
    def _layer_store(self, layer: Any) -> tuple[Path, str] | None:
        store, video_id = layer.metadata.get(STORE_KEY), layer.metadata.get(VIDEO_ID_KEY)
        return (Path(store), str(video_id)) if store and video_id else None

    def refresh_keys(self) -> None:
        """List the feature sets of the current video's store."""
        from prism_science.store import open_store

        keys: list[str] = []
        layer = self.link.layer
        where = self._layer_store(layer) if layer is not None else None
        if where is not None:
            try:
                with open_store(where[0], mode="r") as store:
                    keys = store.feature_keys(where[1])
            except PrismError as exc:
                notify_error(exc, "features")
        current = self.key.currentText()
        self.key.clear()
        self.key.addItems(keys)
        if current in keys:
            self.key.setCurrentText(current)

    def labeled_videos(self) -> list[LabeledVideo]:
        """Open videos with features (and, if ticked, the store's other labeled videos)."""
        from prism_science.session import LabelingSession
        from prism_science.store import open_store

        videos = []
        for layer in prism_layers(self.viewer):
            where = self._layer_store(layer)
            if where is not None:
                videos.append(LabeledVideo(layer.metadata["prism_session"], *where))
        if self.store_labels.isChecked() and videos:
            store_path = videos[0].store_path
            seen = {v.video_id for v in videos if v.store_path == store_path}
            with open_store(store_path, mode="r") as store:
                others = [v for v in store.video_ids() if v not in seen and (
                    store.has_item(v, "labels/manual") or store.has_item(v, "gui/session"))]
            for video_id in others:
                session = LabelingSession.from_store(store_path, video_id)
                videos.append(LabeledVideo(session, store_path, video_id))
        return videos

    # ------------------------------------------------------------------ actions
    def train(self) -> None:
        """Train in a worker; metrics and the probe arrive when done."""
        videos = self.labeled_videos()
        key = self.key.currentText()
        if not videos or not key:
            notify_error(StoreError("no video with features: extract features first "
                                    "(Extract features widget)"), "train")
            return
        sources = ("manual", "curated") if self.use_curated.isChecked() else ("manual",)
        params = {"max_epochs": self.epochs.value()}
        kind = self.kind.currentText()
        self.task.run(train_task, videos, key, kind, params, sources,
                      self.fully_labeled.isChecked(), what=f"training {kind} probe",
                      on_result=lambda result: self._trained(result, key))

    def postprocess(self) -> dict[str, int]:
        """The bout post-processing chosen in the widget (the probe's ``postprocess_``)."""
        return {"min_bout": self.min_bout.value(), "max_gap": self.max_gap.value()}

    def _trained(self, result: TrainResult, key: str) -> None:
        self.probe, self.probe_key = result.probe, key
        self.probe.postprocess_ = self.postprocess()
        self.metrics.setText(format_metrics(result))
        notify_info(f"{self.kind.currentText()} probe trained; predict to see it on the timeline")

    def _check_probe(self) -> str | None:
        if self.probe is None:
            notify_error(ProbeError("train or load a probe first"), "predict")
            return None
        # Kept on the probe, so a saved probe predicts the same bouts with the CLI.
        self.probe.postprocess_ = self.postprocess()
        return self.probe_key or self.key.currentText()

    def predict_current(self) -> None:
        """Predict the current video; the predictions appear on the timeline."""
        key = self._check_probe()
        layer = self.link.layer
        where = self._layer_store(layer) if layer is not None else None
        if key is None:
            return
        if where is None:
            notify_error(StoreError("this video has no features: extract them first"), "predict")
            return
        self.task.run(predict_task, self.probe, [where], key, self.name.text().strip() or "probe",
                      False, what="predicting", on_result=self._predicted)

    def predict_store(self) -> None:
        """Predict every video of the current store that has the features (saved in the store)."""
        from prism_science.store import open_store

        key = self._check_probe()
        layer = self.link.layer
        where = self._layer_store(layer) if layer is not None else None
        if key is None or where is None:
            if key is not None:
                notify_error(StoreError("this video has no store: extract features first"))
            return
        with open_store(where[0], mode="r") as store:
            targets = [(where[0], v) for v in store.video_ids() if key in store.feature_keys(v)
                       and store.feature_status(v, key) == "complete"]
        self.task.run(predict_task, self.probe, targets, key, self.name.text().strip() or "probe",
                      True, what="predicting the store", on_result=self._predicted)

    def _predicted(self, result: dict[tuple[str, str], tuple[Any, ...]]) -> None:
        name = self.name.text().strip() or "probe"
        for layer in prism_layers(self.viewer):
            where = self._layer_store(layer)
            if where is None:
                continue
            found = result.get((str(where[0]), where[1]))
            if found is not None:
                classes, proba, thresholds, post = found
                layer.metadata["prism_session"].set_predictions(name, classes, proba, thresholds,
                                                                post)
        self.link.timeline.prediction = name
        self.link.timeline.update()
        self.task.status.setText(f"predictions {name!r} of {len(result)} video(s)")

    def _save_dialog(self) -> None:
        from prism_science.probes import save_probe

        if self.probe is None:
            notify_error(ProbeError("train a probe first"), "save probe")
            return
        folder = QFileDialog.getExistingDirectory(self, "Save the probe into a folder")
        if folder:
            save_probe(self.probe, folder)

    def load(self, folder: str | Path) -> None:
        """Load a probe saved with ``save_probe`` (used by the dialog and by tests)."""
        from prism_science.probes import load_probe

        try:
            self.probe = load_probe(folder)
        except (PrismError, OSError) as exc:
            notify_error(exc, "load probe")
            return
        self.probe_key = None
        post = getattr(self.probe, "postprocess_", None) or {}
        self.min_bout.setValue(int(post.get("min_bout", 1)))
        self.max_gap.setValue(int(post.get("max_gap", 0)))
        notify_info(f"loaded probe from {folder}")

    def _load_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of a saved probe")
        if folder:
            self.load(folder)
