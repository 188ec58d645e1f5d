"""Every parameter of every model family receives a gradient (timm's test_model_backward): a
parameter that never gets one is dead weight, or a sign that a path of the model is cut off."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from prism_science.models import VideoClassifierConfig, build_model, get_config
from prism_science.models.registry import FAMILIES


def _test_config(family: str):
    if family == "video_text":
        return get_config("prism-lvt-test-p8-f4-r32")
    encoder = get_config("prism-test-p8-f4-r32")
    if family == "video_encoder":
        return encoder
    fields = {f.name: getattr(encoder, f.name) for f in dataclasses.fields(encoder)
              if f.name in {g.name for g in dataclasses.fields(VideoClassifierConfig)}}
    return VideoClassifierConfig(**fields, num_classes=3)


def _loss(model: torch.nn.Module, family: str) -> torch.Tensor:
    torch.manual_seed(0)
    config = model.config
    video = torch.rand(2, config.num_frames, config.image_size, config.image_size, 3)
    if family != "video_text":
        return model(video).square().mean()
    ids = torch.randint(1, config.vocabulary_size, (2, 6))
    video_emb = model.encode_video(video)
    frame_emb = model.encode_frames(video)
    text_emb = model.encode_text(ids)
    tokens = model(video)
    return ((video_emb @ text_emb.T).sum() + frame_emb.square().mean()
            + tokens.square().mean())


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_parameter_gets_a_gradient(family):
    model = build_model(_test_config(family))
    model.train()
    _loss(model, family).backward()
    missing = [name for name, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not torch.isfinite(p.grad).all()
                                       or p.grad.abs().sum() == 0)]
    assert missing == []
    assert sum(p.numel() for p in model.parameters()) > 0
