"""Probes: options for rare behaviors, token-grid pooling and temporal context."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from prism_science.probes import AttentionProbe, LinearProbe, TemporalProbe
from tests.probes.conftest import planted_videos

FAST = {"max_epochs": 30, "random_state": 0}


@pytest.mark.parametrize("options", [{"class_weight": "balanced"}, {"focal_gamma": 2.0},
                                     {"class_weight": {"rare": 20.0}}])
def test_rare_behavior_options_raise_its_recall(options):
    X, y, groups = planted_videos_rare()
    names = ["walk", "groom", "rare"]
    base = LinearProbe(**FAST, tune_thresholds=False).fit(X, y, groups=groups,
                                                          behavior_names=names)
    weighted = LinearProbe(**FAST, tune_thresholds=False, **options).fit(
        X, y, groups=groups, behavior_names=names)
    mean_base = base.predict_proba(X)[y[:, 2] == 1, 2].mean()
    mean_weighted = weighted.predict_proba(X)[y[:, 2] == 1, 2].mean()
    if "focal_gamma" in options:  # focal loss flattens confident scores towards 0.5
        assert abs(mean_weighted - 0.5) < abs(mean_base - 0.5) + 0.05
    else:
        assert mean_weighted > mean_base


def planted_videos_rare():
    X, y, groups = planted_videos(n_videos=6, n_frames=150, seed=3)
    X = X.copy()
    X[:, 2] -= 1.7 * y[:, 2]  # make the rare behavior weak
    return X, y, groups


def test_attention_probe_pools_token_grids():
    rng = np.random.default_rng(0)
    n = 600
    grid = rng.normal(size=(n, 3, 3, 6)).astype(np.float32)
    where = rng.integers(0, 9, n)
    flat = grid.reshape(n, 9, 6)
    flat[np.arange(n), where, 1] = 4.0  # a marked token carries the label in feature 0
    labels = (flat[np.arange(n), where, 0] > 0).astype(int)
    probe = AttentionProbe(hidden_dim=16, n_heads=2, max_epochs=60, random_state=0,
                           learning_rate=3e-3)
    probe.fit(flat.reshape(n, 3, 3, 6)[:500], labels[:500])
    assert probe.n_features_in_ == 6
    accuracy = (probe.predict(flat.reshape(n, 3, 3, 6)[500:]) == labels[500:]).mean()
    assert accuracy > 0.8
    assert probe.predict(flat[500:]).shape == (100,)  # (N, n_tokens, D) works as well


def test_temporal_probe_list_input_equals_groups_input(planted):
    X, y, groups = planted
    sequences = [X[groups == g] for g in range(6)]
    labels = [y[groups == g] for g in range(6)]
    a = TemporalProbe(hidden_dim=16, n_layers=2, chunk_length=64, **FAST).fit(sequences, labels)
    b = TemporalProbe(hidden_dim=16, n_layers=2, chunk_length=64, **FAST).fit(X, y, groups=groups)
    np.testing.assert_allclose(a.predict_proba(sequences), b.predict_proba(X, groups=groups),
                               atol=1e-6)
    # Videos in another order (rows of each video still in time order): same per-row output.
    order = np.concatenate([np.flatnonzero(groups == g) for g in (5, 2, 0, 4, 1, 3)])
    np.testing.assert_allclose(b.predict_proba(X[order], groups=groups[order]),
                               b.predict_proba(X, groups=groups)[order], atol=1e-6)


def test_temporal_context_uses_neighbouring_frames():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 4)).astype(np.float32)
    cue = np.zeros(2000, bool)
    cue[rng.choice(1990, 60, replace=False)] = True
    X[cue, 0] += 4.0
    y = np.zeros((2000, 1), np.int64)
    for i in np.flatnonzero(cue):  # the behavior follows the cue by 3 frames
        y[i + 3, 0] = 1
    groups = np.repeat(np.arange(8), 250)
    temporal = TemporalProbe(hidden_dim=16, n_layers=3, max_epochs=60, random_state=0,
                             class_weight="balanced").fit(X, y, groups=groups)
    linear = LinearProbe(**FAST, class_weight="balanced").fit(X, y, groups=groups)
    ap_t = average_precision_score(y[:, 0], temporal.predict_proba(X, groups=groups)[:, 0])
    ap_l = average_precision_score(y[:, 0], linear.predict_proba(X)[:, 0])
    assert ap_t > 0.8 > ap_l
