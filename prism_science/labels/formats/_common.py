"""Shared pieces of the format readers: options, CSV rows with line numbers, field parsing."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet


@dataclass(frozen=True)
class ReadOptions:
    """What the caller knows about the video(s), passed to every reader.

    ``fps``, ``n_frames`` and ``timestamps`` (float64 (n_frames,) seconds) describe the video;
    ``video_id`` renames a single-video file's table (or selects one video of a multi-video
    file); ``behaviors`` is the project's vocabulary, checked against; ``annotator`` fills
    intervals whose file does not name one.
    """

    fps: float | None = None
    n_frames: int | None = None
    timestamps: np.ndarray | None = None
    video_id: str | None = None
    behaviors: BehaviorSet | None = None
    annotator: str = ""


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
