"""Losses of the three stages (no losses live inside the models).

* :func:`symmetric_infonce`: video-text contrastive loss over the batch with a learnable
  temperature (stage 1 and LiT), as CLIP / VideoPrism stage 1.
* :func:`token_distillation_loss`: stage 2's masked-token distillation, 1 - cosine between the
  decoder's predictions and the frozen teacher's token embeddings at every position.
* :func:`normalize_token_targets`: per-clip, per-channel standardisation of the teacher's
  tokens before the token loss (``normalize_targets``).
* :func:`global_distillation_loss`: stage 2's global distillation, 1 - cosine between the
  student's pooled video embedding and the teacher's.
* :func:`frame_difference_patches` and :func:`motion_target_loss`: our optional stage-2 motion
  target (``motion_weight``, not in VideoPrism): the decoder also predicts every token's patch
  of the absolute frame difference, as MotionMAE's frame-difference targets.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

__all__ = [
    "LogitScale",
    "frame_difference_patches",
    "global_distillation_loss",
    "motion_target_loss",
    "normalize_token_targets",
    "symmetric_infonce",
    "token_distillation_loss",
]


class LogitScale(nn.Module):
    """Learnable inverse temperature, stored as a log and clamped to at most 100 (as CLIP).

    Parameters
    ----------
    temperature_init : float
        Initial temperature (0.07 in CLIP).
    learnable : bool
        Whether the temperature is trained.
    """

    def __init__(self, temperature_init: float = 0.07, learnable: bool = True) -> None:
        super().__init__()
        value = torch.tensor(math.log(1.0 / temperature_init))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    def forward(self) -> torch.Tensor:
        """The current scale 1 / temperature (a scalar tensor)."""
        return self.log_scale.clamp(max=math.log(100.0)).exp()


def symmetric_infonce(
    video_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE: mean of video->text and text->video cross-entropies.

    Parameters
    ----------
    video_emb, text_emb : torch.Tensor
        (B, D) L2-normalised embeddings; row i of each is a positive pair.
    logit_scale : torch.Tensor
        Scalar inverse temperature.

    Returns
    -------
    loss : torch.Tensor
        Scalar float32.
    accuracy : torch.Tensor
        Scalar, the fraction of rows (both directions) whose positive has the highest logit.
    """
    logits = logit_scale * video_emb.float() @ text_emb.float().t()  # (B, B)
    target = torch.arange(logits.shape[0], device=logits.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
    with torch.no_grad():
        acc = 0.5 * ((logits.argmax(1) == target).float().mean()
                     + (logits.argmax(0) == target).float().mean())
    return loss, acc


def token_distillation_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of 1 - cosine(prediction, target).

    Parameters
    ----------
    prediction : torch.Tensor
        (B, L, D) the decoder's outputs, one per position of the full token grid.
    target : torch.Tensor
        (B, L, D) the teacher's tokens at the same positions (no gradient flows into it).

    Returns
    -------
    torch.Tensor
        Scalar float32 in [0, 2].
    """
    cos = F.cosine_similarity(prediction.float(), target.detach().float(), dim=-1)
    return (1.0 - cos).mean()


def normalize_token_targets(tokens: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Standardise each channel of each clip over its token grid: (B, L, D) -> (B, L, D).

    Like data2vec's instance-normalised targets: what every token of a clip shares (background,
    the clip's overall look) is removed, so the distillation target is what is particular to
    each position and frame.
    """
    tokens = tokens.float()
    mean = tokens.mean(dim=1, keepdim=True)
    var = tokens.var(dim=1, keepdim=True, unbiased=False)
    return (tokens - mean) / torch.sqrt(var + eps)


def frame_difference_patches(video: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Motion-energy target of every token: (B, T, S, S, 3) -> (B, T*n, P*P*3).

    Each token's patch of the absolute difference between its frame and the previous one (zero
    in the first frame), in the encoder's token order (frame-major, patches row by row).
    """
    video = video.float()
    diff = (video - torch.cat([video[:, :1], video[:, :-1]], dim=1)).abs()
    return rearrange(diff, "b t (h p) (w q) c -> b (t h w) (p q c)", p=patch_size, q=patch_size)


def motion_target_loss(prediction: torch.Tensor, target: torch.Tensor,
                       eps: float = 1e-6) -> torch.Tensor:
    """Mean squared error to the target standardised over the batch (1: predicting its mean).

    prediction, target (B, L, P*P*3) -> scalar float32. The prediction lives in the
    standardised units: raw frame differences average a few thousandths, far below the size
    of an optimiser step on a unit-scale output.
    """
    target = target.detach().float()
    standardised = (target - target.mean()) / torch.sqrt(target.var(unbiased=False) + eps)
    return F.mse_loss(prediction.float(), standardised)


def global_distillation_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """1 - cosine between pooled embeddings: student (B, D), teacher (B, D) -> scalar float32."""
    cos = F.cosine_similarity(student.float(), teacher.detach().float(), dim=-1)
    return (1.0 - cos).mean()
