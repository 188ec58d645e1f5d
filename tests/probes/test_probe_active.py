"""Active learning: uncertainty ranking, diversity, and a replayed labeling session."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.evaluation.active import (
    k_center_greedy,
    labels_to_reach,
    simulate_active_learning,
    suggest_bouts,
    suggest_frames,
    uncertainty,
)
from prism_science.probes import LinearProbe


def test_uncertainty_orders_frames():
    proba = np.array([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    for method in ("entropy", "margin"):
        u = uncertainty(proba, method)
        assert np.argmax(u) == 0 and np.argmin(u) == 1
    multilabel = np.array([[0.5, 0.01], [0.99, 0.01], [0.1, 0.05]])
    u = uncertainty(multilabel, "entropy", multilabel=True)
    assert np.argmax(u) == 0 and np.argmin(u) == 1


def test_suggest_frames_favours_uncertain_unlabeled_frames():
    rng = np.random.default_rng(0)
    proba = rng.random((200, 2)) * 0.05  # confident "absent" everywhere...
    uncertain = np.array([5, 50, 120, 199])
    proba[uncertain] = 0.5  # ...except here
    labeled = np.zeros(200, bool)
    labeled[50] = True
    picks = suggest_frames(proba, 3, labeled=labeled, diversity=False)
    assert set(picks) == {5, 120, 199}
    assert 50 not in suggest_frames(proba, 20, features=rng.normal(size=(200, 3)),
                                    labeled=labeled)


def test_k_center_greedy_spreads_picks():
    points = np.array([[0.0, 0], [0.1, 0], [0.2, 0], [10, 0], [10.1, 0], [0, 10]])
    picks = k_center_greedy(points, 3, selected=np.array([0]))
    # farthest from (0, 0): (10.1, 0), then (0, 10), then (0.2, 0) (3 is next to 4)
    assert picks.tolist() == [4, 5, 2]


def test_suggest_bouts_are_disjoint_and_inside_videos():
    proba = np.full((100, 1), 0.01)
    proba[10:20] = 0.5
    proba[60:70] = 0.45
    groups = np.repeat([0, 1], 50)
    bouts = suggest_bouts(proba, 2, length=10, groups=groups)
    assert [(s, e) for s, e, _ in bouts] == [(10, 19), (60, 69)]
    for start, end, _ in bouts:
        assert groups[start] == groups[end]


def gaussian_world(n, seed):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(4, 6)) * 2.0
    classes = rng.choice(4, n, p=[0.6, 0.2, 0.17, 0.03])
    X = (centres[classes] + rng.normal(size=(n, 6))).astype(np.float32)
    y = np.zeros((n, 3), np.int64)
    y[classes > 0, classes[classes > 0] - 1] = 1
    return X, y


def test_active_labeling_does_at_least_as_well_as_random():
    X, y = gaussian_world(1500, 0)
    X_eval, y_eval = gaussian_world(800, 1)

    def make_probe():
        return LinearProbe(early_stopping=False, tune_thresholds=False, max_epochs=30,
                           random_state=0)

    kwargs = {"initial": 10, "batch": 10, "max_labels": 60, "random_state": 0}
    active = simulate_active_learning(make_probe, X, y, X_eval, y_eval, "active", **kwargs)
    random = simulate_active_learning(make_probe, X, y, X_eval, y_eval, "random", **kwargs)
    assert [n for n, _ in active] == [n for n, _ in random] == [10, 20, 30, 40, 50, 60]
    assert active[-1][1] >= random[-1][1] - 0.01
    area = (np.mean([m for _, m in active]), np.mean([m for _, m in random]))
    assert area[0] >= area[1] - 0.01
    assert labels_to_reach(active, 0.0) == 10 and labels_to_reach(active, 2.0) is None


def test_unknown_strategy():
    with pytest.raises(ValueError, match="strategy"):
        simulate_active_learning(LinearProbe, np.zeros((5, 2)), np.zeros((5, 1)),
                                 np.zeros((5, 2)), np.zeros((5, 1)), strategy="oracle")
