"""Fixtures of the store/extraction tests: tiny videos written with PyAV."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

TEST_MODEL = "prism-test-p8-f4-r32"


def write_video(path: Path, n_frames: int, width: int = 64, height: int = 48, seed: int = 0,
                fps: int = 30) -> Path:
    """A small h264 video with moving content (deterministic by seed)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n_frames):
            frame = np.roll(base, shift=3 * i, axis=1)
            frame[(2 * i) % height, :, :] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)


@pytest.fixture
def video_folder(tmp_path: Path) -> Path:
    """``videos/`` with a.mp4 (37 frames), sub/b.mp4 (20 frames)."""
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    write_video(folder / "a.mp4", 37, seed=1)
    write_video(folder / "sub" / "b.mp4", 20, seed=2)
    return folder
