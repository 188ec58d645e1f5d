"""VideoPrism-compatible models in PyTorch: encoder, classifier, video-text (LvT), registry,
weights folders and official checkpoint conversion.

Public API (see docs/ARCHITECTURE.md and docs/models.md)::

    model = load_model("prism-tiny-p16-f16-r128")     # or "default", or a weights folder
    model = load_model("videoprism-v1-base")          # official weights: Hub -> cache, once
    tokens = model(video)                             # (B, T, H, W, 3) in [0, 1] -> (B, T*h*w, D)
    out = model.forward_intermediates(video, keep_spatial=idx)
"""

from __future__ import annotations

from prism_science.models.encoder import (
    ConfigError,
    VideoEncoder,
    VideoEncoderConfig,
    VideoInputError,
)
from prism_science.models.hub import fetch_official
from prism_science.models.lvt import VideoTextConfig, VideoTextModel
from prism_science.models.pooler import (
    AttenTokenPoolingLayer,
    VideoClassifier,
    VideoClassifierConfig,
)
from prism_science.models.registry import (
    ALIASES,
    OFFICIAL_WEIGHTS,
    REGISTRY,
    build_model,
    count_params,
    get_config,
    registered_names,
    resolve_name,
)
from prism_science.models.text import TextEncoder, TextInputError, Tokenizer, canonicalize_text
from prism_science.models.weights import (
    cache_dir,
    find_weights,
    list_models,
    load_model,
    model_table,
    save_model,
    weights_identity,
)

__all__ = [
    "ALIASES",
    "OFFICIAL_WEIGHTS",
    "REGISTRY",
    "AttenTokenPoolingLayer",
    "ConfigError",
    "TextEncoder",
    "TextInputError",
    "Tokenizer",
    "VideoClassifier",
    "VideoClassifierConfig",
    "VideoEncoder",
    "VideoEncoderConfig",
    "VideoInputError",
    "VideoTextConfig",
    "VideoTextModel",
    "build_model",
    "cache_dir",
    "canonicalize_text",
    "count_params",
    "fetch_official",
    "find_weights",
    "get_config",
    "list_models",
    "load_model",
    "model_table",
    "registered_names",
    "resolve_name",
    "save_model",
    "weights_identity",
]
