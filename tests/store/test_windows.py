"""Clip windows and the reduction of tokens to per-frame features (pure functions)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_science.errors import PrismError
from prism_science.extraction.windows import (
    FrameAccumulator,
    WindowParams,
    feature_shape,
    plan_windows,
    pool_tokens,
    window_range,
)

CASES = [
    # (n_frames, T, stride, hop)
    (1, 4, 1, 2),
    (3, 4, 1, 2),
    (37, 4, 1, 2),
    (37, 4, 2, 2),
    (50, 4, 3, 5),
    (64, 16, 1, 8),
    (41, 8, 2, 16),
    (29, 4, 3, 12),
]


def _accumulate(plan, start, stop, values, batch=3):
    """Run a FrameAccumulator over [start, stop) with clip features taken from ``values``."""
    acc = FrameAccumulator(plan, start, stop, values.shape[2:])
    blocks = []
    for w in range(acc.w0, acc.w1, batch):
        acc.add(w, values[w : min(w + batch, acc.w1)])
        blocks.extend(acc.pop_ready())
    blocks.extend(acc.pop_ready())
    assert acc.done
    assert [b[0] for b in blocks] == sorted(b[0] for b in blocks)
    out = np.concatenate([b[2] for b in blocks])
    assert blocks[0][0] == start and blocks[-1][1] == stop and out.shape[0] == stop - start
    return out


@pytest.mark.parametrize(("n", "t", "s", "h"), CASES)
def test_sliding_covers_every_frame(n, t, s, h):
    plan = plan_windows(n, t, WindowParams(stride=s, hop=h))
    idx = plan.frame_indices
    assert idx.shape == (plan.n_windows, t)
    assert np.all(idx[:, 0] == np.arange(plan.n_windows) * h)
    assert np.all(np.diff(idx, axis=1) == s)
    # The last clip reaches the end, padding is exactly the out-of-range positions.
    assert idx[-1, -1] >= n - 1
    assert np.array_equal(plan.frame_paddings == 1.0, (idx < 0) | (idx >= n))
    sampled = np.unique(idx[plan.contributes])
    assert sampled.min() == 0 and sampled.max() < n
    # Every frame gets a source that is sampled and at most stride - 1 frames away.
    assert np.all(np.isin(plan.source, sampled))
    assert np.all(np.abs(plan.source - np.arange(n)) <= s - 1)
    assert np.all(plan.source[sampled] == sampled)


@pytest.mark.parametrize(("n", "t", "s", "h"), CASES)
def test_sliding_averages_over_all_clips_that_sample_a_frame(n, t, s, h):
    plan = plan_windows(n, t, WindowParams(stride=s, hop=h))
    rng = np.random.default_rng(0)
    values = rng.normal(size=(plan.n_windows, t, 3)).astype(np.float32)
    out = _accumulate(plan, 0, n, values)
    expected = np.empty((n, 3), np.float32)
    for f in range(n):
        hits = plan.frame_indices == plan.source[f]  # every (clip, position) sampling it
        assert hits.any(), f"frame {f} has no clip"
        expected[f] = values[hits].mean(axis=0)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


def test_interior_weights_equal_clip_span_over_hop():
    # T=16, stride 1, hop 8: every interior frame is in exactly 2 clips, the first 8 in 1.
    plan = plan_windows(100, 16, WindowParams(stride=1, hop=8))
    counts = np.bincount(plan.frame_indices[plan.contributes], minlength=100)
    assert np.all(counts[:8] == 1)
    assert np.all(counts[8:96] == 2)


@pytest.mark.parametrize(("n", "t", "s", "h"), CASES)
def test_sub_ranges_equal_the_whole(n, t, s, h):
    plan = plan_windows(n, t, WindowParams(stride=s, hop=h))
    values = np.random.default_rng(1).normal(size=(plan.n_windows, t, 2)).astype(np.float32)
    whole = _accumulate(plan, 0, n, values)
    cuts = sorted({0, n, n // 3, n // 2, max(1, n - 2)})
    parts = [_accumulate(plan, a, b, values, batch=2) for a, b in zip(cuts, cuts[1:], strict=False)
             if a < b]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


@pytest.mark.parametrize(("n", "t", "s"), [(1, 4, 1), (10, 4, 1), (10, 5, 2), (30, 16, 1)])
def test_center_clip_per_frame(n, t, s):
    plan = plan_windows(n, t, WindowParams(mode="center", stride=s, hop=3))
    c = t // 2
    assert plan.n_windows == n
    assert np.array_equal(plan.frame_indices[:, c], np.arange(n))
    assert np.all(np.diff(plan.frame_indices, axis=1) == s)
    assert np.array_equal(plan.source, np.arange(n))
    assert plan.contributes.sum() == n and plan.contributes[:, c].all()
    pads = plan.frame_paddings == 1.0
    assert np.array_equal(pads, (plan.frame_indices < 0) | (plan.frame_indices >= n))
    # Frame 0 is padded before the centre; the last frame after it.
    if c > 0:
        assert pads[0, :c].all()
    assert not pads[:, c].any()
    values = np.random.default_rng(2).normal(size=(n, t, 4)).astype(np.float32)
    np.testing.assert_array_equal(_accumulate(plan, 0, n, values), values[:, c])
    decode = plan.decode_indices(slice(None))
    assert decode.min() == 0 and decode.max() == n - 1


def test_window_range_matches_clips_touching_the_frames():
    plan = plan_windows(200, 16, WindowParams(stride=1, hop=8))
    w0, w1 = window_range(plan, 64, 128)
    touching = [w for w in range(plan.n_windows)
                if np.any((plan.frame_indices[w] >= 64) & (plan.frame_indices[w] < 128))]
    assert (w0, w1) == (touching[0], touching[-1] + 1)
    with pytest.raises(PrismError, match="invalid"):
        window_range(plan, 10, 10)


def test_invalid_parameters_are_refused():
    with pytest.raises(PrismError, match="hop 40"):
        plan_windows(100, 16, WindowParams(hop=40, stride=2))
    with pytest.raises(PrismError, match="token mode"):
        WindowParams(tokens="cls")
    with pytest.raises(PrismError, match="stride"):
        WindowParams(stride=0)
    with pytest.raises(PrismError, match="no frames"):
        plan_windows(0, 16, WindowParams())


def test_pool_tokens_modes():
    torch.manual_seed(0)
    b, t, h, w, d = 2, 4, 4, 4, 6
    tokens = torch.randn(b, t * h * w, d)
    grid = tokens.reshape(b, t, h, w, d)
    mean = pool_tokens(tokens, t, (h, w), WindowParams(tokens="mean"))
    torch.testing.assert_close(mean, grid.mean(dim=(2, 3)))
    full = pool_tokens(tokens, t, (h, w), WindowParams(tokens="full"))
    torch.testing.assert_close(full, grid)
    g2 = pool_tokens(tokens, t, (h, w), WindowParams(tokens="grid", grid=2))
    assert g2.shape == (b, t, 2, 2, d)
    torch.testing.assert_close(g2[:, :, 0, 1], grid[:, :, :2, 2:].mean(dim=(2, 3)))
    g1 = pool_tokens(tokens, t, (h, w), WindowParams(tokens="grid", grid=1))
    torch.testing.assert_close(g1[:, :, 0, 0], mean)
    params = WindowParams(tokens="grid", grid=3)
    assert feature_shape(params, (h, w), d) == (3, 3, d)
    assert pool_tokens(tokens, t, (h, w), params).shape[2:] == (3, 3, d)
    assert WindowParams(tokens="grid", grid=3).token_key == "grid3"
    assert "hop" not in WindowParams(mode="center").to_dict()
