"""Frame-accurate random access on the real recordings under ../shared/data/real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from prism_science.video import open_video

VIDEOS = [
    "dlc_openfield/m3v1mp4.mp4",  # old x264, yuv444p: seeks need the first packet's SEI
    "horse/BrownHorseinShadow.mp4",
    "mabe_mice/EGS8X2MN4SSUGFWAV976.mp4",
    "sleap_flies/centered_pair_small.mp4",
    "sleap_flies/clip.mp4",
]


@pytest.mark.slow
@pytest.mark.parametrize("name", VIDEOS)
def test_random_access_matches_sequential(shared_dir: Path, name: str) -> None:
    path = shared_dir / "data" / "real" / name
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    rng = np.random.default_rng(1)
    with open_video(path, cache_size=0) as reader:
        # a decode budget that crosses a keyframe, except for the 1024x1024 video
        limit = min(reader.n_frames, 40 if reader.info.width >= 1000 else 200)
        truth = np.concatenate([c for _, c in reader.iter_chunks(32, 0, limit)])
        assert truth.shape == (limit, reader.info.height, reader.info.width, 3)
        for i in [limit - 1, *rng.integers(0, limit, 3).tolist(), 1]:
            np.testing.assert_array_equal(reader.get_frame(i), truth[i], err_msg=f"frame {i}")
