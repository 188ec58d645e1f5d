"""MAP attention pooler and the video classifier (official ``AttenTokenPoolingLayer`` and
``FactorizedVideoClassifier``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from prism_science.models.encoder import (
    ClipGeometry,
    ConfigError,
    VideoEncoder,
    VideoEncoderConfig,
)
from prism_science.models.layers import (
    DotProductAttention,
    FeedForward,
    LayerNorm,
    attention_mask,
    init_weights,
)


class AttenTokenPoolingLayer(nn.Module):
    """Multi-head attention pooling with learned queries (MAP).

    One (or ``num_queries``) learned query attends over the tokens; queries are scaled per
    dimension (:class:`~prism_science.models.layers.PerDimScale`), there is no logit cap and no
    residual, and a LayerNorm follows.

    Parameters
    ----------
    dim : int
        Token width D (also the output width).
    num_heads : int
        Attention heads.
    hidden_dim : int
        Total width of the attention projections; head width = ``hidden_dim // num_heads``
        (official: D for the classifier, 4*D for the LvT contrastive pooler).
    num_queries : int
        Number of learned queries.
    """

    def __init__(self, dim: int, num_heads: int, hidden_dim: int, num_queries: int = 1) -> None:
        super().__init__()
        self.pooling_attention_query = nn.Parameter(torch.zeros(num_queries, dim))
        self.pooling_attention = DotProductAttention(
            dim, num_heads, hidden_dim=hidden_dim, per_dim_scale=True, implementation="exact"
        )
        self.pooling_attention_layer_norm = LayerNorm(dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Official-like random initialisation."""
        init_weights(self)
        q = self.pooling_attention_query
        nn.init.trunc_normal_(q, std=1.0 / math.sqrt(q.shape[0]), a=-2.0, b=2.0)

    def forward(self, tokens: torch.Tensor, paddings: torch.Tensor | None = None) -> torch.Tensor:
        """Pool ``tokens`` (B, L, D) -> (B, num_queries, D); ``paddings`` (B, L), 1 = ignore."""
        b = tokens.shape[0]
        query = self.pooling_attention_query.to(tokens.dtype)[None].expand(b, -1, -1)
        mask = attention_mask(paddings, tokens.shape[1]) if paddings is not None else None
        out = self.pooling_attention(query, tokens, mask)
        return self.pooling_attention_layer_norm(out)


@dataclass(frozen=True)
class VideoClassifierConfig(VideoEncoderConfig):
    """:class:`VideoEncoderConfig` plus the number of classes of the linear ``projection``."""

    family: ClassVar[str] = "video_classifier"

    num_classes: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            raise ConfigError(
                f"config field 'num_classes' must be a positive int, found {self.num_classes!r}"
            )

    def encoder_config(self) -> VideoEncoderConfig:
        """The encoder part of this config."""
        fields = {k: v for k, v in self.to_dict().items() if k != "num_classes"}
        return VideoEncoderConfig(**fields)


class VideoClassifier(ClipGeometry, nn.Module):
    """Video classifier: ``encoder`` -> ``atten_pooler`` (hidden D) -> linear ``projection``.

    ``model(video)`` returns the logits (B, num_classes); see :meth:`forward_intermediates`.
    """

    def __init__(self, config: VideoClassifierConfig, name: str = "custom") -> None:
        super().__init__()
        self.config = config
        self.name = name
        self.weights_sha256: str | None = None
        self.encoder = VideoEncoder(config.encoder_config(), name=name)
        self.atten_pooler = AttenTokenPoolingLayer(
            config.model_dim, config.num_heads, hidden_dim=config.model_dim
        )
        self.projection = FeedForward(config.model_dim, config.num_classes)
        init_weights(self.projection)

    def forward(
        self, video: torch.Tensor, frame_paddings: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Classify clips: video (B, T, H, W, 3) in [0, 1] -> logits (B, num_classes) float."""
        return self.forward_intermediates(video, frame_paddings, return_layers=False)["logits"]

    def forward_intermediates(
        self,
        video: torch.Tensor,
        frame_paddings: torch.Tensor | None = None,
        keep_spatial: torch.Tensor | None = None,
        return_layers: bool = True,
    ) -> dict[str, Any]:
        """The encoder's intermediates plus ``spatiotemporal_features`` (= ``tokens``),
        ``global_embeddings`` (B, D) and ``logits`` (B, num_classes)."""
        out = self.encoder.forward_intermediates(video, frame_paddings, keep_spatial,
                                                 return_layers)
        out["spatiotemporal_features"] = out["tokens"]
        # Official: the pooler sees no paddings (`paddings=None`).
        pooled = self.atten_pooler(out["tokens"], None)[:, 0]
        out["global_embeddings"] = pooled
        out["logits"] = self.projection(pooled)
        return out
