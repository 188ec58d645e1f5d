"""Indexing a video at open: its frames, their timestamps and keyframes, before any reading.

A video file's packets are demuxed (no decoding) and their presentation time stamps (PTS)
recorded; sorted, these PTS define the frames, so the frame count is exact whatever the
container's metadata says and timestamps are correct for variable-frame-rate video. Packets before
the first decoded frame (edit lists) are not frames; streams without usable time stamps are indexed
by decoding them once. So are streams whose "PTS" are decode times: AVI stores no PTS and FFmpeg
takes each packet's DTS for it, so in an AVI with B-frames the decoder hands out frames in display
order carrying time stamps in decode order; when the packets' PTS rise in decode order although
the codec reorders frames, the first decoded frames are checked and, if their PTS are out of
order, display order is rebuilt by numbering the decoded frames. An image folder's frames are
its image files in natural order. The result is a :class:`VideoInfo`; reading frames is
:class:`prism_science.video.VideoReader`'s job. The container helpers shared with the reader
(opening, decoding with damaged packets skipped, priming the decoder before a seek) live here
too. See docs/video.md.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from prism_science.errors import VideoError

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "FileIndex",
    "VideoInfo",
    "decoded_frames",
    "index_file",
    "index_folder",
    "natural_sort_key",
    "open_container",
    "prime",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".mpg", ".mpeg", ".webm", ".wmv",
                    ".flv", ".ts", ".mts", ".h264")
"""File endings (lower case) taken from folders when no ``glob`` is given."""
"""File name endings (lower case) of the frames read from an image folder."""


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
    rotation : int
        Degrees counterclockwise (0, 90, 180 or -90) that the file's display matrix asks players
        to rotate the frames by. Frames are read rotated, as players show them: ``width`` and
        ``height`` are the displayed size (swapped from the coded size at +-90).
    declared_frames : int or None
        Frame count the container declares (its frame count, else its video stream's duration
        times the nominal rate); None when it declares none. More than ``n_frames`` (beyond a
        small tolerance) means the file is cut short: see :attr:`short`.
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
    rotation: int = 0
    declared_frames: int | None = None

    @property
    def short(self) -> bool:
        """Whether fewer frames can be read than the container declares (a truncated file).

        A tolerance of 2 frames + 0.5 % absorbs frames dropped by edit lists and rounding.
        """
        if self.declared_frames is None:
            return False
        return self.n_frames < self.declared_frames - 2 - 0.005 * self.declared_frames

    def frame_at(self, seconds: float | np.ndarray) -> int | np.ndarray:
        """Index of the frame on screen at ``seconds`` (the last frame whose timestamp <= it).

        Parameters
        ----------
        seconds : float or np.ndarray
            Time(s) from the first frame; clipped to the video.

        Returns
        -------
        int or np.ndarray
            Frame index, or an int64 array of the input's shape.
        """
        # Tolerate float error in times computed as index / fps.
        index = np.searchsorted(self.timestamps, np.asarray(seconds) + 1e-9, side="right") - 1
        index = np.clip(index, 0, self.n_frames - 1)
        return int(index) if np.ndim(index) == 0 else index.astype(np.int64)

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


@dataclass(frozen=True, eq=False)
class FileIndex:
    """A video file's index (:func:`index_file`): what a reader needs to find each frame.

    Attributes
    ----------
    info : VideoInfo
    pts : np.ndarray
        (n_frames,) int64 sorted PTS of the frames, in the stream's time base; frame ``i`` is the
        one whose PTS is ``pts[i]``.
    key_pts : list of int
        Sorted PTS of the keyframes (seek targets).
    counted : bool
        Whether the stream had no usable time stamps and frames were numbered by decoding: then
        ``pts`` is ``0 .. n_frames - 1`` and every access must decode from the start.
    """

    info: VideoInfo
    pts: np.ndarray
    key_pts: list[int]
    counted: bool


def index_folder(path: Path, fps: float) -> tuple[VideoInfo, list[Path]]:
    """Index a folder of image frames: its frame files in natural order and their size.

    Parameters
    ----------
    path : Path
        The folder.
    fps : float
        Frame rate; timestamps are index / fps.

    Returns
    -------
    (VideoInfo, list of Path)
        What is known about the frames, and the frame files in frame order.

    Raises
    ------
    VideoError
        ``fps`` is not positive, the folder has no image frames, or frame 0 is not readable.
    """
    from PIL import Image

    if fps <= 0:
        raise VideoError(f"{path}: fps must be positive, found {fps}")
    files = [
        p for p in path.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    if not files:
        raise VideoError(
            f"{path}: folder has no image frames ({', '.join(IMAGE_EXTENSIONS)}); "
            "point at a video file or a folder of frames"
        )
    files.sort(key=lambda p: natural_sort_key(p.name))
    try:
        with Image.open(files[0]) as image:
            width, height = image.size
            mode = image.mode
    except (OSError, ValueError) as exc:
        raise VideoError(
            f"{files[0]}: frame 0 of {path} is not a readable image ({exc}); replace "
            "or remove it"
        ) from exc
    n = len(files)
    timestamps = np.arange(n, dtype=np.float64) / fps
    info = VideoInfo(
        path=path, n_frames=n, fps=fps, width=width, height=height,
        timestamps=timestamps, codec="images", duration=n / fps, start_time=0.0,
        is_image_folder=True, pix_fmt=mode, last_good_frame=n - 1,
    )
    return info, files


def open_container(
    path: Path, threads: int = 0
) -> tuple[av.container.InputContainer, av.VideoStream]:
    """Open a video file and its first video stream for demuxing and decoding.

    Parameters
    ----------
    path : Path
        The video file.
    threads : int
        Decoder threads (0: FFmpeg chooses).

    Returns
    -------
    (InputContainer, VideoStream)
        The open container (the caller closes it) and its first video stream.

    Raises
    ------
    VideoError
        The file is empty, not a video, has no video stream, or its codec cannot be decoded.
    """
    if path.stat().st_size == 0:
        raise VideoError(f"{path}: the file is empty (0 bytes), no frames; re-copy it")
    try:
        container = av.open(str(path), mode="r")
    except av.EOFError as exc:
        raise VideoError(
            f"{path}: the file ends before its first frame (no frames: empty or "
            "truncated); re-copy or re-record it"
        ) from exc
    except av.FFmpegError as exc:
        raise VideoError(
            f"{path}: not a video PyAV/FFmpeg can open ({exc}); check the file is a "
            "complete video (re-copy or re-encode it)"
        ) from exc
    if not container.streams:
        container.close()
        raise VideoError(f"{path}: the container holds no streams, no frames; re-record it")
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: has no video stream (audio or data only); pass a video file")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise VideoError(
            f"{path}: video codec {stream.codec_tag or '?'} is not supported by this "
            "FFmpeg build; re-encode the video to h264 (ffmpeg -i IN -c:v libx264 OUT.mp4)"
        )
    stream.thread_type = "AUTO"
    if threads:
        stream.thread_count = threads
    return container, stream


def index_file(path: Path, threads: int = 0) -> FileIndex:
    """Index a video file from its packets: frames, timestamps and keyframes (see module doc).

    Parameters
    ----------
    path : Path
        The video file.
    threads : int
        Decoder threads (0: FFmpeg chooses).

    Returns
    -------
    FileIndex

    Raises
    ------
    VideoError
        The file cannot be opened as a video, or its video stream has no frames or no size.
    """
    container, stream = open_container(path, threads)
    pts_list: list[int] = []
    key_pts: list[int] = []
    missing_pts = False
    counted = False
    truncated = False
    reorders = False
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
                path, len(pts_list), exc,
            )
        codec = stream.codec_context.name
        pix_fmt = stream.codec_context.format.name if stream.codec_context.format else ""
        width, height = stream.codec_context.width, stream.codec_context.height
        time_base = stream.time_base or Fraction(1, 1)
        nominal = stream.average_rate or stream.guessed_rate or stream.base_rate
        reorders = bool(stream.codec_context.has_b_frames)
        declared = _declared_frames(stream, nominal)
    finally:
        container.close()
    # Packet PTS rising in decode order although the codec reorders frames: decode times taken
    # for PTS (AVI), or B-frames not yet used; the decoded frames' PTS tell which.
    dts_as_pts = reorders and all(a < b for a, b in zip(pts_list, pts_list[1:], strict=False))
    head, rotation = (_decoded_pts_head(path, threads,
                                        _REORDER_CHECK_FRAMES if dts_as_pts else 1)
                      if pts_list and not missing_pts else ([], 0))
    first = head[0] if head else None
    if any(b is None or a is None or b <= a for a, b in zip(head, head[1:], strict=False)):
        logger.info("%s: time stamps are decode times (%s with B-frames); rebuilding the display "
                    "order by decoding", path, codec)
        missing_pts = True
    backwards = next((k for k in range(1, len(pts_list)) if pts_list[k] <= pts_list[k - 1]),
                     None) if not reorders and not missing_pts else None
    if backwards is not None:
        # A codec that does not reorder hands out frames in decode order: time stamps that go
        # back in that order are wrong (a camera clock reset, a bad remux), not damaged frames.
        logger.warning(
            "%s: time stamps go back at frame %d (PTS %d after %d, time base %s) although every "
            "frame decodes in order; frames are numbered in decode order, their timestamps "
            "taken from the nominal rate (%s fps), and every read decodes from the start. "
            "Remux the file with fresh time stamps to read it faster.",
            path, backwards, pts_list[backwards], pts_list[backwards - 1], time_base, nominal)
        missing_pts = True
    if first is not None and first in pts_list:
        # Packets before the first decoded frame are dropped by the decoder (edit lists).
        pts_list = [p for p in pts_list if p >= first]
        key_pts = [p for p in key_pts if p >= first]
    if missing_pts or first not in pts_list or len(set(pts_list)) < len(pts_list):
        # No usable time stamps (raw streams, duplicates): frames are numbered by decoding
        # once; timestamps are index / nominal rate and every access decodes from the start.
        pts_list = list(range(_count_by_decoding(path, threads)))
        key_pts = [0]
        time_base = Fraction(1) / Fraction(nominal or 30).limit_denominator(1001)
        counted = True
    if not pts_list:
        raise VideoError(
            f"{path}: the video stream has no frames; the file is empty or was cut "
            "before its first frame"
        )
    pts = np.array(sorted(pts_list), dtype=np.int64)
    key_pts = sorted(set(key_pts)) or [int(pts[0])]
    timestamps = (pts - pts[0]).astype(np.float64) * float(time_base)
    n = len(pts)
    if n > 1 and pts[-1] > pts[0]:
        fps = float(Fraction(n - 1) / (int(pts[-1] - pts[0]) * Fraction(time_base)))
    else:
        fps = float(nominal) if nominal else 30.0
    if not width or not height:
        raise VideoError(f"{path}: the video stream reports no frame size; re-encode it")
    if rotation % 180:
        width, height = height, width  # frames are read as players show them
    info = VideoInfo(
        path=path, n_frames=n, fps=float(fps), width=int(width), height=int(height),
        timestamps=timestamps, codec=codec, duration=float(timestamps[-1] + 1.0 / fps),
        start_time=float(pts[0] * time_base), is_image_folder=False, pix_fmt=pix_fmt,
        last_good_frame=n - 1, rotation=rotation, declared_frames=declared,
    )
    if rotation:
        logger.info("%s: display matrix rotates by %d degrees; frames are read rotated "
                    "(%dx%d as players show them)", path, rotation, info.width, info.height)
    if truncated:
        logger.warning("%s: %d frames indexed before the damaged part", path, n)
    if info.short:
        logger.warning("%s: the container declares %d frames but only %d can be read: the file "
                       "is cut short (an interrupted copy or recording); re-copy it if the rest "
                       "exists", path, declared, n)
    return FileIndex(info=info, pts=pts, key_pts=key_pts, counted=counted)


_REORDER_CHECK_FRAMES = 48
"""Frames decoded to check that PTS follow display order (streams that may hold B-frames)."""


def _declared_frames(stream: av.VideoStream, nominal: Fraction | None) -> int | None:
    """The frame count a container declares for ``stream``: its frame count, else its
    duration (in the stream, else an MKV ``DURATION`` tag) times the nominal rate."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames)
    if not nominal:
        return None
    seconds = None
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        tag = (stream.metadata or {}).get("DURATION", "")
        match = re.fullmatch(r"(\d+):(\d{2}):(\d{2}(?:\.\d+)?)", tag.strip())
        if match:
            h, m, sec = match.groups()
            seconds = int(h) * 3600 + int(m) * 60 + float(sec)
    return int(round(seconds * float(nominal))) if seconds else None


def _decoded_pts_head(path: Path, threads: int, n: int) -> tuple[list[int | None], int]:
    """PTS of the first ``n`` decoded frames (None entries in raw streams without time stamps;
    fewer when the file is shorter or damaged from the start), and the first frame's rotation
    (degrees counterclockwise from its display matrix, a multiple of 90)."""
    container, stream = open_container(path, threads)
    head: list[int | None] = []
    rotation = 0
    try:
        for frame in decoded_frames(container, stream, path):
            if not head:
                rotation = _rotation(frame, path)
            head.append(frame.pts)
            if len(head) >= n:
                break
    except av.FFmpegError:
        pass  # damaged from the first frame: reported when frames are read
    finally:
        container.close()
    return head, rotation


def _rotation(frame: av.VideoFrame, path: Path) -> int:
    angle = float(getattr(frame, "rotation", 0) or 0)
    quarter = int(round(angle / 90.0)) % 4
    if abs(angle - round(angle / 90.0) * 90.0) > 1.0:
        logger.warning("%s: display rotation of %.1f degrees is not a multiple of 90; frames "
                       "are read rotated by %d", path, angle, (quarter * 90 + 180) % 360 - 180)
    return (quarter * 90 + 180) % 360 - 180 if quarter != 2 else 180
def _count_by_decoding(path: Path, threads: int) -> int:
    """Fallback for streams without usable time stamps: decode once and count the frames."""
    logger.info("%s: no usable time stamps; indexing by decoding every frame", path)
    container, stream = open_container(path, threads)
    count = 0
    try:
        for _ in decoded_frames(container, stream, path):
            count += 1
    except av.FFmpegError as exc:
        logger.warning("%s: decoding stopped at frame %d: %s", path, count, exc)
    finally:
        container.close()
    return count


def decoded_frames(
    container: av.container.InputContainer, stream: av.VideoStream, path: Path
) -> Iterator[av.VideoFrame]:
    """Decoded frames; a packet that fails to decode is logged (naming ``path``) and skipped."""
    for packet in container.demux(stream):  # ends with an empty packet that flushes
        try:
            frames = packet.decode()
        except av.FFmpegError as exc:
            logger.warning("%s: a packet (PTS %s) does not decode: %s", path, packet.pts, exc)
            continue
        yield from frames


def prime(container: av.container.InputContainer, stream: av.VideoStream) -> None:
    """Decode the first packet before a first seek: it can carry decoder settings.

    FFmpeg's h264 decoder reads the encoder version from the first frame's SEI and works around
    old x264 bugs with it; without it, keyframes of such files decode corrupt after a seek (the
    DLC open-field video is one).
    """
    with contextlib.suppress(av.FFmpegError):
        for packet in container.demux(stream):
            if packet.size:
                packet.decode()
                break
