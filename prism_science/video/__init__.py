"""Frame-exact video reading: files PyAV decodes and folders of images."""

from __future__ import annotations

from prism_science.video.index import (
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    VideoInfo,
)
from prism_science.video.reader import (
    VideoReader,
    content_hash,
    open_video,
)

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "VideoInfo",
    "VideoReader",
    "content_hash",
    "open_video",
]
