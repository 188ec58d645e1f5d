"""Parity of the LvT model with the official FactorizedVideoCLIP (golden fixtures)."""

from __future__ import annotations

import pytest
import torch

from prism_science.models import VideoTextModel, load_model
from prism_science.models.convert import convert_checkpoint

from ._golden import GOLDEN, assert_close, io

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def lvt(tmp_path_factory):
    model = load_model(convert_checkpoint(GOLDEN / "lvt_params.npz",
                                          tmp_path_factory.mktemp("lvt") / "w"))
    assert isinstance(model, VideoTextModel)
    return model


@pytest.mark.parametrize("normalize", [True, False])
def test_video_and_text_embeddings(lvt, normalize):
    data = io("lvt")
    suffix = "" if normalize else "_unnormalized"
    video = torch.from_numpy(data["inputs"])
    ids = torch.from_numpy(data["text_token_ids"])
    paddings = torch.from_numpy(data["text_paddings"])
    with torch.no_grad():
        assert_close(lvt.encode_video(video, normalize=normalize),
                     data["video_embeddings" + suffix], "video_embeddings" + suffix)
        assert_close(lvt.encode_text(ids, paddings, normalize=normalize),
                     data["text_embeddings" + suffix], "text_embeddings" + suffix)


def test_frame_embeddings_and_features(lvt):
    data = io("lvt")
    video = torch.from_numpy(data["inputs"])
    with torch.no_grad():
        out = lvt.forward_intermediates(video)
        frames = lvt.encode_frames(video)
    assert_close(out["frame_embeddings"], data["frame_embeddings"], "frame_embeddings")
    assert_close(frames, data["frame_embeddings"], "encode_frames")
    assert_close(out["video_embeddings"], data["video_embeddings"], "video_embeddings")
    assert_close(out["spatiotemporal_features"], data["spatiotemporal_features"],
                 "spatiotemporal_features")
    assert_close(out["spatial_features"], data["spatial_features"], "spatial_features")
    assert_close(lvt(video), data["spatiotemporal_features"], "forward tokens")


def test_text_paddings_default_to_pad_id(lvt):
    data = io("lvt")
    ids = torch.from_numpy(data["text_token_ids"])
    with torch.no_grad():
        assert_close(lvt.encode_text(ids), data["text_embeddings"], "default paddings")
