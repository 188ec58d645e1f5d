"""Train and predict: a probe from the labels of one or many videos, validation figures, and
predictions of a video or of every video of a store, shown on the timeline.

The worker functions only call the library's pipeline (:mod:`prism_science.pipeline`), the
same path as ``prism-science probe train`` / ``probe predict``: the same pooling of token
grids, validation split, thresholds and predictions layout in the store, so a probe trained
here predicts from the command line and the reverse. The timeline shows the bouts of
:func:`prism_science.probes.postprocess.binarize_predictions` with the probe's thresholds and
bout post-processing (the two spin boxes here are the probe's ``postprocess_``).

Behaviors named in words: with features extracted with ``--tokens frame_emb`` (a video-text
model's per-frame embeddings), "score these behavior names" scores the names typed in the box on
the current video (:func:`prism_science.pipeline.zero_shot.zero_shot_to_store`, the path of
``prism-science probe zero-shot``): zero-shot from prompt templates, or through the learned
prompts of the current probe when it is a ``prompt`` probe (trained with the kind ``prompt``).

Per subject: when the store has per-subject features (``<model>/<tokens>@<subject>``, from
*Extract features* on *each subject* or ``extract --subjects``), *per subject* trains one probe
on every (video, subject) unit, each subject's labels with its own features
(``train_probe(..., per_subject=True)``), and predicts each subject into
``predictions/<name>@<subject>`` (:func:`prism_science.pipeline.subjects.
predict_subjects_to_store`), shown in that subject's group of the timeline.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qtpy.QtGui import QFontDatabase
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
from prism_science.pipeline import (
    DEFAULT_PREDICTION_NAME,
    TrainResult,
    VideoPrediction,
    default_prediction_name,
    load_trained_probe,
    predict_to_store,
    predict_video,
    save_trained_probe,
    train_probe,
)

from ._context import STORE_KEY, VIDEO_ID_KEY, notify_error, notify_info, prism_layers
from ._link import link
from ._tasks import Progress, TaskCancelled, TaskPanel

if TYPE_CHECKING:
    import napari

    from prism_science.labels import LabelTable

__all__ = ["ProbeWidget", "format_metrics", "predict_task", "score_names_task", "train_task"]


def train_task(
    store_path: Path, tables: dict[str, LabelTable], key: str, kind: str,
    params: dict[str, Any], postprocess: dict[str, int], per_subject: bool = False, *,
    cancel_event: threading.Event,
) -> Generator[Progress, None, TrainResult]:
    """Worker: :func:`prism_science.pipeline.train_probe` on the sessions' label tables
    (``per_subject``: one unit per (video, subject), ``key`` the ``<model>/<tokens>`` base).

    The training runs in a helper thread whose per-epoch reports (``train_probe``'s
    ``progress``) come back here as ``(epoch, n_epochs, message)`` yields, so the panel shows
    the epochs with an ETA; cancelling stops the training at its next epoch.
    """
    from prism_science.store import open_store

    reports: queue.Queue[tuple[int, int]] = queue.Queue()
    outcome: dict[str, Any] = {}

    def progress(epoch: int, n_epochs: int) -> None:
        if cancel_event.is_set():
            raise TaskCancelled()
        reports.put((epoch, n_epochs))

    def run() -> None:
        try:
            with open_store(store_path, mode="r") as store:
                outcome["result"] = train_probe(
                    store, tables, kind, feature_key=key, params=params,
                    min_bout=postprocess["min_bout"], max_gap=postprocess["max_gap"],
                    progress=progress, per_subject=per_subject)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the worker below
            outcome["error"] = exc

    units = "each subject of " if per_subject else ""
    yield 0, 1, (f"training a {kind} probe on the labels of {units}{len(tables)} video(s), "
                 "with a validation split, then on all of them")
    thread = threading.Thread(target=run, name="prism-train", daemon=True)
    thread.start()
    while thread.is_alive() or not reports.empty():
        try:
            epoch, n_epochs = reports.get(timeout=0.05)
        except queue.Empty:
            continue
        yield epoch, n_epochs, f"training {kind} probe: epoch {epoch} of {n_epochs}"
    thread.join()
    if cancel_event.is_set() or isinstance(outcome.get("error"), TaskCancelled):
        raise TaskCancelled()
    if "error" in outcome:
        raise outcome["error"]
    yield 1, 1, "trained"
    return outcome["result"]


def predict_task(
    probe: Any, store_path: Path, video_ids: list[str], key: str | None, name: str,
    write_store: bool, per_subject: bool = False, *, cancel_event: threading.Event,
) -> Generator[Progress, None, dict[tuple[str, str], Any]]:
    """Worker: predict videos of a store; with ``write_store``, write ``predictions/<name>``
    (:func:`prism_science.pipeline.predict_to_store`, every video checked first). With
    ``per_subject`` each subject of each video is predicted into the store,
    ``predictions/<name>@<subject>``
    (:func:`prism_science.pipeline.subjects.predict_subjects_to_store`).

    Returns (store path, video id) -> :class:`prism_science.pipeline.VideoPrediction`, or
    with ``per_subject`` -> {subject: VideoPrediction}.
    """
    from prism_science.pipeline.subjects import predict_subjects_to_store
    from prism_science.store import open_store

    results: dict[str, Any] = {}
    with open_store(store_path, mode="a" if write_store or per_subject else "r") as store:
        if per_subject:
            yield 0, 1, (f"predicting each subject of {len(video_ids)} video(s) into "
                         f"predictions/{name}@<subject>")
            found = predict_subjects_to_store(probe, store, name, video_ids, key)
            for video_id in video_ids:
                results[video_id] = {unit.removeprefix(f"{video_id}@"): prediction
                                     for unit, prediction in found.items()
                                     if unit.startswith(f"{video_id}@")}
        elif write_store:
            yield 0, 1, f"predicting {len(video_ids)} video(s) into predictions/{name}"
            results = predict_to_store(probe, store, name, video_ids, key)
        else:
            for index, video_id in enumerate(video_ids):
                if cancel_event.is_set():
                    raise TaskCancelled()
                yield index, len(video_ids), f"predicting {video_id}"
                results[video_id] = predict_video(probe, store, video_id, key)
    yield len(video_ids), len(video_ids), f"predicted {len(video_ids)} video(s)"
    return {(str(store_path), video_id): found for video_id, found in results.items()}


def score_names_task(
    store_path: Path, video_id: str, key: str | None, behaviors: list[str], probe: Any,
    model: str | None, name: str, *, cancel_event: threading.Event,
) -> Generator[Progress, None, dict[tuple[str, str], VideoPrediction]]:
    """Worker: score behavior names on one video of a store and write them there
    (:func:`prism_science.pipeline.zero_shot.zero_shot_to_store`).

    ``probe``: a trained prompt probe (its learned prompts), or None (zero-shot templates).
    Returns (store path, video id) -> :class:`prism_science.pipeline.VideoPrediction`.
    """
    from prism_science.pipeline.zero_shot import zero_shot_to_store
    from prism_science.store import open_store

    how = "the prompt probe's learned prompts" if probe is not None else "prompt templates"
    yield 0, 1, f"scoring {', '.join(behaviors)} with {how}"
    with open_store(store_path, mode="a") as store:
        results = zero_shot_to_store(store, behaviors, name=name, model=model or None,
                                     probe=probe, video_ids=[video_id], feature_key=key)
    if cancel_event.is_set():
        raise TaskCancelled()
    yield 1, 1, f"scored {len(behaviors)} behavior(s)"
    return {(str(store_path), v): found for v, found in results.items()}


def _has_features(store: Any, video_id: str, key: str, per_subject: bool) -> bool:
    """Whether a video has complete features ``key`` (per subject: of every subject)."""
    from prism_science.extraction.subjects import split_subject_key

    if not per_subject:
        return key in store.feature_keys(video_id) and \
            store.feature_status(video_id, key) == "complete"
    base = split_subject_key(key)[0]
    keys = [k for k in store.feature_keys(video_id) if split_subject_key(k)[0] == base
            and split_subject_key(k)[1] is not None]
    return bool(keys) and all(store.feature_status(video_id, k) == "complete" for k in keys)


def format_metrics(result: TrainResult) -> str:
    """Thresholds, validation figures and warnings of a training run, as text."""
    lines = [result.format()]
    if result.warnings:
        lines.append("warnings:")
        lines += [f"- {message}" for message in result.warnings]
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
        self.result: TrainResult | None = None
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
        self.name = QLineEdit(DEFAULT_PREDICTION_NAME)
        form.addRow("prediction name", self.name)
        self.text_model = QLineEdit("")
        self.text_model.setPlaceholderText("the features' model")
        self.text_model.setToolTip("prompt probe and behavior names: the video-text model (name "
                                   "or weights folder) that extracted the frame_emb features")
        form.addRow("text model", self.text_model)
        layout.addLayout(form)
        self.use_curated = QCheckBox("use curated labels too")
        self.use_curated.setChecked(True)
        layout.addWidget(self.use_curated)
        self.fully_labeled = QCheckBox("frames without a bout are negatives")
        self.fully_labeled.setChecked(True)
        layout.addWidget(self.fully_labeled)
        self.store_labels = QCheckBox("also train on the store's other labeled videos")
        layout.addWidget(self.store_labels)
        self.per_subject = QCheckBox("per subject: each animal's labels with its own features")
        self.per_subject.setToolTip(
            "for per-subject features (<model>/<tokens>@<subject>): one training unit per "
            "(video, subject); predictions per subject (<name>@<subject>)")
        self.per_subject.setEnabled(False)
        layout.addWidget(self.per_subject)
        self.key.currentTextChanged.connect(self._key_changed)
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
        row = QHBoxLayout()
        self.behavior_names = QLineEdit("")
        self.behavior_names.setPlaceholderText("chasing, grooming")
        self.behavior_names.setToolTip(
            "behaviors named in words, scored on frame_emb features: zero-shot from prompt "
            "templates, or with the learned prompts of a prompt probe (new names too)")
        row.addWidget(self.behavior_names, 1)
        score = QPushButton("score these behavior names")
        score.clicked.connect(self.score_names)
        row.addWidget(score)
        layout.addLayout(row)
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.metrics.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
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
        self._key_changed()

    def _key_changed(self, _: str = "") -> None:
        """Per subject is offered for per-subject features (and ticked when one is chosen)."""
        from prism_science.extraction.subjects import split_subject_key

        subject = split_subject_key(self.key.currentText())[1]
        self.per_subject.setEnabled(subject is not None)
        self.per_subject.setChecked(subject is not None)

    def _probe_per_subject(self) -> bool:
        """Whether the current probe was trained per subject (it predicts per subject)."""
        provenance = getattr(self.probe, "feature_provenance_", None) or {}
        return bool(provenance.get("per_subject"))

    def _current_store(self) -> Path | None:
        """The store of the current video, else of the first open video that has one."""
        layers = [self.link.layer] if self.link.layer is not None else []
        for layer in [*layers, *prism_layers(self.viewer)]:
            where = self._layer_store(layer)
            if where is not None:
                return where[0]
        return None

    def label_tables(self, store_path: Path) -> tuple[dict[str, LabelTable], list[str]]:
        """Label tables of the open videos and the project's other videos with features in
        ``store_path`` (and, if ticked, of the store's other labeled videos); the names of
        labeled videos of other stores.

        Videos without a bout are left out (with "frames without a bout are negatives" they
        would count as videos where nothing happens).
        """
        from prism_science.session import LabelingSession
        from prism_science.store import open_store

        sources = ("manual", "curated") if self.use_curated.isChecked() else ("manual",)
        fully = self.fully_labeled.isChecked()
        tables: dict[str, LabelTable] = {}
        elsewhere: list[str] = []
        for name, session in self.link.sessions():  # open videos, then the project's others
            where = session.features
            if where is None:
                continue
            table = session.to_table(sources, fully_labeled=fully, video_id=where[1])
            if not table.intervals:
                continue
            if Path(where[0]).resolve() != Path(store_path).resolve():
                elsewhere.append(name)
                continue
            tables[where[1]] = table
        if self.store_labels.isChecked():
            with open_store(store_path, mode="r") as store:
                others = [v for v in store.video_ids() if v not in tables and (
                    store.has_item(v, "labels/manual") or store.has_item(v, "gui/session"))]
            for video_id in others:
                session = LabelingSession.from_store(store_path, video_id)
                table = session.to_table(sources, fully_labeled=fully, video_id=video_id)
                if table.intervals:
                    tables[video_id] = table
        return tables, elsewhere

    # ------------------------------------------------------------------ actions
    def train(self) -> None:
        """Train in a worker; validation figures and the probe arrive when done."""
        store_path = self._current_store()
        key = self.key.currentText()
        if store_path is None or not key:
            notify_error(StoreError("no video with features: extract features first "
                                    "(Extract features widget)"), "train")
            return
        try:
            tables, elsewhere = self.label_tables(store_path)
        except PrismError as exc:
            notify_error(exc, "train")
            return
        if not tables:
            notify_error(ProbeError("no labeled video with features in "
                                    f"{store_path}: label some bouts first"), "train")
            return
        if elsewhere:
            notify_info(f"training on the videos of {store_path}; left out (features in "
                        f"another store): {', '.join(elsewhere)}")
        params: dict[str, Any] = {"max_epochs": self.epochs.value()}
        kind = self.kind.currentText()
        if kind == "prompt" and self.text_model.text().strip():
            params["text_model"] = self.text_model.text().strip()
        per_subject = self.per_subject.isChecked()
        if per_subject:
            from prism_science.extraction.subjects import split_subject_key

            key = split_subject_key(key)[0]
        what = f"training {kind} probe" + (" per subject" if per_subject else "")
        self.task.run(train_task, store_path, tables, key, kind, params, self.postprocess(),
                      per_subject, what=what,
                      on_result=lambda result: self._trained(result, key))

    def postprocess(self) -> dict[str, int]:
        """The bout post-processing chosen in the widget (the probe's ``postprocess_``)."""
        return {"min_bout": self.min_bout.value(), "max_gap": self.max_gap.value()}

    def _trained(self, result: TrainResult, key: str) -> None:
        self.probe, self.probe_key, self.result = result.probe, key, result
        self.metrics.setText(format_metrics(result))
        notify_info(f"{result.kind} probe trained; predict to see it on the timeline")

    def _check_probe(self) -> str | None:
        if self.probe is None:
            notify_error(ProbeError("train or load a probe first"), "predict")
            return None
        # Kept on the probe, so a saved probe predicts the same bouts with the CLI.
        self.probe.postprocess_ = self.postprocess()
        return self.probe_key or self.key.currentText()

    def _name(self) -> str:
        return self.name.text().strip() or DEFAULT_PREDICTION_NAME

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
        self.task.run(predict_task, self.probe, where[0], [where[1]], key, self._name(), False,
                      self._probe_per_subject(), what="predicting", on_result=self._predicted)

    def predict_store(self) -> None:
        """Predict every video of the current store whose features are complete, into the
        store (``predictions/<name>``, as ``prism-science probe predict`` writes them)."""
        from prism_science.store import open_store

        key = self._check_probe()
        layer = self.link.layer
        where = self._layer_store(layer) if layer is not None else None
        if key is None or where is None:
            if key is not None:
                notify_error(StoreError("this video has no store: extract features first"))
            return
        per_subject = self._probe_per_subject()
        with open_store(where[0], mode="r") as store:
            ids = store.video_ids()
            targets = [v for v in ids if _has_features(store, v, key, per_subject)]
        skipped = [v for v in ids if v not in targets]
        if skipped:
            notify_info(f"{len(skipped)} video(s) of {where[0]} have no complete features "
                        f"{key!r} and are not predicted: {', '.join(skipped)}")
        self.task.run(predict_task, self.probe, where[0], targets, key, self._name(), True,
                      per_subject, what="predicting the store", on_result=self._predicted)

    def score_names(self) -> None:
        """Score the behavior names typed in the box on the current video, into its store
        (``predictions/<name>``) and onto the timeline: with the current probe's learned prompts
        when it is a prompt probe, else zero-shot (prediction name ``zero-shot``)."""
        from prism_science.pipeline.zero_shot import DEFAULT_ZERO_SHOT_NAME, parse_behaviors
        from prism_science.probes import PromptProbe

        layer = self.link.layer
        where = self._layer_store(layer) if layer is not None else None
        if where is None:
            notify_error(StoreError("this video has no features: extract them with the token "
                                    "mode frame_emb first"), "score behavior names")
            return
        try:
            names = parse_behaviors(self.behavior_names.text())
        except PrismError as exc:
            notify_error(exc, "score behavior names")
            return
        probe = self.probe if isinstance(self.probe, PromptProbe) else None
        if probe is not None:
            probe.postprocess_ = self.postprocess()
            name, key = self._name(), self.probe_key
        else:
            name = DEFAULT_ZERO_SHOT_NAME
            current = self.key.currentText()
            key = current if current.endswith("/frame_emb") else None
        self.task.run(score_names_task, where[0], where[1], key, names, probe,
                      self.text_model.text().strip() or None, name,
                      what="scoring behavior names",
                      on_result=lambda result: self._predicted(result, name))

    def _predicted(self, result: dict[tuple[str, str], Any], name: str | None = None) -> None:
        from prism_science.pipeline.subjects import subject_prediction_name

        name = name or self._name()
        for _, session in self.link.sessions():  # open videos, then the project's others
            where = session.features
            if where is None:
                continue
            found = result.get((str(where[0]), where[1]))
            if isinstance(found, dict):  # per subject: each subject's own prediction set
                for subject, prediction in found.items():
                    session.set_predictions(
                        subject_prediction_name(name, subject), prediction.behaviors,
                        prediction.scores, prediction.thresholds, prediction.postprocess)
            elif found is not None:
                session.set_predictions(
                    name, found.behaviors, found.scores, found.thresholds, found.postprocess)
        self.link.timeline.prediction = name
        self.link.timeline.update()
        self.task.status.setText(f"predictions {name!r} of {len(result)} video(s)")

    def _save_dialog(self) -> None:
        if self.probe is None:
            notify_error(ProbeError("train a probe first"), "save probe")
            return
        folder = QFileDialog.getExistingDirectory(self, "Save the probe into a folder")
        if folder:
            self.save(folder)

    def save(self, folder: str | Path) -> Path:
        """Save the probe with its validation figures (``probe.json``, ``probe.safetensors``,
        ``validation.json``), the folder ``prism-science probe predict --probe`` reads."""
        self.probe.postprocess_ = self.postprocess()
        return save_trained_probe(self.probe, folder)

    def load(self, folder: str | Path) -> None:
        """Load a probe folder (used by the dialog and by tests); predictions are then named
        after the folder, as ``prism-science probe predict`` names them."""
        try:
            self.probe = load_trained_probe(folder)
        except (PrismError, OSError) as exc:
            notify_error(exc, "load probe")
            return
        self.result = None
        self.probe_key = (getattr(self.probe, "feature_provenance_", None) or {}).get(
            "feature_key")
        post = getattr(self.probe, "postprocess_", None) or {}
        self.min_bout.setValue(int(post.get("min_bout", 1)))
        self.max_gap.setValue(int(post.get("max_gap", 0)))
        self.name.setText(default_prediction_name(folder))
        validation = self.probe.validation_
        self.metrics.setText(
            f"loaded; validation: {validation['validation']['description']}"
            if validation else "loaded (no validation.json in the folder)")
        notify_info(f"loaded probe from {folder}")

    def _load_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of a saved probe")
        if folder:
            self.load(folder)
