"""The lazy frame-exact video array behind the napari layer (no Qt needed)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_prism._lazy_video import LazyVideo
from prism_science.errors import VideoError
from prism_science.video import open_video


def test_lazy_video_is_frame_exact_and_array_like(synth_clip):
    video = LazyVideo(synth_clip)
    try:
        assert video.shape == (90, 64, 64, 3) and video.dtype == np.uint8 and video.ndim == 4
        with open_video(synth_clip) as reader:
            for index in (0, 57, 13, 89, 14, 3):
                np.testing.assert_array_equal(video[index], reader.get_frame(index))
            np.testing.assert_array_equal(video[-1], reader.get_frame(89))
            np.testing.assert_array_equal(video[5:8], reader.get_frames([5, 6, 7]))
            np.testing.assert_array_equal(video[10, 2:4, :, 0], reader.get_frame(10)[2:4, :, 0])
            np.testing.assert_array_equal(video[(20, slice(None), slice(None))],
                                          reader.get_frame(20))
    finally:
        video.close()


def test_read_ahead_fills_the_cache(synth_clip):
    video = LazyVideo(synth_clip, prefetch=6)
    try:
        video[30]
        assert video.wait_prefetched(35)
        hits = video.hits
        with open_video(synth_clip) as reader:
            np.testing.assert_array_equal(video[33], reader.get_frame(33))
        assert video.hits == hits + 1  # served from the read-ahead, not decoded again
    finally:
        video.close()


def test_out_of_range_frame_names_the_file(synth_clip):
    video = LazyVideo(synth_clip, prefetch=0)
    try:
        with pytest.raises(VideoError, match="clip.mp4"):
            video[500]
    finally:
        video.close()
