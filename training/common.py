"""Pieces the stages share: weights folders, data sources, tokenizer training, the contrastive
objective (stage 1 and LiT) and pooled embeddings."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from prism_science.errors import CheckpointError, ConfigError, DataError
from prism_science.models.layers import l2_normalize
from prism_science.models.text import Tokenizer, canonicalize_text
from prism_training.config import TrainConfig
from prism_training.crops import (
    ConcatSource,
    CropClipSource,
    CropEntry,
    build_crop_source,
    read_crop_manifest,
)
from prism_training.data import ClipSource, ManifestEntry, build_cache, read_manifest
from prism_training.engine import DistInfo, setup_distributed
from prism_training.losses import LogitScale, symmetric_infonce

__all__ = [
    "ContrastiveObjective",
    "crop_entries",
    "gather_with_grad",
    "make_clip_source",
    "pooled_embedding",
    "resolve_weights",
    "start_captioned_run",
    "text_extras",
    "train_tokenizer",
]

logger = logging.getLogger(__name__)


def resolve_weights(path: str | Path, what: str) -> Path:
    """A weights folder: ``path`` itself when it holds config.json, else ``path/final``.

    Raises
    ------
    CheckpointError
        Neither holds a config.json (``what`` names the role, e.g. "teacher").
    """
    path = Path(path)
    for candidate in (path, path / "final"):
        if (candidate / "config.json").is_file():
            return candidate
    raise CheckpointError(
        f"{what} {path} is not a weights folder (no config.json in it or in {path / 'final'}); "
        f"give the final/ folder of a finished run, e.g. runs/default/stage1/final"
    )


def start_captioned_run(
    cfg: TrainConfig,
) -> tuple[DistInfo, Path, list[ManifestEntry], list[CropEntry]]:
    """Open a run trained on captioned clips (stage 1, LiT): check ``out_dir`` and the
    manifests, join the process group (when under torchrun), create the run folder, read the
    whole-frame ``manifest`` and the ``crop_manifest`` rows (captions required in both)."""
    if not cfg.out_dir:
        raise ConfigError("out_dir is empty; set --out RUN_DIR")
    if not cfg.manifest and not cfg.crop_manifest:
        raise ConfigError("manifest and crop_manifest are empty; set manifest=PATH (CSV or "
                          "JSONL of path,caption) and/or crop_manifest=PATH (path,tracks,"
                          "caption per animal)")
    info = setup_distributed()
    run_dir = Path(cfg.out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    entries = read_manifest(cfg.manifest) if cfg.manifest else []
    return info, run_dir, entries, crop_entries(cfg, require_caption=True)


def crop_entries(cfg: TrainConfig, require_caption: bool = False) -> list[CropEntry]:
    """The rows of every crop manifest of ``cfg.crop_manifest`` (comma-separated), in order."""
    entries: list[CropEntry] = []
    for manifest in filter(None, (m.strip() for m in cfg.crop_manifest.split(","))):
        entries += read_crop_manifest(manifest, require_caption)
    return entries


def make_clip_source(
    cfg: TrainConfig, entries: list[ManifestEntry], num_frames: int, size: int,
    crops: list[CropEntry] | None = None,
) -> ClipSource | CropClipSource | ConcatSource:
    """The clips of a run: ``entries`` decoded into the cache (``cfg.cache_dir`` or
    ``out_dir/cache``) as whole frames, then the animal-centred ``crops`` (decoded clip by
    clip, :mod:`prism_training.crops`), as one source."""
    cache = cfg.cache_dir or str(Path(cfg.out_dir or ".") / "cache")
    sources: list[Any] = []
    if entries:
        clips = build_cache(entries, cache, size, cfg.max_bad_fraction)
        logger.info("%d clips cached at %d px in %s", len(clips), size, cache)
        sources.append(ClipSource(clips, num_frames, size, cfg.frame_stride,
                                  cfg.temporal_jitter, cfg.crop_scale_min, cfg.crop_ratio_max,
                                  cfg.allow_flip))
    if crops:
        sources.append(build_crop_source(
            crops, cache, num_frames, size, crop_size=cfg.crop_size or None,
            segment_frames=cfg.crop_segment_frames, max_bad_fraction=cfg.max_bad_fraction,
            frame_stride=cfg.frame_stride, temporal_jitter=cfg.temporal_jitter,
            scale_jitter=cfg.crop_scale_jitter, shift=cfg.crop_shift,
            rotation=cfg.crop_rotation, align_heading=cfg.align_heading,
            allow_flip=cfg.allow_flip, open_videos=cfg.open_videos))
    if not sources:
        raise DataError("no data to train on: the manifests name no clip")
    return sources[0] if len(sources) == 1 else ConcatSource(sources)


def train_tokenizer(captions: list[str], out_path: str | Path, vocab_size: int) -> Path:
    """Train a SentencePiece (BPE) model on ``captions`` and write it to ``out_path``.

    Captions are canonicalised as the tokenizer will canonicalise them (lower case, punctuation
    to spaces). Ids: 0 pad, 1 unk, no BOS/EOS (the official text pipeline adds none). BPE keeps
    merging until every frequent word is one piece, and the vocabulary may come out smaller
    than ``vocab_size`` on a small caption set. (A unigram model on the 50-word synthetic
    vocabulary pruned itself to 59 mostly single-character pieces.)

    Raises
    ------
    DataError
        No non-empty caption to train on.
    """
    import sentencepiece as spm

    texts = [canonicalize_text(c) for c in captions if c.strip()]
    if not texts:
        raise DataError("cannot train a tokenizer: every caption is empty")
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(texts), model_writer=buffer, vocab_size=vocab_size,
        model_type="bpe", pad_id=0, unk_id=1, bos_id=-1, eos_id=-1,
        hard_vocab_limit=False, character_coverage=1.0, num_threads=1,
        minloglevel=2,
    )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(buffer.getvalue())
    return out_path


def text_extras(tokenizer: Tokenizer, captions: list[str]):  # noqa: ANN201 - a closure
    """Per-sample extras for :class:`StepBatches`: the caption's ``ids`` and ``paddings``."""
    ids, paddings = tokenizer(captions)
    ids_np, pad_np = ids.numpy(), paddings.numpy()

    def extras(index: int, rng: np.random.Generator) -> dict[str, Any]:
        return {"ids": ids_np[index], "paddings": pad_np[index]}

    return extras


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (b, D) of every rank in rank order (b*world, D); gradients flow back.

    Single-process: ``x`` unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def pooled_embedding(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """An LvT model's video embedding from (possibly masked) tokens: auxiliary encoder, MAP
    pooler, L2 norm. tokens (B, L, D) -> (B, D) float."""
    features = tokens
    if model.auxiliary_encoder is not None:
        features = model.auxiliary_encoder(tokens)[0]
    return l2_normalize(model.contrastive_vision_pooler(features)[:, 0])


class ContrastiveObjective(nn.Module):
    """Video-text symmetric InfoNCE over the global batch (stage 1 and LiT).

    Parameters
    ----------
    model : VideoTextModel
        The LvT model (``encode_video``, ``encode_text``).
    temperature_init : float
        Initial temperature.
    learn_temperature : bool
        Whether the temperature is trained.
    """

    def __init__(self, model: nn.Module, temperature_init: float, learn_temperature: bool) -> None:
        super().__init__()
        self.model = model
        self.logit_scale = LogitScale(temperature_init, learn_temperature)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """batch: ``video`` (b, T, S, S, 3) float, ``ids`` (b, L) int64, ``paddings`` (b, L)."""
        video = gather_with_grad(self.model.encode_video(batch["video"]))
        text = gather_with_grad(self.model.encode_text(batch["ids"], batch["paddings"]))
        scale = self.logit_scale()
        loss, acc = symmetric_infonce(video, text, scale)
        return {"loss": loss, "acc": acc, "temperature": 1.0 / scale.detach()}


def check_lvt(model: nn.Module, source: str) -> None:
    """Raise :class:`CheckpointError` unless ``model`` is a video-text (LvT) model."""
    if not hasattr(model, "encode_text") or not hasattr(model, "contrastive_vision_pooler"):
        raise CheckpointError(
            f"{source} holds a {getattr(model.config, 'family', type(model).__name__)} model; "
            "this stage needs a video-text (LvT) model -- use a prism-lvt-* variant"
        )
