"""Shared pieces of the format readers: options, the read report, observation selection and
skipping, CSV rows with line numbers, field parsing."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.table import LabelTable

T = TypeVar("T")


@dataclass(frozen=True)
class VideoTiming:
    """A video's frame rate, length and real frame times (what a store records)."""

    fps: float | None = None
    n_frames: int | None = None
    timestamps: np.ndarray | None = None


@dataclass
class ReadReport:
    """What reading a label file left out and why, for the caller's summary.

    ``skipped`` holds ``(what, why)`` pairs (an observation, a table, a sequence that could not be
    imported while the rest of the file was); ``notes`` holds things kept only in part (comments
    not kept, unclosed bouts, ...). Readers fill it; :func:`read_label_tables` logs it when the
    caller passed none (a caller that passes one reports it itself).
    """

    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, what: str, why: str) -> None:
        """Record that ``what`` was not imported because ``why``."""
        self.skipped.append((what, why))

    def note(self, text: str) -> None:
        """Record something imported only in part (said once)."""
        if text not in self.notes:
            self.notes.append(text)


@dataclass(frozen=True)
class ReadOptions:
    """What the caller knows about the video(s), passed to every reader.

    ``fps``, ``n_frames`` and ``timestamps`` (float64 (n_frames,) seconds) describe the video;
    ``video_id`` renames a single-video file's table (or selects the observations of one video
    of a multi-video file, before they are parsed); ``behaviors`` is the project's vocabulary,
    checked against; ``annotator`` fills intervals whose file does not name one. ``timing``
    maps a video id of the file to the timing of that video (e.g. from a feature store), used by
    readers of multi-video files per video; ``report`` collects what was skipped.
    """

    fps: float | None = None
    n_frames: int | None = None
    timestamps: np.ndarray | None = None
    video_id: str | None = None
    behaviors: BehaviorSet | None = None
    annotator: str = ""
    timing: Callable[[str], VideoTiming | None] | None = field(default=None, compare=False)
    report: ReadReport = field(default_factory=ReadReport, compare=False)

    def for_video(self, video_id: str) -> ReadOptions:
        """These options with the timing ``timing`` knows for ``video_id`` (else unchanged)."""
        known = self.timing(video_id) if self.timing is not None else None
        if known is None:
            return self
        ts = known.timestamps
        return replace(self, fps=known.fps or self.fps,
                       n_frames=known.n_frames if known.n_frames is not None else self.n_frames,
                       timestamps=ts if ts is not None and len(ts) else self.timestamps)


def media_stem(name: str) -> str:
    """The file name without folders and extension (``C:\\v\\fly_01.mp4`` -> ``fly_01``)."""
    return Path(str(name).replace("\\", "/")).stem


def select_observations(path: Path, entries: Sequence[tuple[str, str]], options: ReadOptions
                        ) -> list[tuple[int, str]]:
    """Which observations of a file to read, and the video id each gets.

    ``entries`` are ``(video_id, observation)`` per observation in file order. Without
    ``options.video_id`` every entry is read under its own video id. With it: a file of one
    video has that video renamed; a file of several videos keeps only the observations of the
    named video (matched by video id, its stem, or the observation id), so that the others are
    never parsed. Returns ``(index into entries, video id)`` pairs.

    Raises
    ------
    LabelError
        When ``video_id`` names none of several videos (the message lists them).
    """
    wanted = options.video_id
    if wanted is None:
        return [(i, video) for i, (video, _) in enumerate(entries)]
    videos = list(dict.fromkeys(video for video, _ in entries))
    if len(videos) <= 1:
        return [(i, wanted) for i in range(len(entries))]
    names = {wanted, media_stem(wanted)}
    chosen = [(i, video) for i, (video, obs) in enumerate(entries)
              if video in names or obs == wanted]
    if not chosen:
        raise LabelError(
            f"{path}: holds videos {videos[:12]}{' ...' if len(videos) > 12 else ''}, not "
            f"{wanted!r}; pass one of them (or an observation id) as video_id (--video-id).")
    return chosen


def read_each(items: Sequence[tuple[str, Callable[[], T]]], report: ReadReport) -> list[T]:
    """Build every item; one that raises LabelError is reported and skipped, the rest are kept.

    ``items`` are ``(what, build)`` pairs, ``what`` naming the observation for the report.
    When every item fails, the first error is raised (with how many others failed), so a
    file whose only observation is bad still fails with the reason.
    """
    built: list[T] = []
    errors: list[tuple[str, LabelError]] = []
    for what, build in items:
        try:
            built.append(build())
        except LabelError as exc:
            errors.append((what, exc))
    if errors and not built:
        first = errors[0][1]
        if len(errors) == 1:
            raise first
        raise LabelError(f"{first} (and {len(errors) - 1} other observation(s) failed too: "
                         f"{', '.join(w for w, _ in errors[1:6])}"
                         f"{' ...' if len(errors) > 6 else ''})") from first
    for what, exc in errors:
        report.skip(what, str(exc))
    return built


def keyed(tables: Sequence[LabelTable]) -> dict[str, LabelTable]:
    """``{key: table}``: the video id when the video has one table here, else
    ``video_id/observation`` (several observations of one video never overwrite each other)."""
    per_video: dict[str | None, int] = {}
    for t in tables:
        per_video[t.video_id] = per_video.get(t.video_id, 0) + 1
    out: dict[str, LabelTable] = {}
    for t in tables:
        key = str(t.video_id)
        if per_video[t.video_id] > 1:
            key = f"{t.video_id}/{t.observation}" if t.observation else key
        base, n = key, 2
        while key in out:
            key, n = f"{base}#{n}", n + 1
        out[key] = t
    return out


def field_error(path: Path | str, line: int | None, field: str, expected: str, found: object,
                hint: str = "") -> LabelError:
    """A LabelError naming the file, line and field, what was expected and found, and a hint."""
    at = f"{path}, line {line}" if line is not None else f"{path}"
    msg = f"{at}, field {field!r}: expected {expected}, found {found!r}."
    return LabelError(f"{msg} {hint}".strip())


def read_text(path: Path) -> str:
    """The file as text (UTF-8 with optional BOM); LabelError when it is not text."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(f"{path}: not a UTF-8 text file ({exc}); expected a CSV/JSON/XML "
                         "label file. Check --format.") from exc


def sniff_delimiter(header_line: str) -> str:
    """',' or tab or ';' or ' ' by which splits the header line into most fields."""
    counts = {d: header_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] > 0:
        return best
    return " "


def csv_rows(path: Path, delimiter: str | None = None,
             is_header: Callable[[str], bool] | None = None
             ) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    """Header and ``(line_number, row dict)`` pairs of a delimited text file.

    ``is_header`` skips leading lines until one it accepts (BORIS's older exports put metadata
    lines above the header). Rows with a different number of fields than the header raise
    LabelError naming the line.
    """
    lines = read_text(path).splitlines()
    start = 0
    if is_header is not None:
        for i, line in enumerate(lines):
            if is_header(line):
                start = i
                break
    while start < len(lines) and not lines[start].strip():
        start += 1
    if start >= len(lines):
        raise LabelError(f"{path}: the file is empty; expected a header line and rows.")
    delim = delimiter or sniff_delimiter(lines[start])
    if delim == " ":
        reader = (line.split() for line in lines[start:])
    else:
        reader = csv.reader(lines[start:], delimiter=delim)
    header = [h.strip() for h in next(iter(reader))]

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        for offset, fields in enumerate(reader, start=start + 2):
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise LabelError(
                    f"{path}, line {offset}: expected {len(header)} fields like the header "
                    f"({', '.join(header[:8])}{', ...' if len(header) > 8 else ''}), found "
                    f"{len(fields)}. Fix the row (a stray delimiter or quote?).")
            yield offset, {h: f.strip() for h, f in zip(header, fields, strict=True)}

    return header, rows()


def parse_int(path: Path, line: int | None, field: str, value: str) -> int:
    """An integer field (``'12'`` or ``'12.0'``); LabelError naming file/line/field otherwise."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise field_error(path, line, field, "an integer frame index", value) from None
    if not math.isfinite(f) or f != int(f):
        raise field_error(path, line, field, "an integer frame index", value)
    return int(f)


def parse_float(path: Path, line: int | None, field: str, value: str,
                allow_empty: bool = False) -> float | None:
    """A float field; empty/NA gives None when ``allow_empty``, else LabelError."""
    if value is None or value.strip() in ("", "NA", "nan", "NaN"):
        if allow_empty:
            return None
        raise field_error(path, line, field, "a number", value)
    try:
        return float(value)
    except ValueError:
        raise field_error(path, line, field, "a number", value) from None


def require_columns(path: Path, header: list[str], needed: list[str], fmt: str) -> None:
    """LabelError listing the missing columns of a ``fmt`` file."""
    missing = [c for c in needed if c not in header]
    if missing:
        raise LabelError(
            f"{path}, line 1 (header): missing column(s) {missing} of the {fmt} format; found "
            f"{header}. Check --format or export the file again from the tool.")


def pick_video(tables: Mapping[str, object], options: ReadOptions, path: Path) -> dict:
    """Keep only ``options.video_id`` when the file holds several videos and it names one."""
    if options.video_id is None or len(tables) <= 1 or options.video_id not in tables:
        return dict(tables)
    return {options.video_id: tables[options.video_id]}
