"""Frame- and bout-level metrics of behavior predictions, with unlabeled frames left out.

Conventions: ``y_true`` is a frames x behaviors int matrix (-1 unlabeled, 0 absent, 1 present,
as from :func:`prism_science.labels.to_frame_matrix`); ``scores`` are per-frame probabilities of
the same shape; ``y_pred`` is a 0/1 matrix of the same shape. A (frame, behavior) cell with
``y_true == -1`` is excluded from every metric. Per-behavior values are NaN when undefined
(e.g. AP of a behavior with no labeled positive); means ignore NaN.

Definitions
-----------
- average precision (AP): area under the precision-recall step curve,
  ``sum_n (R_n - R_{n-1}) P_n`` (scikit-learn's ``average_precision_score``); mAP = mean over
  behaviors with at least one labeled positive.
- interpolated AP (AVA / PASCAL VOC 2010+, :func:`interpolated_average_precision`): samples
  ranked by score (each one a rank, ties in input order, as AVA's ``compute_precision_recall``);
  precision made non-increasing, ``P_interp(r) = max_{r' >= r} P(r')``, and summed over the
  points where recall changes, ``sum_n (R_n - R_{n-1}) P_interp(R_n)`` -- the AP of AVA's
  ``object_detection_evaluation`` and so of ChimpACT's frame-mAP (with ground-truth boxes every
  box is one sample). Never below the step AP.
- precision = TP / (TP + FP), recall = TP / (TP + FN), F1 = 2PR / (P + R); 0 when the
  denominator is 0 and the behavior has labeled positives, NaN when it has none.
- macro accuracy (KABR): mean over classes of the per-class accuracy (recall of that class) of
  a single-label prediction; equals scikit-learn's ``balanced_accuracy_score``. KABR's
  prediction is the top-1 class (the argmax of the scores, no threshold):
  :func:`top1_macro_accuracy`.
- bout F1 at IoU t: bouts are maximal runs of 1; a predicted and a true bout of the same behavior
  match when their temporal IoU >= t, each bout matched at most once (greedy by IoU); precision =
  matches / predicted bouts, recall = matches / true bouts. Predictions on unlabeled frames are
  dropped first; bouts never cross videos (``groups``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix

from prism_science.errors import PrismError
from prism_science.probes.postprocess import binary_to_bouts, group_runs

__all__ = [
    "average_precision",
    "bout_f1",
    "confusion_matrix",
    "interpolated_average_precision",
    "macro_accuracy",
    "mean_average_precision",
    "precision_recall_curves",
    "precision_recall_f1",
    "top1_macro_accuracy",
]


def _check_pair(y_true: np.ndarray, other: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true)
    other = np.asarray(other)
    if y_true.ndim == 1:
        y_true = y_true[:, None]
    if other.ndim == 1:
        other = other[:, None]
    if y_true.shape != other.shape:
        raise PrismError(
            f"y_true has shape {y_true.shape} but {name} has shape {other.shape}; expected the "
            "same frames x behaviors. Check that labels and predictions cover the same frames."
        )
    return y_true.astype(np.int64), other


def average_precision(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-behavior average precision over labeled frames.

    Parameters
    ----------
    y_true : np.ndarray
        ``(N, K)`` int in {-1, 0, 1} (or ``(N,)`` for one behavior).
    scores : np.ndarray
        ``(N, K)`` float scores (higher = more likely present).

    Returns
    -------
    np.ndarray
        ``(K,)`` float64; NaN for a behavior without a labeled positive frame.
    """
    y_true, scores = _check_pair(y_true, scores, "scores")
    out = np.full(y_true.shape[1], np.nan)
    for k in range(y_true.shape[1]):
        labeled = y_true[:, k] >= 0
        truth = y_true[labeled, k]
        if truth.sum() == 0:
            continue
        column = np.asarray(scores[labeled, k], np.float64)
        out[k] = average_precision_score(truth, np.nan_to_num(column, nan=0.0))
    return out


def _interpolated_ap(truth: np.ndarray, scores: np.ndarray) -> float:
    """AVA's ``compute_precision_recall`` + ``compute_average_precision`` for one class."""
    order = np.argsort(-scores, kind="stable")  # ties keep their input order
    hits = truth[order].astype(np.float64)
    tp = np.cumsum(hits)
    precision = tp / np.arange(1, len(hits) + 1)
    recall = tp / hits.sum()
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # max precision at recall >= r
    changes = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[changes] - recall[changes - 1]) * precision[changes]))


def interpolated_average_precision(y_true: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-behavior interpolated AP (AVA / PASCAL VOC 2010+) over labeled frames.

    The definition of the module docstring: ChimpACT's (AVA) frame-mAP is the mean of these.

    Parameters
    ----------
    y_true : np.ndarray
        ``(N, K)`` int in {-1, 0, 1} (or ``(N,)`` for one behavior); -1 cells are left out.
    scores : np.ndarray
        ``(N, K)`` float scores (NaN counts as 0).

    Returns
    -------
    np.ndarray
        ``(K,)`` float64; NaN for a behavior without a labeled positive.
    """
    y_true, scores = _check_pair(y_true, scores, "scores")
    out = np.full(y_true.shape[1], np.nan)
    for k in range(y_true.shape[1]):
        labeled = y_true[:, k] >= 0
        truth = y_true[labeled, k] == 1
        if not truth.any():
            continue
        column = np.nan_to_num(np.asarray(scores[labeled, k], np.float64), nan=0.0)
        out[k] = _interpolated_ap(truth, column)
    return out


def mean_average_precision(y_true: np.ndarray, scores: np.ndarray,
                           interpolated: bool = False) -> float:
    """mAP: mean of :func:`average_precision` over behaviors with labeled positives (or NaN).

    Parameters
    ----------
    y_true, scores : np.ndarray
        As in :func:`average_precision`.
    interpolated : bool
        Average :func:`interpolated_average_precision` instead (AVA frame-mAP, ChimpACT).

    Returns
    -------
    float
    """
    ap = (interpolated_average_precision if interpolated else average_precision)(y_true, scores)
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def precision_recall_f1(
    y_true: np.ndarray, y_pred: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-behavior frame-level precision, recall, F1 and counts over labeled frames.

    Parameters
    ----------
    y_true : np.ndarray
        ``(N, K)`` int in {-1, 0, 1}.
    y_pred : np.ndarray
        ``(N, K)`` 0/1 predictions.

    Returns
    -------
    dict
        ``precision``, ``recall``, ``f1`` (``(K,)`` float64, NaN without labeled positives),
        ``tp``, ``fp``, ``fn``, ``tn``, ``n_labeled`` (``(K,)`` int64) and ``accuracy``
        (``(K,)`` float64, NaN without labeled frames).
    """
    y_true, y_pred = _check_pair(y_true, y_pred, "y_pred")
    labeled = y_true >= 0
    truth = (y_true == 1) & labeled
    pred = (np.asarray(y_pred) > 0) & labeled
    tp = (truth & pred).sum(0)
    fp = (~truth & pred & labeled).sum(0)
    fn = (truth & ~pred).sum(0)
    tn = (~truth & ~pred & labeled).sum(0)
    has_pos = truth.sum(0) > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 0.0)
        recall = np.where(has_pos, tp / np.maximum(tp + fn, 1), np.nan)
        f1 = np.where(
            precision + np.nan_to_num(recall) > 0,
            2 * precision * recall / (precision + recall),
            0.0,
        )
        n_labeled = labeled.sum(0)
        accuracy = np.where(n_labeled > 0, (tp + tn) / np.maximum(n_labeled, 1), np.nan)
    precision = np.where(has_pos, precision, np.nan)
    f1 = np.where(has_pos, f1, np.nan)
    return {
        "precision": precision.astype(np.float64),
        "recall": recall.astype(np.float64),
        "f1": f1.astype(np.float64),
        "accuracy": accuracy.astype(np.float64),
        "tp": tp.astype(np.int64),
        "fp": fp.astype(np.int64),
        "fn": fn.astype(np.int64),
        "tn": tn.astype(np.int64),
        "n_labeled": n_labeled.astype(np.int64),
    }


def macro_accuracy(
    y_true: np.ndarray, y_pred: np.ndarray, unlabeled: object = -1
) -> float:
    """KABR-style macro accuracy: mean over the classes present in ``y_true`` of their recall.

    Parameters
    ----------
    y_true, y_pred : np.ndarray
        ``(N,)`` single-label class ids (or names); frames whose truth equals ``unlabeled``
        are excluded.
    unlabeled : object
        Marker of unlabeled frames in ``y_true``.

    Returns
    -------
    float
        In [0, 1]; NaN when no frame is labeled.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape:
        raise PrismError(
            f"y_true has {y_true.size} frames but y_pred has {y_pred.size}; expected the same."
        )
    keep = y_true != unlabeled
    if not keep.any():
        return float("nan")
    truth, pred = y_true[keep], y_pred[keep]
    recalls = [np.mean(pred[truth == c] == c) for c in np.unique(truth)]
    return float(np.mean(recalls))


def top1_macro_accuracy(
    y_true: np.ndarray, scores: np.ndarray, unlabeled: int = -1
) -> float:
    """KABR's macro accuracy: the top-1 class (argmax of ``scores``) per sample, no threshold,
    then the mean over the classes present in the truth of their recall.

    Parameters
    ----------
    y_true : np.ndarray
        ``(N,)`` int class index per sample (``unlabeled`` = left out), or an ``(N, K)``
        frames x behaviors matrix in {-1, 0, 1} with one behavior per frame (rows without
        exactly one positive are left out).
    scores : np.ndarray
        ``(N, K)`` float scores; column k is class k.
    unlabeled : int
        Marker of unlabeled samples in a 1-D ``y_true``.

    Returns
    -------
    float
        In [0, 1]; NaN when no sample is labeled.

    Raises
    ------
    PrismError
        The shapes disagree, or a class index is outside the K columns of ``scores``.
    """
    scores = np.asarray(scores, np.float64)
    y_true = np.asarray(y_true)
    if scores.ndim != 2 or len(scores) != len(y_true):
        raise PrismError(
            f"scores have shape {scores.shape} for {len(y_true)} labels; expected (N, K) with "
            "one row per labeled sample. Check that both cover the same frames."
        )
    if y_true.ndim == 2:
        if y_true.shape != scores.shape:
            raise PrismError(f"y_true has shape {y_true.shape} but scores {scores.shape}; "
                             "expected the same frames x behaviors.")
        single = (y_true == 1).sum(1) == 1
        truth = np.where(single, np.argmax(y_true == 1, axis=1), unlabeled)
    else:
        truth = y_true.reshape(-1).astype(np.int64)
    keep = truth != unlabeled
    if ((truth[keep] < 0) | (truth[keep] >= scores.shape[1])).any():
        raise PrismError(
            f"y_true holds class indices outside 0..{scores.shape[1] - 1} (the score columns); "
            "map class names to the score columns first."
        )
    prediction = np.argmax(np.nan_to_num(scores, nan=-np.inf), axis=1)
    return macro_accuracy(truth, prediction, unlabeled=unlabeled)


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence, unlabeled: object = -1
) -> np.ndarray:
    """Multi-class confusion matrix over labeled frames.

    Parameters
    ----------
    y_true, y_pred : np.ndarray
        ``(N,)`` single-label class ids; frames with ``y_true == unlabeled`` are excluded.
    labels : sequence
        Class order of the rows (truth) and columns (prediction).

    Returns
    -------
    np.ndarray
        ``(C, C)`` int64 counts, ``[i, j]`` = frames of class i predicted as j.
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    keep = y_true != unlabeled
    return _sk_confusion_matrix(y_true[keep], y_pred[keep], labels=list(labels)).astype(np.int64)


def _match_bouts(true_bouts: np.ndarray, pred_bouts: np.ndarray) -> np.ndarray:
    """IoU of the greedy one-to-one matching, one value per match, in descending order."""
    if len(true_bouts) == 0 or len(pred_bouts) == 0:
        return np.zeros(0)
    t_start, t_end = true_bouts[:, 0][:, None], true_bouts[:, 1][:, None] + 1
    p_start, p_end = pred_bouts[:, 0][None, :], pred_bouts[:, 1][None, :] + 1
    inter = np.clip(np.minimum(t_end, p_end) - np.maximum(t_start, p_start), 0, None)
    union = (t_end - t_start) + (p_end - p_start) - inter
    iou = inter / union
    matches = []
    pairs = np.argwhere(iou > 0)
    order = np.argsort(-iou[pairs[:, 0], pairs[:, 1]], kind="stable")
    used_t, used_p = set(), set()
    for i, j in pairs[order]:
        if i in used_t or j in used_p:
            continue
        used_t.add(i)
        used_p.add(j)
        matches.append(iou[i, j])
    return np.asarray(matches)


def bout_f1(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    iou_thresholds: Sequence[float] = (0.5,),
    groups: np.ndarray | None = None,
) -> dict[float, dict[str, np.ndarray]]:
    """Bout-level precision, recall and F1 per behavior at each IoU threshold.

    Parameters
    ----------
    y_true : np.ndarray
        ``(N, K)`` int in {-1, 0, 1}.
    y_pred : np.ndarray
        ``(N, K)`` 0/1 (post-processed) predictions.
    iou_thresholds : sequence of float
        Minimum IoU for a match.
    groups : np.ndarray, optional
        ``(N,)`` video id per row (rows of a video contiguous, in time order).

    Returns
    -------
    dict
        threshold -> {``precision``, ``recall``, ``f1``: ``(K,)`` float64 (NaN when the behavior
        has no true bout), ``n_true``, ``n_pred``, ``n_matched``: ``(K,)`` int64}.
    """
    y_true, y_pred = _check_pair(y_true, y_pred, "y_pred")
    n_behaviors = y_true.shape[1]
    ious: list[list[np.ndarray]] = [[] for _ in range(n_behaviors)]
    n_true = np.zeros(n_behaviors, np.int64)
    n_pred = np.zeros(n_behaviors, np.int64)
    pred = (np.asarray(y_pred) > 0) & (y_true >= 0)
    for lo, hi in group_runs(groups, len(y_true)):
        for k in range(n_behaviors):
            true_bouts = binary_to_bouts(y_true[lo:hi, k] == 1)
            pred_bouts = binary_to_bouts(pred[lo:hi, k])
            n_true[k] += len(true_bouts)
            n_pred[k] += len(pred_bouts)
            ious[k].append(_match_bouts(true_bouts, pred_bouts))
    out: dict[float, dict[str, np.ndarray]] = {}
    for threshold in iou_thresholds:
        matched = np.array(
            [int(sum((m >= threshold).sum() for m in ious[k])) for k in range(n_behaviors)],
            np.int64,
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(n_pred > 0, matched / np.maximum(n_pred, 1), 0.0)
            recall = matched / np.maximum(n_true, 1)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall),
                          0.0)
        has_true = n_true > 0
        out[float(threshold)] = {
            "precision": np.where(has_true, precision, np.nan),
            "recall": np.where(has_true, recall, np.nan),
            "f1": np.where(has_true, f1, np.nan),
            "n_true": n_true.copy(),
            "n_pred": n_pred.copy(),
            "n_matched": matched,
        }
    return out


def precision_recall_curves(
    y_true: np.ndarray, scores: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Per-behavior (precision, recall) curves over labeled frames (None without positives)."""
    y_true, scores = _check_pair(y_true, scores, "scores")
    curves: list[tuple[np.ndarray, np.ndarray] | None] = []
    for k in range(y_true.shape[1]):
        labeled = y_true[:, k] >= 0
        truth = y_true[labeled, k]
        if truth.sum() == 0:
            curves.append(None)
            continue
        precision, recall, _ = precision_recall_curve(
            truth, np.nan_to_num(np.asarray(scores[labeled, k], np.float64), nan=0.0)
        )
        curves.append((precision, recall))
    return curves
