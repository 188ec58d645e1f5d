"""CalMS21 task 1 (mouse social behavior): per-frame attack / investigation / mount, mAP.

Layout as released (CaltechDATA archives unzipped into ROOT)::

    ROOT/task1_classic_classification/calms21_task1_train.json, calms21_task1_test.json
    ROOT/task1_videos_mp4/<train|test>/<sequence>.mp4   (e.g. mouse001_task1_annotator1.mp4;
                                                         ROOT/<train|test>/ is accepted too)

The official split is the release's train / test files. Every frame is labeled with one class;
``other`` is the background: it is no behavior of the metric (mAP over attack, investigation,
mount), a frame labeled ``other`` is negative for all three. Sigmoid BCE. Training samples every
16th frame (SciVid's subsampling of the train set), test samples every frame. The official
``.npy`` conversion is a pickle and is not read (never unpickle a downloaded file): keep the
JSON files.
"""

from __future__ import annotations

import json
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
from prism_science.labels.formats.calms21 import BACKGROUND
from prism_science.video.index import natural_sort_key

PROTOCOL = Protocol(dataset="calms21", clip_frames=16, train_stride=16, test_stride=1,
                    loss="bce", metric="map", paper_value=91.1)
DEFAULT_SPLIT = None  # the release's calms21_task1_{train,test}.json
NATIVE_FORMAT = ("CalMS21 task-1 JSON ({'annotator-id_0': {'task1/test/<seq>': {'annotations': "
                 "[class id per frame], 'metadata': {'vocab': ...}}}}): the top behavior when "
                 "its score is >= 0.5, else 'other'")
LABEL_DIR = "task1_classic_classification"


def _video_dirs(root: Path, subset: str) -> list[Path]:
    return [root / "task1_videos_mp4" / subset, root / subset]


def _find_video(root: Path, subset: str, name: str, label_file: Path) -> Path:
    for folder in _video_dirs(root, subset):
        if (folder / f"{name}.mp4").is_file():
            return folder / f"{name}.mp4"
    raise BenchError(f"{_video_dirs(root, subset)[0] / (name + '.mp4')}: missing; expected the "
                     f"video of sequence {name!r} of {label_file} (task1_videos_mp4.zip "
                     "unzipped into the root).")


def read(root: Path, protocol: Protocol, split: Path | None = None) -> BenchData:
    """The CalMS21 task-1 release under ``root`` as benchmark samples.

    Raises
    ------
    BenchError
        A label file or video is missing, or a video is shorter than its annotations.
    """
    label_dir = root / LABEL_DIR
    if split is not None:
        raise BenchError(f"--split {split}: CalMS21's split is the release's train and test "
                         "JSON files.")
    files = {}
    for subset in ("train", "test"):
        path = label_dir / f"calms21_task1_{subset}.json"
        if not path.is_file() and path.with_suffix(".npy").is_file():
            raise BenchError(f"{path}: missing; only {path.with_suffix('.npy').name} is there, "
                             "a pickle that is not read. Put the released JSON beside it.")
        files[subset] = require(path, f"the task-1 {subset} annotations JSON")
    classes: list[str] | None = None
    videos, samples, expected = {}, {}, {}
    for subset, path in files.items():
        tables = read_labels(path, format="calms21")
        tables = tables if isinstance(tables, dict) else {tables.video_id: tables}
        stride = protocol.test_stride if subset == protocol.test_subset else \
            protocol.train_stride
        rows = []
        for name in sorted(tables, key=natural_sort_key):
            table = tables[name]
            names = [n for n in table.behavior_set.names if n != BACKGROUND]
            if classes is None:
                classes = names
            elif names != classes:
                raise BenchError(f"{path}, sequence {name!r}: behaviors {names}, but earlier "
                                 f"sequences have {classes}; one vocabulary expected.")
            video = open_bench_video(name, _find_video(root, subset, name, path), subset)
            matrix = to_frame_matrix(table, names)
            if len(matrix) > video.n_frames:
                raise BenchError(f"{video.path}: {video.n_frames} frames, but {path} sequence "
                                 f"{name!r} has {len(matrix)} annotated frames; expected the "
                                 "video of that sequence, whole.")
            videos[name] = video
            rows.extend((name, f, matrix[f].clip(0, 1), "", None) for f in range(len(matrix)))
        samples[subset] = SampleSet.build(stride_rows(rows, stride), len(classes or []))
        raw = json.loads(path.read_text(encoding="utf-8"))
        lengths = [len(seq["annotations"]) for group in raw.values() for seq in group.values()]
        expected[f"{subset}_frames"] = sum(lengths)
        expected[f"{subset}_samples"] = sum(math.ceil(n / stride) for n in lengths)
    return BenchData("calms21", root, classes or [], videos, samples,
                     label_files=list(files.values()), split_files=list(files.values()),
                     split_version="calms21-task1-release", expected_counts=expected)


def write_predictions(out_dir: Path, data: BenchData, subset: str, scores: np.ndarray) -> Path:
    """Per-frame predicted class ids in the task-1 JSON layout (unsampled frames take the
    prediction of the nearest sampled frame before them)."""
    samples = data.samples[subset]
    vocab = {name: i for i, name in enumerate([*data.classes, BACKGROUND])}
    background = vocab[BACKGROUND]
    top = np.argmax(scores, 1)
    label = np.where(scores.max(1) >= 0.5, top, background)
    sequences = {}
    for name in dict.fromkeys(samples.video_ids):
        mine = np.flatnonzero(np.asarray(samples.video_ids) == name)
        frames = samples.frames[mine]
        n = data.videos[name].n_frames
        nearest = np.clip(np.searchsorted(frames, np.arange(n), side="right") - 1, 0, None)
        sequences[f"task1/{subset}/{name}"] = {
            "annotations": label[mine][nearest].astype(int).tolist(),
            "metadata": {"annotator-id": 0, "vocab": vocab}}
    path = out_dir / f"calms21_task1_{subset}_predictions.json"
    path.write_text(json.dumps({"annotator-id_0": sequences}), encoding="utf-8")
    return path
