"""Evaluation of behavior predictions: reports (JSON, Markdown, HTML), plots, cross-validation.

>>> report = evaluate_predictions(y_true, scores)  # doctest: +SKIP
>>> write_report(report, "report/", y_true, scores, y_pred)      # doctest: +SKIP

Metric definitions are in :mod:`prism_science.evaluation.metrics`; unlabeled (-1) cells are left
out.
Plots use matplotlib's Agg backend (no display needed).
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GroupKFold

from prism_science.errors import PrismError
from prism_science.evaluation import metrics
from prism_science.probes.postprocess import binarize_predictions, group_runs

logger = logging.getLogger(__name__)

NO_BEHAVIOR = "(none)"
"""Class name of frames with no behavior present, in single-label (exclusive) evaluation."""


def _clean(value: Any) -> Any:
    """JSON-safe: NaN -> None, numpy scalars and arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


@dataclass
class EvaluationReport:
    """Metrics of one evaluation.

    Attributes
    ----------
    behaviors : list of str
        Behavior names, in column order.
    per_behavior : list of dict
        One dict per behavior: ``behavior``, ``n_labeled``, ``n_positive``, ``ap``,
        ``precision``, ``recall``, ``f1``, ``accuracy``, ``threshold``, ``bout_f1`` (IoU ->
        F1), ``n_true_bouts``, ``n_pred_bouts``.
    summary : dict
        ``mAP``, ``mean_f1``, ``mean_bout_f1`` (IoU -> mean), ``macro_accuracy`` (single-label
        data only, else None), ``n_frames``, ``n_labeled_frames``, ``n_videos``.
    confusion : dict or None
        ``{"labels": [...], "matrix": [[...]]}`` for single-label (exclusive) data.
    iou_thresholds : list of float
    metadata : dict
        Free-form context (probe, store, label set, ...).
    """

    behaviors: list[str]
    per_behavior: list[dict[str, Any]]
    summary: dict[str, Any]
    confusion: dict[str, Any] | None = None
    iou_thresholds: list[float] = field(default_factory=lambda: [0.5])
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (NaN written as null)."""
        return _clean({
            "behaviors": self.behaviors,
            "summary": self.summary,
            "per_behavior": self.per_behavior,
            "confusion": self.confusion,
            "iou_thresholds": self.iou_thresholds,
            "metadata": self.metadata,
        })

    def to_json(self) -> str:
        """The report as indented JSON text."""
        return json.dumps(self.to_dict(), indent=2)

    def _table_rows(self) -> tuple[list[str], list[list[str]]]:
        header = ["behavior", "labeled frames", "positives", "AP", "F1", "precision", "recall",
                  "threshold"] + [f"bout F1@{t:g}" for t in self.iou_thresholds]
        rows = []
        for row in self.per_behavior:
            rows.append([row["behavior"], str(row["n_labeled"]), str(row["n_positive"])]
                        + [_fmt(row[k]) for k in ("ap", "f1", "precision", "recall", "threshold")]
                        + [_fmt(row["bout_f1"].get(t)) for t in self.iou_thresholds])
        return header, rows

    def _summary_lines(self) -> list[str]:
        s = self.summary
        lines = [
            f"mAP: {_fmt(s['mAP'])}",
            f"mean F1: {_fmt(s['mean_f1'])}",
        ]
        lines += [f"mean bout F1 @ IoU {t:g}: {_fmt(v)}" for t, v in s["mean_bout_f1"].items()]
        if s.get("macro_accuracy") is not None:
            lines.append(f"macro accuracy: {_fmt(s['macro_accuracy'])}")
        lines.append(
            f"frames: {s['n_frames']} ({s['n_labeled_frames']} labeled) in {s['n_videos']} "
            "video(s)"
        )
        return lines

    def to_markdown(self, images: Sequence[str] = ()) -> str:
        """The report as Markdown: summary, per-behavior table, confusion matrix, images."""
        out = ["# Behavior evaluation", ""]
        for key, value in self.metadata.items():
            out.append(f"- {key}: {value}")
        if self.metadata:
            out.append("")
        out += [f"- {line}" for line in self._summary_lines()] + [""]
        header, rows = self._table_rows()
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "|".join("---" for _ in header) + "|")
        out += ["| " + " | ".join(r) + " |" for r in rows]
        if self.confusion:
            labels = self.confusion["labels"]
            out += ["", "## Confusion matrix (rows: truth, columns: prediction)", ""]
            out.append("| | " + " | ".join(labels) + " |")
            out.append("|" + "|".join("---" for _ in range(len(labels) + 1)) + "|")
            for name, counts in zip(labels, self.confusion["matrix"], strict=True):
                out.append(f"| {name} | " + " | ".join(str(c) for c in counts) + " |")
        for image in images:
            out += ["", f"![{Path(image).stem}]({image})"]
        return "\n".join(out) + "\n"

    def to_html(self, images: Sequence[str] = ()) -> str:
        """The report as a self-contained HTML page (images referenced by relative path)."""
        esc = html.escape
        parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Behavior evaluation"
                 "</title><style>body{font-family:sans-serif;margin:2em}table{border-collapse:"
                 "collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
                 "td:first-child,th:first-child{text-align:left}</style></head><body>",
                 "<h1>Behavior evaluation</h1><ul>"]
        parts += [f"<li>{esc(str(k))}: {esc(str(v))}</li>" for k, v in self.metadata.items()]
        parts += [f"<li>{esc(line)}</li>" for line in self._summary_lines()]
        parts.append("</ul><table><tr>")
        header, rows = self._table_rows()
        parts += [f"<th>{esc(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>")
        parts.append("</table>")
        if self.confusion:
            labels = self.confusion["labels"]
            parts.append("<h2>Confusion matrix (rows: truth, columns: prediction)</h2><table>"
                         "<tr><th></th>" + "".join(f"<th>{esc(n)}</th>" for n in labels) + "</tr>")
            for name, counts in zip(labels, self.confusion["matrix"], strict=True):
                parts.append(f"<tr><th>{esc(name)}</th>"
                             + "".join(f"<td>{c}</td>" for c in counts) + "</tr>")
            parts.append("</table>")
        parts += [f"<p><img src='{esc(image)}' alt='{esc(Path(image).stem)}'></p>"
                  for image in images]
        parts.append("</body></html>")
        return "\n".join(parts)


def single_label(
    y_true: np.ndarray, scores: np.ndarray, y_pred: np.ndarray, behavior_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, list[str]] | None:
    """Per-frame class names when the labels are single-label (at most one behavior per frame).

    Returns ``(truth, prediction, class_names)`` over fully labeled frames, with
    :data:`NO_BEHAVIOR` for frames without any behavior (predicted when no behavior is on;
    otherwise the highest-scoring behavior that is on); None when some labeled frame has two
    behaviors or no frame is fully labeled.
    """
    full = (y_true >= 0).all(1)
    if not full.any() or ((y_true[full] == 1).sum(1) > 1).any():
        return None
    names = np.asarray(list(behavior_names) + [NO_BEHAVIOR], dtype=object)
    positive = y_true[full] == 1
    truth_idx = np.where(positive.any(1), np.argmax(positive, 1), len(names) - 1)
    on_scores = np.where(y_pred[full] > 0, np.nan_to_num(scores[full], nan=0.0), -np.inf)
    pred_idx = np.where(np.isfinite(on_scores).any(1), np.argmax(on_scores, 1), len(names) - 1)
    used = sorted(set(truth_idx.tolist()) | set(pred_idx.tolist()))
    class_names = [str(names[i]) for i in used]
    return names[truth_idx].astype(str), names[pred_idx].astype(str), class_names


def evaluate_predictions(
    y_true: np.ndarray,
    scores: np.ndarray,
    y_pred: np.ndarray | None = None,
    behavior_names: Sequence[str] | None = None,
    groups: np.ndarray | None = None,
    iou_thresholds: Sequence[float] = (0.5,),
    thresholds: np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
) -> EvaluationReport:
    """Compute every metric of :mod:`prism_science.evaluation.metrics` for one set of predictions.

    Parameters
    ----------
    y_true : np.ndarray
        ``(N, K)`` int in {-1, 0, 1}.
    scores : np.ndarray
        ``(N, K)`` float probabilities.
    y_pred : np.ndarray, optional
        ``(N, K)`` 0/1 (post-processed) predictions; default ``scores >= thresholds``.
    behavior_names : sequence of str, optional
        Default ``"behavior_0"``, ...
    groups : np.ndarray, optional
        ``(N,)`` video id per row (rows of a video contiguous, in time order) for bout metrics.
    iou_thresholds : sequence of float
        IoU thresholds of the bout F1.
    thresholds : np.ndarray, optional
        ``(K,)`` per-behavior thresholds (default 0.5); reported and used when ``y_pred`` is
        None.
    metadata : dict, optional
        Context copied into the report.

    Returns
    -------
    EvaluationReport
    """
    y_true = np.asarray(y_true)
    y_true = (y_true[:, None] if y_true.ndim == 1 else y_true).astype(np.int64)
    scores = np.asarray(scores, np.float64).reshape(y_true.shape[0], -1)
    n_behaviors = y_true.shape[1]
    if scores.shape != y_true.shape:
        raise PrismError(
            f"scores have shape {scores.shape} but labels {y_true.shape}; expected one score "
            "per frame and behavior. Check that both come from the same video(s) and behaviors."
        )
    names = [str(n) for n in behavior_names] if behavior_names is not None else [
        f"behavior_{k}" for k in range(n_behaviors)
    ]
    if len(names) != n_behaviors:
        raise PrismError(f"{len(names)} behavior names for {n_behaviors} label columns.")
    thr = np.full(n_behaviors, 0.5) if thresholds is None else np.asarray(thresholds, float)
    if y_pred is None:
        y_pred = (np.nan_to_num(scores, nan=0.0) >= thr[None, :]).astype(np.int64)
    y_pred = np.asarray(y_pred).reshape(y_true.shape)
    iou_thresholds = [float(t) for t in iou_thresholds]

    ap = metrics.average_precision(y_true, scores)
    frame = metrics.precision_recall_f1(y_true, y_pred)
    bouts = metrics.bout_f1(y_true, y_pred, iou_thresholds, groups)
    per_behavior = []
    for k, name in enumerate(names):
        per_behavior.append({
            "behavior": name,
            "n_labeled": int(frame["n_labeled"][k]),
            "n_positive": int((y_true[:, k] == 1).sum()),
            "ap": float(ap[k]),
            "precision": float(frame["precision"][k]),
            "recall": float(frame["recall"][k]),
            "f1": float(frame["f1"][k]),
            "accuracy": float(frame["accuracy"][k]),
            "threshold": float(thr[k]),
            "bout_f1": {t: float(bouts[t]["f1"][k]) for t in iou_thresholds},
            "n_true_bouts": int(bouts[iou_thresholds[0]]["n_true"][k]) if iou_thresholds else 0,
            "n_pred_bouts": int(bouts[iou_thresholds[0]]["n_pred"][k]) if iou_thresholds else 0,
        })

    def nanmean(values: np.ndarray) -> float:
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    confusion, macro_acc = None, None
    single = single_label(y_true, scores, y_pred, names)
    if single is not None:
        truth, pred, class_names = single
        macro_acc = metrics.macro_accuracy(truth, pred, unlabeled=None)
        confusion = {
            "labels": class_names,
            "matrix": metrics.confusion_matrix(truth, pred, class_names, unlabeled=None).tolist(),
        }
    summary = {
        "mAP": nanmean(ap),
        "mean_f1": nanmean(frame["f1"]),
        "mean_bout_f1": {t: nanmean(bouts[t]["f1"]) for t in iou_thresholds},
        "macro_accuracy": macro_acc,
        "n_frames": int(len(y_true)),
        "n_labeled_frames": int((y_true >= 0).any(1).sum()),
        "n_videos": len(group_runs(groups, len(y_true))),
    }
    return EvaluationReport(names, per_behavior, summary, confusion, iou_thresholds,
                            dict(metadata or {}))


# ---------------------------------------------------------------------- plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_precision_recall(
    y_true: np.ndarray, scores: np.ndarray, behavior_names: Sequence[str], path: str | Path
) -> Path:
    """Precision-recall curve of each behavior (labeled frames only) as a PNG.

    Parameters
    ----------
    y_true, scores : np.ndarray
        ``(N, K)`` labels in {-1, 0, 1} and float scores.
    behavior_names : sequence of str
    path : str or Path
        Output PNG.

    Returns
    -------
    Path
    """
    plt = _pyplot()
    curves = metrics.precision_recall_curves(y_true, scores)
    ap = metrics.average_precision(y_true, scores)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=100)
    for name, curve, value in zip(behavior_names, curves, ap, strict=True):
        if curve is None:
            continue
        precision, recall = curve
        ax.step(recall, precision, where="post", label=f"{name} (AP {value:.2f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title="Precision-recall (labeled frames)")
    if ax.lines:
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_ethogram(
    y_true: np.ndarray | None,
    y_pred: np.ndarray,
    behavior_names: Sequence[str],
    path: str | Path,
    fps: float | None = None,
    title: str | None = None,
) -> Path:
    """Ethogram raster: per behavior a lane of truth above a lane of prediction, over time.

    Parameters
    ----------
    y_true : np.ndarray or None
        ``(T, K)`` labels in {-1, 0, 1} (unlabeled drawn grey) or None (predictions only).
    y_pred : np.ndarray
        ``(T, K)`` 0/1 predictions.
    behavior_names : sequence of str
    path : str or Path
        Output PNG.
    fps : float, optional
        Time axis in seconds when given, else frames.
    title : str, optional

    Returns
    -------
    Path
    """
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    y_pred = np.asarray(y_pred).reshape(len(y_pred), -1)
    n_frames, n_behaviors = y_pred.shape
    lanes, labels = [], []
    for k, name in enumerate(behavior_names):
        if y_true is not None:
            truth = np.asarray(y_true)[:, k]
            lanes.append(np.where(truth < 0, 0, np.where(truth > 0, 2, 1)))
            labels.append(f"{name} (truth)")
        lanes.append(np.where(y_pred[:, k] > 0, 3, 1))
        labels.append(f"{name} (pred)")
    raster = np.asarray(lanes, dtype=float)
    cmap = ListedColormap(["#d9d9d9", "#ffffff", "#1f77b4", "#ff7f0e"])
    height = max(1.5, 0.3 * len(lanes) + 1.0)
    fig, ax = plt.subplots(figsize=(10, height), dpi=100)
    extent_end = n_frames / fps if fps else n_frames
    ax.imshow(raster, aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=3,
              extent=(0, extent_end, len(lanes) - 0.5, -0.5))
    ax.set_yticks(range(len(lanes)), labels, fontsize=7)
    per_behavior = len(lanes) // max(1, n_behaviors)
    for k in range(1, n_behaviors):  # separate the behaviors' lane pairs
        ax.axhline(k * per_behavior - 0.5, color="#555555", linewidth=0.8)
    ax.set_xlabel("time (s)" if fps else "frame")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_report(
    report: EvaluationReport,
    out_dir: str | Path,
    y_true: np.ndarray,
    scores: np.ndarray,
    y_pred: np.ndarray,
    groups: np.ndarray | None = None,
    video_names: Sequence[str] | None = None,
    fps: float | None = None,
    max_ethograms: int = 8,
) -> dict[str, Path]:
    """Write ``report.json``, ``report.md``, ``report.html``, ``pr_curves.png`` and one
    ``ethogram_<video>.png`` per video (at most ``max_ethograms``) to ``out_dir``.

    Parameters
    ----------
    report : EvaluationReport
    out_dir : str or Path
        Created if needed.
    y_true, scores, y_pred : np.ndarray
        ``(N, K)`` as given to :func:`evaluate_predictions`.
    groups : np.ndarray, optional
        ``(N,)`` video id per row (rows of a video contiguous).
    video_names : sequence of str, optional
        Name per run of ``groups`` (default: the group ids).
    fps : float, optional
        Frame rate for the ethograms' time axis.
    max_ethograms : int
        Upper bound on ethogram images.

    Returns
    -------
    dict
        name -> path of each file written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["pr_curves"] = plot_precision_recall(y_true, scores, report.behaviors,
                                                 out / "pr_curves.png")
    runs = group_runs(groups, len(y_true))
    for i, (lo, hi) in enumerate(runs[:max_ethograms]):
        if video_names is not None:
            name = str(video_names[i])
        elif groups is not None:
            name = str(np.asarray(groups)[lo])
        else:
            name = "all"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        written[f"ethogram_{safe}"] = plot_ethogram(
            y_true[lo:hi], y_pred[lo:hi], report.behaviors, out / f"ethogram_{safe}.png", fps,
            title=f"{name}: truth vs prediction",
        )
    images = [p.name for p in written.values()]
    (out / "report.json").write_text(report.to_json())
    (out / "report.md").write_text(report.to_markdown(images))
    (out / "report.html").write_text(report.to_html(images))
    written.update(json=out / "report.json", markdown=out / "report.md", html=out / "report.html")
    logger.info("wrote evaluation report to %s", out)
    return written


# ---------------------------------------------------------------------- cross-validation
@dataclass
class CrossValidationResult:
    """Reports of each fold and the mean and standard deviation of the summary metrics."""

    folds: list[EvaluationReport]
    mean: dict[str, float]
    std: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return _clean({"mean": self.mean, "std": self.std,
                       "folds": [f.to_dict() for f in self.folds]})


def cross_validate(
    probe: Any,
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    n_splits: int = 5,
    behavior_names: Sequence[str] | None = None,
    iou_thresholds: Sequence[float] = (0.5,),
    min_bout: int = 1,
    max_gap: int = 0,
) -> CrossValidationResult:
    """Cross-validation by video (GroupKFold): fit a clone per fold, evaluate on held-out videos.

    Parameters
    ----------
    probe : BaseProbe
        Unfitted template (cloned per fold).
    X : np.ndarray
        ``(N, ...)`` features (rows of a video contiguous, in time order).
    y : np.ndarray
        ``(N, K)`` int in {-1, 0, 1}.
    groups : np.ndarray
        ``(N,)`` video id per row; at least ``n_splits`` distinct videos.
    n_splits : int
        Folds.
    behavior_names : sequence of str, optional
    iou_thresholds : sequence of float
    min_bout, max_gap : int
        Bout post-processing of the predictions before frame and bout metrics.

    Returns
    -------
    CrossValidationResult
    """
    groups = np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise PrismError(
            f"cross-validation by video needs at least n_splits={n_splits} videos, found "
            f"{n_groups}; lower n_splits or add videos."
        )
    y = np.asarray(y)
    reports = []
    for fold, (train, test) in enumerate(GroupKFold(n_splits=n_splits).split(X, y, groups)):
        model = clone(probe).fit(X[train], y[train], groups=groups[train],
                                 behavior_names=behavior_names)
        scores = model.predict_proba(X[test], groups=groups[test])
        pred = binarize_predictions(scores, model.thresholds_,
                                    {"min_bout": min_bout, "max_gap": max_gap}, groups[test])
        report = evaluate_predictions(
            y[test], scores, pred, behavior_names, groups[test], iou_thresholds,
            thresholds=model.thresholds_, metadata={"fold": fold},
        )
        logger.info("fold %d: mAP %.3f", fold, report.summary["mAP"])
        reports.append(report)
    keys = ["mAP", "mean_f1"] + [f"mean_bout_f1@{t:g}" for t in iou_thresholds]

    def values(report: EvaluationReport, key: str) -> float:
        if key.startswith("mean_bout_f1@"):
            return report.summary["mean_bout_f1"][float(key.split("@")[1])]
        return report.summary[key]

    table = {k: np.array([values(r, k) for r in reports], float) for k in keys}
    mean = {k: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
            for k, v in table.items()}
    std = {k: float(np.nanstd(v)) if np.isfinite(v).any() else float("nan")
           for k, v in table.items()}
    return CrossValidationResult(reports, mean, std)
