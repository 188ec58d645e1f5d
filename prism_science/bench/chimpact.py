"""ChimpACT (Leipzig Zoo chimpanzees): box-level multi-label behavior, AVA frame-mAP@0.5.

Layout as released::

    ROOT/videos_full/<clip>.mp4      e.g. Azibo_ObsChimp_2015_11_25_d_clip_23000_24000.mp4
    ROOT/labels/<clip>.json          raw COCO-style per clip: images[].file_name ends in the
                                     keyframe ordinal k, the frame is 10 * k
    ROOT/action_list.txt

The official split: the val and test clip lists of the release's tools/create_coco_format.py
(``splits/chimpact_v1.json``; every other clip is train); the probe trains on train and is
evaluated on test. One sample per ground-truth box (with at least one behavior, as AVA's
ground truth) of each keyframe: a 64-frame clip centred on the keyframe, the whole frame
kept (``short_side_full``), the clip's tokens RoI-pooled over the box at each time step, 23
behaviors, sigmoid BCE. The metric is AVA frame-mAP@0.5 with the ground-truth boxes as
detections, i.e. the mean over behaviors of the interpolated AP over all test boxes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from prism_science.bench.data import (
    SPLITS_DIR,
    BenchData,
    SampleSet,
    assign_subsets,
    load_split,
    open_bench_video,
    require,
)
from prism_science.bench.protocol import Protocol
from prism_science.errors import BenchError
from prism_science.labels import read_labels
from prism_science.labels.formats.chimpact import CHIMPACT_BEHAVIORS

PROTOCOL = Protocol(dataset="chimpact", clip_frames=64, train_stride=1, test_stride=1,
                    resize="short_side_full", loss="bce", metric="ava_frame_map",
                    paper_value=28.8, train_subsets=("train",), test_subset="test")
DEFAULT_SPLIT = SPLITS_DIR / "chimpact_v1.json"
NATIVE_FORMAT = ("AVA detection results CSV (video, frame, x1, y1, x2, y2 normalised to 0-1, "
                 "action id 1..23, score), as mmaction2's AVA evaluation reads them")


def read(root: Path, protocol: Protocol, split: Path | None = None) -> BenchData:
    """The ChimpACT release under ``root`` as box-level samples.

    Raises
    ------
    BenchError
        A folder or file of the release is missing, a labels file has no video (or the other
        way round), or the split file does not fit.
    """
    video_dir = require(root / "videos_full", "the folder of the clips")
    label_dir = require(root / "labels", "the folder of the per-clip label JSON files")
    require(root / "action_list.txt", "the behavior list")
    label_files = sorted(label_dir.glob("*.json"))
    if not label_files:
        raise BenchError(f"{label_dir}: no <clip>.json; expected one raw label file per clip.")
    split_path = split or DEFAULT_SPLIT
    split_spec = load_split(split_path, "chimpact")
    notes: list[str] = []
    clips = {p.stem: "" for p in label_files}
    subsets = assign_subsets(clips, split_spec, str(split_path), notes)
    names = list(CHIMPACT_BEHAVIORS)
    videos, rows_by_subset, expected = {}, defaultdict(list), defaultdict(int)
    for path in label_files:
        clip = path.stem
        video_path = video_dir / f"{clip}.mp4"
        if not video_path.is_file():
            raise BenchError(f"{video_path}: missing; {path} labels this clip, expected its "
                             "video in videos_full/.")
        video = open_bench_video(clip, video_path, subsets[clip])
        videos[clip] = video
        table = read_labels(path, format="chimpact", n_frames=video.n_frames, video_id=clip)
        table = table if not isinstance(table, dict) else table[clip]
        boxes: dict[tuple[int, str], tuple] = {}
        present: dict[tuple[int, str], set[str]] = defaultdict(set)
        for iv in table.intervals:
            key = (iv.start_frame, str(iv.subject))
            boxes[key] = iv.box
            present[key].add(iv.behavior)
        for frame, subject in sorted(boxes):
            target = np.array([name in present[(frame, subject)] for name in names], np.int8)
            rows_by_subset[video.subset].append((clip, frame, target, subject,
                                                 boxes[(frame, subject)]))
        raw = json.loads(path.read_text(encoding="utf-8"))
        expected[f"{video.subset}_boxes"] += sum(1 for a in raw.get("annotations", [])
                                                 if a.get("behaviors"))
    samples = {s: SampleSet.build(rows, len(names), with_boxes=True)
               for s, rows in rows_by_subset.items()}
    for subset in (*protocol.train_subsets, protocol.test_subset):
        if subset not in samples:
            raise BenchError(f"{split_path}: no labeled clip of {root} falls in subset "
                             f"{subset!r}; the benchmark needs train and test clips.")
    return BenchData("chimpact", root, names, videos, samples,
                     label_files=[*label_files, root / "action_list.txt"],
                     split_files=[split_path], split_version=str(split_spec["version"]),
                     expected_counts=dict(expected), notes=notes)


def write_predictions(out_dir: Path, data: BenchData, subset: str, scores: np.ndarray) -> Path:
    """Every box x behavior score as an AVA results CSV (coordinates normalised, 3 dp)."""
    samples = data.samples[subset]
    path = out_dir / f"{subset}_ava_results.csv"
    with open(path, "w", encoding="utf-8") as handle:
        for i, (clip, frame) in enumerate(zip(samples.video_ids, samples.frames.tolist(),
                                              strict=True)):
            video = data.videos[clip]
            x1, y1, x2, y2 = samples.boxes[i] / np.array([video.width, video.height] * 2, float)
            for k in range(scores.shape[1]):
                handle.write(f"{clip},{frame},{x1:.3f},{y1:.3f},{x2:.3f},{y2:.3f},{k + 1},"
                             f"{scores[i, k]:.6f}\n")
    return path
