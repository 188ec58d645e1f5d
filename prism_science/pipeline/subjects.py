"""Per-subject training units, predictions and evaluation (animal-centred features).

``prism-science extract VIDEO --subjects ...`` stores one feature set per subject,
``<model>/<tokens>@<subject>`` (:mod:`prism_science.extraction.subjects`). Here each
(video, subject) is one training unit: its rows pair that subject's features with that
subject's labels (``to_frame_matrix(table, ..., subject=...)``), and the unit is the group of
the validation split. Frames where the subject is absent (NaN features) carry no label.
Predictions go to ``predictions/<name>@<subject>`` of the video (and one label set
``labels/predicted/<name>`` whose bouts carry their subject); :func:`evaluate_subjects`
reports per subject and pooled. See docs/tracks.md ("Per-subject features").
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import ProbeError
from prism_science.extraction.subjects import split_subject_key, subject_key
from prism_science.labels import LabelTable
from prism_science.pipeline.data import (
    LabelInput,
    StoreData,
    _tables_from_store,
    default_behaviors,
    pool_features,
    provenance_differences,
)
from prism_science.pipeline.predict import (
    VideoPrediction,
    decision_of,
    has_predictions,
    load_predictions,
    prediction_from_scores,
    write_predictions,
)
from prism_science.probes.base import BaseProbe, summarize_provenance

__all__ = [
    "evaluate_subjects",
    "load_subject_data",
    "predict_subjects_to_store",
    "subject_feature_keys",
    "subject_prediction_name",
]

logger = logging.getLogger(__name__)

# Fields of the crop that may differ between subjects of one probe (not between models).
_PER_SUBJECT_CROP = ("subject", "tracks_sha256", "size")


def subject_prediction_name(name: str, subject: str) -> str:
    """``predictions/<name>@<subject>``: a subject's prediction set (store-safe subject)."""
    return subject_key(name, subject).replace("/", "_")


def subject_feature_keys(store: Any, video_id: str,
                         base_key: str | None = None) -> tuple[str, dict[str, str]]:
    """A video's per-subject feature sets: ``(base key, {subject name: feature key})``.

    Parameters
    ----------
    store : FeatureStore
    video_id : str
    base_key : str, optional
        ``"<model>/<tokens>"`` (or one subject's key, whose base is used); default the only
        base with per-subject feature sets.

    Raises
    ------
    ProbeError
        The video has no per-subject features (of ``base_key``), or several bases and none
        was chosen.
    """
    if base_key is not None:
        base_key = split_subject_key(base_key)[0]
    by_base: dict[str, list[str]] = {}
    for key in store.feature_keys(video_id):
        base, subject = split_subject_key(key)
        if subject is not None:
            by_base.setdefault(base, []).append(key)
    if base_key is None:
        if len(by_base) != 1:
            raise ProbeError(
                f"{store.path}: video {video_id!r} has per-subject features of "
                f"{len(by_base)} models/token modes ({sorted(by_base) or 'none'}); "
                + ("extract them with `prism-science extract VIDEO --subjects TRACKS`"
                   if not by_base else "choose one with --features MODEL/TOKENS"))
        base_key = next(iter(by_base))
    if base_key not in by_base:
        raise ProbeError(
            f"{store.path}: video {video_id!r} has no per-subject features {base_key!r} (has "
            f"{store.feature_keys(video_id) or 'none'}); run `prism-science extract VIDEO "
            "--subjects TRACKS` for it")
    subjects: dict[str, str] = {}
    for key in sorted(by_base[base_key]):
        provenance = store.feature_provenance(video_id, key)
        crop = provenance.get("crop") or provenance.get("roi") or {}
        subjects[str(crop.get("subject") or split_subject_key(key)[1])] = key
    return base_key, subjects


def _comparable(provenance: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(provenance)
    for field in ("crop", "roi"):  # crops or RoI boxes: per-subject fields may differ
        part = dict(out.get(field) or {})
        for name in _PER_SUBJECT_CROP:
            part.pop(name, None)
        out[field] = part
    return out


def _check_label_subjects(store: Any, video_id: str, table: LabelTable,
                          subjects: Sequence[str], source: str) -> None:
    named = [s for s in table.subjects() if s not in (None, "")]
    unknown = sorted({str(s) for s in named} - set(subjects))
    if unknown:
        raise ProbeError(
            f"{store.path}: subject(s) {', '.join(repr(u) for u in unknown)} of the labels of "
            f"video {video_id!r} ({source}) match no track (its per-subject features: "
            f"{', '.join(subjects)}); rename them in the labels to one of these, or extract "
            "with the tracks file that names them.")
    if table.intervals and not named:
        raise ProbeError(
            f"{store.path}: the labels of video {video_id!r} ({source}) name no subject, so they "
            f"cannot be paired with one animal's features (subjects: {', '.join(subjects)}); "
            "give the label file a subject column.")


def load_subject_data(
    store: Any,
    labels: LabelInput,
    feature_key: str | None = None,
    video_ids: Sequence[str] | None = None,
    behaviors: Sequence[str] | None = None,
    pool_for: BaseProbe | str = "attention",
) -> StoreData:
    """Stack per-subject features and labels: one unit (group) per (video, subject).

    Like :func:`prism_science.pipeline.load_store_data`, but ``video_ids`` of the result are
    units ``"<video>@<subject>"``; subjects without a labeled interval are left out. Frames
    where a subject is absent (NaN features) get zero features and no label.

    Raises
    ------
    ProbeError
        No per-subject features, features of different models or windows, or a subject of the
        labels that matches no track (naming it).
    """
    from prism_science.labels import to_frame_matrix

    ids = list(video_ids) if video_ids is not None else store.video_ids()
    if isinstance(labels, str):
        tables = _tables_from_store(store, labels, ids, explicit=video_ids is not None)
        source = f"label set {labels!r}"
    else:
        tables = dict(labels)
        source = "the given label tables"
    ids = [v for v in ids if v in tables]
    if not ids:
        raise ProbeError(f"{store.path}: no labeled video with per-subject features.")
    behaviors = [str(b) for b in (behaviors if behaviors is not None
                                  else default_behaviors(tables))]
    base: str | None = feature_key
    xs, ys, groups, frames, units = [], [], [], [], []
    first: tuple[str, dict[str, Any]] | None = None
    for video_id in ids:
        base, keys = subject_feature_keys(store, video_id, base)
        table = tables[video_id]
        _check_label_subjects(store, video_id, table, list(keys), source)
        labeled = {str(s) for s in table.subjects() if s not in (None, "")}
        for subject, key in keys.items():
            if subject not in labeled:
                continue
            if store.feature_status(video_id, key) != "complete":
                raise ProbeError(f"{store.path}: features {key!r} of video {video_id!r} are "
                                 f"{store.feature_status(video_id, key)}; rerun "
                                 "`prism-science extract` to complete them")
            features = store.read_features(video_id, key)
            provenance = dict(features.provenance)
            if first is None:
                first = (f"{video_id}@{subject}", provenance)
            else:
                differences = provenance_differences(_comparable(first[1]),
                                                     _comparable(provenance))
                if differences:
                    raise ProbeError(
                        f"{store.path}: {first[0]!r} and '{video_id}@{subject}' have features "
                        f"made with different parameters ({'; '.join(differences)}); "
                        "re-extract one of them with the other's settings")
            values = pool_features(features.values, pool_for).copy()
            y = to_frame_matrix(table, behaviors, n_frames=len(values), subject=subject)
            absent = ~np.isfinite(values.reshape(len(values), -1)).all(1)
            values[absent] = 0.0
            y[absent] = -1
            xs.append(values)
            ys.append(y)
            groups.append(np.full(len(values), len(units), np.int64))
            frames.append(np.arange(len(values), dtype=np.int64))
            units.append(f"{video_id}@{subject}")
    if not units or first is None:
        raise ProbeError(f"{store.path}: no subject of {source} has labeled intervals; label "
                         "some bouts of a subject first.")
    assert base is not None
    fps = float(store.video_info(ids[0]).fps) or None
    return StoreData(np.concatenate(xs), np.concatenate(ys), np.concatenate(groups),
                     np.concatenate(frames), units, behaviors, base, first[1], fps, source)


def predict_subjects_to_store(
    probe: BaseProbe, store: Any, name: str, video_ids: Sequence[str] | None = None,
    feature_key: str | None = None, probe_dir: str | Path | None = None,
    save_label_table: bool = True,
) -> dict[str, Any]:
    """Predict every subject of the videos into ``predictions/<name>@<subject>``.

    Frames where the subject is absent get score 0 (and no bout). With
    ``save_label_table`` the bouts of all subjects of a video are also saved as the label set
    ``predicted/<name>``, each with its subject.

    Returns
    -------
    dict
        ``"<video>@<subject>"`` -> :class:`~prism_science.pipeline.VideoPrediction`.

    Raises
    ------
    ProbeError
        Before anything is written: a video without per-subject features of the probe's
        model and token mode.
    """
    trained = getattr(probe, "feature_provenance_", None) or {}
    hint = feature_key or trained.get("feature_key")
    ids = list(video_ids) if video_ids is not None else store.video_ids()
    plan: list[tuple[str, str, str]] = []
    problems = []
    for video_id in ids:
        try:
            _, keys = subject_feature_keys(store, video_id, hint)
            for subject, key in keys.items():
                if store.feature_status(video_id, key) != "complete":
                    raise ProbeError(f"features {key!r} of video {video_id!r} are incomplete")
                probe.check_features(store.feature_provenance(video_id, key),
                                     f"features {key!r} of video {video_id!r}")
                plan.append((video_id, subject, key))
        except ProbeError as exc:
            problems.append(str(exc).removeprefix(f"{store.path}: "))
    if problems:
        raise ProbeError(f"{store.path}: cannot predict per subject; nothing was written:\n  "
                         + "\n  ".join(problems))
    results = {}
    tables: dict[str, list[Any]] = {}
    for video_id, subject, key in plan:
        prediction = _predict_subject(probe, store, video_id, key)
        set_name = subject_prediction_name(name, subject)
        attrs = {
            "probe_kind": type(probe).__name__,
            "probe_dir": str(probe_dir) if probe_dir is not None else None,
            "feature_key": key, "subject": subject,
            "provenance": summarize_provenance(store.feature_provenance(video_id, key), key),
        }
        write_predictions(store, video_id, set_name, prediction.scores, prediction.behaviors,
                          prediction.thresholds, prediction.postprocess, attrs,
                          save_label_table=False, decision=decision_of(probe))
        results[f"{video_id}@{subject}"] = prediction
        if save_label_table:
            tables.setdefault(video_id, []).append((subject, prediction))
        logger.info("video %s subject %s: %d frames predicted into predictions/%s", video_id,
                    subject, len(prediction.binary), set_name)
    for video_id, parts in tables.items():
        _save_subject_table(store, video_id, name, parts)
    return results


def _save_subject_table(store: Any, video_id: str, name: str,
                        parts: list[tuple[str, VideoPrediction]]) -> None:
    """One label set ``predicted/<name>`` per video whose bouts carry their subject."""
    from prism_science.labels import from_frame_matrix, save_labels

    info = store.video_info(video_id)
    tables = [
        from_frame_matrix(p.binary, p.behaviors, fps=float(info.fps) or None,
                          timestamps=info.timestamps, annotator="prism-science",
                          source="predicted", scores=p.scores, video_id=video_id)
        for _, p in parts]
    intervals = [dataclasses.replace(iv, subject=subject)
                 for (subject, _), table in zip(parts, tables, strict=True)
                 for iv in table.intervals]
    save_labels(store, video_id, dataclasses.replace(tables[0], intervals=intervals),
                f"predicted/{name}")


def _predict_subject(probe: BaseProbe, store: Any, video_id: str, key: str) -> VideoPrediction:
    """:func:`prism_science.pipeline.predict_video` for a subject: absent frames score 0."""
    values = pool_features(store.read_features(video_id, key).values, probe)
    absent = ~np.isfinite(values.reshape(len(values), -1)).all(1)
    values = np.where(absent.reshape((-1,) + (1,) * (values.ndim - 1)), 0.0, values)
    scores = np.asarray(probe.predict_proba(values.astype(np.float32),
                                            groups=np.zeros(len(values), np.int64)), np.float32)
    scores[absent] = 0.0
    return prediction_from_scores(probe, scores, key)


def evaluate_subjects(
    store: Any, label_name: str, prediction_name: str,
    video_ids: Sequence[str] | None = None, iou_thresholds: Sequence[float] = (0.5,),
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """Evaluate per-subject predictions against a label set: pooled and per subject.

    Returns
    -------
    (report, per_subject, arrays)
        The pooled :class:`~prism_science.evaluation.EvaluationReport` (groups: one per
        (video, subject)), subject name -> its own report, and the stacked arrays (as
        :func:`prism_science.pipeline.evaluate_store`, ``video_ids`` being units).

    Raises
    ------
    ProbeError
        No (video, subject) has both labels and predictions, a labeled subject matches no
        prediction set (naming it), or the predictions' behaviors differ.
    """
    from prism_science.evaluation import evaluate_predictions
    from prism_science.labels import load_labels, to_frame_matrix
    from prism_science.labels.store_io import list_labels

    ids = list(video_ids) if video_ids is not None else store.video_ids()
    truths, scores_all, preds, groups, units, unit_subject = [], [], [], [], [], []
    unit_video: list[str] = []
    behaviors: list[str] | None = None
    thresholds = None
    for video_id in ids:
        if label_name not in list_labels(store, video_id):
            continue
        table = load_labels(store, video_id, label_name)
        labeled = [str(s) for s in table.subjects() if s not in (None, "")]
        predicted = [s for s in labeled
                     if has_predictions(store, video_id, subject_prediction_name(
                         prediction_name, s))]
        if not predicted:
            continue
        missing = sorted(set(labeled) - set(predicted))
        if missing:
            raise ProbeError(
                f"{store.path}: subject(s) {', '.join(repr(m) for m in missing)} of labels "
                f"{label_name!r} of video {video_id!r} have no predictions "
                f"{prediction_name!r} (predicted: {', '.join(predicted)}); the labels name a "
                "subject that matches no track: rename it, or predict with its features.")
        for subject in predicted:
            scores, binary, attrs = load_predictions(
                store, video_id, subject_prediction_name(prediction_name, subject))
            if behaviors is None:
                behaviors, thresholds = list(attrs["behaviors"]), attrs.get("thresholds")
            elif list(attrs["behaviors"]) != behaviors:
                raise ProbeError(f"{store.path}: predictions of {video_id}@{subject} have "
                                 f"behaviors {attrs['behaviors']}, others {behaviors}; predict "
                                 "all subjects with the same probe.")
            truths.append(to_frame_matrix(table, behaviors, n_frames=len(scores),
                                          subject=subject))
            scores_all.append(scores)
            preds.append(binary)
            groups.append(np.full(len(scores), len(units), np.int64))
            units.append(f"{video_id}@{subject}")
            unit_subject.append(subject)
            unit_video.append(video_id)
    if not units or behaviors is None:
        raise ProbeError(
            f"{store.path}: no subject has both labels {label_name!r} and per-subject "
            f"predictions {prediction_name!r}; run `prism-science probe predict --per-subject`.")
    y_true, scores, y_pred = (np.concatenate(truths), np.concatenate(scores_all),
                              np.concatenate(preds))
    group_ids = np.concatenate(groups)
    tuned = np.asarray(thresholds) if thresholds else None

    def report_of(mask: np.ndarray, what: str) -> Any:
        return evaluate_predictions(
            y_true[mask], scores[mask], y_pred[mask], behaviors, group_ids[mask],
            iou_thresholds, thresholds=tuned,
            metadata={"store": str(store.path), "labels": label_name,
                      "predictions": prediction_name, "units": what})

    pooled = report_of(np.ones(len(y_true), bool), ", ".join(units))
    per_subject = {}
    for subject in dict.fromkeys(unit_subject):
        mask = np.isin(group_ids, [i for i, s in enumerate(unit_subject) if s == subject])
        per_subject[subject] = report_of(mask, subject)
    fps = float(store.video_info(unit_video[0]).fps) or None
    return pooled, per_subject, {"y_true": y_true, "scores": scores, "y_pred": y_pred,
                                 "groups": group_ids, "video_ids": units, "fps": fps}
