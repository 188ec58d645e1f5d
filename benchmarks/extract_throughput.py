"""Feature extraction throughput and memory: end-to-end vs decode-only, peak RSS on a long video.

Run::

    nice .venv/bin/python benchmarks/extract_throughput.py     # all parts: 1 min idle, 5 at load 12
    nice .venv/bin/python benchmarks/extract_throughput.py --threads-sweep --skip 720p memory
    nice .venv/bin/python benchmarks/extract_throughput.py --long   # part 3 on 30 min: ~30 min

Defaults are the CLI's: ``prism-science extract`` with the default model, hop 8, the default
thread count (``default_threads()``) and ``--precision auto``. Every figure is printed with the
model, threads, precision, hop and the machine's load average that made it.

Part 1 and 2 measure, in the same process and on the same frames: decode-only frames/s (frames
decoded and resized to the model's input inside PyAV, as extraction does), encode-only frames/s
(the encoder on the same number of clips, already decoded), and end-to-end frames/s (decode
thread + encoder + Zarr writes, `prism_science.extraction.extract_ranges`). Part 1 uses the real
open-field mouse video (640x480, ../shared), part 2 a 720p synthetic video written here.
Part 3 writes a low-complexity video (default 1 min at 15 fps, 320x240; ``--long``: 30 min) and
extracts it in a child process while sampling its RSS; it prints RSS over time and the peak.
``--threads-sweep`` measures end-to-end frames/s at 1 .. N torch threads on the real video
(interleaved rounds), the measurement behind the CLI's thread default.
Targets (docs/extraction.md): end-to-end >= 0.8 x decode-only; peak RSS < 1.5 GB.
The real video comes from the shared data folder (``--shared``, ``$PRISM_SHARED`` or
``../shared``); without it part 1 is skipped with a message saying where it looked.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import av
import numpy as np
import psutil
import torch
from _common import add_shared_argument, find_shared, machine, settings

from prism_science.extraction import VideoSource, extract_ranges, prepare_video
from prism_science.extraction.features import (
    default_threads,
    feature_key,
    feature_provenance,
    load_encoder,
    model_feature_shape,
)
from prism_science.extraction.windows import WindowParams, plan_windows, window_range
from prism_science.models import find_weights
from prism_science.store import open_store
from prism_science.video import open_video

REAL_VIDEO = "data/real/dlc_openfield/m3v1mp4.mp4"  # under the shared data folder


def write_synthetic(path: Path, n_frames: int, width: int, height: int, fps: int,
                    preset: str = "veryfast") -> Path:
    """A moving-blob video; low complexity so that long ones encode quickly."""
    yy, xx = np.mgrid[0:height, 0:width]
    background = ((xx * 255 // max(1, width - 1)) // 2).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps, options={"preset": preset})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        radius = max(4, height // 12)
        for i in range(n_frames):
            cx = int((0.5 + 0.4 * np.sin(i / 23.0)) * width)
            cy = int((0.5 + 0.4 * np.cos(i / 31.0)) * height)
            y0, y1 = max(0, cy - radius), min(height, cy + radius)
            x0, x1 = max(0, cx - radius), min(width, cx + radius)
            frame = np.empty((height, width, 3), np.uint8)
            frame[...] = background[..., None]
            frame[y0:y1, x0:x1, 0] = 230
            frame[y0:y1, x0:x1, 1] = (i * 3) % 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_only(path: Path, n_frames: int, size: int) -> float:
    """Frames/s of decoding + resizing inside PyAV, consuming chunks like extraction does."""
    with open_video(path) as reader:
        t0 = time.perf_counter()
        count = 0
        for _, chunk in reader.iter_chunks(16, 0, n_frames, size=(size, size)):
            count += chunk.shape[0]
        return count / (time.perf_counter() - t0)


def encode_only(model: torch.nn.Module, n_frames: int, params: WindowParams,
                batch_size: int) -> float:
    """Frames/s of the encoder alone on as many clips as ``n_frames`` frames need."""
    plan = plan_windows(n_frames, model.num_frames, params)
    w0, w1 = window_range(plan, 0, n_frames)
    clips = torch.rand(batch_size, model.num_frames, model.image_size, model.image_size, 3)
    with torch.inference_mode():
        model(clips[:1])  # warm-up
        t0 = time.perf_counter()
        for w in range(w0, w1, batch_size):
            model(clips[: min(batch_size, w1 - w)])
        return n_frames / (time.perf_counter() - t0)


def end_to_end(model: torch.nn.Module, path: Path, n_frames: int, params: WindowParams,
               batch_size: int, workdir: Path) -> float:
    """Frames/s of decode thread + encoder + Zarr writes over frames 0..n_frames-1."""
    key = feature_key(model, params)
    with open_store(workdir / f"{path.stem}.zarr", "w") as store:
        source = VideoSource(path, path.name, path.name)
        job = prepare_video(store, source, key, model_feature_shape(model, params),
                            feature_provenance(model, params))
        t0 = time.perf_counter()
        written = extract_ranges(model, store, source.video_id, path, key, params,
                                 [(0, n_frames)], batch_size=batch_size)
        elapsed = time.perf_counter() - t0
    assert job is not None and written == n_frames
    return n_frames / elapsed


def throughput(name: str, path: Path, model: torch.nn.Module, params: WindowParams,
               frames: int, batch_size: int, workdir: Path, repeats: int) -> None:
    with open_video(path) as reader:
        info = reader.info
    n = min(frames, info.n_frames)
    n = n if n == info.n_frames else max(256, n // 256 * 256)  # whole chunks
    # Interleaved rounds, best of each: the load of a shared machine changes from second to second.
    dec = enc = e2e = 0.0
    for _ in range(repeats):
        dec = max(dec, decode_only(path, n, model.image_size))
        enc = max(enc, encode_only(model, n, params, batch_size))
        e2e = max(e2e, end_to_end(model, path, n, params, batch_size, workdir))
    where = _where(model, params, batch_size)
    print(f"\n== {name}: {path.name} {info.width}x{info.height}, {n} of {info.n_frames} frames, "
          f"best of {repeats} {where}")
    print(f"decode-only  {dec:8.1f} frames/s  (resized to {model.image_size}px in PyAV)")
    print(f"encode-only  {enc:8.1f} frames/s  ({params.mode} windows)")
    print(f"end-to-end   {e2e:8.1f} frames/s  (decode thread + encoder + Zarr writes)")
    print(f"end-to-end / decode-only           = {e2e / dec:5.2f}  (target >= 0.80)")
    print(f"end-to-end / min(decode, encode)   = {e2e / min(dec, enc):5.2f}  (overlap; 1.0 ideal)")


def _where(model: torch.nn.Module, params: WindowParams, batch_size: int,
           threads: int | None = None) -> str:
    return settings(model.name, threads=threads,
                    precision=getattr(model, "inference_precision", "fp32"),
                    hop=params.hop, matmul=getattr(model, "matmul_backend", "default"),
                    batch=batch_size)


def threads_sweep(path: Path, model_name: str, precision: str, params: WindowParams,
                  frames: int, batch_size: int, workdir: Path, repeats: int) -> None:
    """End-to-end frames/s at 1 .. usable-cores torch threads, interleaved rounds."""
    counts = list(range(1, os.cpu_count() + 1)) if os.cpu_count() else [1]
    models = {}
    for threads in counts:  # each model measures its matmul backend at its thread count
        torch.set_num_threads(threads)
        models[threads] = load_encoder(model_name, precision=precision, matmul="auto",
                                       batch_size=batch_size)
    best = dict.fromkeys(counts, 0.0)
    with open_video(path) as reader:
        n = min(frames, reader.info.n_frames)
    for _ in range(repeats):
        for threads in counts:
            torch.set_num_threads(threads)
            best[threads] = max(best[threads], end_to_end(models[threads], path, n, params,
                                                          batch_size, workdir))
    print(f"\n== threads: end-to-end frames/s on {path.name}, {n} frames, best of {repeats}")
    for threads in counts:
        print(f"{threads} torch thread(s): {best[threads]:7.1f} frames/s  x"
              f"{best[threads] / best[1]:.2f} vs 1 thread "
              f"{_where(models[threads], params, batch_size, threads)}")
    print(f"extract's default here now: {default_threads()} thread(s) (all usable cores when "
          "the load average is below 1, else one left to decoding)")


def memory_child(path: str, model_name: str, params_json: str, store_path: str,
                 batch_size: int, threads: int, precision: str = "fp32") -> None:
    """Child process of part 3: extract one long video with the real pipeline."""
    torch.set_num_threads(threads)
    model = load_encoder(model_name, device="cpu", precision=precision, batch_size=batch_size)
    params = WindowParams(**json.loads(params_json))
    # A hop longer than this model's clip would leave frames without clips.
    params = dataclasses.replace(params, hop=min(params.hop, model.num_frames * params.stride))
    key = feature_key(model, params)
    with open_store(store_path, "w") as store:
        source = VideoSource(Path(path), Path(path).name, Path(path).name)
        job = prepare_video(store, source, key, model_feature_shape(model, params),
                            feature_provenance(model, params))
        t0 = time.perf_counter()
        extract_ranges(model, store, source.video_id, path, key, params, job.ranges,
                       batch_size=batch_size)
        store.mark_complete(source.video_id, key)
        print(json.dumps({"frames": job.n_frames, "seconds": time.perf_counter() - t0,
                          "where": _where(model, params, batch_size)}))


def memory(minutes: float, model_name: str, params: WindowParams, batch_size: int,
           threads: int, workdir: Path, precision: str) -> None:
    fps, width, height = 15, 320, 240
    n = int(minutes * 60 * fps)
    path = workdir / f"long_{minutes:g}min.mp4"
    t0 = time.perf_counter()
    if not path.exists():  # kept between runs with --workdir
        write_synthetic(path, n, width, height, fps, preset="ultrafast")
    print(f"\n== memory: {minutes:g} min at {fps} fps, {width}x{height} = {n} frames "
          f"(ready in {time.perf_counter() - t0:.0f} s), model {model_name}")
    cmd = [sys.executable, __file__, "--child", str(path), model_name,
           json.dumps(dataclasses.asdict(params)), str(workdir / "long.zarr"), str(batch_size),
           str(threads), precision]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    child = psutil.Process(proc.pid)
    samples: list[tuple[float, float]] = []
    start = time.perf_counter()

    def sample() -> None:
        while proc.poll() is None:
            try:
                samples.append((time.perf_counter() - start, child.memory_info().rss / 2**20))
            except psutil.Error:
                break
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    sampler.join()
    result = json.loads(out.strip().splitlines()[-1])
    samples = [(t, r) for t, r in samples if r > 0] or [(0.0, 0.0)]  # 0: the child had exited
    peak = max(r for _, r in samples)
    step = max(1, len(samples) // 10)
    print("RSS over time (s: MiB): " + ", ".join(f"{t:.0f}: {r:.0f}" for t, r in samples[::step]))
    print(f"frames {result['frames']} in {result['seconds']:.0f} s "
          f"({result['frames'] / result['seconds']:.0f} frames/s) {result['where']}")
    print(f"peak RSS {peak:.0f} MiB = {peak / 1024:.2f} GiB  (target < 1.5 GB); "
          f"RSS at 10% of the run {samples[len(samples) // 10][1]:.0f} MiB, at the end "
          f"{samples[-1][1]:.0f} MiB {result['where']}")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        memory_child(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]),
                     int(sys.argv[7]), sys.argv[8])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_model = "default" if find_weights("default") else "prism-tiny-p16-f16-r128"
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--frames", type=int, default=256, help="frames measured per video")
    parser.add_argument("--hop", type=int, default=8, help="frames between clips (extract's "
                        "default 8; 16 encodes half as many clips)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass "
                        "(extract's default)")
    parser.add_argument("--threads", type=int, default=default_threads(),
                        help="torch threads (default: extract's, default_threads())")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the best is kept")
    parser.add_argument("--minutes", type=float, default=1.0, help="length of part 3's video")
    parser.add_argument("--long", action="store_true",
                        help="part 3 on a 30-minute video (tens of minutes with the default "
                        "model on 2 cores)")
    parser.add_argument("--threads-sweep", action="store_true",
                        help="also measure end-to-end frames/s at 1 .. N threads")
    parser.add_argument("--memory-model", default=None,
                        help="model of part 3 (default --model)")
    parser.add_argument("--workdir", default=None,
                        help="keep generated videos and stores here (default: a temp folder)")
    parser.add_argument("--skip", nargs="*", default=[], choices=("real", "720p", "memory"))
    add_shared_argument(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = WindowParams(hop=args.hop)
    minutes = 30.0 if args.long else args.minutes
    print(machine())
    shared = find_shared(args.shared) if "real" not in args.skip or args.threads_sweep else None
    real_video = shared / REAL_VIDEO if shared is not None else None
    model = load_encoder(args.model, device="cpu", precision=args.precision,
                         batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        if "real" not in args.skip or args.threads_sweep:
            if real_video is not None and real_video.is_file():
                if "real" not in args.skip:
                    throughput("real", real_video, model, params, args.frames,
                               args.batch_size, workdir, args.repeats)
                if args.threads_sweep:
                    threads_sweep(real_video, args.model, args.precision, params, args.frames,
                                  args.batch_size, workdir, args.repeats)
                    torch.set_num_threads(args.threads)
            else:
                print(f"\n== real: {real_video or REAL_VIDEO} not found, skipped (give the "
                      "shared data folder with --shared)")
        if "720p" not in args.skip:
            synthetic = write_synthetic(workdir / "synthetic_720p.mp4", args.frames, 1280, 720,
                                        30)
            throughput("720p synthetic", synthetic, model, params, args.frames,
                       args.batch_size, workdir, args.repeats)
        if "memory" not in args.skip:
            memory(minutes, args.memory_model or args.model, params, args.batch_size,
                   args.threads, workdir, args.precision)


if __name__ == "__main__":
    main()
