"""Animal-centred training clips: per-subject crops decoded on demand, never cached whole.

A *crop manifest* (JSONL or CSV, like the video-text manifests of :mod:`prism_training.data`)
names videos and their tracks; each row becomes one training item per subject (and per
``segment_frames`` stretch of a long video)::

    {"path": "rig/day1.mp4", "tracks": "rig/day1.slp"}                    # every subject
    {"path": "rig/day2.mp4", "tracks": "auto", "n_animals": 2}            # built-in tracker
    {"path": "synth_00000.mp4", "tracks": "synth_00000.tracks.csv", "subject": "animal1",
     "caption": "a small grey mouse grooms.", "start_frame": 24, "end_frame": 47}

``tracks: auto`` runs :func:`prism_science.tracks.track_video` once and caches its CSV in the
folder ``<manifest stem>.tracks/`` beside the manifest. Tracks are checked against the video
and smoothed by :func:`prism_science.extraction.subjects.subject_crops`; the per-frame crop
centres and headings of every subject are written once to a small ``.npy`` file of the cache
folder and read back memory-mapped, so a run over an archive keeps no per-frame array in memory.

A sample (:meth:`CropClipSource.get`) picks a window of the item at random, seeks to its first
frame by PTS with :mod:`prism_science.video` (only the window's frames are decoded, and only the
box around the subject's path is converted), and cuts the crops with
:func:`prism_science.extraction.subjects.crop_frames` -- the one crop function of the library --
after drawing the augmentations: scale jitter of the crop side, a shift of the centre, a random
rotation (or heading-up alignment plus a small rotation), and an optional horizontal flip.
Memory per sample is bounded by the window, whatever the video's length.

Determinism: every draw comes from the generator of ``(seed, step, position)`` that
:class:`~prism_training.data.StepBatches` passes in, so a resumed run sees the same batches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prism_science.errors import DataError, TracksError, VideoError
from prism_science.extraction.subjects import crop_frames, subject_crops
from prism_science.tracks import read_tracks, track_video, write_tracks_csv
from prism_science.video import VideoReader, open_video
from prism_training.data import (
    ManifestEntry,
    _frame_range,
    _opt_float,
    _opt_int,
    manifest_rows,
    window_indices,
)

__all__ = [
    "AUTO_TRACKS",
    "ConcatSource",
    "CropClipSource",
    "CropEntry",
    "CropItem",
    "auto_tracks_path",
    "build_crop_source",
    "read_crop_manifest",
]

logger = logging.getLogger(__name__)

AUTO_TRACKS = "auto"
"""``tracks`` value of a crop manifest row that asks for the built-in tracker."""

_TRACK_CACHE_VERSION = 1
_MIN_PRESENT = 0.5  # a segment is kept when its subject is present in at least half its frames


@dataclass(frozen=True)
class CropEntry:
    """One row of a crop manifest.

    Attributes
    ----------
    path : Path
        The video.
    caption : str
        The subject's caption ("" when the row has none; stage 1 needs one).
    tracks : Path or None
        The tracks file; None for the built-in tracker (``tracks: auto``).
    n_animals : int
        Animals the built-in tracker looks for (``tracks: auto`` only).
    subject : str or None
        The subject of the row; None: every subject of the tracks.
    tracks_format : str or None
        Format of the tracks file (default: detected).
    manifest : Path
        The manifest the row came from (the tracker's CSV is cached beside it).
    start_frame, end_frame, start_s, end_s
        Optional range, as in :class:`~prism_training.data.ManifestEntry`.
    """

    path: Path
    caption: str
    tracks: Path | None
    manifest: Path
    n_animals: int = 0
    subject: str | None = None
    tracks_format: str | None = None
    start_frame: int | None = None
    end_frame: int | None = None
    start_s: float | None = None
    end_s: float | None = None


def read_crop_manifest(path: str | os.PathLike[str],
                       require_caption: bool = False) -> list[CropEntry]:
    """Read a crop manifest: ``path, tracks[, subject, caption, n_animals, start, end...]``.

    Parameters
    ----------
    path : str or PathLike
        ``.jsonl`` or ``.csv`` (header row). Columns: ``path`` (video) and ``tracks`` (a tracks
        file of any format :func:`prism_science.tracks.read_tracks` reads, or ``auto`` with
        ``n_animals``), relative to the manifest's folder; optional ``subject`` (default every
        subject), ``caption``, ``tracks_format``, ``start``/``end`` (seconds) or
        ``start_frame``/``end_frame`` (inclusive).
    require_caption : bool
        Refuse rows without a caption (video-text training, stage 1).

    Returns
    -------
    list of CropEntry

    Raises
    ------
    DataError
        The manifest is missing or malformed, a row lacks ``path`` or ``tracks``, ``auto``
        without a positive ``n_animals``, or a missing caption when required; the message
        names the file and line.
    """
    path = Path(path)
    entries = []
    for lineno, row in manifest_rows(path):
        where = f"crop manifest {path} line {lineno}"
        video = str(row.get("path") or "").strip()
        tracks = str(row.get("tracks") or "").strip()
        if not video:
            raise DataError(f"{where}: the 'path' field (the video) is missing or empty")
        if not tracks:
            raise DataError(f"{where} ({video}): the 'tracks' field is missing; give the video's "
                            "tracks file, or 'auto' with n_animals to run the built-in tracker")
        caption = str(row.get("caption") or "").strip()
        if require_caption and not caption:
            raise DataError(f"{where} ({video}): the caption is empty; video-text training "
                            "needs a caption for every row -- fill it in or remove the row")
        try:
            n_animals = _opt_int(row.get("n_animals")) or 0
            start_frame, end_frame = (_opt_int(row.get("start_frame")),
                                      _opt_int(row.get("end_frame")))
            start_s, end_s = _opt_float(row.get("start")), _opt_float(row.get("end"))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: n_animals/start/end must be numbers ({exc})") from None
        auto = tracks.lower() == AUTO_TRACKS
        if auto and n_animals < 1:
            raise DataError(f"{where} ({video}): tracks 'auto' needs n_animals >= 1 (how many "
                            "animals the built-in tracker looks for)")
        subject = str(row.get("subject") or "").strip() or None
        entries.append(CropEntry(
            path=_relative_to(Path(video), path), caption=caption,
            tracks=None if auto else _relative_to(Path(tracks), path), manifest=path,
            n_animals=n_animals, subject=subject,
            tracks_format=str(row.get("tracks_format") or "").strip() or None,
            start_frame=start_frame, end_frame=end_frame, start_s=start_s, end_s=end_s))
    return entries


def _relative_to(file: Path, manifest: Path) -> Path:
    return file if file.is_absolute() else manifest.parent / file


def _file_key(*paths: Path, extra: str = "") -> str:
    parts = [extra]
    for p in paths:
        stat = p.stat()
        parts.append(f"{p.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def auto_tracks_path(entry: CropEntry) -> Path:
    """Where the built-in tracker's CSV of ``entry``'s video is cached: the folder
    ``<manifest stem>.tracks/`` beside the manifest, keyed by the video's path, size and mtime
    and the number of animals."""
    folder = entry.manifest.parent / f"{entry.manifest.stem}.tracks"
    key = _file_key(entry.path, extra=f"n{entry.n_animals}")
    return folder / f"{entry.path.stem[:40]}-{key}.tracks.csv"


def _load_tracks(entry: CropEntry) -> tuple[Any, Path]:
    """The entry's tracks and the file they came from (running the tracker once for auto)."""
    if entry.tracks is not None:
        if not entry.tracks.is_file():
            raise TracksError(f"{entry.tracks}: no such tracks file (crop manifest "
                              f"{entry.manifest}, video {entry.path})")
        return read_tracks(entry.tracks, entry.tracks_format), entry.tracks
    target = auto_tracks_path(entry)
    if not target.is_file():
        logger.info("tracking %d animals in %s (once; cached as %s)", entry.n_animals,
                    entry.path, target)
        result = track_video(entry.path, entry.n_animals)
        target.parent.mkdir(parents=True, exist_ok=True)
        # DDP ranks may track the same video at once: each writes its own file, then renames.
        mine = target.with_name(f"{target.name}.{os.getpid()}.csv")
        write_tracks_csv(result.tracks, mine, video=str(entry.path))
        os.replace(mine, target)
    return read_tracks(target), target


@dataclass(frozen=True)
class _Video:
    """A video of the source: its size and the cached crop track of each subject."""

    path: Path
    n_frames: int
    height: int
    width: int
    subjects: dict[str, tuple[Path, int]]  # name -> (track .npy (T, 4) float32, crop side)


@dataclass(frozen=True)
class CropItem:
    """One training item: a stretch of frames ``[start, stop)`` of one subject of one video.

    ``entry.path`` (the video) and ``entry.caption`` serve :class:`StepBatches` (same-video
    groups) and stage 1 (captions) as for whole-frame clips.
    """

    entry: CropEntry
    video: int  # index into CropClipSource.videos
    subject: str
    start: int
    stop: int


def _crop_track(crop: Any) -> np.ndarray:
    """(T, 4) float32: filled centre x, y, heading (NaN: unknown or not aligned), present."""
    present = crop.present
    heading = crop.headings if crop.headings is not None else np.full(len(present), np.nan)
    return np.column_stack([crop.filled_centers(), heading, present]).astype(np.float32)


def _cache_meta(entry: CropEntry, tracks_file: Path, cache: Path, crop_size: int | None,
                align_heading: bool) -> Path:
    key = _file_key(entry.path, tracks_file, extra=(
        f"v{_TRACK_CACHE_VERSION}|{crop_size}|{align_heading}|{entry.tracks_format}"))
    return cache / f"{entry.path.stem[:40]}-{key}.json"


def _prepare_video(entry: CropEntry, cache: Path, output_size: int, crop_size: int | None,
                   align_heading: bool) -> _Video:
    """Check the tracks against the video once and cache each subject's crop track."""
    if not entry.path.exists():
        raise VideoError(f"{entry.path} does not exist")
    known = entry.tracks if entry.tracks is not None else auto_tracks_path(entry)
    if known.is_file():
        meta_path = _cache_meta(entry, known, cache, crop_size, align_heading)
        if meta_path.is_file():  # checked before: neither the video nor the tracks are read
            meta = json.loads(meta_path.read_text())
            return _Video(entry.path, meta["n_frames"], meta["height"], meta["width"],
                          {name: (cache / file, side)
                           for name, (file, side) in meta["subjects"].items()})
    tracks, tracks_file = _load_tracks(entry)
    with open_video(entry.path, cache_size=0) as reader:
        n_frames, height, width = reader.n_frames, reader.info.height, reader.info.width
    crops = subject_crops(tracks, n_frames, (height, width), output_size,
                          crop_size=crop_size, align_heading=align_heading,
                          video=str(entry.path))
    meta_path = _cache_meta(entry, tracks_file, cache, crop_size, align_heading)
    subjects = {}
    for crop in crops:
        file = meta_path.with_name(f"{meta_path.stem}.{_safe(crop.subject)}.npy")
        tmp = file.with_name(f"{file.stem}.{os.getpid()}.tmp.npy")
        np.save(tmp, _crop_track(crop), allow_pickle=False)
        os.replace(tmp, file)
        subjects[crop.subject] = (file.name, int(crop.size))
    # Several runs may fill one cache at the same time: unique temporary names, then rename.
    tmp = meta_path.with_name(f"{meta_path.name}.{os.getpid()}.part")
    tmp.write_text(json.dumps({"video": str(entry.path), "tracks": str(tracks_file),
                               "n_frames": n_frames, "height": height, "width": width,
                               "subjects": subjects}))
    os.replace(tmp, meta_path)
    return _Video(entry.path, n_frames, height, width,
                  {name: (cache / file, side) for name, (file, side) in subjects.items()})


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in name)[:40] or "subject"


def _segments(start: int, stop: int, length: int) -> list[tuple[int, int]]:
    """Split ``[start, stop)`` into stretches of ``length`` frames (0: one stretch); a tail
    shorter than half a stretch joins the previous one."""
    if length <= 0 or stop - start <= length:
        return [(start, stop)]
    bounds = list(range(start, stop, length))
    if stop - bounds[-1] < length // 2 and len(bounds) > 1:
        bounds.pop()
    return [(a, b) for a, b in zip(bounds, [*bounds[1:], stop], strict=True)]


class CropClipSource:
    """Draws augmented animal-centred clips, decoding only each clip's frames.

    Parameters
    ----------
    items : list of CropItem
        The subjects' stretches of frames (:func:`build_crop_source` makes them).
    videos : list of _Video
        The videos the items index.
    num_frames, size : int
        Clip length and output side.
    frame_stride : int
        Step between sampled frames.
    temporal_jitter : bool
        Random window start inside the item (else the middle).
    scale_jitter : float
        The crop side is multiplied by a factor drawn log-uniformly from
        ``[1 / scale_jitter, scale_jitter]`` (1: off).
    shift : float
        The crop centre moves by up to this fraction of the crop side in x and y (0: off).
    rotation : float
        Largest random rotation in degrees, drawn uniformly per clip (0: off, 180: any
        angle); with ``align_heading``, around the heading-up orientation.
    align_heading : bool
        Rotate every frame so that the subject's heading points up (frames whose heading is
        unknown get the clip's random rotation instead).
    allow_flip : bool
        Flip left-right with probability 0.5.
    open_videos : int
        Video readers kept open between samples (least recently used closed first).
    """

    def __init__(
        self,
        items: list[CropItem],
        videos: list[_Video],
        num_frames: int,
        size: int,
        frame_stride: int = 1,
        temporal_jitter: bool = True,
        scale_jitter: float = 1.0,
        shift: float = 0.0,
        rotation: float = 0.0,
        align_heading: bool = False,
        allow_flip: bool = False,
        open_videos: int = 4,
    ) -> None:
        if not items:
            raise DataError("no usable animal-centred clip to train on; check the crop "
                            "manifest (videos, tracks, subjects)")
        if scale_jitter < 1.0:
            raise DataError(f"crop_scale_jitter must be >= 1 (1: off), found {scale_jitter}")
        self.clips = items
        self.videos = videos
        self.num_frames = num_frames
        self.size = size
        self.frame_stride = frame_stride
        self.temporal_jitter = temporal_jitter
        self.scale_jitter = scale_jitter
        self.shift = shift
        self.rotation = rotation
        self.align_heading = align_heading
        self.allow_flip = allow_flip
        self.open_videos = max(1, open_videos)
        self._readers: OrderedDict[int, VideoReader] = OrderedDict()
        self._tracks: OrderedDict[tuple[int, str], np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self.clips)

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own readers
        state = dict(self.__dict__)
        state["_readers"], state["_tracks"] = OrderedDict(), OrderedDict()
        return state

    def _reader(self, video: int) -> VideoReader:
        reader = self._readers.pop(video, None)
        if reader is None:
            reader = open_video(self.videos[video].path, cache_size=0, threads=1)
        self._readers[video] = reader
        while len(self._readers) > self.open_videos:
            _, old = self._readers.popitem(last=False)
            old.close()
        return reader

    def _track(self, item: CropItem) -> tuple[np.ndarray, int]:
        file, side = self.videos[item.video].subjects[item.subject]
        key = (item.video, item.subject)
        track = self._tracks.pop(key, None)
        if track is None:
            track = np.load(file, mmap_mode="r", allow_pickle=False)
        self._tracks[key] = track
        while len(self._tracks) > 4 * self.open_videos:
            self._tracks.popitem(last=False)
        return track, side

    def frame_indices(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """Frame indices (num_frames,) of a window of item ``index``."""
        item = self.clips[index]
        return window_indices(item.start, item.stop, self.num_frames, self.frame_stride,
                              self.temporal_jitter, rng)

    def get(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        """An augmented crop clip: (num_frames, size, size, 3) float32 in [0, 1]."""
        item = self.clips[index]
        video = self.videos[item.video]
        idx = self.frame_indices(index, rng)
        track, base_side = self._track(item)
        rows = np.asarray(track[idx], dtype=np.float64)  # (T, 4): x, y, heading, present
        # Every draw happens in this order whatever the settings, so that switching one
        # augmentation off does not change the others.
        log_j = math.log(self.scale_jitter)
        scale = math.exp(rng.uniform(-log_j, log_j)) if log_j > 0 else 1.0
        offset = rng.uniform(-1.0, 1.0, size=2) * self.shift
        phi = math.radians(self.rotation) * rng.uniform(-1.0, 1.0)
        flip = self.allow_flip and rng.random() < 0.5
        side = max(8, int(round(base_side * scale)))
        centers = rows[:, :2] + offset * side
        if self.align_heading:
            heading = rows[:, 2]
            angles = np.where(np.isfinite(heading), heading + phi, phi - math.pi / 2)
        elif self.rotation > 0:
            angles = np.full(len(idx), phi - math.pi / 2)  # crop_frames turns angle+90deg up
        else:
            angles = None
        # Decode only the box that every crop of the clip lies in (a rotated square reaches
        # side/sqrt(2) from its centre).
        half = side * (0.7072 if angles is not None else 0.5) + 2
        x0 = int(np.clip(math.floor(centers[:, 0].min() - half), 0, video.width - 1))
        y0 = int(np.clip(math.floor(centers[:, 1].min() - half), 0, video.height - 1))
        x1 = int(np.clip(math.ceil(centers[:, 0].max() + half), x0 + 1, video.width))
        y1 = int(np.clip(math.ceil(centers[:, 1].max() + half), y0 + 1, video.height))
        frames = self._reader(item.video).get_frames(idx, crop=(x0, y0, x1, y1))
        crops = crop_frames(frames, centers - np.array([x0, y0]), side, angles)
        clip = torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255.0
        if side != self.size:
            clip = F.interpolate(clip, size=(self.size, self.size), mode="bilinear",
                                 align_corners=False, antialias=True).clamp_(0.0, 1.0)
        if flip:
            clip = clip.flip(-1)
        return clip.permute(0, 2, 3, 1).contiguous()

    def close(self) -> None:
        """Close the open video readers."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        self._tracks.clear()


def build_crop_source(
    entries: Sequence[CropEntry],
    cache_dir: str | os.PathLike[str],
    num_frames: int,
    size: int,
    *,
    crop_size: int | None = None,
    segment_frames: int = 0,
    max_bad_fraction: float = 0.1,
    **augment: Any,
) -> CropClipSource:
    """Check every entry's tracks against its video once and make the crop source.

    Parameters
    ----------
    entries : sequence of CropEntry
        From :func:`read_crop_manifest`.
    cache_dir : str or PathLike
        Folder of the per-subject crop tracks (``crops/`` inside it; reused when present).
    num_frames, size : int
        Clip length and output side.
    crop_size : int, optional
        Crop side in source pixels for every subject (default: 2.5 body lengths from the
        tracks, :func:`prism_science.extraction.subjects.crop_size_for`).
    segment_frames : int
        Split a row's range into items of this many frames (0: one item per row and subject),
        so that a long video is drawn as often as its length asks; stretches where the subject
        is present in fewer than half the frames are left out.
    max_bad_fraction : float
        Rows whose video or tracks are missing or do not match are skipped (listed in the log)
        unless their share exceeds this, which raises.
    **augment
        ``frame_stride``, ``temporal_jitter``, ``scale_jitter``, ``shift``, ``rotation``,
        ``align_heading``, ``allow_flip``, ``open_videos`` of :class:`CropClipSource`.

    Returns
    -------
    CropClipSource

    Raises
    ------
    DataError
        Too many rows are unusable (the message lists them), or none is usable.
    """
    cache = Path(cache_dir) / "crops"
    cache.mkdir(parents=True, exist_ok=True)
    align = bool(augment.get("align_heading", False))
    videos: list[_Video] = []
    video_index: dict[tuple[str, str], int] = {}
    failed: dict[tuple[str, str], str] = {}  # a video that failed once is not retried per row
    present: dict[tuple[int, str], np.ndarray] = {}
    items: list[CropItem] = []
    bad: list[str] = []
    for entry in entries:
        key = (str(entry.path), str(entry.tracks) if entry.tracks else f"auto{entry.n_animals}")
        if key in failed:
            bad.append(failed[key])
            continue
        try:
            if key not in video_index:
                try:
                    videos.append(_prepare_video(entry, cache, size, crop_size, align))
                except (VideoError, TracksError, OSError, ValueError) as exc:
                    failed[key] = f"{entry.path} ({exc})"
                    raise
                video_index[key] = len(videos) - 1
            v = video_index[key]
            video = videos[v]
            names = [entry.subject] if entry.subject else list(video.subjects)
            unknown = [n for n in names if n not in video.subjects]
            if unknown:
                raise TracksError(f"subject(s) {unknown} not in the tracks of {entry.path} "
                                  f"(subjects {list(video.subjects)})")
            timestamps = None
            if entry.start_s is not None or entry.end_s is not None:
                with open_video(entry.path, cache_size=0) as reader:
                    timestamps = np.asarray(reader.info.timestamps, dtype=np.float64)
            start, stop = _frame_range(ManifestEntry(
                entry.path, entry.caption, entry.start_frame, entry.end_frame, entry.start_s,
                entry.end_s), timestamps if timestamps is not None else np.zeros(0),
                video.n_frames)
        except (VideoError, TracksError, OSError, ValueError) as exc:
            bad.append(f"{entry.path} ({exc})")
            continue
        for name in names:
            if (v, name) not in present:
                present[v, name] = np.load(video.subjects[name][0])[:, 3] > 0.5
            for a, b in _segments(start, stop, segment_frames):
                if float(np.mean(present[v, name][a:b])) >= _MIN_PRESENT:
                    items.append(CropItem(entry, v, name, a, b))
    if bad:
        listing = "; ".join(bad[:20]) + (" ..." if len(bad) > 20 else "")
        fraction = len(bad) / max(len(entries), 1)
        if fraction > max_bad_fraction or not items:
            why = (f"{fraction:.0%} > max_bad_fraction {max_bad_fraction:.0%}"
                   if fraction > max_bad_fraction else "no usable row is left")
            raise DataError(
                f"{len(bad)} of {len(entries)} crop manifest rows are unusable ({why}): "
                f"{listing}; fix the videos or tracks, remove the rows, or raise "
                "max_bad_fraction")
        logger.warning("skipped %d of %d unusable crop manifest rows: %s", len(bad),
                       len(entries), listing)
    logger.info("%d animal-centred items of %d subjects in %d videos", len(items),
                len({(i.video, i.subject) for i in items}), len(videos))
    return CropClipSource(items, videos, num_frames, size, **augment)


class ConcatSource:
    """Several clip sources as one: index ``i`` runs through the first source's clips, then
    the next one's (``clips`` is their concatenation)."""

    def __init__(self, sources: Sequence[Any]) -> None:
        self.sources = [s for s in sources if s is not None and len(s)]
        if not self.sources:
            raise DataError("no usable clip to train on; check the manifests")
        self.clips = [clip for source in self.sources for clip in source.clips]
        self._starts = np.cumsum([0] + [len(s) for s in self.sources])

    def __len__(self) -> int:
        return len(self.clips)

    def get(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        """The clip ``index`` of the concatenation (see the sources' ``get``)."""
        k = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self.sources[k].get(index - int(self._starts[k]), rng)
