"""Batch feature extraction into a store: discovery, resume, and per-video error reporting.

``run_extraction`` is what ``prism-science extract`` runs. For every video it records the
video (source path, size, content hash, timestamps), creates the feature set
``<model>/<tokens>`` with its provenance, and fills the chunks not yet written; the completion
mark comes last. A rerun skips complete videos with the same model and parameters and fills
only the missing chunks of incomplete ones; a store holding the same feature key with other
parameters is refused (``overwrite`` replaces). A video that cannot be decoded is reported with
the reason and does not stop the others. With ``cluster`` the work runs on Dask
(:mod:`prism_science.extraction.cluster`); with a :class:`Shard` a process takes its share of
the work with no coordinator (``sbatch --array``). Whatever ran, :func:`settle_videos` decides
from the store which videos are complete. See docs/extraction.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import ClusterError, PrismError, StoreError, VideoError
from prism_science.extraction.features import (
    iter_video_features,
)
from prism_science.extraction.windows import WindowParams
from prism_science.store import (
    IDENTITY_FIELDS,
    FeatureStore,
    describe_params,
    video_id_from_path,
)
from prism_science.video import content_hash, open_video
from prism_science.video.index import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

__all__ = [
    "ExtractOptions",
    "ExtractReport",
    "FeatureWriter",
    "Shard",
    "VideoJob",
    "VideoProbe",
    "VideoSource",
    "assign_shards",
    "check_store_compatible",
    "extract_ranges",
    "find_videos",
    "prepare_video",
    "probe_video",
    "settle_videos",
    "store_lock",
    "task_units",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoSource:
    """A video to extract: its path, its path relative to the folder given, and its store id."""

    path: Path
    relative_path: str
    video_id: str


@dataclass(frozen=True)
class ExtractOptions:
    """Options of a run (the flags of ``prism-science extract``)."""

    model: str = "default"
    params: WindowParams = field(default_factory=WindowParams)
    device: str = "auto"
    batch_size: int = 8
    overwrite: bool = False
    format: str | None = None
    chunk_frames: int | None = None
    shard_frames: int | None = None
    """Zarr: frames per shard file (a multiple of ``chunk_frames``); None: the store's default."""
    progress: bool = True
    threads: int | None = None
    """Torch threads on CPU; None: every usable core on an idle machine, else one left to the
    decode thread (:func:`prism_science.extraction.features.default_threads`)."""
    precision: str = "fp32"
    """Inference precision: ``fp32``, ``bf16`` or ``auto`` (bf16 where the device has it
    natively); see :func:`prism_science.models.weights.resolve_precision`."""
    matmul: str = "default"
    """CPU float32 matmul backend: ``default`` (torch's), ``onednn`` or ``auto`` (measured at
    load); see :func:`prism_science.extraction.features.load_encoder`."""
    subjects: str | None = None
    """Per-subject features: a tracks file, or ``"auto"`` (the built-in tracker); None: whole
    frames. See :mod:`prism_science.extraction.subjects`."""
    n_animals: int | None = None
    """Animals for ``subjects="auto"`` (required there)."""
    crop_size: int | None = None
    """Crop side in pixels; None: 2.5 body lengths per subject (at least 32)."""
    align_heading: bool = False
    """Rotate each crop so that the subject's heading points up."""
    boxes: bool = False
    """With ``subjects``: pool each subject's box of the whole-frame token grid (RoIAlign)
    instead of cropping; see :mod:`prism_science.extraction.roi`."""


@dataclass
class ExtractReport:
    """What a run did with every input video.

    Attributes
    ----------
    extracted : list of str
        Ids this run wrote frames of and that are now complete.
    skipped : list of str
        Ids already complete before the run (same model and parameters).
    completed : list of str
        Ids whose chunks were all written before (by a run that died before marking them, or
        by other shards) and that this run marked complete.
    failed : list of (str, str)
        ``(path, reason)`` of videos that could not be extracted.
    incomplete : list of (str, str)
        ``(video_id, why)`` of videos this run should have finished but did not (the run was
        interrupted or lost its cluster); a rerun finishes them.
    waiting : list of (str, str)
        ``(video_id, why)`` of videos whose chunks of other shards are not written yet.
    short : list of (str, str)
        ``(video_id, why)`` of videos extracted whole but shorter than their container declares
        (a truncated file): not a failure, reported (exit code 3, docs/video.md).
    interrupted : str or None
        Why the run stopped early (Ctrl-C, scheduler lost, no workers), else None.
    user_interrupt : bool
        The run was stopped by Ctrl-C (the command then exits with 130).
    """

    store_path: str
    key: str = ""
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    completed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    incomplete: list[tuple[str, str]] = field(default_factory=list)
    waiting: list[tuple[str, str]] = field(default_factory=list)
    short: list[tuple[str, str]] = field(default_factory=list)
    interrupted: str | None = None
    user_interrupt: bool = False
    shard: str | None = None
    frames: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no video failed, none of this run's work is left and nothing stopped it."""
        return not self.failed and not self.incomplete and self.interrupted is None

    def summary(self) -> str:
        """A few human-readable lines: one count per outcome, then one line per problem."""
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        shard = f" shard {self.shard}" if self.shard else ""
        waiting = f", {len(self.waiting)} waiting for other shards" if self.shard else ""
        lines = [
            f"{self.store_path} [{self.key}]{shard}: {len(self.extracted)} extracted, "
            f"{len(self.skipped)} already complete, {len(self.completed)} marked complete now, "
            f"{len(self.failed)} failed, {len(self.incomplete)} incomplete{waiting}; "
            f"{self.frames} frames in {self.seconds:.1f} s ({rate:.1f} frames/s)"
        ]
        if self.interrupted:
            lines.append(f"STOPPED: {self.interrupted}")
        lines += [f"FAILED {reason if reason.startswith(path) else f'{path}: {reason}'}"
                  for path, reason in self.failed]
        lines += [f"INCOMPLETE {vid}: {why}" for vid, why in self.incomplete]
        lines += [f"WAITING {vid}: {why}" for vid, why in self.waiting]
        lines += [f"SHORT {vid}: {why}" for vid, why in self.short]
        return "\n".join(lines)


@dataclass
class VideoJob:
    """A video ready to extract: recorded in the store with its feature set created.

    ``chunk_frames`` is the unit of work: the frames of one shard file of the feature set
    (:meth:`FeatureStore.shard_frames`; one chunk in unsharded stores). Tasks, shards of a job
    array and ``ranges`` are made of whole units, so two writers never share a file.
    """

    source: VideoSource
    n_frames: int
    chunk_frames: int
    ranges: list[tuple[int, int]]
    short: str | None = None  # why the video is shorter than its container declares

    @property
    def missing_frames(self) -> int:
        """Frames still to compute."""
        return sum(stop - start for start, stop in self.ranges)


class FeatureWriter:
    """Collects per-frame feature blocks in frame order and writes them as whole shards.

    Parameters
    ----------
    store : FeatureStore
        An open, writable store.
    video_id, key : str
        The feature set (created with :meth:`FeatureStore.create_features`).
    frame_start : int
        First frame that will be given; a multiple of the set's ``shard_frames``.

    Notes
    -----
    Memory: one shard of values (at most ``SHARD_BYTES_LIMIT``). Each shard file is written
    once, whole, then its done markers: a Zarr shard written in pieces would be read and
    rewritten for every piece. After an error or Ctrl-C, :meth:`salvage` writes the whole
    chunks buffered so far; a process killed outright loses the shard being filled.
    """

    def __init__(self, store: FeatureStore, video_id: str, key: str, frame_start: int) -> None:
        self.store = store
        self.video_id = video_id
        self.key = key
        self.chunk_frames = store.chunk_frames(video_id, key)
        self.unit_frames = store.shard_frames(video_id, key)
        self.n_frames = store.video_info(video_id).n_frames
        if frame_start % self.unit_frames:
            raise StoreError(
                f"feature writer for {video_id}/{key} must start on a shard boundary of "
                f"{self.unit_frames} frames, found {frame_start}"
            )
        self._chunk_start = frame_start
        self._next = frame_start
        self._buffer: list[np.ndarray] = []
        self._write_failed = False
        self.frames_written = 0

    def add(self, frame_start: int, values: np.ndarray) -> None:
        """Add features of frames ``frame_start .. frame_start + len(values) - 1``."""
        if frame_start != self._next:
            raise StoreError(
                f"feature blocks for {self.video_id}/{self.key} must come in frame order: "
                f"expected frame {self._next}, got {frame_start}"
            )
        self._next += values.shape[0]
        self._buffer.append(values)
        buffered = self._next - self._chunk_start
        if buffered >= self.unit_frames or self._next >= self.n_frames:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self._buffer:
            return
        data = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        n = data.shape[0]
        if whole_chunks_only and self._chunk_start + n < self.n_frames:
            n = (n // self.unit_frames) * self.unit_frames
        if n == 0:
            return
        # One shard per write, so its done markers follow as soon as its values are on disk.
        first = self._chunk_start
        try:
            for offset in range(0, n, self.unit_frames):
                block = data[offset:min(n, offset + self.unit_frames)]
                self._write_failed = True
                self.store.write_chunks(self.video_id, self.key, self._chunk_start, block)
                self._write_failed = False
                self.frames_written += block.shape[0]
                self._chunk_start += block.shape[0]
        finally:
            written = self._chunk_start - first
            self._buffer = [data[written:]] if written < data.shape[0] else []

    def salvage(self) -> None:
        """Write the whole chunks buffered so far (part of a shard), after an error or Ctrl-C,
        so that a rerun keeps them; the rest of the buffer is dropped. Nothing is written when
        the error was the store's write itself (it is not tried again)."""
        if not self._buffer or self._write_failed:
            return
        data = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        n = data.shape[0]
        if self._chunk_start + n < self.n_frames:
            n = (n // self.chunk_frames) * self.chunk_frames
        self._buffer = []
        if n:
            self.store.write_chunks(self.video_id, self.key, self._chunk_start, data[:n])
            self.frames_written += n
            self._chunk_start += n

    def close(self) -> None:
        """Write what is buffered; it must end on a shard boundary or the video's end."""
        self._flush(whole_chunks_only=False)


def _is_image_folder(folder: Path) -> bool:
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


def find_videos(
    paths: Sequence[str | os.PathLike[str]], glob: str | None = None, recursive: bool = False
) -> tuple[list[VideoSource], list[tuple[str, str]]]:
    """Expand files and folders into videos.

    Parameters
    ----------
    paths : sequence of path
        Video files, folders of videos, or folders of image frames (one video each).
    glob : str, optional
        Pattern for files in folders (e.g. ``"*.mp4"``); default any of
        :data:`VIDEO_EXTENSIONS`.
    recursive : bool
        Search folders' sub-folders too (sub-folders of image frames count as videos).

    Returns
    -------
    (list of VideoSource, list of (str, str))
        The videos, in a stable order, with unique ids; and ``(path, reason)`` for paths that
        do not exist or hold no video.
    """
    found: list[tuple[Path, str]] = []
    problems: list[tuple[str, str]] = []

    def matches(p: Path) -> bool:
        if glob is not None:
            return p.match(glob)
        return p.suffix.lower() in VIDEO_EXTENSIONS

    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append((path, path.name))
        elif path.is_dir():
            if _is_image_folder(path):
                found.append((path, path.name))
                continue
            folders = [path, *sorted(p for p in path.rglob("*") if p.is_dir())] if recursive \
                else [path]
            before = len(found)
            for folder in folders:
                if folder != path and _is_image_folder(folder):
                    found.append((folder, folder.relative_to(path).as_posix()))
                    continue
                for file in sorted(folder.iterdir()):
                    if file.is_file() and matches(file):
                        found.append((file, file.relative_to(path).as_posix()))
            if len(found) == before:
                what = f"matching {glob!r}" if glob else "with a video extension"
                problems.append((str(path), f"no video files {what} in this folder"
                                 + ("" if recursive else " (use --recursive for sub-folders)")))
        else:
            problems.append((str(path), "does not exist or cannot be read; check the path"))
    sources: list[VideoSource] = []
    seen: dict[str, Path] = {}
    for path, relative in found:
        resolved = path.resolve()
        video_id = video_id_from_path(relative)
        if video_id in seen:
            if seen[video_id] == resolved:
                continue  # the same file given twice
            suffix = hashlib.sha1(str(resolved).encode()).hexdigest()[:8]
            video_id = f"{video_id}-{suffix}"
        seen[video_id] = resolved
        sources.append(VideoSource(path=path, relative_path=relative, video_id=video_id))
    return sources, problems


def check_store_compatible(
    store: FeatureStore, key: str, provenance: dict[str, Any], run_ids: Iterable[str],
    overwrite: bool,
) -> None:
    """Refuse a run whose features would mix with other parameters under the same key.

    Raises
    ------
    StoreError
        Some video of the store has ``key`` features whose identity fields differ and
        ``overwrite`` is False. With ``overwrite``, videos outside this run that differ are
        only logged (they keep their features).
    """
    run_ids = set(run_ids)
    clashes = []
    for video_id in store.video_ids():
        if key not in store.feature_keys(video_id):
            continue
        if store.feature_status(video_id, key) == "missing":
            continue
        old = store.feature_provenance(video_id, key)
        if any(old.get(f) != provenance.get(f) for f in IDENTITY_FIELDS):
            clashes.append((video_id, old))
    if not clashes:
        return
    video_id, old = clashes[0]
    if not overwrite:
        raise StoreError(
            f"{store.path}: holds features {key!r} of {len(clashes)} video(s) (e.g. {video_id!r}) "
            f"made with {describe_params(old)}; this run uses {describe_params(provenance)}. "
            "Refusing to mix them: use --overwrite to replace them, or write to another store"
        )
    outside = [v for v, _ in clashes if v not in run_ids]
    if outside:
        logger.warning("%s: %d video(s) not in this run keep %r features with other parameters "
                       "(e.g. %s)", store.path, len(outside), key, outside[0])


@dataclass(frozen=True, eq=False)
class VideoProbe:
    """What :func:`prepare_video` needs to know of a video file, read without the store."""

    n_frames: int
    timestamps: np.ndarray
    fps: float
    width: int
    height: int
    content_hash: str
    size_bytes: int
    declared_frames: int | None = None  # what the container declares, when more than n_frames


SHORT_VIDEO_ITEM = "source/short"
"""Store item (JSON) of a video shorter than its container declares: declared and readable
frame counts."""


def probe_video(source: VideoSource) -> VideoProbe:
    """Open a video, read its frame count and timestamps, and fingerprint its content.

    Raises
    ------
    VideoError
        The video cannot be opened or has no frames.
    """
    with open_video(source.path) as reader:
        info = reader.info
    if info.n_frames < 1:
        raise VideoError(f"{source.path}: has zero frames; nothing to extract")
    size = source.path.stat().st_size if source.path.is_file() else sum(
        p.stat().st_size for p in source.path.iterdir() if p.is_file())
    return VideoProbe(n_frames=info.n_frames, timestamps=np.asarray(info.timestamps),
                      fps=info.fps, width=info.width, height=info.height,
                      content_hash=content_hash(source.path), size_bytes=size,
                      declared_frames=info.declared_frames if info.short else None)


def prepare_video(
    store: FeatureStore, source: VideoSource, key: str, feature_shape: tuple[int, ...],
    provenance: dict[str, Any], overwrite: bool = False, chunk_frames: int | None = None,
    probe: VideoProbe | None = None, shard_frames: int | None = None,
) -> VideoJob | None:
    """Record a video and its feature set in the store; None when it is already complete.

    Idempotent: a record and feature set that already match are left untouched (nothing is
    written), so concurrent shards preparing the same videos write the metadata once.

    Parameters
    ----------
    probe : VideoProbe, optional
        From :func:`probe_video` (read here when not given).
    chunk_frames, shard_frames : int, optional
        Of a new feature set (see :meth:`FeatureStore.create_features`).

    Raises
    ------
    VideoError
        The video cannot be opened or has no frames.
    StoreError
        The store records other content under this id (without ``overwrite``).
    """
    probe = probe_video(source) if probe is None else probe
    stored = store.video_info(source.video_id) if store.has_video(source.video_id) else None
    same = (stored is not None and stored.content_hash == probe.content_hash
            and stored.n_frames == probe.n_frames)
    if not overwrite and same and store.feature_status(source.video_id, key) == "complete":
        return None
    source_path = str(source.path.resolve())
    if overwrite or not same or stored.source_path != source_path:
        store.put_video(
            source.video_id, source_path=source_path,
            relative_path=source.relative_path, size_bytes=probe.size_bytes,
            content_hash=probe.content_hash, timestamps=probe.timestamps, fps=probe.fps,
            width=probe.width, height=probe.height, overwrite=overwrite,
        )
    store.create_features(source.video_id, key, feature_shape, provenance,
                          chunk_frames=chunk_frames, overwrite=overwrite,
                          shard_frames=shard_frames)
    short = None
    if probe.declared_frames:  # a truncated file: recorded beside the video and reported
        short = (f"{probe.n_frames} of the {probe.declared_frames} frames its container "
                 f"declares can be read ({source.path} is cut short; re-copy it if the rest "
                 "exists)")
        store.write_json(source.video_id, SHORT_VIDEO_ITEM, {
            "declared_frames": probe.declared_frames, "readable_frames": probe.n_frames})
    return VideoJob(source=source, n_frames=probe.n_frames,
                    chunk_frames=store.shard_frames(source.video_id, key),
                    ranges=store.missing_ranges(source.video_id, key), short=short)


def extract_ranges(
    model: Any, store: FeatureStore, video_id: str, source_path: str | os.PathLike[str],
    key: str, params: WindowParams, ranges: Sequence[tuple[int, int]], batch_size: int = 8,
    on_frames: Callable[[int], None] | None = None, crop: Any | None = None,
) -> int:
    """Compute and write the features of chunk-aligned frame ranges of one video.

    ``crop`` (a :class:`prism_science.extraction.subjects.SubjectCrop`) computes one
    subject's features: frames cropped around its track, NaN where it is absent.

    Returns
    -------
    int
        Frames written. Each shard file is written (and marked done) as soon as it is ready;
        after an error or Ctrl-C the finished chunks of the shard being filled are written
        too, so a rerun keeps every finished chunk.
    """
    written = 0
    with open_video(source_path) as reader:
        for start, stop in ranges:
            writer = FeatureWriter(store, video_id, key, start)
            try:
                for block_start, block_stop, values in iter_video_features(
                    model, reader, params, batch_size=batch_size, frame_range=(start, stop),
                    frame_transform=None if crop is None else crop.transform,
                ):
                    if crop is not None:
                        crop.mask(block_start, values)
                    writer.add(block_start, values)
                    if on_frames is not None:
                        on_frames(block_stop - block_start)
            except BaseException:  # a decode error, Ctrl-C: keep the chunks computed so far
                try:
                    writer.salvage()
                except Exception as exc:  # noqa: BLE001 - the first error is the one to raise
                    logger.warning("%s: could not keep the chunks computed before the "
                                   "error (%s)", video_id, exc)
                raise
            writer.close()
            written += writer.frames_written
    return written


# ---------------------------------------------------------------------------- shards (job arrays)
@dataclass(frozen=True)
class Shard:
    """One of ``count`` processes sharing a run with no coordinator (``--shard index/count``).

    ``index`` counts from 0. :meth:`parse` reads ``"i/N"`` or ``"auto"`` (a Slurm job array).
    """

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @classmethod
    def parse(cls, text: str, environ: Mapping[str, str] | None = None) -> Shard:
        """``"i/N"`` (0 <= i < N), or ``"auto"``: this task of a Slurm job array.

        With ``auto`` the shard is ``(SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) //
        SLURM_ARRAY_TASK_STEP`` of ``SLURM_ARRAY_TASK_COUNT``, so ``--array=0-7`` and
        ``--array=1-8`` both give shards 0..7 of 8.

        Raises
        ------
        ClusterError
            Malformed text, an index out of range, or ``auto`` outside a job array.
        """
        environ = os.environ if environ is None else environ
        if text == "auto":
            names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")
            missing = [n for n in names if not environ.get(n)]
            if missing:
                raise ClusterError(
                    f"--shard auto: ${missing[0]} is not set, so this is not a task of a Slurm "
                    "job array (sbatch --array); give the shard as --shard i/N instead")
            try:
                task = int(environ["SLURM_ARRAY_TASK_ID"])
                count = int(environ["SLURM_ARRAY_TASK_COUNT"])
                first = int(environ.get("SLURM_ARRAY_TASK_MIN") or 0)
                step = int(environ.get("SLURM_ARRAY_TASK_STEP") or 1)
            except ValueError as exc:
                raise ClusterError(f"--shard auto: a SLURM_ARRAY_TASK_* variable is not an "
                                   f"integer ({exc})") from exc
            index = (task - first) // max(1, step)
            if not 0 <= index < count:
                raise ClusterError(
                    f"--shard auto: array task {task} (min {first}, step {step}) is not one of "
                    f"{count} tasks; use a plain range such as --array=0-{count - 1}, or "
                    "--shard i/N")
            return cls(index, count)
        parts = text.split("/")
        try:
            index, count = int(parts[0]), int(parts[1])
            if len(parts) != 2:
                raise ValueError(text)
        except (ValueError, IndexError) as exc:
            raise ClusterError(f"--shard {text!r}: expected i/N (e.g. 0/8, shards count from "
                               "0) or auto (Slurm job array)") from exc
        if count < 1 or not 0 <= index < count:
            raise ClusterError(f"--shard {text!r}: the index must be 0 to N-1 with N >= 1, "
                               f"e.g. 0/{max(1, count)} to {max(1, count) - 1}/{max(1, count)}")
        return cls(index, count)


def task_units(n_frames: int, chunk_frames: int, task_frames: int) -> list[tuple[int, int]]:
    """Split a whole video into units of work made of whole shard files.

    Parameters
    ----------
    n_frames : int
        Frames of the video.
    chunk_frames : int
        Frames per shard file (:attr:`VideoJob.chunk_frames`; a chunk in unsharded stores).
    task_frames : int
        Largest unit wanted.

    Returns
    -------
    list of (int, int)
        ``[(0, n_frames)]`` for a video of at most ``task_frames`` frames, else ranges of
        ``task_frames`` rounded down to whole shards (at least one shard), so two units never
        share a file.
    """
    if n_frames <= task_frames:
        return [(0, n_frames)]
    step = max(1, task_frames // chunk_frames) * chunk_frames
    return [(a, min(a + step, n_frames)) for a in range(0, n_frames, step)]


def assign_shards(
    videos: Sequence[tuple[str, int, int]], task_frames: int, count: int
) -> list[list[tuple[str, int, int]]]:
    """Deal every unit of work of ``videos`` to ``count`` shards, deterministically.

    Parameters
    ----------
    videos : sequence of (str, int, int)
        ``(video_id, n_frames, shard_frames)`` of every video of the run, complete or not (so
        every shard computes the same plan whatever the store holds when it starts).
    task_frames : int
        Largest unit (see :func:`task_units`).
    count : int
        Shards.

    Returns
    -------
    list of list of (str, int, int)
        Per shard, its units ``(video_id, start, stop)``: the largest units first, each to the
        shard with the fewest frames so far (ties: the lowest index). Units are whole shard files,
        so two shards never write the same file.
    """
    units = [(vid, a, b) for vid, n, cf in sorted(videos)
             for a, b in task_units(n, cf, task_frames)]
    units.sort(key=lambda u: (-(u[2] - u[1]), u[0], u[1]))
    loads = [0] * count
    shards: list[list[tuple[str, int, int]]] = [[] for _ in range(count)]
    for unit in units:
        target = min(range(count), key=lambda i: (loads[i], i))
        shards[target].append(unit)
        loads[target] += unit[2] - unit[1]
    for shard in shards:
        shard.sort(key=lambda u: (u[0], u[1]))
    return shards


def intersect_ranges(a: Sequence[tuple[int, int]],
                     b: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Frames in both lists of sorted, disjoint ``(start, stop)`` ranges."""
    out = [(max(x0, y0), min(x1, y1)) for x0, x1 in a for y0, y1 in b]
    return sorted((x, y) for x, y in out if x < y)


# ---------------------------------------------------------------------------- store lock
LOCK_STALE_SECONDS = 300.0
"""A lock not refreshed for this long is taken to be left by a process that died."""


class _Lock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._touched = time.monotonic()

    def touch(self) -> None:
        """Refresh the lock (a long preparation is not mistaken for a dead one)."""
        if time.monotonic() - self._touched > 10:
            with contextlib.suppress(OSError):
                os.utime(self.path)
            self._touched = time.monotonic()


def _lock_is_stale(path: Path, stale_after: float) -> bool:
    try:
        holder = json.loads(path.read_text() or "{}")
        age = time.time() - path.stat().st_mtime
    except (OSError, ValueError):
        return False  # being written or just removed: look again
    if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass
    return age > stale_after


@contextlib.contextmanager
def store_lock(store_path: str | os.PathLike[str], timeout: float = 900.0,
               stale_after: float = LOCK_STALE_SECONDS) -> Iterator[_Lock]:
    """Hold the lock that serialises writing a store's metadata (video records, arrays).

    The lock is the file ``.<store name>.prism-lock`` beside the store, created with
    ``O_EXCL`` (atomic on local disks, NFS v3+, Lustre and GPFS). Only preparation takes it:
    chunks are written without it, since two tasks never share a chunk. A lock left by a
    process that died is taken over (same host: its pid is gone; other hosts: not refreshed for
    ``stale_after`` seconds).

    Raises
    ------
    StoreError
        Another process held the lock for more than ``timeout`` seconds.
    """
    path = Path(store_path).resolve()
    lock = path.parent / f".{path.name}.prism-lock"
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if _lock_is_stale(lock, stale_after):
                logger.warning("%s: removing a lock left by a process that died (%s)", path,
                               lock.read_text(errors="replace").strip())
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                continue
            if time.monotonic() > deadline:
                raise StoreError(
                    f"{path}: another extraction has been preparing this store for more than "
                    f"{timeout:.0f} s (lock file {lock}: {lock.read_text(errors='replace')}); "
                    "wait for it, or delete the lock file if no extraction is running"
                ) from None
            time.sleep(delay)
            delay = min(1.0, delay * 2)
            continue
        except OSError as exc:
            raise StoreError(
                f"{path}: cannot create the lock file {lock} ({exc.strerror or exc}); the folder "
                "holding the store must be writable: fix its permissions or free space, or "
                "write the store elsewhere"
            ) from exc
        with os.fdopen(fd, "w") as file:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")}, file)
        break
    try:
        yield _Lock(lock)
    finally:
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()


# ---------------------------------------------------------------------------- completion
def settle_videos(
    store: FeatureStore, key: str, jobs: Sequence[VideoJob], report: ExtractReport, *,
    wrote: Iterable[str] = (), errors: Mapping[str, str] | None = None,
    owned: Mapping[str, Sequence[tuple[int, int]]] | None = None,
) -> None:
    """Decide from the store what became of each video of a run, and mark complete ones.

    Every video whose chunks are all written is marked complete, whoever wrote them (this run,
    a run that died before marking, other shards). The others are reported as failed (a task
    of theirs raised), incomplete (this run's chunks are missing), or waiting (only chunks
    owned by other shards are missing).

    Parameters
    ----------
    store : FeatureStore
        The writable store.
    key : str
        The feature set.
    jobs : sequence of VideoJob
        The videos of the run that were not complete when it started.
    report : ExtractReport
        Updated in place: ``extracted``, ``completed``, ``failed``, ``incomplete``, ``waiting``.
    wrote : iterable of str
        Ids this run wrote frames of.
    errors : mapping, optional
        ``video_id -> reason`` of videos a task of which failed.
    owned : mapping, optional
        With shards, ``video_id -> ranges`` this shard owns (None: the run owns everything).
    """
    wrote, errors = set(wrote), dict(errors or {})
    for job in jobs:
        vid = job.source.video_id
        if job.short:
            report.short.append((vid, job.short))
        try:
            if store.feature_status(vid, key) == "complete":  # marked by a concurrent shard
                (report.extracted if vid in wrote else report.completed).append(vid)
                continue
            missing = store.missing_ranges(vid, key)
            if not missing:
                store.mark_complete(vid, key)
                (report.extracted if vid in wrote else report.completed).append(vid)
                continue
        except PrismError as exc:
            report.failed.append((str(job.source.path), str(exc)))
            continue
        frames = sum(b - a for a, b in missing)
        where = f"{frames} of {job.n_frames} frames not written (e.g. frames {missing[0][0]}.." \
                f"{missing[0][1]})"
        mine = missing if owned is None else intersect_ranges(missing, owned.get(vid, []))
        if vid in errors:
            report.failed.append((str(job.source.path), errors[vid]))
        elif mine:
            why = "the run stopped early" if report.interrupted else "not written by this run"
            report.incomplete.append((vid, f"{where}; {why}: rerun the same command to finish"))
        else:
            report.waiting.append((vid, f"{where}, owned by other shards; the last shard to "
                                        "finish, or any rerun, marks it complete"))
