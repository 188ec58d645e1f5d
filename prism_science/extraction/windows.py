"""Clip windows over a video, and the reduction of encoder tokens to per-frame features.

An encoder takes clips of ``T`` frames (its ``num_frames``). A clip starting at frame ``i`` with
frame stride ``s`` holds frames ``i, i+s, ..., i+(T-1)s`` (temporal subsampling). Two ways of
turning clips into one feature per frame:

``sliding``
    Clips start at frames ``0, h, 2h, ...`` (``h`` = hop) until one reaches the last frame. Every
    frame a clip samples receives that clip's tokens at the frame's position; a frame's feature
    is the average over all clips that sample it. Cost: about ``N / h`` clips for ``N`` frames
    (each frame encoded ``T * s / h`` times on average when ``h`` is a multiple of ``s``).
    With ``s > 1`` some frames are sampled by no clip; they take the feature of the nearest
    sampled frame (the earlier one on a tie), which is never more than ``s - 1`` frames away.
``center``
    The paper's protocol: one clip centred on every frame (frame ``f`` at position ``c = T // 2``
    of the clip ``f - c*s, ..., f + (T-1-c)*s``); the frame's feature is the clip's tokens at
    position ``c``. Cost: ``N`` clips instead of about ``N / h``: ``h`` times the encoder work of
    ``sliding`` (8 x at the default hop of 8; measured figures in docs/extraction.md). The hop
    is ignored.

Frames a clip would take from before the first or after the last frame are padding: they are
filled by repeating the edge frame (``padding="repeat"``) or with black (``"zeros"``), and marked
1.0 in ``frame_paddings`` (B, T) so that the encoder masks them; their tokens are never used.

Token modes reduce each frame's ``h x w`` token grid (D channels): ``mean`` (D,) averages over
space; ``grid`` (g, g, D) is an adaptive average pooling to ``g x g``; ``full`` keeps (h, w, D).
``frame_emb`` (D,) is not a pooling of tokens: it is a video-text model's per-frame contrastive
embedding (``encode_frames``: auxiliary encoder + contrastive pooler on each frame's tokens, in
the text tower's space), computed by :mod:`prism_science.extraction.features`; prompt probes and
zero-shot scoring need it.

Everything here is pure: :func:`plan_windows` lays out the clips, :func:`window_range` finds the
clips that a frame range needs, :func:`pool_tokens` reduces tokens, and
:class:`FrameAccumulator` streams per-frame features out in frame order as clips are added, so
memory stays bounded whatever the video's length.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from prism_science.errors import WindowError

__all__ = [
    "PADDING_MODES",
    "TOKEN_MODES",
    "WINDOW_MODES",
    "FrameAccumulator",
    "WindowParams",
    "WindowPlan",
    "feature_shape",
    "plan_windows",
    "pool_tokens",
    "window_range",
]

WINDOW_MODES = ("sliding", "center")
TOKEN_MODES = ("mean", "grid", "full", "frame_emb")
PADDING_MODES = ("repeat", "zeros")


@dataclass(frozen=True)
class WindowParams:
    """How clips are laid over a video and how their tokens become per-frame features.

    Attributes
    ----------
    mode : str
        ``"sliding"`` (clips every ``hop`` frames, averaged) or ``"center"`` (one clip per frame).
    stride : int
        Frame stride inside a clip (temporal subsampling), >= 1.
    hop : int
        Frames between the starts of consecutive clips in ``sliding`` mode, >= 1 and at most
        ``T * stride`` (larger hops would leave frames no clip samples). Ignored by ``center``.
    tokens : str
        ``"mean"``, ``"grid"``, ``"full"`` or ``"frame_emb"`` (video-text models only).
    grid : int
        Side of the pooled grid for ``tokens="grid"`` (ignored otherwise).
    padding : str
        ``"repeat"`` (edge frame) or ``"zeros"`` (black) for frames past the video's ends.
    """

    mode: str = "sliding"
    stride: int = 1
    hop: int = 8
    tokens: str = "mean"
    grid: int = 2
    padding: str = "repeat"

    def __post_init__(self) -> None:
        if self.mode not in WINDOW_MODES:
            raise WindowError(f"window mode must be one of {WINDOW_MODES}, found {self.mode!r}")
        if self.tokens not in TOKEN_MODES:
            raise WindowError(f"token mode must be one of {TOKEN_MODES}, found {self.tokens!r}")
        if self.padding not in PADDING_MODES:
            raise WindowError(
                f"padding must be one of {PADDING_MODES}, found {self.padding!r}"
            )
        for name in ("stride", "hop", "grid"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WindowError(f"window parameter {name!r} must be an int >= 1, found {value!r}")

    @property
    def token_key(self) -> str:
        """Short name of the token mode as used in store keys: ``mean``, ``grid2``, ``full``."""
        return f"grid{self.grid}" if self.tokens == "grid" else self.tokens

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a JSON-able dict (only those that change the features)."""
        out = dataclasses.asdict(self)
        if self.tokens != "grid":
            out.pop("grid")
        if self.mode == "center":
            out.pop("hop")
        return out

    def check(self, num_frames: int) -> None:
        """Raise :class:`WindowError` if the hop leaves frames unsampled for clips of ``T``."""
        if self.mode == "sliding" and self.hop > num_frames * self.stride:
            raise WindowError(
                f"hop {self.hop} is larger than the clip span T*stride = {num_frames}*"
                f"{self.stride}: frames between clips would get no features; use a hop <= "
                f"{num_frames * self.stride}"
            )


@dataclass(frozen=True, eq=False)
class WindowPlan:
    """The clips covering a video of ``n_frames`` frames.

    Attributes
    ----------
    n_frames : int
        Frames in the video (N).
    num_frames : int
        Clip length T of the model.
    params : WindowParams
        The parameters the plan was made with.
    frame_indices : np.ndarray
        (W, T) int64 frame each clip position takes; may lie outside ``[0, N)`` (padding).
    frame_paddings : np.ndarray
        (W, T) float32, 1.0 where the position is padding (passed to the encoder).
    contributes : np.ndarray
        (W, T) bool, positions whose tokens become the feature of ``frame_indices``.
    source : np.ndarray
        (N,) int64, the frame whose accumulated tokens give each frame's feature: itself for
        frames some clip samples, the nearest sampled frame otherwise.
    """

    n_frames: int
    num_frames: int
    params: WindowParams
    frame_indices: np.ndarray
    frame_paddings: np.ndarray
    contributes: np.ndarray
    source: np.ndarray

    @property
    def n_windows(self) -> int:
        """Number of clips (W)."""
        return int(self.frame_indices.shape[0])

    @property
    def center_position(self) -> int:
        """Position of the target frame inside a ``center`` clip (``T // 2``)."""
        return self.num_frames // 2

    def decode_indices(self, windows: slice) -> np.ndarray:
        """(w, T) int64 frames to decode for the given clips, padding clamped to the edges."""
        return np.clip(self.frame_indices[windows], 0, self.n_frames - 1)

    def contributed_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per clip, the first and last frame it contributes to: two (W,) int64 arrays."""
        big = np.iinfo(np.int64).max
        first = np.where(self.contributes, self.frame_indices, big).min(axis=1)
        last = np.where(self.contributes, self.frame_indices, -1).max(axis=1)
        return first, last


def plan_windows(n_frames: int, num_frames: int, params: WindowParams) -> WindowPlan:
    """Lay out the clips that cover every frame of a video.

    Parameters
    ----------
    n_frames : int
        Frames in the video (N >= 1).
    num_frames : int
        Clip length T of the model.
    params : WindowParams
        Mode, stride, hop and padding.

    Returns
    -------
    WindowPlan
        ``sliding``: W = 1 + ceil(max(0, N - 1 - (T-1)*s) / hop) clips starting at multiples of
        the hop; ``center``: W = N clips, clip ``f`` centred on frame ``f``.

    Raises
    ------
    WindowError
        N < 1, T < 1, or a hop larger than ``T * stride``.
    """
    if n_frames < 1:
        raise WindowError(f"cannot plan windows over {n_frames} frames; the video has no frames")
    if num_frames < 1:
        raise WindowError(f"clip length must be >= 1, found {num_frames}")
    params.check(num_frames)
    s = params.stride
    offsets = np.arange(num_frames, dtype=np.int64) * s
    if params.mode == "sliding":
        reach = (num_frames - 1) * s
        n_windows = 1 + -(-max(0, n_frames - 1 - reach) // params.hop)
        starts = np.arange(n_windows, dtype=np.int64) * params.hop
        indices = starts[:, None] + offsets[None, :]
        valid = (indices >= 0) & (indices < n_frames)
        contributes = valid
    else:
        centre = num_frames // 2
        targets = np.arange(n_frames, dtype=np.int64)
        indices = targets[:, None] + offsets[None, :] - centre * s
        valid = (indices >= 0) & (indices < n_frames)
        contributes = np.zeros_like(valid)
        contributes[:, centre] = True
    sampled = np.zeros(n_frames, dtype=bool)
    sampled[indices[contributes]] = True
    return WindowPlan(
        n_frames=n_frames,
        num_frames=num_frames,
        params=params,
        frame_indices=indices,
        frame_paddings=(~valid).astype(np.float32),
        contributes=contributes,
        source=_nearest_sampled(sampled),
    )


def _nearest_sampled(sampled: np.ndarray) -> np.ndarray:
    """(N,) index of the nearest True entry of ``sampled`` (the earlier one on ties)."""
    positions = np.flatnonzero(sampled)
    frames = np.arange(sampled.shape[0])
    right = np.searchsorted(positions, frames, side="left").clip(max=positions.size - 1)
    left = (right - 1).clip(min=0)
    take_left = np.abs(frames - positions[left]) <= np.abs(positions[right] - frames)
    return np.where(take_left, positions[left], positions[right]).astype(np.int64)


def window_range(plan: WindowPlan, frame_start: int, frame_stop: int) -> tuple[int, int]:
    """Clips needed to compute the features of frames ``frame_start .. frame_stop-1`` exactly.

    Parameters
    ----------
    plan : WindowPlan
        The whole video's plan (sub-ranges use the same clips as the whole, so a range computed
        alone equals the same frames computed in one pass).
    frame_start, frame_stop : int
        Frame range, ``stop`` exclusive, ``0 <= start < stop <= N``.

    Returns
    -------
    (int, int)
        ``(w0, w1)``: clips ``w0 .. w1-1``.
    """
    if not 0 <= frame_start < frame_stop <= plan.n_frames:
        raise WindowError(
            f"frame range {frame_start}..{frame_stop} is invalid for a video of "
            f"{plan.n_frames} frames; expected 0 <= start < stop <= {plan.n_frames}"
        )
    sources = plan.source[frame_start:frame_stop]
    lo, hi = int(sources.min()), int(sources.max())
    first, last = plan.contributed_range()
    # Both are non-decreasing over clips, so the clips touching [lo, hi] are contiguous.
    w0 = int(np.searchsorted(last, lo, side="left"))
    w1 = int(np.searchsorted(first, hi, side="right"))
    return w0, w1


def feature_shape(params: WindowParams, grid_hw: tuple[int, int], dim: int) -> tuple[int, ...]:
    """Shape of one frame's feature: (D,), (g, g, D) or (h, w, D)."""
    if params.tokens in ("mean", "frame_emb"):
        return (dim,)
    if params.tokens == "grid":
        return (params.grid, params.grid, dim)
    return (grid_hw[0], grid_hw[1], dim)


def pool_tokens(
    tokens: torch.Tensor, num_frames: int, grid_hw: tuple[int, int], params: WindowParams
) -> torch.Tensor:
    """Reduce encoder tokens to per-position features.

    Parameters
    ----------
    tokens : torch.Tensor
        (B, T*h*w, D) encoder output, time-major then row-major.
    num_frames : int
        T.
    grid_hw : (int, int)
        Token grid (h, w).
    params : WindowParams
        Token mode and grid side.

    Returns
    -------
    torch.Tensor
        (B, T, D) for ``mean``, (B, T, g, g, D) for ``grid``, (B, T, h, w, D) for ``full``;
        same dtype as ``tokens``.
    """
    if params.tokens == "frame_emb":
        raise WindowError("token mode 'frame_emb' is the model's per-frame embedding, not a "
                          "pooling of tokens: compute it with model.encode_frames (as "
                          "prism_science.extraction.features.iter_video_features does)")
    h, w = grid_hw
    grid = rearrange(tokens, "b (t h w) d -> b t h w d", t=num_frames, h=h, w=w)
    if params.tokens == "mean":
        return grid.mean(dim=(2, 3))
    if params.tokens == "full":
        return grid
    b = grid.shape[0]
    pooled = F.adaptive_avg_pool2d(rearrange(grid, "b t h w d -> (b t) d h w"), params.grid)
    return rearrange(pooled, "(b t) d g k -> b t g k d", b=b)


class FrameAccumulator:
    """Turns clip features, added in clip order, into per-frame features in frame order.

    Parameters
    ----------
    plan : WindowPlan
        The video's plan.
    frame_start, frame_stop : int
        The frames to produce (``stop`` exclusive); clips must be added for exactly
        :func:`window_range` of this range, in order.
    feature_shape : tuple of int
        Shape of one frame's feature.

    Notes
    -----
    Memory holds only the frames between the last emitted one and the furthest frame a clip
    added so far reaches: about ``T * stride + batch * hop`` frames.
    """

    def __init__(
        self, plan: WindowPlan, frame_start: int, frame_stop: int, feature_shape: tuple[int, ...]
    ) -> None:
        self.plan = plan
        self.frame_start = frame_start
        self.frame_stop = frame_stop
        self.feature_shape = tuple(feature_shape)
        self.w0, self.w1 = window_range(plan, frame_start, frame_stop)
        sources = plan.source[frame_start:frame_stop]
        self._lo, self._hi = int(sources.min()), int(sources.max()) + 1
        self._first, _ = plan.contributed_range()
        self._sums: dict[int, np.ndarray] = {}
        self._counts: dict[int, int] = {}
        self._next_window = self.w0
        self._next_frame = frame_start

    @property
    def done(self) -> bool:
        """Whether every frame of the range has been emitted."""
        return self._next_frame >= self.frame_stop

    def add(self, window_start: int, features: np.ndarray) -> None:
        """Add the pooled features of clips ``window_start .. window_start + B - 1``.

        Parameters
        ----------
        window_start : int
            Index of the first clip; must continue where the previous call stopped.
        features : np.ndarray
            (B, T, *feature_shape) float32, from :func:`pool_tokens`.
        """
        if window_start != self._next_window:
            raise WindowError(
                f"clips must be added in order: expected clip {self._next_window}, "
                f"got {window_start}"
            )
        n = features.shape[0]
        if window_start + n > self.w1:
            raise WindowError(
                f"clips {window_start}..{window_start + n - 1} go past the last clip "
                f"{self.w1 - 1} this frame range needs"
            )
        for k in range(n):
            w = window_start + k
            for pos in np.flatnonzero(self.plan.contributes[w]):
                frame = int(self.plan.frame_indices[w, pos])
                if not self._lo <= frame < self._hi:
                    continue
                if frame in self._sums:
                    self._sums[frame] += features[k, pos]
                    self._counts[frame] += 1
                else:
                    self._sums[frame] = features[k, pos].astype(np.float32, copy=True)
                    self._counts[frame] = 1
        self._next_window = window_start + n

    def _final_below(self) -> int:
        """Frames below this value receive no more contributions."""
        if self._next_window >= self.w1:
            return self._hi
        return int(self._first[self._next_window])

    def pop_ready(self) -> Iterator[tuple[int, int, np.ndarray]]:
        """Yield ``(start, stop, features)`` blocks of frames that are final, in frame order.

        ``features`` is (stop - start, *feature_shape) float32.
        """
        final_below = self._final_below()
        start = self._next_frame
        stop = start
        while stop < self.frame_stop and int(self.plan.source[stop]) < final_below:
            stop += 1
        if stop == start:
            return
        block = np.empty((stop - start, *self.feature_shape), dtype=np.float32)
        for i, frame in enumerate(range(start, stop)):
            src = int(self.plan.source[frame])
            block[i] = self._sums[src] / self._counts[src]
        self._next_frame = stop
        # Drop sums no frame still to be emitted can need (sources are non-decreasing).
        keep_from = int(self.plan.source[stop]) if stop < self.frame_stop else self._hi
        for frame in [f for f in self._sums if f < keep_from]:
            del self._sums[frame]
            del self._counts[frame]
        yield start, stop, block
