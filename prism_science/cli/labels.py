"""The ``labels`` command: import other tools' label files, export them, show a summary.

    prism-science labels import FILE [--format F] [--fps N] [--n-frames N] [--video-id V]
                                     [--behaviors a,b | --behaviors set.json] [--tracks XML]
                                     (--store STORE [--name manual] [--replace] | --out CSV)
    prism-science labels export --store STORE --video-id V [--name manual] [--subject S]
                                --format boris|boris-tabular|deepethogram|nwb|csv --out PATH
    prism-science labels show FILE|STORE [--name NAME] [--video-id V]
    prism-science labels list STORE [--video-id V]
    prism-science labels formats

An import into a store never replaces a video's existing label set silently: a different set
already there is refused (nothing of the file is imported) unless ``--replace``, which first
keeps the old set as ``NAME.backup-<n>`` (listed by ``labels list``). With ``--out`` and a file
of several videos, every video or observation id becomes a safe file name inside the folder.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path
from typing import Any

EXPORT_FORMATS = ("boris", "boris-tabular", "deepethogram", "nwb", "csv")


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
    imp.add_argument("--replace", action="store_true", help="replace a video's existing, "
                     "different label set of that name; the old one is kept as "
                     "NAME.backup-<n> (without this, such an import is refused)")
    imp.set_defaults(func=run_import)

    exp = sub.add_parser("export", help="write a store's labels in another tool's format",
                         description="Write the label set of one video of a store as BORIS "
                         "tabular CSV, DeepEthogram CSV, NWB or plain interval CSV.")
    exp.add_argument("--store", type=Path, required=True, help="feature store")
    exp.add_argument("--video-id", required=True, help="video in the store")
    exp.add_argument("--name", default="manual", help="label set name (default: manual)")
    exp.add_argument("--format", required=True, choices=EXPORT_FORMATS, help="output format "
                     "(boris: a .boris project BORIS opens; boris-tabular: its events CSV)")
    exp.add_argument("--subject", help="export only this subject's bouts (DeepEthogram files "
                     "hold one animal)")
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

    lst = sub.add_parser("list", help="list the label sets of a store's videos",
                         description="Print each video's label sets (backups included) with "
                         "their bouts and behaviors.")
    lst.add_argument("store", type=Path, help="feature store (.zarr folder, .h5)")
    lst.add_argument("--video-id", help="only this video")
    lst.set_defaults(func=run_list)

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


def _read_for_store(args: argparse.Namespace, store: Any, report: Any) -> list[tuple[str, Any]]:
    """Read the file into ``[(stored video id, table)]``, one per observation.

    Every video of the file is read with the store's frame rate, frame count and real
    timestamps (a live BORIS observation gets the stored video's rate), so that its seconds map
    onto the right frames. Tables of videos not in the store are reported in ``report`` and
    skipped; LabelError when none of the file's videos is in the store.
    """
    from prism_science.errors import LabelError
    from prism_science.labels import read_label_tables
    from prism_science.labels.formats import VideoTiming
    from prism_science.labels.store_io import match_video_id

    known = store.video_ids()

    def timing(label_video_id: str) -> VideoTiming | None:
        video_id = match_video_id(label_video_id, known)
        if video_id is None:
            return None
        info = store.video_info(video_id)
        ts = info.timestamps if len(info.timestamps) == info.n_frames else None
        return VideoTiming(fps=args.fps or info.fps or None, n_frames=info.n_frames,
                           timestamps=ts)

    tables = read_label_tables(
        args.file, args.format, fps=args.fps, n_frames=args.n_frames, video_id=args.video_id,
        behaviors=_behaviors(args.behaviors), annotator=args.annotator, report=report,
        timing=timing, **_format_options(args))
    pairs, missing = [], []
    for table in tables.values():
        video_id = match_video_id(str(table.video_id), known)
        if video_id is None:
            missing.append(table)
        else:
            pairs.append((video_id, table))
    if not pairs:
        raise LabelError(
            f"{args.store}: no video {missing[0].video_id!r} in the store (videos: "
            f"{', '.join(known[:10]) or 'none'}); extract features for it first, or name "
            "the stored video with --video-id.")
    for table in missing:
        what = f"observation {table.observation!r} of video {table.video_id!r}" \
            if table.observation else f"video {table.video_id!r}"
        report.skip(what, f"not in the store {args.store}")
    return pairs


def _file_part(text: str) -> str:
    """``text`` as a piece of a file or label-set name (letters, digits, ``_.-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "observation"


def _print_report(report: Any, n_tables: int, n_intervals: int, n_videos: int) -> None:
    """The import summary: what was imported, what was skipped and why, what was kept in part."""
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for what, why in report.skipped:
        print(f"skipped {what}: {why}", file=sys.stderr)
    print(f"imported {n_tables} table(s) of {n_videos} video(s), {n_intervals} intervals; "
          f"skipped {len(report.skipped)}")


def _refuse_replacing(args: argparse.Namespace, store: Any,
                      named: list[tuple[str, Any, str]]) -> bool:
    """Whether the import must stop: a video's label set would be replaced without --replace.

    Every video of the file is checked before anything is written, so a refused import
    changes nothing. Tables that do not fit their video are left to the import loop to report.
    """
    from prism_science.errors import LabelError
    from prism_science.labels.store_io import import_labels

    refused = []
    for video_id, table, name in named:
        try:
            plan = import_labels(store, video_id, table, name, dry_run=True)
        except LabelError:
            continue
        if plan.action == "replace" and not args.replace:
            refused.append(plan)
    for plan in refused:
        print(f"error: {args.store}: video {plan.video_id!r} already has {plan.key} "
              f"({plan.old_bouts} bouts; the file gives {plan.new_bouts}, different); pass "
              "--replace to replace it (the old set is kept as a backup, see `labels list`), or "
              "--name to import the file as another label set", file=sys.stderr)
    if refused:
        print(f"error: nothing of {args.file} was imported", file=sys.stderr)
    return bool(refused)


def _outcome_note(outcome: Any) -> str:
    if outcome.action == "unchanged":
        return " (unchanged: the store held the same labels)"
    if outcome.action == "replaced":
        return (f" (replaced {outcome.old_bouts} bouts; the old set is kept as "
                f"labels/{outcome.backup})")
    return ""


def run_import(args: argparse.Namespace) -> int:
    """Read a label file and save it in a store or as plain CSV."""
    from prism_science.errors import LabelError, PrismError
    from prism_science.labels import read_label_tables, write_labels
    from prism_science.labels.formats import ReadReport, label_file_paths
    from prism_science.labels.store_io import import_labels

    report = ReadReport()
    if args.replace and args.store is None:
        print("error: --replace applies to imports into a store (--store)", file=sys.stderr)
        return 2
    try:
        if args.store is not None:
            from prism_science.store import open_store

            with open_store(args.store, mode="r+") as store:
                pairs = _read_for_store(args, store, report)
                # Several observations of one video (coders, focal animals) each get their own
                # label set, NAME/<observation>, so that none overwrites another.
                per_video = {v: sum(1 for w, _ in pairs if w == v) for v, _ in pairs}
                named = [(video_id, table, args.name if per_video[video_id] == 1 else
                          f"{args.name}/{_file_part(str(table.observation))}")
                         for video_id, table in pairs]
                if _refuse_replacing(args, store, named):
                    return 2
                saved = []
                for video_id, table, name in named:
                    try:
                        done = import_labels(store, video_id, table, name, replace=args.replace)
                    except LabelError as exc:
                        report.skip(f"observation {table.observation!r} of video {video_id!r}"
                                    if table.observation else f"video {video_id!r}", str(exc))
                        continue
                    saved.append(table)
                    print(f"{video_id}: {len(table.intervals)} intervals -> {args.store} "
                          f"{done.key}{_outcome_note(done)}")
            _print_report(report, len(saved), sum(len(t.intervals) for t in saved),
                          len({t.video_id for t in saved}))
            return 0 if saved else 2
        tables = read_label_tables(
            args.file, args.format, fps=args.fps, n_frames=args.n_frames,
            video_id=args.video_id, behaviors=_behaviors(args.behaviors),
            annotator=args.annotator, report=report, **_format_options(args))
        if len(tables) == 1:
            outputs = {next(iter(tables)): args.out}
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            per_video = {t.video_id: sum(1 for u in tables.values() if u.video_id == t.video_id)
                         for t in tables.values()}
            # Ids come from the file: each becomes a safe file name inside --out, never a path.
            outputs = label_file_paths({k: str(t.video_id) if per_video[t.video_id] == 1
                                        else f"{t.video_id}.{t.observation}"
                                        for k, t in tables.items()}, args.out)
        for key, out in outputs.items():
            write_labels(tables[key], out, format="csv")
            print(f"{key}: {len(tables[key].intervals)} intervals -> {out}")
        _print_report(report, len(tables), sum(len(t.intervals) for t in tables.values()),
                      len({t.video_id for t in tables.values()}))
        return 0
    except (PrismError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run_export(args: argparse.Namespace) -> int:
    """Write one video's label set from a store in another format."""
    from prism_science.errors import LabelError, PrismError
    from prism_science.labels import load_labels, write_labels
    from prism_science.store import open_store

    try:
        with open_store(args.store, mode="r") as store:
            table = load_labels(store, args.video_id, args.name)
            source_path = store.video_info(args.video_id).source_path \
                if store.has_video(args.video_id) else ""
        if args.subject is not None:
            if args.subject not in table.subjects():
                raise LabelError(f"{args.store}: labels/{args.name} of {args.video_id!r} has no "
                                 f"subject {args.subject!r}; subjects: "
                                 f"{[s for s in table.subjects() if s is not None]}.")
            table = table.select(subject=args.subject)
        options = {"media_path": source_path or args.video_id} if args.format == "boris" else {}
        write_labels(table, args.out, format=args.format, **options)
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


def run_list(args: argparse.Namespace) -> int:
    """Print the label sets of each video of a store (backups included)."""
    from prism_science.errors import PrismError
    from prism_science.labels import load_labels
    from prism_science.labels.store_io import list_labels
    from prism_science.store import open_store

    try:
        with open_store(args.store, mode="r") as store:
            video_ids = [args.video_id] if args.video_id else store.video_ids()
            for video_id in video_ids:
                names = list_labels(store, video_id)
                print(f"{video_id}: {len(names)} label set(s)")
                for name in names:
                    try:
                        table = load_labels(store, video_id, name)
                    except PrismError as exc:
                        print(f"  labels/{name}  (does not read: {exc})")
                        continue
                    behaviors = sorted({iv.behavior for iv in table.intervals})
                    print(f"  labels/{name}  {len(table.intervals)} bouts"
                          + (f"  ({', '.join(behaviors[:8])})" if behaviors else ""))
        return 0
    except (PrismError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
