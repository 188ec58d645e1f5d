"""Errors of the training pipeline (subclasses of :class:`prism_science.errors.PrismError`)."""

from __future__ import annotations

from prism_science.errors import PrismError, WeightsError

__all__ = ["CheckpointError", "ConfigError", "DataError", "TrainingError"]


class ConfigError(PrismError):
    """A training config names an unknown field or holds an unusable value."""


class DataError(PrismError):
    """A manifest, caption or video folder cannot be used for training."""


class CheckpointError(WeightsError):
    """A checkpoint or teacher/encoder weights folder is corrupt or of another architecture."""


class TrainingError(PrismError):
    """The optimisation itself failed (e.g. too many steps with a non-finite loss)."""
