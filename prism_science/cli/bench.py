"""``prism-science bench DATASET``: the paper's CV-for-Science protocol on one dataset.

Reads Fly vs. Fly, CalMS21, ChimpACT or KABR as released, extracts the clips the labeled samples
need, trains the paper's MAP-pooler probe per seed, evaluates with the dataset's own metric and
writes results.json, report.md, predictions and checks.json into RUN_DIR (docs/bench.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from prism_science.cli import positive_int

DATASET_NAMES = ("flyvsfly", "calms21", "chimpact", "kabr")


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, found {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` sub-command."""
    parser = subparsers.add_parser(
        "bench",
        help="run a paper benchmark (Fly vs. Fly, CalMS21, ChimpACT, KABR) end to end",
        description=(
            "Read the dataset root exactly as released, extract 16-frame clips (64 for "
            "ChimpACT) centred on the labeled frames, train the paper's MAP-pooler probe "
            "(dropout 0.5, AdamW + cosine, LR 5e-5, fixed epochs) per seed and evaluate with "
            "the dataset's metric (FvF / CalMS21 mAP, ChimpACT AVA frame-mAP@0.5, KABR macro "
            "top-1 accuracy). Writes RUN_DIR/results.json, report.md, predictions/ and "
            "checks.json."
        ),
    )
    parser.add_argument("dataset", choices=DATASET_NAMES, help="which benchmark")
    parser.add_argument("--root", required=True, metavar="DATASET_ROOT",
                        help="the dataset's root folder as released (layouts: docs/bench.md)")
    parser.add_argument("--model", required=True, metavar="NAME|DIR",
                        help="registered model name or weights folder")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default), cuda or cuda:N (bf16 autocast on CUDA)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="probe seeds; the result is mean +- sd over them (default 0 1 2)")
    parser.add_argument("--split", default=None, metavar="FILE",
                        help="split JSON instead of the shipped default (FvF, ChimpACT)")
    parser.add_argument("--probe", default="paper", metavar="paper|CONFIG",
                        help="'paper' (default) or a JSON of probe fields (+ 'protocol')")
    parser.add_argument("--cache", default="fp16", choices=("fp16", "online"),
                        help="fp16: extract once into RUN_DIR/cache (default); online: encode "
                        "each batch's clips when the probe needs them")
    parser.add_argument("--check-alignment", type=_non_negative_int, default=0, metavar="N",
                        help="recompute N random samples from the video and compare")
    parser.add_argument("--batch-size", type=positive_int, default=8,
                        help="clips per encoder forward pass (default 8)")
    parser.add_argument("--resume", action="store_true", help="skip the finished stages")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the plan (videos, frames, clips, forward passes); extract "
                        "nothing")
    parser.add_argument("--json", action="store_true", help="print the plan / results as JSON")
    parser.set_defaults(func=run)


def _print_plan(plan: dict) -> None:
    print(f"{plan['dataset']} plan ({plan['root']}, split {plan['split']}):")
    for subset, n in plan["samples"].items():
        print(f"  {subset}: {plan['videos'][subset]} videos, {n} samples")
    print(f"  clips: {plan['clips']} of {plan['clip']['frames']} frames (step "
          f"{plan['clip']['step']}), {plan['units']} units, {plan['frames_decoded']} frames "
          f"to decode, resize {plan['resize']}")
    print(f"  estimated forward passes ({plan['cache']}): {plan['forward_passes']}")
    if "cache_bytes" in plan:
        print(f"  fp16 cache: {plan['cache_bytes'] / 2**20:.1f} MiB")
    for note in plan.get("notes", []):
        print(f"  note: {note}")


def run(args: argparse.Namespace) -> int:
    """Run (or plan) the benchmark and print its summary. Returns 0, 1 when a check failed,
    or 2 on bad input."""
    from prism_science.bench import BenchOptions, run_bench
    from prism_science.errors import PrismError

    options = BenchOptions(
        dataset=args.dataset, root=Path(args.root), model=args.model, out=Path(args.out),
        device=args.device, seeds=tuple(args.seeds), split=Path(args.split) if args.split
        else None, probe=args.probe, cache=args.cache, check_alignment=args.check_alignment,
        resume=args.resume, dry_run=args.dry_run, batch_size=args.batch_size)
    try:
        result = run_bench(options)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        from prism_science.bench.report import clean

        print(json.dumps(clean(result), indent=2))
        return 0
    if args.dry_run:
        _print_plan(result)
        return 0
    value, paper = result["value"], result["paper"]
    print(f"{result['dataset']}: {result['metric']['name']} {value['percent']:.1f} ± "
          f"{100 * value['sd']:.1f} over seeds {list(value['per_seed'])} (paper "
          f"{paper['value_percent']:.1f}, delta {paper['delta_points']:+.1f})")
    print(f"checks {'passed' if result['checks_passed'] else 'FAILED'}; wrote "
          f"{Path(args.out) / 'results.json'}, report.md, checks.json, predictions/")
    return 0 if result["checks_passed"] else 1
