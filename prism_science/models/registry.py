"""Named model variants and :func:`build_model`.

Every variant is a frozen config built from a base with :func:`dataclasses.replace`; entries are
never mutated. Names say family, size, patch (p), frames (f) and resolution (r).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from torch import nn

from prism_science.errors import ConfigError
from prism_science.models.encoder import VideoEncoder, VideoEncoderConfig
from prism_science.models.lvt import VideoTextConfig, VideoTextModel
from prism_science.models.pooler import VideoClassifier, VideoClassifierConfig

logger = logging.getLogger(__name__)

# family -> (config class, model class)
FAMILIES: dict[str, tuple[type[VideoEncoderConfig], type[nn.Module]]] = {
    VideoEncoderConfig.family: (VideoEncoderConfig, VideoEncoder),
    VideoClassifierConfig.family: (VideoClassifierConfig, VideoClassifier),
    VideoTextConfig.family: (VideoTextConfig, VideoTextModel),
}

# Official v1 configs (videoprism.models.CONFIGS), atten_logit_cap 50.
_V1_BASE = VideoEncoderConfig(
    patch_size=18, num_frames=16, image_size=288, model_dim=768, num_spatial_layers=12,
    num_temporal_layers=4, num_heads=12, mlp_dim=3072, atten_logit_cap=50.0,
)
_V1_LARGE = dataclasses.replace(
    _V1_BASE, num_frames=8, model_dim=1024, num_spatial_layers=24, num_heads=16, mlp_dim=4096
)
_LVT_BASE = VideoTextConfig(**_V1_BASE.to_dict(), num_auxiliary_layers=2,
                            vocabulary_size=32_000, num_unimodal_layers=12)
_LVT_LARGE = VideoTextConfig(**_V1_LARGE.to_dict(), num_auxiliary_layers=2,
                             vocabulary_size=32_000, num_unimodal_layers=12)

# CPU variants: widths chosen by measuring frames/s on a 2-core machine (docs/models.md).
# They use no logit cap, so the fused SDPA path ("fast") computes exactly their semantics.
_TINY = VideoEncoderConfig(
    patch_size=16, num_frames=16, image_size=128, model_dim=192, num_spatial_layers=4,
    num_temporal_layers=2, num_heads=3, mlp_dim=768, atten_logit_cap=0.0, attention="fast",
)
_SMALL = dataclasses.replace(
    _TINY, image_size=160, model_dim=384, num_spatial_layers=8, num_heads=6, mlp_dim=1536
)
_LVT_TINY = VideoTextConfig(**_TINY.to_dict(), num_auxiliary_layers=1,
                            vocabulary_size=32_000, num_unimodal_layers=4)

# Test variants: tiny enough for unit tests.
_TEST = VideoEncoderConfig(
    patch_size=8, num_frames=4, image_size=32, model_dim=32, num_spatial_layers=2,
    num_temporal_layers=2, num_heads=4, mlp_dim=64, atten_logit_cap=50.0,
)
_LVT_TEST = VideoTextConfig(**_TEST.to_dict(), num_auxiliary_layers=2, vocabulary_size=128,
                            num_unimodal_layers=2)

REGISTRY: dict[str, VideoEncoderConfig] = {
    "videoprism-v1-base-p18-f16-r288": _V1_BASE,
    "videoprism-v1-large-p18-f8-r288": _V1_LARGE,
    "videoprism-lvt-v1-base-p18-f16-r288": _LVT_BASE,
    "videoprism-lvt-v1-large-p18-f8-r288": _LVT_LARGE,
    "prism-tiny-p16-f16-r128": _TINY,
    "prism-small-p16-f16-r160": _SMALL,
    "prism-lvt-tiny-p16-f16-r128": _LVT_TINY,
    "prism-test-p8-f4-r32": _TEST,
    "prism-lvt-test-p8-f4-r32": _LVT_TEST,
}


@dataclasses.dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face Hub model repository, at a pinned revision."""

    repo_id: str
    filename: str
    # A commit hash pins the bytes; "main" follows the repository (see OFFICIAL_REVISION).
    revision: str
    # Expected sha256 of the file; None where unknown: the first download records it
    # (prism_science.models.hub) and later downloads are checked against the record.
    sha256: str | None = None


@dataclasses.dataclass(frozen=True)
class UrlFile:
    """A file at a plain HTTPS address (e.g. a public Google Cloud Storage object)."""

    url: str
    sha256: str | None = None

    @property
    def filename(self) -> str:
        """The last part of the address."""
        return self.url.rstrip("/").rpartition("/")[2]


# The repositories and file names of the official loader (google-deepmind/videoprism,
# videoprism/models.py CHECKPOINTS, read at commit d481d91). TODO: pin a commit hash of each
# repository once the Hub is reachable from a development machine (none was: "main" for now,
# and the sha256 of each file is recorded at its first download).
OFFICIAL_REVISION = "main"
# The official LvT text tokenizer (videoprism/models.py TEXT_TOKENIZERS["c4_en"]:
# gs://t5-data/vocabs/cc_en.32000/sentencepiece.model), at its public HTTPS address.
C4_EN_TOKENIZER = UrlFile(
    "https://storage.googleapis.com/t5-data/vocabs/cc_en.32000/sentencepiece.model"
)


@dataclasses.dataclass(frozen=True)
class OfficialWeights:
    """Where a registered official variant's weights come from."""

    checkpoint: HubFile
    tokenizer: UrlFile | None = None
    # The official model name (videoprism.models.MODELS) and a short alias.
    official_name: str = ""
    alias: str = ""


OFFICIAL_WEIGHTS: dict[str, OfficialWeights] = {
    "videoprism-v1-base-p18-f16-r288": OfficialWeights(
        HubFile("google/videoprism-base-f16r288", "flax_base_f16r288_repeated.npz",
                OFFICIAL_REVISION),
        official_name="videoprism_public_v1_base", alias="videoprism-v1-base"),
    "videoprism-v1-large-p18-f8-r288": OfficialWeights(
        HubFile("google/videoprism-large-f8r288", "flax_large_f8r288_repeated.npz",
                OFFICIAL_REVISION),
        official_name="videoprism_public_v1_large", alias="videoprism-v1-large"),
    "videoprism-lvt-v1-base-p18-f16-r288": OfficialWeights(
        HubFile("google/videoprism-lvt-base-f16r288", "flax_lvt_base_f16r288_repeated.npz",
                OFFICIAL_REVISION),
        tokenizer=C4_EN_TOKENIZER,
        official_name="videoprism_lvt_public_v1_base", alias="videoprism-lvt-v1-base"),
    "videoprism-lvt-v1-large-p18-f8-r288": OfficialWeights(
        HubFile("google/videoprism-lvt-large-f8r288", "flax_lvt_large_f8r288_repeated.npz",
                OFFICIAL_REVISION),
        tokenizer=C4_EN_TOKENIZER,
        official_name="videoprism_lvt_public_v1_large", alias="videoprism-lvt-v1-large"),
}

# Other names of the official variants: the short alias, the official model name and the
# Hugging Face repository id each name the registered variant.
ALIASES: dict[str, str] = {
    other: name
    for name, weights in OFFICIAL_WEIGHTS.items()
    for other in (weights.alias, weights.official_name, weights.checkpoint.repo_id)
}


def resolve_name(name: str) -> str:
    """The registered name an alias stands for (``"videoprism-v1-base"`` ->
    ``"videoprism-v1-base-p18-f16-r288"``); other names are returned as they are."""
    return ALIASES.get(name, name)


def registered_names() -> list[str]:
    """Names of the registered variants (without "default")."""
    return list(REGISTRY)


def get_config(name: str) -> VideoEncoderConfig:
    """The config of a registered variant; unknown names raise :class:`ConfigError`."""
    try:
        return REGISTRY[resolve_name(name)]
    except KeyError:
        raise ConfigError(
            f"unknown model name {name!r}; registered models: {', '.join(REGISTRY)}, aliases "
            f"{', '.join(a for a in ALIASES if '/' not in a and '_' not in a)} "
            "(or give the path of a weights folder)"
        ) from None


def config_from_dict(family: str, fields: dict[str, Any]) -> VideoEncoderConfig:
    """Build the config of ``family`` from a dict of fields (unknown fields -> ConfigError)."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[family][0].from_dict(fields)


def build_model(
    name_or_config: str | VideoEncoderConfig, name: str | None = None, **overrides: Any
) -> nn.Module:
    """Build a model with random weights, in eval mode.

    Parameters
    ----------
    name_or_config : str or VideoEncoderConfig
        A registered name or a config instance (any family).
    name : str, optional
        ``model.name``; default the registered name, or "custom".
    **overrides
        Config fields to change (e.g. ``atten_logit_cap=0.0``, ``attention="fast"``).

    Returns
    -------
    torch.nn.Module
        :class:`VideoEncoder`, :class:`VideoClassifier` or :class:`VideoTextModel`.
    """
    if isinstance(name_or_config, str):
        config = get_config(name_or_config)
        name = name or resolve_name(name_or_config)
    elif isinstance(name_or_config, VideoEncoderConfig):
        config = name_or_config
    else:
        raise ConfigError(
            f"build_model needs a registered name or a config, found "
            f"{type(name_or_config).__name__}"
        )
    if overrides:
        config = config.replace(**overrides)
    model_cls = FAMILIES[config.family][1]
    return model_cls(config, name=name or "custom").eval()


def build_empty(config: VideoEncoderConfig, name: str | None = None) -> nn.Module:
    """The model of ``config`` with no storage yet (meta device), for loading weights into.

    Loading assigns the real tensors (``load_state_dict(..., assign=True)``), so no random
    initialisation is computed only to be overwritten: for a converted base model that was 58 of
    63 s of the load (issue 22). The models hold no buffers, so every tensor comes from the
    weights.
    """
    import torch

    with torch.device("meta"):
        return build_model(config, name=name)


def count_params(config: VideoEncoderConfig) -> int:
    """Number of parameters of a model with ``config`` (built on the meta device, no memory)."""
    import torch

    with torch.device("meta"):
        model = FAMILIES[config.family][1](config)
    return sum(p.numel() for p in model.parameters())
