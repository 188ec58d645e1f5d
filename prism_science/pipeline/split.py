"""The validation split of probe training: held-out videos, or stretches of time of one video.

With labels on several videos, whole videos are held out (a probe must work on videos it has
not seen). With one labeled video, its labeled frames are cut, in time order, into
:data:`SINGLE_VIDEO_BLOCKS` stretches with the same number of labeled frames, and whole
stretches are held out (neighbouring frames are nearly identical, so a random frame split would
measure memory, not generalisation). The split is drawn with ``numpy.random.default_rng(seed)``,
so the same labels and seed give the same split wherever training starts from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prism_science.pipeline.data import StoreData
from prism_science.probes.base import split_by_group

SINGLE_VIDEO_BLOCKS = 5
"""A single labeled video is cut into this many stretches of time for the validation split."""


@dataclass
class ValidationSplit:
    """Which rows train and which validate.

    Attributes
    ----------
    groups : np.ndarray
        ``(N,)`` int64 split unit of each row: the video index, or the time block of a single
        video. Passed to the probe as ``groups`` (its early stopping holds out whole units).
    train, val : np.ndarray
        int64 row indices; ``val`` is empty when no split was possible.
    unit : str
        ``"video"`` or ``"time block"``.
    held_out : list of str
        The held-out videos, or the held-out stretches as ``"<video> frames a-b"``.
    n_units : int
        Videos, or time blocks, to choose from.
    """

    groups: np.ndarray
    train: np.ndarray
    val: np.ndarray
    unit: str
    held_out: list[str]
    n_units: int

    @property
    def has_validation(self) -> bool:
        """Whether some rows are held out."""
        return len(self.val) > 0

    def describe(self) -> str:
        """E.g. ``"1 held-out video of 3 (v2)"``, or why there is no validation."""
        if not self.has_validation:
            return f"no validation split ({self.n_units} {self.unit}s, too few labeled frames)"
        units = self.unit if len(self.held_out) == 1 else f"{self.unit}s"
        return (f"{len(self.held_out)} held-out {units} of {self.n_units} "
                f"({', '.join(self.held_out)})")

    def to_dict(self) -> dict:
        """JSON-able summary (saved with the probe)."""
        return {"unit": self.unit, "n_units": self.n_units, "held_out": list(self.held_out),
                "train_rows": len(self.train), "validation_rows": len(self.val)}


def validation_groups(data: StoreData, n_blocks: int = SINGLE_VIDEO_BLOCKS) -> tuple[np.ndarray,
                                                                                        str]:
    """The split unit of each row: the video, or, for one video, its stretch of time.

    Stretches hold equal numbers of labeled frames (rows without labels, kept for the temporal
    probe, join the stretch of the labeled frame before them), so unlabeled parts of a video
    never make a stretch without labels.

    Returns
    -------
    (np.ndarray, str)
        ``(N,)`` int64 unit per row and ``"video"`` or ``"time block"``.
    """
    if len(data.video_ids) > 1:
        return data.groups.astype(np.int64), "video"
    labeled = (data.y >= 0).any(1) if data.y is not None else np.ones(len(data.groups), bool)
    n_labeled = max(int(labeled.sum()), 1)
    rank = np.maximum(np.cumsum(labeled) - 1, 0)
    return (rank * n_blocks // n_labeled).astype(np.int64), "time block"


def split_validation(data: StoreData, fraction: float, seed: int = 0) -> ValidationSplit:
    """Hold out ``fraction`` of the videos (or time blocks of a single video), at least one.

    Parameters
    ----------
    data : StoreData
        Rows selected for training (:func:`prism_science.pipeline.data.select_rows`).
    fraction : float
        Fraction of units held out; 0 skips the validation.
    seed : int
        Seed of the draw.

    Returns
    -------
    ValidationSplit
    """
    groups, unit = validation_groups(data)
    rng = np.random.default_rng(seed)
    train, val = split_by_group(groups, fraction, rng, min_units=2)
    held_out: list[str] = []
    for g in np.unique(groups[val]):
        if unit == "video":
            held_out.append(data.video_ids[int(g)])
        else:
            frames = data.frames[groups == g]
            held_out.append(f"{data.video_ids[0]} frames {int(frames.min())}-{int(frames.max())}")
    return ValidationSplit(groups, train, val, unit, held_out, len(np.unique(groups)))
