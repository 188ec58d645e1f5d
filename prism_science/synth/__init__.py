"""The synthetic behavior world: animals, behaviors, captions, rendered clips."""

from __future__ import annotations

from prism_science.synth.world import (
    BEHAVIORS,
    COLOURS,
    SIZES,
    AnimalAttributes,
    SynthClip,
    SynthConfig,
    generate_clip,
    generate_dataset,
    intervals_from_frames,
    make_caption,
    write_clip,
)

__all__ = [
    "AnimalAttributes",
    "BEHAVIORS",
    "COLOURS",
    "SIZES",
    "SynthClip",
    "SynthConfig",
    "generate_clip",
    "generate_dataset",
    "intervals_from_frames",
    "make_caption",
    "write_clip",
]
