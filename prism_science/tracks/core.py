"""The one in-memory form of animal tracks, gap filling, and the checks against a video.

Every reader of :mod:`prism_science.tracks.readers` and the built-in tracker produce a
:class:`Tracks`: per frame and per subject a centroid, a heading, a confidence, and optionally a
box, keypoints and a body length, as numpy arrays with NaN where a subject is absent.

Coordinates are pixels of the full video frame, x to the right and y down, as the source file
gives them. Headings are radians, ``atan2(dy, dx)`` of the head direction in those image
coordinates (0 faces right, pi/2 faces down), wrapped to [-pi, pi).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prism_science.errors import TracksError

__all__ = [
    "FRONT_KEYPOINTS",
    "BACK_KEYPOINTS",
    "Tracks",
    "from_boxes",
    "from_keypoints",
    "interpolate_gaps",
    "missing_runs",
]

logger = logging.getLogger(__name__)

# Names (lower case, letters and digits only) that mark the front and the back of a body, most
# specific first: nose/snout (mice), head (flies, SLEAP skeletons), neck (CalMS21);
# tail base (DLC, CalMS21), abdomen (flies).
FRONT_KEYPOINTS = ("nose", "snout", "head", "beak", "neck", "headtop")
BACK_KEYPOINTS = ("tailbase", "abdomen", "tail", "tailstart", "rump", "hips", "pelvis")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _pick_keypoint(names: Sequence[str], candidates: Sequence[str]) -> int | None:
    normed = [_norm(n) for n in names]
    for candidate in candidates:
        if candidate in normed:
            return normed.index(candidate)
    for candidate in candidates:
        for i, n in enumerate(normed):
            if candidate in n:
                return i
    return None


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` ignoring NaN; NaN (without a warning) where every value is NaN."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


@dataclass
class Tracks:
    """Per-frame, per-subject positions of the animals of one video.

    Attributes
    ----------
    centroids : np.ndarray
        (T, S, 2) float32 x, y in pixels; NaN where the subject is absent (masked).
    subjects : list of str
        S subject names (SLEAP tracks, DLC individuals, box ids, ``animal0``...).
    heading : np.ndarray
        (T, S) float32 radians, ``atan2(dy, dx)`` of the head direction in image coordinates;
        NaN where unknown (absent, or a format without orientation).
    confidence : np.ndarray
        (T, S) float32 in [0, 1]; NaN where absent. Formats without scores give 1.
    boxes : np.ndarray or None
        (T, S, 4) float32 ``x0, y0, x1, y1``; None for formats without boxes.
    keypoints : np.ndarray or None
        (T, S, K, 2) float32 x, y; NaN for a keypoint not found; None without keypoints.
    keypoint_names : list of str
        K names, empty without keypoints.
    body_length : np.ndarray or None
        (T, S) float32 pixels (front-to-back keypoints, blob major axis, FlyTracker major axis).
    interpolated : np.ndarray
        (T, S) bool, True where a gap was filled by :func:`interpolate_gaps`.
    source : str
        The file the tracks were read from (or the video the tracker ran on).
    format : str
        The reader that produced them (``"sleap"``, ``"dlc"``, ``"csv"``, ``"tracker"``...).
    frame_size : (int, int) or None
        (height, width) of the video when the file states it.
    n_frames_known : bool
        True when the file states the video's frame count (then ``n_frames`` must equal the
        video's); False when ``n_frames`` is only the last tracked frame + 1.
    fps : float or None
        Frame rate when the file states it.
    """

    centroids: np.ndarray
    subjects: list[str]
    heading: np.ndarray | None = None
    confidence: np.ndarray | None = None
    boxes: np.ndarray | None = None
    keypoints: np.ndarray | None = None
    keypoint_names: list[str] = field(default_factory=list)
    body_length: np.ndarray | None = None
    interpolated: np.ndarray | None = None
    source: str = ""
    format: str = ""
    frame_size: tuple[int, int] | None = None
    n_frames_known: bool = False
    fps: float | None = None

    def __post_init__(self) -> None:
        where = self.source or "tracks"
        self.centroids = np.asarray(self.centroids, dtype=np.float32)
        if self.centroids.ndim != 3 or self.centroids.shape[2] != 2:
            raise TracksError(f"{where}: centroids must be (frames, subjects, 2), found shape "
                              f"{self.centroids.shape}")
        t, s = self.centroids.shape[:2]
        self.subjects = [str(v) for v in self.subjects]
        if len(self.subjects) != s:
            raise TracksError(f"{where}: {s} subjects in the arrays but {len(self.subjects)} "
                              f"names ({self.subjects})")
        if len(set(self.subjects)) != s:
            raise TracksError(f"{where}: subject names must be unique, found {self.subjects}")
        absent = ~np.isfinite(self.centroids).all(axis=2)
        self.centroids[absent] = np.nan

        def per_frame(value: np.ndarray | None, name: str, tail: tuple[int, ...],
                      fill: float) -> np.ndarray:
            if value is None:
                out = np.full((t, s, *tail), fill, dtype=np.float32)
            else:
                out = np.asarray(value, dtype=np.float32)
                if out.shape[:2] != (t, s) or (tail and out.shape[2:] != tail):
                    expected = (t, s, *tail)
                    raise TracksError(f"{where}: {name} must have shape {expected} like the "
                                      f"centroids, found {out.shape}")
            return out

        self.heading = per_frame(self.heading, "heading", (), np.nan)
        self.confidence = per_frame(self.confidence, "confidence", (), 1.0)
        self.heading[absent] = np.nan
        self.confidence[absent] = np.nan
        if self.boxes is not None:
            self.boxes = per_frame(self.boxes, "boxes", (4,), np.nan)
            self.boxes[absent] = np.nan
        if self.body_length is not None:
            self.body_length = per_frame(self.body_length, "body_length", (), np.nan)
            self.body_length[absent] = np.nan
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
            if self.keypoints.ndim != 4 or self.keypoints.shape[:2] != (t, s) or \
                    self.keypoints.shape[3] != 2:
                raise TracksError(f"{where}: keypoints must be ({t}, {s}, K, 2), found shape "
                                  f"{self.keypoints.shape}")
            if len(self.keypoint_names) != self.keypoints.shape[2]:
                raise TracksError(f"{where}: {self.keypoints.shape[2]} keypoints but "
                                  f"{len(self.keypoint_names)} names")
        self.keypoint_names = [str(v) for v in self.keypoint_names]
        if self.interpolated is None:
            self.interpolated = np.zeros((t, s), dtype=bool)
        else:
            self.interpolated = np.asarray(self.interpolated, dtype=bool)

    # -- shape -------------------------------------------------------------------------------
    @property
    def n_frames(self) -> int:
        """Number of frames T (the video's when ``n_frames_known``)."""
        return int(self.centroids.shape[0])

    @property
    def n_subjects(self) -> int:
        """Number of subjects S."""
        return int(self.centroids.shape[1])

    @property
    def present(self) -> np.ndarray:
        """(T, S) bool: True where the subject has a centroid (measured or interpolated)."""
        return np.isfinite(self.centroids[..., 0])

    def _where(self) -> str:
        return self.source or "the tracks"

    # -- subjects ----------------------------------------------------------------------------
    def subject_index(self, subject: str | int) -> int:
        """Index of a subject by name (or a valid index).

        Raises
        ------
        TracksError
            No track has that name; the message lists the subjects of the file.
        """
        if isinstance(subject, (int, np.integer)) and not isinstance(subject, bool):
            if 0 <= int(subject) < self.n_subjects:
                return int(subject)
        elif str(subject) in self.subjects:
            return self.subjects.index(str(subject))
        raise TracksError(
            f"subject {subject!r} matches no track of {self._where()} (its subjects: "
            f"{', '.join(self.subjects) or 'none'}); rename the subject in the labels to one of "
            "these, or load the tracks file of this video.")

    def check_subjects(self, names: Sequence[str], what: str = "the labels") -> None:
        """Raise when any of ``names`` (e.g. the subjects of a label table) matches no track.

        Parameters
        ----------
        names : sequence of str
            Subject names to look up; empty names are ignored.
        what : str
            Where the names come from, for the message (a label file's name).

        Raises
        ------
        TracksError
            Naming every unmatched subject and listing the tracks' subjects.
        """
        unknown = sorted({str(n) for n in names if n not in (None, "")} - set(self.subjects))
        if unknown:
            raise TracksError(
                f"subjects {', '.join(repr(u) for u in unknown)} of {what} match no track of "
                f"{self._where()} (its subjects: {', '.join(self.subjects) or 'none'}); rename "
                "them in the labels (or the tracks CSV's subject column) so that they agree.")

    def select(self, subjects: Sequence[str | int]) -> Tracks:
        """A copy with only ``subjects`` (names or indices), in that order."""
        idx = [self.subject_index(s) for s in subjects]

        def take(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[:, idx].copy()

        return dataclasses.replace(
            self, centroids=take(self.centroids), subjects=[self.subjects[i] for i in idx],
            heading=take(self.heading), confidence=take(self.confidence), boxes=take(self.boxes),
            keypoints=take(self.keypoints), body_length=take(self.body_length),
            interpolated=take(self.interpolated), keypoint_names=list(self.keypoint_names))

    # -- checks ------------------------------------------------------------------------------
    def missing_runs(self, subject: str | int) -> list[tuple[int, int]]:
        """Inclusive ``(first, last)`` frame ranges where ``subject`` is absent."""
        return missing_runs(~self.present[:, self.subject_index(subject)])

    def require_present(self, max_missing: float = 0.5,
                        subjects: Sequence[str] | None = None) -> None:
        """Raise when a subject is absent from more than ``max_missing`` of the frames.

        Parameters
        ----------
        max_missing : float
            Largest allowed fraction of frames without a centroid (after gap filling).
        subjects : sequence of str, optional
            The subjects to check (default: all).

        Raises
        ------
        TracksError
            Naming the subject, how many frames it misses and the first missing ranges.
        """
        for name in subjects if subjects is not None else self.subjects:
            k = self.subject_index(name)
            missing = int((~self.present[:, k]).sum())
            if missing > max_missing * self.n_frames:
                runs = self.missing_runs(k)
                shown = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs[:5])
                more = f" and {len(runs) - 5} more ranges" if len(runs) > 5 else ""
                raise TracksError(
                    f"subject {self.subjects[k]!r} of {self._where()} is absent from {missing} of "
                    f"{self.n_frames} frames ({missing / max(self.n_frames, 1):.0%}; allowed "
                    f"{max_missing:.0%}): frames {shown}{more}. Proofread or re-track it, raise "
                    "max_gap to interpolate longer gaps, or leave this subject out.")

    def check_video(self, n_frames: int, frame_size: tuple[int, int] | None = None,
                    video: str = "the video") -> Tracks:
        """Check that the tracks belong to a video of ``n_frames`` frames of ``frame_size``.

        Parameters
        ----------
        n_frames : int
            The video's frame count.
        frame_size : (int, int), optional
            The video's (height, width).
        video : str
            The video's path, for the message.

        Returns
        -------
        Tracks
            Itself when the frame counts agree; a copy padded with absent frames to
            ``n_frames`` when the file does not state its frame count and ends before the video
            (subjects not tracked to the end).

        Raises
        ------
        TracksError
            The file states another frame count or frame size, tracks frames past the video's
            end, or has centroids outside the frame.
        """
        where = self._where()
        if self.frame_size is not None and frame_size is not None and \
                tuple(self.frame_size) != tuple(frame_size):
            raise TracksError(
                f"{where} is for frames of {self.frame_size[1]}x{self.frame_size[0]} px but "
                f"{video} is {frame_size[1]}x{frame_size[0]}; these tracks belong to another "
                "video (or a resized copy): use the tracks file of this video.")
        if self.n_frames != n_frames and (self.n_frames_known or self.n_frames > n_frames):
            last = self.n_frames - 1
            raise TracksError(
                f"{where} has {self.n_frames} frames (last frame {last}) but {video} has "
                f"{n_frames}; these tracks belong to another video (or a trimmed copy): use the "
                "tracks file of this video.")
        if frame_size is not None:
            h, w = frame_size
            xy = self.centroids[self.present]
            outside = (xy[:, 0] < -0.5) | (xy[:, 0] > w + 0.5) | (xy[:, 1] < -0.5) | \
                (xy[:, 1] > h + 0.5)
            if len(xy) and outside.mean() > 0.01:
                t, s = np.argwhere(self.present)[np.flatnonzero(outside)[0]]
                raise TracksError(
                    f"{where}: {int(outside.sum())} centroids lie outside the {w}x{h} frame of "
                    f"{video}, first at frame {t} subject {self.subjects[s]!r} "
                    f"({self.centroids[t, s, 0]:.1f}, {self.centroids[t, s, 1]:.1f}); these "
                    "tracks belong to another video or another resolution.")
        if self.n_frames < n_frames:
            return self.padded(n_frames)
        return self

    def padded(self, n_frames: int) -> Tracks:
        """A copy extended with absent frames to ``n_frames``."""
        extra = n_frames - self.n_frames
        if extra <= 0:
            return self

        def pad(a: np.ndarray | None, value: float | bool = np.nan) -> np.ndarray | None:
            if a is None:
                return None
            tail = np.full((extra, *a.shape[1:]), value, dtype=a.dtype)
            return np.concatenate([a, tail])

        return dataclasses.replace(
            self, centroids=pad(self.centroids), heading=pad(self.heading),
            confidence=pad(self.confidence), boxes=pad(self.boxes),
            keypoints=pad(self.keypoints), body_length=pad(self.body_length),
            interpolated=pad(self.interpolated, False), keypoint_names=list(self.keypoint_names),
            n_frames_known=True)

    def median_body_length(self) -> np.ndarray:
        """(S,) median body length in pixels per subject (NaN when unknown)."""
        if self.body_length is None:
            return np.full(self.n_subjects, np.nan, dtype=np.float32)
        out = np.full(self.n_subjects, np.nan, dtype=np.float32)
        for k in range(self.n_subjects):
            values = self.body_length[:, k]
            values = values[np.isfinite(values)]
            if len(values):
                out[k] = np.median(values)
        return out


def missing_runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """Inclusive ``(first, last)`` index ranges of the True runs of a 1-D bool array."""
    missing = np.asarray(missing, dtype=bool)
    if not missing.any():
        return []
    edges = np.diff(np.concatenate([[0], missing.astype(np.int8), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends, strict=True)]


def _fillable(missing: np.ndarray, max_gap: int) -> np.ndarray:
    """(T,) bool: frames of interior missing runs no longer than ``max_gap``."""
    out = np.zeros_like(missing, dtype=bool)
    n = len(missing)
    for a, b in missing_runs(missing):
        if a > 0 and b < n - 1 and b - a + 1 <= max_gap:
            out[a:b + 1] = True
    return out


def _fill(values: np.ndarray, fill: np.ndarray, angular: bool = False) -> None:
    """Linearly interpolate ``values`` (T, ...) in place at the frames ``fill`` from the others.

    Each trailing component is interpolated alone, from its own finite frames.
    """
    if not fill.any():
        return
    t = np.arange(len(values))
    flat = values.reshape(len(values), -1)
    for j in range(flat.shape[1]):
        column = flat[:, j]
        known = np.isfinite(column)
        if known.sum() < 2:
            continue
        series = np.unwrap(column[known]) if angular else column[known]
        target = fill & ~known
        filled = np.interp(t[target], t[known], series)
        column[target] = _wrap(filled) if angular else filled


def interpolate_gaps(tracks: Tracks, max_gap: int = 5) -> Tracks:
    """Fill gaps of up to ``max_gap`` frames by linear interpolation; longer gaps stay masked.

    A gap is a run of absent frames between two present ones (gaps at the start or the end are
    never filled). Centroids, boxes, keypoints (each keypoint over its own gaps), body lengths and
    headings (on the circle) are interpolated; filled frames are flagged in ``interpolated`` and
    take the lower confidence of the two frames around the gap.

    Parameters
    ----------
    tracks : Tracks
        The tracks to fill (not modified).
    max_gap : int
        Longest gap to fill, in frames (0 fills nothing).

    Returns
    -------
    Tracks
        A filled copy.
    """
    if max_gap < 0:
        raise TracksError(f"max_gap must be >= 0 frames, found {max_gap}")
    out = dataclasses.replace(
        tracks, centroids=tracks.centroids.copy(), heading=tracks.heading.copy(),
        confidence=tracks.confidence.copy(),
        boxes=None if tracks.boxes is None else tracks.boxes.copy(),
        keypoints=None if tracks.keypoints is None else tracks.keypoints.copy(),
        body_length=None if tracks.body_length is None else tracks.body_length.copy(),
        interpolated=tracks.interpolated.copy(), keypoint_names=list(tracks.keypoint_names))
    if max_gap == 0:
        return out
    for k in range(out.n_subjects):
        missing = ~tracks.present[:, k]
        fill = _fillable(missing, max_gap)
        if fill.any():
            _fill(out.centroids[:, k], fill)
            _fill(out.heading[:, k], fill, angular=True)
            if out.boxes is not None:
                _fill(out.boxes[:, k], fill)
            if out.body_length is not None:
                _fill(out.body_length[:, k], fill)
            for a, b in missing_runs(fill):
                out.confidence[a:b + 1, k] = np.nanmin(
                    [tracks.confidence[a - 1, k], tracks.confidence[b + 1, k]])
            out.interpolated[fill, k] = True
        if out.keypoints is not None:
            for j in range(out.keypoints.shape[2]):
                kp_missing = ~np.isfinite(tracks.keypoints[:, k, j, 0])
                _fill(out.keypoints[:, k, j], _fillable(kp_missing, max_gap))
    n_filled = int(out.interpolated.sum() - tracks.interpolated.sum())
    if n_filled:
        logger.info("%s: interpolated %d subject-frames in gaps of <= %d frames",
                    tracks.source or "tracks", n_filled, max_gap)
    return out


def from_keypoints(
    keypoints: np.ndarray,
    subjects: Sequence[str],
    keypoint_names: Sequence[str],
    keypoint_confidence: np.ndarray | None = None,
    *,
    heading_keypoints: tuple[str, str] | None = None,
    **fields: object,
) -> Tracks:
    """Tracks from pose keypoints: centroid = mean of the keypoints found, heading and body
    length from a front and a back keypoint.

    Parameters
    ----------
    keypoints : np.ndarray
        (T, S, K, 2) float x, y; NaN for keypoints not found.
    subjects, keypoint_names : sequence of str
        S subject names and K keypoint names.
    keypoint_confidence : np.ndarray, optional
        (T, S, K) scores; NaN scores of found keypoints (user-labelled SLEAP instances) count as 1.
    heading_keypoints : (str, str), optional
        (front, back) keypoint names for the heading; default: the first of
        :data:`FRONT_KEYPOINTS` / :data:`BACK_KEYPOINTS` found in the names (e.g. nose and tail
        base, or head and abdomen). Without both, the heading is NaN.
    **fields
        Other :class:`Tracks` fields (source, format, frame_size, n_frames_known, fps).

    Returns
    -------
    Tracks
    """
    kp = np.asarray(keypoints, dtype=np.float32)
    names = [str(n) for n in keypoint_names]
    if kp.ndim != 4 or kp.shape[3] != 2 or kp.shape[2] != len(names):
        raise TracksError(f"{fields.get('source', 'keypoints')}: keypoints must be "
                          f"(frames, subjects, {len(names)}, 2), found shape {kp.shape}")
    kp = np.where(np.isfinite(kp).all(axis=3, keepdims=True), kp, np.nan)
    found = np.isfinite(kp[..., 0])
    centroids = np.stack([_nanmean(kp[..., 0], 2), _nanmean(kp[..., 1], 2)], axis=-1)
    if keypoint_confidence is None:
        confidence = np.where(found.any(axis=2), 1.0, np.nan)
    else:
        scores = np.asarray(keypoint_confidence, dtype=np.float32)
        scores = np.where(found & ~np.isfinite(scores), 1.0, scores)
        confidence = _nanmean(np.where(found, scores, np.nan), 2)
    if heading_keypoints is not None:
        missing = [n for n in heading_keypoints if n not in names]
        if missing:
            raise TracksError(f"{fields.get('source', 'keypoints')}: heading keypoints {missing} "
                              f"are not among the keypoints {names}")
        front, back = (names.index(n) for n in heading_keypoints)
    else:
        front = _pick_keypoint(names, FRONT_KEYPOINTS)
        back = _pick_keypoint(names, BACK_KEYPOINTS)
    heading = body_length = None
    if front is not None and back is not None and front != back:
        d = kp[:, :, front] - kp[:, :, back]
        heading = _wrap(np.arctan2(d[..., 1], d[..., 0]))
        body_length = np.hypot(d[..., 0], d[..., 1])
    return Tracks(centroids=centroids, subjects=list(subjects), heading=heading,
                  confidence=confidence, keypoints=kp, keypoint_names=names,
                  body_length=body_length, **fields)


def from_boxes(
    boxes: np.ndarray,
    subjects: Sequence[str],
    confidence: np.ndarray | None = None,
    **fields: object,
) -> Tracks:
    """Tracks from boxes: centroid = box centre, body length = the box's longer side.

    Parameters
    ----------
    boxes : np.ndarray
        (T, S, 4) float ``x0, y0, x1, y1``; NaN where absent.
    subjects : sequence of str
        S subject names.
    confidence : np.ndarray, optional
        (T, S) scores (default 1 where present).
    **fields
        Other :class:`Tracks` fields (heading, source, format, frame_size, ...).

    Returns
    -------
    Tracks
    """
    b = np.asarray(boxes, dtype=np.float32)
    if b.ndim != 3 or b.shape[2] != 4:
        raise TracksError(f"{fields.get('source', 'boxes')}: boxes must be (frames, subjects, 4), "
                          f"found shape {b.shape}")
    centroids = np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2], axis=-1)
    body_length = np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1])
    return Tracks(centroids=centroids, subjects=list(subjects), boxes=b, confidence=confidence,
                  body_length=body_length, **fields)
