"""Saving / loading probes (safetensors + JSON, nothing pickled) and the provenance check."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.errors import ProbeError
from prism_science.probes import (
    AttentionProbe,
    LinearProbe,
    MLPProbe,
    TemporalProbe,
    load_probe,
    save_probe,
)

PROVENANCE = {
    "model_name": "prism-test-p8-f4-r32",
    "weights_sha256": "a" * 64,
    "window": {"mode": "sliding", "stride": 1, "hop": 8, "tokens": "mean", "padding": "repeat"},
    "feature_shape": [8],
    "num_frames": 4,
    "image_size": 32,
}


@pytest.mark.parametrize(
    "probe",
    [
        LinearProbe(max_epochs=5, class_weight={"b": 3.0}, random_state=0),
        MLPProbe(hidden_sizes=(8, 4), max_epochs=5, random_state=0),
        AttentionProbe(hidden_dim=8, n_heads=2, max_epochs=5, random_state=0),
        TemporalProbe(hidden_dim=8, n_layers=2, max_epochs=5, random_state=0),
    ],
)
def test_save_load_roundtrip(tmp_path, planted, probe):
    X, y, groups = planted
    probe.fit(X, y, groups=groups, behavior_names=["a", "b", "c"],
              feature_provenance=PROVENANCE)
    probe.postprocess_ = {"min_bout": 3, "max_gap": 1}
    save_probe(probe, tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["probe.json",
                                                                  "probe.safetensors"]
    loaded = load_probe(tmp_path / "p")
    assert type(loaded) is type(probe)
    assert loaded.get_params() == probe.get_params()
    assert loaded.classes_.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(loaded.thresholds_, probe.thresholds_)
    np.testing.assert_allclose(loaded.predict_proba(X, groups=groups),
                               probe.predict_proba(X, groups=groups), atol=1e-6)
    assert loaded.postprocess_ == {"min_bout": 3, "max_gap": 1}
    meta = json.loads((tmp_path / "p" / "probe.json").read_text())
    assert meta["feature_provenance"]["token_mode"] == "mean"
    assert meta["feature_provenance"]["weights_sha256"] == "a" * 64


def test_multiclass_integer_classes_roundtrip(tmp_path, planted):
    X, y, groups = planted
    labels = np.where(y.any(1), y.argmax(1) + 1, 0)
    probe = LinearProbe(max_epochs=5, random_state=0).fit(X, labels)
    loaded = load_probe(save_probe(probe, tmp_path / "m"))
    assert loaded.classes_.dtype == probe.classes_.dtype
    np.testing.assert_array_equal(loaded.predict(X), probe.predict(X))


def test_probe_refuses_features_of_another_model(planted):
    X, y, groups = planted
    probe = LinearProbe(max_epochs=3, random_state=0).fit(X, y, feature_provenance=PROVENANCE)
    probe.check_features(dict(PROVENANCE, created="later", host="elsewhere"))
    other = dict(PROVENANCE, model_name="videoprism-v1-base-p18-f16-r288", weights_sha256="b" * 64)
    with pytest.raises(ProbeError, match=r"Re-extract with --model prism-test-p8-f4-r32"):
        probe.check_features(other)
    grid = dict(PROVENANCE, window=dict(PROVENANCE["window"], tokens="grid", grid=2))
    with pytest.raises(ProbeError, match="token_mode"):
        probe.check_features(grid)


def test_corrupt_or_missing_files_are_reported(tmp_path, planted):
    X, y, groups = planted
    probe = LinearProbe(max_epochs=3, random_state=0).fit(X, y)
    folder = save_probe(probe, tmp_path / "p")
    weights = folder / "probe.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ProbeError, match="sha256"):
        load_probe(folder)
    with pytest.raises(ProbeError, match="not a probe folder"):
        load_probe(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "probe.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ProbeError, match="format"):
        load_probe(tmp_path / "bad")
