"""Ours against the official VideoPrism (JAX) and the transformers port: speed, memory, agreement.

One run builds the official ``videoprism.encoders.FactorizedEncoder`` with its own Flax code and
random weights, converts those weights with our converter
(:func:`prism_science.models.convert.load_official`), and times, in interleaved rounds on the
same random clips:

* ours ``exact`` fp32 (the official semantics), ours ``fast`` fp32 (SDPA, no logit cap), ours
  ``fast`` + bf16 autocast;
* the official model under ``jax.jit`` (float32);
* the transformers port (``transformers.VideoPrismVisionModel``) when importable.

It prints frames per CPU-second (CPU: process CPU time, all threads counted, so ratios hold on a
shared machine) or per second (CUDA), the peak memory of one forward (each path in a fresh child
process: peak RSS on CPU, peak allocated device memory on CUDA) and the max abs difference of
each path's tokens from the official ones (from ours ``exact`` when JAX is absent).

Getting the official side (docs/models.md, "Side by side with the official model")::

    pip install "jax[cpu]==0.10.2" "flax==0.12.8" einshape einops   # or jax[cuda12] on a GPU
    git clone https://github.com/google-deepmind/videoprism /tmp/videoprism
    PYTHONPATH=/tmp/videoprism python benchmarks/official_side_by_side.py

Without jax, flax or the repository it still measures our paths and says what is missing.

Default: the tiny golden config of tests/fixtures/golden (patch 6, 4 frames, 36 px, width 32;
seconds). The official base size (a few minutes on 2 cores)::

    python benchmarks/official_side_by_side.py --variant videoprism-v1-base-p18-f16-r288 \
        --frames 4 --rounds 2
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import REPO, machine, settings

from prism_science.models import build_model, get_config
from prism_science.models.convert import load_official
from prism_science.models.encoder import VideoEncoderConfig, encoder_flops

GOLDEN_CONFIG = REPO / "tests" / "fixtures" / "golden" / "config.json"
OURS = ("ours exact fp32", "ours fast fp32", "ours fast bf16")
JAX = "official JAX jit"
HF = "transformers port"


# -- what is installed -------------------------------------------------------------------------
def official_missing() -> list[str]:
    """What the official side lacks, one line each (empty when jax, flax and the repo import)."""
    missing = []
    for module, how in (("jax", 'pip install "jax[cpu]==0.10.2" (jax[cuda12] on a GPU)'),
                        ("flax", 'pip install "flax==0.12.8"'),
                        ("einshape", "pip install einshape"),
                        ("videoprism.encoders",
                         "git clone https://github.com/google-deepmind/videoprism and put the "
                         "clone on PYTHONPATH")):
        try:
            importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure is reported
            missing.append(f"{module}: not importable ({type(exc).__name__}: {exc}); {how}")
    return missing


def transformers_missing() -> str | None:
    """Why the transformers port cannot run, or None."""
    try:
        import transformers
    except Exception as exc:  # noqa: BLE001
        return f"transformers: not importable ({exc}); pip install transformers"
    if not hasattr(transformers, "VideoPrismVisionModel"):
        return (f"transformers {transformers.__version__} has no VideoPrismVisionModel; "
                "pip install -U transformers")
    return None


# -- the configuration -------------------------------------------------------------------------
def our_config(args: argparse.Namespace) -> VideoEncoderConfig:
    """The architecture compared: a registered variant, or the golden tiny official config."""
    if args.variant:
        return get_config(args.variant).replace(attention="exact")
    kwargs = json.loads(GOLDEN_CONFIG.read_text())["cases"]["video_encoder"]["kwargs"]
    t, g, _ = kwargs["pos_emb_shape"]
    return VideoEncoderConfig(
        patch_size=kwargs["patch_size"], num_frames=t, image_size=g * kwargs["patch_size"],
        model_dim=kwargs["model_dim"], num_spatial_layers=kwargs["num_spatial_layers"],
        num_temporal_layers=kwargs["num_temporal_layers"], num_heads=kwargs["num_heads"],
        mlp_dim=kwargs["mlp_dim"], atten_logit_cap=kwargs["atten_logit_cap"],
        norm_policy=kwargs["norm_policy"], attention="exact")


def official_module(config: VideoEncoderConfig) -> Any:
    """The official Flax encoder with ``config``'s architecture (stacked layers, ``scan``)."""
    from videoprism import encoders

    return encoders.FactorizedEncoder(
        patch_size=config.patch_size,
        pos_emb_shape=(config.num_frames, config.grid_size, config.grid_size),
        model_dim=config.model_dim, num_spatial_layers=config.num_spatial_layers,
        num_temporal_layers=config.num_temporal_layers, num_heads=config.num_heads,
        mlp_dim=config.mlp_dim, atten_logit_cap=config.atten_logit_cap,
        norm_policy=config.norm_policy, scan=True)


def official_weights(config: VideoEncoderConfig, video: np.ndarray,
                     seed: int) -> dict[str, np.ndarray]:
    """Random official weights made by the official code (Flax init), flat ``params/...``."""
    import jax
    from flax import traverse_util

    variables = official_module(config).init(jax.random.PRNGKey(seed), video, train=False)
    flat = traverse_util.flatten_dict(variables["params"], sep="/")
    return {f"params/{key}": np.array(value, np.float32) for key, value in flat.items()}


# -- the runners: each returns a callable video (np, B T H W 3) -> tokens (np, B L D) -----------
def our_runner(name: str, config: VideoEncoderConfig, arrays: dict[str, np.ndarray] | None,
               device: str, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    attention = "exact" if "exact" in name else "fast"
    cfg = config.replace(attention=attention)
    if arrays is not None:
        model = load_official(arrays, cfg, name="side-by-side")
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(cfg, name="side-by-side")
    model = model.to(device).eval()
    bf16 = "bf16" in name

    def run(video: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(video).to(device)
        with torch.inference_mode(), torch.autocast(device.split(":")[0], torch.bfloat16,
                                                    enabled=bf16):
            out = model(x).float()
        return out.cpu().numpy()

    return run


def jax_runner(config: VideoEncoderConfig,
               arrays: dict[str, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    import jax
    from flax import traverse_util

    module = official_module(config)
    params = traverse_util.unflatten_dict(
        {key[len("params/"):]: jax.numpy.asarray(value) for key, value in arrays.items()},
        sep="/")
    apply = jax.jit(lambda p, x: module.apply({"params": p}, x, train=False)[0])

    def run(video: np.ndarray) -> np.ndarray:
        return np.asarray(apply(params, video).block_until_ready())

    return run


def hf_runner(config: VideoEncoderConfig, arrays: dict[str, np.ndarray] | None,
              device: str) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """The transformers port; its weights converted from ``arrays`` by the port's own converter
    where that module is importable and knows the size, else its random init (speed only)."""
    import transformers

    vision_config = transformers.VideoPrismVisionConfig(
        hidden_size=config.model_dim, intermediate_size=config.mlp_dim,
        num_attention_heads=config.num_heads, num_frames=config.num_frames,
        num_spatial_layers=config.num_spatial_layers,
        num_temporal_layers=config.num_temporal_layers, image_size=config.image_size,
        tubelet_size=[1, config.patch_size, config.patch_size],
        atten_logit_cap=config.atten_logit_cap)
    model = transformers.VideoPrismVisionModel(vision_config)
    weights = "its own random init (agreement not comparable)"
    if arrays is not None and config.patch_size == 18:
        try:
            convert = importlib.import_module(
                "transformers.models.videoprism.convert_videoprism_weights_to_hf")
            size = "base" if config.model_dim == 768 else "large"
            state = convert.convert_params(arrays, f"backbone_{size}")
            model.load_state_dict(state, strict=False)
            weights = "converted by the port's convert_params"
        except Exception as exc:  # noqa: BLE001 - report and time the random init
            weights = f"its own random init ({type(exc).__name__}: {str(exc)[:60]})"
    model = model.to(device).eval()

    def run(video: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(video).to(device)
        with torch.inference_mode():
            out = model(pixel_values_videos=x)
        hidden = getattr(out, "last_hidden_state", out[0])
        return hidden.float().cpu().numpy()

    return run, weights


# -- measuring ---------------------------------------------------------------------------------
def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(run: Callable[[np.ndarray], np.ndarray], video: np.ndarray,
              device: str) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    sync(device)
    cpu, wall = time.process_time(), time.perf_counter()
    run(video)
    sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def rss_mb() -> float:
    """Peak resident memory of this process so far, MB.

    Linux: ``VmHWM`` of /proc/self/status (``ru_maxrss`` would carry the parent's peak over
    fork + exec); elsewhere ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(args: argparse.Namespace) -> None:
    """Child process: build one path, run one forward, print its peak memory as JSON."""
    config = our_config(args)
    video = make_video(config, args)
    arrays = None
    if args.weights_npz:  # the parent's official weights; ours never import jax here
        with np.load(args.weights_npz, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    path = args.memory_child
    if path in OURS:
        run = our_runner(path, config, arrays, args.device, args.seed)
    elif path == JAX:
        run = jax_runner(config, arrays)
    else:
        run = hf_runner(config, arrays, args.device)[0]
    run(video)  # warm-up (JAX compiles), then the measured forward
    before = rss_mb()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    run(video)
    result = {"peak_rss_mb": rss_mb(), "before_mb": before}
    if args.device.startswith("cuda") and path != JAX:
        result["device_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    elif args.device.startswith("cuda"):
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        result["device_peak_mb"] = stats.get("peak_bytes_in_use", float("nan")) / 2**20
    print("MEMORY " + json.dumps(result), flush=True)


def measure_memory(path: str, argv: list[str]) -> str:
    command = [sys.executable, __file__, *argv, "--memory-child", path]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=1800,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                  [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])})
    except subprocess.TimeoutExpired:
        return "timeout"
    for line in done.stdout.splitlines():
        if line.startswith("MEMORY "):
            result = json.loads(line[len("MEMORY "):])
            if "device_peak_mb" in result:
                return f"{result['device_peak_mb']:.0f} MB dev"
            extra = result["peak_rss_mb"] - result["before_mb"]
            return f"{result['peak_rss_mb']:.0f} MB (+{extra:.0f})"
    return "failed: " + (done.stderr.strip().splitlines() or ["?"])[-1][:60]


def make_video(config: VideoEncoderConfig, args: argparse.Namespace) -> np.ndarray:
    frames = args.frames or config.num_frames
    size = args.size or config.image_size
    rng = np.random.default_rng(args.seed)
    return rng.random((args.batch, frames, size, size, 3), dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default=None,
                        help="a registered encoder (default: the tiny golden official config)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip")
    parser.add_argument("--size", type=int, default=None, help="frame side in pixels")
    parser.add_argument("--batch", type=int, default=2, help="clips per call")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (JAX uses its default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the per-path child processes that measure peak memory")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--weights-npz", default=None, help=argparse.SUPPRESS)
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return

    config = our_config(args)
    video = make_video(config, args)
    frames = video.shape[0] * video.shape[1]
    print(machine())
    print("settings:", settings(args.variant or "golden tiny official config",
                                device=args.device, clips=f"{video.shape}",
                                rounds=args.rounds))
    flops = encoder_flops(config, video.shape[1], video.shape[2]) / video.shape[1]
    print(f"model FLOPs per frame (analytic): {flops / 1e9:.3f} G")

    missing = official_missing()
    arrays = None
    runners: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    if missing:
        print("official JAX model: skipped, missing:\n  " + "\n  ".join(missing))
        print("ours: random weights of our own initialisation (seed "
              f"{args.seed}); agreement is measured against ours exact")
    else:
        import jax

        t0 = time.perf_counter()
        arrays = official_weights(config, video, args.seed)
        print(f"official weights: Flax init (seed {args.seed}), {len(arrays)} arrays, "
              f"{time.perf_counter() - t0:.1f} s; jax {jax.__version__} on "
              f"{jax.devices()[0].platform}; converted with prism_science's load_official")
        runners[JAX] = jax_runner(config, arrays)
    for name in OURS:
        runners[name] = our_runner(name, config, arrays, args.device, args.seed)
    hf_problem = transformers_missing()
    if hf_problem:
        print(f"transformers port: skipped ({hf_problem})")
    else:
        try:
            runners[HF], weights = hf_runner(config, arrays, args.device)
            print(f"transformers port: {weights}")
        except Exception as exc:  # noqa: BLE001 - the port's API moves; report and go on
            print(f"transformers port: failed to build ({type(exc).__name__}: {exc})")

    reference_name = JAX if JAX in runners else OURS[0]
    outputs = {name: run(video) for name, run in runners.items()}  # warm-up (jit, packing)
    reference = outputs[reference_name]
    walls: dict[str, list[float]] = {name: [] for name in runners}
    cpus: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            wall, cpu = time_call(run, video, args.device)
            walls[name].append(wall)
            cpus[name].append(cpu)

    memory = {}
    if not args.no_memory:
        with tempfile.TemporaryDirectory() as folder:
            child_argv = list(raw)
            if arrays is not None:
                np.savez(Path(folder) / "official.npz", **arrays)
                child_argv += ["--weights-npz", str(Path(folder) / "official.npz")]
            memory = {name: measure_memory(name, child_argv) for name in runners}

    gpu = args.device.startswith("cuda")
    rate_label = "frames/s" if gpu else "frames/CPU-s"
    base = None
    print(f"\n{'path':<20} {rate_label:>12} {'vs JAX':>7} {'best wall f/s':>13} "
          f"{'peak memory':>14} {'max abs vs ' + reference_name:>28}")
    for name in runners:
        per_call = min(walls[name]) if gpu else float(np.median(cpus[name]))
        rate = frames / max(per_call, 1e-9)
        if name == JAX:
            base = rate
        ratio = f"{rate / base:6.2f}x" if base else "      -"  # JAX runs first when present
        diff = float(np.abs(outputs[name] - reference).max()) if outputs[
            name].shape == reference.shape else float("nan")
        print(f"{name:<20} {rate:12.2f} {ratio:>7} {frames / min(walls[name]):13.2f} "
              f"{memory.get(name, '-'):>14} {diff:28.2e}", flush=True)
    print("\nratios: same process, interleaved rounds; frames/CPU-s from the median round's "
          "process CPU time (all threads); peak memory: one forward in a fresh process "
          "(RSS includes the framework's own runtime; (+N): growth during the forward)")


if __name__ == "__main__":
    main()
