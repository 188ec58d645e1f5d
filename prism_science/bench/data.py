"""What every dataset module hands the runner: videos, labeled samples, splits, files to hash.

A *sample* is one labeled frame of one video (one box of it for ChimpACT) with a target row
over the benchmark's classes; the runner turns samples into clips centred on their frames.
Split files (JSON) say which videos form which subset::

    {"dataset": "chimpact", "version": "chimpact-official-v1", "source": "...",
     "default_subset": "train", "subsets": {"val": [...], "test": [...]}}

or, for a split defined by a rule (Fly vs. Fly's shipped default)::

    {"dataset": "flyvsfly", "version": "...", "rule": {"kind": "last_fraction_per_group",
     "test_fraction": 0.34}}
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import BenchError
from prism_science.video import open_video
from prism_science.video.index import natural_sort_key

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
"""The split files shipped with the package (versioned by their ``version`` field)."""


@dataclass(frozen=True)
class BenchVideo:
    """One video of a benchmark: a file or a folder of frames."""

    video_id: str
    path: Path
    subset: str
    fps: float | None = None
    group: str = ""
    n_frames: int = 0
    width: int = 0
    height: int = 0


def open_bench_video(video_id: str, path: Path, subset: str, fps: float | None = None,
                     group: str = "") -> BenchVideo:
    """A :class:`BenchVideo` with its frame count and size read from the file (or folder)."""
    with open_video(path, fps=fps) as reader:
        info = reader.info
        return BenchVideo(video_id, path, subset, fps, group, int(info.n_frames),
                          int(info.width), int(info.height))


@dataclass
class SampleSet:
    """Labeled samples of one subset, in a stable order.

    Attributes
    ----------
    video_ids : list of str
        (N,) the video of each sample.
    frames : np.ndarray
        (N,) int64, 0-based frame of the video the sample's clip is centred on.
    targets : np.ndarray
        (N, K) int8 in {0, 1} over the benchmark's classes (one-hot for multi-class).
    subjects : list of str
        (N,) the animal of a box-level sample, else "".
    boxes : np.ndarray or None
        (N, 4) float64 x1, y1, x2, y2 in frame pixels (ChimpACT), else None.
    """

    video_ids: list[str]
    frames: np.ndarray
    targets: np.ndarray
    subjects: list[str]
    boxes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.video_ids)

    @classmethod
    def build(cls, rows: list[tuple], n_classes: int, with_boxes: bool = False) -> SampleSet:
        """From ``(video_id, frame, target_row, subject, box_or_None)`` tuples."""
        return cls(
            video_ids=[r[0] for r in rows],
            frames=np.asarray([r[1] for r in rows], np.int64),
            targets=(np.asarray([r[2] for r in rows], np.int8).reshape(len(rows), n_classes)),
            subjects=[r[3] for r in rows],
            boxes=(np.asarray([r[4] for r in rows], np.float64).reshape(len(rows), 4)
                   if with_boxes else None),
        )


@dataclass
class BenchData:
    """A dataset read from its root, ready for the runner.

    ``expected_counts`` are counted by each dataset module straight from the label files
    (independently of the sample building) and checked against the samples in checks.json.
    """

    dataset: str
    root: Path
    classes: list[str]
    videos: dict[str, BenchVideo]
    samples: dict[str, SampleSet]
    label_files: list[Path]
    split_files: list[Path]
    split_version: str
    expected_counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    layout: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def require(path: Path, what: str, hint: str = "") -> Path:
    """``path`` when it exists, else a :class:`BenchError` naming it and what it should be."""
    if not path.exists():
        raise BenchError(f"{path}: missing; expected {what} of the dataset as released. "
                         f"{hint}".strip())
    return path


def load_split(path: Path, dataset: str) -> dict[str, Any]:
    """A split file, checked (see the module docstring)."""
    if not path.is_file():
        raise BenchError(f"--split {path}: no such file; expected a JSON split file (see "
                         "docs/bench.md).")
    try:
        split = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not valid JSON ({exc}); expected a split file.") from exc
    if not isinstance(split, dict) or ("subsets" not in split and "rule" not in split):
        raise BenchError(f"{path}: expected a JSON object with 'subsets' ({{subset: [video "
                         "ids]}}) or 'rule'; see docs/bench.md.")
    if split.get("dataset", dataset) != dataset:
        raise BenchError(f"{path}, field 'dataset': {split['dataset']!r}, but this is the "
                         f"{dataset} benchmark; pass the split file of {dataset}.")
    subsets = split.get("subsets", {})
    if not isinstance(subsets, dict) or not all(
            isinstance(v, list) and all(isinstance(i, str) for i in v) for v in subsets.values()):
        raise BenchError(f"{path}, field 'subsets': expected {{subset: [video id, ...]}}.")
    split.setdefault("version", path.stem)
    return split


def assign_subsets(videos: dict[str, str], split: dict[str, Any], where: str,
                   notes: list[str]) -> dict[str, str]:
    """Subset of each video id (``videos``: id -> group, e.g. FvF's set) under ``split``."""
    if "rule" in split:
        rule = split["rule"]
        if not isinstance(rule, dict) or rule.get("kind") != "last_fraction_per_group":
            raise BenchError(f"{where}, field 'rule': {rule!r}; the only rule is "
                             "{'kind': 'last_fraction_per_group', 'test_fraction': f}.")
        fraction = float(rule.get("test_fraction", 0.0))
        if not 0.0 < fraction < 1.0:
            raise BenchError(f"{where}, field 'rule.test_fraction': {fraction}; expected "
                             "0 < f < 1.")
        by_group: dict[str, list[str]] = defaultdict(list)
        for video_id, group in videos.items():
            by_group[group].append(video_id)
        out = {}
        for ids in by_group.values():
            ids.sort(key=natural_sort_key)
            n_test = min(len(ids) - 1, math.ceil(fraction * len(ids))) if len(ids) > 1 else 0
            for i, video_id in enumerate(ids):
                out[video_id] = "test" if i >= len(ids) - n_test else "train"
        return out
    listed = {}
    for subset, ids in split.get("subsets", {}).items():
        for video_id in ids:
            if video_id in listed:
                raise BenchError(f"{where}: video {video_id!r} is in subsets {listed[video_id]!r}"
                                 f" and {subset!r}; a video belongs to one subset.")
            listed[video_id] = subset
    missing = sorted(set(listed) - set(videos))
    if missing:
        notes.append(f"split {split.get('version')}: {len(missing)} listed video(s) are not in "
                     f"this root (first: {missing[0]})")
    default = split.get("default_subset")
    out = {}
    for video_id in videos:
        subset = listed.get(video_id, default)
        if subset is None:
            raise BenchError(f"{where}: video {video_id!r} is in no subset and the split has no "
                             "'default_subset'; list it or add a default.")
        out[video_id] = subset
    return out


def stride_rows(rows: list[tuple], stride: int) -> list[tuple]:
    """Every ``stride``-th row of each video (rows sorted by video, then frame)."""
    if stride <= 1:
        return rows
    out, count = [], defaultdict(int)
    for row in rows:
        if count[row[0]] % stride == 0:
            out.append(row)
        count[row[0]] += 1
    return out
