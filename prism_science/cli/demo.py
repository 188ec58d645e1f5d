"""``prism-science demo``: the main job on the bundled model and the sample data."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the main job on the sample data: extract, label, train, predict, evaluate",
        description=(
            "Extract features of the sample fly courtship clip and of a few generated synthetic "
            "behavior videos with the default encoder, train a probe on the labeled part, predict "
            "the rest, evaluate on held-out frames and write the store, reports and ethograms."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder")
    parser.add_argument("--model", default="default", help="encoder name or weights folder")
    parser.add_argument("--sample-dir", type=Path, default=None,
                        help="the repository's sample_data/ folder (default: beside the code)")
    parser.add_argument("--synthetic-videos", type=int, default=9,
                        help="synthetic videos to generate (0: fly clip only)")
    parser.add_argument("--probe", default="temporal",
                        choices=["linear", "mlp", "attention", "temporal"], help="probe kind")
    parser.add_argument("--block-frames", type=int, default=100,
                        help="alternating labeled / held-out block size on the fly clip")
    parser.add_argument("--hop", type=int, default=8,
                        help="frames between clip starts (at most the model's clip length)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prism_science.demo import DemoOptions, run_demo
    from prism_science.errors import PrismError

    options = DemoOptions(out=args.out, model=args.model, sample_dir=args.sample_dir,
                          n_synthetic=args.synthetic_videos, probe=args.probe,
                          block_frames=args.block_frames, hop=args.hop, device=args.device,
                          seed=args.seed)
    t0 = time.perf_counter()
    try:
        result = run_demo(options)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print()
    print(result.table())
    print()
    for step, seconds in result.timings.items():
        print(f"{step:<20} {seconds:6.1f} s")
    print(f"{'total':<20} {time.perf_counter() - t0:6.1f} s")
    print(f"store:     {result.store}")
    for dataset, path in result.reports.items():
        print(f"report:    {path / 'report.md'} ({dataset})")
    for path in result.ethograms:
        print(f"ethogram:  {path}")
    return 0
