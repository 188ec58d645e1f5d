"""Tube masks, token shuffling and the decoder's slot/target alignment of stage 2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_science.errors import ConfigError
from prism_science.models import build_model
from prism_training.masking import (
    num_kept,
    shuffle_permutation,
    tube_mask,
    visible_token_positions,
)
from prism_training.stage2 import MaskedTokenDecoder, place_tokens


@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.75, 0.9])
def test_tube_mask_has_the_configured_ratio(ratio: float) -> None:
    rng = np.random.default_rng(0)
    n = 64
    keep = tube_mask(rng, n, ratio)
    assert len(keep) == round(n * (1 - ratio))
    assert len(set(keep.tolist())) == len(keep)
    assert keep.min() >= 0 and keep.max() < n and np.all(np.diff(keep) > 0)


def test_masks_differ_between_draws_and_bad_ratio_fails() -> None:
    a = tube_mask(np.random.default_rng(1), 64, 0.75)
    b = tube_mask(np.random.default_rng(2), 64, 0.75)
    assert not np.array_equal(a, b)
    assert num_kept(4, 0.99) == 1
    with pytest.raises(ConfigError, match="mask_ratio"):
        num_kept(64, 1.0)


def test_masked_tokens_are_tubes_in_the_encoders_order() -> None:
    """Tokens encoded with keep_spatial are those of the kept positions in every frame: with
    no transformer layers the encoder is per-token, so masked tokens must equal the full
    encoding's tokens at the positions visible_token_positions names."""
    torch.manual_seed(0)
    model = build_model("prism-test-p8-f4-r32", num_spatial_layers=0,
                        num_temporal_layers=0).eval()
    video = torch.rand(2, 4, 32, 32, 3)
    n = (32 // 8) ** 2
    keep = torch.from_numpy(np.stack([tube_mask(np.random.default_rng(s), n, 0.5)
                                      for s in range(2)]))
    with torch.no_grad():
        full = model(video)
        masked = model.forward_intermediates(video, keep_spatial=keep)["tokens"]
    positions = visible_token_positions(keep, 4, n)
    assert positions.shape == (2, 4 * keep.shape[1])
    expected = torch.gather(full, 1, positions[..., None].expand(-1, -1, full.shape[-1]))
    torch.testing.assert_close(masked, expected)
    # Each frame's visible positions are the same patches: tubes.
    per_frame = (positions.reshape(2, 4, -1) % n)
    assert torch.equal(per_frame, keep[:, None, :].expand(-1, 4, -1))


def test_shuffle_is_a_permutation() -> None:
    rng = np.random.default_rng(3)
    perm = shuffle_permutation(rng, 40, shuffle=True)
    assert sorted(perm.tolist()) == list(range(40))
    assert not np.array_equal(perm, np.arange(40))
    assert np.array_equal(shuffle_permutation(rng, 40, shuffle=False), np.arange(40))


def test_place_tokens_puts_tokens_on_their_slots() -> None:
    b, length, c = 2, 12, 3
    tokens = torch.arange(b * 4 * c, dtype=torch.float32).reshape(b, 4, c)
    positions = torch.tensor([[0, 3, 5, 11], [1, 2, 8, 9]])
    mask = torch.full((c,), -1.0)
    identity = torch.arange(4).expand(b, 4)
    grid = place_tokens(tokens, positions, identity, mask, length)
    for i in range(b):
        for j, pos in enumerate(positions[i].tolist()):
            assert torch.equal(grid[i, pos], tokens[i, j])
        masked = [p for p in range(length) if p not in positions[i].tolist()]
        assert torch.all(grid[i, masked] == -1.0)
    perm = torch.tensor([[2, 0, 3, 1], [3, 2, 1, 0]])
    shuffled = place_tokens(tokens, positions, perm, mask, length)
    for i in range(b):
        # Slot positions[i, j] holds token perm[i, j]: the set of visible tokens is unchanged.
        for j, pos in enumerate(positions[i].tolist()):
            assert torch.equal(shuffled[i, pos], tokens[i, perm[i, j]])
        assert torch.equal(shuffled[i, positions[i]].sort(0).values,
                           tokens[i].sort(0).values)


def test_decoder_predicts_every_slot_and_ignores_token_order_without_positions() -> None:
    """The decoder's output slot l is compared with the teacher's token l: its position
    embeddings belong to slots, so permuting the visible tokens changes the input of the
    visible slots but never which slot a prediction is for."""
    torch.manual_seed(0)
    dec = MaskedTokenDecoder(in_dim=8, out_dim=6, dim=16, num_layers=1, num_heads=2,
                             num_frames=2, num_patches=4)
    tokens = torch.randn(1, 4, 8)
    positions = torch.tensor([[0, 2, 4, 6]])
    ident = torch.arange(4)[None]
    out, motion = dec(tokens, positions, ident)
    assert out.shape == (1, 8, 6) and motion is None
    # Visible tokens identical to one another: any shuffle gives the same predictions.
    same = tokens[:, :1].expand(1, 4, 8)
    torch.testing.assert_close(dec(same, positions, ident)[0],
                               dec(same, positions, torch.tensor([[3, 1, 0, 2]]))[0])
    # Distinct tokens: a shuffle changes the predictions.
    assert not torch.allclose(out, dec(tokens, positions, torch.tensor([[3, 1, 0, 2]]))[0])
    with_motion = MaskedTokenDecoder(in_dim=8, out_dim=6, dim=16, num_layers=1, num_heads=2,
                                     num_frames=2, num_patches=4, motion_dim=12)
    assert with_motion(tokens, positions, ident)[1].shape == (1, 8, 12)


def test_frame_difference_target_lines_up_with_the_token_grid() -> None:
    from prism_training.losses import frame_difference_patches, motion_target_loss

    video = torch.zeros(1, 3, 4, 4, 3)  # T=3 frames of 2x2 patches of 2x2 pixels
    video[0, 1, 2:, :2] = 0.5  # frame 1: bottom-left patch lights up...
    video[0, 2, 2:, :2] = 0.5  # ...and stays: no change in frame 2
    target = frame_difference_patches(video, 2)
    assert target.shape == (1, 12, 12)  # T*n tokens of P*P*3 values
    moved = target.abs().sum(-1).reshape(3, 4)
    expected = torch.zeros(3, 4)
    expected[1, 2] = 0.5 * 12  # frame 1, patch (row 1, col 0) in raster order
    torch.testing.assert_close(moved, expected)
    # In standardised units: predicting the mean (zero) scores 1, the standardised target 0.
    assert abs(motion_target_loss(torch.zeros_like(target), target).item() - 1) < 1e-4
    standardised = (target - target.mean()) / target.std(unbiased=False)
    assert motion_target_loss(standardised, target).item() < 1e-6
    assert motion_target_loss(target, target).item() > 0.5  # raw values are the wrong units


def test_normalized_targets_drop_what_all_tokens_share() -> None:
    from prism_training.losses import normalize_token_targets, token_distillation_loss

    torch.manual_seed(0)
    particular = torch.randn(2, 24, 8)
    shared = 50.0 * torch.randn(2, 1, 8)  # one large direction common to every token of a clip
    targets = normalize_token_targets(particular + shared)
    torch.testing.assert_close(targets.mean(1), torch.zeros(2, 8), atol=1e-5, rtol=0)
    torch.testing.assert_close(targets.std(1, unbiased=False), torch.ones(2, 8), atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(targets, normalize_token_targets(particular), atol=1e-4, rtol=0)
    # Raw, the shared part alone nearly satisfies the cosine loss; normalised, it does not.
    assert token_distillation_loss(shared.expand(-1, 24, -1), particular + shared) < 0.05
    assert token_distillation_loss(shared.expand(-1, 24, -1), targets) > 0.5
