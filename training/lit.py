"""Stage 3 (LiT, "locked-image tuning"): train the text side against a locked video encoder.

The stage-2 video encoder is frozen (its token features -- what probes and feature extraction
use -- stay exactly the stage-2 ones); the auxiliary encoder, MAP pooler and text tower are
trained with the symmetric InfoNCE loss of stage 1, so the final model answers text queries
(zero-shot search). By default they start from the stage-2 folder's own heads: its pooler was
distilled towards the stage-1 teacher's embedding space, in which the stage-1 text tower lives.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

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
from prism_training.config import DEFAULT_WORKDIR, LiTConfig, resolve_config
from prism_training.data import StepBatches
from prism_training.engine import train

__all__ = ["build_lit_model", "main"]

logger = logging.getLogger(__name__)


def build_lit_model(cfg: LiTConfig, captions: list[str], run_dir: Path) -> nn.Module:
    """The LvT model of a LiT run: the locked encoder of ``cfg.encoder`` plus trainable heads.

    The heads (auxiliary encoder, pooler, text tower) and tokenizer come from the encoder's
    folder unless ``reset_heads`` is set, a ``tokenizer`` is configured, or the folder has
    none; a new tokenizer is then trained on ``captions`` and the heads start at random.

    Raises
    ------
    CheckpointError
        ``cfg.encoder`` is not an LvT weights folder, or of another architecture than
        ``cfg.model``.
    """
    if not cfg.encoder:
        raise ConfigError("encoder is empty; set encoder=STAGE2_RUN_DIR (or its final/ folder)")
    folder = resolve_weights(cfg.encoder, "encoder")
    source = load_model(folder)
    check_lvt(source, f"encoder {folder}")
    from prism_training.stage2 import check_architecture

    check_architecture(source, cfg.model, f"encoder {folder}")
    keep_heads = not cfg.reset_heads and not cfg.tokenizer and source.tokenizer is not None
    if keep_heads:
        model = source
        model.tokenizer = Tokenizer(source.tokenizer.model_path, max_length=cfg.max_text_len)
    else:
        tok_path = Path(cfg.tokenizer) if cfg.tokenizer else train_tokenizer(
            captions, run_dir / "tokenizer.model", cfg.vocab_size)
        tokenizer = Tokenizer(tok_path, max_length=cfg.max_text_len)
        torch.manual_seed(cfg.seed)
        model = build_model(source.config.replace(vocabulary_size=tokenizer.vocab_size,
                                                  text_max_length=cfg.max_text_len))
        model.vision_encoder.load_state_dict(source.vision_encoder.state_dict())
        model.tokenizer = tokenizer
    model.name = f"{cfg.model}-lit"
    for p in model.vision_encoder.parameters():
        p.requires_grad_(False)
    return model.train()


class _LockedContrastive(ContrastiveObjective):
    """:class:`ContrastiveObjective` whose video encoder stays in eval mode (it is locked)."""

    def train(self, mode: bool = True) -> _LockedContrastive:
        super().train(mode)
        self.model.vision_encoder.eval()
        return self


def main(cfg: LiTConfig, resume: bool = False,
         workdir: str | Path = DEFAULT_WORKDIR) -> dict[str, Any]:
    """Run LiT as configured; returns the engine's summary (see :func:`engine.train`).

    Relative paths of ``cfg`` are taken relative to ``workdir`` (:func:`resolve_config`).
    ``final/`` holds the LvT weights folder (encoder bit-identical to ``cfg.encoder``'s).
    """
    cfg = resolve_config(cfg, workdir)
    info, run_dir, entries, crops = start_captioned_run(cfg)
    model = build_lit_model(cfg, [e.caption for e in [*entries, *crops]], run_dir)
    num_frames = cfg.num_frames or model.num_frames
    size = cfg.image_size or model.image_size
    source = make_clip_source(cfg, entries, num_frames, size, crops)
    captions = [c.entry.caption for c in source.clips]
    objective = _LockedContrastive(model, cfg.temperature_init, cfg.learn_temperature)
    tokenizer = model.tokenizer

    def make_batches(first: int, last: int, rank: int, world: int) -> StepBatches:
        return StepBatches(source, cfg.batch_size, cfg.seed, first, last, rank, world,
                           text_extras(tokenizer, captions),
                           windows_per_clip=cfg.windows_per_clip)

    def export(obj: nn.Module, folder: Path) -> None:
        save_model(obj.model, folder)

    return train(cfg, objective, make_batches, run_dir, export, resume, info)
