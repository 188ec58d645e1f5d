"""PromptProbe: learned prompts through a frozen text tower, unseen behaviors, save/load, refusals.

Frame embeddings are planted: a frame of behavior k is the zero-shot class vector of k's name
(through the tiny test LvT model's text tower) plus noise, so the text side decides the scores.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_science.errors import ProbeError
from prism_science.evaluation.metrics import average_precision
from prism_science.probes import PROBE_KINDS, PromptProbe, load_probe, make_probe, save_probe
from prism_science.probes import prompt as P
from tests.test_search import make_lvt_folder

NAMES = ["grooming", "walking", "resting", "chasing"]


@pytest.fixture(scope="module")
def lvt_folder(tmp_path_factory):
    return make_lvt_folder(tmp_path_factory.mktemp("lvt"))


@pytest.fixture(scope="module")
def lvt(lvt_folder):
    return P.resolve_text_model(str(lvt_folder))


def planted(model, names=NAMES, n_videos=4, n_frames=96, noise=0.6, seed=0):
    """Per-frame embeddings (N, D), a frames x behaviors matrix (N, K) and video ids (N,).

    Each video is a run of bouts of 8 to 20 frames, one behavior each."""
    rng = np.random.default_rng(seed)
    vectors = P.template_class_vectors(model, names, ("{}",))
    xs, ys, groups = [], [], []
    for video in range(n_videos):
        y = np.zeros((n_frames, len(names)), np.int64)
        start = 0
        while start < n_frames:
            length = int(rng.integers(8, 21))
            y[start:start + length, int(rng.integers(len(names)))] = 1
            start += length
        x = y @ vectors + noise * rng.normal(size=(n_frames, vectors.shape[1])) / np.sqrt(
            vectors.shape[1])
        xs.append(x.astype(np.float32))
        ys.append(y)
        groups.append(np.full(n_frames, video))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(groups)


def small(**params):
    base = {"window": 8, "n_context": 2, "n_heads": 4, "max_epochs": 25, "random_state": 0,
            "validation_fraction": 0.25}
    return PromptProbe(**{**base, **params})


def test_registered_kind_and_sklearn_params():
    assert PROBE_KINDS["prompt"] is PromptProbe
    probe = make_probe("prompt", n_context=3, context_position="front")
    assert probe.get_params()["n_context"] == 3
    assert probe.get_params()["text_model"] is None


def test_embedded_path_equals_the_text_tower_on_real_tokens(lvt):
    ids, paddings = lvt.tokenizer(["a mouse grooming", "two animal chasing on the"])
    table = lvt.text_encoder.token_emb.emb_var
    with torch.no_grad():
        ours = P.encode_embedded_text(lvt.text_encoder, table[ids], paddings)
        official = lvt.encode_text(ids, paddings)
    torch.testing.assert_close(ours, official, rtol=1e-5, atol=1e-5)


def test_text_tower_is_frozen_gradients_reach_only_prompts_and_temporal_module(lvt):
    probe = small(n_layers=1)
    module = probe._build_module(32, 2)
    ids = P.behavior_token_ids(lvt, ["grooming", "walking"])
    module.attach_text(lvt.text_encoder, ids)
    x = torch.ones(3, 8, 33)
    x[..., :-1] = torch.randn(3, 8, 32)
    module(x).square().mean().backward()
    tower = dict(lvt.text_encoder.named_parameters())
    assert tower and all(p.grad is None and not p.requires_grad for p in tower.values())
    trained = dict(module.named_parameters())
    assert not any(name.startswith("_text") for name in trained)  # the tower is not a submodule
    for name in ("front_context", "back_context"):
        assert trained[name].grad is not None and trained[name].grad.abs().sum() > 0, name
    assert trained["temporal_out.weight"].grad.abs().sum() > 0
    assert all(not k.startswith("text") for k in module.state_dict())


def test_fit_leaves_the_text_model_unchanged_and_learns(lvt):
    X, y, groups = planted(lvt)
    before = {k: v.clone() for k, v in lvt.state_dict().items()}
    probe = small().fit(X, y, groups=groups, behavior_names=NAMES, text_model=lvt)
    for key, value in lvt.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert probe.classes_.tolist() == NAMES and probe.multilabel_
    proba = probe.predict_proba(X, groups=groups)
    assert proba.shape == (len(X), 4) and np.all((proba >= 0) & (proba <= 1))
    ap = average_precision(y, proba)
    assert np.nanmean(ap) > 0.8, ap
    front, back = probe.module_.front_context, probe.module_.back_context
    assert front.shape == back.shape == (2, 32)


def test_context_positions_set_the_learned_vectors():
    for position, shapes in (("front", (3, 0)), ("back", (0, 3)), ("both", (3, 3))):
        module = small(n_context=3, context_position=position)._build_module(32, 2)
        assert (len(module.front_context), len(module.back_context)) == shapes
    with pytest.raises(ProbeError, match="context_position"):
        small(context_position="middle")._build_module(32, 2)
    with pytest.raises(ProbeError, match="n_heads 5 does not divide .*32"):
        small(n_heads=5)._build_module(32, 2)


def test_untrained_probe_scores_like_its_class_vectors(lvt):
    """The temporal residual starts at zero: before training, a frame's logit is its cosine
    to the class vector over tau (the zero-shot starting point)."""
    X, _, groups = planted(lvt, n_videos=1)
    probe = small(max_epochs=1)
    probe.multilabel_ = True
    module = probe._build_module(32, 2)
    module.class_embeddings.copy_(torch.nn.functional.normalize(torch.randn(2, 32), dim=-1))
    probe.module_, probe.n_features_in_ = module.eval(), 32
    logits = probe._predict_logits(X, groups)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    expected = unit @ module.class_embeddings.numpy().T / probe.temperature
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_save_load_predicts_trained_behaviors_without_the_text_tower(lvt, lvt_folder, tmp_path,
                                                                      monkeypatch):
    X, y, groups = planted(lvt)
    probe = small(text_model=str(lvt_folder)).fit(X, y, groups=groups, behavior_names=NAMES)
    expected = probe.predict_proba(X, groups=groups)
    save_probe(probe, tmp_path / "p")
    monkeypatch.setattr(P, "_TEXT_MODELS", {})

    def no_text_model(*args, **kwargs):
        raise AssertionError("the text tower was loaded to predict trained behaviors")

    monkeypatch.setattr(P, "resolve_text_model", no_text_model)
    loaded = load_probe(tmp_path / "p")
    assert isinstance(loaded, PromptProbe) and loaded.text_model == str(lvt_folder)
    np.testing.assert_allclose(loaded.predict_proba(X, groups=groups), expected, atol=1e-6)
    # Trained names are scored from the saved class vectors as well.
    np.testing.assert_allclose(loaded.predict_behaviors(X, ["walking"], groups=groups)[:, 0],
                               expected[:, 1], atol=1e-6)


def test_unseen_behaviors_are_scored_through_the_shared_prompts(lvt, lvt_folder, tmp_path):
    """A name never trained on goes through the frozen tower wrapped in the *learned* context
    vectors, and is compared with the frames after the learned temporal module."""
    X, y, groups = planted(lvt, n_videos=3, seed=1)
    seen, unseen = NAMES[:2], NAMES[2:]
    probe = small(text_model=str(lvt_folder))
    probe.fit(X, y[:, :2], groups=groups, behavior_names=seen)
    save_probe(probe, tmp_path / "p")
    loaded = load_probe(tmp_path / "p")  # reloads the text tower from text_model
    proba = loaded.predict_behaviors(X, ["chasing", "walking", "resting"], groups=groups)
    assert proba.shape == (len(X), 3)
    module = loaded.module_
    table = lvt.text_encoder.token_emb.emb_var
    rows = []
    for ids in P.behavior_token_ids(lvt, unseen):
        rows.append(torch.cat([module.front_context, table[torch.tensor(ids)],
                               module.back_context]))
    length = max(len(r) for r in rows)
    embedded = torch.zeros(len(rows), length, 32)
    paddings = torch.ones(len(rows), length)
    for k, row in enumerate(rows):
        embedded[k, :len(row)], paddings[k, :len(row)] = row, 0.0
    with torch.no_grad():
        vectors = P.encode_embedded_text(lvt.text_encoder, embedded, paddings)
        untrained = P.encode_embedded_text(lvt.text_encoder, torch.zeros_like(embedded), paddings)
        frames = torch.cat([torch.from_numpy(X[groups == 0][:8]), torch.ones(8, 1)], 1)[None]
        emb = module.embed(frames)[0]
        expected = torch.sigmoid(emb @ vectors.T / loaded.temperature + module.logit_bias)
    # frames 0-3 lie only in the first window (4-7 also in the second, logits averaged)
    np.testing.assert_allclose(proba[:4][:, [2, 0]], expected[:4].numpy(), atol=1e-6)
    np.testing.assert_allclose(proba[:, 1], loaded.predict_proba(X, groups=groups)[:, 1],
                               atol=1e-6)  # a trained name keeps its saved class vector
    assert not torch.allclose(vectors, untrained, atol=1e-3)  # the learned context matters
    thresholds = loaded.behavior_thresholds(["walking", "chasing"])
    assert thresholds[0] == pytest.approx(loaded.thresholds_[1])
    assert thresholds[1] == pytest.approx(np.median(loaded.thresholds_))


def test_multiclass_softmax_over_clips_with_mean_pooling(lvt):
    rng = np.random.default_rng(3)
    vectors = P.template_class_vectors(lvt, NAMES[:3], ("{}",))
    labels = rng.integers(0, 3, size=90)
    clips = vectors[labels][:, None, :] + 0.8 * rng.normal(size=(90, 6, 32)) / np.sqrt(32)
    y = np.asarray(NAMES[:3])[labels]
    probe = small(pooling="mean").fit(clips.astype(np.float32), y,
                                                     text_model=lvt)
    proba = probe.predict_proba(clips)
    assert proba.shape == (90, 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, atol=1e-6)
    assert (probe.predict(clips) == y).mean() > 0.8
    with pytest.raises(ProbeError, match=r"clips \(N, W, D\)"):
        probe.predict_proba(clips[:, 0])


# ---------------------------------------------------------------------- refusals
def test_model_without_tokenizer_or_text_tower_is_refused_by_name():
    from prism_science.models import build_model

    no_tokenizer = build_model("prism-lvt-test-p8-f4-r32")
    with pytest.raises(ProbeError, match="'prism-lvt-test-p8-f4-r32' has no tokenizer"):
        P.resolve_text_model(no_tokenizer)
    with pytest.raises(ProbeError, match="'prism-test-p8-f4-r32' has no text tower"):
        P.resolve_text_model(build_model("prism-test-p8-f4-r32"))
    X = np.random.default_rng(0).normal(size=(40, 32)).astype(np.float32)
    y = np.zeros((40, 1), np.int64)
    y[5:15] = 1
    with pytest.raises(ProbeError, match="has no tokenizer"):
        small().fit(X, y, behavior_names=["grooming"], text_model=no_tokenizer)


def test_names_the_tokenizer_cannot_encode_are_listed(lvt):
    with pytest.raises(ProbeError) as info:
        P.behavior_token_ids(lvt, ["grooming", "???", "zqxj walking"])
    message = str(info.value)
    assert "'???' has no letter or digit" in message
    assert "'zqxj walking': the tokenizer does not know ['zqxj']" in message
    assert "'grooming'" not in message.split("encode these behavior names:")[1]
    with pytest.raises(ProbeError, match="takes .* tokens, at most 1 fit"):
        P.behavior_token_ids(lvt, ["grooming walking resting"], max_tokens=1)


def test_features_of_another_token_mode_or_model_are_refused(lvt, lvt_folder):
    X, y, groups = planted(lvt, n_videos=2)
    provenance = {"model_name": "x", "weights_sha256": lvt.weights_sha256,
                  "window": {"mode": "sliding", "tokens": "mean"}, "feature_shape": [32]}
    with pytest.raises(ProbeError, match="--tokens frame_emb"):
        small().fit(X, y, groups=groups, behavior_names=NAMES, feature_provenance=provenance,
                    text_model=lvt)
    provenance["window"]["tokens"] = "frame_emb"
    provenance["weights_sha256"] = "f" * 64
    with pytest.raises(ProbeError, match="same video-text model"):
        small(text_model=str(lvt_folder)).fit(X, y, groups=groups, behavior_names=NAMES,
                                              feature_provenance=provenance)


def test_templates_need_one_placeholder(lvt):
    with pytest.raises(ProbeError, match="one '\\{\\}'"):
        P.template_class_vectors(lvt, ["grooming"], ["a video of grooming"])
    vectors = P.template_class_vectors(lvt, ["grooming", "walking"])
    assert vectors.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
