"""``prism-science search``: the frame ranges of a video that best match a text query."""

from __future__ import annotations

import argparse
import json
import sys

from prism_science.cli import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``search`` sub-command."""
    parser = subparsers.add_parser(
        "search",
        help="find the moments of a video that match a text query",
        description=(
            "Compare text queries with every clip of a video using a video-text model (the "
            "bundled default, or another with a tokenizer) and print the best-matching frame "
            "ranges with their cosine similarity (-1 to 1, never rescaled). The source is a "
            "video file, a folder of frames, or a feature store: there the clip embeddings are "
            "cached, so later queries skip the video."
        ),
    )
    parser.add_argument("source", metavar="VIDEO_OR_STORE",
                        help="video file, folder of frames, or feature store (.zarr, .h5)")
    parser.add_argument("queries", metavar="TEXT", nargs="+",
                        help='what to look for, e.g. "a mouse grooming" (several: one search each)')
    parser.add_argument("--model", default="default",
                        help="video-text model with a tokenizer: a name or weights folder "
                        "(default: the bundled default)")
    parser.add_argument("--top", type=positive_int, default=5,
                        help="frame ranges to print per query (default 5)")
    parser.add_argument("--hop", type=positive_int, default=None,
                        help="frames between clip starts, 1 to the clip length (default: half "
                        "the clip length)")
    parser.add_argument("--video-id", default=None,
                        help="the video of a store holding several (see the store's video ids)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=positive_int, default=4, help="clips per forward pass")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto (default): bf16 autocast where the device computes bf16 "
                        "natively (CUDA, CPUs with AVX512_BF16/AMX), else fp32")
    parser.add_argument("--no-cache", action="store_true",
                        help="neither read nor write clip embeddings in a store")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search and print the ranges. Returns 0, or 2 on bad input."""
    from tqdm import tqdm

    from prism_science.errors import PrismError
    from prism_science.search import format_time, search

    bar = tqdm(total=1, unit="clip", file=sys.stderr, disable=args.no_progress or None,
               leave=False)

    def progress(done: int, total: int, message: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_description(message, refresh=False)
        bar.refresh()

    try:
        results = search(args.source, args.queries, model=args.model, video_id=args.video_id,
                         hop=args.hop, top=args.top, device=args.device,
                         batch_size=args.batch_size, cache=not args.no_cache, progress=progress,
                         precision=args.precision)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        bar.close()
    if args.json:
        print(json.dumps([result.to_dict() for result in results], indent=1))
        return 0
    for result in results:
        sim = result.similarity
        print(f'"{result.query}" in {result.video}')
        print(f"  model {result.model_name}, clips of {result.clip_frames} frames every "
              f"{result.hop}; cosine similarity (-1 to 1) on this video from {sim.min():.3f} "
              f"to {sim.max():.3f}")
        if not result.hits:
            print("  no peaks")
        else:
            print(f"  {'rank':>4}  {'frames':<13}  {'time':<25}  {'peak':>6}  similarity")
        for hit in result.hits:
            frames = f"{hit.start_frame}-{hit.end_frame}"
            times = f"{format_time(hit.start_s)}-{format_time(hit.end_s)}"
            print(f"  {hit.rank:>4}  {frames:<13}  {times:<25}  {hit.peak_frame:>6}  "
                  f"{hit.score:.3f}")
    return 0
