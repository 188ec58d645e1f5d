"""``prism-science synth``: write a synthetic behavior dataset (videos, labels, captions)."""

from __future__ import annotations

import argparse
import sys
import time

from prism_science.cli import positive_int
from prism_science.errors import PrismError


def _seconds(text: str) -> tuple[float, float]:
    try:
        if "-" in text:
            lo, hi = (float(v) for v in text.split("-", 1))
        else:
            lo = hi = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"expected a number like 10 or a range like 8-12, found {text!r}"
        ) from exc
    return lo, hi


def parse_size(text: str) -> tuple[int, int]:
    """``"192"`` -> (192, 192); ``"256x192"`` (width x height) -> (192, 256) as (height, width)."""
    try:
        if "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x"))
            return h, w
        return int(text), int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"size {text!r}: expected N or WIDTHxHEIGHT, e.g. 192 or 256x192"
        ) from exc


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate synthetic behavior videos with labels and captions",
        description=(
            "Procedural top-view videos of 1-3 animals with per-frame behavior labels "
            "(NAME.mp4, NAME.labels.csv, NAME.json) and manifest.jsonl (path, caption). "
            "Deterministic by seed; rerunning keeps clips already written."
        ),
    )
    parser.add_argument("--n-videos", type=int, required=True, help="number of clips")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--size", type=parse_size, default=(192, 192),
                        help="N or WIDTHxHEIGHT, even (default 192)")
    parser.add_argument("--fps", type=float, default=15.0, help="frames per second (default 15)")
    parser.add_argument("--seconds", type=_seconds, default=(8.0, 12.0),
                        help="clip length, e.g. 10 or a range 8-12 (default 8-12)")
    parser.add_argument("--n-animals", type=int, default=None, choices=(1, 2, 3),
                        help="animals per clip (default: 1-3 drawn per clip)")
    parser.add_argument("--crf", type=_seconds, default=(18.0, 32.0),
                        help="h264 quality range, e.g. 23 or 18-32 (default 18-32)")
    parser.add_argument("--prefix", default="synth", help="clip name prefix (default synth)")
    parser.add_argument("--overwrite", action="store_true", help="regenerate existing clips")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes generating clips in parallel (default 1)")
    parser.add_argument("--per-animal-crops", action="store_true",
                        help="also write each clip's exact tracks (NAME.tracks.csv) and "
                        "crops.jsonl: one row per animal and window with the animal's own "
                        "caption, the crop manifest that animal-centred pretraining reads")
    parser.add_argument("--crop-window", type=positive_int, default=24, metavar="FRAMES",
                        help="window length of --per-animal-crops in frames (default 24)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from prism_science.synth import SynthConfig, generate_dataset, write_animal_windows

    try:
        config = SynthConfig(
            size=args.size,
            fps=args.fps,
            seconds=args.seconds,
            n_animals=args.n_animals,
            crf=(int(args.crf[0]), int(args.crf[1])),
        )
        start = time.perf_counter()
        paths = generate_dataset(args.out, args.n_videos, args.seed, config,
                                 prefix=args.prefix, overwrite=args.overwrite,
                                 workers=args.workers)
        crops = write_animal_windows(args.out, window=args.crop_window) \
            if args.per_animal_crops else None
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {len(paths)} clips to {args.out} ({time.perf_counter() - start:.1f} s); "
          f"captions in {args.out}/manifest.jsonl")
    if crops is not None:
        with open(crops) as handle:
            n_rows = sum(1 for _ in handle)
        print(f"per-animal crops: {n_rows} windows of {args.crop_window} frames (one row per "
              f"animal and window, with tracks) in {crops}")
    return 0
