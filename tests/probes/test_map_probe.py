"""The paper's probe (`MAPProbe`, `probe train --kind map`): the official MAP pooler, fixed epochs
with a cosine learning rate, softmax / EQL / sigmoid losses, and multi-class predictions into the
store."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.metrics import average_precision_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from prism_science.cli.main import main
from prism_science.errors import ProbeError
from prism_science.labels import Interval, LabelTable, Segment, save_labels
from prism_science.models.pooler import AttenTokenPoolingLayer
from prism_science.pipeline import load_predictions, load_trained_probe, predict_video
from prism_science.probes import MAPProbe, load_probe, make_probe, save_probe
from prism_science.store import open_store
from tests.probes.conftest import planted_videos

MODEL = "prism-test-p8-f4-r32"  # 4 heads


def token_videos(n_videos=4, n_frames=60, dim=8, n_tokens=6, seed=0):
    """Token features (N, n_tokens, D): the behaviors shift one token out of ``n_tokens``."""
    X, y, groups = planted_videos(n_videos=n_videos, n_frames=n_frames, dim=dim, seed=seed,
                                  rare=False)
    rng = np.random.default_rng(seed + 1)
    tokens = rng.normal(size=(len(X), n_tokens, dim)).astype(np.float32)
    tokens[:, 2] = X  # the signal sits in one token of each sample...
    tokens[:, 2, -1] += 4.0  # ...which a marker (as a position embedding would) identifies
    return tokens, y, groups


def test_defaults_are_the_papers_and_the_module_is_the_official_pooler():
    probe = MAPProbe()
    params = probe.get_params()
    assert params["learning_rate"] == 5e-5
    assert params["dropout"] == 0.5
    assert params["n_heads"] is None
    assert not MAPProbe.early_stopping
    X, y, groups = token_videos(n_videos=2, n_frames=20, dim=24)
    probe.set_params(max_epochs=1).fit(X, y, groups=groups)
    module = probe.module_
    assert isinstance(module.pooler, AttenTokenPoolingLayer)
    assert probe.n_heads_ == 12  # no provenance: the paper's 12
    assert module.dropout.p == 0.5
    # No MLP, no extra LayerNorm: pooler (query, q/k/v/post, per-dim scale, LayerNorm) + linear.
    assert {name.split(".")[0] for name, _ in module.named_parameters()} == {"pooler", "head"}
    assert not any("mlp" in name for name, _ in module.named_parameters())
    # Eval: the head sees exactly the official pooler's pooled vector (no dropout).
    with torch.no_grad():
        tokens = torch.from_numpy(X[:5])
        expected = module.head(module.pooler(tokens)[:, 0])
        np.testing.assert_allclose(module(tokens).numpy(), expected.numpy(), atol=1e-6)


def test_heads_follow_the_features_model_and_must_divide_width():
    X, y, groups = token_videos(n_videos=2, n_frames=20, dim=8)
    probe = MAPProbe(max_epochs=1).fit(X, y, groups=groups,
                                       feature_provenance={"model_name": MODEL})
    assert probe.n_heads_ == 4  # prism-test-p8-f4-r32's heads
    assert probe.module_.pooler.pooling_attention.num_heads == 4
    with pytest.raises(ProbeError, match="D=8 is not divisible by n_heads=12"):
        MAPProbe(max_epochs=1).fit(X, y, groups=groups)
    with pytest.raises(ProbeError, match="n_heads=3"):
        MAPProbe(n_heads=3, max_epochs=1).fit(X, y, groups=groups)


def test_fixed_epochs_cosine_schedule_and_every_training_video_used():
    X, y, groups = token_videos(n_videos=2, n_frames=30, dim=8)
    probe = MAPProbe(n_heads=2, max_epochs=4, batch_size=16, learning_rate=1e-3,
                     random_state=0).fit(X, y, groups=groups)
    steps = 4 * math.ceil(len(X) / 16)  # both videos: nothing held out
    assert probe.n_epochs_ == 4 and len(probe.loss_curve_) == 4
    rates = np.array(probe.learning_rates_)
    assert len(rates) == steps
    assert rates[0] == pytest.approx(1e-3)
    assert np.all(np.diff(rates) < 0)
    assert rates[steps // 2] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi / 2)))
    assert rates[-1] < 0.01e-3
    warm = MAPProbe(n_heads=2, max_epochs=4, batch_size=16, learning_rate=1e-3,
                    warmup_fraction=0.25, random_state=0).fit(X, y, groups=groups)
    head = np.array(warm.learning_rates_[: steps // 4])
    assert np.all(np.diff(head) > 0) and head[-1] == pytest.approx(1e-3)


def test_multilabel_sigmoid_learns_a_signal_in_one_token():
    X, y, groups = token_videos(n_videos=4, n_frames=80, dim=8, seed=3)
    Xt, yt, _ = token_videos(n_videos=2, n_frames=80, dim=8, seed=4)
    probe = MAPProbe(n_heads=2, max_epochs=30, learning_rate=1e-2, dropout=0.1,
                     random_state=0).fit(X, y, groups=groups)
    assert probe.multilabel_
    proba = probe.predict_proba(Xt)
    assert proba.shape == (len(Xt), 3)
    for k in range(3):  # measured 0.90, 0.85, 0.78; chance is the prevalence (< 0.35)
        assert yt[:, k].mean() < 0.35
        assert average_precision_score(yt[:, k], proba[:, k]) > 0.7


def test_multiclass_softmax_and_one_of_k_from_a_label_matrix():
    X, y, groups = token_videos(n_videos=3, n_frames=60, dim=8, seed=5)
    single = y.copy()
    single[single.sum(1) > 1] = -1  # frames with several behaviors: unlabeled
    one = single.max(1) >= 0
    classes = np.where(single.max(1) == 1, np.argmax(single == 1, axis=1), 3)
    names = np.array(["walk", "groom", "turn", "none"])[classes]
    probe = MAPProbe(n_heads=2, max_epochs=30, learning_rate=1e-2, random_state=0)
    probe.fit(X[one], names[one], groups=groups[one])
    assert not probe.multilabel_
    assert probe.classes_.tolist() == ["groom", "none", "turn", "walk"]
    np.testing.assert_allclose(probe.predict_proba(X).sum(1), 1.0, atol=1e-9)
    majority = (names[one] == "none").mean()
    assert (probe.predict(X[one]) == names[one]).mean() > max(0.8, majority + 0.1)

    matrix = MAPProbe(n_heads=2, max_epochs=2, multiclass=True, random_state=0)
    matrix.fit(X, single, groups=groups, behavior_names=["walk", "groom", "turn"])
    assert not matrix.multilabel_
    # Rows with no behavior (or unlabeled) carry no loss: same fit as without them.
    keep = single.max(1) == 1
    subset = MAPProbe(n_heads=2, max_epochs=2, multiclass=True, random_state=0, dropout=0.0,
                      batch_size=10_000).fit(X[keep], single[keep],
                                             behavior_names=["walk", "groom", "turn"])
    full = MAPProbe(n_heads=2, max_epochs=2, multiclass=True, random_state=0, dropout=0.0,
                    batch_size=10_000).fit(X, single, behavior_names=["walk", "groom", "turn"])
    np.testing.assert_allclose(full.loss_curve_, subset.loss_curve_, rtol=1e-5)
    assert matrix.classes_.tolist() == ["walk", "groom", "turn"]
    assert matrix.predict_proba(X).shape == (len(X), 3)
    both = single.copy()
    both[0] = [1, 1, 0]
    with pytest.raises(ProbeError, match="several behaviors at once.*row 0"):
        MAPProbe(n_heads=2, max_epochs=1, multiclass=True).fit(X, both)


def test_eql_drops_rare_wrong_classes_from_the_softmax():
    probe = MAPProbe(loss="eql", eql_lambda=0.1, eql_gamma=1.0)
    probe.multilabel_ = False
    probe.class_frequencies_ = np.array([0.6, 0.35, 0.05])  # class 2 is rare
    probe.module_ = torch.nn.Linear(1, 1)  # training mode
    probe._eql_generator = torch.Generator().manual_seed(0)
    logits = torch.tensor([[2.0, 1.0, 3.0], [0.0, 1.0, 3.0]])
    targets = torch.tensor([0, 2])
    weights = torch.ones(2)
    loss, _ = probe._loss(logits, targets, weights)
    # Sample 0: rare class 2 is wrong -> left out; sample 1: class 2 is the target -> kept.
    expected = (-(2 - math.log(math.exp(2) + math.exp(1)))
                - (3 - math.log(1 + math.exp(1) + math.exp(3)))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    probe.module_.eval()  # evaluation: plain cross-entropy
    ce, _ = probe._loss(logits, targets, weights)
    assert float(ce) > float(loss)


def test_eql_trains_and_is_refused_for_multilabel():
    X, y, groups = token_videos(n_videos=2, n_frames=40, dim=8)
    labels = np.argmax(np.c_[y, np.full(len(y), 0.5)], axis=1)
    probe = MAPProbe(n_heads=2, loss="eql", max_epochs=2, random_state=0).fit(X, labels)
    assert np.isfinite(probe.loss_curve_).all()
    with pytest.raises(ProbeError, match="softmax equalization loss"):
        MAPProbe(n_heads=2, loss="eql", max_epochs=1).fit(X, y)
    with pytest.raises(ProbeError, match="loss is 'focal'"):
        MAPProbe(n_heads=2, loss="focal", max_epochs=1).fit(X, labels)


def test_save_load_roundtrip_and_clone(tmp_path):
    X, y, groups = token_videos(n_videos=2, n_frames=30, dim=8)
    probe = make_probe("map", n_heads=2, max_epochs=2, random_state=0)
    probe.fit(X, y, groups=groups, behavior_names=["a", "b", "c"],
              feature_provenance={"model_name": "some/folder"})
    save_probe(probe, tmp_path / "p")
    loaded = load_probe(tmp_path / "p")
    assert isinstance(loaded, MAPProbe)
    np.testing.assert_allclose(loaded.predict_proba(X), probe.predict_proba(X), atol=1e-6)
    assert clone(probe).get_params() == probe.get_params()
    again = MAPProbe(n_heads=2, max_epochs=2, random_state=0).fit(X, y, groups=groups)
    np.testing.assert_allclose(again.predict_proba(X), MAPProbe(
        n_heads=2, max_epochs=2, random_state=0).fit(X, y, groups=groups).predict_proba(X))


# --------------------------------------------------------------------------- CLI + store
BEHAVIORS = ["walk", "groom", "turn"]


def build_token_store(path):
    """4 videos of (T, 6, 8) token features, one behavior (or none) per frame, labeled."""
    X, y, groups = token_videos(n_videos=4, n_frames=60, dim=8, seed=7)
    y[y.sum(1) > 1] = 0
    key = f"{MODEL}/full"
    prov = {"model_name": MODEL, "weights_sha256": "c" * 64, "num_frames": 4, "image_size": 32,
            "window": {"mode": "center", "stride": 1, "tokens": "full"},
            "feature_shape": [6, 8]}
    with open_store(path, mode="a") as store:
        for v in range(4):
            video_id = f"v{v}"
            n = int((groups == v).sum())
            store.put_video(video_id, source_path=f"/data/{video_id}.mp4",
                            relative_path=f"{video_id}.mp4", size_bytes=1, content_hash=str(v),
                            timestamps=np.arange(n) / 30.0, fps=30.0, width=32, height=32)
            store.create_features(video_id, key, (6, 8), prov, chunk_frames=64)
            store.write_chunks(video_id, key, 0, X[groups == v])
            store.mark_complete(video_id, key)
            yv = y[groups == v]
            intervals = []
            for k, name in enumerate(BEHAVIORS):
                on = np.flatnonzero(yv[:, k])
                for run in np.split(on, np.flatnonzero(np.diff(on) > 1) + 1):
                    if len(run):
                        intervals.append(Interval(name, int(run[0]), int(run[-1])))
            save_labels(store, video_id, LabelTable(intervals=intervals, segments=[
                Segment(0, n - 1)], n_frames=n, fps=30.0), "manual")
    return X, y


def test_cli_trains_a_multiclass_map_probe_and_predicts_top1_into_the_store(tmp_path, capsys):
    store_path = tmp_path / "s.zarr"
    X, _ = build_token_store(store_path)
    probe_dir = tmp_path / "map"
    code = main(["probe", "train", "--store", str(store_path), "--labels", "manual",
                 "--kind", "map", "--multiclass", "--loss", "eql", "--max-epochs", "3",
                 "--learning-rate", "3e-3", "--dropout", "0.2", "--batch-size", "16",
                 "--out", str(probe_dir)])
    assert code == 0, capsys.readouterr().err
    probe = load_trained_probe(probe_dir)
    assert isinstance(probe, MAPProbe) and not probe.multilabel_
    assert (probe.loss, probe.dropout, probe.batch_size, probe.n_heads_) == ("eql", 0.2, 16, 4)
    assert probe.class_weight is None  # --kind map: no class weighting by default
    assert probe.n_features_in_ == 8
    assert main(["probe", "predict", "--probe", str(probe_dir), "--store",
                 str(store_path)]) == 0
    with open_store(store_path, mode="r") as store:
        scores, binary, attrs = load_predictions(store, "v0", "map")
        assert attrs["decision"] == "top1"
        assert (binary.sum(1) == 1).all()  # one behavior per frame
        np.testing.assert_array_equal(np.argmax(binary, 1), np.argmax(scores, 1))
        # The probe saw every token, not their mean.
        direct = probe.predict_proba(store.read_features("v0", f"{MODEL}/full").values)
        np.testing.assert_allclose(scores, direct, atol=1e-5)
        assert predict_video(probe, store, "v1").binary.sum(1).tolist() == [1] * 60


def test_cli_refuses_map_options_for_other_kinds(tmp_path, capsys):
    store_path = tmp_path / "s.zarr"
    build_token_store(store_path)
    code = main(["probe", "train", "--store", str(store_path), "--labels", "manual",
                 "--kind", "linear", "--loss", "eql", "--out", str(tmp_path / "x")])
    assert code == 2
    assert "--loss: options of --kind map only" in capsys.readouterr().err


# --------------------------------------------------------------------------- scikit-learn checks
MAP_EXPECTED_FAILURES = {
    "check_sample_weight_equivalence_on_dense_data":
        "stochastic mini-batch training: weights are not exactly duplicated samples",
    "check_supervised_y_2d": "2-D y is the multi-label frames x behaviors matrix",
    "check_classifiers_train": "trained for 3 epochs here (speed); accuracy tested above",
    "check_class_weight_classifiers":
        "trained for 3 epochs here (speed); class weights are BaseProbe's, tested elsewhere",
}


@parametrize_with_checks([MAPProbe(n_heads=1, max_epochs=3, learning_rate=1e-3,
                                   random_state=0)],
                         expected_failed_checks=lambda est: MAP_EXPECTED_FAILURES)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
