"""Official base/large (+ LvT) variants: every converted key's shape and the parameter counts."""

from __future__ import annotations

import json

import pytest
import torch

from prism_science.models import REGISTRY, build_model
from prism_science.models.convert import infer_config, to_official

from ._golden import GOLDEN

PAIRS = {
    "videoprism_public_v1_base": "videoprism-v1-base-p18-f16-r288",
    "videoprism_public_v1_large": "videoprism-v1-large-p18-f8-r288",
    "videoprism_lvt_public_v1_base": "videoprism-lvt-v1-base-p18-f16-r288",
    "videoprism_lvt_public_v1_large": "videoprism-lvt-v1-large-p18-f8-r288",
}


@pytest.mark.parametrize("official,ours", sorted(PAIRS.items()))
def test_official_variant_shapes(official, ours):
    reference = json.loads((GOLDEN / "official_param_shapes.json").read_text())[official]
    counts = json.loads((GOLDEN / "config.json").read_text())["official_num_params"]
    with torch.device("meta"):
        model = build_model(ours)
    shapes = {k: list(v.shape) for k, v in to_official(model).items()}
    assert shapes == reference["keys"]
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == reference["num_params"] == counts[official]
    # And the architecture inferred from the official shapes is the registered one.
    fake = {k: torch.empty(v, device="meta") for k, v in reference["keys"].items()}
    assert infer_config(fake) == REGISTRY[ours]
