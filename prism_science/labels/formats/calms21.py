"""CalMS21 task 1 JSON (``calms21_task1_{train,test}.json``).

``{"annotator-id_0": {"task1/train/mouse001_task1_annotator1": {"keypoints", "scores",
"annotations": [one class id per frame], "metadata": {"vocab": {"attack": 0, ...}}}}}``
(../shared/data/formats/calms21/FORMAT.md). One table per sequence, keyed by the sequence name's
last part (``mouse001_task1_annotator1``). Labels are one per frame, so the behaviors form one
exclusive group; the background class ``other`` is not a behavior (a frame labeled ``other`` is
labeled with every behavior absent). Every frame is labeled; fps defaults to 30.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.formats._common import ReadOptions, read_text
from prism_science.labels.matrix import from_frame_matrix, label_vector_to_matrix
from prism_science.labels.table import LabelTable, check_fps

CALMS21_FPS = 30.0
BACKGROUND = "other"


def sniff(path: Path, head: str) -> bool:
    return '"annotator-id_' in head[:200]


def read(path: Path, options: ReadOptions) -> dict[str, LabelTable]:
    """Every sequence of a CalMS21 task-1 JSON as ``{sequence name: LabelTable}``."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise LabelError(f"{path}, line {exc.lineno}: not valid JSON ({exc.msg}); expected the "
                         "CalMS21 task-1 JSON.") from exc
    groups = {k: v for k, v in data.items() if k.startswith("annotator-id")} \
        if isinstance(data, dict) else {}
    if not groups:
        raise LabelError(f"{path}: expected top-level keys 'annotator-id_<n>' (CalMS21), found "
                         f"{list(data)[:5] if isinstance(data, dict) else type(data).__name__}.")
    fps = check_fps(CALMS21_FPS, options.fps, str(path))
    tables: dict[str, LabelTable] = {}
    for group_key, sequences in groups.items():
        for seq_key, seq in sequences.items():
            where = f"{path}, sequence {seq_key!r}"
            try:
                vocab = dict(seq["metadata"]["vocab"])
                labels = np.asarray(seq["annotations"], dtype=np.int64).ravel()
            except (KeyError, TypeError, ValueError) as exc:
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
            video_id = seq_key.rstrip("/").split("/")[-1]
            if options.video_id is not None and len(groups) == 1 and len(sequences) == 1:
                video_id = options.video_id
            annotator = str(seq.get("metadata", {}).get("annotator-id",
                                                        group_key.split("_")[-1]))
            table = from_frame_matrix(
                matrix, BehaviorSet.from_names(names, exclusive=True), fps=fps,
                timestamps=options.timestamps, annotator=annotator, source="manual",
                video_id=video_id, origin=where)
            tables[video_id if video_id not in tables else f"{video_id}_{group_key}"] = table
    return tables
