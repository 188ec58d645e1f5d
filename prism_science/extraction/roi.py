"""Box-level RoI features: whole-frame token grids pooled over each subject's box (RoIAlign).

The ChimpACT protocol for box datasets: the encoder sees the whole frame, and each animal's
feature is its box's region of the frame's token grid, pooled with RoIAlign (Detectron2 /
torchvision, ``aligned=True``). :func:`pool_boxes` pools one grid over K boxes;
:func:`roi_align` is torchvision's ``roi_align`` re-implemented with
``torch.nn.functional.grid_sample``, used when torchvision is not importable (its PyPI wheels
pin a torch build each). ``prism-science extract VIDEO --subjects TRACKS --boxes`` stores one
feature set per subject, ``<model>/<tokens>@<subject>``, from one decode of the video
(:func:`extract_box_ranges`). See docs/tracks.md ("Box-level RoI features").
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prism_science.errors import TracksError, WindowError
from prism_science.extraction.features import iter_video_features
from prism_science.extraction.jobs import FeatureWriter
from prism_science.extraction.subjects import warn_absent
from prism_science.extraction.windows import WindowParams
from prism_science.store import FeatureStore
from prism_science.tracks import Tracks
from prism_science.video import open_video

__all__ = [
    "SubjectBoxes",
    "extract_box_ranges",
    "pool_boxes",
    "pool_frame_boxes",
    "roi_align",
    "roi_output_size",
    "subject_boxes",
]

logger = logging.getLogger(__name__)

SAMPLING_RATIO = 2
"""Bilinear samples per bin side (Detectron2's ROIAlign default for box heads)."""


@functools.lru_cache(maxsize=1)
def _torchvision_roi_align() -> Callable[..., torch.Tensor] | None:
    """``torchvision.ops.roi_align`` when torchvision imports and runs here, else None."""
    try:
        from torchvision.ops import roi_align as tv_roi_align

        probe = torch.zeros(1, 1, 2, 2)
        tv_roi_align(probe, torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0]]), 1, aligned=True)
    except Exception as exc:  # noqa: BLE001 - absent, or built for another torch
        logger.debug("torchvision's roi_align is not usable (%s); using grid_sample", exc)
        return None
    return tv_roi_align


def roi_align(input: torch.Tensor, rois: torch.Tensor, output_size: int,
              spatial_scale: float = 1.0, sampling_ratio: int = -1,
              aligned: bool = False) -> torch.Tensor:
    """``torchvision.ops.roi_align`` (Tensor boxes), computed with ``grid_sample``.

    Each box is divided into ``output_size`` x ``output_size`` bins; each bin averages
    ``sampling_ratio`` x ``sampling_ratio`` bilinear samples at the centres of a regular grid
    over the bin (adaptive ``ceil(box side / output_size)`` when ``sampling_ratio <= 0``).
    As in torchvision: ``aligned`` shifts box coordinates by -0.5 (pixel centres); a sample
    more than one cell outside the input (y < -1, y > H, x < -1 or x > W) counts as 0, one
    closer is clamped to the edge; without ``aligned`` boxes are at least 1 cell a side.

    Parameters
    ----------
    input : torch.Tensor
        (N, C, H, W) float.
    rois : torch.Tensor
        (K, 5) ``batch_index, x1, y1, x2, y2`` in input coordinates before ``spatial_scale``.
    output_size : int
        Bins per side.
    spatial_scale : float
        Multiplies the box coordinates.
    sampling_ratio : int
        Samples per bin side; <= 0: adaptive.
    aligned : bool
        Half-pixel offset (Detectron2's ROIAlignV2).

    Returns
    -------
    torch.Tensor
        (K, C, output_size, output_size), the dtype of ``input``.
    """
    _, c, height, width = input.shape
    k = rois.shape[0]
    out = input.new_zeros((k, c, output_size, output_size))
    if k == 0:
        return out
    boxes = rois.detach().to(torch.float64)
    offset = 0.5 if aligned else 0.0
    x1 = boxes[:, 1] * spatial_scale - offset
    y1 = boxes[:, 2] * spatial_scale - offset
    x2 = boxes[:, 3] * spatial_scale - offset
    y2 = boxes[:, 4] * spatial_scale - offset
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # torchvision forces malformed boxes to be 1x1
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_w, bin_h = roi_w / output_size, roi_h / output_size
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.int64)
        grid_w = grid_h.clone()
    else:
        grid_h = torch.ceil(roi_h / output_size).to(torch.int64)
        grid_w = torch.ceil(roi_w / output_size).to(torch.int64)
    index = boxes[:, 0].to(torch.int64)
    # Boxes with the same sample count are pooled in one grid_sample call.
    for gh, gw in sorted({(int(a), int(b)) for a, b in zip(grid_h, grid_w, strict=True)}):
        if gh <= 0 or gw <= 0:
            continue  # an empty or inverted box with adaptive sampling: torchvision gives 0
        sel = torch.nonzero((grid_h == gh) & (grid_w == gw)).flatten()
        bins = torch.arange(output_size, dtype=torch.float64)
        ys = (y1[sel, None, None] + bins[None, :, None] * bin_h[sel, None, None]
              + (torch.arange(gh, dtype=torch.float64)[None, None, :] + 0.5)
              * bin_h[sel, None, None] / gh).reshape(len(sel), -1)  # (k, o * gh)
        xs = (x1[sel, None, None] + bins[None, :, None] * bin_w[sel, None, None]
              + (torch.arange(gw, dtype=torch.float64)[None, None, :] + 0.5)
              * bin_w[sel, None, None] / gw).reshape(len(sel), -1)  # (k, o * gw)
        inside = (((ys >= -1.0) & (ys <= height))[:, :, None]
                  & ((xs >= -1.0) & (xs <= width))[:, None, :])  # (k, o*gh, o*gw)
        # torchvision clamps samples within one cell of the edge onto it: "border" padding.
        yn = ys.clamp(0, height - 1) * 2 / (height - 1) - 1 if height > 1 else ys * 0
        xn = xs.clamp(0, width - 1) * 2 / (width - 1) - 1 if width > 1 else xs * 0
        grid = torch.stack(torch.broadcast_tensors(xn[:, None, :], yn[:, :, None]), dim=-1)
        sampled = F.grid_sample(input[index[sel]], grid.to(input.dtype), mode="bilinear",
                                padding_mode="border", align_corners=True)  # (k, C, o*gh, o*gw)
        sampled = sampled * inside[:, None].to(input.dtype)
        pooled = sampled.reshape(len(sel), c, output_size, gh, output_size, gw).sum(dim=(3, 5))
        out[sel] = pooled / max(gh * gw, 1)
    return out


def _align(input: torch.Tensor, rois: torch.Tensor, output_size: int,
           sampling_ratio: int) -> torch.Tensor:
    tv = _torchvision_roi_align()
    if tv is not None:
        return tv(input, rois, output_size, spatial_scale=1.0, sampling_ratio=sampling_ratio,
                  aligned=True)
    return roi_align(input, rois, output_size, spatial_scale=1.0, sampling_ratio=sampling_ratio,
                     aligned=True)


def _grid_rois(boxes: np.ndarray, frame_size: tuple[int, int],
               grid_hw: tuple[int, int]) -> np.ndarray:
    """Pixel boxes of a (width, height) frame -> token-grid coordinates (float64)."""
    width, height = frame_size
    if width <= 0 or height <= 0:
        raise WindowError(f"frame_size must be (width, height) > 0, found {frame_size}")
    # The frame is resized whole to the model's square input, so each axis scales alone.
    scale = np.array([grid_hw[1] / width, grid_hw[0] / height] * 2)
    return np.asarray(boxes, dtype=np.float64) * scale


def _pool(grids: np.ndarray, boxes: np.ndarray, frame_size: tuple[int, int],
          output_size: int, sampling_ratio: int, one_grid: bool) -> np.ndarray:
    """Pool (N, h, w, D) grids over (K, 4) pixel boxes: box k over grid k, or over grid 0
    (``one_grid``). NaN boxes give NaN rows; returns (K, D) or (K, o, o, D) float32."""
    if output_size < 1:
        raise WindowError(f"output_size must be >= 1, found {output_size}")
    h, w, d = grids.shape[1:]
    valid = np.isfinite(boxes).all(axis=1)
    out = np.full((len(boxes), output_size, output_size, d), np.nan, dtype=np.float32)
    if valid.any():
        rois = _grid_rois(boxes[valid], frame_size, (h, w))
        chosen = grids[:1] if one_grid else grids[valid]
        index = np.zeros(len(rois)) if one_grid else np.arange(len(rois))
        source = torch.from_numpy(np.ascontiguousarray(chosen, dtype=np.float32))
        source = source.permute(0, 3, 1, 2).contiguous()  # (N', D, h, w)
        tensor_rois = torch.from_numpy(np.concatenate([index[:, None], rois], axis=1)).float()
        with torch.inference_mode():
            pooled = _align(source, tensor_rois, output_size, sampling_ratio)
        out[valid] = pooled.permute(0, 2, 3, 1).float().numpy()  # (K', o, o, D)
    return out[:, 0, 0] if output_size == 1 else out


def pool_boxes(grid: np.ndarray, boxes: np.ndarray, frame_size: tuple[int, int],
               output_size: int = 1, sampling_ratio: int = 2) -> np.ndarray:
    """RoIAlign (``aligned=True``) of one token grid over boxes given in frame pixels.

    Parameters
    ----------
    grid : np.ndarray
        (h, w, D) float token grid of one frame (or clip) of the whole frame, as
        ``--tokens full`` stores it: token (i, j) covers the model input's pixels of patch
        row i, column j.
    boxes : np.ndarray
        (K, 4) float ``x1, y1, x2, y2`` in pixels of the original frame (continuous
        coordinates: the frame spans 0..width, 0..height). A row with a NaN gives a NaN row.
    frame_size : (int, int)
        (width, height) of the frame the boxes refer to. The whole frame was resized to the
        model's square input, so x scales by ``w / width`` and y by ``h / height``.
    output_size : int
        Bins per side. 1: one D-vector per box (the ChimpACT protocol's pooled RoI feature).
    sampling_ratio : int
        Bilinear samples per bin side (<= 0: torchvision's adaptive count).

    Returns
    -------
    np.ndarray
        float32 (K, D) when ``output_size == 1``, else (K, output_size, output_size, D): per
        bin, the mean of its bilinear samples (torchvision's ``roi_align``, which is used when
        it imports; otherwise :func:`roi_align`, the same computation with ``grid_sample``).

    Raises
    ------
    WindowError
        Shapes that do not fit, or ``output_size < 1``.
    """
    grid = np.asarray(grid)
    boxes = np.asarray(boxes, dtype=np.float64)
    if grid.ndim != 3:
        raise WindowError(f"pool_boxes: grid must be (h, w, D), found shape {grid.shape}")
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise WindowError(f"pool_boxes: boxes must be (K, 4) x1, y1, x2, y2, found shape "
                          f"{boxes.shape}")
    return _pool(grid[None], boxes, frame_size, output_size, sampling_ratio, one_grid=True)


def pool_frame_boxes(grids: np.ndarray, boxes: np.ndarray, frame_size: tuple[int, int],
                     output_size: int = 1, sampling_ratio: int = SAMPLING_RATIO) -> np.ndarray:
    """RoIAlign of N frames' token grids, one box each (a subject's box in each frame).

    Parameters
    ----------
    grids : np.ndarray
        (N, h, w, D) float token grids.
    boxes : np.ndarray
        (N, 4) pixel boxes of a (width, height) frame; NaN rows give NaN rows.
    frame_size, output_size, sampling_ratio
        As :func:`pool_boxes`.

    Returns
    -------
    np.ndarray
        float32 (N, D), or (N, o, o, D) when ``output_size > 1``.
    """
    grids = np.asarray(grids)
    boxes = np.asarray(boxes, dtype=np.float64)
    if grids.ndim != 4 or boxes.shape != (len(grids), 4):
        raise WindowError(f"pool_frame_boxes: grids must be (N, h, w, D) and boxes (N, 4), "
                          f"found shapes {grids.shape} and {boxes.shape}")
    return _pool(grids, boxes, frame_size, output_size, sampling_ratio, one_grid=False)


def roi_output_size(params: WindowParams) -> int:
    """Bins per box side for a token mode: ``mean`` -> 1 (D,), ``grid`` -> g (g, g, D).

    Raises
    ------
    WindowError
        ``full`` or ``frame_emb``: a box is pooled, not kept whole or embedded.
    """
    if params.tokens == "mean":
        return 1
    if params.tokens == "grid":
        return int(params.grid)
    raise WindowError(
        f"--boxes pools each subject's box of the token grid into --tokens mean (one vector) "
        f"or --tokens grid (g x g bins); --tokens {params.tokens} cannot be pooled per box: "
        "choose mean or grid")


@dataclass(frozen=True, eq=False)
class SubjectBoxes:
    """One subject's boxes over a video, ready to pool the whole-frame token grids.

    Attributes
    ----------
    subject : str
        The subject's name in the tracks.
    boxes : np.ndarray
        (T, 4) float64 ``x1, y1, x2, y2`` pixels, clipped to the frame; NaN without a box.
    frame_size : (int, int)
        (width, height) of the video's frames.
    output_size : int
        Bins per box side (1: a (D,) feature per frame).
    sampling_ratio : int
        Bilinear samples per bin side.
    source_format : str
        The tracks' format (where the boxes come from).
    clipped : int
        Boxes that reached past the frame and were clipped to it.
    """

    subject: str
    boxes: np.ndarray
    frame_size: tuple[int, int]
    output_size: int
    sampling_ratio: int = SAMPLING_RATIO
    source_format: str = ""
    clipped: int = 0

    @property
    def present(self) -> np.ndarray:
        """(T,) bool: frames with a box."""
        return np.isfinite(self.boxes).all(axis=1)

    def pool(self, frame_start: int, grids: np.ndarray) -> np.ndarray:
        """(N, h, w, D) whole-frame grids of frames ``frame_start..`` -> pooled features.

        Frames without a box get NaN (left out of training, like absent crops).
        """
        boxes = self.boxes[frame_start:frame_start + len(grids)]
        return pool_frame_boxes(grids, boxes, self.frame_size, self.output_size,
                                self.sampling_ratio)

    def identity(self, tracks_sha256: str) -> dict[str, Any]:
        """The ``roi`` provenance field (an identity field of the feature set)."""
        return {"subject": self.subject, "tracks_sha256": tracks_sha256,
                "boxes": self.source_format or "tracks", "pooling": "roi_align",
                "output_size": int(self.output_size),
                "sampling_ratio": int(self.sampling_ratio), "aligned": True,
                "clipped_to_frame": True}


def _frames_text(frames: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(str(int(f)) for f in frames[:limit])
    return shown + (f" and {len(frames) - limit} more" if len(frames) > limit else "")


def subject_boxes(
    tracks: Tracks, n_frames: int, frame_size: tuple[int, int], *, output_size: int = 1,
    sampling_ratio: int = SAMPLING_RATIO, subjects: Sequence[str] | None = None,
    video: str = "the video",
) -> list[SubjectBoxes]:
    """Check ``tracks`` against the video and take each subject's boxes.

    Parameters
    ----------
    tracks : Tracks
        With boxes (ChimpACT COCO, KABR CVAT, a CSV with ``w, h``, the built-in tracker).
    n_frames : int
        The video's frame count.
    frame_size : (int, int)
        The video's (height, width) (as :func:`subject_crops` takes it).
    output_size, sampling_ratio : int
        RoIAlign bins per side and samples per bin side.
    subjects : sequence of str, optional
        Only these subjects (default all).
    video : str
        The video's path, for messages.

    Returns
    -------
    list of SubjectBoxes
        Boxes partly past the frame's edges are clipped to it (logged with the count and
        the first frame).

    Raises
    ------
    TracksError
        Tracks of another video, tracks without boxes, a subject without any box, an inverted
        box (x2 < x1 or y2 < y1) or a box wholly outside the frame; each names the file, the
        subject and the frame.
    """
    tracks = tracks.check_video(n_frames, frame_size, video=video)
    where = tracks.source or "the tracks"
    if tracks.boxes is None or not np.isfinite(tracks.boxes).any():
        raise TracksError(
            f"{where} ({tracks.format or 'tracks'}) has no boxes, and --boxes pools each "
            "subject's box of the frame: give a tracks file with boxes (ChimpACT COCO, KABR "
            "CVAT boxes, a CSV with w and h columns, or --subjects auto), or drop --boxes to "
            "extract crops centred on the tracks")
    height, width = frame_size
    out = []
    for name in subjects if subjects is not None else tracks.subjects:
        k = tracks.subject_index(name)
        boxes = tracks.boxes[:, k].astype(np.float64)
        present = np.isfinite(boxes).all(axis=1)
        boxes[~present] = np.nan
        if not present.any():
            raise TracksError(
                f"subject {tracks.subjects[k]!r} of {where} has no box in any frame of {video}; "
                "leave it out or give its boxes")
        warn_absent(present, where, tracks.subjects[k], n_frames, what="box")
        inverted = np.flatnonzero(present & ((boxes[:, 2] < boxes[:, 0])
                                             | (boxes[:, 3] < boxes[:, 1])))
        if len(inverted):
            t = int(inverted[0])
            raise TracksError(
                f"{where}: subject {tracks.subjects[k]!r} has {len(inverted)} inverted box(es) "
                f"(x2 < x1 or y2 < y1), first at frame {t}: {boxes[t].round(1).tolist()}; "
                "boxes are x1, y1, x2, y2 (a CSV's w and h must be >= 0): fix the file")
        outside = np.flatnonzero(present & ((boxes[:, 2] <= 0) | (boxes[:, 0] >= width)
                                            | (boxes[:, 3] <= 0) | (boxes[:, 1] >= height)))
        if len(outside):
            t = int(outside[0])
            raise TracksError(
                f"{where}: subject {tracks.subjects[k]!r} has {len(outside)} box(es) wholly "
                f"outside the {width}x{height} frame of {video}, first at frame {t}: "
                f"{boxes[t].round(1).tolist()} (frames {_frames_text(outside)}); these boxes "
                "belong to another video or resolution: use the tracks file of this video")
        beyond = present & ((boxes[:, 0] < 0) | (boxes[:, 1] < 0) | (boxes[:, 2] > width)
                            | (boxes[:, 3] > height))
        if beyond.any():
            frames = np.flatnonzero(beyond)
            logger.warning("%s: %d box(es) of subject %r reach past the %dx%d frame (frames %s); "
                           "clipped to the frame", where, len(frames), tracks.subjects[k],
                           width, height, _frames_text(frames))
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        out.append(SubjectBoxes(subject=tracks.subjects[k], boxes=boxes,
                                frame_size=(int(width), int(height)),
                                output_size=int(output_size), sampling_ratio=int(sampling_ratio),
                                source_format=tracks.format, clipped=int(beyond.sum())))
    return out


def _merge_ranges(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for a, b in sorted(ranges):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


class _SubjectWriter:
    """Writes one subject's pooled features over its (shard-aligned) missing ranges."""

    def __init__(self, store: FeatureStore, video_id: str, key: str, boxes: SubjectBoxes,
                 ranges: Sequence[tuple[int, int]]) -> None:
        self.store, self.video_id, self.key, self.boxes = store, video_id, key, boxes
        self.ranges = sorted(ranges)
        self.writer: FeatureWriter | None = None
        self.frames_written = 0

    def add(self, block_start: int, grids: np.ndarray) -> None:
        block_stop = block_start + len(grids)
        for a, b in self.ranges:
            lo, hi = max(a, block_start), min(b, block_stop)
            if lo >= hi:
                continue
            if self.writer is None:
                self.writer = FeatureWriter(self.store, self.video_id, self.key, a)
            self.writer.add(lo, self.boxes.pool(lo, grids[lo - block_start:hi - block_start]))
            if hi == b:  # the range is done: its last shard is written now
                self.writer.close()
                self.frames_written += self.writer.frames_written
                self.writer = None

    def salvage(self) -> None:
        if self.writer is not None:
            self.writer.salvage()
            self.frames_written += self.writer.frames_written
            self.writer = None


def extract_box_ranges(
    model: Any, store: FeatureStore, video_id: str, source_path: str | os.PathLike[str],
    params: WindowParams, targets: Sequence[tuple[str, SubjectBoxes, Sequence[tuple[int, int]]]],
    batch_size: int = 8, on_frames: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Decode the video once and write every subject's RoI features of its missing ranges.

    Parameters
    ----------
    model : nn.Module
        From :func:`prism_science.extraction.load_encoder`.
    store : FeatureStore
        Open and writable, each target's feature set created.
    video_id : str
        The video in the store.
    source_path : path
        The video file.
    params : WindowParams
        The run's window parameters; the clips' whole token grids (``tokens="full"``) are
        averaged per frame as usual, then pooled per subject.
    targets : sequence of (str, SubjectBoxes, ranges)
        Per subject: its feature key, its boxes and its chunk-aligned frame ranges to write.
    batch_size : int
        Clips per forward pass.
    on_frames : callable, optional
        Called with the number of frames of each decoded block.

    Returns
    -------
    dict
        ``key -> frames written``. Each shard is written as soon as it is ready; after an error
        or Ctrl-C the chunks of every subject finished so far are written too, so a rerun keeps
        them (what ``extract`` does for whole frames and crops).
    """
    full = dataclasses.replace(params, tokens="full")
    writers = [_SubjectWriter(store, video_id, key, boxes, ranges)
               for key, boxes, ranges in targets]
    union = _merge_ranges([r for _, _, ranges in targets for r in ranges])
    try:
        with open_video(source_path) as reader:
            for start, stop in union:
                for block_start, block_stop, grids in iter_video_features(
                        model, reader, full, batch_size=batch_size, frame_range=(start, stop)):
                    for writer in writers:
                        writer.add(block_start, grids)
                    if on_frames is not None:
                        on_frames(block_stop - block_start)
    except BaseException:  # a decode error, Ctrl-C: keep the chunks computed so far
        for writer in writers:
            try:
                writer.salvage()
            except Exception as exc:  # noqa: BLE001 - the first error is the one to raise
                logger.warning("%s: could not keep the chunks of %s computed before the error "
                               "(%s)", video_id, writer.key, exc)
        raise
    return {writer.key: writer.frames_written for writer in writers}

