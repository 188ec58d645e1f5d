"""Stage 2: masked video modeling with global-local distillation (VideoPrism Sec. 3.2).

A frozen stage-1 LvT model is the teacher. The student (same architecture, initialised from the
teacher unless configured otherwise) encodes only the visible tubes of a tube-masked clip; its
output tokens are randomly shuffled, placed on the visible slots of the full token grid, mask
tokens fill the masked slots, and a shallow decoder -- which adds its position embeddings after
the shuffle -- predicts the teacher's token embeddings at every position (token distillation).
The student's pooled embedding (auxiliary encoder + MAP pooler over its visible tokens) is
pulled to the teacher's (global distillation). Shuffling and both losses can be switched off
for ablations (``token_shuffle``, ``token_distill``, ``global_distill``). Token targets are
standardised per clip and channel (``normalize_targets``); a teacher trained on one-frame clips
encodes each frame on its own (``teacher_per_frame``). Our optional motion target
(``motion_weight``, not in VideoPrism) adds a decoder head predicting each token's patch of the
absolute frame difference.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prism_science.errors import CheckpointError, ConfigError
from prism_science.models import build_model, get_config, load_model, save_model
from prism_science.models.layers import LayerNorm, VisionTransformer, init_weights
from prism_training.common import (
    check_lvt,
    crop_entries,
    make_clip_source,
    pooled_embedding,
    resolve_weights,
)
from prism_training.config import DEFAULT_WORKDIR, Stage2Config, resolve_config
from prism_training.data import ManifestEntry, StepBatches, list_videos, read_manifest
from prism_training.engine import setup_distributed, train
from prism_training.losses import (
    frame_difference_patches,
    global_distillation_loss,
    motion_target_loss,
    normalize_token_targets,
    token_distillation_loss,
)
from prism_training.masking import (
    num_kept,
    shuffle_permutation,
    tube_mask,
    visible_token_positions,
)

__all__ = [
    "MaskedTokenDecoder",
    "Stage2Objective",
    "check_architecture",
    "load_teacher",
    "main",
    "place_tokens",
]

logger = logging.getLogger(__name__)


def place_tokens(
    tokens: torch.Tensor, positions: torch.Tensor, perm: torch.Tensor, mask_token: torch.Tensor,
    length: int,
) -> torch.Tensor:
    """Scatter (shuffled) visible tokens onto the full token grid; mask tokens elsewhere.

    Parameters
    ----------
    tokens : torch.Tensor
        (B, V, C) the student's visible tokens, in the order of ``positions``.
    positions : torch.Tensor
        (B, V) int64 grid position of each visible token.
    perm : torch.Tensor
        (B, V) int64 permutation: slot ``positions[b, i]`` receives ``tokens[b, perm[b, i]]``
        (the identity keeps every token at its own position).
    mask_token : torch.Tensor
        (C,) filler of the masked positions.
    length : int
        Full grid length L = T * n.

    Returns
    -------
    torch.Tensor
        (B, L, C).
    """
    b, _, c = tokens.shape
    shuffled = torch.gather(tokens, 1, perm[..., None].expand(-1, -1, c))
    grid = mask_token.to(tokens.dtype).expand(b, length, c).clone()
    return grid.scatter(1, positions[..., None].expand(-1, -1, c), shuffled)


class MaskedTokenDecoder(nn.Module):
    """Shallow transformer decoder predicting the teacher's token of every grid position.

    Position embeddings (learned, factorised: spatial (n, C) + temporal (T, C)) are added AFTER
    the student's tokens are shuffled and placed, so they describe the slot, not the token.

    Parameters
    ----------
    in_dim, out_dim : int
        Student and teacher token widths.
    dim, num_layers, num_heads : int
        Decoder width, depth, heads.
    num_frames, num_patches : int
        Grid T and n (patches per frame).
    motion_dim : int
        0, or the width of a second head on the same decoder output that predicts each
        position's motion target (``P*P*3`` pixels of frame difference).
    """

    def __init__(self, in_dim: int, out_dim: int, dim: int, num_layers: int, num_heads: int,
                 num_frames: int, num_patches: int, motion_dim: int = 0) -> None:
        super().__init__()
        self.num_frames = num_frames
        self.num_patches = num_patches
        self.embed = nn.Linear(in_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        self.spatial_pos = nn.Parameter(torch.zeros(num_patches, dim))
        self.temporal_pos = nn.Parameter(torch.zeros(num_frames, dim))
        self.blocks = VisionTransformer(num_layers, dim, num_heads, 4 * dim)
        self.norm = LayerNorm(dim)
        self.head = nn.Linear(dim, out_dim)
        self.motion_head = nn.Linear(dim, motion_dim) if motion_dim else None
        init_weights(self)
        for p in (self.mask_token, self.spatial_pos, self.temporal_pos):
            nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        if self.motion_head is not None:  # start at "no motion" (loss near 1), not at noise
            nn.init.zeros_(self.motion_head.weight)
            nn.init.zeros_(self.motion_head.bias)

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor,
                perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens (B, V, in_dim), positions/perm (B, V) int64 -> predictions (B, T*n, out_dim)
        and, with a motion head, motion predictions (B, T*n, motion_dim) (else None)."""
        length = self.num_frames * self.num_patches
        x = place_tokens(self.embed(tokens), positions, perm, self.mask_token, length)
        pos = (self.temporal_pos[:, None, :] + self.spatial_pos[None, :, :]).reshape(length, -1)
        x = x + pos.to(x.dtype)  # after the shuffle (VideoPrism's token shuffling)
        x, _ = self.blocks(x)
        x = self.norm(x)
        return self.head(x), (self.motion_head(x) if self.motion_head is not None else None)


def check_architecture(model: nn.Module, expected_name: str, source: str) -> None:
    """Raise :class:`CheckpointError` unless ``model``'s video encoder is ``expected_name``'s.

    Only the video encoder must match (patch, frames, resolution, widths, depths); text
    vocabularies may differ.
    """
    registered = get_config(expected_name)
    expected = registered.encoder_config() if hasattr(registered, "encoder_config") else registered
    found = model.config.encoder_config()
    if expected != found:
        diff = {k: (v, getattr(found, k)) for k, v in expected.to_dict().items()
                if getattr(found, k) != v}
        raise CheckpointError(
            f"{source} has another video encoder architecture than model {expected_name!r}: "
            f"differing fields (expected, found) {diff}; point it at a run of {expected_name} "
            "or set model= to its variant"
        )


def load_teacher(cfg: Stage2Config) -> nn.Module:
    """Load the frozen stage-1 teacher and check it has the architecture of ``cfg.model``.

    Raises
    ------
    CheckpointError
        The teacher folder is missing/corrupt, not an LvT model, or its video encoder differs
        from ``cfg.model``'s (the message shows both).
    """
    if not cfg.teacher:
        raise ConfigError("teacher is empty; set teacher=STAGE1_RUN_DIR (or its final/ folder)")
    folder = resolve_weights(cfg.teacher, "teacher")
    teacher = load_model(folder)
    check_lvt(teacher, f"teacher {folder}")
    check_architecture(teacher, cfg.model, f"teacher {folder}")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


class Stage2Objective(nn.Module):
    """Student + decoder + frozen teacher; ``forward(batch)`` returns the stage-2 losses.

    batch: ``video`` (b, T, S, S, 3) float in [0, 1], ``keep`` (b, K) int64 kept patch
    positions, ``perm`` (b, T*K) int64 token shuffle.
    """

    def __init__(self, cfg: Stage2Config, teacher: nn.Module, num_frames: int, size: int) -> None:
        super().__init__()
        if not (cfg.token_distill or cfg.global_distill):
            raise ConfigError("token_distill and global_distill are both off: nothing to train; "
                              "switch one on")
        if cfg.motion_weight and not cfg.token_distill:
            raise ConfigError("motion_weight needs the decoder of token_distill; switch "
                              "token_distill on or set motion_weight=0")
        self.cfg = cfg
        self.teacher = teacher
        torch.manual_seed(cfg.seed)
        student = build_model(teacher.config, name=f"{cfg.model}-stage2")
        if cfg.init_student_from_teacher:
            student.load_state_dict(teacher.state_dict())
        student.tokenizer = teacher.tokenizer
        for p in student.text_encoder.parameters():
            p.requires_grad_(False)
        if not cfg.global_distill:
            heads = [student.contrastive_vision_pooler]
            if student.auxiliary_encoder is not None:
                heads.append(student.auxiliary_encoder)
            for head in heads:
                for p in head.parameters():
                    p.requires_grad_(False)
        self.student = student.train()
        grid = size // student.patch_size
        self.num_frames = num_frames
        self.num_patches = grid * grid
        dim = teacher.model_dim
        self.decoder = None
        if cfg.token_distill:
            self.decoder = MaskedTokenDecoder(
                student.model_dim, dim, cfg.decoder_dim or dim, cfg.decoder_layers,
                cfg.decoder_heads, num_frames, self.num_patches,
                motion_dim=3 * student.patch_size ** 2 if cfg.motion_weight else 0)

    def train(self, mode: bool = True) -> Stage2Objective:
        super().train(mode)
        self.teacher.eval()  # the teacher stays in inference mode
        return self

    def teacher_tokens(self, video: torch.Tensor) -> torch.Tensor:
        """The teacher's tokens of the full clip (b, T*n, D); with ``teacher_per_frame`` each
        frame is encoded as a one-frame video, so frame t's tokens see only frame t."""
        if not self.cfg.teacher_per_frame:
            return self.teacher(video)
        b, t = video.shape[:2]
        tokens = self.teacher(video.reshape(b * t, 1, *video.shape[2:]))  # (b*T, n, D)
        return tokens.reshape(b, t * tokens.shape[1], tokens.shape[-1])

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        video, keep, perm = batch["video"], batch["keep"], batch["perm"]
        with torch.no_grad():
            target_tokens = self.teacher_tokens(video)  # (b, T*n, D)
            target_global = pooled_embedding(self.teacher, target_tokens)
            if self.cfg.normalize_targets:
                target_tokens = normalize_token_targets(target_tokens)
        tokens = self.student.vision_encoder.forward_intermediates(
            video, keep_spatial=keep, return_layers=False)["tokens"]  # (b, T*K, D)
        out: dict[str, Any] = {}
        loss = tokens.new_zeros(())
        if self.decoder is not None:
            positions = visible_token_positions(keep, video.shape[1], self.num_patches)
            pred, motion_pred = self.decoder(tokens, positions, perm)
            out["token_loss"] = token_distillation_loss(pred, target_tokens)
            loss = loss + out["token_loss"]
            if motion_pred is not None:
                out["motion_loss"] = motion_target_loss(
                    motion_pred, frame_difference_patches(video, self.student.patch_size))
                loss = loss + self.cfg.motion_weight * out["motion_loss"]
        if self.cfg.global_distill:
            out["global_loss"] = global_distillation_loss(
                pooled_embedding(self.student, tokens), target_global)
            loss = loss + self.cfg.global_weight * out["global_loss"]
        out["loss"] = loss
        return out


def stage2_entries(cfg: Stage2Config) -> list[ManifestEntry]:
    """Whole-frame videos of a stage-2 run: every video under the ``video_dir`` folders, then
    under ``sample_data``, then the rows of ``manifest`` (empty when only ``crop_manifest``
    gives data).

    Raises
    ------
    ConfigError
        None of the three nor ``crop_manifest`` is set, or ``sample_data`` names a folder that
        does not exist.
    """
    entries = []
    for folder in filter(None, (f.strip() for f in cfg.video_dir.split(","))):
        entries += list_videos(folder)
    if cfg.sample_data:
        if not Path(cfg.sample_data).is_dir():
            raise ConfigError(
                f"sample_data {cfg.sample_data} is not a folder; give the sample_data/ folder of "
                "a clone of prism-science (--sample-data DIR), or set sample_data= (empty) to "
                "train without the sample clips")
        entries += list_videos(cfg.sample_data)
    if cfg.manifest:
        entries += read_manifest(cfg.manifest, require_caption=False)
    if not entries and not cfg.crop_manifest:
        raise ConfigError("no data: set video_dir=FOLDER[,FOLDER], manifest=PATH and/or "
                          "crop_manifest=PATH[,PATH]")
    return entries


def main(cfg: Stage2Config, resume: bool = False,
         workdir: str | Path = DEFAULT_WORKDIR) -> dict[str, Any]:
    """Run stage 2 as configured; returns the engine's summary (see :func:`engine.train`).

    Relative paths of ``cfg`` are taken relative to ``workdir`` (:func:`resolve_config`).
    ``final/`` holds an LvT weights folder: the student's video encoder, its pooler, and the
    teacher's text tower and tokenizer.
    """
    cfg = resolve_config(cfg, workdir)
    if not cfg.out_dir:
        raise ConfigError("out_dir is empty; set --out RUN_DIR")
    if not 0.0 <= cfg.mask_ratio < 1.0:
        raise ConfigError(f"mask_ratio must lie in [0, 1), found {cfg.mask_ratio}")
    info = setup_distributed()
    teacher = load_teacher(cfg)
    num_frames = cfg.num_frames or teacher.num_frames
    size = cfg.image_size or teacher.image_size
    source = make_clip_source(cfg, stage2_entries(cfg), num_frames, size,
                              crop_entries(cfg))
    objective = Stage2Objective(cfg, teacher, num_frames, size)
    n = objective.num_patches
    tokens_visible = num_frames * num_kept(n, cfg.mask_ratio)

    def extras(index: int, rng: np.random.Generator) -> dict[str, Any]:
        return {"keep": tube_mask(rng, n, cfg.mask_ratio),
                "perm": shuffle_permutation(rng, tokens_visible, cfg.token_shuffle)}

    def make_batches(first: int, last: int, rank: int, world: int) -> StepBatches:
        return StepBatches(source, cfg.batch_size, cfg.seed, first, last, rank, world, extras,
                           windows_per_clip=cfg.windows_per_clip)

    def export(obj: nn.Module, folder: Path) -> None:
        save_model(obj.student, folder)

    return train(cfg, objective, make_batches, Path(cfg.out_dir), export, resume, info)
