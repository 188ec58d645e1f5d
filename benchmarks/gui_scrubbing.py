"""Scrubbing speed of the napari plugin on a 720p video: step one frame, jump to random frames.

Writes a 1280x720 h264 clip with PyAV (moving shapes and noise, so that frames differ), opens it
in napari with the plugin's reader (lazy, frame-exact, read-ahead), then measures the time from
moving the frame slider to the new frame being drawn on the canvas:

- stepping forward one frame (median after warm-up; target < 50 ms),
- jumping to random frames (median and 90th percentile; target < 300 ms),

for a camera-like keyframe interval (1 s) and x264's default (250 frames). For scale, the same
process also times a bare ``VideoReader.get_frame`` for each access pattern.

Run under a display (Xvfb is fine)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python benchmarks/gui_scrubbing.py
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def write_720p(path: Path, n_frames: int, fps: int, gop: int | None) -> Path:
    """A 1280x720 h264 clip whose every frame differs (moving discs over noise)."""
    rng = np.random.default_rng(0)
    height, width = 720, 1280
    yy, xx = np.mgrid[0:height, 0:width]
    background = rng.integers(40, 90, size=(height, width, 3), dtype=np.uint8)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        options = {"preset": "veryfast", "crf": "23"}
        if gop is not None:
            options["g"] = str(gop)
        stream.options = options
        for i in range(n_frames):
            frame = background.copy()
            for k in range(3):
                cx = (200 + 300 * k + 9 * i) % width
                cy = (360 + 200 * np.sin(i / 15 + k)) % height
                disc = (xx - cx) ** 2 + (yy - cy) ** 2 < (40 + 10 * k) ** 2
                frame[disc] = (255, 80 * k, 40)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def time_viewer(viewer, layer, frames: list[int]) -> list[float]:
    """Milliseconds from setting the slider to the canvas having drawn each frame."""
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas.native
    out = []
    for frame in frames:
        t0 = time.perf_counter()
        viewer.dims.set_current_step(0, frame)
        canvas.repaint()  # draw now (the slice was loaded synchronously by the slider move)
        QApplication.processEvents()
        out.append((time.perf_counter() - t0) * 1000)
        shown = np.asarray(layer._slice.image.raw)
        if not np.array_equal(shown, layer.data.frame(frame)):
            raise AssertionError(f"frame {frame}: the layer does not show the requested frame")
    return out


def time_reader(path: Path, frames: list[int]) -> list[float]:
    """Milliseconds of a bare VideoReader.get_frame (no cache) for the same accesses."""
    from prism_science.video import open_video

    out = []
    with open_video(path, cache_size=0) as reader:
        for frame in frames:
            t0 = time.perf_counter()
            reader.get_frame(frame)
            out.append((time.perf_counter() - t0) * 1000)
    return out


def summary(name: str, ms: list[float], base: list[float] | None = None) -> str:
    q90 = float(np.percentile(ms, 90))
    text = f"  {name:<34} median {statistics.median(ms):7.1f} ms   p90 {q90:7.1f} ms"
    if base:
        text += f"   (bare get_frame median {statistics.median(base):6.1f} ms)"
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames in the test clip")
    parser.add_argument("--steps", type=int, default=60, help="timed one-frame steps")
    parser.add_argument("--jumps", type=int, default=30, help="timed random jumps")
    args = parser.parse_args()

    import napari
    import torch

    from napari_prism._link import link

    torch.set_num_threads(2)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"1280x720 h264, {args.frames} frames at 30 fps; napari {napari.__version__}")
        for gop, label in ((30, "keyframe every 30 frames (1 s)"), (None, "x264 default GOP")):
            path = write_720p(Path(tmp) / f"clip_{gop}.mp4", args.frames, 30, gop)
            viewer = napari.Viewer(show=True)
            viewer.window._qt_window.resize(1600, 1000)
            try:
                layer = viewer.open(str(path), plugin="prism-science")[0]
                link(viewer)  # the timeline dock, as in real use
                start = 10
                time_viewer(viewer, layer, [start, start + 1, start + 2])  # warm-up
                steps = list(range(start + 3, start + 3 + args.steps))
                step_ms = time_viewer(viewer, layer, steps)
                jumps = [int(j) for j in rng.integers(0, args.frames, size=args.jumps)]
                jump_ms = time_viewer(viewer, layer, jumps)
                print(f"{label}:")
                print(summary("step one frame forward", step_ms, time_reader(path, steps)))
                print(summary("jump to a random frame", jump_ms, time_reader(path, jumps)))
                print(f"  read-ahead cache hits {layer.data.hits}, decodes {layer.data.misses}")
            finally:
                viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
