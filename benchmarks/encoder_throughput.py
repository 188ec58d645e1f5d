"""Encoder throughput: frames/s per variant, fp32 / bf16, eager / torch.compile, CPU and CUDA.

Prints one row per (variant, device, dtype, mode, attention) with frames/s, the model FLOPs
computed analytically (:func:`model_flops`), the achieved FLOP/s and, as a same-process
baseline, the ratio against a plain matmul of the model's width measured right before (on a
shared, loaded machine the absolute figures move; the ratio much less). On CUDA it also prints
the model FLOPs utilisation (MFU) against the GPU's peak dense matmul FLOP/s. "frames/s" is from
the median call, "best f/s" from the fastest one, "cpu f/s" (CPU only) from the process CPU time
per call times the thread count: what the cores would give if nobody else used them (a lower
bound, spinning threads count as busy).

Default run (< 3 min on 2 CPU cores)::

    python benchmarks/encoder_throughput.py

More::

    python benchmarks/encoder_throughput.py --variants prism-tiny-p16-f16-r128 \
        prism-small-p16-f16-r160 videoprism-v1-base-p18-f16-r288 --modes eager compile \
        --dtypes fp32 bf16 --attention exact fast --device cuda --batch 8
"""

from __future__ import annotations

import argparse
import time

import torch

from prism_science.models import build_model, get_config
from prism_science.models.encoder import VideoEncoderConfig

# Peak dense bf16 tensor-core FLOP/s (no sparsity), from the vendors' datasheets.
GPU_PEAK_BF16 = {
    "H100 SXM": 989e12,
    "H100 NVL": 835e12,
    "H100 PCIe": 756e12,
    "H100": 989e12,
    "H200": 989e12,
    "A100": 312e12,
    "L40S": 362e12,
    "A10": 125e12,
}


def layer_flops(tokens: int, dim: int, mlp_dim: int) -> float:
    """FLOPs of one transformer layer over a sequence of ``tokens`` (multiply-add = 2)."""
    projections = 2 * tokens * 4 * dim * dim
    mlp = 2 * tokens * 2 * dim * mlp_dim
    attention = 2 * 2 * tokens * tokens * dim
    return projections + mlp + attention


def model_flops(config: VideoEncoderConfig, frames: int | None = None) -> float:
    """Forward FLOPs of the video encoder for one clip of ``frames`` frames at its resolution."""
    t = frames or config.num_frames
    n = config.grid_size**2
    d, m, p = config.model_dim, config.mlp_dim, config.patch_size
    patch = 2 * t * n * (p * p * 3) * d
    spatial = t * config.num_spatial_layers * layer_flops(n, d, m)
    temporal = n * config.num_temporal_layers * layer_flops(t, d, m)
    return patch + spatial + temporal


def gpu_peak(name: str) -> float | None:
    """Peak bf16 FLOP/s of a GPU from its name, or None when unknown."""
    for key in sorted(GPU_PEAK_BF16, key=len, reverse=True):
        if key.lower() in name.lower():
            return GPU_PEAK_BF16[key]
    return None


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_flops_per_s(dim: int, rows: int, device: str, dtype: torch.dtype,
                       seconds: float) -> float:
    """Same-process baseline: FLOP/s of a (rows, dim) x (dim, 4*dim) matmul."""
    a = torch.randn(rows, dim, device=device, dtype=dtype)
    b = torch.randn(dim, 4 * dim, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    sync(device)
    return 2 * rows * dim * 4 * dim * count / (time.perf_counter() - start)


def measure(model: torch.nn.Module, video: torch.Tensor, device: str, dtype: torch.dtype,
            seconds: float, warmup: int) -> tuple[float, float, float]:
    """Seconds per forward call after warm-up: (median, fastest, process CPU time per call).

    On a shared machine the fastest call shows what the model does when it gets the cores, and
    the CPU time per call what it costs (threads spinning while they wait count too, so the
    frames/s derived from it are a lower bound of what free cores would give).
    """
    autocast = torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype != torch.float32)
    times = []
    with torch.inference_mode(), autocast:
        for _ in range(warmup):
            model(video)
        sync(device)
        cpu_start = time.process_time()
        start = time.perf_counter()
        while time.perf_counter() - start < seconds or len(times) < 3:
            tic = time.perf_counter()
            model(video)
            sync(device)
            times.append(time.perf_counter() - tic)
    cpu_per_call = (time.process_time() - cpu_start) / len(times)
    times.sort()
    return times[len(times) // 2], times[0], cpu_per_call


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+",
                        default=["prism-tiny-p16-f16-r128", "prism-small-p16-f16-r160"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--modes", nargs="+", default=["eager"], choices=["eager", "compile"])
    parser.add_argument("--attention", nargs="+", default=None, choices=["exact", "fast"],
                        help="attention paths (default: each variant's own)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--batch", type=int, default=4, help="clips per forward call")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        name = torch.cuda.get_device_name()
        peak = gpu_peak(name)
        print(f"device: {name}, peak bf16 {peak / 1e12 if peak else float('nan'):.0f} TFLOP/s")
    else:
        name, peak = f"cpu ({torch.get_num_threads()} threads)", None
        print(f"device: {name}")
    print(f"torch {torch.__version__}, batch {args.batch} clips")
    header = (f"{'variant':<34} {'dtype':<5} {'mode':<8} {'attn':<6} {'frames/s':>9} "
              f"{'best f/s':>9} {'cpu f/s':>8} {'GFLOP/clip':>10} {'TFLOP/s':>8} "
              f"{'vs matmul':>9} {'MFU':>6}")
    print(header)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    for variant in args.variants:
        config = get_config(variant)
        flops = model_flops(config)
        for attention in args.attention or [config.attention]:
            model = build_model(variant, attention=attention).to(device)
            video = torch.rand(args.batch, config.num_frames, config.image_size,
                               config.image_size, 3, device=device)
            for dtype_name in args.dtypes:
                dtype = dtypes[dtype_name]
                baseline = matmul_flops_per_s(
                    config.model_dim, args.batch * config.num_frames * config.grid_size**2,
                    device, dtype, seconds=1.0)
                for mode in args.modes:
                    runner = torch.compile(model) if mode == "compile" else model
                    try:
                        warmup = args.warmup + (2 if mode == "compile" else 0)
                        per_call, fastest, cpu_time = measure(runner, video, device, dtype,
                                                              args.seconds, warmup)
                    except Exception as exc:  # report and go on (e.g. no compiler)
                        print(f"{variant:<34} {dtype_name:<5} {mode:<8} {attention:<6} "
                              f"failed: {type(exc).__name__}: {str(exc)[:80]}")
                        continue
                    achieved = flops * args.batch / per_call
                    fps = args.batch * config.num_frames / per_call
                    mfu = f"{achieved / peak:6.1%}" if peak and dtype_name == "bf16" else "     -"
                    best_fps = args.batch * config.num_frames / fastest
                    # CPU: frames per second of CPU time x threads (free cores, lower bound).
                    cpu_fps = (args.batch * config.num_frames * torch.get_num_threads()
                               / cpu_time if device == "cpu" else float("nan"))
                    print(f"{variant:<34} {dtype_name:<5} {mode:<8} {attention:<6} {fps:9.1f} "
                          f"{best_fps:9.1f} {cpu_fps:8.1f} {flops / 1e9:10.2f} "
                          f"{achieved / 1e12:8.3f} {achieved / baseline:9.2f} {mfu}", flush=True)
            del model


if __name__ == "__main__":
    main()
