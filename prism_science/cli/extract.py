"""The ``extract`` command: videos -> per-frame features in a Zarr or HDF5 store."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from prism_science.cli import positive_int
from prism_science.extraction.windows import PADDING_MODES, TOKEN_MODES, WINDOW_MODES

EPILOG = """\
examples:
  prism-science extract videos/ --recursive --out features.zarr
  prism-science extract a.mp4 b.mp4 --out features.h5 --tokens grid --grid 2
  prism-science extract videos/ --out features.zarr --cluster local:4
  prism-science extract videos/ --out /shared/features.zarr --cluster slurm --slurm-jobs 8 \\
      --slurm-memory 32GB --slurm-time 04:00:00 --slurm-gpus 1 --slurm-directive=--qos=high
  prism-science extract videos/ --out /shared/features.zarr --shard auto   # in sbatch --array
  prism-science extract clip.mp4 --out features.zarr --subjects clip.slp --crop-size 96
  prism-science extract arena.mp4 --out features.zarr --subjects auto --n-animals 2
  prism-science extract clip.mp4 --out features.zarr --subjects clip_coco.json --boxes

Rerunning the same command resumes: complete videos are skipped, unfinished ones continue from
their last written chunk, and videos whose chunks are all written are marked complete. Exit
code 0: all videos done (a shard: its share done); 1: some videos failed or were left
incomplete (listed at the end); 2: nothing was run (bad model, store or options); 130: stopped
by Ctrl-C (the summary says what was kept).
"""


def _device(text: str) -> str:
    if text in ("auto", "cpu", "cuda", "mps") or (text.startswith("cuda:")
                                                   and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, found {text!r}")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected seconds, found {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, found {text!r}")
    return value


def _crop_size(text: str) -> int | None:
    from prism_science.errors import PrismError

    if text == "auto":
        return None
    if not text.isdigit() or int(text) < 8:
        raise PrismError(f"--crop-size {text!r}: give a side in pixels (at least 8) or auto")
    return int(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``extract`` sub-command."""
    p = subparsers.add_parser(
        "extract",
        help="extract per-frame features of videos into a store",
        description="Encode every frame of the given videos with a frozen video encoder and "
        "write per-frame features, with provenance, to a Zarr v3 (default) or HDF5 store. "
        "Resumable; one bad video does not stop the others. See docs/extraction.md.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="video files, folders of videos, or folders of image frames")
    p.add_argument("--out", required=True, metavar="STORE",
                   help="the store: a .zarr folder, or a .h5/.hdf5 file")
    p.add_argument("--model", default="default",
                   help="registered model name or weights folder (default: the bundled encoder)")
    p.add_argument("--format", choices=("zarr", "hdf5"), default=None,
                   help="store format (default: by the --out suffix, .h5/.hdf5 -> hdf5)")
    g = p.add_argument_group("windows and tokens")
    g.add_argument("--tokens", choices=TOKEN_MODES, default="mean",
                   help="per-frame feature: mean over space (D), pooled g x g grid, or all tokens")
    g.add_argument("--grid", type=positive_int, default=2, help="grid side for --tokens grid")
    g.add_argument("--window", choices=WINDOW_MODES, default="sliding",
                   help="sliding: clips every --hop frames, averaged (about N/hop clips); "
                   "center: one clip centred on each frame (N clips, the paper's protocol)")
    g.add_argument("--stride", type=positive_int, default=1, help="frame stride inside a clip")
    g.add_argument("--hop", type=positive_int, default=8, help="frames between clip starts")
    g.add_argument("--padding", choices=PADDING_MODES, default="repeat",
                   help="how frames past the video's ends are filled (they are masked)")
    a = p.add_argument_group("per-subject features (one video; see docs/tracks.md)")
    a.add_argument("--subjects", default=None, metavar="auto|TRACKS_FILE",
                   help="extract one feature set per animal, from crops centred on its track: "
                   "a tracks file (SLEAP, DLC, CSV, ...; see `prism-science track`) or auto "
                   "(the built-in tracker; its CSV is written next to the store)")
    a.add_argument("--n-animals", type=positive_int, default=None, metavar="N",
                   help="animals in the video, for --subjects auto")
    a.add_argument("--crop-size", default="auto", metavar="PX|auto",
                   help="crop side in pixels (default auto: 2.5 body lengths, at least 32)")
    a.add_argument("--align-heading", action="store_true",
                   help="rotate each crop so that the animal's heading points up")
    a.add_argument("--boxes", action="store_true",
                   help="instead of crops, pool each subject's box of the whole frame's token "
                   "grid (RoIAlign; --tokens mean: one vector, grid: g x g bins); the tracks "
                   "need boxes (ChimpACT COCO, KABR CVAT, a CSV with w, h, or auto)")
    r = p.add_argument_group("running")
    r.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N")
    r.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass")
    r.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads on CPU (default: every usable core when the machine is "
                   "otherwise idle, else one left to decoding; docs/extraction.md)")
    r.add_argument("--matmul", choices=("default", "onednn", "auto"), default="default",
                   help="CPU fp32 matmul backend: torch's default (MKL), oneDNN with prepacked "
                   "weights, or auto (measured at load; the choice may differ between machines "
                   "by up to ~5e-6, so keep one value per feature set); docs/models.md")
    r.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="auto (default): bf16 autocast where the device computes bf16 natively "
                   "(CUDA, CPUs with AVX512_BF16/AMX), else fp32; recorded in the store's "
                   "provenance (docs/extraction.md)")
    r.add_argument("--glob", default=None,
                   help='pattern of files taken from folders, e.g. "*.mp4" (default: any video '
                   "extension)")
    r.add_argument("--recursive", action="store_true", help="search sub-folders")
    r.add_argument("--overwrite", action="store_true",
                   help="recompute and replace features (and records of changed videos)")
    r.add_argument("--chunk-frames", type=positive_int, default=None,
                   help="frames per stored chunk (default 256)")
    r.add_argument("--frames-per-file", type=positive_int, default=None, metavar="N",
                   help="Zarr: frames per stored file, a Zarr shard of whole chunks (default "
                   "8192, about 40 files per hour of 30 fps video); --chunk-frames's value: one "
                   "file per chunk")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    c = p.add_argument_group("distributed (Dask; Zarr stores only)")
    c.add_argument("--cluster", default=None, metavar="SPEC",
                   help="local:N (N local worker processes), tcp://HOST:PORT (a running Dask "
                   "scheduler) or slurm (dask-jobqueue)")
    c.add_argument("--workers-per-gpu", type=positive_int, default=1,
                   help="worker processes sharing one GPU")
    c.add_argument("--task-frames", type=positive_int, default=8192,
                   help="longer videos are split into tasks (and --shard units) of about this "
                   "many frames, rounded down to whole files (--frames-per-file)")
    c.add_argument("--worker-timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="stop when no Dask worker has joined (or all are gone) for this long; "
                   "0 waits forever (default 60, slurm 3600)")
    c.add_argument("--shard", default=None, metavar="i/N|auto",
                   help="run shard i of N (0-based) of the work in this process, with no "
                   "coordinator; auto: this task of a Slurm job array ($SLURM_ARRAY_TASK_ID of "
                   "$SLURM_ARRAY_TASK_COUNT). Not with --cluster")
    s = p.add_argument_group(
        "Slurm (--cluster slurm; your jobqueue.yaml applies, these override it)")
    s.add_argument("--slurm-jobs", type=positive_int, default=None,
                   help="most Slurm jobs at once (adaptive; env PRISM_SLURM_JOBS, default 1)")
    s.add_argument("--slurm-min-jobs", type=int, default=None,
                   help="fewest jobs kept while work remains (env PRISM_SLURM_MIN_JOBS, "
                   "default 1)")
    for name, help_text in (
        ("queue", "partition"), ("account", "account"),
        ("memory", "memory per job with a unit, e.g. 32GB"),
        ("cores", "CPU cores per job (default: your config, else 1 per worker process)"),
        ("gpus", "GPUs per job; one worker process per GPU (x --workers-per-gpu)"),
    ):
        s.add_argument(f"--slurm-{name}", default=None,
                       help=f"{help_text} (env PRISM_SLURM_{name.upper()})")
    s.add_argument("--slurm-walltime", "--slurm-time", dest="slurm_walltime", default=None,
                   help="time limit per job as sbatch --time takes it, e.g. 04:00:00 or "
                   "1-00:00:00 (env PRISM_SLURM_WALLTIME)")
    s.add_argument("--slurm-lifetime", default=None, metavar="DURATION",
                   help="workers retire after this long, e.g. 230m or 03:50:00 (0: never); "
                   "default: the walltime less a tenth (at least 5 min)")
    s.add_argument("--slurm-lifetime-stagger", default=None, metavar="DURATION",
                   help="random spread of worker lifetimes, e.g. 4m (default: a twentieth of "
                   "the walltime, at most 5 min)")
    s.add_argument("--slurm-directive", action="append", default=None, metavar="OPTION",
                   dest="slurm_directives",
                   help="an extra #SBATCH line, e.g. --slurm-directive=--qos=high or "
                   "--slurm-directive constraint=a100 (-- added); repeat for more")
    s.add_argument("--slurm-log-dir", default=None, metavar="FOLDER",
                   help="where the jobs' slurm-*.out/.err logs go (env PRISM_SLURM_LOG_DIR)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the extraction; print the report. Returns 0, 1 (some videos failed) or 2."""
    from prism_science.errors import PrismError
    from prism_science.extraction import ExtractOptions, run_extraction
    from prism_science.extraction.slurm import SLURM_OPTIONS
    from prism_science.extraction.windows import WindowParams

    if args.cluster and not getattr(args, "verbose", False):
        # Dask logs every worker start and stop at INFO; keep the output to our progress.
        for name in ("distributed", "dask_jobqueue"):
            logging.getLogger(name).setLevel(logging.WARNING)
    try:
        params = WindowParams(mode=args.window, stride=args.stride, hop=args.hop,
                              tokens=args.tokens, grid=args.grid, padding=args.padding)
        options = ExtractOptions(
            model=args.model, params=params, device=args.device, batch_size=args.batch_size,
            overwrite=args.overwrite, format=args.format, chunk_frames=args.chunk_frames,
            shard_frames=args.frames_per_file,
            progress=not args.no_progress, threads=args.threads, precision=args.precision,
            matmul=args.matmul,
            subjects=args.subjects, n_animals=args.n_animals,
            crop_size=_crop_size(args.crop_size), align_heading=args.align_heading,
            boxes=args.boxes,
        )
        cluster_options = {
            "workers_per_gpu": args.workers_per_gpu,
            "worker_timeout": args.worker_timeout,
            "slurm": {**{k: getattr(args, f"slurm_{k}") for k in SLURM_OPTIONS},
                      "directives": args.slurm_directives or []},
        }
        if args.shard is None and os.environ.get("SLURM_ARRAY_TASK_ID"):
            logging.getLogger(__name__).info(
                "in a Slurm job array but without --shard: this task extracts every video "
                "given; add --shard auto to share the work among the array's tasks")
        report = run_extraction(
            args.paths, args.out, options, glob=args.glob, recursive=args.recursive,
            cluster=args.cluster, cluster_options=cluster_options if args.cluster else None,
            shard=args.shard, task_frames=args.task_frames,
        )
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    if report.user_interrupt:
        return 130
    if not report.ok:
        return 1
    return 3 if report.short else 0  # extracted, but a video is shorter than it declares
