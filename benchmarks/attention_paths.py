"""Deviation and speed of the fast attention path against the exact (official) one.

Builds a variant with seeded random weights (full size by default: the official base encoder),
encodes one random clip with ``attention="exact"`` (soft cap, fp32 softmax) and with
``attention="fast"`` (torch scaled_dot_product_attention, no cap) sharing the same weights, and
prints the max / mean absolute deviation of the tokens, their scale, and the time of each path
measured in the same process (ratio fast / exact).

    python benchmarks/attention_paths.py                      # base, 1 clip of 16 x 288 px
    python benchmarks/attention_paths.py --variant prism-tiny-p16-f16-r128 --batch 4
"""

from __future__ import annotations

import argparse
import time

import torch

from prism_science.models import build_model, get_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="videoprism-v1-base-p18-f16-r288")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=None, help="default: the variant's")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="timed calls per path")
    args = parser.parse_args(argv)

    config = get_config(args.variant)
    torch.manual_seed(args.seed)
    exact = build_model(args.variant, attention="exact")
    fast = build_model(args.variant, attention="fast")
    fast.load_state_dict(exact.state_dict())
    frames = args.frames or config.num_frames
    video = torch.rand(args.batch, frames, config.image_size, config.image_size, 3,
                       generator=torch.Generator().manual_seed(args.seed + 1))
    outputs, seconds = {}, {}
    with torch.inference_mode():
        for label, model in (("exact", exact), ("fast", fast)):
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                outputs[label] = model(video)
                best = min(best, time.perf_counter() - start)
            seconds[label] = best
    diff = (outputs["fast"] - outputs["exact"]).abs()
    scale = outputs["exact"].abs()
    print(f"variant {args.variant}, random weights (seed {args.seed}), input "
          f"{tuple(video.shape)}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"tokens: max |exact| {float(scale.max()):.3f}, mean |exact| {float(scale.mean()):.3f}")
    print(f"fast vs exact: max abs dev {float(diff.max()):.3e}, mean abs dev "
          f"{float(diff.mean()):.3e}")
    print(f"time per call: exact {seconds['exact']:.2f} s, fast {seconds['fast']:.2f} s, "
          f"fast/exact {seconds['fast'] / seconds['exact']:.2f}")


if __name__ == "__main__":
    main()
