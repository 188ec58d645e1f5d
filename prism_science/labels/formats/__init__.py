"""The registry of label formats: one entry per format, with its reader, writer and detector.

``read_labels`` / ``write_labels`` / ``detect_format`` are the only entry points; each module of
this package implements one tool's format (docs/labels.md describes every mapping).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Sequence
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
from prism_science.labels.formats._common import ReadOptions
from prism_science.labels.formats._matlab import load_mat
from prism_science.labels.table import LabelTable

logger = logging.getLogger(__name__)

Reader = Callable[[Path, ReadOptions], dict[str, LabelTable]]
Writer = Callable[[LabelTable, Path], None]


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
    LabelFormat("boris", "BORIS project (.boris JSON); writing gives the tabular CSV",
                (".boris",), boris.read_project, boris.write_tabular, boris.sniff_project),
    LabelFormat("boris-tabular", "BORIS tabular events export (CSV/TSV, START/STOP/POINT rows)",
                (".csv", ".tsv"), boris.read_tabular, boris.write_tabular, boris.sniff_tabular),
    LabelFormat("boris-aggregated", "BORIS aggregated events export (Start (s) / Stop (s))",
                (".csv", ".tsv"), boris.read_aggregated, None, boris.sniff_aggregated),
    LabelFormat("deepethogram", "DeepEthogram <video>_labels.csv (frames x behaviors, -1/0/1)",
                (".csv",), deepethogram.read, deepethogram.write, deepethogram.sniff),
    LabelFormat("calms21", "CalMS21 task-1 JSON (per-frame class ids per sequence)", (".json",),
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
    LabelFormat("nwb", "NWB file with TimeIntervals (read + write)", (".nwb",), nwb.read,
                nwb.write, nwb.sniff),
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
    if suffix == ".boris":
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
                      **format_options: Any) -> dict[str, LabelTable]:
    """Read every video's labels in a file: ``{video_id: LabelTable}``.

    Parameters are those of :func:`read_labels`.
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
    options = ReadOptions(fps=fps, n_frames=n_frames if n_frames is not None else (
        len(ts) if ts is not None else None), timestamps=ts, video_id=video_id,
        behaviors=bset, annotator=annotator)
    try:
        inspect.signature(fmt.reader).bind(path, options, **format_options)
    except TypeError as exc:
        raise LabelError(f"format {name!r} does not take the option(s) "
                         f"{sorted(format_options)} ({exc}); see docs/labels.md.") from None
    tables = fmt.reader(path, options, **format_options)
    if video_id is not None and len(tables) > 1:
        if video_id not in tables:
            raise LabelError(f"{path}: holds videos {sorted(tables)}, not {video_id!r}; pass "
                             "one of them as video_id.")
        tables = {video_id: tables[video_id]}
    if validate:
        for table in tables.values():
            table.validate(bset)
    logger.info("read %s (%s): %d video(s), %d intervals", path, name, len(tables),
                sum(len(t.intervals) for t in tables.values()))
    return tables


def read_labels(path: str | Path, format: str | None = None, *, fps: float | None = None,
                n_frames: int | None = None, timestamps: Sequence[float] | None = None,
                video_id: str | None = None,
                behaviors: BehaviorSet | Sequence[str] | None = None, annotator: str = "",
                validate: bool = True, **format_options: Any
                ) -> LabelTable | dict[str, LabelTable]:
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
    **format_options
        Options of one format's reader: ``tracks=`` (kabr: CVAT detection-tracks XML whose
        boxes are attached), ``keyframes_only=`` (chimpact, default True).

    Returns
    -------
    LabelTable or dict of str -> LabelTable
        The table when the file holds one video, else ``{video_id: table}``.
    """
    tables = read_label_tables(path, format, fps=fps, n_frames=n_frames, timestamps=timestamps,
                               video_id=video_id, behaviors=behaviors, annotator=annotator,
                               validate=validate, **format_options)
    if len(tables) == 1:
        return next(iter(tables.values()))
    return tables


def write_labels(table: LabelTable, path: str | Path, format: str | None = None) -> Path:
    """Write one video's labels; ``format`` defaults from the extension (.nwb, .csv -> csv).

    Writable formats: ``csv``, ``boris`` (tabular CSV), ``deepethogram``, ``nwb``.
    """
    path = Path(path)
    if format is None:
        format = {".nwb": "nwb", ".csv": "csv"}.get(path.suffix.lower())
        if format is None:
            raise LabelError(f"{path}: cannot tell the output format from the extension; pass "
                             f"format= with one of {format_names(writable=True)}.")
    fmt = get_format(format)
    if fmt.writer is None:
        raise LabelError(f"format {format!r} cannot be written; writable formats: "
                         f"{format_names(writable=True)}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt.writer(table, path)
    logger.info("wrote %d intervals to %s (%s)", len(table.intervals), path, format)
    return path
