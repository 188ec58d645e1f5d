"""CalMS21 JSON of tasks 1, 2 and 3 (``calms21_task{1,2,3}_{train,test}.json``).

``{"<group>": {"task1/train/mouse001_task1_annotator1": {"keypoints", "scores",
"annotations": [one class id per frame], "metadata": {"annotator-id": 0, "vocab": {"attack": 0,
...}}}}}`` (../shared/data/formats/calms21/FORMAT.md). Tasks 1 and 2 group sequences by
``annotator-id_<n>``; task 3 by behavior (``"approach": {"task3/approach/train/mouse000_task3_
approach": ...}``, vocab ``{"other": 0, "approach": 1}``: one binary behavior per group). One
table per sequence, keyed by the sequence name's last part (``mouse001_task1_annotator1``),
with ``observation`` = the group and ``annotator`` = the metadata's annotator id. Labels are one
per frame, so each sequence's behaviors form one exclusive group; the background class
``other`` is not a behavior (a frame labeled ``other`` is labeled with every behavior absent).
Every frame is labeled; fps defaults to 30.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import (
    ReadOptions,
    keyed,
    read_each,
    read_text,
    select_observations,
)
from prism_science.labels.matrix import from_frame_matrix, label_vector_to_matrix
from prism_science.labels.table import LabelTable, check_fps

CALMS21_FPS = 30.0
BACKGROUND = "other"


def sniff(path: Path, head: str) -> bool:
    # the first sequence key comes within the first characters; the arrays that follow are long
    start = head[:400]
    return '"annotator-id_' in start or re.search(r'"task[123]/[^"]*/(train|test)/', start) \
        is not None


def _is_sequence(value: object) -> bool:
    return isinstance(value, dict) and "annotations" in value


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """Every sequence of a CalMS21 task 1-3 JSON as ``{sequence name: LabelTable}``."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); expected a "
                         "CalMS21 JSON.") from exc
    groups = {k: v for k, v in data.items() if isinstance(v, dict) and v
              and all(_is_sequence(s) for s in v.values())} if isinstance(data, dict) else {}
    if not groups:
        raise LabelError(f"{path}: expected top-level groups ('annotator-id_<n>' in tasks 1-2, "
                         "behavior names in task 3) of sequences with 'annotations', found "
                         f"{list(data)[:5] if isinstance(data, dict) else type(data).__name__}.")
    fps = check_fps(CALMS21_FPS, options.fps, str(path))
    sequences = [(g, k, seq) for g, group in groups.items() for k, seq in group.items()]
    chosen = select_observations(
        path, [(k.rstrip("/").split("/")[-1], g) for g, k, _ in sequences], options)
    items = [(f"sequence {sequences[i][1]!r}",
              lambda i=i, video_id=video_id: _sequence(path, *sequences[i], video_id, fps,
                                                       options))
             for i, video_id in chosen]
    return keyed(read_each(items, options.report))


def _sequence(path: Path, group_key: str, seq_key: str, seq: dict, video_id: str,
              fps: float | None, options: ReadOptions) -> LabelTable:
    where = f"{path}, sequence {seq_key!r}"
    try:
        vocab = dict(seq["metadata"]["vocab"])
        labels = np.asarray(seq["annotations"], dtype=np.int64).ravel()
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise LabelError(f"{where}: expected 'annotations' (one int per frame) and "
                         f"'metadata.vocab' ({exc!r}).") from exc
    id_to_name = {int(i): str(n) for n, i in vocab.items()}
    bad = sorted(set(labels.tolist()) - set(id_to_name))
    if bad:
        frame = int(np.flatnonzero(np.isin(labels, bad))[0])
        raise LabelError(f"{where}, field 'annotations' frame {frame}: class id {bad[0]} "
                         f"is not in the vocab {vocab}; expected one of its ids.")
    ids = sorted(id_to_name)
    names = [id_to_name[i] for i in ids if id_to_name[i] != BACKGROUND]
    remap = np.full(max(ids) + 1, -1, dtype=np.int64)
    for j, name in enumerate(names):
        remap[vocab[name]] = j
    col = remap[labels]  # background -> -1 means "labeled, no behavior" here
    matrix = label_vector_to_matrix(np.where(col < 0, len(names), col), len(names))
    if options.n_frames is not None and options.n_frames != len(labels):
        raise LabelError(f"{where}: {len(labels)} annotated frames but the video has "
                         f"n_frames={options.n_frames}; expected one label per frame.")
    meta = seq.get("metadata", {})
    annotator = str(meta.get("annotator-id", group_key.split("_")[-1]))
    table = from_frame_matrix(
        matrix, BehaviorSet.from_names(names, exclusive=True), fps=fps,
        timestamps=options.timestamps, annotator=annotator, source="manual",
        video_id=video_id, origin=where)
    table.observation = group_key
    if options.behaviors is not None:
        table.behavior_set = options.behaviors.union(table.behavior_set)
    return table
