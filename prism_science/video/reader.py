"""Frame-accurate video reading: any file PyAV decodes, or a folder of image frames.

At open, every packet of the video stream is demuxed (no decoding) and its presentation time stamp
(PTS) recorded; sorted, these PTS define the frames, so the frame count is exact whatever the
container's metadata says and timestamps are correct for variable-frame-rate video (indexing:
:mod:`prism_science.video.index`, which also defines :class:`VideoInfo`). Random access
seeks to the keyframe at or before the target PTS and decodes forward to it; a target just ahead of
the decoder's position is reached by decoding forward without a seek, and an LRU cache of decoded
frames makes going back and forth (GUI scrubbing) cheap. See docs/video.md.

Frames are numpy uint8 arrays (H, W, 3) RGB, or (N, H, W, 3); indices are 0-based.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path

import av
import numpy as np

from prism_science.errors import VideoError
from prism_science.video.index import (
    IMAGE_EXTENSIONS,
    VideoInfo,
    decoded_frames,
    index_file,
    index_folder,
    natural_sort_key,
    open_container,
    prime,
)

__all__ = [
    "VideoInfo",
    "VideoReader",
    "content_hash",
    "open_video",
]

logger = logging.getLogger(__name__)

# Seeking costs a demuxer seek plus a decoder flush; for a target this close ahead of the
# decoder's position, decoding forward is cheaper.
_FORWARD_DECODE_LIMIT = 8
_INTERPOLATION = "AREA"
# Frames decoded past a missing one to tell time stamps out of order from damaged data.
_OUT_OF_ORDER_LOOKAHEAD = 16

Size = tuple[int, int]
Crop = tuple[int, int, int, int]


def open_video(
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    cache_size: int = 64,
    threads: int = 0,
    verify: bool = False,
) -> VideoReader:
    """Open a video file or a folder of image frames for frame-accurate reading.

    Parameters
    ----------
    path : str or PathLike
        A file PyAV can decode (mp4, avi, mkv, mov, ...), or a folder of PNG/JPEG/TIFF frames
        sorted naturally by name (``frame2`` before ``frame10``).
    fps : float, optional
        Frame rate of an image folder (default 30; timestamps are index / fps). Video files take
        their timestamps from PTS; a value given for them is ignored.
    cache_size : int
        Number of decoded frames kept in the LRU cache (0 disables it). Memory: about
        width * height * 1.5 bytes per frame for yuv420p video.
    threads : int
        Decoder threads (0: FFmpeg chooses).
    verify : bool
        Decode every frame once at open (slow: a full decode) so that ``info.n_frames`` counts
        only decodable frames of a damaged file from the start. Without it, the count comes from
        the packets and shrinks when a read finds the first frame that does not decode.

    Returns
    -------
    VideoReader
        Usable as a context manager; ``reader.info`` is a :class:`VideoInfo`.

    Raises
    ------
    VideoError
        The path does not exist or cannot be read, is not a video, has no video stream or no
        frames, or its codec cannot be decoded.
    """
    return VideoReader(path, fps=fps, cache_size=cache_size, threads=threads, verify=verify)


def _check_size(size: Sequence[int] | None) -> Size | None:
    if size is None:
        return None
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise VideoError(f"size must be (height, width) with positive integers, found {size!r}")
    return int(size[0]), int(size[1])


def _convert(
    frame: av.VideoFrame | np.ndarray, size: Size | None, crop: Crop | None, rotation: int = 0
) -> np.ndarray:
    """Decoded frame (PyAV frame or RGB array) -> (h, w, 3) uint8 RGB: rotated as players show
    it (``rotation`` degrees counterclockwise, :attr:`VideoInfo.rotation`), cropped, resized."""
    if rotation and not isinstance(frame, np.ndarray):
        frame = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), rotation // 90))
    if crop is None:
        if isinstance(frame, np.ndarray):
            if size is None or size == frame.shape[:2]:
                return frame
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        if size is None:
            return frame.to_ndarray(format="rgb24")
        return frame.reformat(
            width=size[1], height=size[0], format="rgb24", interpolation=_INTERPOLATION
        ).to_ndarray()
    rgb = frame if isinstance(frame, np.ndarray) else frame.to_ndarray(format="rgb24")
    x0, y0, x1, y1 = crop
    rgb = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    return _convert(rgb, size, None)


class VideoReader:
    """Frame-accurate reader of one video file or image folder (use :func:`open_video`).

    Not thread-safe: give each thread its own reader.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        fps: float | None = None,
        cache_size: int = 64,
        threads: int = 0,
        verify: bool = False,
    ) -> None:
        self.path = Path(path)
        self.cache_size = max(0, int(cache_size))
        self._threads = int(threads)
        self._cache: OrderedDict[int, av.VideoFrame | np.ndarray] = OrderedDict()
        self._container: av.container.InputContainer | None = None
        self._frames_iter: Iterator[av.VideoFrame] | None = None
        self._pos = -1  # index of the last frame the open decoder returned
        self._files: list[Path] = []
        self.seeks = 0  # number of seeks done, for tests and benchmarks
        self._counted = False  # frames numbered by decode order (streams without time stamps)
        self._damaged = False
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such file or folder; check the path")
        if not os.access(self.path, os.R_OK):
            raise VideoError(f"{self.path}: not readable (permission denied); fix its permissions")
        if self.path.is_dir():
            self.info, self._files = index_folder(self.path, 30.0 if fps is None else float(fps))
        else:
            if fps is not None:
                logger.debug("%s: fps=%s ignored, timestamps come from PTS", self.path, fps)
            index = index_file(self.path, self._threads)
            self.info, self._pts, self._key_pts = index.info, index.pts, index.key_pts
            self._counted = index.counted
        self._indexed = self.info.n_frames
        if verify:
            self.verify()

    # ------------------------------------------------------------------ public API
    @property
    def n_frames(self) -> int:
        """Number of frames (``info.n_frames``)."""
        return self.info.n_frames

    def __len__(self) -> int:
        return self.info.n_frames

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the decoder and drop the cache. The reader reopens itself if used again."""
        self._close_decoder()
        self._cache.clear()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter shutdown
        with contextlib.suppress(Exception):
            self._close_decoder()

    def _check_index(self, index: int) -> int:
        index = int(index)
        n = self.info.n_frames
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise VideoError(
                f"{self.path}: frame {index} out of range; the video has {n} frames (0..{n - 1})"
                + (f"; frames after {n - 1} do not decode (damaged file)" if self._damaged else "")
            )
        return index

    def _check_crop(self, crop: Sequence[int] | None) -> Crop | None:
        if crop is None:
            return None
        if len(crop) != 4:
            raise VideoError(f"{self.path}: crop must be (x0, y0, x1, y1), found {crop!r}")
        x0, y0, x1, y1 = (int(c) for c in crop)
        if not (0 <= x0 < x1 <= self.info.width and 0 <= y0 < y1 <= self.info.height):
            raise VideoError(
                f"{self.path}: crop {crop!r} is not inside the {self.info.width}x"
                f"{self.info.height} frame; expected 0 <= x0 < x1 <= width, 0 <= y0 < y1 <= height"
            )
        return x0, y0, x1, y1

    def get_frame(
        self, index: int, size: Sequence[int] | None = None, crop: Sequence[int] | None = None
    ) -> np.ndarray:
        """Decode one frame exactly.

        Parameters
        ----------
        index : int
            0-based frame index (negative counts from the end).
        size : (int, int), optional
            (height, width) to resize to, inside PyAV with area interpolation.
        crop : (int, int, int, int), optional
            Box (x0, y0, x1, y1) in pixels, x1/y1 exclusive, cut before resizing.

        Returns
        -------
        np.ndarray
            (H, W, 3) uint8 RGB, or (h, w, 3) when resized.

        Raises
        ------
        VideoError
            The index is out of range, or the frame cannot be decoded (damaged file).
        """
        index = self._check_index(index)
        return _convert(self._raw_frame(index), _check_size(size), self._check_crop(crop),
                        self.info.rotation)

    def get_frames(
        self,
        indices: Sequence[int] | np.ndarray,
        size: Sequence[int] | None = None,
        crop: Sequence[int] | None = None,
    ) -> np.ndarray:
        """Decode several frames exactly, in the order given (repeats allowed).

        The frames are decoded in increasing index order, so that runs of nearby indices are
        reached by decoding forward instead of seeking.

        Parameters
        ----------
        indices : sequence of int
            0-based frame indices.
        size, crop
            As in :meth:`get_frame`.

        Returns
        -------
        np.ndarray
            (N, H, W, 3) uint8 RGB.
        """
        size_ = _check_size(size)
        crop_ = self._check_crop(crop)
        checked = [self._check_index(i) for i in np.asarray(indices, dtype=np.int64).ravel()]
        h, w = self._output_hw(size_, crop_)
        out = np.empty((len(checked), h, w, 3), dtype=np.uint8)
        previous = -1
        for j in np.argsort(checked, kind="stable"):
            if checked[j] != previous:
                previous = checked[j]
                image = _convert(self._raw_frame(previous), size_, crop_, self.info.rotation)
            out[j] = image
        return out

    def _output_hw(self, size: Size | None, crop: Crop | None) -> Size:
        if size is not None:
            return size
        if crop is not None:
            return crop[3] - crop[1], crop[2] - crop[0]
        return self.info.height, self.info.width

    def iter_chunks(
        self,
        chunk_size: int,
        start: int = 0,
        stop: int | None = None,
        size: Sequence[int] | None = None,
        crop: Sequence[int] | None = None,
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Stream frames ``start .. stop-1`` in chunks, with memory bounded by one chunk.

        Uses its own decoder (one seek to ``start``, then sequential decoding), so it neither
        disturbs nor fills the random-access cache.

        Parameters
        ----------
        chunk_size : int
            Frames per chunk (the last one may be shorter).
        start, stop : int
            Frame range (``stop`` exclusive; None: to the end).
        size : (int, int), optional
            (height, width) to resize to, inside PyAV with area interpolation.
        crop : (int, int, int, int), optional
            Box (x0, y0, x1, y1) cut before resizing.

        Yields
        ------
        (int, np.ndarray)
            Index of the chunk's first frame and the frames, (n, h, w, 3) uint8 RGB.

        Raises
        ------
        VideoError
            Bad arguments, or a frame in the range cannot be decoded; every frame before it has
            been yielded (the last chunk may then be short).
        """
        if chunk_size <= 0:
            raise VideoError(f"{self.path}: chunk_size must be positive, found {chunk_size}")
        n = self.info.n_frames
        stop = n if stop is None else min(int(stop), n)
        start = int(start)
        if not 0 <= start <= stop:
            raise VideoError(
                f"{self.path}: frame range {start}..{stop} is invalid for {n} frames; "
                "expected 0 <= start <= stop"
            )
        size_ = _check_size(size)
        crop_ = self._check_crop(crop)
        buffer: list[np.ndarray] = []
        chunk_start = start
        try:
            for _, frame in self._sequential(start, stop):
                buffer.append(_convert(frame, size_, crop_, self.info.rotation))
                if len(buffer) == chunk_size:
                    yield chunk_start, np.stack(buffer)
                    chunk_start += len(buffer)
                    buffer = []
        except VideoError:
            if buffer:  # what decoded before the damage, then the error
                yield chunk_start, np.stack(buffer)
            raise
        if buffer:
            yield chunk_start, np.stack(buffer)

    # ------------------------------------------------------------------ decoding
    def _raw_frame(self, index: int) -> av.VideoFrame | np.ndarray:
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        if self.info.is_image_folder:
            frame: av.VideoFrame | np.ndarray = self._read_image(index)
        else:
            frame = self._decode_to(index)
        self._remember(index, frame)
        return frame

    def _remember(self, index: int, frame: av.VideoFrame | np.ndarray) -> None:
        if self.cache_size <= 0:
            return
        self._cache[index] = frame
        self._cache.move_to_end(index)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _read_image(self, index: int) -> np.ndarray:
        from PIL import Image

        path = self._files[index]
        try:
            with Image.open(path) as image:
                image.load()
                if image.mode in ("I;16", "I;16B", "I;16L", "I"):
                    # 16/32-bit grey (scientific TIFF): scale the full range to 8 bits.
                    array = np.asarray(image, dtype=np.float64)
                    top = float(array.max()) or 1.0
                    grey = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
                    rgb = np.repeat(grey[..., None], 3, axis=2)
                else:
                    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, ValueError) as exc:
            raise VideoError(
                f"{path}: frame {index} of {self.path} cannot be read ({exc}); replace or "
                "remove the damaged image"
            ) from exc
        if rgb.shape[:2] != (self.info.height, self.info.width):
            raise VideoError(
                f"{path}: frame {index} of {self.path} is {rgb.shape[1]}x{rgb.shape[0]}, "
                f"expected {self.info.width}x{self.info.height} like frame 0; resize the frames "
                "to one size"
            )
        return np.ascontiguousarray(rgb)

    def _close_decoder(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = None
        self._frames_iter = None
        self._pos = -1

    def _keyframe_before(self, index: int, back: int = 0) -> int:
        """Frame index of the last keyframe at or before frame ``index`` (``back`` more back)."""
        target = int(self._pts[index])
        k = bisect.bisect_right(self._key_pts, target) - 1 - back
        key = self._key_pts[max(k, 0)]
        return int(np.searchsorted(self._pts, key))

    def _decode_to(self, index: int) -> av.VideoFrame:
        ahead = self._frames_iter is not None and index > self._pos
        if not (ahead and (index - self._pos <= _FORWARD_DECODE_LIMIT
                           or self._keyframe_before(index) <= self._pos)):
            self._seek(index)
        back = 0
        while True:
            assert self._frames_iter is not None
            try:
                for position, frame in self._frames_iter:
                    self._pos = position
                    if position == index:
                        return frame
                    if position > index:  # a damaged frame in the middle: later ones decode
                        self._raise_skipped(self._frames_iter, index, position)
                    if index - position <= self.cache_size // 2:
                        self._remember(position, frame)
                break
            except _UnsafeKeyframe as exc:
                back += 0 if exc.corrupt else 1
                self._seek(index, back)  # from an earlier keyframe
        self._mark_bad(index)
        self._raise_undecodable(index)
        raise AssertionError("unreachable")

    def _seek(self, index: int, back: int = 0) -> None:
        if self._container is None:
            self._container, _ = open_container(self.path, self._threads)
        stream = self._container.streams.video[0]
        key_index = self._keyframe_before(index, back)
        key_pts = int(self._pts[key_index])
        if key_index == 0:
            # From the first frame: reopen instead of seeking, so that decoding starts exactly
            # as a sequential read does.
            self._close_decoder()
            self._container, stream = open_container(self.path, self._threads)
        else:
            if self._frames_iter is None:
                prime(self._container, stream)
            try:
                self._container.seek(key_pts, stream=stream, backward=True, any_frame=False)
            except av.FFmpegError as exc:
                raise VideoError(
                    f"{self.path}: seeking to frame {index} failed ({exc}); the file may be "
                    "damaged, re-encode it"
                ) from exc
            self.seeks += 1
        self._frames_iter = self._positions(self._container, stream, key_pts)
        self._pos = -1

    def _positions(
        self, container: av.container.InputContainer, stream: av.VideoStream, min_pts: int
    ) -> Iterator[tuple[int, av.VideoFrame]]:
        """Decoded frames with their index, skipping frames before ``min_pts`` (from a seek)."""
        pts_index = self._pts
        first = True
        previous: int | None = None
        try:
            if self._counted:  # always decoded from the start: the n-th frame out is frame n
                for position, frame in enumerate(decoded_frames(container, stream, self.path)):
                    if position >= len(pts_index):
                        return
                    yield position, frame
                return
            for frame in decoded_frames(container, stream, self.path):
                if first and min_pts > pts_index[0]:
                    if frame.is_corrupt:
                        # Some files (e.g. non-IDR I-frames marked as sync samples) do not decode
                        # from their keyframes: forget this one, seek further back.
                        logger.info("%s: keyframe at PTS %d does not decode on its own; seeking "
                                    "from an earlier keyframe", self.path, min_pts)
                        self._key_pts.remove(min_pts)
                        raise _UnsafeKeyframe(min_pts, corrupt=True)
                    if frame.pts is not None and frame.pts > min_pts:
                        # The demuxer's seek landed after the keyframe (imprecise in MPEG-TS).
                        logger.debug("%s: seek to PTS %d landed at %d; seeking further back",
                                     self.path, min_pts, frame.pts)
                        raise _UnsafeKeyframe(min_pts, corrupt=False)
                first = False
                pts = frame.pts
                if pts is None or pts < min_pts:
                    continue
                position = int(np.searchsorted(pts_index, pts))
                if position >= len(pts_index) or pts_index[position] != pts:
                    continue  # a frame the index does not know (damaged packet)
                if previous is not None and position < previous:
                    # The decoder hands frames out in display order: a frame whose PTS is
                    # before the previous one's means wrong time stamps, not damaged data.
                    raise VideoError(
                        f"{self.path}: time stamps out of order: the frame decoded after frame "
                        f"{previous} has PTS {pts}, which sorts as frame {position}; every frame "
                        "decodes but its time stamps contradict the decoding order. Remux the "
                        "file with fresh time stamps (ffmpeg -i IN -c copy -fflags +genpts "
                        "OUT.mkv) or re-encode it.")
                previous = position
                yield position, frame
        except av.FFmpegError as exc:
            logger.warning("%s: decoding failed after frame %d: %s", self.path, self._pos, exc)
            return
        if first and min_pts > pts_index[0]:  # the seek landed at the end of the file
            raise _UnsafeKeyframe(min_pts, corrupt=False)

    def _sequential(
        self, start: int, stop: int
    ) -> Iterator[tuple[int, av.VideoFrame | np.ndarray]]:
        """Frames start..stop-1 in order from a private decoder (image folders: read files)."""
        if self.info.is_image_folder:
            for index in range(start, stop):
                yield index, self._read_image(index)
            return
        if start >= stop:
            return
        container, stream = open_container(self.path, self._threads)
        try:
            back = 0
            while True:
                key_index = self._keyframe_before(start, back)
                key_pts = int(self._pts[key_index])
                if key_index > 0:
                    prime(container, stream)
                    container.seek(key_pts, stream=stream, backward=True, any_frame=False)
                expected = start
                frames = self._positions(container, stream, key_pts)
                try:
                    for position, frame in frames:
                        if position < expected:
                            continue
                        if position > expected:
                            self._raise_skipped(frames, expected, position)
                        yield position, frame
                        expected += 1
                        if expected >= stop:
                            return
                    break
                except _UnsafeKeyframe as exc:
                    back += 0 if exc.corrupt else 1
                    container.close()
                    container, stream = open_container(self.path, self._threads)
            self._mark_bad(expected)
            self._raise_undecodable(expected)
        finally:
            container.close()

    def _mark_bad(self, index: int) -> None:
        """Record that frame ``index`` does not decode: frames from it on are unreadable."""
        last_good = index - 1
        self._damaged = True
        if last_good < self.info.last_good_frame:
            logger.warning(
                "%s: frame %d cannot be decoded; the last good frame is %d of %d indexed",
                self.path, index, last_good, self.info.n_frames,
            )
            # The frame count now reflects the decodable frames.
            self.info = dataclasses.replace(
                self.info, n_frames=last_good + 1, last_good_frame=last_good,
                timestamps=self.info.timestamps[: last_good + 1],
                duration=float(self.info.timestamps[last_good] + 1.0 / self.info.fps)
                if last_good >= 0 else 0.0,
            )

    def _raise_skipped(self, frames: Iterator[tuple[int, av.VideoFrame]], index: int,
                       position: int) -> None:
        """Frame ``position`` came out of the decoder where frame ``index`` was due: frame
        ``index`` is damaged, unless it comes out a little later (time stamps out of order)."""
        for _, (later, _frame) in zip(range(_OUT_OF_ORDER_LOOKAHEAD), frames, strict=False):
            if later == index:
                raise VideoError(
                    f"{self.path}: time stamps out of order at frame {index}: the decoder hands "
                    f"out frame {position} (by its PTS) before it, although every frame decodes; "
                    "the time stamps contradict the decoding order (a bad remux or camera "
                    "clock). Remux the file with fresh time stamps (ffmpeg -fflags +genpts -i "
                    "IN -c copy OUT.mkv) or re-encode it.")
        self._raise_undecodable(index, missing=True)

    def _raise_undecodable(self, index: int, missing: bool = False) -> None:
        if missing:
            raise VideoError(
                f"{self.path}: frame {index} cannot be decoded (its data is damaged), while "
                "later frames decode; re-encode the file to read it whole, or skip that frame"
            )
        raise VideoError(
            f"{self.path}: frame {index} cannot be decoded (file truncated or damaged); the "
            f"last good frame is {self.info.last_good_frame} of {self._indexed} indexed; "
            "re-copy or re-encode the file, or read only frames up to the last good one"
        )

    def verify(self) -> int:
        """Decode every frame once so that ``info`` reflects the decodable frames.

        Returns
        -------
        int
            Number of decodable frames (``info.n_frames`` afterwards).
        """
        try:
            for _ in self._sequential(0, self.info.n_frames):
                pass
        except VideoError:
            pass
        return self.info.n_frames


class _UnsafeKeyframe(Exception):
    """Internal: a seek landed on a corrupt keyframe or past it (we seek further back)."""

    def __init__(self, pts: int, corrupt: bool) -> None:
        super().__init__(pts)
        self.corrupt = corrupt


def content_hash(path: str | os.PathLike[str], sample_bytes: int = 1 << 20) -> str:
    """Fast fingerprint of a video file's content, for stores and resumable runs.

    sha256 over the file size, the first and last ``sample_bytes`` and 8 evenly spaced samples of
    ``sample_bytes // 16`` in between; a folder of frames hashes each frame file's name and its
    fingerprint. Reads about 2.5 MB whatever the file size, so it is not a full-content
    checksum: it tells files apart (another recording, a re-encode, a truncation), not every
    flipped bit.

    Parameters
    ----------
    path : str or PathLike
        Video file or image folder.
    sample_bytes : int
        Size of the head and tail samples.

    Returns
    -------
    str
        ``"sha256s:"`` followed by 64 hex digits.

    Raises
    ------
    VideoError
        The path cannot be read.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        if path.is_dir():
            files = sorted(
                (p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                key=lambda p: natural_sort_key(p.name),
            )
            for file in files:
                digest.update(file.name.encode())
                digest.update(_file_fingerprint(file, 1 << 14))
        else:
            digest.update(_file_fingerprint(path, sample_bytes))
    except OSError as exc:
        raise VideoError(f"{path}: cannot be read for hashing ({exc}); check the path") from exc
    return "sha256s:" + digest.hexdigest()


def _file_fingerprint(path: Path, sample_bytes: int) -> bytes:
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        if size <= 2 * sample_bytes + 8 * (sample_bytes // 16):
            digest.update(handle.read())
            return digest.digest()
        digest.update(handle.read(sample_bytes))
        middle = sample_bytes // 16
        for k in range(1, 9):
            handle.seek(size * k // 9)
            digest.update(handle.read(middle))
        handle.seek(size - sample_bytes)
        digest.update(handle.read(sample_bytes))
    return digest.digest()
