"""Clips centred on the planned frames -> frozen-encoder tokens, cached (fp16) or online.

A *unit* is what the probe reads for one sample: the tokens of the clip centred on its frame
(``(T*h*w, D)``, every token, as the official classifier pools them) or, for a box-level sample
(ChimpACT), the clip's tokens RoI-pooled over the box at each of the T time steps (``(T, D)``,
:func:`prism_science.extraction.roi.pool_boxes`). Samples of the same frame share one unit.

The fp16 cache (``--cache fp16``) lives in ``RUN_DIR/cache/``, documented in docs/bench.md:

- ``units.json``: the unit plan (video, centre frame, box), the clip rule, the resize policy,
  the model's identity and the token shape -- a resumed run must match it;
- ``tokens.npy``: ``(n_units, n_tokens, D)`` float16, a memory-mapped ``.npy``;
- ``done.npy``: ``(n_units,)`` bool, saved (atomically) after each batch, so that a killed
  extraction resumes at the first unfinished batch.

Readers of the cache (training, prediction) take rows by index: never the whole array in RAM.
With ``--cache online`` the same units are computed when a batch asks for them.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from numpy.lib.format import open_memmap

from prism_science.bench.data import BenchData
from prism_science.bench.protocol import Protocol
from prism_science.errors import BenchError
from prism_science.video import open_video

logger = logging.getLogger(__name__)


@dataclass
class UnitPlan:
    """The units to compute and which unit each sample of each subset reads.

    Attributes
    ----------
    video_ids : list of str
        (U,) video of each unit.
    centres : np.ndarray
        (U,) int64 centre frame of each unit's clip.
    boxes : np.ndarray or None
        (U, 4) box of each unit (box-level datasets), else None.
    sample_units : dict
        subset -> (N,) int64 unit index of each sample.
    """

    video_ids: list[str]
    centres: np.ndarray
    boxes: np.ndarray | None
    sample_units: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.video_ids)

    def clips(self) -> dict[tuple[str, int], list[int]]:
        """(video, centre) -> its units, in unit order."""
        out: dict[tuple[str, int], list[int]] = defaultdict(list)
        for u, (video_id, centre) in enumerate(zip(self.video_ids, self.centres.tolist(),
                                                   strict=True)):
            out[(video_id, centre)].append(u)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON-ready plan."""
        return {"video_ids": self.video_ids, "centres": self.centres.tolist(),
                "boxes": None if self.boxes is None else self.boxes.tolist()}


def plan_units(data: BenchData, subsets: Iterable[str]) -> UnitPlan:
    """One unit per distinct (video, frame[, box]) of the samples of ``subsets``."""
    box_level = any(data.samples[s].boxes is not None for s in subsets if s in data.samples)
    keys: dict[tuple, int] = {}
    sample_units = {}
    for subset in subsets:
        samples = data.samples[subset]
        units = np.empty(len(samples), np.int64)
        for i, (video_id, frame) in enumerate(zip(samples.video_ids, samples.frames.tolist(),
                                                  strict=True)):
            key = (video_id, frame)
            if box_level:
                key = key + tuple(np.round(samples.boxes[i], 3).tolist())
            units[i] = keys.setdefault(key, len(keys))
        sample_units[subset] = units
    ordered = sorted(keys, key=keys.get)
    return UnitPlan(
        video_ids=[k[0] for k in ordered],
        centres=np.asarray([k[1] for k in ordered], np.int64),
        boxes=np.asarray([k[2:] for k in ordered], np.float64).reshape(-1, 4)
        if box_level else None,
        sample_units=sample_units,
    )


def clip_frames(centre: int, n_frames: int, protocol: Protocol) -> np.ndarray:
    """(clip_frames,) frame indices of the clip centred on ``centre``; indices outside the
    video repeat its first / last frame."""
    n, step = protocol.clip_frames, protocol.clip_step
    offsets = (np.arange(n) - n // 2) * step
    return np.clip(centre + offsets, 0, n_frames - 1)


def input_geometry(width: int, height: int, image_size: int, patch: int,
                   policy: str) -> tuple[tuple[int, int, int, int] | None, tuple[int, int]]:
    """The crop (x0, y0, x1, y1, or None) and the (height, width) the frames are resized to.

    ``short_side_center_crop``: the central square of side min(W, H) resized to
    image_size x image_size (= short side to image_size, then the central crop).
    ``short_side_full``: the short side to image_size, the long side in proportion, rounded to
    a multiple of the patch size; no crop.
    """
    if policy == "short_side_center_crop":
        side = min(width, height)
        x0, y0 = (width - side) // 2, (height - side) // 2
        return (x0, y0, x0 + side, y0 + side), (image_size, image_size)
    scale = image_size / min(width, height)
    h = image_size if height <= width else max(patch, round(height * scale / patch) * patch)
    w = image_size if width < height else max(patch, round(width * scale / patch) * patch)
    return None, (h, w)


class Encoder:
    """The frozen model on its device: uint8 clips -> tokens, bf16 autocast on CUDA."""

    def __init__(self, model: torch.nn.Module, device: str) -> None:
        self.model = model
        self.device = torch.device(device)
        self.autocast = self.device.type == "cuda"
        self.image_size = int(model.image_size)
        self.patch_size = int(model.patch_size)
        self.width = int(model.model_dim)

    def __call__(self, clips: np.ndarray) -> torch.Tensor:
        """(B, T, H, W, 3) uint8 -> (B, T, h, w, D) float32 tokens on the CPU."""
        b, t, height, width, _ = clips.shape
        video = torch.from_numpy(clips).to(self.device).float().div_(255.0)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16,
                                             enabled=self.autocast):
            tokens = self.model(video)  # (B, T*h*w, D)
        return rearrange(tokens.float().cpu(), "b (t h w) d -> b t h w d", t=t,
                         h=height // self.patch_size, w=width // self.patch_size)


def _pool(grid: torch.Tensor, boxes: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """(T, h, w, D) clip tokens -> (K, T, D): each box RoI-pooled at each time step."""
    from prism_science.extraction.roi import pool_boxes

    per_time = [pool_boxes(step.numpy(), boxes, frame_size, output_size=1)
                for step in grid]  # T x (K, D)
    return np.stack(per_time, axis=1)


class UnitComputer:
    """Decode, resize, encode (and RoI-pool) units; readers are kept open (LRU of 4)."""

    def __init__(self, data: BenchData, plan: UnitPlan, protocol: Protocol, encoder: Encoder,
                 per_frame_reads: bool = False) -> None:
        self.data, self.plan, self.protocol, self.encoder = data, plan, protocol, encoder
        self.per_frame_reads = per_frame_reads
        self._readers: OrderedDict[str, Any] = OrderedDict()

    def reader(self, video_id: str) -> Any:
        """An open reader of the video (kept for the next batches)."""
        if video_id in self._readers:
            self._readers.move_to_end(video_id)
            return self._readers[video_id]
        video = self.data.videos[video_id]
        reader = open_video(video.path, fps=video.fps)
        self._readers[video_id] = reader
        while len(self._readers) > 4:
            self._readers.popitem(last=False)[1].close()
        return reader

    def close(self) -> None:
        """Close every open reader."""
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def geometry(self, video_id: str) -> tuple[Any, tuple[int, int], tuple[int, int], int]:
        """(crop, input (h, w), frame (width, height), n_frames) of a video."""
        info = self.reader(video_id).info
        crop, size = input_geometry(info.width, info.height, self.encoder.image_size,
                                    self.encoder.patch_size, self.protocol.resize)
        return crop, size, (info.width, info.height), info.n_frames

    def decode(self, video_id: str, centres: list[int]) -> np.ndarray:
        """(B, T, h, w, 3) uint8 clips of one video, each frame decoded once."""
        reader = self.reader(video_id)
        crop, size, _, n_frames = self.geometry(video_id)
        indices = np.stack([clip_frames(c, n_frames, self.protocol) for c in centres])
        if self.per_frame_reads:  # the independent path of the alignment check
            return np.stack([[reader.get_frame(int(i), size=size, crop=crop) for i in row]
                             for row in indices])
        unique, inverse = np.unique(indices, return_inverse=True)
        frames = reader.get_frames(unique, size=size, crop=crop)
        return frames[inverse.reshape(indices.shape)]

    def compute(self, units: np.ndarray) -> np.ndarray:
        """(len(units), n_tokens, D) float32 for unit indices of one or more videos."""
        units = np.asarray(units, np.int64)
        by_clip: dict[tuple[str, int], list[int]] = defaultdict(list)
        for j, u in enumerate(units.tolist()):
            by_clip[(self.plan.video_ids[u], int(self.plan.centres[u]))].append(j)
        out: np.ndarray | None = None
        by_video: dict[str, list[tuple[int, list[int]]]] = defaultdict(list)
        for (video_id, centre), positions in by_clip.items():
            by_video[video_id].append((centre, positions))
        for video_id, clips in by_video.items():
            grids = self.encoder(self.decode(video_id, [c for c, _ in clips]))
            crop, _, frame_size, _ = self.geometry(video_id)
            shift = np.zeros(4, np.float32)
            if crop is not None:  # boxes are in frame pixels: move them into the crop
                shift = np.array([crop[0], crop[1], crop[0], crop[1]], np.float32)
                frame_size = (crop[2] - crop[0], crop[3] - crop[1])
            for grid, (_, positions) in zip(grids, clips, strict=True):
                if self.plan.boxes is None:
                    values = rearrange(grid, "t h w d -> (t h w) d").numpy()[None]
                    values = np.repeat(values, len(positions), axis=0)
                else:
                    boxes = self.plan.boxes[units[positions]] - shift
                    values = _pool(grid, boxes, frame_size)
                if out is None:
                    out = np.empty((len(units), *values.shape[1:]), np.float32)
                out[positions] = values
        assert out is not None
        return out


def token_shape(computer: UnitComputer) -> tuple[int, int]:
    """(n_tokens, D) of one unit, computed on the first unit (an input-size dry run)."""
    return tuple(computer.compute(np.array([0])).shape[1:])  # type: ignore[return-value]


def _save_done(path: Path, done: np.ndarray) -> None:
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, done)
    os.replace(tmp, path)


def cache_meta(plan: UnitPlan, protocol: Protocol, model_identity: dict[str, Any],
               shape: tuple[int, int]) -> dict[str, Any]:
    """What a cache must agree with to be reused."""
    return {"format": "prism-bench-cache-1", "plan": plan.to_json(),
            "clip": {"frames": protocol.clip_frames, "step": protocol.clip_step,
                     "edges": "repeat first/last frame"},
            "resize": protocol.resize, "model": model_identity,
            "tokens_shape": list(shape), "dtype": "float16"}


def extract_to_cache(computer: UnitComputer, cache_dir: Path, meta: dict[str, Any],
                     batch_size: int = 8,
                     progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Fill (or finish) the fp16 cache; returns counts and timings.

    Raises
    ------
    BenchError
        The folder holds a cache of another plan, model or resize policy.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta_path, tokens_path, done_path = (cache_dir / "units.json", cache_dir / "tokens.npy",
                                         cache_dir / "done.npy")
    n_units = len(computer.plan)
    shape = (n_units, *meta["tokens_shape"])
    if meta_path.is_file():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        if old != meta:
            changed = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            raise BenchError(f"{meta_path}: the cache was made with another {', '.join(changed)};"
                             " use a new --out, or delete the cache folder to extract again.")
        tokens = open_memmap(tokens_path, mode="r+")
        done = np.load(done_path) if done_path.is_file() else np.zeros(n_units, bool)
    else:
        tokens = open_memmap(tokens_path, mode="w+", dtype=np.float16, shape=shape)
        done = np.zeros(n_units, bool)
        _save_done(done_path, done)
        meta_path.write_text(json.dumps(meta), encoding="utf-8")
    todo_before = int((~done).sum())
    start = time.perf_counter()
    forward = 0
    clips = computer.plan.clips()
    # Per video, clips in frame order, batched: nearby clips share decoded frames.
    pending = [(key, units) for key, units in sorted(clips.items())
               if not done[units].all()]
    for first in range(0, len(pending), batch_size):
        chunk = pending[first : first + batch_size]
        units = np.asarray([u for _, us in chunk for u in us], np.int64)
        values = computer.compute(units).astype(np.float16)
        if not np.isfinite(values).all():
            raise BenchError(f"{tokens_path}: tokens of {computer.plan.video_ids[units[0]]} "
                             f"frame {int(computer.plan.centres[units[0]])} overflow float16; "
                             "run with --cache online (float32) instead.")
        tokens[units] = values
        tokens.flush()
        done[units] = True
        _save_done(done_path, done)
        forward += len(chunk)
        if progress is not None:
            progress(int(done.sum()), n_units)
    computer.close()
    return {"units": n_units, "computed": todo_before, "reused": n_units - todo_before,
            "clips_encoded": forward, "seconds": time.perf_counter() - start}


class TokenSource:
    """Rows of units by index: from the fp16 cache (memory-mapped) or computed online."""

    def __init__(self, cache_dir: Path | None = None,
                 computer: UnitComputer | None = None) -> None:
        self.computer = computer
        self.tokens = None
        if cache_dir is not None:
            for name in ("done.npy", "tokens.npy"):
                if not (cache_dir / name).is_file():
                    raise BenchError(f"{cache_dir / name}: missing, but state.json says the "
                                     "extraction finished; delete state.json's 'extract' "
                                     "stage (or the run folder) and run again.")
            done = np.load(cache_dir / "done.npy")
            if not done.all():
                raise BenchError(f"{cache_dir}: {int((~done).sum())} of {len(done)} units are "
                                 "not extracted; run again with --resume to finish.")
            self.tokens = np.load(cache_dir / "tokens.npy", mmap_mode="r")

    def get(self, units: np.ndarray) -> np.ndarray:
        """(len(units), n_tokens, D) float32."""
        units = np.asarray(units, np.int64)
        if self.tokens is None:
            assert self.computer is not None
            return self.computer.compute(units)
        order = np.argsort(units, kind="stable")  # sorted reads of the memory map
        out = np.empty((len(units), *self.tokens.shape[1:]), np.float32)
        out[order] = self.tokens[units[order]]
        return out
