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


def time_viewer(viewer, layer, frames: list[int], expected=None) -> tuple[list[float], list[float]]:
    """Milliseconds from setting the slider to the canvas having drawn each frame.

    Returns the total times and, separately, the part spent loading the slice (napari's
    slicing, which reads the frame from the layer data); the rest is drawing.
    """
    from qtpy.QtWidgets import QApplication

    canvas = viewer.window._qt_viewer.canvas.native
    total, sliced = [], []
    for frame in frames:
        t0 = time.perf_counter()
        viewer.dims.set_current_step(0, frame)  # slices synchronously: the frame is read here
        t1 = time.perf_counter()
        canvas.repaint()
        QApplication.processEvents()
        total.append((time.perf_counter() - t0) * 1000)
        sliced.append((t1 - t0) * 1000)
        want = expected(frame) if expected is not None else layer.data.frame(frame)
        if not np.array_equal(np.asarray(layer._slice.image.raw), want):
            raise AssertionError(f"frame {frame}: the layer does not show the requested frame")
    return total, sliced


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


def summary(name: str, ms: list[float], sliced: list[float], base: list[float]) -> str:
    return (f"  {name:<26} median {statistics.median(ms):6.1f} ms  p90 "
            f"{float(np.percentile(ms, 90)):6.1f} ms  | slicing {statistics.median(sliced):5.1f} "
            f"ms | bare get_frame {statistics.median(base):6.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300, help="frames in the test clip")
    parser.add_argument("--steps", type=int, default=60, help="timed one-frame steps")
    parser.add_argument("--jumps", type=int, default=30, help="timed random jumps")
    args = parser.parse_args()

    import napari
    import torch

    from napari_prism._link import link
    from prism_science.video import open_video

    torch.set_num_threads(2)
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"1280x720 h264, {args.frames} frames at 30 fps; napari {napari.__version__}; "
              "display stack: Qt + vispy under this process's X server (Xvfb = software GL)")
        for gop, label in ((30, "keyframe every 30 frames (1 s)"), (None, "x264 default GOP")):
            path = write_720p(Path(tmp) / f"clip_{gop}.mp4", args.frames, 30, gop)
            viewer = napari.Viewer(show=True)
            try:
                layer = viewer.open(str(path), plugin="prism-science")[0]
                link(viewer)  # the timeline dock, as in real use
                time_viewer(viewer, layer, [10, 11, 12])  # warm-up
                steps = list(range(13, 13 + args.steps))
                step_ms, step_slice = time_viewer(viewer, layer, steps)
                jumps = [int(j) for j in rng.integers(0, args.frames, size=args.jumps)]
                jump_ms, jump_slice = time_viewer(viewer, layer, jumps)
                print(f"{label}:")
                print(summary("step one frame forward", step_ms, step_slice,
                              time_reader(path, steps)))
                print(summary("jump to a random frame", jump_ms, jump_slice,
                              time_reader(path, jumps)))
                print(f"  read-ahead cache hits {layer.data.hits}, decodes {layer.data.misses}")
            finally:
                viewer.close()
        # Baseline in the same process: the same frames as an in-memory numpy array, where
        # napari reads nothing from disk -- the cost of drawing alone.
        with open_video(path) as reader:
            frames = reader.get_frames(range(0, 60))
        viewer = napari.Viewer(show=True)
        try:
            layer = viewer.add_image(frames, rgb=True, contrast_limits=[0, 255])
            link(viewer)
            time_viewer(viewer, layer, [1, 2, 3], expected=lambda f: frames[f])
            base_ms, base_slice = time_viewer(viewer, layer, list(range(4, 59)),
                                              expected=lambda f: frames[f])
            print("in-memory numpy array of the same frames (drawing only, baseline):")
            print(f"  {'step one frame forward':<26} median {statistics.median(base_ms):6.1f} ms"
                  f"  p90 {float(np.percentile(base_ms, 90)):6.1f} ms  | slicing "
                  f"{statistics.median(base_slice):5.1f} ms")
            print(f"lazy video / in-memory array, median step: "
                  f"{statistics.median(step_ms) / statistics.median(base_ms):.2f}x")
        finally:
            viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
