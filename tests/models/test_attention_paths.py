"""The three attention paths on the same weights: fast (SDPA, no cap) close, flex exact."""

from __future__ import annotations

import os

import pytest
import torch

from prism_science.models import build_model

torch.set_num_threads(2)


def _pair(name, implementation, **overrides):
    torch.manual_seed(0)
    exact = build_model(name, attention="exact", **overrides)
    other = build_model(name, attention=implementation, **overrides)
    other.load_state_dict(exact.state_dict())
    return exact, other


def test_fast_equals_exact_without_cap_padded_frames_included():
    exact, fast = _pair("prism-test-p8-f4-r32", "fast", atten_logit_cap=0.0)
    video = torch.rand(2, 4, 32, 32, 3)
    paddings = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    with torch.no_grad():
        torch.testing.assert_close(fast(video), exact(video), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast(video, paddings), exact(video, paddings),
                                   atol=1e-5, rtol=1e-5)


def test_cpu_variants_use_the_fused_path_without_cap():
    from prism_science.models import get_config

    for name in ("prism-tiny-p16-f16-r128", "prism-small-p16-f16-r160",
                 "prism-lvt-tiny-p16-f16-r128"):
        config = get_config(name)
        assert config.attention == "fast" and config.atten_logit_cap == 0.0


def test_fast_text_tower_with_causal_and_padding_mask():
    exact, fast = _pair("prism-lvt-test-p8-f4-r32", "fast", atten_logit_cap=0.0)
    ids = torch.tensor([[5, 6, 7, 0, 0], [9, 3, 2, 4, 8]])
    with torch.no_grad():
        torch.testing.assert_close(fast.encode_text(ids), exact.encode_text(ids),
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("PRISM_RUN_SLOW"),
                    reason="compiles FlexAttention (about a minute on 2 cores); "
                    "set PRISM_RUN_SLOW=1 to run")
def test_flex_matches_exact_with_cap_and_paddings():
    exact, flex = _pair("prism-test-p8-f4-r32", "flex", atten_logit_cap=0.5)
    video = torch.rand(2, 4, 32, 32, 3)
    paddings = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0]])
    with torch.no_grad():
        torch.testing.assert_close(flex(video, paddings), exact(video, paddings),
                                   atol=1e-5, rtol=1e-5)
