"""Probes: small scikit-learn-style classifiers trained on frozen encoder features.

``LinearProbe``, ``MLPProbe`` and ``AttentionProbe`` classify each sample (a frame's feature
vector, or its token grid for the attention probe); ``TemporalProbe`` classifies every frame of a
per-video feature sequence; ``PromptProbe`` scores behaviors named in words through a video-text
model's frozen text tower (learned prompts, per-frame embeddings); ``MAPProbe`` is the paper's
probe (the official MAP pooler over all tokens, fixed epochs, cosine AdamW). All are multi-class
(1-D ``y``) or multi-label (``y`` frames x behaviors with -1 = unlabeled). See docs/probes.md and
docs/prompt_probes.md.
"""

from prism_science.probes.attention import AttentionProbe
from prism_science.probes.base import (
    BaseProbe,
    best_f1_threshold,
    split_by_group,
    summarize_provenance,
)
from prism_science.probes.io import PROBE_KINDS, load_probe, make_probe, save_probe
from prism_science.probes.linear import LinearProbe
from prism_science.probes.map import MAPProbe
from prism_science.probes.mlp import MLPProbe
from prism_science.probes.postprocess import (
    DEFAULT_POSTPROCESS,
    binarize_predictions,
    binary_to_bouts,
    bouts_to_binary,
    postprocess_binary,
    postprocess_settings,
    smooth_labels,
)
from prism_science.probes.prompt import PromptProbe
from prism_science.probes.temporal import TemporalProbe

__all__ = [
    "DEFAULT_POSTPROCESS",
    "PROBE_KINDS",
    "AttentionProbe",
    "BaseProbe",
    "LinearProbe",
    "MAPProbe",
    "MLPProbe",
    "PromptProbe",
    "TemporalProbe",
    "best_f1_threshold",
    "binarize_predictions",
    "binary_to_bouts",
    "bouts_to_binary",
    "load_probe",
    "make_probe",
    "postprocess_binary",
    "postprocess_settings",
    "save_probe",
    "smooth_labels",
    "split_by_group",
    "summarize_provenance",
]
