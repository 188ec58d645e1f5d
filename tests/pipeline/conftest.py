"""Stores with planted features and labels for the pipeline tests (no encoder, no video)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from prism_science.labels import Interval, LabelTable, Segment, save_labels
from prism_science.probes.postprocess import binary_to_bouts
from prism_science.store import open_store
from tests.probes.conftest import planted_videos

MODEL = "prism-test-p8-f4-r32"
BEHAVIORS = ["walk", "groom", "rare"]
N_FRAMES = 150
DIM = 8


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)


def provenance(tokens: str = "mean", hop: int = 8, sha: str = "c" * 64) -> dict:
    """Provenance as extraction stores it (the fields of IDENTITY_FIELDS)."""
    window = {"mode": "sliding", "stride": 1, "hop": hop, "tokens": tokens, "padding": "repeat"}
    shape = [DIM]
    if tokens == "grid":
        window["grid"] = 2
        shape = [2, 2, DIM]
    return {"model_name": MODEL, "weights_sha256": sha, "num_frames": 4, "image_size": 32,
            "window": window, "feature_shape": shape}


def make_store(
    path: Path,
    n_videos: int = 4,
    labeled: int = 3,
    tokens: str = "mean",
    hops: dict[int, int] | None = None,
    shas: dict[int, str] | None = None,
    incomplete: tuple[int, ...] = (),
    labeled_frames: int | None = 120,
    seed: int = 5,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A store of ``n_videos`` videos ``v0``, ``v1``, ... with planted features.

    The first ``labeled`` videos get label set ``manual`` over frames ``0..labeled_frames-1``
    (None: the whole video); ``tokens="grid"`` stores ``(T, 2, 2, D)`` grids whose token mean is
    the planted feature. ``hops`` / ``shas`` override one video's provenance; videos in
    ``incomplete`` are left without their completion mark.
    """
    X, y, groups = planted_videos(n_videos=n_videos, n_frames=N_FRAMES, seed=seed)
    key = f"{MODEL}/{'grid2' if tokens == 'grid' else 'mean'}"
    rng = np.random.default_rng(seed)
    with open_store(path, mode="a") as store:
        for v in range(n_videos):
            video_id = f"v{v}"
            values = X[groups == v]
            if tokens == "grid":
                noise = rng.normal(scale=0.1, size=(len(values), 2, 2, DIM)).astype(np.float32)
                values = values[:, None, None, :] + noise - noise.mean((1, 2), keepdims=True)
            store.put_video(video_id, source_path=f"/data/{video_id}.mp4",
                            relative_path=f"{video_id}.mp4", size_bytes=1, content_hash=str(v),
                            timestamps=np.arange(N_FRAMES) / 30.0, fps=30.0, width=32, height=32)
            prov = provenance(tokens, (hops or {}).get(v, 8), (shas or {}).get(v, "c" * 64))
            store.create_features(video_id, key, values.shape[1:], prov, chunk_frames=64)
            store.write_chunks(video_id, key, 0, values.astype(np.float32))
            if v not in incomplete:
                store.mark_complete(video_id, key)
            if v < labeled:
                save_labels(store, video_id, planted_table(y[groups == v], labeled_frames),
                            "manual")
    return X, y, groups


def planted_table(y: np.ndarray, labeled_frames: int | None = 120) -> LabelTable:
    """The bouts of a planted ``(T, 3)`` matrix, labeled on frames ``0..labeled_frames-1``."""
    n = len(y)
    last = n - 1 if labeled_frames is None else labeled_frames - 1
    intervals = [Interval(BEHAVIORS[k], int(s), int(min(e, last)))
                 for k in range(len(BEHAVIORS)) for s, e in binary_to_bouts(y[:, k])
                 if s <= last]
    return LabelTable(intervals=intervals, segments=[Segment(0, last)], n_frames=n, fps=30.0)
