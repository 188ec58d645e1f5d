"""Tracker accuracy against reference tracks: centroid error and identity swaps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from prism_science.errors import TracksError
from prism_science.tracks.core import Tracks

__all__ = ["TrackComparison", "compare_tracks"]


@dataclass
class TrackComparison:
    """Accuracy of tracks against a reference (e.g. proofread SLEAP tracks).

    Attributes
    ----------
    median_error_px, p90_error_px : float
        Centroid error (pixels) over the compared subject-frames, each tracked subject matched to
        the reference subject it follows in that stretch (between identity swaps).
    identity_swaps : int
        Times the best one-to-one matching of tracked to reference subjects changed and held
        for at least ``min_frames`` frames.
    frames_compared : int
        Frames where every subject of both is present.
    found_fraction : float
        Fraction of the reference's present subject-frames that the tracks have too.
    mapping : dict
        Tracked subject -> reference subject over the most frames.
    """

    median_error_px: float
    p90_error_px: float
    identity_swaps: int
    frames_compared: int
    found_fraction: float
    mapping: dict[str, str]


def compare_tracks(tracks: Tracks, reference: Tracks, *, min_frames: int = 5) -> TrackComparison:
    """Compare tracked centroids with reference centroids of the same video.

    Parameters
    ----------
    tracks : Tracks
        Tracks to evaluate (e.g. the built-in tracker's).
    reference : Tracks
        Ground truth with the same number of subjects (names may differ).
    min_frames : int
        A change of the best matching counts as an identity swap only when it holds this many
        compared frames (touching animals make the matching flicker for a frame or two).

    Returns
    -------
    TrackComparison

    Raises
    ------
    TracksError
        Different subject counts, or no frame where all subjects of both are present.
    """
    if tracks.n_subjects != reference.n_subjects:
        raise TracksError(f"{tracks.source} has {tracks.n_subjects} subjects but the reference "
                          f"{reference.source} has {reference.n_subjects}; compare tracks of "
                          "the same animals.")
    n_frames = min(tracks.n_frames, reference.n_frames)
    a = tracks.centroids[:n_frames]
    b = reference.centroids[:n_frames]
    ref_present = reference.present[:n_frames]
    found = (tracks.present[:n_frames] & ref_present).sum() / max(int(ref_present.sum()), 1)
    both = tracks.present[:n_frames].all(axis=1) & ref_present.all(axis=1)
    frames = np.flatnonzero(both)
    if len(frames) == 0:
        raise TracksError(f"no frame of {tracks.source} and {reference.source} has every subject "
                          "of both; nothing to compare.")
    dist = np.linalg.norm(a[frames][:, :, None, :] - b[frames][:, None, :, :], axis=3)
    best = np.array([linear_sum_assignment(d)[1] for d in dist])  # (F, S) reference per subject
    # debounce: a new matching replaces the current one only when it holds min_frames frames
    current = best[0]
    held = np.empty_like(best)
    swaps = 0
    i = 0
    while i < len(best):
        if not np.array_equal(best[i], current):
            j = i
            while j < len(best) and np.array_equal(best[j], best[i]):
                j += 1
            if j - i >= min_frames:
                current = best[i]
                swaps += 1
        held[i] = current
        i += 1
    errors = dist[np.arange(len(frames))[:, None], np.arange(tracks.n_subjects)[None], held]
    counts = {}
    for k in range(tracks.n_subjects):
        values, n = np.unique(held[:, k], return_counts=True)
        counts[tracks.subjects[k]] = reference.subjects[int(values[n.argmax()])]
    return TrackComparison(
        median_error_px=float(np.median(errors)), p90_error_px=float(np.percentile(errors, 90)),
        identity_swaps=swaps, frames_compared=int(len(frames)), found_fraction=float(found),
        mapping=counts)
