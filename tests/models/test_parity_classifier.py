"""Parity of the classifier with the official FactorizedVideoClassifier (golden fixtures)."""

from __future__ import annotations

import torch

from prism_science.models import VideoClassifier, load_model
from prism_science.models.convert import convert_checkpoint

from ._golden import GOLDEN, assert_close, io

torch.set_num_threads(2)


def test_classifier_outputs(tmp_path):
    model = load_model(convert_checkpoint(GOLDEN / "classifier_params.npz", tmp_path / "w"))
    assert isinstance(model, VideoClassifier)
    assert model.config.num_classes == 5
    data = io("classifier")
    video = torch.from_numpy(data["inputs"])
    with torch.no_grad():
        out = model.forward_intermediates(video)
        logits = model(video)
    assert_close(out["logits"], data["logits"], "logits")
    assert_close(logits, data["logits"], "forward logits")
    assert_close(out["global_embeddings"], data["global_embeddings"], "global_embeddings")
    assert_close(out["spatiotemporal_features"], data["spatiotemporal_features"],
                 "spatiotemporal_features")
    assert_close(out["spatial_features"], data["spatial_features"], "spatial_features")
