"""A video as a lazy, frame-exact array for napari, with a frame cache and read-ahead.

napari slices layer data with ``data[i]`` when the frame slider moves. :class:`LazyVideo` answers
from a cache of decoded RGB frames, or decodes the frame exactly through
:func:`prism_science.video.open_video`. After each request a background thread, with its own
reader (readers are not thread-safe), decodes the next frames into the cache, so stepping forward
or playing finds its frames ready.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from prism_science.errors import VideoError
from prism_science.video import VideoInfo, VideoReader, open_video

__all__ = ["LazyVideo"]

logger = logging.getLogger(__name__)

_CACHE_BYTES = 384 * 2**20


class LazyVideo:
    """Array-like view of a video: shape (n_frames, H, W, 3), dtype uint8, frame-exact.

    Parameters
    ----------
    path : str or PathLike
        Video file or folder of image frames (see :func:`prism_science.video.open_video`).
    prefetch : int
        Frames decoded ahead of the last requested frame in a background thread (0: none).
    cache_bytes : int
        Memory budget of the RGB frame cache.
    reader : VideoReader, optional
        An already open reader to use on the calling thread (its index is reused).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        prefetch: int = 8,
        cache_bytes: int = _CACHE_BYTES,
        reader: VideoReader | None = None,
    ) -> None:
        self._reader = reader if reader is not None else open_video(path, cache_size=16)
        self.info: VideoInfo = self._reader.info
        self.path = self.info.path
        frame_bytes = self.info.height * self.info.width * 3
        self.cache_frames = max(2 * prefetch + 2, int(cache_bytes // max(frame_bytes, 1)))
        self.prefetch = max(0, int(prefetch))
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._wake = threading.Condition()
        self._target: int | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self.hits = 0
        self.misses = 0

    # ------------------------------------------------------------------ array protocol
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(n_frames, height, width, 3)."""
        return self.info.shape

    @property
    def dtype(self) -> np.dtype:
        """uint8."""
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        """4."""
        return 4

    @property
    def size(self) -> int:
        """Number of values (as a numpy array would report it)."""
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.info.n_frames

    def __repr__(self) -> str:
        return f"LazyVideo({str(self.path)!r}, shape={self.shape})"

    def __getitem__(self, key: Any) -> np.ndarray:
        """Index like a (n_frames, H, W, 3) uint8 array; frames are decoded on demand."""
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            ellipsis = key.index(Ellipsis)
            fill = (slice(None),) * (4 - len(key) + 1)
            key = key[:ellipsis] + fill + key[ellipsis + 1 :]
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            return self.frame(int(first))[rest] if rest else self.frame(int(first))
        indices = np.arange(self.info.n_frames)[first]
        frames = np.stack([self.frame(int(i)) for i in np.atleast_1d(indices)]) if np.size(
            indices) else np.empty((0, *self.shape[1:]), dtype=np.uint8)
        return frames[(slice(None), *rest)]

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        logger.warning("%s: reading all %d frames into memory", self.path, self.info.n_frames)
        frames = np.concatenate([c for _, c in self._reader.iter_chunks(64)])
        return frames if dtype is None else frames.astype(dtype)

    # ------------------------------------------------------------------ frames
    def frame(self, index: int) -> np.ndarray:
        """Frame ``index`` (negative counts from the end), (H, W, 3) uint8 RGB.

        Raises
        ------
        prism_science.errors.VideoError
            The index is out of range or the frame cannot be decoded.
        """
        if index < 0:
            index += self.info.n_frames
        with self._cache_lock:
            cached = self._cache.get(index)
            if cached is not None:
                self._cache.move_to_end(index)
        if cached is not None:
            self.hits += 1
        else:
            self.misses += 1
            with self._read_lock:
                cached = self._reader.get_frame(index)
            self._store(index, cached)
        self._request_prefetch(index + 1)
        return cached

    def cached(self, index: int) -> bool:
        """Whether frame ``index`` is in the cache (for tests and benchmarks)."""
        with self._cache_lock:
            return index in self._cache

    def _store(self, index: int, frame: np.ndarray) -> None:
        with self._cache_lock:
            self._cache[index] = frame
            self._cache.move_to_end(index)
            while len(self._cache) > self.cache_frames:
                self._cache.popitem(last=False)

    # ------------------------------------------------------------------ read-ahead
    def _request_prefetch(self, start: int) -> None:
        if self.prefetch == 0 or self._closed or start >= self.info.n_frames:
            return
        with self._wake:
            self._target = start
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._prefetch_loop, name=f"prefetch {self.path.name}", daemon=True
                )
                self._thread.start()
            self._wake.notify()

    def _prefetch_loop(self) -> None:
        reader: VideoReader | None = None
        try:
            while True:
                with self._wake:
                    while self._target is None and not self._closed:
                        self._wake.wait()
                    if self._closed:
                        return
                    start, self._target = self._target, None
                if reader is None:
                    reader = open_video(self.path, cache_size=0)
                stop = min(start + self.prefetch, self.info.last_good_frame + 1)
                try:
                    for index in range(start, stop):
                        if self._closed or self._target is not None:
                            break  # a newer request: follow the viewer
                        if not self.cached(index):
                            self._store(index, reader.get_frame(index))
                except VideoError as exc:  # best effort: the viewer's own read reports it
                    logger.debug("%s: read-ahead stopped: %s", self.path, exc)
        finally:
            if reader is not None:
                reader.close()

    def wait_prefetched(self, index: int, timeout: float = 5.0) -> bool:
        """Block until frame ``index`` is cached (tests and benchmarks); returns success."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.cached(index):
                return True
            time.sleep(0.002)
        return False

    def close(self) -> None:
        """Stop the read-ahead thread and close the readers."""
        self._closed = True
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._read_lock:
            self._reader.close()
        with self._cache_lock:
            self._cache.clear()
