"""Batch feature extraction into a store: discovery, resume, and per-video error reporting.

``run_extraction`` is what ``prism-science extract`` runs. For every video it records the
video (source path, size, content hash, timestamps), creates the feature set
``<model>/<tokens>`` with its provenance, and fills the chunks not yet written; the completion
mark comes last. A rerun skips complete videos with the same model and parameters and fills
only the missing chunks of incomplete ones; a store holding the same feature key with other
parameters is refused (``overwrite`` replaces). A video that cannot be decoded is reported with
the reason and does not stop the others. With ``cluster`` the work runs on Dask
(:mod:`prism_science.extraction.cluster`). See docs/extraction.md.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import StoreError, VideoError
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
    "VideoJob",
    "VideoSource",
    "check_store_compatible",
    "extract_ranges",
    "find_videos",
    "prepare_video",
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
    progress: bool = True
    threads: int | None = None
    """Torch threads on CPU; None: one less than the CPU cores (one core decodes), at least 1."""


@dataclass
class ExtractReport:
    """What a run did: ids extracted and skipped, and ``(path, reason)`` of each failure."""

    store_path: str
    key: str = ""
    extracted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    frames: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no video failed."""
        return not self.failed

    def summary(self) -> str:
        """A few human-readable lines."""
        rate = self.frames / self.seconds if self.seconds > 0 else 0.0
        lines = [
            f"{self.store_path} [{self.key}]: {len(self.extracted)} extracted, "
            f"{len(self.skipped)} already complete, {len(self.failed)} failed; "
            f"{self.frames} frames in {self.seconds:.1f} s ({rate:.1f} frames/s)"
        ]
        lines += [f"FAILED {reason if reason.startswith(path) else f'{path}: {reason}'}"
                  for path, reason in self.failed]
        return "\n".join(lines)


@dataclass
class VideoJob:
    """A video ready to extract: recorded in the store with its feature set created."""

    source: VideoSource
    n_frames: int
    chunk_frames: int
    ranges: list[tuple[int, int]]

    @property
    def missing_frames(self) -> int:
        """Frames still to compute."""
        return sum(stop - start for start, stop in self.ranges)


class FeatureWriter:
    """Collects per-frame feature blocks in frame order and writes them as whole chunks.

    Parameters
    ----------
    store : FeatureStore
        An open, writable store.
    video_id, key : str
        The feature set (created with :meth:`FeatureStore.create_features`).
    frame_start : int
        First frame that will be given; a multiple of the set's ``chunk_frames``.

    Notes
    -----
    Memory: one chunk of values.
    """

    def __init__(self, store: FeatureStore, video_id: str, key: str, frame_start: int) -> None:
        self.store = store
        self.video_id = video_id
        self.key = key
        self.chunk_frames = store.chunk_frames(video_id, key)
        self.n_frames = store.video_info(video_id).n_frames
        if frame_start % self.chunk_frames:
            raise StoreError(
                f"feature writer for {video_id}/{key} must start on a chunk boundary of "
                f"{self.chunk_frames} frames, found {frame_start}"
            )
        self._chunk_start = frame_start
        self._next = frame_start
        self._buffer: list[np.ndarray] = []
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
        if buffered >= self.chunk_frames or self._next >= self.n_frames:
            self._flush(whole_chunks_only=True)

    def _flush(self, whole_chunks_only: bool) -> None:
        if not self._buffer:
            return
        data = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        n = data.shape[0]
        if whole_chunks_only and self._chunk_start + n < self.n_frames:
            n = (n // self.chunk_frames) * self.chunk_frames
        if n == 0:
            return
        # One chunk per write, so its done marker follows as soon as its values are on disk.
        for offset in range(0, n, self.chunk_frames):
            block = data[offset:min(n, offset + self.chunk_frames)]
            self.store.write_chunks(self.video_id, self.key, self._chunk_start, block)
            self.frames_written += block.shape[0]
            self._chunk_start += block.shape[0]
        self._buffer = [data[n:]] if n < data.shape[0] else []

    def close(self) -> None:
        """Write what is buffered; it must end on a chunk boundary or the video's end."""
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


def prepare_video(
    store: FeatureStore, source: VideoSource, key: str, feature_shape: tuple[int, ...],
    provenance: dict[str, Any], overwrite: bool = False, chunk_frames: int | None = None,
) -> VideoJob | None:
    """Record a video and its feature set in the store; None when it is already complete.

    Raises
    ------
    VideoError
        The video cannot be opened or has no frames.
    StoreError
        The store records other content under this id (without ``overwrite``).
    """
    with open_video(source.path) as reader:
        info = reader.info
    if info.n_frames < 1:
        raise VideoError(f"{source.path}: has zero frames; nothing to extract")
    digest = content_hash(source.path)
    if not overwrite and store.feature_status(source.video_id, key) == "complete":
        stored = store.video_info(source.video_id)
        if stored.content_hash == digest and stored.n_frames == info.n_frames:
            return None
    size = source.path.stat().st_size if source.path.is_file() else sum(
        p.stat().st_size for p in source.path.iterdir() if p.is_file())
    store.put_video(
        source.video_id, source_path=str(source.path.resolve()),
        relative_path=source.relative_path, size_bytes=size,
        content_hash=digest, timestamps=info.timestamps, fps=info.fps,
        width=info.width, height=info.height, overwrite=overwrite,
    )
    cf = store.create_features(source.video_id, key, feature_shape, provenance,
                               chunk_frames=chunk_frames, overwrite=overwrite)
    return VideoJob(source=source, n_frames=info.n_frames, chunk_frames=cf,
                    ranges=store.missing_ranges(source.video_id, key))


def extract_ranges(
    model: Any, store: FeatureStore, video_id: str, source_path: str | os.PathLike[str],
    key: str, params: WindowParams, ranges: Sequence[tuple[int, int]], batch_size: int = 8,
    on_frames: Callable[[int], None] | None = None,
) -> int:
    """Compute and write the features of chunk-aligned frame ranges of one video.

    Returns
    -------
    int
        Frames written. Each whole chunk is written (and marked done) as soon as it is ready,
        so an interruption keeps every finished chunk.
    """
    written = 0
    with open_video(source_path) as reader:
        for start, stop in ranges:
            writer = FeatureWriter(store, video_id, key, start)
            for block_start, block_stop, values in iter_video_features(
                model, reader, params, batch_size=batch_size, frame_range=(start, stop)
            ):
                writer.add(block_start, values)
                if on_frames is not None:
                    on_frames(block_stop - block_start)
            writer.close()
            written += writer.frames_written
    return written
