"""Search a video by text: a query's similarity to every frame, and its best-matching ranges.

Needs a video-text (LvT) model with a tokenizer, such as the bundled ``default``. The video is cut
into clips of the model's ``T`` frames every ``hop`` frames, the last one ending on the last frame
(:func:`clip_starts`); each clip's contrastive embedding is compared with the query's by cosine
similarity; a frame's score is the mean over the clips that contain it. Scores stay on that
absolute scale (-1 to 1): nothing is rescaled to the curve's own range, so a weak match looks
weak.

Peaks (:func:`find_hits`) are the highest local maxima of the per-frame curve, at least a clip
apart; each becomes a frame range: the frames around the peak whose score stays above half the
peak's height over the lowest score within a clip of it.

The clip embeddings do not depend on the query: a search on a store caches them in the store
(``videos/<id>/search/<model>/hop<H>``), so later queries on that video skip the video entirely.
Features extracted into a store cannot stand in for them: they are averaged over overlapping
clips, not a clip's own tokens.

Two ways in: :func:`search` (a progress callback and a cancel hook) and :func:`iter_search`, a
generator that yields ``(done, total, message)`` and returns the results, for GUI workers.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prism_science import __version__
from prism_science.errors import Cancelled, PrismError, SearchError, StoreError
from prism_science.extraction.features import load_encoder
from prism_science.models.registry import REGISTRY
from prism_science.models.weights import (
    DEFAULT_NAME,
    TOKENIZER_FILE,
    find_weights,
    list_models,
    precision_context,
    read_config,
)
from prism_science.store import is_store, open_store, video_id_from_path
from prism_science.video import content_hash, open_video

__all__ = [
    "ClipEmbeddings",
    "SearchHit",
    "SearchResult",
    "check_text_model",
    "clip_embeddings",
    "clip_starts",
    "find_hits",
    "find_peaks",
    "format_time",
    "frame_similarity",
    "iter_clip_embeddings",
    "iter_search",
    "load_text_model",
    "search",
    "text_models",
]

logger = logging.getLogger(__name__)

Progress = tuple[int, int, str]
TEXT_FAMILY = "video_text"
CACHE_GROUP = "search"
_DECODE_CHUNK = 32


# ---------------------------------------------------------------------- models
def _works_here() -> str:
    names = text_models()
    listed = ", ".join(names) if names else "none installed"
    return (f"text search needs a video-text model with a tokenizer; models that work here: "
            f"{listed}, or a weights folder of a video-text model holding {TOKENIZER_FILE} "
            "(from prism-science convert-weights or prism-science pretrain lit)")


def _text_problem(name_or_dir: str | os.PathLike[str]) -> str | None:
    """Why a model cannot search by text, read from its config files only; None if it can."""
    key = str(name_or_dir)
    if key == DEFAULT_NAME or key in REGISTRY:
        folder = find_weights(key)
        if folder is None:
            if key == DEFAULT_NAME:
                return "the bundled default model is not installed"
            if REGISTRY[key].family != TEXT_FAMILY:
                return f"has no text tower (a {REGISTRY[key].family} model)"
            return ("has no weights installed (it would load random weights, without a "
                    "tokenizer)")
    elif Path(key).is_dir():
        folder = Path(key)
    else:
        return "is neither a registered model name nor a weights folder"
    family = read_config(folder)[0]
    if family != TEXT_FAMILY:
        return f"has no text tower (a {family} model, {folder})"
    if not (folder / TOKENIZER_FILE).is_file():
        return f"has no tokenizer ({folder / TOKENIZER_FILE} is missing)"
    return None


def text_models() -> list[str]:
    """Names of installed models that can search by text (the bundled default first).

    Returns
    -------
    list of str
        Entries of :func:`prism_science.models.list_models` with a text tower, weights and a
        tokenizer; decided from their config files, no weights are loaded.
    """
    out = []
    for name in list_models():
        try:
            if _text_problem(name) is None:
                out.append(name)
        except PrismError:  # an unreadable installed folder: not offered
            continue
    return out


def check_text_model(model: str | os.PathLike[str] | nn.Module) -> None:
    """Refuse a model that cannot search by text, before any weights are loaded.

    Parameters
    ----------
    model : str, path or torch.nn.Module
        A registered name, ``"default"``, a weights folder, or a loaded model.

    Raises
    ------
    SearchError
        The model has no text tower or no tokenizer (the message names the model and lists the
        models that work).
    """
    if isinstance(model, nn.Module):
        name = getattr(model, "name", type(model).__name__)
        if not hasattr(model, "encode_texts"):
            problem = "has no text tower"
        elif getattr(model, "tokenizer", None) is None:
            problem = "has no tokenizer"
        else:
            return
    else:
        name = str(model)
        try:
            problem = _text_problem(model)
        except PrismError as exc:
            problem = f"cannot be read ({exc})"
        if problem is None:
            return
    raise SearchError(f"model {name!r} {problem}: {_works_here()}")


def load_text_model(
    model: str | os.PathLike[str] | nn.Module = DEFAULT_NAME, device: str = "cpu",
    precision: str = "fp32",
) -> nn.Module:
    """A video-text model with a tokenizer, in eval mode on ``device``.

    Parameters
    ----------
    model : str, path or torch.nn.Module
        A registered name, ``"default"`` (the bundled model), a weights folder, or a model
        already loaded (returned as it is).
    device : str
        ``"cpu"``, ``"cuda"``, ``"auto"``, ...
    precision : {"fp32", "bf16", "auto"}
        Inference precision of a model loaded here (see
        :func:`prism_science.models.weights.resolve_precision`).

    Raises
    ------
    SearchError
        The model cannot search by text; raised before its weights are read.
    """
    check_text_model(model)
    if isinstance(model, nn.Module):
        return model.eval()
    loaded = load_encoder(str(model), device=device, precision=precision)
    check_text_model(loaded)
    return loaded


def _encode_queries(model: nn.Module, queries: Sequence[str]) -> np.ndarray:
    """(Q, D) float32 L2-normalised text embeddings."""
    with torch.inference_mode():
        return model.encode_texts(list(queries)).float().cpu().numpy()


# ---------------------------------------------------------------------- clip embeddings
def clip_starts(n_frames: int, num_frames: int, hop: int) -> np.ndarray:
    """First frame of each clip: every ``hop`` frames, plus a last clip ending on the last frame.

    Unlike feature extraction, no clip reaches past the video's end (a clip of mostly repeated
    edge frames matches every query alike); only a video shorter than a clip is padded.

    Returns
    -------
    np.ndarray
        (W,) int64, increasing.
    """
    last = max(int(n_frames) - int(num_frames), 0)
    starts = np.arange(0, last + 1, max(int(hop), 1), dtype=np.int64)
    return starts if starts[-1] == last else np.append(starts, last)


@dataclass(frozen=True, eq=False)
class ClipEmbeddings:
    """The contrastive embeddings of a video's sliding clips, for any number of queries.

    Attributes
    ----------
    embeddings : np.ndarray
        (W, D) float32, L2-normalised; clip ``w`` holds frames ``starts[w] .. starts[w] + T - 1``.
    starts : np.ndarray
        (W,) int64 first frame of each clip (:func:`clip_starts`).
    n_frames : int
        Frames in the video.
    num_frames : int
        Clip length T of the model.
    hop : int
        Frames between clip starts.
    model_name, weights_sha256 : str
        The model that made them.
    """

    embeddings: np.ndarray
    starts: np.ndarray
    n_frames: int
    num_frames: int
    hop: int
    model_name: str
    weights_sha256: str | None


def _clip_batches(
    reader: Any, starts: np.ndarray, num_frames: int, size: int, batch_size: int
) -> Generator[tuple[int, int, np.ndarray, np.ndarray], None, None]:
    """(w0, w1, frames (b, T, size, size, 3) uint8, paddings (b, T)) per batch of clips.

    Frames are decoded once, in order, into a buffer that holds only what the current batch
    needs (clips overlap, so a frame serves up to T / hop clips).
    """
    n_frames = reader.info.n_frames
    chunks = reader.iter_chunks(_DECODE_CHUNK, size=(size, size))
    buffer = np.empty((0, size, size, 3), np.uint8)
    first = 0
    for w0 in range(0, starts.size, batch_size):
        w1 = min(w0 + batch_size, starts.size)
        wanted = starts[w0:w1, None] + np.arange(num_frames)  # (b, T)
        paddings = (wanted >= n_frames).astype(np.float32)  # only in a video shorter than T
        wanted = np.minimum(wanted, n_frames - 1)
        while first + len(buffer) <= wanted.max():
            buffer = np.concatenate([buffer, next(chunks)[1]])
        if wanted.min() > first:
            buffer, first = buffer[wanted.min() - first:], int(wanted.min())
        yield w0, w1, buffer[wanted - first], paddings


def iter_clip_embeddings(
    model: nn.Module, video_path: str | os.PathLike[str], hop: int, batch_size: int = 4
) -> Generator[Progress, None, ClipEmbeddings]:
    """Encode a video's sliding clips; yields progress, returns :class:`ClipEmbeddings`.

    Parameters
    ----------
    model : VideoTextModel
        Has ``encode_video``, ``num_frames``, ``image_size``.
    video_path : str or Path
        A video file or a folder of frames.
    hop : int
        Frames between clip starts, 1 to T.
    batch_size : int
        Clips per forward pass.

    Yields
    ------
    (int, int, str)
        Clips done, clips in all, a message.

    Raises
    ------
    VideoError
        The video cannot be read (the message names the file and frame).
    SearchError
        ``hop`` is outside 1..T.
    """
    size, num_frames = int(model.image_size), int(model.num_frames)
    if not 1 <= int(hop) <= num_frames:
        raise SearchError(f"hop {hop} is outside 1..{num_frames} (the clip length of model "
                          f"{model.name!r}): frames between clips would go unseen; choose a "
                          f"hop from 1 to {num_frames}")
    device = next(model.parameters()).device
    with open_video(video_path) as reader:
        n_frames = reader.info.n_frames
        starts = clip_starts(n_frames, num_frames, hop)
        out = np.empty((starts.size, int(model.model_dim)), np.float32)
        yield 0, starts.size, f"encoding {starts.size} clips of {Path(video_path).name}"
        batches = _clip_batches(reader, starts, num_frames, size, batch_size)
        for w0, w1, frames, paddings in batches:
            video = torch.from_numpy(frames).to(device).float().div_(255.0)
            with torch.inference_mode(), precision_context(
                    getattr(model, "inference_precision", "fp32"), device):
                emb = model.encode_video(video, torch.from_numpy(paddings).to(device))
            out[w0:w1] = emb.float().cpu().numpy()
            yield w1, starts.size, f"clip {w1} of {starts.size}"
    return ClipEmbeddings(out, starts, n_frames, num_frames, int(hop), str(model.name),
                          getattr(model, "weights_sha256", None))


def clip_embeddings(
    model: nn.Module, video_path: str | os.PathLike[str], hop: int, batch_size: int = 4
) -> ClipEmbeddings:
    """:func:`iter_clip_embeddings` run to the end (no progress)."""
    return _drain(iter_clip_embeddings(model, video_path, hop, batch_size))


def frame_similarity(clips: ClipEmbeddings, text_embeddings: np.ndarray) -> np.ndarray:
    """Per-frame cosine similarity of each query: the mean over the clips holding the frame.

    Parameters
    ----------
    clips : ClipEmbeddings
        (W, D) clip embeddings and their start frames.
    text_embeddings : np.ndarray
        (Q, D) or (D,) L2-normalised query embeddings.

    Returns
    -------
    np.ndarray
        (N, Q) float32 (or (N,) for a (D,) input), in [-1, 1], never rescaled.
    """
    text = np.asarray(text_embeddings, np.float32)
    single = text.ndim == 1
    text = text.reshape(-1, clips.embeddings.shape[1])
    sims = clips.embeddings @ text.T  # (W, Q)
    # Each clip adds its score to its frames: +score at its start, -score after its end.
    n = clips.n_frames
    ends = np.minimum(clips.starts + clips.num_frames, n)
    total = np.zeros((n + 1, text.shape[0]), np.float64)
    count = np.zeros(n + 1, np.float64)
    np.add.at(total, clips.starts, sims)
    np.add.at(total, ends, -sims)
    np.add.at(count, clips.starts, 1.0)
    np.add.at(count, ends, -1.0)
    curve = np.cumsum(total, axis=0)[:n] / np.maximum(np.cumsum(count)[:n], 1.0)[:, None]
    curve = curve.astype(np.float32)
    return curve[:, 0] if single else curve


# ---------------------------------------------------------------------- peaks
@dataclass(frozen=True)
class SearchHit:
    """One best-matching frame range.

    ``start_frame`` and ``end_frame`` are inclusive; ``end_s`` is the time of the frame after
    ``end_frame`` (the interval convention of :mod:`prism_science.labels`). ``score`` is the
    cosine similarity at ``peak_frame``.
    """

    rank: int
    start_frame: int
    end_frame: int
    peak_frame: int
    start_s: float
    end_s: float
    score: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields, with the times also as ``hh:mm:ss.mmm``."""
        return {
            "rank": self.rank, "start_frame": self.start_frame, "end_frame": self.end_frame,
            "peak_frame": self.peak_frame, "start_s": round(self.start_s, 6),
            "end_s": round(self.end_s, 6), "start_time": format_time(self.start_s),
            "end_time": format_time(self.end_s), "score": round(self.score, 6),
        }


def find_peaks(curve: np.ndarray, n: int, spacing: int) -> list[int]:
    """The ``n`` highest local maxima of a curve, each at least ``spacing`` frames from the others.

    Parameters
    ----------
    curve : np.ndarray
        (N,) scores.
    n : int
        Most peaks to return.
    spacing : int
        Minimum distance between two peaks, in frames (>= 1).

    Returns
    -------
    list of int
        Frame indices, highest first (fewer than ``n`` when the curve has fewer maxima).
    """
    return [hit.peak_frame for hit in find_hits(curve, n, spacing)]


def find_hits(
    curve: np.ndarray, n: int, spacing: int, timestamps: np.ndarray | None = None,
    fps: float | None = None,
) -> list[SearchHit]:
    """The best-matching frame ranges of a per-frame similarity curve.

    Peaks are taken highest first among the local maxima (frames, or flat runs of frames, higher
    than their neighbours; a flat run's peak is its first frame), skipping any within
    ``spacing`` frames of a chosen one or inside its range. A peak's range is the run of frames
    around it whose score stays at or above half its height over the lowest score within
    ``spacing`` frames of it, stopping at earlier ranges.

    Parameters
    ----------
    curve : np.ndarray
        (N,) scores (cosine similarity).
    n : int
        Most ranges to return.
    spacing : int
        Minimum distance between peaks in frames, usually the clip length.
    timestamps : np.ndarray, optional
        (N,) float64 seconds of each frame; default ``frame / fps``.
    fps : float, optional
        Frame rate, for times after the last frame (and when ``timestamps`` is None).

    Returns
    -------
    list of SearchHit
        Highest first, ranks from 1.
    """
    curve = np.asarray(curve, np.float64).ravel()
    size = curve.size
    if size == 0 or n < 1:
        return []
    spacing = max(int(spacing), 1)
    fps = float(fps) if fps else 0.0
    if timestamps is None:
        timestamps = np.arange(size) / (fps or 1.0)
    timestamps = np.asarray(timestamps, np.float64)
    frame_s = 1.0 / fps if fps else (float(np.median(np.diff(timestamps))) if size > 1 else 1.0)
    # Local maxima: runs of equal values higher than the frames on both sides of the run.
    firsts = np.concatenate([[0], np.flatnonzero(np.diff(curve)) + 1])
    lasts = np.append(firsts[1:] - 1, size - 1)
    padded = np.concatenate([[-np.inf], curve, [-np.inf]])
    run_max = (padded[firsts] < curve[firsts]) & (padded[lasts + 2] < curve[lasts])
    is_max = np.repeat(run_max, lasts - firsts + 1)
    blocked = np.zeros(size, bool)
    hits: list[SearchHit] = []
    for peak in np.argsort(-curve, kind="stable"):
        peak = int(peak)
        if blocked[peak] or not is_max[peak]:
            continue
        low = curve[max(0, peak - spacing): peak + spacing + 1].min()
        level = curve[peak] - 0.5 * (curve[peak] - low)
        start = peak
        while start > 0 and not blocked[start - 1] and curve[start - 1] >= level:
            start -= 1
        end = peak
        while end < size - 1 and not blocked[end + 1] and curve[end + 1] >= level:
            end += 1
        blocked[max(0, min(start, peak - spacing + 1)): max(end, peak + spacing - 1) + 1] = True
        end_s = timestamps[end + 1] if end + 1 < size else timestamps[end] + frame_s
        hits.append(SearchHit(len(hits) + 1, start, end, peak, float(timestamps[start]),
                              float(end_s), float(curve[peak])))
        if len(hits) >= n:
            break
    return hits


def format_time(seconds: float) -> str:
    """Seconds as ``hh:mm:ss.mmm`` (``75.5`` -> ``"00:01:15.500"``)."""
    millis = int(round(max(float(seconds), 0.0) * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"


# ---------------------------------------------------------------------- sources
@dataclass
class _Source:
    """What a search reads: a video file, or a video of a store (whose file may be missing)."""

    label: str
    n_frames: int
    fps: float
    timestamps: np.ndarray
    video_path: Path | None = None
    store_path: Path | None = None
    video_id: str | None = None
    unavailable: str = ""  # why a store's video file cannot be read


def _resolve(source: str | os.PathLike[str], video_id: str | None) -> _Source:
    path = Path(source)
    if is_store(path):
        return _resolve_store(path, video_id)
    if not path.exists():
        raise SearchError(f"{path}: no such video or feature store; give a video file, a "
                          "folder of frames, or a store written by prism-science extract")
    with open_video(path) as reader:
        info = reader.info
    return _Source(str(path), info.n_frames, info.fps, np.asarray(info.timestamps), path)


def _resolve_store(path: Path, video_id: str | None) -> _Source:
    with open_store(path, mode="r") as store:
        ids = store.video_ids()
        if video_id is None:
            if len(ids) != 1:
                raise SearchError(
                    f"{path}: holds {len(ids)} videos ({', '.join(ids[:10]) or 'none'}); "
                    "choose one with --video-id (video_id=...)")
            video_id = ids[0]
        elif video_id not in ids:
            guess = video_id_from_path(video_id)
            if guess not in ids:
                raise SearchError(f"{path}: no video {video_id!r} (videos: "
                                  f"{', '.join(ids[:10]) or 'none'}); pass one of these ids")
            video_id = guess
        info = store.video_info(video_id)
    candidates = [Path(info.source_path)] if info.source_path else []
    if info.relative_path:
        candidates.append(path.parent / info.relative_path)
    found = next((c for c in candidates if c.exists()), None)
    unavailable = ""
    if found is None:
        looked = ", ".join(str(c) for c in candidates) or "no path recorded"
        unavailable = f"the video file is not where the store recorded it (looked at {looked})"
    elif content_hash(found) != info.content_hash:
        unavailable = f"{found} holds other content than the video stored as {video_id!r}"
        found = None
    return _Source(f"{path}::{video_id}", info.n_frames, info.fps, info.timestamps, found, path,
                   video_id, unavailable)


def _cache_path(model: nn.Module, hop: int) -> str:
    name = video_id_from_path(str(model.name)) or "model"
    return f"{CACHE_GROUP}/{name}/hop{hop}"


def _cache_attrs(model: nn.Module, hop: int, n_frames: int) -> dict[str, Any]:
    return {"model_name": str(model.name), "weights_sha256": model.weights_sha256,
            "num_frames": int(model.num_frames), "image_size": int(model.image_size),
            "hop": int(hop), "n_frames": int(n_frames)}


def _read_cache(src: _Source, model: nn.Module, hop: int) -> ClipEmbeddings | None:
    if src.store_path is None or not getattr(model, "weights_sha256", None):
        return None
    relpath = _cache_path(model, hop)
    want = _cache_attrs(model, hop, src.n_frames)
    with open_store(src.store_path, mode="r") as store:
        if not store.has_item(src.video_id, relpath):
            return None
        attrs = store.read_array_attrs(src.video_id, relpath)
        if any(attrs.get(k) != v for k, v in want.items()):
            logger.info("%s: cached clip embeddings at %s are of other weights; recomputing",
                        src.label, relpath)
            return None
        values = store.read_array(src.video_id, relpath).astype(np.float32)
    starts = clip_starts(src.n_frames, int(model.num_frames), hop)
    if values.shape[0] != starts.size:
        return None
    logger.info("%s: clip embeddings read from the store (%s)", src.label, relpath)
    return ClipEmbeddings(values, starts, src.n_frames, int(model.num_frames), hop,
                          str(model.name), model.weights_sha256)


def _write_cache(src: _Source, model: nn.Module, clips: ClipEmbeddings) -> None:
    if src.store_path is None or not getattr(model, "weights_sha256", None):
        return
    relpath = _cache_path(model, clips.hop)
    attrs = {**_cache_attrs(model, clips.hop, src.n_frames), "library_version": __version__,
             "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    try:
        with open_store(src.store_path, mode="r+") as store:
            store.write_array(src.video_id, relpath, clips.embeddings, attrs=attrs)
    except (StoreError, OSError) as exc:  # read-only folder, HDF5 open elsewhere: not fatal
        logger.warning("%s: clip embeddings not cached in the store (%s)", src.label, exc)
        return
    logger.info("%s: clip embeddings cached at videos/%s/%s", src.label, src.video_id, relpath)


# ---------------------------------------------------------------------- search
@dataclass(frozen=True, eq=False)
class SearchResult:
    """The answer to one query.

    Attributes
    ----------
    query : str
    similarity : np.ndarray
        (N,) float32 per-frame cosine similarity, on its absolute scale.
    hits : list of SearchHit
        Best-matching frame ranges, highest first.
    video : str
        The video path, or ``"<store>::<video id>"``.
    model_name : str
    clip_frames, hop : int
        Clip length T and the frames between clip starts.
    fps : float
    """

    query: str
    similarity: np.ndarray
    hits: list[SearchHit]
    video: str
    model_name: str
    clip_frames: int
    hop: int
    fps: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (the hits and the curve's range, not the curve itself)."""
        sim = self.similarity
        return {
            "query": self.query, "video": self.video, "model": self.model_name,
            "n_frames": int(sim.size), "fps": self.fps, "clip_frames": self.clip_frames,
            "hop": self.hop, "similarity": "cosine",
            "similarity_min": round(float(sim.min()), 6) if sim.size else None,
            "similarity_max": round(float(sim.max()), 6) if sim.size else None,
            "hits": [hit.to_dict() for hit in self.hits],
        }


def iter_search(
    source: str | os.PathLike[str],
    queries: str | Sequence[str],
    *,
    model: str | os.PathLike[str] | nn.Module = DEFAULT_NAME,
    video_id: str | None = None,
    hop: int | None = None,
    top: int = 5,
    device: str = "cpu",
    batch_size: int = 4,
    cache: bool = True,
    clip_cache: dict[Any, ClipEmbeddings] | None = None,
    precision: str = "fp32",
) -> Generator[Progress, None, list[SearchResult]]:
    """Search a video, or a video of a store, for text queries; a generator for GUI workers.

    Parameters
    ----------
    source : str or Path
        A video file, a folder of frames, or a feature store (Zarr folder, ``.h5``).
    queries : str or sequence of str
        One or several texts; the video is encoded once for all of them.
    model : str, path or torch.nn.Module
        A video-text model with a tokenizer (default: the bundled ``default``).
    video_id : str, optional
        The video of a store (needed when the store holds several).
    hop : int, optional
        Frames between clip starts (1 to T); default half the clip length.
    top : int
        Most frame ranges per query.
    device : str
        Torch device for the model.
    batch_size : int
        Clips per forward pass.
    cache : bool
        For a store: read and write the clip embeddings there.
    clip_cache : dict, optional
        A dict the caller keeps between searches: clip embeddings are looked up and kept
        there (by source, model weights and hop), so a new query on the same video is instant.
    precision : {"fp32", "bf16", "auto"}
        Inference precision (``auto``: bf16 where the device has it natively).

    Yields
    ------
    (int, int, str)
        Progress: steps done, steps in all, a message. Stop iterating to cancel.

    Returns
    -------
    list of SearchResult
        One per query, in order.

    Raises
    ------
    SearchError
        A model without text tower or tokenizer (before loading), an empty query, a store
        whose video has moved.
    VideoError, StoreError, WindowError
        The video or store cannot be read, or ``hop`` is out of range.
    """
    texts = [queries] if isinstance(queries, str) else list(queries)
    texts = [str(t).strip() for t in texts]
    if not texts or not all(texts):
        raise SearchError(f"empty query in {texts!r}: type the behavior to look for, e.g. "
                          "'a mouse grooming'")
    check_text_model(model)
    src = _resolve(source, video_id)
    if src.n_frames < 1:
        raise SearchError(f"{src.label}: has no frames to search")
    yield 0, 1, f"loading {getattr(model, 'name', model)}"
    loaded = load_text_model(model, device, precision)
    hop = int(hop) if hop else max(1, int(loaded.num_frames) // 2)
    text = _encode_queries(loaded, texts)
    memory_key = (src.label, str(loaded.name), getattr(loaded, "weights_sha256", None), hop,
                  src.n_frames)
    clips = clip_cache.get(memory_key) if clip_cache is not None else None
    if clips is None and cache:
        clips = _read_cache(src, loaded, hop)
    if clips is None:
        if src.video_path is None:
            raise SearchError(
                f"{src.label}: {src.unavailable}, and the store holds no clip embeddings of "
                f"model {loaded.name!r} at hop {hop}; put the video back, or search the video "
                "file itself")
        clips = yield from iter_clip_embeddings(loaded, src.video_path, hop, batch_size)
        if cache:
            _write_cache(src, loaded, clips)
    if clip_cache is not None:
        clip_cache[memory_key] = clips
    if clips.n_frames != src.n_frames:
        raise SearchError(f"{src.label}: the store records {src.n_frames} frames but the video "
                          f"has {clips.n_frames}; re-extract it into the store")
    curves = frame_similarity(clips, text)  # (N, Q)
    spacing = int(loaded.num_frames)
    results = []
    for q, query in enumerate(texts):
        curve = np.ascontiguousarray(curves[:, q])
        hits = find_hits(curve, top, spacing, src.timestamps, src.fps)
        results.append(SearchResult(query, curve, hits, src.label, str(loaded.name),
                                    int(loaded.num_frames), hop, float(src.fps)))
    return results


def search(
    source: str | os.PathLike[str],
    queries: str | Sequence[str],
    *,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: threading.Event | Callable[[], bool] | None = None,
    **options: Any,
) -> list[SearchResult]:
    """Search a video (or a video of a store) for text queries.

    Parameters
    ----------
    source, queries
        As in :func:`iter_search`.
    progress : callable, optional
        Called with ``(done, total, message)`` after each step (model loaded, batch of clips).
    cancel : threading.Event or callable, optional
        Checked between steps; when set (or returning True) the search stops.
    **options
        ``model``, ``video_id``, ``hop``, ``top``, ``device``, ``batch_size``, ``cache``,
        ``clip_cache``, ``precision`` of :func:`iter_search`.

    Returns
    -------
    list of SearchResult
        One per query.

    Raises
    ------
    Cancelled
        ``cancel`` was set.
    SearchError
        See :func:`iter_search`.
    """
    is_cancelled = cancel.is_set if isinstance(cancel, threading.Event) else cancel
    steps = iter_search(source, queries, **options)
    return _drain(steps, progress, is_cancelled)


def _drain(
    steps: Generator[Progress, None, Any],
    progress: Callable[[int, int, str], None] | None = None,
    is_cancelled: Callable[[], bool] | None = None,
) -> Any:
    try:
        while True:
            if is_cancelled is not None and is_cancelled():
                steps.close()
                raise Cancelled("search cancelled")
            report = next(steps)
            if progress is not None:
                progress(*report)
    except StopIteration as stop:
        return stop.value
