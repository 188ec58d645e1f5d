"""The synthetic behavior world: animals, behaviors, captions, rendered clips, per-animal views."""

from __future__ import annotations

from prism_science.synth.animals import (
    CROP_MANIFEST,
    animal_caption,
    clip_tracks,
    write_animal_windows,
)
from prism_science.synth.world import (
    BEHAVIORS,
    COLOURS,
    SIZES,
    AnimalAttributes,
    SynthClip,
    SynthConfig,
    animal_clause,
    generate_clip,
    generate_dataset,
    intervals_from_frames,
    make_caption,
    write_clip,
)

__all__ = [
    "AnimalAttributes",
    "BEHAVIORS",
    "CROP_MANIFEST",
    "COLOURS",
    "SIZES",
    "SynthClip",
    "SynthConfig",
    "animal_caption",
    "animal_clause",
    "clip_tracks",
    "generate_clip",
    "generate_dataset",
    "intervals_from_frames",
    "make_caption",
    "write_animal_windows",
    "write_clip",
]
