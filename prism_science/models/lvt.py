"""The LvT video-text model (official ``videoprism.encoders.FactorizedVideoCLIP``).

Video -> ``vision_encoder`` (:class:`VideoEncoder`) -> ``auxiliary_encoder`` (a plain transformer
over all T*h*w tokens, no paddings) -> ``contrastive_vision_pooler`` (MAP, hidden 4*D) -> L2 norm.
Text -> ``text_encoder`` (:class:`TextEncoder`, MLP 4*D) -> class token -> L2 norm.
Frame embeddings: the same pooler over each frame's auxiliary-encoded tokens -> (B, T, D).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from einops import rearrange
from torch import nn

from prism_science.models.encoder import (
    ClipGeometry,
    ConfigError,
    VideoEncoder,
    VideoEncoderConfig,
)
from prism_science.models.layers import VisionTransformer, init_weights, l2_normalize
from prism_science.models.pooler import AttenTokenPoolingLayer
from prism_science.models.text import TEXT_MAX_LENGTH, TextEncoder, Tokenizer


@dataclass(frozen=True)
class VideoTextConfig(VideoEncoderConfig):
    """:class:`VideoEncoderConfig` plus the auxiliary encoder and text tower fields.

    ``norm_policy`` applies to the video encoders (official: always "pre");
    ``text_norm_policy`` to the text tower (official ``norm_policy`` of FactorizedVideoCLIP).
    """

    family: ClassVar[str] = "video_text"

    num_auxiliary_layers: int = 2
    vocabulary_size: int = 32_000
    num_unimodal_layers: int = 12
    enable_causal_atten: bool = True
    text_norm_policy: str = "pre"
    text_max_length: int = TEXT_MAX_LENGTH

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("num_auxiliary_layers", "num_unimodal_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"config field {name!r} must be an int >= 0, found {value!r}")
        if not isinstance(self.vocabulary_size, int) or self.vocabulary_size < 1:
            raise ConfigError(
                f"config field 'vocabulary_size' must be a positive int, "
                f"found {self.vocabulary_size!r}"
            )

    def encoder_config(self) -> VideoEncoderConfig:
        """The video encoder part of this config."""
        names = VideoEncoderConfig.field_names()
        return VideoEncoderConfig(**{k: v for k, v in self.to_dict().items() if k in names})


class VideoTextModel(ClipGeometry, nn.Module):
    """Video-text (LvT) model: contrastive video, frame and text embeddings.

    ``model(video)`` returns the video encoder's tokens (B, T*h*w, D) like every other model;
    ``encode_video``, ``encode_frames`` and ``encode_text`` return L2-normalised embeddings
    unless ``normalize=False``. ``tokenizer`` is a :class:`Tokenizer` or None.
    """

    def __init__(self, config: VideoTextConfig, name: str = "custom") -> None:
        super().__init__()
        c = config
        self.config = config
        self.name = name
        self.weights_sha256: str | None = None
        self.tokenizer: Tokenizer | None = None
        self.vision_encoder = VideoEncoder(config.encoder_config(), name=name)
        self.auxiliary_encoder = (
            VisionTransformer(c.num_auxiliary_layers, c.model_dim, c.num_heads, c.mlp_dim,
                              c.atten_logit_cap, "pre", c.attention)
            if c.num_auxiliary_layers > 0
            else None
        )
        if self.auxiliary_encoder is not None:
            init_weights(self.auxiliary_encoder)
        self.contrastive_vision_pooler = AttenTokenPoolingLayer(
            c.model_dim, c.num_heads, hidden_dim=4 * c.model_dim
        )
        self.text_encoder = TextEncoder(
            c.vocabulary_size, c.model_dim, c.num_unimodal_layers, c.num_heads, 4 * c.model_dim,
            c.atten_logit_cap, c.text_norm_policy, c.enable_causal_atten, c.attention,
        )

    def forward(
        self, video: torch.Tensor, frame_paddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Video tokens (B, T*h*w, D) of the vision encoder (see :meth:`VideoEncoder.forward`)."""
        return self.vision_encoder(video, frame_paddings)

    def forward_intermediates(
        self,
        video: torch.Tensor,
        frame_paddings: torch.Tensor | None = None,
        keep_spatial: torch.Tensor | None = None,
        return_layers: bool = True,
        normalize: bool = True,
    ) -> dict[str, Any]:
        """The vision encoder's intermediates plus ``spatiotemporal_features`` (= tokens),
        ``video_embeddings`` (B, D) and ``frame_embeddings`` (B, T, D)."""
        out = self.vision_encoder.forward_intermediates(
            video, frame_paddings, keep_spatial, return_layers
        )
        out["spatiotemporal_features"] = out["tokens"]
        video_emb, frame_emb = self._pool(out["tokens"], out["grid"][0], normalize, frames=True)
        out["video_embeddings"] = video_emb
        out["frame_embeddings"] = frame_emb
        return out

    def _auxiliary(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.auxiliary_encoder is None:
            return tokens
        # Official: the auxiliary encoder gets no paddings.
        return self.auxiliary_encoder(tokens)[0]

    def _pool(
        self, tokens: torch.Tensor, num_frames: int, normalize: bool, frames: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self._auxiliary(tokens)
        video = self.contrastive_vision_pooler(features)[:, 0]
        frame = None
        if frames:
            per_frame = rearrange(features, "b (t n) d -> (b t) n d", t=num_frames)
            frame = self.contrastive_vision_pooler(per_frame)[:, 0]
            frame = rearrange(frame, "(b t) d -> b t d", t=num_frames)
            if normalize:
                frame = l2_normalize(frame)
        if normalize:
            video = l2_normalize(video)
        return video, frame

    def encode_video(
        self,
        video: torch.Tensor,
        frame_paddings: torch.Tensor | None = None,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Contrastive video embeddings: video (B, T, H, W, 3) in [0, 1] -> (B, D) float."""
        tokens = self.vision_encoder(video, frame_paddings)
        return self._pool(tokens, video.shape[1], normalize, frames=False)[0]

    def encode_frames(
        self,
        video: torch.Tensor,
        frame_paddings: torch.Tensor | None = None,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Per-frame embeddings: video (B, T, H, W, 3) in [0, 1] -> (B, T, D) float."""
        tokens = self.vision_encoder(video, frame_paddings)
        return self._pool(tokens, video.shape[1], normalize, frames=True)[1]

    def encode_text(
        self,
        ids: torch.Tensor,
        paddings: torch.Tensor | None = None,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Text embeddings: ids (B, L) int, paddings (B, L) (1.0 = pad; default: ids == 0)
        -> (B, D) float (the output at the appended class token)."""
        if paddings is None and isinstance(ids, torch.Tensor):
            paddings = (ids == 0).float()
        features = self.text_encoder(ids, paddings)
        emb = features[:, -1]
        return l2_normalize(emb) if normalize else emb

    def encode_texts(self, texts: list[str] | str, normalize: bool = True) -> torch.Tensor:
        """Tokenize with :attr:`tokenizer` and encode: texts -> (B, D) float."""
        if self.tokenizer is None:
            raise ConfigError(
                f"model {self.name!r} has no tokenizer; put the SentencePiece model file as "
                "tokenizer.model in its weights folder or set model.tokenizer = "
                "Tokenizer(path)"
            )
        ids, paddings = self.tokenizer(texts)
        device = self.text_encoder.cls_emb.device
        return self.encode_text(ids.to(device), paddings.to(device), normalize)
