"""KABR (Kenyan Animal Behavior Recognition): mini-scene behavior, macro top-1 accuracy.

Layout as released (Charades/SlowFast style, kabr-tools cvat2slowfast)::

    ROOT/annotation/classes.json            {"Walk": 0, "Graze": 1, ...}
    ROOT/annotation/train.csv, val.csv       space-separated: original_vido_id video_id
                                             frame_id path labels (one row per frame, 1-based)
    ROOT/dataset/image/<code>/<n>.jpg        the frames of each mini-scene, n = 1, 2, ...

The official split is the release's own train.csv / val.csv (the probe trains on train and is
evaluated on val). A sample every 5th labeled frame of each mini-scene (stride 5), a 16-frame
clip centred on it; softmax + EQL loss; macro top-1 accuracy. Mini-scenes run at 29.97 fps.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np

from prism_science.bench.data import (
    BenchData,
    SampleSet,
    open_bench_video,
    require,
    stride_rows,
)
from prism_science.bench.protocol import Protocol
from prism_science.errors import BenchError
from prism_science.labels import read_labels, to_frame_matrix
from prism_science.labels.formats.kabr import KABR_FPS
from prism_science.video.index import IMAGE_EXTENSIONS, natural_sort_key

PROTOCOL = Protocol(dataset="kabr", clip_frames=16, train_stride=5, test_stride=5,
                    loss="eql", metric="top1_macro", paper_value=61.6,
                    train_subsets=("train",), test_subset="val")
DEFAULT_SPLIT = None  # the release's train.csv / val.csv
NATIVE_FORMAT = ("kabr-tools miniscene2behavior output CSV (space-separated 'video track frame "
                 "label', frame 0-based, label = class id of classes.json)")


def _check_frames(folder: Path) -> None:
    """The frames of a mini-scene are 1.jpg, 2.jpg, ...: frame_id n is the n-th file."""
    names = sorted((p.stem for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS),
                   key=natural_sort_key)
    for position, name in enumerate(names):
        if name != str(position + 1):
            raise BenchError(f"{folder}: expected frames 1.jpg ... {len(names)}.jpg (KABR's "
                             f"numbering, frame_id = file number), found {name!r} at "
                             f"position {position + 1}.")


def _count_rows(path: Path) -> dict[str, int]:
    """Rows per mini-scene counted straight from the CSV (for checks.json)."""
    counts: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter=" ")
        next(reader, None)
        for row in reader:
            if row:
                counts[row[0]] = counts.get(row[0], 0) + 1
    return counts


def read(root: Path, protocol: Protocol, split: Path | None = None) -> BenchData:
    """The KABR release under ``root`` as benchmark samples.

    Raises
    ------
    BenchError
        A file or folder of the release is missing or misnamed (the message names it).
    """
    annotation = require(root / "annotation", "the annotation folder")
    require(annotation / "classes.json", "classes.json (class name -> id)")
    image_root = require(root / "dataset" / "image", "the mini-scene frames folder")
    if split is not None:
        raise BenchError(f"--split {split}: KABR's split is the release's annotation/train.csv "
                         "and val.csv; edit those (or a copy of the root) instead.")
    files = {"train": require(annotation / "train.csv", "the training annotation CSV"),
             "val": require(annotation / "val.csv", "the validation annotation CSV")}
    classes: list[str] | None = None
    videos, samples, expected = {}, {}, {}
    for subset, path in files.items():
        tables = read_labels(path, format="kabr", fps=KABR_FPS)
        tables = tables if isinstance(tables, dict) else {tables.video_id: tables}
        stride = protocol.test_stride if subset == protocol.test_subset else \
            protocol.train_stride
        rows = []
        for video_id in sorted(tables, key=natural_sort_key):
            table = tables[video_id]
            names = list(table.behavior_set.names)
            if classes is None:
                classes = names
            folder = image_root / video_id
            require(folder, f"the frames folder of mini-scene {video_id} (named in {path})")
            _check_frames(folder)
            if video_id in videos:
                raise BenchError(f"{path}: mini-scene {video_id!r} is also in another subset; "
                                 "train.csv and val.csv must not share mini-scenes.")
            video = open_bench_video(video_id, folder, subset, fps=KABR_FPS)
            last = max((iv.end_frame for iv in table.intervals), default=-1) + 1
            if last > video.n_frames:
                raise BenchError(f"{path}: mini-scene {video_id} is labeled up to frame_id "
                                 f"{last} but {folder} has {video.n_frames} frames.")
            matrix = to_frame_matrix(table, names, n_frames=video.n_frames)
            videos[video_id] = video
            labeled = np.flatnonzero((matrix == 1).sum(1) == 1)
            rows.extend((video_id, int(f), (matrix[f] == 1).astype(np.int8), "", None)
                        for f in labeled)
        samples[subset] = SampleSet.build(stride_rows(rows, stride), len(classes or []))
        counts = _count_rows(path)
        expected[f"{subset}_samples"] = sum(math.ceil(n / stride) for n in counts.values())
    return BenchData("kabr", root, classes or [], videos, samples,
                     label_files=[annotation / "classes.json", *files.values()],
                     split_files=list(files.values()), split_version="kabr-release",
                     expected_counts=expected)


def write_predictions(out_dir: Path, data: BenchData, subset: str, scores: np.ndarray) -> Path:
    """The argmax class of each sample as kabr-tools' ``video track frame label`` CSV."""
    samples = data.samples[subset]
    path = out_dir / f"{subset}_predictions.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("video track frame label\n")
        for video_id, frame, k in zip(samples.video_ids, samples.frames.tolist(),
                                      np.argmax(scores, 1).tolist(), strict=True):
            handle.write(f"{video_id} 0 {frame} {k}\n")
    return path
