"""The ``labels`` command: import other tools' label files, export them, show a summary.

    prism-science labels import FILE [--format F] [--fps N] [--n-frames N] [--video-id V]
                                     [--behaviors a,b | --behaviors set.json] [--tracks XML]
                                     (--store STORE [--name manual] | --out CSV)
    prism-science labels export --store STORE --video-id V [--name manual]
                                --format boris|deepethogram|nwb|csv --out PATH
    prism-science labels show FILE|STORE [--name NAME] [--video-id V]
    prism-science labels formats
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

EXPORT_FORMATS = ("boris", "deepethogram", "nwb", "csv")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``labels`` command and its ``import``, ``export``, ``show``, ``formats``."""
    parser = subparsers.add_parser(
        "labels", help="import, export and summarize behavior labels",
        description="Import behavior labels from BORIS, DeepEthogram, CalMS21, Fly vs. Fly, "
        "KABR, ChimpACT, SimBA, JAABA or NWB files into a feature store (or a plain CSV), export "
        "them to BORIS, DeepEthogram, NWB or CSV, and show what a label file or store holds.")
    sub = parser.add_subparsers(dest="labels_command", metavar="ACTION")

    imp = sub.add_parser("import", help="read a label file into a store or a plain CSV",
                         description="Read a label file (format detected unless --format) and "
                         "save it in a store next to the features, or as a plain interval CSV.")
    imp.add_argument("file", type=Path, help="the label file")
    imp.add_argument("--format", help="input format (see `prism-science labels formats`)")
    _timing_args(imp)
    imp.add_argument("--video-id", help="name of the video (single-video files) or the video to "
                     "take from a multi-video file")
    imp.add_argument("--behaviors", help="the project's behaviors, comma-separated, or a JSON "
                     "file of a behavior set; other behaviors are refused")
    imp.add_argument("--annotator", default="", help="annotator for files that name none")
    imp.add_argument("--tracks", type=Path, help="KABR behavior CSV: the CVAT detection-tracks "
                     "XML whose per-frame boxes are attached to the tracks")
    target = imp.add_mutually_exclusive_group(required=True)
    target.add_argument("--store", type=Path, help="feature store to save the labels in")
    target.add_argument("--out", type=Path, help="plain interval CSV to write (a folder when the "
                        "file holds several videos)")
    imp.add_argument("--name", default="manual", help="label set name in the store "
                     "(default: manual)")
    imp.set_defaults(func=run_import)

    exp = sub.add_parser("export", help="write a store's labels in another tool's format",
                         description="Write the label set of one video of a store as BORIS "
                         "tabular CSV, DeepEthogram CSV, NWB or plain interval CSV.")
    exp.add_argument("--store", type=Path, required=True, help="feature store")
    exp.add_argument("--video-id", required=True, help="video in the store")
    exp.add_argument("--name", default="manual", help="label set name (default: manual)")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="output format")
    exp.add_argument("--out", type=Path, required=True, help="output file")
    exp.set_defaults(func=run_export)

    show = sub.add_parser("show", help="summarize a label file or a store's labels",
                          description="Print per video and behavior: bouts, frames, seconds, "
                          "labeled frames and coverage.")
    show.add_argument("path", type=Path, help="label file, or feature store (.zarr folder, .h5)")
    show.add_argument("--format", help="label file format (detected when omitted)")
    _timing_args(show)
    show.add_argument("--video-id", help="only this video")
    show.add_argument("--name", help="only this label set (stores)")
    show.set_defaults(func=run_show)

    fmts = sub.add_parser("formats", help="list the label formats",
                          description="List the label formats that can be read or written.")
    fmts.set_defaults(func=run_formats)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])


def _timing_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fps", type=float, help="the video's frame rate")
    parser.add_argument("--n-frames", type=int, help="the video's frame count")


def _behaviors(spec: str | None):
    from prism_science.labels import BehaviorSet

    if not spec:
        return None
    path = Path(spec)
    if path.suffix == ".json" and path.is_file():
        return BehaviorSet.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return BehaviorSet(tuple(s.strip() for s in spec.split(",") if s.strip()))


def _format_options(args: argparse.Namespace) -> dict[str, Any]:
    return {"tracks": args.tracks} if getattr(args, "tracks", None) is not None else {}


def _is_store(path: Path) -> bool:
    return path.is_dir() or path.suffix.lower() in (".h5", ".hdf5")


def _read_for_store(args: argparse.Namespace, store: Any) -> dict:
    """Read the file into ``{stored video id: table}``; LabelError for videos not in the store.

    A file holding one video recorded in the store is read with the store's frame count and
    real timestamps, so that its seconds map onto the right frames.
    """
    from prism_science.errors import LabelError
    from prism_science.labels import read_label_tables
    from prism_science.labels.store_io import match_video_id

    kw = {"format": args.format, "fps": args.fps, "n_frames": args.n_frames,
          "video_id": args.video_id, "behaviors": _behaviors(args.behaviors),
          "annotator": args.annotator, **_format_options(args)}
    tables = read_label_tables(args.file, validate=False, **kw)
    known = store.video_ids()
    stored = {label_id: match_video_id(label_id, known) for label_id in tables}
    missing = [label_id for label_id, match in stored.items() if match is None]
    if missing and (len(tables) == 1 or len(missing) == len(tables)):
        raise LabelError(
            f"{args.store}: no video {missing[0]!r} in the store (videos: "
            f"{', '.join(known[:10]) or 'none'}); extract features for it first, or name "
            "the stored video with --video-id.")
    if missing:
        print(f"warning: {len(missing)} of {len(tables)} videos of {args.file} are not in the "
              f"store and were skipped: {', '.join(missing[:10])}"
              f"{' ...' if len(missing) > 10 else ''}", file=sys.stderr)
        tables = {k: v for k, v in tables.items() if stored[k] is not None}
    if len(tables) == 1:
        label_id, video_id = next(iter(stored.items()))
        info = store.video_info(video_id)
        kw.update(fps=args.fps or info.fps or None, n_frames=info.n_frames,
                  video_id=label_id if args.video_id is None else args.video_id)
        table = next(iter(read_label_tables(args.file, timestamps=info.timestamps,
                                            **kw).values()))
        return {video_id: table}
    for table in tables.values():
        table.validate(kw["behaviors"])
    return {stored[label_id]: table for label_id, table in tables.items()}


def run_import(args: argparse.Namespace) -> int:
    """Read a label file and save it in a store or as plain CSV."""
    from prism_science.errors import PrismError
    from prism_science.labels import read_label_tables, save_labels, write_labels

    try:
        if args.store is not None:
            from prism_science.store import open_store

            with open_store(args.store, mode="r+") as store:
                tables = _read_for_store(args, store)
                for video_id, table in tables.items():
                    key = save_labels(store, video_id, table, name=args.name)
                    print(f"{video_id}: {len(table.intervals)} intervals -> {args.store} {key}")
            return 0
        tables = read_label_tables(
            args.file, args.format, fps=args.fps, n_frames=args.n_frames,
            video_id=args.video_id, behaviors=_behaviors(args.behaviors),
            annotator=args.annotator, **_format_options(args))
        if len(tables) == 1:
            outputs = {next(iter(tables)): args.out}
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            outputs = {v: args.out / f"{v}.labels.csv" for v in tables}
        for video_id, out in outputs.items():
            write_labels(tables[video_id], out, format="csv")
            print(f"{video_id}: {len(tables[video_id].intervals)} intervals -> {out}")
        return 0
    except (PrismError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_export(args: argparse.Namespace) -> int:
    """Write one video's label set from a store in another format."""
    from prism_science.errors import PrismError
    from prism_science.labels import load_labels, write_labels
    from prism_science.store import open_store

    try:
        with open_store(args.store, mode="r") as store:
            table = load_labels(store, args.video_id, args.name)
        write_labels(table, args.out, format=args.format)
    except (PrismError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{args.video_id}: {len(table.intervals)} intervals -> {args.out} ({args.format})")
    return 0


def _print_summary(title: str, table: Any) -> None:
    from prism_science.labels import table_summary

    timing = []
    if table.n_frames is not None:
        timing.append(f"{table.n_frames} frames")
    if table.fps:
        timing.append(f"{table.fps:g} fps")
    subjects = [s for s in table.subjects() if s is not None]
    if subjects:
        timing.append(f"subjects {', '.join(subjects[:6])}{' ...' if len(subjects) > 6 else ''}")
    print(f"{title}" + (f" ({'; '.join(timing)})" if timing else ""))
    rows = table_summary(table)
    width = max([len("behavior")] + [len(r["behavior"]) for r in rows])
    print(f"  {'behavior':<{width}}  {'bouts':>6}  {'frames':>8}  {'seconds':>9}  "
          f"{'labeled':>8}  {'coverage':>8}")
    for r in rows:
        seconds = "-" if (r["seconds"] == 0 and r["bouts"]) or math.isnan(r["seconds"]) \
            else f"{r['seconds']:.2f}"
        coverage = "-" if math.isnan(r["coverage"]) else f"{100 * r['coverage']:.1f}%"
        print(f"  {r['behavior']:<{width}}  {r['bouts']:>6}  {r['frames']:>8}  {seconds:>9}  "
              f"{r['labeled_frames']:>8}  {coverage:>8}")
    if not rows:
        print("  (no behaviors)")


def run_show(args: argparse.Namespace) -> int:
    """Summarize a label file or every label set of a store."""
    from prism_science.errors import PrismError
    from prism_science.labels import load_labels, read_label_tables
    from prism_science.labels.store_io import list_labels

    try:
        if _is_store(args.path) and args.format is None:
            from prism_science.store import open_store

            with open_store(args.path, mode="r") as store:
                video_ids = [args.video_id] if args.video_id else store.video_ids()
                shown = 0
                for video_id in video_ids:
                    names = [args.name] if args.name else list_labels(store, video_id)
                    for name in names:
                        _print_summary(f"{video_id} labels/{name}",
                                       load_labels(store, video_id, name))
                        shown += 1
                if not shown:
                    print(f"{args.path}: no labels (videos: {len(video_ids)})")
            return 0
        tables = read_label_tables(args.path, args.format, fps=args.fps, n_frames=args.n_frames,
                                   video_id=args.video_id)
        for video_id, table in tables.items():
            _print_summary(f"{video_id} ({args.path.name})", table)
        return 0
    except (PrismError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_formats(args: argparse.Namespace) -> int:
    """List the registered label formats."""
    from prism_science.labels import FORMATS

    width = max(len(n) for n in FORMATS)
    for name, fmt in FORMATS.items():
        modes = ("read" if fmt.reader else "") + ("+write" if fmt.writer else "")
        print(f"{name:<{width}}  {modes.lstrip('+'):<10}  {fmt.description}")
    return 0
