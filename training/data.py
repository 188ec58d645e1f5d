"""Training data: manifests, video folders, a decoded-clip cache, augmentations, step batches.

Decoding is the expensive part on a CPU, so every video is decoded once, through
:mod:`prism_science.video`, at the training resolution into a uint8 ``.npy`` file of a cache folder
(``(n_frames, S, S, 3)``, read back memory-mapped). (Animal-centred crops of videos too many to
cache are decoded clip by clip instead: :mod:`prism_training.crops`.) Batches are then cheap to
assemble: a temporally jittered window, a random resized crop (one box for every frame of a
clip) and, only where the config allows it, a horizontal flip (flips change the meaning of
left/right behaviours).

Determinism: the sample at position ``j`` of the global batch of step ``s`` is chosen and
augmented with a generator seeded by ``(seed, s, j)``, and the data order by ``(seed, epoch)``.
A resumed run therefore sees exactly the batches an uninterrupted one would, and a DDP rank
takes a contiguous slice of the same global batch as a single process.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from prism_science.errors import DataError, VideoError
from prism_science.video import open_video
from prism_science.video.index import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_sort_key

__all__ = [
    "CachedClip",
    "ClipSource",
    "ManifestEntry",
    "StepBatches",
    "augment_clip",
    "build_cache",
    "list_videos",
    "manifest_rows",
    "read_manifest",
    "sample_rng",
    "window_indices",
    "write_synth_window_manifest",
]

logger = logging.getLogger(__name__)

_CACHE_VERSION = 1


@dataclass(frozen=True)
class ManifestEntry:
    """One row of a video-text (or image-text) manifest.

    ``start_frame``/``end_frame`` (inclusive, 0-based) restrict the clip; ``start_s``/``end_s``
    (seconds) are converted to frames with the video's real timestamps once it is decoded.
    """

    path: Path
    caption: str
    start_frame: int | None = None
    end_frame: int | None = None
    start_s: float | None = None
    end_s: float | None = None


def _opt_float(value: Any) -> float | None:
    return None if value in (None, "") else float(value)


def _opt_int(value: Any) -> int | None:
    return None if value in (None, "") else int(float(value))


def manifest_rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The rows of a CSV (header) or JSONL manifest as ``(line number, fields)``.

    Raises
    ------
    DataError
        The file is missing or empty, a line is not a JSON object, or the CSV header has no
        ``path`` column; the message names the file and line.
    """
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; write one with `prism-science synth` "
                        "or give the path of a CSV/JSONL file with path,caption columns")
    rows: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise DataError(f"manifest {path}: the header must name a 'path' column "
                                f"(and 'caption'), found {reader.fieldnames}")
            rows = [(i + 2, dict(row)) for i, row in enumerate(reader)]
    else:
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"manifest {path} line {lineno} is not valid JSON ({exc}); "
                                "write one JSON object per line") from None
            if not isinstance(obj, dict):
                raise DataError(f"manifest {path} line {lineno}: expected a JSON object, "
                                f"found {type(obj).__name__}")
            rows.append((lineno, obj))
    if not rows:
        raise DataError(f"manifest {path} has no rows; add one row per clip (path, caption)")
    return rows


def read_manifest(
    path: str | os.PathLike[str], require_caption: bool = True
) -> list[ManifestEntry]:
    """Read a CSV or JSONL manifest of ``path, caption[, start, end]`` rows.

    Parameters
    ----------
    path : str or PathLike
        ``.jsonl`` (one JSON object per line) or ``.csv`` (a header row). Columns: ``path``
        (relative paths are resolved against the manifest's folder), ``caption``, optional
        ``start``/``end`` (seconds) or ``start_frame``/``end_frame`` (inclusive frame indices).
    require_caption : bool
        Refuse rows whose caption is missing or blank (video-text training needs them).

    Returns
    -------
    list of ManifestEntry

    Raises
    ------
    DataError
        The file is missing, has no rows, a row lacks ``path``, a caption is empty, or a
        line is not valid JSON / the CSV has no header; the message names the file and line.
    """
    path = Path(path)
    rows = manifest_rows(path)
    entries = []
    for lineno, row in rows:
        video = row.get("path")
        if not video:
            raise DataError(f"manifest {path} line {lineno}: the 'path' field is missing or empty")
        caption = str(row.get("caption") or "").strip()
        if require_caption and not caption:
            raise DataError(
                f"manifest {path} line {lineno} ({video}): the caption is empty; video-text "
                "training needs a caption for every clip -- fill it in or remove the row"
            )
        video_path = Path(video)
        if not video_path.is_absolute():
            video_path = path.parent / video_path
        try:
            entries.append(ManifestEntry(
                video_path, caption,
                start_frame=_opt_int(row.get("start_frame")),
                end_frame=_opt_int(row.get("end_frame")),
                start_s=_opt_float(row.get("start")), end_s=_opt_float(row.get("end")),
            ))
        except (TypeError, ValueError) as exc:
            raise DataError(f"manifest {path} line {lineno}: start/end must be numbers ({exc})") \
                from None
    return entries


def list_videos(folder: str | os.PathLike[str]) -> list[ManifestEntry]:
    """All video files under ``folder`` (recursively, natural order) as caption-less entries.

    Raises
    ------
    DataError
        The folder does not exist or holds no video file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"video folder {folder} does not exist; give a folder of video files")
    files = sorted(
        (p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()),
        key=lambda p: natural_sort_key(str(p.relative_to(folder))),
    )
    if not files:
        raise DataError(f"video folder {folder} holds no video file "
                        f"(looked for {', '.join(VIDEO_EXTENSIONS)})")
    return [ManifestEntry(p, "") for p in files]


@dataclass(frozen=True)
class CachedClip:
    """A decoded video in the cache: ``array_path`` holds (n_frames, S, S, 3) uint8."""

    entry: ManifestEntry
    array_path: Path
    n_frames: int
    start: int  # first usable frame (from the manifest's start), inclusive
    stop: int  # last usable frame + 1

    def frames(self) -> np.ndarray:
        """The decoded frames, memory-mapped: (n_frames, S, S, 3) uint8."""
        return np.load(self.array_path, mmap_mode="r", allow_pickle=False)


def _cache_key(path: Path, size: int) -> str:
    stat = path.stat()
    text = f"{_CACHE_VERSION}|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{size}"
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _decode_to_cache(path: Path, size: int, target: Path) -> tuple[int, np.ndarray]:
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        from PIL import Image

        with Image.open(path) as img:
            frames = np.asarray(img.convert("RGB").resize((size, size), Image.BILINEAR))[None]
        timestamps = np.zeros(1)
    else:
        with open_video(path) as reader:
            chunks = [c for _, c in reader.iter_chunks(64, size=(size, size))]
            timestamps = np.asarray(reader.info.timestamps, dtype=np.float64)
        frames = np.concatenate(chunks)
    # Unique temporary names: several runs may fill one cache at the same time.
    tmp = target.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, np.ascontiguousarray(frames), allow_pickle=False)
    tmp_ts = target.with_suffix(f".{os.getpid()}.tmp.ts.npy")
    np.save(tmp_ts, timestamps, allow_pickle=False)
    os.replace(tmp_ts, target.with_suffix(".ts.npy"))
    os.replace(tmp, target)
    return len(frames), timestamps


def _frame_range(entry: ManifestEntry, timestamps: np.ndarray, n: int) -> tuple[int, int]:
    start, stop = 0, n
    if entry.start_frame is not None:
        start = entry.start_frame
    elif entry.start_s is not None:
        start = int(np.searchsorted(timestamps, entry.start_s - 1e-6))
    if entry.end_frame is not None:
        stop = entry.end_frame + 1
    elif entry.end_s is not None:
        stop = int(np.searchsorted(timestamps, entry.end_s - 1e-6))
    return max(0, min(start, n - 1)), max(1, min(stop, n))


def build_cache(
    entries: Sequence[ManifestEntry],
    cache_dir: str | os.PathLike[str],
    size: int,
    max_bad_fraction: float = 0.1,
) -> list[CachedClip]:
    """Decode every entry once at ``size`` x ``size`` into ``cache_dir`` (reused when present).

    Parameters
    ----------
    entries : sequence of ManifestEntry
        Videos (or images, which become one-frame clips) to decode.
    cache_dir : str or PathLike
        Folder of the cached arrays (created); entries are keyed by path, size, mtime.
    size : int
        Side length of the square frames stored (the frame is resized, not cropped).
    max_bad_fraction : float
        Missing or undecodable videos are skipped (counted and listed in the log) unless their
        share exceeds this, which raises.

    Returns
    -------
    list of CachedClip
        One per usable entry, in the entries' order.

    Raises
    ------
    DataError
        More than ``max_bad_fraction`` of the entries are missing or unreadable (the message
        lists them), or none is usable.
    """
    root = Path(cache_dir) / f"s{size}"
    root.mkdir(parents=True, exist_ok=True)
    clips: list[CachedClip] = []
    bad: list[str] = []
    for entry in entries:
        try:
            if not entry.path.exists():
                raise VideoError(f"{entry.path} does not exist")
            target = root / f"{entry.path.stem[:40]}-{_cache_key(entry.path, size)}.npy"
            ts_path = target.with_suffix(".ts.npy")
            if target.is_file() and ts_path.is_file():
                n = int(np.load(target, mmap_mode="r", allow_pickle=False).shape[0])
                timestamps = np.load(ts_path, allow_pickle=False)
            else:
                n, timestamps = _decode_to_cache(entry.path, size, target)
        except (VideoError, OSError, ValueError) as exc:
            bad.append(f"{entry.path} ({exc})")
            continue
        if n < 1:
            bad.append(f"{entry.path} (no frames)")
            continue
        start, stop = _frame_range(entry, timestamps, n)
        clips.append(CachedClip(entry, target, n, start, stop))
    if bad:
        listing = "; ".join(bad[:20]) + (" ..." if len(bad) > 20 else "")
        fraction = len(bad) / max(len(entries), 1)
        if fraction > max_bad_fraction or not clips:
            raise DataError(
                f"{len(bad)} of {len(entries)} videos are missing or unreadable "
                f"({fraction:.0%} > max_bad_fraction {max_bad_fraction:.0%}): {listing}; fix or "
                "remove them from the manifest, or raise max_bad_fraction"
            )
        logger.warning("skipped %d of %d unreadable videos: %s", len(bad), len(entries), listing)
    return clips


def sample_rng(seed: int, step: int, position: int, salt: int = 0) -> np.random.Generator:
    """The generator of the sample at ``position`` of the global batch of ``step``."""
    return np.random.default_rng([seed, step, position, salt])


def augment_clip(
    frames: np.ndarray,
    rng: np.random.Generator,
    size: int,
    crop_scale_min: float = 0.6,
    crop_ratio_max: float = 1.33,
    allow_flip: bool = False,
) -> torch.Tensor:
    """Random resized crop (one box for the whole clip) and an optional horizontal flip.

    Parameters
    ----------
    frames : np.ndarray
        (T, H, W, 3) uint8.
    rng : numpy.random.Generator
        Source of the crop box and flip.
    size : int
        Output side length.
    crop_scale_min : float
        Smallest crop area as a fraction of the frame (1.0 disables cropping).
    crop_ratio_max : float
        Largest aspect ratio (and 1/ratio the smallest) of the crop box.
    allow_flip : bool
        Flip left-right with probability 0.5.

    Returns
    -------
    torch.Tensor
        (T, size, size, 3) float32 in [0, 1].
    """
    t, h, w, _ = frames.shape
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
    if crop_scale_min < 1.0:
        area = h * w * rng.uniform(crop_scale_min, 1.0)
        log_r = np.log(crop_ratio_max)
        ratio = float(np.exp(rng.uniform(-log_r, log_r)))
        cw = int(round(min(w, np.sqrt(area * ratio))))
        ch = int(round(min(h, np.sqrt(area / ratio))))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        clip = clip[:, :, y0 : y0 + ch, x0 : x0 + cw]
    if clip.shape[-2:] != (size, size):
        clip = F.interpolate(clip, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=True).clamp_(0.0, 1.0)
    if allow_flip and rng.random() < 0.5:
        clip = clip.flip(-1)
    return clip.permute(0, 2, 3, 1).contiguous()


def window_indices(start: int, stop: int, num_frames: int, frame_stride: int,
                   temporal_jitter: bool, rng: np.random.Generator) -> np.ndarray:
    """Frame indices (num_frames,) int64 of a window inside frames ``[start, stop)``.

    The window spans ``(num_frames - 1) * frame_stride + 1`` frames and starts at random
    (``temporal_jitter``, one draw from ``rng``) or in the middle; a range shorter than the
    window repeats its last frame.
    """
    span = (num_frames - 1) * frame_stride + 1
    room = stop - start - span
    if room <= 0:
        first = start
    elif temporal_jitter:
        first = start + int(rng.integers(0, room + 1))
    else:
        first = start + room // 2
    idx = first + np.arange(num_frames) * frame_stride
    return np.minimum(idx, stop - 1)


class ClipSource:
    """Draws augmented fixed-length clips from cached videos.

    Parameters
    ----------
    clips : list of CachedClip
        The cached videos.
    num_frames, size : int
        Clip length and frame side of the output.
    frame_stride : int
        Step between sampled frames.
    temporal_jitter : bool
        Random window start (else the centred window).
    crop_scale_min, crop_ratio_max, allow_flip
        See :func:`augment_clip`.
    """

    def __init__(
        self,
        clips: list[CachedClip],
        num_frames: int,
        size: int,
        frame_stride: int = 1,
        temporal_jitter: bool = True,
        crop_scale_min: float = 0.6,
        crop_ratio_max: float = 1.33,
        allow_flip: bool = False,
    ) -> None:
        if not clips:
            raise DataError("no usable clip to train on; check the manifest or video folder")
        self.clips = clips
        self.num_frames = num_frames
        self.size = size
        self.frame_stride = frame_stride
        self.temporal_jitter = temporal_jitter
        self.crop_scale_min = crop_scale_min
        self.crop_ratio_max = crop_ratio_max
        self.allow_flip = allow_flip
        self._arrays: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def frame_indices(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """Frame indices (num_frames,) of a window of clip ``index`` (repeats the last frame of
        a clip shorter than the window; one-frame clips give one index)."""
        clip = self.clips[index]
        if clip.n_frames == 1:
            return np.zeros(1, dtype=np.int64)
        return window_indices(clip.start, clip.stop, self.num_frames, self.frame_stride,
                              self.temporal_jitter, rng)

    def get(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        """An augmented clip: (num_frames, size, size, 3) float32 in [0, 1] (1 frame for images)."""
        if index not in self._arrays:
            self._arrays[index] = self.clips[index].frames()
        frames = self._arrays[index][self.frame_indices(index, rng)]
        return augment_clip(frames, rng, self.size, self.crop_scale_min, self.crop_ratio_max,
                            self.allow_flip)


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item ``k`` is this rank's share of the batch of step ``first+k``.

    Parameters
    ----------
    source : ClipSource
        Where clips come from.
    batch_size : int
        Global batch size (all ranks together, one micro-batch).
    seed : int
        Seed of the data order and augmentations.
    first_step, last_step : int
        Steps covered, ``first_step`` inclusive, ``last_step`` exclusive. With gradient
        accumulation, the "step" here counts micro-batches.
    rank, world_size : int
        This process's slice of every global batch (contiguous, rank-major).
    extras : callable, optional
        ``extras(index, rng) -> dict`` of per-sample arrays (captions' token ids, masks...),
        stacked into the batch.
    salt : int
        Distinguishes independent streams (e.g. image-text batches) that share a seed.
    windows_per_clip : int
        1: each epoch is a plain permutation of the windows. k > 1: the epoch order is made of
        groups of k windows of the same video (shuffled within the video, groups shuffled), so
        a batch holds ``batch_size / k`` videos with k windows each; windows left over (videos
        with fewer than k, or a remainder) follow in random order. In a contrastive batch the
        captions of one video's windows differ only by what the animals do, which asks the
        encoder for motion rather than for who is in the video.
    """

    def __init__(
        self,
        source: ClipSource,
        batch_size: int,
        seed: int,
        first_step: int,
        last_step: int,
        rank: int = 0,
        world_size: int = 1,
        extras: Callable[[int, np.random.Generator], dict[str, Any]] | None = None,
        salt: int = 0,
        windows_per_clip: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise DataError(f"batch_size {batch_size} is not divisible by the {world_size} "
                            "processes; choose a multiple of the world size")
        if windows_per_clip < 1 or (batch_size // world_size) % windows_per_clip:
            raise DataError(f"windows_per_clip={windows_per_clip} must be >= 1 and divide the "
                            f"per-process batch ({batch_size // world_size}), so that no "
                            "video's group is split across batches or processes")
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.first_step = first_step
        self.last_step = last_step
        self.rank = rank
        self.world_size = world_size
        self.extras = extras
        self.salt = salt
        self.windows_per_clip = windows_per_clip
        self._perms: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(0, self.last_step - self.first_step)

    def _index(self, position: int) -> int:
        n = len(self.source)
        epoch, offset = divmod(position, n)
        if epoch not in self._perms:
            rng = np.random.default_rng([self.seed, epoch, self.salt, 7])
            self._perms = {epoch: (rng.permutation(n) if self.windows_per_clip == 1
                                   else self._grouped_order(rng))}
        return int(self._perms[epoch][offset])

    def _grouped_order(self, rng: np.random.Generator) -> np.ndarray:
        k = self.windows_per_clip
        by_video: dict[str, list[int]] = {}
        for index, clip in enumerate(self.source.clips):
            by_video.setdefault(str(clip.entry.path), []).append(index)
        groups = []
        for indices in by_video.values():
            shuffled = rng.permutation(indices)
            groups += [shuffled[i:i + k] for i in range(0, len(shuffled) - k + 1, k)]
        grouped = [groups[g] for g in rng.permutation(len(groups))]
        order = np.concatenate(grouped) if grouped else np.zeros(0, dtype=int)
        rest = np.setdiff1d(np.arange(len(self.source)), order)
        return np.concatenate([order, rng.permutation(rest)]).astype(int)

    def batch(self, step: int) -> dict[str, Any]:
        """This rank's share of the global batch of ``step``: ``video`` (b, T, S, S, 3) float32,
        ``index`` (b,) int64, plus the stacked ``extras``."""
        per_rank = self.batch_size // self.world_size
        positions = range(self.rank * per_rank, (self.rank + 1) * per_rank)
        videos, indices, extra_rows = [], [], []
        for j in positions:
            rng = sample_rng(self.seed, step, j, self.salt)
            index = self._index(step * self.batch_size + j)
            videos.append(self.source.get(index, rng))
            indices.append(index)
            if self.extras is not None:
                extra_rows.append(self.extras(index, rng))
        out: dict[str, Any] = {"video": torch.stack(videos),
                               "index": torch.tensor(indices, dtype=torch.int64)}
        if extra_rows:
            for key in extra_rows[0]:
                out[key] = torch.stack([torch.as_tensor(row[key]) for row in extra_rows])
        return out

    def __getitem__(self, k: int) -> dict[str, Any]:
        return self.batch(self.first_step + k)


def write_synth_window_manifest(
    synth_dir: str | os.PathLike[str], out_path: str | os.PathLike[str], window: int = 24
) -> Path:
    """Write a manifest of ``window``-frame segments of a synthetic dataset, each captioned
    from the segment's own per-frame labels.

    A clip-level caption lists every behavior of a 10 s clip, most of which a 16-frame training
    window does not show; captioning each segment keeps video and text aligned.

    Parameters
    ----------
    synth_dir : str or PathLike
        Output folder of ``prism-science synth`` (NAME.mp4 + NAME.json per clip).
    out_path : str or PathLike
        The JSONL manifest to write (``path``, ``caption``, ``start_frame``, ``end_frame``).
    window : int
        Segment length in frames (segments do not overlap; a shorter tail is dropped).

    Returns
    -------
    Path
        ``out_path``.

    Raises
    ------
    DataError
        The folder holds no clip metadata.
    """
    # The synthetic world's caption template (one place for it), applied to a segment.
    from prism_science.synth import BEHAVIORS, AnimalAttributes
    from prism_science.synth import make_caption as synth_caption

    synth_dir = Path(synth_dir)
    metas = sorted(synth_dir.glob("*.json"), key=lambda p: natural_sort_key(p.name))
    if not metas:
        raise DataError(f"{synth_dir} holds no NAME.json clip metadata of synthetic clips; write "
                        f"them first: prism-science synth --n-videos N --out {synth_dir}")
    lines = []
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        if list(meta.get("behaviors", [])) != list(BEHAVIORS):
            raise DataError(f"{meta_path}: behavior vocabulary differs from this version's")
        animals = [AnimalAttributes(**a) for a in meta["animals"]]
        ids = [a.id for a in animals]
        behaviors = np.array([meta["frame_behaviors"][i] for i in ids]).T  # (T, n_animals)
        targets = np.array([meta["frame_targets"][i] for i in ids]).T
        species = "mouse"
        for start in range(0, behaviors.shape[0] - window + 1, window):
            seg = slice(start, start + window)
            caption = synth_caption(behaviors[seg], targets[seg], animals, species)
            lines.append(json.dumps({"path": meta["video"], "caption": caption,
                                     "start_frame": start, "end_frame": start + window - 1}))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rel = os.path.relpath(synth_dir, out_path.parent)
    out_path.write_text("".join(
        json.dumps({**json.loads(line), "path": str(Path(rel) / json.loads(line)["path"])}) + "\n"
        for line in lines))
    return out_path
