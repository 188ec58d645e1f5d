"""Streamed per-frame features equal a direct computation from the decoded frames."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_science.extraction.features import (
    feature_provenance,
    iter_video_features,
    load_encoder,
    model_feature_shape,
)
from prism_science.extraction.windows import WindowParams, plan_windows, pool_tokens
from prism_science.video import open_video
from tests.store.conftest import TEST_MODEL, write_video


@pytest.fixture(scope="module")
def model():
    return load_encoder(TEST_MODEL, device="cpu")


def _direct(model, frames, params):
    """Every clip built by hand from all decoded frames, encoded one at a time, then averaged."""
    n = frames.shape[0]
    plan = plan_windows(n, model.num_frames, params)
    sums = np.zeros((n, *model_feature_shape(model, params)), np.float64)
    counts = np.zeros(n)
    for w in range(plan.n_windows):
        idx = plan.frame_indices[w]
        clip = frames[np.clip(idx, 0, n - 1)].copy()
        pads = plan.frame_paddings[w]
        if params.padding == "zeros":
            clip[pads > 0] = 0
        video = torch.from_numpy(clip[None]).float() / 255.0
        with torch.inference_mode():
            tokens = model(video, frame_paddings=torch.from_numpy(pads[None]))
        pooled = pool_tokens(tokens, model.num_frames, (4, 4), params)[0].numpy()
        for pos in np.flatnonzero(plan.contributes[w]):
            sums[idx[pos]] += pooled[pos]
            counts[idx[pos]] += 1
    return sums[plan.source] / counts[plan.source].reshape(-1, *[1] * (sums.ndim - 1))


@pytest.mark.parametrize("params", [
    WindowParams(hop=2),
    WindowParams(stride=2, hop=3, tokens="grid", grid=2),
    WindowParams(mode="center", padding="zeros", tokens="full"),
])
def test_streamed_features_equal_direct_computation(model, tmp_path, params):
    path = write_video(tmp_path / "v.mp4", 23, seed=7)
    with open_video(path) as reader:
        frames = reader.get_frames(range(23), size=(32, 32))
        blocks = list(iter_video_features(model, reader, params, batch_size=3, decode_chunk=5,
                                          queue_chunks=2))
    streamed = np.concatenate([b[2] for b in blocks])
    assert [b[0] for b in blocks][0] == 0 and blocks[-1][1] == 23
    np.testing.assert_allclose(streamed, _direct(model, frames, params), atol=2e-5)


def test_provenance_and_seeded_random_init(model):
    again = load_encoder(TEST_MODEL, device="cpu")
    assert again.weights_sha256 == model.weights_sha256
    assert model.weights_sha256.startswith("random-init-")
    prov = feature_provenance(model, WindowParams(tokens="grid", grid=2))
    assert prov["feature_shape"] == [2, 2, 32] and prov["num_frames"] == 4
    assert prov["window"]["tokens"] == "grid" and prov["image_size"] == 32
