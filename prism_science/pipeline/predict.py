"""Predictions of a probe, and their one layout in the store.

Per video, next to the features::

    videos/<id>/predictions/<name>/scores   (T, K) float32 probabilities
    videos/<id>/predictions/<name>/binary   (T, K) int8 0/1 after thresholds + bout filtering
    videos/<id>/labels/predicted/<name>     the binary predictions as a label table (JSON)

Both arrays carry attrs ``behaviors``, ``thresholds``, ``postprocess`` and, when a probe wrote
them, ``probe_kind``, ``probe_dir``, ``feature_key`` and the features' ``provenance`` summary.
``binary`` is :func:`prism_science.probes.binarize_predictions` of the saved float32
``scores``, which is what the plugin's timeline shows -- for a multi-label probe. A multi-class
(softmax) probe's ``binary`` is its top-1 decision (one behavior per frame, the argmax of the
scores, then the bout post-processing), and the attrs say ``decision: "top1"``.

The CLI (``probe predict``), the demo, the plugin's "predict store" and a labeling session
saved into its store (:meth:`prism_science.session.LabelingSession.save`) all write through
:func:`write_predictions`. Stores written by earlier plugin versions hold a single array at
``predictions/<name>`` (attrs ``classes``, ``thresholds``, ``postprocess``):
:func:`load_predictions` reads it, and :func:`write_predictions` replaces it with this layout.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import ProbeError, StoreError
from prism_science.pipeline.data import pool_features, resolve_feature_key
from prism_science.probes.base import BaseProbe, summarize_provenance
from prism_science.probes.postprocess import (
    binarize_predictions,
    postprocess_binary,
    postprocess_settings,
)

logger = logging.getLogger(__name__)

PREDICTIONS = "predictions"
"""Group of the prediction sets of a video."""
DEFAULT_PREDICTION_NAME = "probe"
"""Prediction set name when no probe folder names it (the plugin's default)."""
WRITE_ID = "write_id"
"""Attribute of ``scores`` and ``binary`` naming the write that made them (the same in both)."""


def default_prediction_name(probe_dir: str | Path | None = None) -> str:
    """The prediction set name of a probe: its folder's name, else ``"probe"``."""
    if probe_dir is None:
        return DEFAULT_PREDICTION_NAME
    return Path(probe_dir).resolve().name or DEFAULT_PREDICTION_NAME


@dataclass
class VideoPrediction:
    """A probe's output on one video.

    Attributes
    ----------
    scores : np.ndarray
        ``(T, K)`` float32 probabilities.
    binary : np.ndarray
        ``(T, K)`` int8, :func:`~prism_science.probes.binarize_predictions` of ``scores``.
    behaviors : list of str
    thresholds : list of float
    postprocess : dict
        ``{"min_bout": int, "max_gap": int}``.
    feature_key : str or None
    """

    scores: np.ndarray
    binary: np.ndarray
    behaviors: list[str]
    thresholds: list[float]
    postprocess: dict[str, int]
    feature_key: str | None = None


DECISIONS = ("threshold", "top1")
"""How scores become ``binary``: per-behavior thresholds (multi-label) or the argmax
(multi-class)."""


def decision_of(probe: BaseProbe) -> str:
    """``"threshold"`` for a multi-label probe, ``"top1"`` for a multi-class (softmax) one."""
    return "threshold" if getattr(probe, "multilabel_", True) else "top1"


def top1_binary(scores: np.ndarray, postprocess: dict[str, int] | None = None) -> np.ndarray:
    """One-hot argmax of ``scores`` (T, K), then bout post-processing: (T, K) int64 0/1."""
    scores = np.asarray(scores)
    onehot = np.zeros(scores.shape, np.int64)
    if scores.size:
        onehot[np.arange(len(scores)), np.argmax(scores, axis=1)] = 1
    post = postprocess_settings(postprocess)
    return postprocess_binary(onehot, post["min_bout"], post["max_gap"])


def _thresholds(probe: BaseProbe) -> list[float]:
    n = len(probe.classes_)
    if probe.thresholds_ is None:
        return [0.5] * n
    return [float(t) for t in np.broadcast_to(np.asarray(probe.thresholds_, float), (n,))]


def check_predictable(
    probe: BaseProbe, store: Any, video_ids: Sequence[str], feature_key: str | None = None
) -> dict[str, str]:
    """Check every video before anything is predicted or written.

    A video passes when it has the feature set (``feature_key``, else the one the probe was
    trained on when present, else its only one), complete, from the model, weights and token
    mode the probe was trained on (:meth:`BaseProbe.check_features`).

    Returns
    -------
    dict
        video id -> feature key.

    Raises
    ------
    ProbeError
        Listing every video that fails and why; nothing has been written.
    """
    trained = getattr(probe, "feature_provenance_", None) or {}
    hint = feature_key or trained.get("feature_key")
    keys: dict[str, str] = {}
    problems: list[str] = []
    for video_id in video_ids:
        try:
            if not store.has_video(video_id):
                raise StoreError(f"video {video_id!r} is not in the store")
            available = store.feature_keys(video_id)
            key = resolve_feature_key(store, video_id, hint if hint in available
                                      else feature_key)
            status = store.feature_status(video_id, key)
            if status != "complete":
                raise StoreError(f"features {key!r} of video {video_id!r} are {status} (rerun "
                                 "`prism-science extract` to complete them)")
            probe.check_features(store.feature_provenance(video_id, key),
                                 f"features {key!r} of video {video_id!r}")
        except (ProbeError, StoreError) as exc:
            problems.append(str(exc).removeprefix(f"{store.path}: "))
            continue
        keys[video_id] = key
    if problems:
        good = [v for v in video_ids if v in keys]
        hint_ids = f" or predict the others with --video-id {' '.join(good)}" if good else ""
        raise ProbeError(
            f"{store.path}: cannot predict {len(problems)} of {len(video_ids)} video(s); "
            f"nothing was written:\n  " + "\n  ".join(problems)
            + f"\nFix them{hint_ids}."
        )
    return keys


def predict_video(probe: BaseProbe, store: Any, video_id: str,
                  feature_key: str | None = None) -> VideoPrediction:
    """A probe's scores and binary predictions on one stored video (nothing written).

    Parameters
    ----------
    probe : BaseProbe
        Fitted probe (multi-label, or multi-class: top-1 decision).
    store : FeatureStore
    video_id : str
    feature_key : str, optional
        Default the key the probe was trained on, else the video's only feature set.

    Raises
    ------
    ProbeError
        Missing or incomplete features, or features of another model or token mode.
    """
    key = check_predictable(probe, store, [video_id], feature_key)[video_id]
    return _predict(probe, store, video_id, key)


def _predict(probe: BaseProbe, store: Any, video_id: str, key: str) -> VideoPrediction:
    features = store.read_features(video_id, key)
    values = pool_features(features.values, probe)
    groups = np.zeros(len(values), np.int64)
    scores = np.asarray(probe.predict_proba(values, groups=groups), np.float32)
    return prediction_from_scores(probe, scores, key)


def prediction_from_scores(probe: BaseProbe, scores: np.ndarray, key: str) -> VideoPrediction:
    """The probe's decisions on ``scores`` (T, K) float32: thresholds and bout post-processing,
    or the top behavior per frame for a multi-class probe."""
    thresholds = _thresholds(probe)
    post = postprocess_settings(getattr(probe, "postprocess_", None))
    # From the float32 scores, as the plugin's timeline does: both show the same bouts.
    if decision_of(probe) == "top1":
        binary = top1_binary(scores, post).astype(np.int8)
    else:
        binary = binarize_predictions(scores, thresholds, post).astype(np.int8)
    return VideoPrediction(scores, binary, [str(c) for c in probe.classes_.tolist()],
                           thresholds, post, key)


def write_predictions(
    store: Any,
    video_id: str,
    name: str,
    scores: np.ndarray,
    behaviors: Sequence[str],
    thresholds: float | Sequence[float] | None = None,
    postprocess: dict[str, int] | None = None,
    attrs: dict[str, Any] | None = None,
    save_label_table: bool = True,
    decision: str = "threshold",
) -> np.ndarray:
    """Write one video's prediction set in the layout of the module docstring.

    Parameters
    ----------
    store : FeatureStore
        Opened writable.
    video_id, name : str
        Video and prediction set name.
    scores : np.ndarray
        ``(T, K)`` probabilities, one row per frame of the video.
    behaviors : sequence of str
        The K column names.
    thresholds : float, sequence of float or None
        Per behavior (None: 0.5).
    postprocess : dict, optional
        Bout post-processing (``{"min_bout", "max_gap"}``).
    attrs : dict, optional
        More attributes (probe kind, feature key, provenance, ...).
    save_label_table : bool
        Also write the binary predictions as label set ``predicted/<name>``.
    decision : {"threshold", "top1"}
        ``threshold``: a behavior is on where its score reaches its threshold (multi-label);
        ``top1``: the argmax behavior of each frame is on (multi-class, softmax scores).

    Returns
    -------
    np.ndarray
        ``(T, K)`` int8 binary predictions as saved.

    Raises
    ------
    StoreError
        ``scores`` does not have one row per frame and one column per behavior.
    """
    behaviors = [str(b) for b in behaviors]
    scores = np.asarray(scores, np.float32)
    n_frames = store.video_info(video_id).n_frames
    if scores.shape != (n_frames, len(behaviors)):
        raise StoreError(
            f"{store.path}: predictions {name!r} of video {video_id!r} have shape "
            f"{scores.shape}, expected ({n_frames}, {len(behaviors)}) (frames x behaviors); "
            "predict with features of this video."
        )
    if decision not in DECISIONS:
        raise ProbeError(f"decision is {decision!r}; expected one of {DECISIONS}.")
    cut = np.broadcast_to(np.asarray(0.5 if thresholds is None else thresholds, float),
                          (len(behaviors),))
    post = postprocess_settings(postprocess)
    if decision == "top1":
        binary = top1_binary(scores, post).astype(np.int8)
    else:
        binary = binarize_predictions(scores, cut, post).astype(np.int8)
    base = f"{PREDICTIONS}/{name}"
    if store.has_item(video_id, base) and not store.has_item(video_id, f"{base}/scores"):
        logger.info("%s: replacing the single-array predictions %r of video %s (earlier "
                    "layout)", store.path, name, video_id)
        store.delete_item(video_id, base)
    # One id in both arrays' attrs: a kill between their writes leaves ids that differ, and
    # load_predictions refuses the pair instead of mixing two runs.
    meta = {**(attrs or {}), "behaviors": behaviors, "thresholds": [float(t) for t in cut],
            "postprocess": post, "decision": decision, WRITE_ID: uuid.uuid4().hex}
    store.write_array(video_id, f"{base}/scores", scores, meta)
    store.write_array(video_id, f"{base}/binary", binary, meta)
    if save_label_table:
        _save_prediction_table(store, video_id, name, binary, scores, behaviors)
    return binary


def _save_prediction_table(store: Any, video_id: str, name: str, binary: np.ndarray,
                           scores: np.ndarray, behaviors: list[str]) -> None:
    from prism_science.labels import from_frame_matrix, save_labels

    info = store.video_info(video_id)
    table = from_frame_matrix(
        binary, behaviors, fps=float(info.fps) or None, timestamps=info.timestamps,
        annotator="prism-science", source="predicted", scores=scores, video_id=video_id,
    )
    save_labels(store, video_id, table, f"predicted/{name}")


def predict_to_store(
    probe: BaseProbe,
    store: Any,
    name: str,
    video_ids: Sequence[str] | None = None,
    feature_key: str | None = None,
    probe_dir: str | Path | None = None,
    save_label_table: bool = True,
) -> dict[str, VideoPrediction]:
    """Predict videos and write their prediction sets, after checking every one of them.

    Parameters
    ----------
    probe : BaseProbe
        Fitted probe (e.g. from :func:`prism_science.pipeline.load_trained_probe`); a
        multi-class one writes its top-1 decision as ``binary``.
    store : FeatureStore
        Opened writable.
    name : str
        Prediction set name (``predictions/<name>``, ``labels/predicted/<name>``); see
        :func:`default_prediction_name`.
    video_ids : sequence of str, optional
        Default every video of the store.
    feature_key : str, optional
        Default the key the probe was trained on, else each video's only feature set.
    probe_dir : str or Path, optional
        Recorded in the attrs.
    save_label_table : bool
        Also write the binary predictions as label set ``predicted/<name>``.

    Returns
    -------
    dict
        video id -> :class:`VideoPrediction`, in the order of ``video_ids``.

    Raises
    ------
    ProbeError
        Before anything is written, when any video lacks complete features of the model and
        token mode the probe was trained on (:func:`check_predictable` lists them all).
    """
    ids = list(video_ids) if video_ids is not None else store.video_ids()
    if not ids:
        raise ProbeError(f"{store.path}: the store has no video; run `prism-science extract`.")
    keys = check_predictable(probe, store, ids, feature_key)
    results = {}
    for video_id in ids:
        prediction = _predict(probe, store, video_id, keys[video_id])
        attrs = {
            "probe_kind": type(probe).__name__,
            "probe_dir": str(probe_dir) if probe_dir is not None else None,
            "feature_key": keys[video_id],
            "provenance": summarize_provenance(store.feature_provenance(video_id,
                                                                        keys[video_id]),
                                               keys[video_id]),
        }
        write_predictions(store, video_id, name, prediction.scores, prediction.behaviors,
                          prediction.thresholds, prediction.postprocess, attrs,
                          save_label_table, decision=decision_of(probe))
        results[video_id] = prediction
        logger.info("video %s: %d frames predicted into %s/%s", video_id,
                    len(prediction.binary), PREDICTIONS, name)
    return results


def has_predictions(store: Any, video_id: str, name: str) -> bool:
    """Whether a video has the prediction set ``name`` (this layout or the earlier one)."""
    base = f"{PREDICTIONS}/{name}"
    return store.has_item(video_id, f"{base}/scores") or (
        store.has_item(video_id, base) and "classes" in store.read_array_attrs(video_id, base))


def load_predictions(store: Any, video_id: str, name: str
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """A prediction set: ``(scores (T, K) float32, binary (T, K) int8, attrs)``.

    ``attrs`` has at least ``behaviors``, ``thresholds`` and ``postprocess``. A single array of
    an earlier plugin version is read too (its binary is computed from its scores).

    Raises
    ------
    ProbeError
        The video has no prediction set ``name``, or its writing was interrupted (a kill
        between the writes of ``scores`` and ``binary``: never a mix of two runs).
    """
    base = f"{PREDICTIONS}/{name}"
    if store.has_item(video_id, f"{base}/scores"):
        interrupted = ProbeError(
            f"{store.path}: the predictions {name!r} of video {video_id!r} were interrupted "
            "while being written (their scores and binary arrays are not of one run); run "
            f"`prism-science probe predict ... --name {name}` again.")
        try:
            attrs = store.read_array_attrs(video_id, f"{base}/scores")
            binary_attrs = store.read_array_attrs(video_id, f"{base}/binary")
            scores = store.read_array(video_id, f"{base}/scores").astype(np.float32)
            binary = store.read_array(video_id, f"{base}/binary").astype(np.int8)
        except StoreError as exc:
            raise interrupted from exc
        if ("behaviors" not in attrs or attrs.get(WRITE_ID) != binary_attrs.get(WRITE_ID)
                or scores.shape != binary.shape):
            raise interrupted
        return scores, binary, attrs
    if has_predictions(store, video_id, name):
        attrs = dict(store.read_array_attrs(video_id, base))
        scores = store.read_array(video_id, base).astype(np.float32)
        attrs["behaviors"] = [str(c) for c in attrs["classes"]]
        attrs["thresholds"] = list(np.broadcast_to(
            np.asarray(attrs.get("thresholds", 0.5), float), (scores.shape[1],)).tolist())
        attrs["postprocess"] = postprocess_settings(attrs.get("postprocess"))
        attrs.setdefault("feature_key", attrs.get("key"))
        binary = binarize_predictions(scores, attrs["thresholds"],
                                      attrs["postprocess"]).astype(np.int8)
        return scores, binary, attrs
    raise ProbeError(
        f"{store.path}: video {video_id!r} has no predictions {name!r}; run "
        f"`prism-science probe predict --probe DIR --store {store.path} --name {name}`."
    )
