"""Train a probe with a validation split, then refit it on every labeled frame.

The steps of :func:`train_probe`, the one training path of the CLI, the plugin and the demo:

1. gather features and label matrices (:mod:`prism_science.pipeline.data`), pooling token grids
   for every probe but the attention probe, and keep the rows the probe kind trains on;
2. check the labels: a behavior whose labeled frames are all positive is refused (there is no
   frame to learn what it is not); a behavior with fewer than :data:`MIN_BOUTS` labeled bouts is
   warned about;
3. split off validation videos, or stretches of time of a single video
   (:mod:`prism_science.pipeline.split`), train on the rest, and measure per behavior AP, F1,
   precision and recall on the held-out part; each behavior's threshold is the one that
   maximises F1 on it -- unless the held-out part has no positive of that behavior, in which
   case nothing is tuned and the threshold is :data:`DEFAULT_THRESHOLD`, with a warning;
4. refit the probe on all rows (same hyper-parameters and seed) and give it those thresholds,
   the bout post-processing (``postprocess_``) and the validation figures (``validation_``).

:func:`save_trained_probe` writes the probe folder (``probe.json`` + ``probe.safetensors``,
:func:`prism_science.probes.save_probe`) and ``validation.json`` beside them.
"""

from __future__ import annotations

import json
import logging
import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import ProbeError
from prism_science.pipeline.data import (
    LabelInput,
    StoreData,
    load_store_data,
    probe_kind,
    select_rows,
)
from prism_science.pipeline.split import ValidationSplit, split_validation
from prism_science.pipeline.subjects import load_subject_data
from prism_science.probes.base import (
    BaseProbe,
    best_f1_threshold,
    fit_progress,
    summarize_provenance,
)
from prism_science.probes.io import load_probe, make_probe, save_probe
from prism_science.probes.postprocess import postprocess_settings

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.5
"""Threshold of a behavior whose validation part holds no positive frame (nothing to tune on)."""
MIN_BOUTS = 3
"""Fewer labeled bouts of a behavior than this are too few to train and validate: a warning."""
DEFAULT_VALIDATION_FRACTION = 0.2
"""Fraction of the videos (or of a single video's stretches of time) held out."""
DEFAULT_PARAMS: dict[str, Any] = {"class_weight": "balanced"}
"""Hyper-parameters every entry point starts from (rare behaviors' positives weighted up)."""
VALIDATION_FILE = "validation.json"
"""Written into the probe folder by :func:`save_trained_probe`."""
VALIDATION_FORMAT = "prism-science-probe-validation"


@dataclass
class TrainResult:
    """A trained probe, its data, its validation split and figures.

    Attributes
    ----------
    probe : BaseProbe
        Refit on every row; ``thresholds_``, ``postprocess_`` and ``validation_`` (the dict of
        :meth:`to_dict`) set.
    data : StoreData
        The rows it was trained on.
    split : ValidationSplit
    metrics : dict
        behavior -> ``threshold``, ``threshold_source`` (``"validation"`` or ``"default"``),
        ``AP``, ``F1``, ``precision``, ``recall`` (on the held-out part, at that threshold,
        frame level before bout post-processing; NaN where undefined), ``positives`` (held-out
        positive frames) and ``bouts`` (labeled bouts in all the training data).
    warnings : list of str
        Too few bouts, thresholds left at the default, no validation split.
    kind : str
    """

    probe: BaseProbe
    data: StoreData
    split: ValidationSplit
    metrics: dict[str, dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    kind: str = "linear"

    @property
    def validation(self) -> str:
        """What was held out, in words."""
        return self.split.describe()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: what ``validation.json`` holds (NaN written as null)."""
        per_behavior = {
            name: {k: (None if isinstance(v, float) and math.isnan(v) else v)
                   for k, v in values.items()}
            for name, values in self.metrics.items()
        }
        return {
            "format": VALIDATION_FORMAT,
            "format_version": 1,
            "kind": self.kind,
            "labels": self.data.labels,
            "feature_key": self.data.feature_key,
            "videos": list(self.data.video_ids),
            "behaviors": list(self.data.behaviors),
            "n_rows": len(self.data.X),
            "validation": {**self.split.to_dict(), "description": self.validation},
            "per_behavior": per_behavior,
            "postprocess": dict(getattr(self.probe, "postprocess_", {}) or {}),
            "warnings": list(self.warnings),
        }

    def format(self) -> str:
        """Per-behavior thresholds and validation figures as a small text table."""
        lines = [f"validation: {self.validation}",
                 f"  {'behavior':<20} {'threshold':>9} {'AP':>6} {'F1':>6} {'prec':>6} "
                 f"{'recall':>6} {'pos':>5} {'bouts':>5}"]
        for name, m in self.metrics.items():
            tag = "" if m["threshold_source"] == "validation" else "*"
            lines.append(
                f"  {name:<20} {m['threshold']:>8.3f}{tag or ' '} {_fmt(m['AP']):>6} "
                f"{_fmt(m['F1']):>6} {_fmt(m['precision']):>6} {_fmt(m['recall']):>6} "
                f"{m['positives']:>5d} {m['bouts']:>5d}"
            )
        if any(m["threshold_source"] != "validation" for m in self.metrics.values()):
            lines.append(f"  * default threshold {DEFAULT_THRESHOLD} (no held-out positive to "
                         "tune it on)")
        return "\n".join(lines)


def _fmt(value: float) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def count_bouts(data: StoreData) -> np.ndarray:
    """``(K,)`` labeled bouts per behavior: runs of consecutive positive frames per video."""
    assert data.y is not None
    positive = data.y == 1
    new_run = np.ones(len(positive), bool)
    if len(positive) > 1:
        new_run[1:] = (data.groups[1:] != data.groups[:-1]) | (data.frames[1:] !=
                                                                 data.frames[:-1] + 1)
    starts = positive.copy()
    starts[1:] &= ~positive[:-1] | new_run[1:, None]
    return starts.sum(0).astype(np.int64)


def check_labels(data: StoreData) -> list[str]:
    """Refuse labels a probe cannot learn from; warn about behaviors with too few bouts.

    Returns
    -------
    list of str
        Warnings (behaviors without a positive frame are skipped by the probe; fewer than
        :data:`MIN_BOUTS` bouts are too few to train and validate).

    Raises
    ------
    ProbeError
        A behavior has positive frames but no labeled negative frame.
    """
    assert data.y is not None
    positives = (data.y == 1).sum(0)
    negatives = (data.y == 0).sum(0)
    no_negative = [b for b, p, n in zip(data.behaviors, positives, negatives, strict=True)
                   if p > 0 and n == 0]
    if no_negative:
        raise ProbeError(
            f"{data.labels}: every labeled frame of {no_negative} is a positive, so there is no "
            "frame to learn what is not the behavior. Declare the labeled stretches (a label "
            "table's segments; in the plugin tick 'frames without a bout are negatives') or "
            "label frames where the behavior does not happen."
        )
    messages = []
    for name, n_bouts in zip(data.behaviors, count_bouts(data), strict=True):
        if n_bouts == 0:
            messages.append(f"behavior {name!r} has no labeled positive frame: the probe skips "
                            "it (probability 0); label at least one bout of it.")
        elif n_bouts < MIN_BOUTS:
            messages.append(
                f"behavior {name!r} has {n_bouts} labeled bout{'s' if n_bouts > 1 else ''}, "
                f"fewer than {MIN_BOUTS}: too few to train and validate; its threshold and "
                "validation figures are unreliable. Label more bouts of it."
            )
    return messages


class _EpochCounter:
    """Counts the epochs of :func:`train_probe`'s successive fits on one scale."""

    def __init__(self, progress: Callable[[int, int], None] | None, kind: str,
                 params: dict[str, Any], n_fits: int) -> None:
        self.progress = progress
        # the probe's own default when params leave max_epochs out
        per_fit = params.get("max_epochs") or make_probe(kind).max_epochs
        self.per_fit = max(int(per_fit), 1)
        self.total = self.per_fit * n_fits
        self.offset = 0

    def report(self, epoch: int, n_epochs: int) -> None:
        if self.progress is not None:
            self.progress(min(self.offset + epoch, self.total), self.total)

    def next_fit(self) -> None:
        """A fit ended (maybe early): the next one counts from the end of its share."""
        if self.offset < self.total:
            self.offset += self.per_fit
            self.report(0, self.per_fit)


def _fit(kind: str, params: dict[str, Any], X: np.ndarray, y: np.ndarray, groups: np.ndarray,
         behaviors: list[str], provenance: dict[str, Any]) -> tuple[BaseProbe, list[str]]:
    """Fit a probe, returning the warnings it raised other than the skipped behaviors (which
    :func:`check_labels` reports)."""
    probe = make_probe(kind, **params)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        probe.fit(X, y, groups=groups, behavior_names=behaviors, feature_provenance=provenance)
    messages = []
    for w in caught:
        if w.category is not UserWarning:  # e.g. sklearn's or torch's own: passed on
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        elif "no positive labeled frame" not in str(w.message):
            messages.append(str(w.message))
    return probe, messages


def _validate(kind: str, params: dict[str, Any], data: StoreData, split: ValidationSplit,
              provenance: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Train on ``split.train``; thresholds and figures on ``split.val``."""
    from prism_science.evaluation.metrics import average_precision, precision_recall_f1

    assert data.y is not None
    n_behaviors = len(data.behaviors)
    bouts = count_bouts(data)
    metrics = {
        name: {"threshold": DEFAULT_THRESHOLD, "threshold_source": "default", "AP": math.nan,
               "F1": math.nan, "precision": math.nan, "recall": math.nan, "positives": 0,
               "bouts": int(bouts[k])}
        for k, name in enumerate(data.behaviors)
    }
    messages: list[str] = []
    if not split.has_validation:
        messages.append(
            f"{split.describe()}: every threshold is the default {DEFAULT_THRESHOLD} and there "
            "are no validation figures; label more frames or more videos."
        )
        return metrics, messages
    train, val = split.train, split.val
    probe, _ = _fit(kind, params, data.X[train], data.y[train], split.groups[train],
                    data.behaviors, provenance)
    proba = np.asarray(probe.predict_proba(data.X[val], groups=split.groups[val]), np.float64)
    truth = data.y[val]
    thresholds = np.full(n_behaviors, DEFAULT_THRESHOLD)
    for k, name in enumerate(data.behaviors):
        labeled = truth[:, k] >= 0
        positives = int((truth[labeled, k] == 1).sum())
        metrics[name]["positives"] = positives
        if name in probe.skipped_classes_ and bouts[k] > 0:
            messages.append(
                f"behavior {name!r}: every labeled bout is in the held-out part "
                f"({split.describe()}), none is left to train on; threshold left at the "
                f"default {DEFAULT_THRESHOLD}. Label more bouts of it."
            )
        elif positives == 0 and bouts[k] > 0:
            messages.append(
                f"behavior {name!r}: the held-out part ({split.describe()}) has no positive "
                f"frame, so no threshold is tuned; it stays at the default {DEFAULT_THRESHOLD}. "
                "Label bouts of it in more videos or stretches of the video."
            )
        elif positives > 0:
            thresholds[k] = best_f1_threshold(truth[labeled, k], proba[labeled, k])
            metrics[name]["threshold_source"] = "validation"
        metrics[name]["threshold"] = float(thresholds[k])
    ap = average_precision(truth, proba)
    scores = precision_recall_f1(truth, (proba >= thresholds[None, :]).astype(np.int8))
    for k, name in enumerate(data.behaviors):
        metrics[name].update({"AP": float(ap[k]), "F1": float(scores["f1"][k]),
                              "precision": float(scores["precision"][k]),
                              "recall": float(scores["recall"][k])})
    return metrics, messages


def train_probe(
    store: Any,
    labels: LabelInput,
    kind: str = "linear",
    *,
    feature_key: str | None = None,
    video_ids: list[str] | None = None,
    behaviors: list[str] | None = None,
    params: dict[str, Any] | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = 0,
    min_bout: int = 1,
    max_gap: int = 0,
    progress: Callable[[int, int], None] | None = None,
    per_subject: bool = False,
) -> TrainResult:
    """Train a probe of ``kind`` on labeled stored features (see the module docstring).

    Parameters
    ----------
    store : FeatureStore
        Open store.
    labels : str or mapping of str to LabelTable
        A label set of the store (e.g. ``"manual"``) or video id -> LabelTable (the plugin's
        sessions).
    kind : str
        ``linear``, ``mlp``, ``attention`` or ``temporal``.
    feature_key, video_ids, behaviors
        As in :func:`prism_science.pipeline.load_store_data`.
    params : dict, optional
        Probe hyper-parameters (e.g. ``{"max_epochs": 50}``), over :data:`DEFAULT_PARAMS`
        (``class_weight="balanced"``; pass ``None`` to turn it off); ``random_state``
        defaults to ``seed``. ``tune_thresholds`` is set off: the thresholds
        come from the validation split here.
    validation_fraction : float
        Fraction of the videos (or of a single video's stretches of time) held out; 0 skips
        the validation (thresholds are then the default).
    seed : int
        Seed of the split (and of the probe unless ``params`` sets ``random_state``).
    min_bout, max_gap : int
        Bout post-processing kept with the probe (``postprocess_``).
    progress : callable, optional
        ``progress(epoch, n_epochs)`` after each training epoch, counted over both fits (the
        validation fit, then the fit on all rows): ``n_epochs`` is ``2 * max_epochs`` with a
        validation split, ``max_epochs`` without; a fit that stops early jumps to its end.
        An exception it raises stops the training (see
        :func:`prism_science.probes.base.fit_progress`).
    per_subject : bool
        Train on per-subject features (``extract --subjects``): one unit per (video, subject),
        each subject's labels with its own features (:mod:`prism_science.pipeline.subjects`);
        ``feature_key`` is then ``"<model>/<tokens>"``.

    Returns
    -------
    TrainResult

    Raises
    ------
    ProbeError
        No labeled frame, a behavior without a labeled negative frame, or features that cannot
        train one probe (missing, incomplete, made with different parameters).
    """
    kind = probe_kind(kind)
    postprocess = postprocess_settings({"min_bout": int(min_bout), "max_gap": int(max_gap)})
    if per_subject:
        loaded = load_subject_data(store, labels, feature_key, video_ids, behaviors,
                                   pool_for=kind)
    else:
        loaded = load_store_data(store, labels, feature_key, video_ids, behaviors,
                                 pool_for=kind)
    data = select_rows(loaded, kind)
    messages = check_labels(data)
    params = {**DEFAULT_PARAMS, **(params or {})}
    params.setdefault("random_state", seed)
    params["tune_thresholds"] = False
    provenance = summarize_provenance(data.provenance, data.feature_key)
    split = split_validation(data, validation_fraction, seed)
    epochs = _EpochCounter(progress, kind, params, 2 if split.has_validation else 1)
    with fit_progress(epochs.report if progress is not None else None):
        metrics, validation_messages = _validate(kind, params, data, split, provenance)
        if split.has_validation:
            epochs.next_fit()
        messages += validation_messages
        assert data.y is not None
        # The split's groups (time blocks of a single video) only choose the held-out part:
        # the final fit sees each video (or subject) whole, as prediction does. Chopping a
        # single video into blocks cost the temporal probe 0.86 -> 0.54 AP on the demo's fly.
        probe, fit_messages = _fit(kind, params, data.X, data.y, data.groups, data.behaviors,
                                   provenance)
        epochs.next_fit()
    messages += [m for m in fit_messages if m not in messages]
    probe.thresholds_ = np.array([metrics[b]["threshold"] for b in data.behaviors])
    probe.postprocess_ = postprocess
    if per_subject and probe.feature_provenance_ is not None:
        # Prediction then writes one set per subject (pipeline.subjects).
        probe.feature_provenance_["per_subject"] = True
    result = TrainResult(probe, data, split, metrics, messages, kind)
    probe.validation_ = result.to_dict()
    for message in messages:
        logger.warning("%s", message)
    logger.info("trained a %s probe on %d rows of %d video(s); %s", kind, len(data.X),
                len(data.video_ids), result.validation)
    return result


def save_trained_probe(probe: BaseProbe, directory: str | Path) -> Path:
    """Save a probe (:func:`prism_science.probes.save_probe`) and its ``validation.json``.

    Parameters
    ----------
    probe : BaseProbe
        A fitted probe; its ``validation_`` (set by :func:`train_probe`) is written when present.
    directory : str or Path
        The probe folder.

    Returns
    -------
    Path
        The folder.
    """
    directory = save_probe(probe, directory)
    target = Path(directory) / VALIDATION_FILE
    validation = getattr(probe, "validation_", None)
    if validation is None:
        target.unlink(missing_ok=True)  # a stale file would describe another probe
        return directory
    # The plugin may change the bout post-processing after training: save the probe's own.
    validation = {**validation, "postprocess": dict(getattr(probe, "postprocess_", {}) or {})}
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(validation, indent=2))
    os.replace(tmp, target)
    return directory


def load_trained_probe(directory: str | Path) -> BaseProbe:
    """Load a probe folder (:func:`prism_science.probes.load_probe`) with its ``validation_``.

    ``validation_`` is the content of ``validation.json``, or None when the folder has none
    (a probe saved by :func:`prism_science.probes.save_probe` alone).
    """
    probe = load_probe(directory)
    path = Path(directory) / VALIDATION_FILE
    probe.validation_ = None
    if path.is_file():
        try:
            probe.validation_ = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ProbeError(f"{path} is not valid JSON ({exc}); retrain the probe or delete "
                             "the file.") from exc
    return probe
