"""Probes on a feature store: gather training data, train, predict into the store, evaluate.

The store layout written here (per video, next to the features)::

    videos/<id>/predictions/<name>/scores   (T, K) float32 probabilities
    videos/<id>/predictions/<name>/binary   (T, K) int8 0/1 after thresholds + bout filtering
    videos/<id>/labels/predicted/<name>     the binary predictions as a label table (JSON)

Both arrays carry attrs: ``behaviors``, ``thresholds``, ``postprocess``, ``probe_kind``,
``probe_dir``, ``feature_key`` and the features' ``provenance`` summary.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import ProbeError
from prism_science.probes.attention import AttentionProbe
from prism_science.probes.base import BaseProbe, summarize_provenance
from prism_science.probes.io import make_probe
from prism_science.probes.postprocess import binarize_predictions, postprocess_settings

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"


@dataclass
class StoreData:
    """Features and labels of several videos, stacked along frames.

    Attributes
    ----------
    X : np.ndarray
        ``(N, *feature_shape)`` float32, videos one after another in time order.
    y : np.ndarray or None
        ``(N, K)`` int8 in {-1, 0, 1}, or None when no labels were asked for.
    groups : np.ndarray
        ``(N,)`` int64 index into ``video_ids`` of each row.
    video_ids : list of str
    behaviors : list of str
        Column names of ``y``.
    feature_key : str
    provenance : dict
        The features' provenance as stored (of the first video).
    fps : float or None
        Frame rate of the first video.
    """

    X: np.ndarray
    y: np.ndarray | None
    groups: np.ndarray
    video_ids: list[str]
    behaviors: list[str]
    feature_key: str
    provenance: dict[str, Any]
    fps: float | None = None

    def rows(self, video_id: str) -> slice:
        """Rows of one video."""
        index = self.video_ids.index(video_id)
        rows = np.flatnonzero(self.groups == index)
        return slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else slice(0, 0)


def _pool_tokens(values: np.ndarray, probe_or_kind: BaseProbe | str) -> np.ndarray:
    """Token features ``(T, ..., D)`` averaged to ``(T, D)`` for every probe but attention."""
    is_attention = probe_or_kind == "attention" or isinstance(probe_or_kind, AttentionProbe)
    if values.ndim > 2 and not is_attention:
        return values.reshape(len(values), -1, values.shape[-1]).mean(1)
    return values


def _resolve_key(store: Any, video_id: str, feature_key: str | None) -> str:
    keys = store.feature_keys(video_id)
    if feature_key is not None:
        if feature_key not in keys:
            raise ProbeError(
                f"{store.path}: video {video_id!r} has no features {feature_key!r} (has "
                f"{keys or 'none'}); extract them with `prism-science extract` or pick --features."
            )
        return feature_key
    if len(keys) != 1:
        raise ProbeError(
            f"{store.path}: video {video_id!r} has {len(keys)} feature sets ({keys or 'none'}); "
            "choose one with --features KEY."
        )
    return keys[0]


def load_store_data(
    store: Any,
    label_name: str | None,
    feature_key: str | None = None,
    video_ids: Sequence[str] | None = None,
    behaviors: Sequence[str] | None = None,
    pool_for: BaseProbe | str = "attention",
) -> StoreData:
    """Stack the features (and label matrices) of the store's videos.

    Parameters
    ----------
    store : FeatureStore
        Open store (:func:`prism_science.store.open_store`).
    label_name : str or None
        Label set to read with :func:`prism_science.labels.load_labels`; videos without it are
        skipped. None: features only (all requested videos).
    feature_key : str, optional
        Feature set; default the only one of each video.
    video_ids : sequence of str, optional
        Default every video of the store.
    behaviors : sequence of str, optional
        Column order of ``y``; default every behavior of the label sets, in order of appearance.
    pool_for : BaseProbe or str
        Token features are averaged over tokens unless this is the attention probe (or kind).

    Returns
    -------
    StoreData
    """
    from prism_science.labels import load_labels, to_frame_matrix
    from prism_science.labels.store_io import list_labels

    ids = list(video_ids) if video_ids is not None else store.video_ids()
    tables = {}
    if label_name is not None:
        for video_id in ids:
            if label_name in list_labels(store, video_id):
                tables[video_id] = load_labels(store, video_id, label_name)
            elif video_ids is not None:
                raise ProbeError(
                    f"{store.path}: video {video_id!r} has no label set {label_name!r}; import "
                    "labels with `prism-science labels import` or leave the video out."
                )
        ids = [v for v in ids if v in tables]
        if not ids:
            raise ProbeError(
                f"{store.path}: no video has the label set {label_name!r}; import labels first "
                "(`prism-science labels import FILE --store STORE --name NAME`)."
            )
    if not ids:
        raise ProbeError(f"{store.path}: the store has no video; run `prism-science extract`.")
    if behaviors is None and tables:
        seen: dict[str, None] = {}
        for table in tables.values():
            seen.update(dict.fromkeys(table.behaviors().names))
        behaviors = list(seen)
    behaviors = [str(b) for b in behaviors or []]
    xs, ys, groups = [], [], []
    key = None
    provenance: dict[str, Any] = {}
    fps = None
    for index, video_id in enumerate(ids):
        video_key = _resolve_key(store, video_id, feature_key or key)
        if key is not None and video_key != key:
            raise ProbeError(
                f"{store.path}: video {video_id!r} has features {video_key!r}, the others "
                f"{key!r}; choose one with --features."
            )
        key = video_key
        features = store.read_features(video_id, key)
        values = _pool_tokens(features.values, pool_for)
        if index == 0:
            provenance = dict(features.provenance)
            fps = float(store.video_info(video_id).fps) or None
        if video_id in tables:
            y = to_frame_matrix(tables[video_id], behaviors, n_frames=len(values))
            ys.append(y)
        xs.append(values)
        groups.append(np.full(len(values), index, np.int64))
    y_all = np.concatenate(ys) if ys else None
    return StoreData(np.concatenate(xs), y_all, np.concatenate(groups), ids, behaviors,
                     str(key), provenance, fps)


def train_probe(
    store: Any,
    label_name: str,
    kind: str = "linear",
    feature_key: str | None = None,
    video_ids: Sequence[str] | None = None,
    behaviors: Sequence[str] | None = None,
    params: dict[str, Any] | None = None,
    min_bout: int = 1,
    max_gap: int = 0,
) -> tuple[BaseProbe, StoreData]:
    """Train a probe of ``kind`` on the labeled frames of a store.

    Parameters
    ----------
    store : FeatureStore
    label_name : str
        Label set (e.g. ``"manual"``).
    kind : str
        ``linear``, ``mlp``, ``attention`` or ``temporal``.
    feature_key, video_ids, behaviors
        As in :func:`load_store_data`.
    params : dict, optional
        Probe hyper-parameters (e.g. ``{"class_weight": "balanced", "random_state": 0}``).
    min_bout, max_gap : int
        Bout post-processing kept with the probe and applied by :func:`predict_to_store`.

    Returns
    -------
    (probe, data)
        The fitted probe (``feature_provenance_`` and ``postprocess_`` set) and its data.
    """
    probe = make_probe(kind, **(params or {}))
    data = load_store_data(store, label_name, feature_key, video_ids, behaviors, pool_for=kind)
    X, y, groups = data.X, data.y, data.groups
    if kind != "temporal":  # frame-wise probes need only the labeled frames
        keep = (y >= 0).any(1)
        X, y, groups = X[keep], y[keep], groups[keep]
    if not (y >= 0).any():
        raise ProbeError(
            f"{store.path}: label set {label_name!r} labels no frame of videos {data.video_ids}; "
            "label some bouts first."
        )
    provenance = dict(data.provenance, feature_key=data.feature_key)
    probe.fit(X, y, groups=groups, behavior_names=data.behaviors,
              feature_provenance=summarize_provenance(provenance, data.feature_key))
    probe.postprocess_ = {"min_bout": int(min_bout), "max_gap": int(max_gap)}
    return probe, data


def predict_to_store(
    probe: BaseProbe,
    store: Any,
    name: str,
    video_ids: Sequence[str] | None = None,
    feature_key: str | None = None,
    probe_dir: str | Path | None = None,
    save_label_table: bool = True,
) -> dict[str, np.ndarray]:
    """Predict every video and write scores, binary predictions and a label table to the store.

    Parameters
    ----------
    probe : BaseProbe
        Fitted multi-label probe (e.g. from :func:`prism_science.probes.load_probe`).
    store : FeatureStore
        Opened writable.
    name : str
        Prediction set name (``predictions/<name>``, ``labels/predicted/<name>``).
    video_ids : sequence of str, optional
        Default every video of the store.
    feature_key : str, optional
        Default the key the probe was trained on, else the video's only feature set.
    probe_dir : str or Path, optional
        Recorded in the attrs.
    save_label_table : bool
        Also write the binary predictions as label set ``predicted/<name>``.

    Returns
    -------
    dict
        video id -> ``(T, K)`` binary predictions.

    Raises
    ------
    ProbeError
        Features from another model or token mode than the probe's (see
        :meth:`BaseProbe.check_features`), or a multi-class probe.
    """
    if not probe.multilabel_:
        raise ProbeError(
            "predict_to_store needs a multi-label probe (trained on a frames x behaviors "
            "matrix); this one is multi-class. Retrain it with `prism-science probe train`."
        )
    trained = getattr(probe, "feature_provenance_", None) or {}
    key_hint = feature_key or trained.get("feature_key")
    ids = list(video_ids) if video_ids is not None else store.video_ids()
    post = postprocess_settings(getattr(probe, "postprocess_", None))
    behaviors = [str(c) for c in probe.classes_.tolist()]
    results = {}
    for video_id in ids:
        keys = store.feature_keys(video_id)
        key = _resolve_key(store, video_id, key_hint if key_hint in keys else feature_key)
        features = store.read_features(video_id, key)
        probe.check_features(features.provenance, f"features {key!r} of video {video_id!r}")
        values = _pool_tokens(features.values, probe)
        scores = probe.predict_proba(values).astype(np.float32)
        # From the saved float32 scores, as the plugin's timeline does: both show the same bouts.
        binary = binarize_predictions(scores, probe.thresholds_, post).astype(np.int8)
        attrs = {
            "behaviors": behaviors,
            "thresholds": [float(t) for t in probe.thresholds_],
            "postprocess": post,
            "probe_kind": type(probe).__name__,
            "probe_dir": str(probe_dir) if probe_dir is not None else None,
            "feature_key": key,
            "provenance": summarize_provenance(features.provenance, key),
        }
        store.write_array(video_id, f"{PREDICTIONS}/{name}/scores", scores, attrs)
        store.write_array(video_id, f"{PREDICTIONS}/{name}/binary", binary, attrs)
        if save_label_table:
            _save_prediction_table(store, video_id, name, binary, scores, behaviors)
        results[video_id] = binary
        logger.info("video %s: %d frames predicted into %s/%s", video_id, len(binary),
                    PREDICTIONS, name)
    return results


def _save_prediction_table(store: Any, video_id: str, name: str, binary: np.ndarray,
                           scores: np.ndarray, behaviors: list[str]) -> None:
    from prism_science.labels import from_frame_matrix, save_labels

    info = store.video_info(video_id)
    table = from_frame_matrix(
        binary, behaviors, fps=float(info.fps) or None, timestamps=info.timestamps,
        annotator="prism-science", source="predicted", scores=scores, video_id=video_id,
    )
    save_labels(store, video_id, table, f"predicted/{name}")


def load_predictions(store: Any, video_id: str, name: str
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(scores (T, K) float32, binary (T, K) int8, attrs)`` of a prediction set."""
    base = f"{PREDICTIONS}/{name}"
    if not store.has_item(video_id, f"{base}/scores"):
        raise ProbeError(
            f"{store.path}: video {video_id!r} has no predictions {name!r}; run "
            f"`prism-science probe predict --probe DIR --store {store.path} --name {name}`."
        )
    scores = store.read_array(video_id, f"{base}/scores")
    binary = store.read_array(video_id, f"{base}/binary")
    return scores, binary, store.read_array_attrs(video_id, f"{base}/scores")


def evaluate_store(
    store: Any,
    label_name: str,
    prediction_name: str,
    video_ids: Sequence[str] | None = None,
    iou_thresholds: Sequence[float] = (0.5,),
) -> tuple[Any, dict[str, Any]]:
    """Evaluate stored predictions against a label set, over the videos that have both.

    Returns
    -------
    (report, arrays)
        An :class:`~prism_science.evaluation.EvaluationReport` and the stacked ``y_true``,
        ``scores``, ``y_pred``, ``groups``, ``video_ids`` and ``fps`` (for plots).
    """
    from prism_science.evaluation import evaluate_predictions
    from prism_science.labels import load_labels, to_frame_matrix
    from prism_science.labels.store_io import list_labels

    ids = list(video_ids) if video_ids is not None else store.video_ids()
    truths, scores_all, preds, groups, used = [], [], [], [], []
    behaviors: list[str] | None = None
    for video_id in ids:
        if label_name not in list_labels(store, video_id) or not store.has_item(
            video_id, f"{PREDICTIONS}/{prediction_name}/scores"
        ):
            continue
        scores, binary, attrs = load_predictions(store, video_id, prediction_name)
        if behaviors is None:
            behaviors = list(attrs["behaviors"])
        elif list(attrs["behaviors"]) != behaviors:
            raise ProbeError(
                f"{store.path}: predictions {prediction_name!r} of video {video_id!r} have "
                f"behaviors {attrs['behaviors']}, other videos {behaviors}; predict all videos "
                "with the same probe."
            )
        table = load_labels(store, video_id, label_name)
        truth = to_frame_matrix(table, behaviors, n_frames=len(scores))
        truths.append(truth)
        scores_all.append(scores)
        preds.append(binary)
        groups.append(np.full(len(scores), len(used), np.int64))
        used.append(video_id)
    if not used:
        raise ProbeError(
            f"{store.path}: no video has both the label set {label_name!r} and predictions "
            f"{prediction_name!r}; run `prism-science probe predict` first."
        )
    y_true, scores, y_pred = np.concatenate(truths), np.concatenate(scores_all), np.concatenate(
        preds)
    group_ids = np.concatenate(groups)
    attrs = store.read_array_attrs(used[0], f"{PREDICTIONS}/{prediction_name}/scores")
    report = evaluate_predictions(
        y_true, scores, y_pred, behaviors, group_ids, iou_thresholds,
        thresholds=np.asarray(attrs.get("thresholds")) if attrs.get("thresholds") else None,
        metadata={"store": str(store.path), "labels": label_name,
                  "predictions": prediction_name, "videos": ", ".join(used),
                  "probe": attrs.get("probe_kind")},
    )
    fps = float(store.video_info(used[0]).fps) or None
    return report, {"y_true": y_true, "scores": scores, "y_pred": y_pred, "groups": group_ids,
                    "video_ids": used, "fps": fps}
