"""Stage 1: video-text contrastive training of an LvT model (VideoPrism Sec. 3.1).

Video embeddings come from the model's auxiliary encoder + MAP pooler, text embeddings from its
text tower; the loss is the symmetric InfoNCE over the (global) batch with a learnable
temperature. Image-text pairs (``image_manifest``) join as one-frame videos in their own
batches, drawn on a configured share of the steps. A SentencePiece tokenizer is trained on the
captions unless one is given, and saved as ``tokenizer.model`` beside the final weights.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prism_science.errors import ConfigError
from prism_science.models import build_model, load_model, save_model
from prism_science.models.text import Tokenizer
from prism_training.common import (
    ContrastiveObjective,
    check_lvt,
    make_clip_source,
    resolve_weights,
    start_captioned_run,
    text_extras,
    train_tokenizer,
)
from prism_training.config import DEFAULT_WORKDIR, Stage1Config, resolve_config
from prism_training.data import StepBatches, read_manifest
from prism_training.engine import train

__all__ = ["MixedBatches", "build_text_model", "main"]

logger = logging.getLogger(__name__)


class MixedBatches(torch.utils.data.Dataset):
    """Video batches, with image batches (one-frame videos) on a ``fraction`` of the steps.

    Whether micro-batch ``m`` is an image batch depends only on ``(seed, m)``, so every rank
    and every resumed run makes the same choice.
    """

    def __init__(self, videos: StepBatches, images: StepBatches | None, fraction: float,
                 seed: int) -> None:
        self.videos = videos
        self.images = images
        self.fraction = fraction if images is not None else 0.0
        self.seed = seed

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, k: int) -> dict[str, Any]:
        micro = self.videos.first_step + k
        if self.fraction > 0 and np.random.default_rng([self.seed, micro, 99]).random() < \
                self.fraction:
            return self.images.batch(micro)
        return self.videos.batch(micro)


def build_text_model(
    cfg: Stage1Config, captions: list[str], run_dir: Path, init_from: str = ""
) -> nn.Module:
    """The LvT model to train, with its tokenizer attached (``model.tokenizer``).

    From ``init_from`` (a weights folder, e.g. a converted checkpoint; its tokenizer is used)
    or built from ``cfg.model`` with the vocabulary of ``cfg.tokenizer`` or of a SentencePiece
    model trained on ``captions`` (written to ``run_dir/tokenizer.model``).

    Raises
    ------
    CheckpointError
        ``init_from`` is not an LvT weights folder.
    ConfigError
        ``init_from`` has no tokenizer and none is configured.
    """
    if init_from:
        folder = resolve_weights(init_from, "init_from")
        model = load_model(folder)
        check_lvt(model, str(folder))
        if cfg.tokenizer:
            model.tokenizer = Tokenizer(cfg.tokenizer, max_length=cfg.max_text_len)
        if model.tokenizer is None:
            raise ConfigError(f"init_from {folder} has no tokenizer.model; set tokenizer=PATH")
        return model.train()
    if cfg.tokenizer:
        tok_path = Path(cfg.tokenizer)
    else:
        tok_path = train_tokenizer(captions, run_dir / "tokenizer.model", cfg.vocab_size)
    tokenizer = Tokenizer(tok_path, max_length=cfg.max_text_len)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, vocabulary_size=tokenizer.vocab_size,
                        text_max_length=cfg.max_text_len)
    check_lvt(model, cfg.model)
    model.tokenizer = tokenizer
    model.name = f"{cfg.model}-stage1"
    return model.train()


def main(cfg: Stage1Config, resume: bool = False,
         workdir: str | Path = DEFAULT_WORKDIR) -> dict[str, Any]:
    """Run stage 1 as configured; returns the engine's summary (see :func:`engine.train`).

    Relative paths of ``cfg`` are taken relative to ``workdir`` (:func:`resolve_config`).
    Writes ``train_config.json``, ``tokenizer.model``, ``checkpoint.pt``, ``log.jsonl`` and the
    final LvT weights folder ``final/`` into ``cfg.out_dir``.
    """
    cfg = resolve_config(cfg, workdir)
    info, run_dir, entries, crops = start_captioned_run(cfg)
    image_entries = read_manifest(cfg.image_manifest) if cfg.image_manifest else []
    tok_file = run_dir / "tokenizer.model"
    tokenizer_cfg = cfg
    if resume and not cfg.tokenizer and not cfg.init_from and tok_file.is_file():
        tokenizer_cfg = dataclasses.replace(cfg, tokenizer=str(tok_file))
    model = build_text_model(tokenizer_cfg,
                             [e.caption for e in [*entries, *crops, *image_entries]],
                             run_dir, cfg.init_from)
    tokenizer = model.tokenizer
    num_frames = cfg.num_frames or model.num_frames
    size = cfg.image_size or model.image_size
    source = make_clip_source(cfg, entries, num_frames, size, crops)
    captions = [c.entry.caption for c in source.clips]
    image_source = make_clip_source(cfg, image_entries, 1, size) if image_entries else None
    objective = ContrastiveObjective(model, cfg.temperature_init, cfg.learn_temperature)

    def make_batches(first: int, last: int, rank: int, world: int) -> torch.utils.data.Dataset:
        videos = StepBatches(source, cfg.batch_size, cfg.seed, first, last, rank, world,
                             text_extras(tokenizer, captions),
                             windows_per_clip=cfg.windows_per_clip)
        images = None
        if image_source is not None:
            image_caps = [c.entry.caption for c in image_source.clips]
            images = StepBatches(image_source, cfg.batch_size, cfg.seed, first, last, rank, world,
                                 text_extras(tokenizer, image_caps), salt=1)
        return MixedBatches(videos, images, cfg.image_fraction, cfg.seed)

    def export(obj: nn.Module, folder: Path) -> None:
        save_model(obj.model, folder)

    return train(cfg, objective, make_batches, run_dir, export, resume, info)
