"""A built-in tracker for labs without one: a fixed camera over an arena, a known number of animals.

1. Background: from frames sampled evenly over the whole video, per pixel the 90th percentile
   for animals darker than the floor, the 10th for lighter ones, the median when they may be
   either (animals that move vanish from it; one that sits still in more than 90% (median: 50%)
   of the samples becomes background).
2. Foreground: the frame's difference to the background (darker, lighter, or either, detected
   from the samples), smoothed, above a threshold (from the noise and the animals' contrast in
   the samples), opened; its connected components (``scipy.ndimage.label``) of at least
   ``min_area`` pixels are the blobs.
3. Assignment over time: the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on
   the distance between each animal's predicted position (constant velocity) and the blobs.
   A blob large enough for several animals that were assigned to it (touching animals) is split
   by k-means on its pixels, started at the animals' predicted positions.
4. Per animal: centroid, box, body length (4 sqrt of the largest eigenvalue of the blob's
   second moments: the major axis of the ellipse of equal moments) and heading from the moments'
   major axis, the head/tail ambiguity resolved over the whole track (dynamic programming that
   prefers forward motion and smooth turns).

The result is a :class:`~prism_science.tracks.core.Tracks` written as the plain tracks CSV
(``prism-science track VIDEO --n-animals N``), which users can inspect and correct.
Coordinates are full-resolution pixels with pixel centres at integers (OpenCV/DeepLabCut).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from prism_science.errors import TrackerError, TracksError
from prism_science.tracks.core import Tracks, interpolate_gaps, missing_runs
from prism_science.video import open_video

__all__ = ["TrackerConfig", "TrackingResult", "track_video"]

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrackerConfig:
    """Parameters of :func:`track_video`; None means "estimate from the video".

    Attributes
    ----------
    threshold : float or None
        Foreground threshold on the difference to the background, in 0-255 grey levels.
    min_area : float or None
        Smallest blob, in full-resolution pixels.
    polarity : str
        ``"auto"``, ``"dark"`` (animals darker than the floor), ``"light"`` or ``"both"``.
    max_side : int
        Frames are processed downscaled so that their longer side is at most this (speed).
    n_background : int
        Frames sampled for the background.
    max_missing : float
        Largest fraction of frames in which fewer than N animals may be found before tracking
        fails with the list of those frames.
    max_gap : int
        Gaps up to this many frames are interpolated in the result.
    chunk_size : int
        Frames decoded at once.
    """

    threshold: float | None = None
    min_area: float | None = None
    polarity: str = "auto"
    max_side: int = 512
    n_background: int = 50
    max_missing: float = 0.1
    max_gap: int = 5
    chunk_size: int = 32

    def __post_init__(self) -> None:
        if self.polarity not in ("auto", "dark", "light", "both"):
            raise TracksError(f"polarity must be auto, dark, light or both, found "
                              f"{self.polarity!r}")
        if self.threshold is not None and not self.threshold > 0:
            raise TracksError(f"threshold must be > 0 grey levels, found {self.threshold}")
        if self.min_area is not None and not self.min_area > 0:
            raise TracksError(f"min_area must be > 0 pixels, found {self.min_area}")
        if self.max_side < 32 or self.n_background < 3:
            raise TracksError("max_side must be >= 32 and n_background >= 3, found "
                              f"{self.max_side} and {self.n_background}")
        if not 0 <= self.max_missing <= 1:
            raise TracksError(f"max_missing must be a fraction in [0, 1], found {self.max_missing}")


@dataclass
class TrackingResult:
    """What :func:`track_video` found.

    Attributes
    ----------
    tracks : Tracks
        The animals' tracks (subjects ``animal0``... in order of x at the first frame).
    background : np.ndarray
        (h, w) float32 background at processing resolution.
    threshold, min_area : float
        The values used (full-resolution pixels for the area).
    polarity : str
        ``"dark"``, ``"light"`` or ``"both"``.
    scale : float
        Processing resolution / full resolution.
    short_frames : np.ndarray
        Indices of the frames where fewer than N animals were found.
    split_frames : int
        Frames in which touching animals were separated by splitting a blob.
    """

    tracks: Tracks
    background: np.ndarray
    threshold: float
    min_area: float
    polarity: str
    scale: float
    short_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    split_frames: int = 0


def _gray(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) float32 grey, the channels' mean (a uint16 sum is fast)."""
    return frames.sum(axis=-1, dtype=np.uint16).astype(np.float32) * np.float32(1 / 3)


def _signal(gray: np.ndarray, background: np.ndarray, polarity: str) -> np.ndarray:
    diff = gray - background
    if polarity == "dark":
        return -diff
    if polarity == "light":
        return diff
    return np.abs(diff)


def _smooth(signal: np.ndarray) -> np.ndarray:
    return ndimage.uniform_filter(signal, size=3)


@dataclass
class _Blob:
    x: float
    y: float
    area: float
    cov: np.ndarray  # (2, 2) second central moments (x, y)
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 (pixel edges)
    pixels: np.ndarray  # (n, 2) x, y


def _measure(xs: np.ndarray, ys: np.ndarray) -> _Blob:
    x, y = float(xs.mean()), float(ys.mean())
    dx, dy = xs - x, ys - y
    cov = np.array([[np.mean(dx * dx), np.mean(dx * dy)], [np.mean(dx * dy), np.mean(dy * dy)]])
    box = (float(xs.min()), float(ys.min()), float(xs.max()) + 1.0, float(ys.max()) + 1.0)
    return _Blob(x, y, float(len(xs)), cov, box, np.stack([xs, ys], axis=1))


def _blobs(mask: np.ndarray, min_area: float) -> list[_Blob]:
    """Connected components of ``mask`` of at least ``min_area`` pixels after an opening (which
    cuts thin bridges such as touching legs). The opening runs only around components big enough
    to matter: a whole-frame opening costs more than everything else here."""
    labels, n = ndimage.label(mask)
    if n == 0:
        return []
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None or areas[i] < min_area:
            continue
        sub, m = ndimage.label(ndimage.binary_opening(labels[sl] == i))
        sub_areas = np.bincount(sub.ravel(), minlength=m + 1)
        for j in range(1, m + 1):
            if sub_areas[j] < min_area:
                continue
            ys, xs = np.nonzero(sub == j)
            out.append(_measure((xs + sl[1].start).astype(np.float32),
                                (ys + sl[0].start).astype(np.float32)))
    return out


def _split(blob: _Blob, seeds: np.ndarray, iterations: int = 8) -> list[_Blob]:
    """k-means of the blob's pixels into ``len(seeds)`` parts, started at ``seeds`` (k, 2)."""
    centres = seeds.astype(np.float32).copy()
    pts = blob.pixels
    assign = np.zeros(len(pts), dtype=np.int64)
    for _ in range(iterations):
        d = ((pts[:, None, :] - centres[None]) ** 2).sum(axis=2)
        assign = d.argmin(axis=1)
        for j in range(len(centres)):
            if (assign == j).any():
                centres[j] = pts[assign == j].mean(axis=0)
    parts = []
    for j in range(len(centres)):
        sel = pts[assign == j]
        if len(sel) == 0:
            sel = centres[j][None]
        parts.append(_measure(sel[:, 0], sel[:, 1]))
    return parts


def _ellipse(blob: _Blob) -> tuple[float, float, float]:
    """(axis angle in image coordinates, major axis length, skewness along the axis) of the
    blob's equal-moment ellipse; the skewness tells which end carries more of the body."""
    evals, evecs = np.linalg.eigh(blob.cov)
    major = evecs[:, 1]
    u = (blob.pixels[:, 0] - blob.x) * major[0] + (blob.pixels[:, 1] - blob.y) * major[1]
    spread = float(np.mean(u * u))
    skew = float(np.mean(u ** 3)) / spread ** 1.5 if spread > 0 else 0.0
    return (math.atan2(major[1], major[0]), 4.0 * math.sqrt(max(float(evals[1]), 0.0)), skew)


def _viterbi(choices: np.ndarray, emission: np.ndarray) -> np.ndarray:
    """Index (0 or 1) per row of ``choices`` (n, 2) minimising emission + turning costs."""
    cost = emission[0].copy()
    back = np.zeros((len(choices), 2), dtype=np.int64)
    for i in range(1, len(choices)):
        turn = 1.0 - np.cos(choices[i][None, :] - choices[i - 1][:, None])  # (prev, cur)
        total = cost[:, None] + 2.0 * turn
        back[i] = total.argmin(axis=0)
        cost = total.min(axis=0) + emission[i]
    state = int(cost.argmin())
    out = np.zeros(len(choices), dtype=np.int64)
    for i in range(len(choices) - 1, -1, -1):
        out[i] = state
        state = int(back[i, state])
    return out


def _resolve_heading(axis: np.ndarray, centroids: np.ndarray, body_length: float,
                     skew: np.ndarray | None = None) -> np.ndarray:
    """Head direction from a 180-degree-ambiguous axis angle (T,).

    Dynamic programming over the two choices per frame, scoring smooth turns and forward motion
    (as Ctrax does). When the blobs' skewness along the axis agrees with the motion-based heads
    in most fast frames (one end of this species' silhouette is heavier), it is calibrated on
    them and added as evidence for the frames where the animal is still.
    """
    t_count = len(axis)
    out = np.full(t_count, np.nan, dtype=np.float32)
    valid = np.flatnonzero(np.isfinite(axis) & np.isfinite(centroids[:, 0]))
    if len(valid) == 0:
        return out
    # motion over +-2 frames, as a fraction of a body length per frame
    c = centroids[valid]
    velocity = np.zeros_like(c)
    if len(valid) > 1:
        ahead = np.minimum(np.arange(len(valid)) + 2, len(valid) - 1)
        behind = np.maximum(np.arange(len(valid)) - 2, 0)
        span = np.maximum(valid[ahead] - valid[behind], 1)[:, None]
        velocity = (c[ahead] - c[behind]) / span
    speed = np.hypot(velocity[:, 0], velocity[:, 1])
    motion = np.arctan2(velocity[:, 1], velocity[:, 0])
    weight = np.clip(speed / max(0.05 * body_length, 1e-6), 0.0, 1.0)
    choices = np.stack([axis[valid], axis[valid] + np.pi], axis=1)  # (n, 2)
    emission = weight[:, None] * (1.0 - np.cos(choices - motion[:, None]))
    state = _viterbi(choices, emission)
    if skew is not None:
        sk = np.nan_to_num(skew[valid])
        fast = (weight >= 0.99) & (np.abs(sk) > 0.05)
        if fast.sum() >= 20:
            # head at the +axis end (state 0) with positive skew: agreement in fast frames
            agree = float(np.mean((sk[fast] > 0) == (state[fast] == 0)))
            if abs(agree - 0.5) > 0.25:
                sign = 1.0 if agree > 0.5 else -1.0
                strength = np.clip(np.abs(sk) / 0.3, 0.0, 1.0) * abs(agree - 0.5) * 2
                head_plus = (sign * sk) > 0
                skew_cost = np.stack([np.where(head_plus, 0.0, strength),
                                      np.where(head_plus, strength, 0.0)], axis=1)
                state = _viterbi(choices, emission + 0.5 * skew_cost)
    out[valid] = choices[np.arange(len(valid)), state]
    return ((out + np.pi) % (2 * np.pi) - np.pi).astype(np.float32)


def _ranges(frames: np.ndarray, limit: int = 6) -> str:
    mask = np.zeros(int(frames.max()) + 1 if len(frames) else 0, dtype=bool)
    mask[frames] = True
    runs = missing_runs(mask)
    text = ", ".join(f"{a}-{b}" if a != b else f"{a}" for a, b in runs[:limit])
    return text + (f" and {len(runs) - limit} more ranges" if len(runs) > limit else "")


def _polarity(samples: np.ndarray) -> str:
    """Animals darker or lighter than the floor: the floor is most of the frame, the animals are
    the far tail of the grey levels on one side."""
    median = float(np.median(samples))
    dark = median - float(np.median([np.percentile(s, 0.05) for s in samples]))
    light = float(np.median([np.percentile(s, 99.95) for s in samples])) - median
    return "dark" if dark > 2 * light else "light" if light > 2 * dark else "both"


def _background(samples: np.ndarray, polarity: str) -> np.ndarray:
    """Per-pixel background. For light animals the 10th percentile of the samples (the floor
    shows through there unless an animal covers the pixel in 90% of them), for dark animals the
    90th; the median when animals may be either."""
    q = {"light": 10, "dark": 90}.get(polarity, 50)
    return np.percentile(samples, q, axis=0).astype(np.float32)


def _estimate(samples: np.ndarray, background: np.ndarray, n_animals: int,
              polarity: str, config: TrackerConfig) -> tuple[float, float]:
    """Threshold and the typical animal area (processing pixels) from sample frames."""
    signal = np.stack([_smooth(_signal(s, background, polarity)) for s in samples])
    if config.threshold is not None:
        threshold = float(config.threshold)
    else:
        noise = 1.4826 * float(np.median(np.abs(signal - np.median(signal))))
        contrast = float(np.median(signal.reshape(len(signal), -1).max(axis=1)))
        threshold = max(4.0 * noise, 0.3 * contrast, 4.0)
    areas = []
    for s in signal:
        mask = ndimage.binary_opening(s > threshold)
        labels, n = ndimage.label(mask)
        if n:
            sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
            areas.extend(sizes[:n_animals].tolist())
    typical = float(np.median(areas)) if areas else 0.0
    return threshold, typical


def track_video(
    path: str | os.PathLike[str],
    n_animals: int,
    config: TrackerConfig | None = None,
    *,
    stop: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> TrackingResult:
    """Track ``n_animals`` animals in a fixed-camera video.

    Parameters
    ----------
    path : str or PathLike
        The video (any file :func:`prism_science.video.open_video` reads).
    n_animals : int
        How many animals are in the arena for the whole video.
    config : TrackerConfig, optional
        Thresholds and sizes (estimated from the video when left None).
    stop : int, optional
        Track only the frames before this one (default: the whole video); the background is
        still sampled from the whole video.
    progress : callable, optional
        Called as ``progress(frames_done, n_frames)`` after each chunk.

    Returns
    -------
    TrackingResult
        ``.tracks`` holds (T, n_animals) centroids, boxes, heading, body length and
        confidence (1: a blob of its own, 0.5: split from touching animals, NaN: not found),
        with gaps up to ``config.max_gap`` frames interpolated.

    Raises
    ------
    TrackerError
        No frame shows ``n_animals`` separate animals, or more than ``config.max_missing`` of
        the frames show fewer; the message lists those frames and suggests parameters.
    VideoError
        The video cannot be read.
    """
    cfg = config or TrackerConfig()
    if n_animals < 1:
        raise TrackerError(f"--n-animals must be >= 1, found {n_animals}")
    path = Path(path)
    with open_video(path) as reader:
        info = reader.info
        height, width = info.height, info.width
        n_frames = info.n_frames if stop is None else max(1, min(int(stop), info.n_frames))
        scale = min(1.0, cfg.max_side / max(height, width))
        size = (max(8, round(height * scale)), max(8, round(width * scale)))
        sy, sx = size[0] / height, size[1] / width
        # the background comes from the whole video even when tracking stops early
        sample_idx = np.unique(np.linspace(0, info.n_frames - 1,
                                           min(cfg.n_background, info.n_frames))
                               .round().astype(int))
        samples = _gray(reader.get_frames(sample_idx.tolist(), size=size))
        polarity = _polarity(samples) if cfg.polarity == "auto" else cfg.polarity
        background = _background(samples, polarity)
        threshold, typical = _estimate(samples, background, n_animals, polarity, cfg)
        area_scale = sx * sy
        if cfg.min_area is not None:
            min_area = cfg.min_area * area_scale
        else:
            min_area = max(4.0, 0.15 * typical)
        if typical <= 0:
            typical = max(min_area, 1.0)
        logger.info("%s: tracking %d animals at %dx%d, polarity %s, threshold %.1f, min area "
                    "%.0f px (typical animal %.0f px at processing scale)", path, n_animals,
                    size[1], size[0], polarity, threshold, min_area / area_scale, typical)

        centroids = np.full((n_frames, n_animals, 2), np.nan, dtype=np.float32)
        boxes = np.full((n_frames, n_animals, 4), np.nan, dtype=np.float32)
        axis = np.full((n_frames, n_animals), np.nan, dtype=np.float32)
        skew = np.full((n_frames, n_animals), np.nan, dtype=np.float32)
        length = np.full((n_frames, n_animals), np.nan, dtype=np.float32)
        confidence = np.full((n_frames, n_animals), np.nan, dtype=np.float32)
        short: list[int] = []
        split_frames = 0
        position: np.ndarray | None = None  # (N, 2) last positions
        velocity = np.zeros((n_animals, 2), dtype=np.float32)
        for start, chunk in reader.iter_chunks(cfg.chunk_size, stop=n_frames, size=size):
            for offset, frame in enumerate(_gray(chunk)):
                t = start + offset
                signal = _smooth(_signal(frame, background, polarity))
                blobs = _blobs(signal > threshold, min_area)
                if position is None:
                    first = _initial(blobs, n_animals, typical)
                    if first is None:
                        short.append(t)
                        continue
                    position = np.array([[b.x, b.y] for b in first], dtype=np.float32)
                predicted = position + velocity
                found, was_split = _assign(blobs, predicted, typical)
                split_frames += was_split
                if any(b is None for b, _ in found):
                    short.append(t)
                for k, (blob, conf) in enumerate(found):
                    if blob is None:
                        continue
                    new = np.array([blob.x, blob.y], dtype=np.float32)
                    velocity[k] = 0.5 * velocity[k] + 0.5 * (new - position[k])
                    position[k] = new
                    centroids[t, k] = new
                    boxes[t, k] = blob.box
                    axis[t, k], length[t, k], skew[t, k] = _ellipse(blob)
                    confidence[t, k] = conf
                # animals not found keep their predicted course for the next frame
            if progress is not None:
                progress(min(start + len(chunk), n_frames), n_frames)

    short_frames = np.asarray(short, dtype=np.int64)
    advice = (f"Try a lower --threshold (used {threshold:.1f} grey levels) or --min-area (used "
              f"{min_area / area_scale:.0f} px), --polarity dark|light, or check --n-animals "
              f"{n_animals}; an animal that stays still for most of the video becomes part of the "
              "background.")
    if position is None:
        raise TrackerError(f"{path}: no frame shows {n_animals} separate animals (at most "
                           f"{_max_blobs(samples, background, polarity, threshold, min_area)} "
                           f"in the sampled frames). {advice}")
    if len(short_frames) > cfg.max_missing * n_frames:
        raise TrackerError(
            f"{path}: fewer than {n_animals} animals found in {len(short_frames)} of {n_frames} "
            f"frames ({len(short_frames) / n_frames:.0%}, allowed {cfg.max_missing:.0%}): frames "
            f"{_ranges(short_frames)}. {advice}")
    if len(short_frames):
        logger.warning("%s: fewer than %d animals in %d frames (%s); those gaps are interpolated "
                       "up to %d frames, longer ones left empty", path, n_animals,
                       len(short_frames), _ranges(short_frames), cfg.max_gap)

    # back to full-resolution coordinates (pixel centres at integers)
    centroids[..., 0] = (centroids[..., 0] + 0.5) / sx - 0.5
    centroids[..., 1] = (centroids[..., 1] + 0.5) / sy - 0.5
    boxes[..., [0, 2]] /= sx
    boxes[..., [1, 3]] /= sy
    # the box of the CSV is centred on the centroid: keep the blob's size, centred
    half_w = (boxes[..., 2] - boxes[..., 0]) / 2
    half_h = (boxes[..., 3] - boxes[..., 1]) / 2
    boxes = np.stack([centroids[..., 0] - half_w, centroids[..., 1] - half_h,
                      centroids[..., 0] + half_w, centroids[..., 1] + half_h], axis=-1)
    # moments are measured on a (possibly anisotropic) resized grid; angles and lengths are
    # taken there, scaled back by the mean factor
    length = length / math.sqrt(sx * sy)
    heading = np.full_like(axis, np.nan)
    for k in range(n_animals):
        body = float(np.nanmedian(length[:, k])) if np.isfinite(length[:, k]).any() else 1.0
        heading[:, k] = _resolve_heading(axis[:, k], centroids[:, k], body,
                                         skew[:, k])
    tracks = Tracks(centroids=centroids, subjects=[f"animal{k}" for k in range(n_animals)],
                    heading=heading, confidence=confidence, boxes=boxes, body_length=length,
                    source=str(path), format="tracker", frame_size=(height, width),
                    n_frames_known=n_frames == info.n_frames,
                    fps=float(info.fps) if info.fps else None)
    tracks = interpolate_gaps(tracks, cfg.max_gap)
    return TrackingResult(tracks=tracks, background=background, threshold=threshold,
                          min_area=min_area / area_scale, polarity=polarity, scale=scale,
                          short_frames=short_frames, split_frames=split_frames)


def _max_blobs(samples: np.ndarray, background: np.ndarray, polarity: str, threshold: float,
               min_area: float) -> int:
    return max((len(_blobs(_smooth(_signal(s, background, polarity)) > threshold, min_area))
                for s in samples), default=0)


def _capacity(blob: _Blob, typical: float) -> int:
    """How many animals a blob can hold, from its area (1.25 typical areas count as two:
    touching animals overlap)."""
    return max(1, math.floor(blob.area / max(typical, 1.0) + 0.75))


def _initial(blobs: list[_Blob], n: int, typical: float) -> list[_Blob] | None:
    """The first frame's ``n`` animals, ordered by x then y: the ``n`` largest blobs, or blobs
    big enough for several animals split by k-means (seeds spread by farthest-point sampling);
    None when the blobs cannot hold ``n`` animals."""
    blobs = sorted(blobs, key=lambda b: -b.area)
    if len(blobs) < n:
        if sum(_capacity(b, typical) for b in blobs) < n:
            return None
        parts: list[_Blob] = []
        extra = n - len(blobs)
        for blob in blobs:
            k = min(_capacity(blob, typical), 1 + extra)
            extra -= k - 1
            if k == 1:
                parts.append(blob)
                continue
            pts = blob.pixels
            seeds = [pts[np.argmax(((pts - [blob.x, blob.y]) ** 2).sum(axis=1))]]
            while len(seeds) < k:
                d = np.min([((pts - s) ** 2).sum(axis=1) for s in seeds], axis=0)
                seeds.append(pts[np.argmax(d)])
            parts.extend(_split(blob, np.array(seeds)))
        blobs = parts
    return sorted(blobs[:n], key=lambda b: (b.x, b.y))


def _assign(blobs: list[_Blob], predicted: np.ndarray,
            typical: float) -> tuple[list[tuple[_Blob | None, float]], bool]:
    """One detection (or None) per animal, with its confidence; and whether a blob was split."""
    n = len(predicted)
    found: list[tuple[_Blob | None, float]] = [(None, math.nan)] * n
    if not blobs:
        return found, False
    centres = np.array([[b.x, b.y] for b in blobs], dtype=np.float32)
    cost = np.hypot(*(predicted[:, None, :] - centres[None]).transpose(2, 0, 1))  # (n, m)
    rows, cols = linear_sum_assignment(cost)
    owner: dict[int, list[int]] = {}
    for r, c in zip(rows, cols, strict=True):
        owner.setdefault(int(c), []).append(int(r))
    if len(blobs) < n:
        # touching animals: the animals left over go to the nearest blob that has room for them
        capacity = [_capacity(b, typical) for b in blobs]
        for r in (r for r in range(n) if r not in rows):
            for c in np.argsort(cost[r]):
                if len(owner.get(int(c), [])) < capacity[c]:
                    owner.setdefault(int(c), []).append(r)
                    break
    was_split = False
    for c, animals in owner.items():
        if len(animals) == 1:
            found[animals[0]] = (blobs[c], 1.0)
            continue
        was_split = True
        parts = _split(blobs[c], predicted[animals])
        part_centres = np.array([[p.x, p.y] for p in parts], dtype=np.float32)
        sub = np.hypot(*(predicted[animals][:, None, :] - part_centres[None]).transpose(2, 0, 1))
        for r, c2 in zip(*linear_sum_assignment(sub), strict=True):
            found[animals[r]] = (parts[c2], 0.5)
    return found, was_split
