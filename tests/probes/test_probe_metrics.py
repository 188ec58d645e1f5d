"""Metrics: checked against scikit-learn and hand-computed cases; unlabeled frames excluded."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
)

from prism_science.errors import PrismError
from prism_science.evaluation import metrics


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    y = (rng.random((300, 3)) < [0.3, 0.1, 0.0]).astype(np.int64)
    scores = np.clip(y * 0.4 + rng.random((300, 3)) * 0.6, 0, 1)
    y[rng.random((300, 3)) < 0.2] = -1  # partial labeling
    return y, scores


def test_average_precision_matches_sklearn_on_labeled_frames(case):
    y, scores = case
    ap = metrics.average_precision(y, scores)
    for k in range(2):
        keep = y[:, k] >= 0
        assert ap[k] == pytest.approx(average_precision_score(y[keep, k], scores[keep, k]))
    assert np.isnan(ap[2])  # no positive: undefined
    assert metrics.mean_average_precision(y, scores) == pytest.approx(np.mean(ap[:2]))


def test_frame_metrics_match_sklearn(case):
    y, scores = case
    pred = (scores > 0.5).astype(int)
    out = metrics.precision_recall_f1(y, pred)
    for k in range(2):
        keep = y[:, k] >= 0
        assert out["precision"][k] == pytest.approx(precision_score(y[keep, k], pred[keep, k]))
        assert out["recall"][k] == pytest.approx(recall_score(y[keep, k], pred[keep, k]))
        assert out["f1"][k] == pytest.approx(f1_score(y[keep, k], pred[keep, k]))
        assert out["n_labeled"][k] == keep.sum()
    assert np.isnan(out["f1"][2]) and out["tp"][2] == 0


def test_hand_computed_precision_recall():
    y = np.array([[1], [1], [0], [0], [-1], [1]])
    pred = np.array([[1], [0], [1], [0], [1], [1]])
    out = metrics.precision_recall_f1(y, pred)
    # TP = 2 (frames 0, 5), FP = 1 (frame 2; frame 4 is unlabeled), FN = 1 (frame 1).
    assert (out["tp"][0], out["fp"][0], out["fn"][0], out["tn"][0]) == (2, 1, 1, 1)
    assert out["precision"][0] == pytest.approx(2 / 3)
    assert out["recall"][0] == pytest.approx(2 / 3)
    assert out["accuracy"][0] == pytest.approx(3 / 5)


def test_macro_accuracy_is_mean_per_class_accuracy():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, -1, -1])
    pred = np.array([0, 0, 0, 1, 1, 0, 2, 2, 0])
    # per class: 3/4, 1/2, 1/1 -> mean 0.75; unlabeled frames ignored
    assert metrics.macro_accuracy(truth, pred) == pytest.approx(0.75)
    assert metrics.macro_accuracy(truth[:7], pred[:7]) == pytest.approx(
        balanced_accuracy_score(truth[:7], pred[:7]))
    cm = metrics.confusion_matrix(truth, pred, labels=[0, 1, 2])
    assert cm.tolist() == [[3, 1, 0], [1, 1, 0], [0, 0, 1]]


def test_bout_f1_hand_computed():
    truth = np.zeros((30, 1), int)
    truth[2:8] = 1     # bout A (6 frames)
    truth[15:20] = 1   # bout B (5 frames)
    pred = np.zeros((30, 1), int)
    pred[3:8] = 1      # IoU with A = 5/6
    pred[18:24] = 1    # IoU with B = 2/9
    pred[26:28] = 1    # false positive bout
    out = metrics.bout_f1(truth, pred, iou_thresholds=(0.5, 0.1))
    assert out[0.5]["n_matched"][0] == 1 and out[0.5]["n_pred"][0] == 3
    assert out[0.5]["precision"][0] == pytest.approx(1 / 3)
    assert out[0.5]["recall"][0] == pytest.approx(1 / 2)
    assert out[0.5]["f1"][0] == pytest.approx(0.4)
    assert out[0.1]["n_matched"][0] == 2
    assert out[0.1]["f1"][0] == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))


def test_bout_f1_ignores_predictions_on_unlabeled_frames_and_splits_videos():
    truth = np.array([[1], [1], [-1], [-1], [1], [1]])
    pred = np.array([[1], [1], [1], [1], [1], [1]])
    out = metrics.bout_f1(truth, pred)
    assert out[0.5]["n_pred"][0] == 2 and out[0.5]["f1"][0] == pytest.approx(1.0)
    truth = np.array([[1], [1], [1], [1]])
    out = metrics.bout_f1(truth, truth, groups=np.array([0, 0, 1, 1]))
    assert out[0.5]["n_true"][0] == 2 and out[0.5]["n_matched"][0] == 2


def test_matching_is_one_to_one():
    truth = np.zeros((20, 1), int)
    truth[0:10] = 1
    pred = np.zeros((20, 1), int)
    pred[0:4] = 1
    pred[5:10] = 1
    out = metrics.bout_f1(truth, pred, iou_thresholds=(0.3,))
    assert out[0.3]["n_matched"][0] == 1


def test_shape_mismatch_is_reported():
    with pytest.raises(PrismError, match="same frames"):
        metrics.average_precision(np.zeros((5, 2)), np.zeros((4, 2)))


def test_interpolated_ap_hand_computed_ava_voc_definition():
    # Ranked: FP, TP, TP, FP, TP (3 positives); a -1 cell is left out.
    truth = np.array([0, 1, 1, 0, 1, -1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.95])
    # Precision at each rank: 0, 1/2, 2/3, 1/2, 3/5; recall 0, 1/3, 2/3, 2/3, 1.
    # Interpolated P at R = 1/3, 2/3, 1: max precision at recall >= R = 2/3, 2/3, 3/5.
    expected = (2 / 3 + 2 / 3 + 3 / 5) / 3  # = 29/45
    ap = metrics.interpolated_average_precision(truth, scores)
    assert ap.shape == (1,) and ap[0] == pytest.approx(29 / 45) == pytest.approx(expected)
    # The step AP (scikit-learn) takes P at each positive: (1/2 + 2/3 + 3/5) / 3 = 53/90.
    assert metrics.average_precision(truth, scores)[0] == pytest.approx(53 / 90)
    assert metrics.mean_average_precision(truth, scores, interpolated=True) == pytest.approx(
        29 / 45)


def test_interpolated_ap_per_behavior_never_below_step_ap(case):
    y, scores = case
    interp = metrics.interpolated_average_precision(y, scores)
    step = metrics.average_precision(y, scores)
    assert np.isnan(interp[2]) and np.isnan(step[2])  # no positive
    assert np.all(interp[:2] >= step[:2] - 1e-12)
    assert interp[0] > step[0]
    perfect = metrics.interpolated_average_precision(np.array([1, 1, 0, 0]),
                                                      np.array([0.9, 0.8, 0.2, 0.1]))
    assert perfect[0] == pytest.approx(1.0)


def test_top1_macro_accuracy_takes_the_argmax_without_thresholds():
    # Top scores are all below 0.5: a threshold of 0.5 would predict nothing.
    scores = np.array([[0.40, 0.30, 0.30],   # truth 0 -> 0 right
                       [0.20, 0.45, 0.35],   # truth 0 -> 1 wrong
                       [0.10, 0.48, 0.42],   # truth 1 -> 1 right
                       [0.30, 0.30, 0.40],   # truth 2 -> 2 right
                       [0.90, 0.05, 0.05]])  # unlabeled
    truth = np.array([0, 0, 1, 2, -1])
    # per class recall: 1/2, 1, 1 -> 5/6
    assert metrics.top1_macro_accuracy(truth, scores) == pytest.approx(5 / 6)
    assert metrics.top1_macro_accuracy(truth[:4], scores[:4]) == pytest.approx(
        balanced_accuracy_score(truth[:4], scores[:4].argmax(1)))
    matrix = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [-1, -1, -1]])
    assert metrics.top1_macro_accuracy(matrix, scores) == pytest.approx(5 / 6)
    with pytest.raises(PrismError, match="outside 0..2"):
        metrics.top1_macro_accuracy(np.array([0, 3, 1, 2, 0]), scores)
    with pytest.raises(PrismError, match="one row per labeled sample"):
        metrics.top1_macro_accuracy(truth[:3], scores)
