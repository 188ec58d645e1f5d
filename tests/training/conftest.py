"""Fixtures of the training tests: a few tiny videos with captions, written with PyAV."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 70, 230),
           "yellow": (230, 220, 40), "white": (240, 240, 240), "purple": (150, 50, 200)}


def write_clip(path: Path, colour: tuple[int, int, int], n_frames: int = 12, size: int = 32,
               speed: int = 2) -> None:
    """A square of ``colour`` moving right by ``speed`` px per frame on a grey background."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for i in range(n_frames):
            frame = np.full((size, size, 3), 90, np.uint8)
            x = (i * speed) % (size - 8)
            frame[10:18, x : x + 8] = colour
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 6 tiny clips (32 px, 12 frames) and ``manifest.jsonl`` with captions."""
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny_videos")
    rows = []
    for k, (name, rgb) in enumerate(COLOURS.items()):
        write_clip(folder / f"clip{k}.mp4", rgb, speed=1 + k % 3)
        rows.append({"path": f"clip{k}.mp4", "caption": f"a {name} square moves right"})
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder
