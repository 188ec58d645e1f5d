"""Frame-accurate video reading: any file PyAV decodes, or a folder of image frames.

At open, every packet of the video stream is demuxed (no decoding) and its presentation time stamp
(PTS) recorded; sorted, these PTS define the frames, so the frame count is exact whatever the
container's metadata says and timestamps are correct for variable-frame-rate video. Random access
seeks to the keyframe at or before the target PTS and decodes forward to it; a target just ahead of
the decoder's position is reached by decoding forward without a seek, and an LRU cache of decoded
frames makes going back and forth (GUI scrubbing) cheap. See docs/video.md.

Frames are numpy uint8 arrays (H, W, 3) RGB, or (N, H, W, 3); indices are 0-based.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from prism_science.errors import VideoError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VideoInfo",
    "VideoReader",
    "content_hash",
    "natural_sort_key",
    "open_video",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
"""File name endings (lower case) of the frames read from an image folder."""

# Seeking costs a demuxer seek plus a decoder flush; for a target this close ahead of the
# decoder's position, decoding forward is cheaper.
_FORWARD_DECODE_LIMIT = 8
_INTERPOLATION = "AREA"

Size = tuple[int, int]
Crop = tuple[int, int, int, int]


@dataclass(frozen=True, eq=False)
class VideoInfo:
    """What is known about a video after indexing it.

    Attributes
    ----------
    path : Path
        The video file or the image folder.
    n_frames : int
        Number of frames (decodable frames once a decode failure has been found).
    fps : float
        Average frame rate: (n_frames - 1) / (last - first timestamp); the nominal rate when the
        video has a single frame; the ``fps`` argument for image folders.
    width, height : int
        Frame size in pixels.
    timestamps : np.ndarray
        (n_frames,) float64 seconds of each frame from PTS, relative to the first frame (0.0).
    codec : str
        Decoder name (e.g. ``"h264"``), or ``"images"`` for an image folder.
    duration : float
        Seconds from the first frame to the end of the last (last timestamp + one frame).
    start_time : float
        PTS of the first frame in seconds, in the container's clock (0.0 for image folders).
    is_image_folder : bool
        Whether the frames come from a folder of images.
    pix_fmt : str
        Pixel format of the decoded frames (e.g. ``"yuv420p"``); the PIL mode for image folders.
    last_good_frame : int
        Index of the last frame known to decode; ``n_frames - 1`` unless a decode failure was found.
    """

    path: Path
    n_frames: int
    fps: float
    width: int
    height: int
    timestamps: np.ndarray
    codec: str
    duration: float
    start_time: float = 0.0
    is_image_folder: bool = False
    pix_fmt: str = ""
    last_good_frame: int = -1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(n_frames, height, width, 3), the shape of the whole video as RGB frames."""
        return (self.n_frames, self.height, self.width, 3)


def natural_sort_key(name: str) -> list[object]:
    """Key that sorts ``frame2`` before ``frame10`` (digit runs compare as numbers).

    Parameters
    ----------
    name : str
        A file name.

    Returns
    -------
    list
        Alternating lower-cased text and integers.
    """
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def open_video(
    path: str | os.PathLike[str],
    *,
    fps: float | None = None,
    cache_size: int = 64,
    threads: int = 0,
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
    return VideoReader(path, fps=fps, cache_size=cache_size, threads=threads)


def _check_size(size: Sequence[int] | None) -> Size | None:
    if size is None:
        return None
    if len(size) != 2 or int(size[0]) <= 0 or int(size[1]) <= 0:
        raise VideoError(f"size must be (height, width) with positive integers, found {size!r}")
    return int(size[0]), int(size[1])


def _convert(
    frame: av.VideoFrame | np.ndarray, size: Size | None, crop: Crop | None
) -> np.ndarray:
    """Decoded frame (PyAV frame or RGB array) -> (h, w, 3) uint8 RGB, cropped then resized."""
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
        if not self.path.exists():
            raise VideoError(f"{self.path}: no such file or folder; check the path")
        if not os.access(self.path, os.R_OK):
            raise VideoError(f"{self.path}: not readable (permission denied); fix its permissions")
        if self.path.is_dir():
            self.info = self._index_folder(30.0 if fps is None else float(fps))
        else:
            if fps is not None:
                logger.debug("%s: fps=%s ignored, timestamps come from PTS", self.path, fps)
            self.info = self._index_file()

    # ------------------------------------------------------------------ indexing
    def _index_folder(self, fps: float) -> VideoInfo:
        from PIL import Image

        if fps <= 0:
            raise VideoError(f"{self.path}: fps must be positive, found {fps}")
        files = [
            p for p in self.path.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
        ]
        if not files:
            raise VideoError(
                f"{self.path}: folder has no image frames ({', '.join(IMAGE_EXTENSIONS)}); "
                "point at a video file or a folder of frames"
            )
        files.sort(key=lambda p: natural_sort_key(p.name))
        self._files = files
        try:
            with Image.open(files[0]) as image:
                width, height = image.size
                mode = image.mode
        except (OSError, ValueError) as exc:
            raise VideoError(f"{files[0]}: frame 0 of {self.path} is not a readable image: {exc}")
        n = len(files)
        timestamps = np.arange(n, dtype=np.float64) / fps
        return VideoInfo(
            path=self.path, n_frames=n, fps=fps, width=width, height=height,
            timestamps=timestamps, codec="images", duration=n / fps, start_time=0.0,
            is_image_folder=True, pix_fmt=mode, last_good_frame=n - 1,
        )

    def _open_container(self) -> tuple[av.container.InputContainer, av.VideoStream]:
        try:
            container = av.open(str(self.path), mode="r")
        except av.FFmpegError as exc:
            raise VideoError(
                f"{self.path}: not a video PyAV/FFmpeg can open ({exc}); check the file is a "
                "complete video (re-copy or re-encode it)"
            ) from exc
        if not container.streams.video:
            container.close()
            raise VideoError(
                f"{self.path}: has no video stream (audio or data only); pass a video file"
            )
        stream = container.streams.video[0]
        if stream.codec_context is None:
            container.close()
            raise VideoError(
                f"{self.path}: video codec {stream.codec_tag or '?'} is not supported by this "
                "FFmpeg build; re-encode the video to h264 (ffmpeg -i IN -c:v libx264 OUT.mp4)"
            )
        stream.thread_type = "AUTO"
        if self._threads:
            stream.thread_count = self._threads
        return container, stream

    def _index_file(self) -> VideoInfo:
        container, stream = self._open_container()
        pts_list: list[int] = []
        key_pts: list[int] = []
        missing_pts = False
        truncated = False
        try:
            try:
                for packet in container.demux(stream):
                    if packet.size == 0:  # flush packet at end of stream
                        continue
                    pts = packet.pts if packet.pts is not None else packet.dts
                    if pts is None:
                        missing_pts = True
                        break
                    pts_list.append(int(pts))
                    if packet.is_keyframe:
                        key_pts.append(int(pts))
            except av.FFmpegError as exc:
                truncated = True
                logger.warning(
                    "%s: demuxing stopped after %d packets (%s); the file is truncated or "
                    "corrupt, frames after that point are not readable",
                    self.path, len(pts_list), exc,
                )
            codec = stream.codec_context.name
            pix_fmt = stream.codec_context.format.name if stream.codec_context.format else ""
            width, height = stream.codec_context.width, stream.codec_context.height
            time_base = stream.time_base or Fraction(1, 1)
            nominal = stream.average_rate or stream.guessed_rate or stream.base_rate
        finally:
            container.close()
        if missing_pts:
            pts_list, key_pts = self._index_by_decoding()
        if not pts_list:
            raise VideoError(
                f"{self.path}: the video stream has no frames; the file is empty or was cut "
                "before its first frame"
            )
        pts = np.array(sorted(pts_list), dtype=np.int64)
        if np.any(np.diff(pts) == 0):
            raise VideoError(
                f"{self.path}: several frames share one time stamp (frame "
                f"{int(np.argmax(np.diff(pts) == 0)) + 1}); remux it with fresh time stamps "
                "(ffmpeg -i IN -c copy -fflags +genpts OUT.mkv)"
            )
        self._pts = pts
        self._key_pts = sorted(set(key_pts)) or [int(pts[0])]
        self._time_base = time_base
        timestamps = (pts - pts[0]).astype(np.float64) * float(time_base)
        n = len(pts)
        if n > 1 and timestamps[-1] > 0:
            fps = (n - 1) / timestamps[-1]
        else:
            fps = float(nominal) if nominal else 30.0
        if not width or not height:
            raise VideoError(f"{self.path}: the video stream reports no frame size; re-encode it")
        info = VideoInfo(
            path=self.path, n_frames=n, fps=float(fps), width=int(width), height=int(height),
            timestamps=timestamps, codec=codec, duration=float(timestamps[-1] + 1.0 / fps),
            start_time=float(pts[0] * time_base), is_image_folder=False, pix_fmt=pix_fmt,
            last_good_frame=n - 1,
        )
        if truncated:
            logger.warning("%s: %d frames indexed before the damaged part", self.path, n)
        return info

    def _index_by_decoding(self) -> tuple[list[int], list[int]]:
        """Fallback for containers without packet time stamps: decode once, number the frames."""
        logger.info("%s: packets carry no time stamps; indexing by decoding every frame", self.path)
        container, stream = self._open_container()
        pts_list: list[int] = []
        try:
            for frame in container.decode(stream):
                pts_list.append(frame.pts if frame.pts is not None else len(pts_list))
        except av.FFmpegError as exc:
            logger.warning("%s: decoding stopped at frame %d: %s", self.path, len(pts_list), exc)
        finally:
            container.close()
        # Without packet time stamps seeking is unreliable: one keyframe, decode from the start.
        return pts_list, pts_list[:1]

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
        try:
            self._close_decoder()
        except Exception:
            pass

    def _check_index(self, index: int) -> int:
        index = int(index)
        n = self.info.n_frames
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise VideoError(
                f"{self.path}: frame {index} out of range; the video has {n} frames (0..{n - 1})"
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
        return _convert(self._raw_frame(index), _check_size(size), self._check_crop(crop))

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
        for index in sorted(set(checked)):
            image = _convert(self._raw_frame(index), size_, crop_)
            for j, i in enumerate(checked):
                if i == index:
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
            Bad arguments, or a frame in the range cannot be decoded; the chunks before it have
            been yielded.
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
        for _, frame in self._sequential(start, stop):
            buffer.append(_convert(frame, size_, crop_))
            if len(buffer) == chunk_size:
                yield chunk_start, np.stack(buffer)
                chunk_start += len(buffer)
                buffer = []
        if buffer:
            yield chunk_start, np.stack(buffer)

    def iter_frames(
        self, start: int = 0, stop: int | None = None, size: Sequence[int] | None = None
    ) -> Iterator[np.ndarray]:
        """Yield frames one at a time, (H, W, 3) uint8 (see :meth:`iter_chunks`)."""
        for _, chunk in self.iter_chunks(1, start, stop, size):
            yield chunk[0]

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

    def _keyframe_before(self, index: int) -> int:
        """Index of the frame of the last keyframe whose PTS is <= frame ``index``'s PTS."""
        target = int(self._pts[index])
        k = bisect.bisect_right(self._key_pts, target) - 1
        key = self._key_pts[max(k, 0)]
        return int(np.searchsorted(self._pts, key))

    def _decode_to(self, index: int) -> av.VideoFrame:
        if index > self.info.last_good_frame:
            self._raise_undecodable(index)
        ahead = self._frames_iter is not None and index > self._pos
        if not (ahead and (index - self._pos <= _FORWARD_DECODE_LIMIT
                           or self._keyframe_before(index) <= self._pos)):
            self._seek(index)
        assert self._frames_iter is not None
        for position, frame in self._frames_iter:
            self._pos = position
            if position == index:
                return frame
            if position > index:  # pragma: no cover - the target's PTS was skipped
                break
            if index - position <= self.cache_size // 2:
                self._remember(position, frame)
        self._mark_bad(index)
        self._raise_undecodable(index)
        raise AssertionError("unreachable")

    def _seek(self, index: int) -> None:
        if self._container is None:
            self._container, _ = self._open_container()
        stream = self._container.streams.video[0]
        key_index = self._keyframe_before(index)
        key_pts = int(self._pts[key_index])
        if key_index == 0 and self._frames_iter is None:
            pass  # fresh container: already at the start
        else:
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
        try:
            for frame in container.decode(stream):
                pts = frame.pts
                if pts is None or pts < min_pts:
                    continue
                position = int(np.searchsorted(pts_index, pts))
                if position >= len(pts_index) or pts_index[position] != pts:
                    continue  # a frame the index does not know (damaged packet)
                yield position, frame
        except av.FFmpegError as exc:
            logger.warning("%s: decoding failed after frame %d: %s", self.path, self._pos, exc)

    def _sequential(self, start: int, stop: int) -> Iterator[tuple[int, av.VideoFrame | np.ndarray]]:
        """Frames start..stop-1 in order from a private decoder (image folders: read files)."""
        if self.info.is_image_folder:
            for index in range(start, stop):
                yield index, self._read_image(index)
            return
        if start >= stop:
            return
        if start > self.info.last_good_frame:
            self._raise_undecodable(start)
        container, stream = self._open_container()
        try:
            key_index = self._keyframe_before(start)
            key_pts = int(self._pts[key_index])
            if key_index > 0:
                container.seek(key_pts, stream=stream, backward=True, any_frame=False)
            expected = start
            for position, frame in self._positions(container, stream, key_pts):
                if position < expected:
                    continue
                if position > expected:
                    break
                yield position, frame
                expected += 1
                if expected >= stop:
                    return
            self._mark_bad(expected)
            self._raise_undecodable(expected)
        finally:
            container.close()

    def _mark_bad(self, index: int) -> None:
        """Record that frame ``index`` does not decode: frames from it on are unreadable."""
        last_good = index - 1
        if last_good < self.info.last_good_frame:
            logger.warning(
                "%s: frame %d cannot be decoded; the last good frame is %d of %d indexed",
                self.path, index, last_good, self.info.n_frames,
            )
            self.info = dataclasses.replace(self.info, last_good_frame=last_good)

    def _raise_undecodable(self, index: int) -> None:
        raise VideoError(
            f"{self.path}: frame {index} cannot be decoded (file truncated or damaged); the "
            f"last good frame is {self.info.last_good_frame} of {self.info.n_frames} indexed; "
            "re-copy or re-encode the file, or read only frames up to the last good one"
        )


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
