"""Parity of the video encoder with the official Flax FactorizedEncoder (golden fixtures)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_science.models import load_model
from prism_science.models.convert import convert_checkpoint, read_npz, to_official

from ._golden import GOLDEN, assert_close, io

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    out = convert_checkpoint(GOLDEN / "video_encoder_params.npz",
                             tmp_path_factory.mktemp("enc") / "w")
    return load_model(out)


def test_tokens_and_spatial_features(encoder):
    data = io("video_encoder")
    with torch.no_grad():
        out = encoder.forward_intermediates(torch.from_numpy(data["inputs"]))
    assert_close(out["tokens"], data["embeddings"], "embeddings")
    assert_close(out["spatial_features"], data["spatial_features"], "spatial_features")
    assert len(out["spatial_layers"]) == 2 and len(out["temporal_layers"]) == 2
    # The last temporal layer before temporal_ln is not the output; the forward is.
    assert_close(encoder(torch.from_numpy(data["inputs"])), data["embeddings"], "forward")


def test_other_frame_count_and_resolution(encoder):
    """Position embeddings resized 4 -> 6 frames and 6x6 -> 8x8 patches (antialiased bilinear)."""
    data = io("video_encoder")
    with torch.no_grad():
        tokens = encoder(torch.from_numpy(data["inputs_t6_48px"]))
    assert_close(tokens, data["embeddings_t6_48px"], "embeddings_t6_48px")


def test_per_layer_checkpoint_layout_converts_the_same(tmp_path, encoder):
    """x_layers_<i> (scan=False) checkpoints give the same model as stacked ones."""
    arrays = to_official(encoder, stacked=False)
    assert any("/x_layers_1/" in k for k in arrays)
    path = tmp_path / "per_layer.npz"
    np.savez(path, **{k: v.numpy() for k, v in arrays.items()})
    model = load_model(convert_checkpoint(path, tmp_path / "w"))
    data = io("video_encoder")
    with torch.no_grad():
        assert_close(model(torch.from_numpy(data["inputs"])), data["embeddings"], "per-layer")


def test_round_trip_to_official_keys(encoder):
    """Our parameters map back to exactly the official keys and arrays."""
    original = read_npz(GOLDEN / "video_encoder_params.npz")
    back = to_official(encoder)
    assert sorted(back) == sorted(original)
    for key, value in original.items():
        np.testing.assert_array_equal(back[key].numpy(), value, err_msg=key)
