"""Fly vs. Fly (Eyjolfsdottir et al. 2014): frame-level multi-label fly behavior, mAP.

Layout as released::

    ROOT/<Set>/<Set>/movieN/movieN.avi                 (or ROOT/<Set>/<Set>/movieN.avi)
    ROOT/<Set>/<Set>/movieN/movieN_actions.mat         (2014 naming; FlyTracker's
                                                        movieN-actions.mat is read too)
    ROOT/<Set>/<Set>/movieN/movieN_track.mat           (optional: the movie's length)

Sets: Aggression, Boy-meets-boy, Courtship. The six behaviors of VideoPrism / Task Programming
(lunge, wing threat, tussle, wing extension, circle, copulation); a frame is positive for a
behavior when either fly shows it; every frame is labeled (exhaustive annotation: a movie
without bouts is all negatives). Sigmoid BCE, mAP over the six.

The split Task Programming / SciVid / the paper used is not published as movie lists; the
shipped default (``splits/flyvsfly_v1.json``) is this project's rule -- within each set, the last
third of the movies in natural order is the test set -- versioned so that results say which
split they used. Pass ``--split FILE`` with explicit lists (``{"subsets": {"train": [...],
"test": [...]}}``, video ids ``<Set>/movieN``) to use another.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import savemat

from prism_science.bench.data import (
    SPLITS_DIR,
    BenchData,
    SampleSet,
    assign_subsets,
    load_split,
    open_bench_video,
    stride_rows,
)
from prism_science.bench.protocol import Protocol
from prism_science.errors import BenchError
from prism_science.labels import read_labels, to_frame_matrix
from prism_science.labels.formats.flyvsfly import ACTIONS_SUFFIXES
from prism_science.video.index import VIDEO_EXTENSIONS, natural_sort_key

BEHAVIORS = ("lunge", "wing threat", "tussle", "wing extension", "circle", "copulation")
"""The behaviors scored (VideoPrism's / Task Programming's six; other FvF labels ignored)."""

PROTOCOL = Protocol(dataset="flyvsfly", clip_frames=16, train_stride=1, test_stride=1,
                    loss="bce", metric="map", paper_value=89.1)
DEFAULT_SPLIT = SPLITS_DIR / "flyvsfly_v1.json"
NATIVE_FORMAT = ("FlyTracker / Fly vs. Fly actions .mat per movie (behs; bouts{1, b} = "
                 "[start end] 1-based inclusive, frame-level 'fly' 1) from scores >= 0.5")


def _movie_folders(root: Path) -> list[Path]:
    folders = []
    for set_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        inner = set_dir / set_dir.name
        if inner.is_dir():
            folders += [p for p in inner.iterdir() if p.is_dir()]
    return sorted(folders, key=lambda p: natural_sort_key(f"{p.parent.name}/{p.name}"))


def _actions_file(folder: Path) -> Path:
    for suffix in ACTIONS_SUFFIXES:
        path = folder / f"{folder.name}{suffix}.mat"
        if path.is_file():
            return path
    raise BenchError(f"{folder / (folder.name + '_actions.mat')}: missing; expected the movie's "
                     f"actions file ({folder.name}_actions.mat or {folder.name}-actions.mat).")


def _video_file(folder: Path) -> Path:
    for place in (folder, folder.parent):
        for ext in VIDEO_EXTENSIONS:
            path = place / f"{folder.name}{ext}"
            if path.is_file():
                return path
    raise BenchError(f"{folder / (folder.name + '.avi')}: missing; expected the movie "
                     f"{folder.name}.<avi|mp4|...> in {folder} or beside it.")


def read(root: Path, protocol: Protocol, split: Path | None = None) -> BenchData:
    """The Fly vs. Fly release under ``root`` as benchmark samples.

    Raises
    ------
    BenchError
        No ``<Set>/<Set>/movieN/`` folder, a movie without actions file or video, an actions
        file without one of the six behaviors, or a split file that does not fit.
    """
    if not root.is_dir():
        raise BenchError(f"{root}: no such folder; expected the Fly vs. Fly root holding "
                         "<Set>/<Set>/movieN/ folders.")
    folders = _movie_folders(root)
    if not folders:
        raise BenchError(f"{root}: no <Set>/<Set>/movieN/ folder (e.g. Aggression/Aggression/"
                         "movie1/); expected the Fly vs. Fly release layout.")
    split_path = split or DEFAULT_SPLIT
    split_spec = load_split(split_path, "flyvsfly")
    notes: list[str] = []
    groups = {f"{f.parent.name}/{f.name}": f.parent.name for f in folders}
    subsets = assign_subsets(groups, split_spec, str(split_path), notes)
    videos, rows_by_subset, label_files = {}, {}, []
    expected: dict[str, int] = {}
    for folder in folders:
        video_id = f"{folder.parent.name}/{folder.name}"
        subset = subsets[video_id]
        actions = _actions_file(folder)
        video = open_bench_video(video_id, _video_file(folder), subset, group=folder.parent.name)
        table = read_labels(actions, format="flyvsfly", n_frames=video.n_frames,
                            video_id=video_id)
        lower = {name.lower(): name for name in table.behavior_set.names}
        missing = [b for b in BEHAVIORS if b not in lower]
        if missing:
            raise BenchError(f"{actions}, variable 'behs': no {missing}; expected the Fly vs. "
                             f"Fly behaviors {list(BEHAVIORS)} (found "
                             f"{list(table.behavior_set.names)}).")
        matrix = to_frame_matrix(table, [lower[b] for b in BEHAVIORS], n_frames=video.n_frames)
        labeled = np.flatnonzero((matrix >= 0).all(1))
        rows_by_subset.setdefault(subset, []).extend(
            (video_id, int(f), matrix[f].astype(np.int8), "", None) for f in labeled)
        videos[video_id] = video
        label_files.append(actions)
    samples = {}
    for subset, rows in rows_by_subset.items():
        stride = protocol.test_stride if subset == protocol.test_subset else \
            protocol.train_stride
        samples[subset] = SampleSet.build(stride_rows(rows, stride), len(BEHAVIORS))
        expected[f"{subset}_samples"] = sum(
            -(-v.n_frames // stride) for v in videos.values() if v.subset == subset)
    for subset in (*protocol.train_subsets, protocol.test_subset):
        if subset not in samples:
            raise BenchError(f"{split_path}: no movie falls in subset {subset!r} of {root}; "
                             "the benchmark needs train and test movies.")
    return BenchData("flyvsfly", root, list(BEHAVIORS), videos, samples,
                     label_files=label_files, split_files=[split_path],
                     split_version=str(split_spec["version"]), expected_counts=expected,
                     notes=notes)


def _bouts(frames: np.ndarray) -> np.ndarray:
    """K x 2 [start end] 1-based inclusive runs of consecutive frames."""
    if len(frames) == 0:
        return np.zeros((0, 2))
    breaks = np.flatnonzero(np.diff(frames) != 1)
    starts = np.concatenate([[frames[0]], frames[breaks + 1]])
    ends = np.concatenate([frames[breaks], [frames[-1]]])
    return np.stack([starts + 1, ends + 1], axis=1).astype(np.float64)


def write_predictions(out_dir: Path, data: BenchData, subset: str, scores: np.ndarray) -> Path:
    """One ``<movie>_actions.mat`` per movie under ``out_dir/<Set>/<movie>/``."""
    samples = data.samples[subset]
    ids = np.asarray(samples.video_ids)
    for video_id in dict.fromkeys(samples.video_ids):
        mine = np.flatnonzero(ids == video_id)
        behs = np.empty((1, len(data.classes)), dtype=object)
        bouts = np.empty((1, len(data.classes)), dtype=object)
        for k, name in enumerate(data.classes):
            behs[0, k] = name
            bouts[0, k] = _bouts(samples.frames[mine][scores[mine, k] >= 0.5])
        folder = out_dir / video_id
        folder.mkdir(parents=True, exist_ok=True)
        savemat(folder / f"{Path(video_id).name}_actions.mat", {"behs": behs, "bouts": bouts})
    return out_dir
