"""Probes: fit / predict contracts, partial labels, skipped behaviors, determinism, options."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import average_precision_score

from prism_science.errors import ProbeError
from prism_science.probes import (
    AttentionProbe,
    LinearProbe,
    MLPProbe,
    TemporalProbe,
    best_f1_threshold,
    split_by_group,
)

FAST = {"max_epochs": 25, "random_state": 0}


def make(kind, **kw):
    params = dict(FAST, **kw)
    if kind is MLPProbe:
        params.setdefault("hidden_sizes", (32,))
    if kind is AttentionProbe:
        params.setdefault("hidden_dim", 16)
        params.setdefault("n_heads", 2)
    if kind is TemporalProbe:
        params.setdefault("hidden_dim", 16)
        params.setdefault("n_layers", 2)
        params.setdefault("chunk_length", 64)
    return kind(**params)


ALL = [LinearProbe, MLPProbe, AttentionProbe, TemporalProbe]


@pytest.mark.parametrize("kind", ALL)
def test_multilabel_fit_predict_learns_planted_signal(kind, planted):
    X, y, groups = planted
    train, test = groups < 4, groups >= 4
    probe = make(kind).fit(X[train], y[train], groups=groups[train],
                           behavior_names=["walk", "groom", "rare"])
    assert probe.multilabel_ and probe.n_features_in_ == X.shape[1]
    assert probe.classes_.tolist() == ["walk", "groom", "rare"]
    proba = probe.predict_proba(X[test], groups=groups[test])
    assert proba.shape == (test.sum(), 3) and np.all((proba >= 0) & (proba <= 1))
    pred = probe.predict(X[test], groups=groups[test])
    assert pred.shape == (test.sum(), 3) and set(np.unique(pred)) <= {0, 1}
    for k in range(2):
        assert average_precision_score(y[test, k], proba[:, k]) > 0.8
    assert probe.thresholds_.shape == (3,)


@pytest.mark.parametrize("kind", [LinearProbe, TemporalProbe])
def test_multiclass_softmax_rows_sum_to_one_and_classes_follow_labels(kind, planted):
    X, y, groups = planted
    labels = np.array(["none", "walk", "groom", "rare"])[np.where(y.any(1), y.argmax(1) + 1, 0)]
    probe = make(kind).fit(X, labels, groups=groups)
    assert probe.classes_.tolist() == ["groom", "none", "rare", "walk"]
    proba = probe.predict_proba(X, groups=groups)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    assert set(probe.predict(X, groups=groups)) <= set(probe.classes_)
    assert probe.thresholds_ is None


def test_unlabeled_cells_are_masked_out_of_the_loss(planted):
    X, y, groups = planted
    # Invert the labels of most frames: trained on them the probe is wrong; marked unlabeled
    # (-1) they must be ignored, leaving a good probe trained on the remaining frames.
    poisoned = y.copy()
    poisoned[np.arange(len(y)) % 4 != 0] ^= 1
    masked = poisoned.copy()
    masked[np.arange(len(y)) % 4 != 0] = -1
    partial = LinearProbe(**FAST).fit(X, masked, groups=groups)
    wrong = LinearProbe(**FAST).fit(X, poisoned, groups=groups)
    for k in range(2):
        assert average_precision_score(y[:, k], partial.predict_proba(X)[:, k]) > 0.9
        assert average_precision_score(y[:, k], wrong.predict_proba(X)[:, k]) < 0.5


def test_behavior_without_positive_is_warned_skipped_and_zero(planted):
    X, y, groups = planted
    y = y.copy()
    y[:, 2] = np.where(y[:, 2] == 1, -1, y[:, 2])  # no labeled positive of behavior 2
    with pytest.warns(UserWarning, match="no positive labeled frame"):
        probe = LinearProbe(**FAST).fit(X, y, groups=groups, behavior_names=["a", "b", "c"])
    assert probe.skipped_classes_ == ["c"]
    proba = probe.predict_proba(X)
    assert np.all(proba[:, 2] == 0) and proba[:, :2].max() > 0.5
    assert probe.predict(X)[:, 2].sum() == 0


def test_training_is_deterministic_under_random_state(planted):
    X, y, groups = planted
    a = make(MLPProbe, random_state=7).fit(X, y, groups=groups).predict_proba(X)
    b = make(MLPProbe, random_state=7).fit(X, y, groups=groups).predict_proba(X)
    c = make(MLPProbe, random_state=8).fit(X, y, groups=groups).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-6


def test_clone_and_params_roundtrip():
    probe = TemporalProbe(hidden_dim=8, n_layers=3, class_weight="balanced", random_state=1)
    cloned = clone(probe)
    assert cloned.get_params() == probe.get_params()
    cloned.set_params(n_layers=5, focal_gamma=2.0)
    assert cloned.n_layers == 5 and cloned.focal_gamma == 2.0 and probe.n_layers == 3
    assert cloned.context_frames == 31


def test_validation_split_holds_out_whole_videos():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(10), 7)
    train, val = split_by_group(groups, 0.2, rng)
    assert len(val) and not set(groups[train]) & set(groups[val])
    assert len(np.unique(groups[val])) == 2
    train, val = split_by_group(np.zeros(20), 0.2, rng)  # one video: no split possible
    assert len(train) == 20 and len(val) == 0


def test_best_f1_threshold_matches_exhaustive_search():
    rng = np.random.default_rng(1)
    truth = rng.random(200) < 0.3
    proba = np.clip(truth * 0.3 + rng.random(200) * 0.7, 0, 1)
    t = best_f1_threshold(truth.astype(int), proba)

    def f1(th):
        pred = proba >= th
        tp = (pred & truth).sum()
        return 2 * tp / (pred.sum() + truth.sum())

    assert f1(t) == pytest.approx(max(f1(v) for v in np.unique(proba)))


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.full((20, 2), 2), "only -1"),
        (np.zeros(19, int), "rows"),
        (np.zeros(20, int), "only one class"),
        (np.full((20, 2), -1), "no labeled"),
    ],
)
def test_bad_targets_raise_probe_error(y, match):
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.raises(ProbeError, match=match):
        LinearProbe(**FAST).fit(X, y)


def test_feature_dimension_mismatch_says_what_to_do(planted):
    X, y, groups = planted
    probe = LinearProbe(**FAST).fit(X, y)
    with pytest.raises(ProbeError, match="re-extract"):
        probe.predict(X[:, :5])


def test_no_warning_storm_for_clean_data(planted):
    X, y, groups = planted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LinearProbe(**FAST).fit(X, y, groups=groups)
