"""Tube masking and token shuffling for stage 2 (masked video modeling).

A tube mask keeps the same spatial patch positions in every frame (VideoMAE-style tubes, one
frame per tubelet as in the factorized encoder); the student encodes only the kept tubes. Token
shuffling (VideoPrism, Sec. 3.2) randomly permutes the student's output tokens before the
decoder, which adds position embeddings after the shuffle, so a token cannot be decoded by
copying it back to its own position.

Token order everywhere is the encoder's: time-major, then row-major patch grid, so the token of
frame ``t`` at patch position ``p`` is number ``t * n + p`` (``n`` patches per frame).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["num_kept", "shuffle_permutation", "tube_mask", "visible_token_positions"]


def num_kept(num_patches: int, mask_ratio: float) -> int:
    """Patch positions kept per frame: ``round(n * (1 - ratio))``, at least 1 and at most n."""
    if not 0.0 <= mask_ratio < 1.0:
        from prism_science.errors import ConfigError

        raise ConfigError(f"mask_ratio must lie in [0, 1), found {mask_ratio}")
    return int(min(num_patches, max(1, round(num_patches * (1.0 - mask_ratio)))))


def tube_mask(rng: np.random.Generator, num_patches: int, mask_ratio: float) -> np.ndarray:
    """Draw the kept patch positions of one clip.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness.
    num_patches : int
        Patches per frame ``n = h * w``.
    mask_ratio : float
        Fraction of positions masked, in [0, 1).

    Returns
    -------
    np.ndarray
        (n_keep,) int64, sorted ascending, distinct positions in [0, n); the same positions are
        kept in every frame (a tube).
    """
    keep = rng.permutation(num_patches)[: num_kept(num_patches, mask_ratio)]
    return np.sort(keep).astype(np.int64)


def shuffle_permutation(rng: np.random.Generator, num_tokens: int, shuffle: bool) -> np.ndarray:
    """A permutation of the student's ``num_tokens`` output tokens (identity when not shuffling).

    Returns
    -------
    np.ndarray
        (num_tokens,) int64; slot ``i`` of the decoder's visible input receives token ``perm[i]``.
    """
    if not shuffle:
        return np.arange(num_tokens, dtype=np.int64)
    return rng.permutation(num_tokens).astype(np.int64)


def visible_token_positions(keep_spatial: torch.Tensor, num_frames: int,
                            num_patches: int) -> torch.Tensor:
    """Positions in the full token sequence of the student's tokens, in the student's order.

    Parameters
    ----------
    keep_spatial : torch.Tensor
        (B, K) int64 kept patch positions.
    num_frames : int
        T.
    num_patches : int
        n patches per frame.

    Returns
    -------
    torch.Tensor
        (B, T*K) int64: ``t * n + keep_spatial[b, k]`` for t-major, k-minor order, which is the
        order of ``forward_intermediates(..., keep_spatial=...)["tokens"]``.
    """
    frames = torch.arange(num_frames, device=keep_spatial.device)[None, :, None] * num_patches
    return (frames + keep_spatial[:, None, :]).reshape(keep_spatial.shape[0], -1)
