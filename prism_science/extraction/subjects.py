"""Per-subject (animal-centred) extraction: crops that follow one animal's track.

Each subject of a tracks file becomes its own feature set of the video, keyed
``"<model>/<tokens>@<subject>"`` (:func:`subject_key`), so resume, kill-safety, job-array
shards and Dask work on it exactly as on whole frames. Frames are decoded at full size, cut to
a square window of fixed side centred on the smoothed centroid (zero-padded past the frame's
edges, optionally rotated so that the heading points up), then resized to the model's input.
Frames where the subject is absent get NaN features (left out of training). See
docs/tracks.md ("Per-subject features").
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from prism_science.errors import TracksError
from prism_science.tracks import Tracks, missing_runs

__all__ = [
    "SUBJECT_SEPARATOR",
    "SubjectCrop",
    "crop_frames",
    "crop_size_for",
    "file_sha256",
    "smooth_track",
    "split_subject_key",
    "subject_crops",
    "subject_key",
    "warn_absent",
]

logger = logging.getLogger(__name__)

SUBJECT_SEPARATOR = "@"
"""Separates the token mode from the subject in a per-subject feature key."""

_CROP_FACTOR = 2.5  # crop side = 2.5 body lengths: the animal plus some of its surroundings
_MIN_CROP = 32
_DEFAULT_CROP_FRACTION = 0.25  # no body length known: a quarter of the frame's shorter side
_SMOOTH_FRAMES = 5
_WARN_MISSING = 0.05  # warn when a subject is absent from more than this fraction of frames
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def subject_key(key: str, subject: str) -> str:
    """The per-subject feature key: ``"model/tokens"`` + ``"@"`` + a store-safe subject name.

    Characters other than letters, digits, ``_ . -`` become ``_`` (a ``/`` would add a level).
    """
    safe = _SAFE.sub("_", str(subject)).strip("_") or "subject"
    return f"{key}{SUBJECT_SEPARATOR}{safe}"


def split_subject_key(key: str) -> tuple[str, str | None]:
    """``"m/mean@male"`` -> ``("m/mean", "male")``; a whole-frame key -> ``(key, None)``."""
    base, sep, subject = key.partition(SUBJECT_SEPARATOR)
    return (base, subject) if sep else (key, None)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (a tracks file, recorded in the provenance)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def smooth_track(centroids: np.ndarray, heading: np.ndarray | None = None,
                 window: int = _SMOOTH_FRAMES) -> tuple[np.ndarray, np.ndarray | None]:
    """Moving-average a subject's centroids (and heading, as unit vectors) over present frames.

    Parameters
    ----------
    centroids : np.ndarray
        (T, 2) float x, y; NaN where absent.
    heading : np.ndarray, optional
        (T,) radians; NaN where unknown.
    window : int
        Frames averaged (centred); absent frames do not count.

    Returns
    -------
    (np.ndarray, np.ndarray or None)
        (T, 2) smoothed centroids, NaN where the subject is absent; (T,) smoothed heading.
    """
    def average(values: np.ndarray) -> np.ndarray:
        finite = np.isfinite(values).all(axis=1)
        filled = np.where(finite[:, None], values, 0.0)
        kernel = np.ones(window) / window
        sums = np.stack([np.convolve(filled[:, j], kernel, mode="same")
                         for j in range(values.shape[1])], axis=1)
        counts = np.convolve(finite.astype(float), kernel, mode="same")[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = sums / counts
        out[~finite] = np.nan
        return out

    centroids = np.asarray(centroids, dtype=np.float64)
    smooth = average(centroids)
    if heading is None:
        return smooth, None
    vectors = np.stack([np.cos(heading), np.sin(heading)], axis=1)
    mean = average(vectors)
    return smooth, np.arctan2(mean[:, 1], mean[:, 0])


def crop_size_for(tracks: Tracks, subject: str, frame_size: tuple[int, int],
                  crop_size: int | None = None) -> int:
    """Side of a subject's crops in pixels: given, or 2.5 body lengths (at least 32).

    Without a body length in the tracks the side is a quarter of the frame's shorter side.
    """
    if crop_size is not None:
        return int(crop_size)
    length = float(tracks.median_body_length()[tracks.subject_index(subject)])
    if not np.isfinite(length):
        side = int(round(_DEFAULT_CROP_FRACTION * min(frame_size)))
        logger.warning("%s: no body length for subject %r; crops of %d px (a quarter of the "
                       "frame): give --crop-size to choose", tracks.source, subject, side)
        return max(_MIN_CROP, side)
    return max(_MIN_CROP, int(round(_CROP_FACTOR * length)))


def crop_frames(frames: np.ndarray, centers: np.ndarray, size: int,
                headings: np.ndarray | None = None) -> np.ndarray:
    """Cut a ``size`` x ``size`` window centred on each frame's centre, zero-padded at edges.

    Parameters
    ----------
    frames : np.ndarray
        (N, H, W, 3) uint8 full-size frames.
    centers : np.ndarray
        (N, 2) float x, y in pixels; NaN (absent) gives a black crop.
    size : int
        Side of the window in pixels. Without headings the window is the pixels
        ``[round(x - size/2), +size)`` x ``[round(y - size/2), +size)``.
    headings : np.ndarray, optional
        (N,) radians; when given the window is rotated so that the heading points up
        (bilinear sampling); NaN heading: not rotated.

    Returns
    -------
    np.ndarray
        (N, size, size, 3) uint8.
    """
    n, height, width = frames.shape[:3]
    out = np.zeros((n, size, size, 3), np.uint8)
    for i in range(n):
        cx, cy = centers[i]
        if not (np.isfinite(cx) and np.isfinite(cy)):
            continue
        angle = None if headings is None else headings[i]
        if angle is None or not np.isfinite(angle):
            x0, y0 = int(round(cx - size / 2)), int(round(cy - size / 2))
            sx0, sy0 = max(x0, 0), max(y0, 0)
            sx1, sy1 = min(x0 + size, width), min(y0 + size, height)
            if sx1 > sx0 and sy1 > sy0:
                out[i, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frames[i, sy0:sy1, sx0:sx1]
            continue
        # Rotate by (heading + 90 deg) so that the heading vector maps to "up" (-y).
        theta = float(angle) + np.pi / 2
        offsets = np.arange(size) - (size - 1) / 2
        u, v = np.meshgrid(offsets, offsets)  # u: output x, v: output y
        cos, sin = np.cos(theta), np.sin(theta)
        xs = cx + cos * u - sin * v
        ys = cy + sin * u + cos * v
        for c in range(3):
            out[i, :, :, c] = ndimage.map_coordinates(
                frames[i, :, :, c], [ys, xs], order=1, mode="constant", cval=0.0)
    return out


def _resize(crops: np.ndarray, side: int) -> np.ndarray:
    if crops.shape[1] == side:
        return crops
    return np.stack([np.asarray(Image.fromarray(c).resize((side, side), Image.BILINEAR,
                                                          reducing_gap=None)) for c in crops])


@dataclass(frozen=True, eq=False)
class SubjectCrop:
    """How to crop one subject from a video's frames.

    Attributes
    ----------
    subject : str
        The subject's name in the tracks.
    centers : np.ndarray
        (T, 2) float64 smoothed centroids; NaN where the subject is absent.
    headings : np.ndarray or None
        (T,) smoothed heading (radians) when crops are rotated heading-up, else None.
    size : int
        Crop side in pixels (fixed for the whole video).
    output_size : int
        The model's input side the crops are resized to.
    """

    subject: str
    centers: np.ndarray
    headings: np.ndarray | None
    size: int
    output_size: int

    @property
    def present(self) -> np.ndarray:
        """(T,) bool: frames where the subject has a centroid."""
        return np.isfinite(self.centers[:, 0])

    def transform(self, frame_start: int, frames: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) full-size frames from ``frame_start`` -> (N, S, S, 3) model input.

        Absent frames take the nearest present centre so the clip around them stays
        meaningful; their features are set to NaN afterwards (:meth:`mask`).
        """
        stop = frame_start + len(frames)
        centers = self._filled_centers()[frame_start:stop]
        headings = None if self.headings is None else self.headings[frame_start:stop]
        return _resize(crop_frames(frames, centers, self.size, headings), self.output_size)

    def mask(self, frame_start: int, values: np.ndarray) -> np.ndarray:
        """Set the features of frames where the subject is absent to NaN (in place)."""
        absent = ~self.present[frame_start:frame_start + len(values)]
        if absent.any():
            values[absent] = np.nan
        return values

    def filled_centers(self) -> np.ndarray:
        """(T, 2) centres where absent frames take the nearest present frame's centre (the
        centres :meth:`transform` crops around; do not modify)."""
        return self._filled_centers()

    def _filled_centers(self) -> np.ndarray:
        cached = getattr(self, "_filled", None)
        if cached is not None:
            return cached
        present = self.present
        filled = self.centers.copy()
        if present.any() and not present.all():
            idx = np.flatnonzero(present)
            frames = np.arange(len(present))
            after = idx[np.clip(np.searchsorted(idx, frames), 0, len(idx) - 1)]
            before = idx[np.clip(np.searchsorted(idx, frames, side="right") - 1, 0,
                                 len(idx) - 1)]
            nearest = np.where(np.abs(frames - before) <= np.abs(after - frames), before, after)
            filled[~present] = self.centers[nearest[~present]]
        object.__setattr__(self, "_filled", filled)
        return filled

    def identity(self, tracks_sha256: str, tracks_path: str | None = None) -> dict[str, Any]:
        """The ``crop`` provenance field (an identity field of the feature set)."""
        return {"subject": self.subject, "tracks_sha256": tracks_sha256,
                "size": int(self.size), "align_heading": self.headings is not None,
                "smooth_frames": _SMOOTH_FRAMES}


def warn_absent(present: np.ndarray, source: str, subject: str, n_frames: int,
                what: str = "centroid") -> None:
    """Log a warning naming the frames when a subject is absent from more than 5% of them.

    Parameters
    ----------
    present : np.ndarray
        (T,) bool, frames where the subject has a ``what``.
    source : str
        The tracks file, for the message.
    subject : str
        The subject's name.
    n_frames : int
        The video's frame count.
    what : str
        What the subject lacks in the other frames (``centroid``, ``box``).
    """
    missing = int((~present).sum())
    if missing <= _WARN_MISSING * n_frames:
        return
    runs = missing_runs(~present)
    shown = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs[:5])
    more = f" and {len(runs) - 5} more ranges" if len(runs) > 5 else ""
    lacks = "is absent from" if what == "centroid" else f"has no {what} in"
    logger.warning("subject %r of %s %s %d of %d frames (frames %s%s); their features are NaN "
                   "and left out of training", subject, source, lacks, missing, n_frames, shown,
                   more)


def subject_crops(
    tracks: Tracks, n_frames: int, frame_size: tuple[int, int], output_size: int, *,
    crop_size: int | None = None, align_heading: bool = False,
    subjects: list[str] | None = None, video: str = "the video",
) -> list[SubjectCrop]:
    """Check ``tracks`` against the video and build one :class:`SubjectCrop` per subject.

    Parameters
    ----------
    tracks : Tracks
        From :func:`prism_science.tracks.read_tracks` or the built-in tracker.
    n_frames : int
        The video's frame count.
    frame_size : (int, int)
        The video's (height, width).
    output_size : int
        The model's input side.
    crop_size : int, optional
        Crop side in pixels for every subject; default per subject from its body length.
    align_heading : bool
        Rotate crops so that the heading points up (the tracks need headings).
    subjects : list of str, optional
        Only these subjects (default all).
    video : str
        The video's path, for messages.

    Returns
    -------
    list of SubjectCrop

    Raises
    ------
    TracksError
        The tracks belong to another video (frame count or size), a subject is unknown, a
        subject is never present, or ``align_heading`` without headings.
    """
    tracks = tracks.check_video(n_frames, frame_size, video=video)
    if crop_size is not None and crop_size < 8:
        raise TracksError(f"--crop-size {crop_size}: crops need at least 8 px a side")
    if align_heading and (tracks.heading is None or not np.isfinite(tracks.heading).any()):
        raise TracksError(
            f"{tracks.source or 'the tracks'}: --align-heading needs headings, and these tracks "
            "have none (no head/tail keypoints or angle column); drop --align-heading")
    crops = []
    for name in subjects if subjects is not None else tracks.subjects:
        k = tracks.subject_index(name)
        present = tracks.present[:, k]
        if not present.any():
            raise TracksError(
                f"subject {name!r} of {tracks.source or 'the tracks'} is absent from every frame "
                f"of {video}; leave it out or re-track it")
        warn_absent(present, tracks.source or "the tracks", name, n_frames)
        heading = tracks.heading[:, k] if align_heading else None
        centers, headings = smooth_track(tracks.centroids[:, k], heading)
        crops.append(SubjectCrop(subject=tracks.subjects[k], centers=centers, headings=headings,
                                 size=crop_size_for(tracks, name, frame_size, crop_size),
                                 output_size=int(output_size)))
    return crops


def default_tracks_path(store_path: str | os.PathLike[str], video_id: str) -> Path:
    """Where ``--subjects auto`` writes the tracker's CSV: next to the store."""
    store = Path(store_path).resolve()
    return store.parent / f"{store.stem}.{video_id}.tracks.csv"
