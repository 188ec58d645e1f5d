"""Labeling sessions + stored features -> probes: what the plugin's Train and predict widget runs.

Everything here calls the library's public functions (store, labels, probes, metrics); the
widget only runs these steps in a worker and shows the results.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import ProbeError, StoreError
from prism_science.session._session import LabelingSession

__all__ = [
    "LabeledVideo",
    "TrainingSet",
    "TrainResult",
    "build_training_set",
    "predict_stored_video",
    "train_probe",
]

logger = logging.getLogger(__name__)

SINGLE_VIDEO_BLOCKS = 5
"""A single video is cut into this many stretches of time for the validation split."""


@dataclass
class LabeledVideo:
    """A session whose video has features in a store."""

    session: LabelingSession
    store_path: Path
    video_id: str


@dataclass
class TrainingSet:
    """Features and label matrix of one or more videos, rows of a video contiguous.

    Attributes
    ----------
    X : np.ndarray
        (N, *feature_shape) float32.
    y : np.ndarray
        (N, K) int8 in {-1, 0, 1} (see :func:`prism_science.labels.to_frame_matrix`).
    groups : np.ndarray
        (N,) int64 video index of each row.
    behaviors : list of str
        The K behavior names.
    provenance : dict
        Provenance of the features (checked again at prediction).
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    behaviors: list[str]
    provenance: dict[str, Any]
    videos: list[str] = field(default_factory=list)


@dataclass
class TrainResult:
    """A trained probe and its validation metrics (per behavior, on held-out videos/time)."""

    probe: Any
    metrics: dict[str, dict[str, float]]
    validation: str


def build_training_set(
    videos: list[LabeledVideo],
    key: str,
    sources: tuple[str, ...] = ("manual", "curated"),
    fully_labeled: bool = True,
) -> TrainingSet:
    """Read each video's features and turn its labels into a frame matrix.

    Parameters
    ----------
    videos : list of LabeledVideo
    key : str
        Feature set (``"<model>/<tokens>"``), the same for every video.
    sources : tuple of str
        Label sources used as truth.
    fully_labeled : bool
        Frames without a bout are negatives (else only bout frames are labeled).

    Raises
    ------
    StoreError
        Features are missing, incomplete, or do not have one row per frame.
    ProbeError
        No video has labels, or the videos' features come from different encoders.
    """
    from prism_science.labels import to_frame_matrix
    from prism_science.store import IDENTITY_FIELDS, open_store

    behaviors: list[str] = []
    for video in videos:
        for name in video.session.behavior_names():
            if name not in behaviors:
                behaviors.append(name)
    xs, ys, gs, names = [], [], [], []
    provenance: dict[str, Any] | None = None
    for index, video in enumerate(videos):
        table = video.session.to_table(sources, fully_labeled=fully_labeled)
        if not table.intervals:
            continue
        with open_store(video.store_path, mode="r") as store:
            feats = store.read_features(video.video_id, key)
        n = video.session.n_frames
        if len(feats.values) != n:
            raise StoreError(
                f"{video.store_path}: features {key!r} of video {video.video_id!r} have "
                f"{len(feats.values)} rows, the video has {n} frames; re-extract them"
            )
        if provenance is None:
            provenance = feats.provenance
        elif any(provenance.get(f) != feats.provenance.get(f) for f in IDENTITY_FIELDS):
            raise ProbeError(
                f"video {video.video_id!r}: features {key!r} were made with other parameters "
                "than the first video's; extract all videos with the same model and window"
            )
        xs.append(feats.values)
        ys.append(to_frame_matrix(table, behaviors, n_frames=n))
        gs.append(np.full(n, index, dtype=np.int64))
        names.append(video.video_id)
    if not xs or provenance is None:
        raise ProbeError("no labeled video with features: label some bouts and extract "
                         "features first")
    return TrainingSet(np.concatenate(xs), np.concatenate(ys), np.concatenate(gs), behaviors,
                       provenance, names)


def _validation_groups(groups: np.ndarray) -> np.ndarray:
    """Groups for the validation split: videos, or stretches of time for a single video."""
    if len(np.unique(groups)) > 1:
        return groups
    n = len(groups)
    return (np.arange(n) * SINGLE_VIDEO_BLOCKS // max(n, 1)).astype(np.int64)


def train_probe(
    kind: str, data: TrainingSet, validation_fraction: float = 0.2, random_state: int = 0,
    **params: Any,
) -> TrainResult:
    """Train a probe, report metrics on a held-out split, then refit it on all the data.

    Parameters
    ----------
    kind : str
        A key of :data:`prism_science.probes.PROBE_KINDS`.
    data : TrainingSet
    validation_fraction : float
        Fraction of videos (or of a single video's stretches of time) held out to measure AP
        and F1; 0 skips the validation.
    random_state : int
    **params
        Hyper-parameters of the probe.

    Returns
    -------
    TrainResult
        ``metrics[behavior]`` has ``AP``, ``F1``, ``precision``, ``recall`` and ``positives``
        (held-out labeled positive frames); NaN where the held-out part has no positive.
    """
    from prism_science.evaluation.metrics import average_precision, precision_recall_f1
    from prism_science.probes import make_probe, split_by_group

    groups = _validation_groups(data.groups)
    metrics: dict[str, dict[str, float]] = {}
    validation = "none"
    rng = np.random.default_rng(random_state)
    train_idx, val_idx = split_by_group(groups, validation_fraction, rng)
    if len(val_idx):
        probe = make_probe(kind, random_state=random_state, **params)
        probe.fit(data.X[train_idx], data.y[train_idx], groups=groups[train_idx],
                  behavior_names=data.behaviors, feature_provenance=data.provenance)
        proba = probe.predict_proba(data.X[val_idx], groups=groups[val_idx])
        truth = data.y[val_idx]
        ap = average_precision(truth, proba)
        thresholds = np.asarray(probe.thresholds_ if probe.thresholds_ is not None else 0.5)
        scores = precision_recall_f1(truth, (proba >= thresholds).astype(np.int8))
        for k, name in enumerate(data.behaviors):
            metrics[name] = {
                "AP": float(ap[k]), "F1": float(scores["f1"][k]),
                "precision": float(scores["precision"][k]), "recall": float(scores["recall"][k]),
                "positives": float((truth[:, k] == 1).sum()),
            }
        held_out = len(np.unique(groups[val_idx]))
        if len(np.unique(data.groups)) > 1:
            unit = "video" if held_out == 1 else "videos"
        else:
            unit = "stretch of the video" if held_out == 1 else "stretches of the video"
        validation = f"{held_out} held-out {unit}"
    probe = make_probe(kind, random_state=random_state, **params)
    probe.fit(data.X, data.y, groups=groups, behavior_names=data.behaviors,
              feature_provenance=data.provenance)
    return TrainResult(probe, metrics, validation)


def predict_stored_video(
    probe: Any, store_path: Path, video_id: str, key: str
) -> tuple[list[str], np.ndarray, list[float], dict[str, int]]:
    """Per-frame probabilities of a probe on a video's stored features.

    Returns
    -------
    (list of str, np.ndarray, list of float, dict)
        The probe's classes, (N, K) float32 probabilities, per-class thresholds and bout
        post-processing (``{"min_bout": int, "max_gap": int}``, the probe's ``postprocess_``):
        what :meth:`LabelingSession.set_predictions` takes to show the bouts ``prism-science
        probe predict`` saves.

    Raises
    ------
    ProbeError
        The probe was trained on features of another encoder or token mode.
    StoreError
        The video has no complete features under ``key``.
    """
    from prism_science.probes.postprocess import postprocess_settings
    from prism_science.store import open_store

    with open_store(store_path, mode="r") as store:
        feats = store.read_features(video_id, key)
    probe.check_features(feats.provenance, source=f"{store_path} video {video_id!r} [{key}]")
    groups = np.zeros(len(feats.values), dtype=np.int64)
    proba = np.asarray(probe.predict_proba(feats.values, groups=groups), dtype=np.float32)
    classes = [str(c) for c in probe.classes_.tolist()]
    thresholds = probe.thresholds_ if probe.thresholds_ is not None else [0.5] * len(classes)
    postprocess = postprocess_settings(getattr(probe, "postprocess_", None))
    return classes, proba, [float(t) for t in thresholds], postprocess
