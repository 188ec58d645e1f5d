"""The registry of label formats: one entry per format, with its reader, writer and detector.

``read_labels`` / ``write_labels`` / ``detect_format`` are the only entry points; each module of
this package implements one tool's format (docs/labels.md describes every mapping).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats import (
    boris,
    calms21,
    chimpact,
    deepethogram,
    flyvsfly,
    jaaba,
    kabr,
    nwb,
    plain_csv,
    simba,
)
from prism_science.labels.formats._common import (
    ReadOptions,
    ReadReport,
    VideoTiming,
    media_stem,
    read_each,
)
from prism_science.labels.formats._matlab import load_mat
from prism_science.labels.table import LabelTable
from prism_science.store.feature_store import confined_path, safe_name

logger = logging.getLogger(__name__)

Reader = Callable[[Path, ReadOptions], dict[str, LabelTable]]
Writer = Callable[..., None]  # (table, path, **options of the format)


@dataclass(frozen=True)
class LabelFormat:
    """One label format: its name, what it is, file extensions, reader, writer, detector."""

    name: str
    description: str
    extensions: tuple[str, ...]
    reader: Reader | None = None
    writer: Writer | None = None
    sniff: Callable[[Path, str], bool] | None = None


FORMATS: dict[str, LabelFormat] = {f.name: f for f in (
    LabelFormat("csv", "plain interval CSV of prism-science (read + write)", (".csv",),
                plain_csv.read, plain_csv.write, plain_csv.sniff),
    LabelFormat("boris", "BORIS project (.boris / .boris.gz JSON, read + write: BORIS opens it)",
                (".boris",), boris.read_project, boris.write_project, boris.sniff_project),
    LabelFormat("boris-tabular", "BORIS tabular events export (CSV/TSV, START/STOP/POINT rows)",
                (".csv", ".tsv"), boris.read_tabular, boris.write_tabular, boris.sniff_tabular),
    LabelFormat("boris-aggregated", "BORIS aggregated events export (Start (s) / Stop (s))",
                (".csv", ".tsv"), boris.read_aggregated, None, boris.sniff_aggregated),
    LabelFormat("deepethogram", "DeepEthogram <video>_labels.csv (frames x behaviors, -1/0/1)",
                (".csv",), deepethogram.read, deepethogram.write, deepethogram.sniff),
    LabelFormat("calms21", "CalMS21 task 1-3 JSON (per-frame class ids per sequence)", (".json",),
                calms21.read, None, calms21.sniff),
    LabelFormat("flyvsfly", "Fly vs. Fly / FlyTracker -actions.mat (MATLAB v5 or v7.3)",
                (".mat",), flyvsfly.read),
    LabelFormat("jaaba", "JAABA scores_<Behavior>.mat (allScores; predictions)", (".mat",),
                jaaba.read),
    LabelFormat("kabr", "KABR annotation CSV or behavior-model CSV (space-separated)",
                (".csv", ".txt"), kabr.read_csv, None, kabr.sniff_csv),
    LabelFormat("kabr-cvat", "KABR mini-scene CVAT for video 1.1 XML (behavior attributes)",
                (".xml",), kabr.read_xml, None, kabr.sniff_xml),
    LabelFormat("chimpact", "ChimpACT COCO-style JSON (boxes + per-box behavior ids)",
                (".json",), chimpact.read, None, chimpact.sniff),
    LabelFormat("simba", "SimBA per-frame CSV (pose columns + 0/1 behavior columns)", (".csv",),
                simba.read, None, simba.sniff),
    LabelFormat("nwb", "NWB: TimeIntervals, ndx-ethogram bouts, events (read + write)",
                (".nwb",), nwb.read, nwb.write, nwb.sniff),
)}

# Order in which detectors are tried on text files (most specific first).
_TEXT_DETECTION = ("boris", "calms21", "chimpact", "kabr-cvat", "csv", "boris-aggregated",
                   "boris-tabular", "kabr", "deepethogram", "simba")


def format_names(readable: bool | None = None, writable: bool | None = None) -> list[str]:
    """Registered format names, optionally only those with a reader / a writer."""
    return [n for n, f in FORMATS.items()
            if (readable is None or (f.reader is not None) == readable)
            and (writable is None or (f.writer is not None) == writable)]


def get_format(name: str) -> LabelFormat:
    """The registry entry ``name``; LabelError listing the known names otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise LabelError(f"unknown label format {name!r}; expected one of "
                         f"{sorted(FORMATS)}.") from None


def detect_format(path: str | Path) -> str:
    """The format of a label file, from its extension and content.

    Raises
    ------
    LabelError
        When no format matches (the message lists the formats to pass explicitly).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".nwb":
        return "nwb"
    if suffix == ".boris" or path.name.lower().endswith(".boris.gz"):
        return "boris"
    if suffix == ".mat":
        names = set(load_mat(path))
        if "allScores" in names:
            return "jaaba"
        if {"behs", "bouts"} <= names:
            return "flyvsfly"
        raise LabelError(f"{path}: a .mat file with variables {sorted(names)}; expected "
                         "'behs' + 'bouts' (Fly vs. Fly) or 'allScores' (JAABA).")
    with open(path, "rb") as fh:
        head = fh.read(65536).decode("utf-8-sig", errors="replace")
    for name in _TEXT_DETECTION:
        fmt = FORMATS[name]
        if fmt.sniff is not None and fmt.sniff(path, head):
            return name
    raise LabelError(f"{path}: cannot tell the label format from its extension or content; "
                     f"pass format= (--format) with one of {format_names(readable=True)}.")


def read_label_tables(path: str | Path, format: str | None = None, *, fps: float | None = None,
                      n_frames: int | None = None, timestamps: Sequence[float] | None = None,
                      video_id: str | None = None,
                      behaviors: BehaviorSet | Sequence[str] | None = None,
                      annotator: str = "", validate: bool = True,
                      report: ReadReport | None = None,
                      timing: Callable[[str], VideoTiming | None] | None = None,
                      **format_options: Any) -> dict[str, LabelTable]:
    """Read every observation's labels in a file: ``{key: LabelTable}``.

    The key is the table's video id, or ``video_id/observation`` when the file holds several
    observations of one video (one per coder or focal animal): they never overwrite each other.
    An observation (or table) that cannot be read or fails validation is skipped and recorded
    in ``report`` while the others are returned; when none can be read, the first error is
    raised. Other parameters are those of :func:`read_labels`.

    Parameters
    ----------
    report : ReadReport, optional
        Filled with what was skipped and why, and what was kept only in part.
    timing : callable, optional
        ``timing(video_id) -> VideoTiming | None``: the fps, length and timestamps of a video
        of the file (e.g. from a feature store); used per video by multi-video readers.

    Raises
    ------
    LabelError
        Unreadable file, every observation bad, or no labels at all in the file.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"{path}: no such label file; check the path.")
    name = format or detect_format(path)
    fmt = get_format(name)
    if fmt.reader is None:
        raise LabelError(f"format {name!r} can only be written; readable formats: "
                         f"{format_names(readable=True)}.")
    ts = np.asarray(timestamps, dtype=np.float64) if timestamps is not None else None
    if ts is not None and n_frames is not None and len(ts) != n_frames:
        raise LabelError(f"{path}: {len(ts)} timestamps given for n_frames={n_frames}; "
                         "expected one timestamp per frame.")
    bset = behaviors if isinstance(behaviors, BehaviorSet) or behaviors is None else \
        BehaviorSet(tuple(behaviors))
    own_report = report is None
    report = report if report is not None else ReadReport()
    options = ReadOptions(fps=fps, n_frames=n_frames if n_frames is not None else (
        len(ts) if ts is not None else None), timestamps=ts, video_id=video_id,
        behaviors=bset, annotator=annotator, timing=timing, report=report)
    try:
        inspect.signature(fmt.reader).bind(path, options, **format_options)
    except TypeError as exc:
        raise LabelError(f"format {name!r} does not take the option(s) "
                         f"{sorted(format_options)} ({exc}); see docs/labels.md.") from None
    tables = fmt.reader(path, options, **format_options)
    if video_id is not None and len(tables) > 1:
        names = {video_id, media_stem(video_id)}
        chosen = {k: t for k, t in tables.items()
                  if k == video_id or t.video_id in names or t.observation == video_id}
        if not chosen:
            videos = sorted({str(t.video_id) for t in tables.values()})
            raise LabelError(f"{path}: holds videos {videos}, not {video_id!r}; pass one of "
                             "them as video_id.")
        tables = chosen
    if validate:
        items = [(_what(t, k), (lambda t=t: t.validate(bset))) for k, t in tables.items()]
        kept = {id(t) for t in read_each(items, report)}
        tables = {k: t for k, t in tables.items() if id(t) in kept}
    if not tables or all(not t.intervals and not t.segments for t in tables.values()):
        skipped = f" ({len(report.skipped)} skipped: {report.skipped[0][1]})" \
            if report.skipped else ""
        raise LabelError(f"{path}: holds no labels ({name} format: no observation with a bout "
                         f"or a labeled frame){skipped}. Check that the file is the export you "
                         "meant, or pass --format.")
    if own_report:  # nobody else will say it
        for what, why in report.skipped:
            logger.warning("skipped %s: %s", what, why)
        for note in report.notes:
            logger.info("%s", note)
    logger.info("read %s (%s): %d table(s) of %d video(s), %d intervals, %d skipped", path, name,
                len(tables), len({t.video_id for t in tables.values()}),
                sum(len(t.intervals) for t in tables.values()), len(report.skipped))
    return tables


def _what(table: LabelTable, key: str) -> str:
    return f"observation {table.observation!r} of video {table.video_id!r}" \
        if table.observation else f"video {key!r}"


def read_labels(path: str | Path, format: str | None = None, *, fps: float | None = None,
                n_frames: int | None = None, timestamps: Sequence[float] | None = None,
                video_id: str | None = None,
                behaviors: BehaviorSet | Sequence[str] | None = None, annotator: str = "",
                validate: bool = True, report: ReadReport | None = None,
                **format_options: Any) -> LabelTable | dict[str, LabelTable]:
    """Read a label file of any registered format.

    Parameters
    ----------
    path : str or Path
    format : str, optional
        A name of :data:`FORMATS`; detected from the extension and content when omitted.
    fps : float, optional
        The video's frame rate (seconds <-> frames); checked against the file's own rate.
    n_frames : int, optional
        The video's length; frames beyond it raise LabelError, and fully annotated formats
        label every frame up to it.
    timestamps : sequence of float, optional
        (n_frames,) real frame times in seconds; used instead of ``frame / fps``.
    video_id : str, optional
        Name of the table of a single-video file, or the video to pick from a multi-video file.
    behaviors : BehaviorSet or sequence of str, optional
        The project's vocabulary: other behaviors raise LabelError; exclusive groups are checked.
    annotator : str
        Annotator for files that do not name one.
    validate : bool
        Run :meth:`LabelTable.validate` on every table (default).
    report : ReadReport, optional
        Filled with the observations skipped (and why) and what was kept only in part.
    **format_options
        Options of one format's reader: ``tracks=`` (kabr: CVAT detection-tracks XML whose
        boxes are attached), ``keyframes_only=`` (chimpact, default True).

    Returns
    -------
    LabelTable or dict of str -> LabelTable
        The table when the file holds one table, else ``{key: table}`` (key: the video id, or
        ``video_id/observation`` for several observations of one video).
    """
    tables = read_label_tables(path, format, fps=fps, n_frames=n_frames, timestamps=timestamps,
                               video_id=video_id, behaviors=behaviors, annotator=annotator,
                               validate=validate, report=report, **format_options)
    if len(tables) == 1:
        return next(iter(tables.values()))
    return tables


def write_labels(table: LabelTable, path: str | Path, format: str | None = None,
                 **format_options: Any) -> Path:
    """Write one video's labels; ``format`` defaults from the extension.

    Writable formats: ``csv``, ``boris`` (.boris project BORIS opens), ``boris-tabular``
    (tabular events CSV), ``deepethogram`` (one subject per file), ``nwb`` (TimeIntervals and
    ndx-ethogram bouts). ``format_options`` go to the writer (``boris``: ``media_path=`` the
    video file BORIS should play; ``nwb``: ``session_start=``, ``subject_id=``, ``species=``).
    """
    path = Path(path)
    if format is None:
        format = {".nwb": "nwb", ".csv": "csv", ".boris": "boris"}.get(path.suffix.lower())
        if format is None:
            raise LabelError(f"{path}: cannot tell the output format from the extension; pass "
                             f"format= with one of {format_names(writable=True)}.")
    fmt = get_format(format)
    if fmt.writer is None:
        raise LabelError(f"format {format!r} cannot be written; writable formats: "
                         f"{format_names(writable=True)}.")
    try:
        inspect.signature(fmt.writer).bind(table, path, **format_options)
    except TypeError as exc:
        raise LabelError(f"format {format!r} does not take the option(s) "
                         f"{sorted(format_options)} ({exc}); see docs/labels.md.") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt.writer(table, path, **format_options)
    logger.info("wrote %d intervals to %s (%s)", len(table.intervals), path, format)
    return path


def label_file_paths(names: Sequence[str] | Mapping[str, str], folder: str | Path,
                     suffix: str = ".labels.csv") -> dict[str, Path]:
    """One file per video or observation, every one inside ``folder``.

    Names come from the label file itself (a BORIS observation id, a KABR video id, a media
    path) and may hold ``../``, absolute paths or characters no file system takes: each is made
    a plain name by :func:`prism_science.store.safe_name` and checked to lie in ``folder``
    (:func:`prism_science.store.confined_path`). Two keys that give one name get ``-2``,
    ``-3``... in the order given, so no file overwrites another.

    Parameters
    ----------
    names : sequence of str, or mapping
        The keys of :func:`read_label_tables`, or ``{key: wanted file name}``.
    folder : str or Path
        The output folder the user named.
    suffix : str
        Appended to each name.

    Returns
    -------
    dict
        ``{key: path}``.

    Raises
    ------
    prism_science.errors.StoreError
        A name that would still resolve outside ``folder`` (a symbolic link there).
    """
    wanted = dict(names) if isinstance(names, Mapping) else {key: key for key in names}
    out: dict[str, Path] = {}
    taken: set[str] = set()
    for key, want in wanted.items():
        name = base = safe_name(want)
        n = 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name.lower())
        out[key] = confined_path(folder, name, suffix)
        if name != want:
            logger.info("labels of %r go to %s (a safe file name)", key, out[key].name)
    return out
