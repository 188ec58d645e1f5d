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

On a GPU (the official base model, bf16, the exact attention semantics through FlexAttention,
convolution patch embedding, MFU and the ratio to the official JAX model on the same GPU)::

    PYTHONPATH=/path/to/videoprism python benchmarks/encoder_throughput.py --device cuda \
        --variants videoprism-v1-base-p18-f16-r288 --dtypes bf16 --modes eager compile \
        --batch 16 --official
"""

from __future__ import annotations

import argparse
import time

import torch
from _common import load_average, machine

from prism_science.models import build_model, get_config
from prism_science.models.encoder import VideoEncoderConfig, encoder_flops
from prism_science.models.layers import set_attention

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


def model_flops(config: VideoEncoderConfig, frames: int | None = None) -> float:
    """Forward FLOPs of the video encoder for one clip (:func:`encoder_flops`; checked against
    torch's FlopCounterMode in tests/models/test_gpu_path.py)."""
    return float(encoder_flops(config, frames))


def gpu_peak(name: str) -> float | None:
    """Peak bf16 FLOP/s of a GPU from its name, or None when unknown."""
    for key in sorted(GPU_PEAK_BF16, key=len, reverse=True):
        if key.lower() in name.lower():
            return GPU_PEAK_BF16[key]
    return None


def measured_peak(device: str, seconds: float = 2.0) -> float:
    """Best bf16 FLOP/s of large square matmuls on ``device`` (an attainable peak, for GPUs
    missing from the table)."""
    return max(matmul_flops_per_s(8192, 8192, device, torch.bfloat16, seconds / 2, width=8192)
               for _ in range(2))


def official_jax_rate(config: VideoEncoderConfig, batch: int, seconds: float) -> float | None:
    """Frames/s of the official JAX model at ``config`` (random Flax weights, jit, float32 on
    CPU, bf16 on an accelerator), or None with a printed reason when jax, flax or the official
    repository are not importable (see official_side_by_side.py)."""
    import numpy as np
    from official_side_by_side import official_missing, official_module

    missing = official_missing()
    if missing:
        print("official JAX: skipped (" + "; ".join(m.split(":")[0] for m in missing)
              + " missing; see benchmarks/official_side_by_side.py)")
        return None
    import jax

    module = official_module(config)
    video = np.random.default_rng(0).random(
        (batch, config.num_frames, config.image_size, config.image_size, 3), dtype=np.float32)
    params = module.init(jax.random.PRNGKey(0), video, train=False)["params"]
    if jax.devices()[0].platform != "cpu":
        params = jax.tree_util.tree_map(lambda p: p.astype(jax.numpy.bfloat16), params)
        video = video.astype(jax.numpy.bfloat16)
    apply = jax.jit(lambda p, x: module.apply({"params": p}, x, train=False)[0])
    x = jax.device_put(video)
    for _ in range(2):
        apply(params, x).block_until_ready()
    times: list[float] = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds or len(times) < 3:
        tic = time.perf_counter()
        apply(params, x).block_until_ready()
        times.append(time.perf_counter() - tic)
    times.sort()
    return batch * config.num_frames / times[len(times) // 2]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_flops_per_s(dim: int, rows: int, device: str, dtype: torch.dtype,
                       seconds: float, width: int | None = None) -> float:
    """Same-process baseline: FLOP/s of a (rows, dim) x (dim, width) matmul (width 4*dim)."""
    width = width or 4 * dim
    a = torch.randn(rows, dim, device=device, dtype=dtype)
    b = torch.randn(dim, width, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    sync(device)
    return 2 * rows * dim * width * count / (time.perf_counter() - start)


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
    parser.add_argument("--attention", nargs="+", default=None,
                        choices=["auto", "exact", "fast", "flex"],
                        help="attention paths (default: 'auto' on CUDA -- the exact semantics "
                        "in fused kernels, layers.choose_attention -- else each variant's own)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--batch", type=int, default=4, help="clips per forward call")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per row")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--official", action="store_true",
                        help="also time the official JAX model per variant and print ours / JAX "
                        "(needs jax, flax and the official repository, see "
                        "official_side_by_side.py)")
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
        source = "datasheet"
        if peak is None:
            peak, source = measured_peak(device), "measured 8192^3 bf16 matmul"
        print(f"device: {name}, peak bf16 {peak / 1e12:.0f} TFLOP/s ({source})")
    else:
        name, peak = f"cpu ({torch.get_num_threads()} threads)", None
        print(f"device: {name}")
    print(f"{machine()}; batch {args.batch} clips, {torch.get_num_threads()} torch thread(s); "
          "dtype bf16 = autocast; 'load' = 1-min load average after the row")
    header = (f"{'variant':<34} {'dtype':<5} {'mode':<8} {'attn':<6} {'frames/s':>9} "
              f"{'best f/s':>9} {'cpu f/s':>8} {'GFLOP/clip':>10} {'TFLOP/s':>8} "
              f"{'vs matmul':>9} {'MFU':>6} {'vs JAX':>7} {'load':>5}")
    print(header)
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    for variant in args.variants:
        config = get_config(variant)
        flops = model_flops(config)
        print(f"{variant}: {flops / config.num_frames / 1e9:.4g} GFLOP per frame (analytic)")
        jax_fps = (official_jax_rate(config, args.batch, args.seconds) if args.official
                   else None)
        if jax_fps is not None:
            print(f"{variant}: official JAX jit {jax_fps:.1f} frames/s")
        default_attention = "auto" if device.startswith("cuda") else config.attention
        for attention in args.attention or [default_attention]:
            model = build_model(variant, attention=config.attention if attention == "auto"
                                else attention).to(device)
            if attention == "auto":
                chosen = set_attention(model, "auto", device)
                print(f"{variant}: attention auto -> {chosen}")
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
                    vs_jax = f"{fps / jax_fps:6.2f}x" if jax_fps else "      -"
                    print(f"{variant:<34} {dtype_name:<5} {mode:<8} {attention:<6} {fps:9.1f} "
                          f"{best_fps:9.1f} {cpu_fps:8.1f} {flops / 1e9:10.2f} "
                          f"{achieved / 1e12:8.3f} {achieved / baseline:9.2f} {mfu} "
                          f"{vs_jax} {load_average():5.1f}", flush=True)
            del model


if __name__ == "__main__":
    main()
