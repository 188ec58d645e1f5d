"""CPU inference paths of one encoder: torch's default matmul (MKL) vs oneDNN, fp32 vs bf16.

In one process, interleaved rounds, best of each (a shared machine's load moves from second to
second), CPU seconds (what the cores spent, not waiting for them; with --threads above 1 this
virtual machine's process CPU time under-counts, so compare those runs by ratio only):

1. each dense-layer shape of the model at the batch's token count: GFLOP per CPU-second of
   ``F.linear`` (torch's default, MKL on x86 builds) and of oneDNN with a prepacked weight;
2. the whole encoder forward: default fp32, oneDNN fp32 (``set_matmul_backend``) and bf16
   autocast: frames per CPU-second, and each one's deviation from the default fp32 output
   (max abs difference; relative L2 error; worst cosine similarity of a token);
3. the per-forward input check (``check_video``: one pass and one host sync) against the
   forward;
4. what ``choose_matmul_backend`` (run by ``extract`` at load) picks on this CPU.

Default run (about 1 minute on 2 shared cores)::

    nice .venv/bin/python benchmarks/cpu_backends.py
    nice .venv/bin/python benchmarks/cpu_backends.py --model videoprism-v1-base-p18-f16-r288 \
        --batch 1 --frames 4 --rounds 2          # the official base size (random weights)
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from _common import machine, settings

from prism_science.models import build_model, find_weights, load_model
from prism_science.models.encoder import check_video
from prism_science.models.layers import choose_matmul_backend, onednn_available, set_matmul_backend
from prism_science.models.weights import precision_context


def best_cpu_seconds(fns: dict[str, callable], rounds: int) -> dict[str, float]:
    """Interleaved rounds of every function (after one warm-up call each); best CPU seconds."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.process_time()
            fn()
            best[name] = min(best[name], time.process_time() - t0)
    return best


def linear_shapes(model: torch.nn.Module) -> list[tuple[int, int]]:
    """Distinct (in, out) widths of the encoder's dense layers (QKV fused as one)."""
    shapes = []
    for module in model.modules():
        if isinstance(module, torch.nn.Linear):
            shape = (module.in_features, module.out_features)
            if module.out_features == module.in_features and shape in shapes:
                continue
            shapes.append(shape)
    dim = model.config.model_dim
    shapes.append((dim, 3 * dim))  # the fused query/key/value projection
    return sorted(set(shapes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    default_model = "default" if find_weights("default") else "prism-tiny-p16-f16-r128"
    parser.add_argument("--model", default=default_model)
    parser.add_argument("--batch", type=int, default=4, help="clips per forward call")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: "
                        "the model's)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: extraction's default on 2 cores)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds, best kept")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = load_model(args.model) if args.model == "default" or "/" in args.model \
        else build_model(args.model)
    encoder = getattr(model, "vision_encoder", model)
    c = encoder.config
    frames = args.frames or c.num_frames
    tokens = args.batch * frames * c.grid_size**2
    where = settings(args.model, threads=args.threads, batch=args.batch, frames=frames)
    print(f"{machine()}; oneDNN available: {onednn_available()}")

    print(f"\n== 1. dense layers at {tokens} tokens, GFLOP per CPU-second {where}")
    for k, n in linear_shapes(encoder):
        x, w, b = torch.randn(tokens, k), torch.randn(n, k) / k**0.5, torch.randn(n)
        fns = {"default": lambda x=x, w=w, b=b: F.linear(x, w, b)}
        if onednn_available():
            packed = torch.ops.mkldnn._reorder_linear_weight(w, tokens)
            fns["onednn"] = lambda x=x, p=packed, b=b: torch.ops.mkldnn._linear_pointwise(
                x, p, b, "none", [], "")
        with torch.inference_mode():
            best = best_cpu_seconds(fns, args.rounds)
        flop = 2 * tokens * k * n
        print(f"  {k:5d} -> {n:5d}: " + ", ".join(
            f"{name} {flop / s / 1e9:6.1f}" for name, s in best.items())
            + (f"   oneDNN/default {best['default'] / best['onednn']:.2f}x"
               if "onednn" in best else ""))

    video = torch.rand(args.batch, frames, c.image_size, c.image_size, 3)
    with torch.inference_mode():
        reference = encoder(video).float()
        outputs = {}

        set_matmul_backend(model, "onednn" if onednn_available() else "default")
        switchable = [m for m in model.modules() if hasattr(m, "onednn")]

        def run(name: str, backend: str, precision: str) -> None:
            # Flip the flags only: set_matmul_backend would drop the packed weights each time.
            for module in switchable:
                module.onednn = backend == "onednn"
            with precision_context(precision, "cpu"):
                outputs[name] = encoder(video)

        paths = {"default fp32": ("default", "fp32"), "bf16 autocast": ("default", "bf16")}
        if onednn_available():
            paths["onednn fp32"] = ("onednn", "fp32")
        best = best_cpu_seconds({name: lambda n=name, p=p: run(n, *p) for name, p in
                                 paths.items()}, args.rounds)
        set_matmul_backend(model, "default")
        check = best_cpu_seconds({"check": lambda: check_video(video, c.patch_size)},
                                 args.rounds)["check"]
    n_frames = args.batch * frames
    print(f"\n== 2. encoder forward, frames per CPU-second {where}")
    for name, seconds in best.items():
        out = outputs[name].float()
        rel = float((out - reference).norm() / reference.norm())
        cos = float(F.cosine_similarity(out, reference, dim=-1).min())
        print(f"  {name:<14} {n_frames / seconds:8.1f} f/CPU-s  "
              f"x{best['default fp32'] / seconds:4.2f} vs default fp32   max|diff| "
              f"{float((out - reference).abs().max()):.2e}  rel L2 {rel:.2e}  min cos {cos:.6f}")
    print(f"\n== 3. input check (aminmax + host sync): {1e3 * check:.2f} ms CPU per call = "
          f"{check / best['default fp32']:.2%} of a default fp32 forward {where}")
    choice, seconds = choose_matmul_backend(model, tokens)
    print(f"\n== 4. choose_matmul_backend at {min(tokens, 4096)} tokens picks {choice!r} ("
          + ", ".join(f"{k} {1e3 * v:.1f} ms" for k, v in seconds.items()) + f") {where}")


if __name__ == "__main__":
    main()
