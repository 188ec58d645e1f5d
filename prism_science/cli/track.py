"""``prism-science track``: tracks of the animals of a video as a plain CSV.

Either the built-in tracker (fixed camera, ``--n-animals N``), or ``--from FILE``: a tracks file
of another tool (SLEAP, DeepLabCut, KABR, ChimpACT, CalMS21, FlyTracker...) checked against the
video and converted.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from prism_science.cli import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``track`` sub-command."""
    parser = subparsers.add_parser(
        "track",
        help="track the animals of a fixed-camera video (or convert a tracks file) to CSV",
        description=(
            "Find N animals in every frame of a fixed-camera video (background from frames "
            "sampled over the video, foreground blobs, Hungarian assignment over time, body "
            "length and heading from blob moments) and write the plain tracks CSV "
            "(frame,subject,x,y,w,h,angle,confidence,body_length) for inspection and correction. "
            "With --from, read another tool's tracks file instead, check it against the video "
            "and write the same CSV."
        ),
    )
    parser.add_argument("video", metavar="VIDEO", help="the video file (or folder of frames)")
    parser.add_argument("--n-animals", type=positive_int, default=None,
                        help="number of animals in the arena (the built-in tracker)")
    parser.add_argument("--from", dest="source", default=None, metavar="TRACKS_FILE",
                        help="convert this tracks file (.slp, DLC .h5/.csv, CVAT .xml, COCO "
                        ".json, CalMS21 .json, FlyTracker -track.mat, CSV) instead of tracking")
    parser.add_argument("--format", default=None,
                        help="format of --from (default: detected; e.g. lightningpose)")
    parser.add_argument("--video-id", default=None,
                        help="the video / sequence of a --from file that holds several")
    parser.add_argument("--out", default=None,
                        help="output CSV (default: VIDEO's name + .tracks.csv beside it)")
    parser.add_argument("--max-gap", type=int, default=None,
                        help="interpolate gaps up to this many frames (default 5)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="foreground threshold in grey levels 0-255 (default: estimated)")
    parser.add_argument("--min-area", type=float, default=None,
                        help="smallest animal blob in pixels (default: estimated)")
    parser.add_argument("--polarity", default="auto", choices=("auto", "dark", "light", "both"),
                        help="animals darker or lighter than the floor (default auto)")
    parser.add_argument("--max-missing", type=float, default=0.1,
                        help="fraction of frames that may show fewer than N animals before "
                        "tracking fails (default 0.1)")
    parser.add_argument("--max-side", type=positive_int, default=512,
                        help="process frames downscaled to this longer side (default 512)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Track or convert, write the CSV, print a summary. Returns 0, or 2 on bad input."""
    from tqdm import tqdm

    from prism_science.errors import PrismError
    from prism_science.tracks import (
        DEFAULT_MAX_GAP,
        TrackerConfig,
        read_tracks,
        track_video,
        write_tracks_csv,
    )
    from prism_science.video import open_video

    video = Path(args.video)
    out = Path(args.out) if args.out else video.with_name(video.name + ".tracks.csv")
    if (args.n_animals is None) == (args.source is None):
        print("error: give either --n-animals N (track the video) or --from TRACKS_FILE "
              "(convert a tracks file)", file=sys.stderr)
        return 2
    max_gap = DEFAULT_MAX_GAP if args.max_gap is None else args.max_gap
    start = time.perf_counter()
    try:
        if args.source is not None:
            tracks = read_tracks(args.source, args.format, max_gap=args.max_gap,
                                 video=args.video_id)
            with open_video(video) as reader:
                info = reader.info
            tracks = tracks.check_video(info.n_frames, (info.height, info.width), str(video))
            if tracks.frame_size is None:
                tracks.frame_size = (info.height, info.width)
            write_tracks_csv(tracks, out, video=str(video))
            note = f"converted {tracks.format} tracks of {args.source}"
        else:
            config = TrackerConfig(threshold=args.threshold, min_area=args.min_area,
                                   polarity=args.polarity, max_side=args.max_side,
                                   max_missing=args.max_missing, max_gap=max_gap)
            with tqdm(total=None, unit="frame", disable=args.no_progress,
                      desc=f"tracking {video.name}") as bar:

                def progress(done: int, total: int) -> None:
                    bar.total = total
                    bar.update(done - bar.n)

                result = track_video(video, args.n_animals, config, progress=progress)
            tracks = result.tracks
            write_tracks_csv(tracks, out, video=str(video))
            short = len(result.short_frames)
            note = (f"tracked {args.n_animals} animals (polarity {result.polarity}, threshold "
                    f"{result.threshold:.1f}, min area {result.min_area:.0f} px; fewer than "
                    f"{args.n_animals} found in {short} frames, touching animals split in "
                    f"{result.split_frames})")
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    present = tracks.present
    print(f"{note} in {time.perf_counter() - start:.1f} s")
    for k, subject in enumerate(tracks.subjects):
        length = tracks.median_body_length()[k]
        print(f"  {subject}: present in {int(present[:, k].sum())}/{tracks.n_frames} frames "
              f"({int(tracks.interpolated[:, k].sum())} interpolated), body length "
              f"{length:.0f} px")
    print(f"wrote {out}")
    return 0
