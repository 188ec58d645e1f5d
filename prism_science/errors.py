"""Error types shared by the whole library.

Every message names the file, frame or field that is wrong, what was expected, what was found,
and what to do about it.
"""

from __future__ import annotations


class PrismError(ValueError):
    """Base class of all errors raised by prism-science on bad input."""


class VideoError(PrismError):
    """A video cannot be opened or a frame cannot be decoded."""


class WeightsError(PrismError):
    """A weights file or checkpoint is corrupt, truncated or does not match its config."""


class StoreError(PrismError):
    """A feature store is incomplete, from another version, or would mix incompatible runs."""


class LabelError(PrismError):
    """A label file is malformed or inconsistent with its video."""


class ProbeError(PrismError):
    """A probe does not match the features it is applied to."""


class ConfigError(PrismError):
    """A model or training config names an unknown field or holds an unusable value."""


class VideoInputError(PrismError):
    """A video tensor given to a model has the wrong shape, dtype or value range."""


class TextInputError(PrismError):
    """Token ids or paddings given to a text encoder have the wrong shape, dtype or range."""


class WindowError(PrismError):
    """Window parameters are invalid for the model or the video."""


class SynthError(PrismError):
    """A synthetic-world configuration is invalid."""


class ClusterError(PrismError):
    """A cluster specification is invalid or the cluster cannot be reached."""


class DataError(PrismError):
    """A manifest, caption or video folder cannot be used for training."""


class CheckpointError(WeightsError):
    """A checkpoint or teacher/encoder weights folder is corrupt or of another architecture."""


class TrainingError(PrismError):
    """The optimisation itself failed (e.g. too many steps with a non-finite loss)."""


class SearchError(PrismError):
    """A text search cannot run: a model without text tower or tokenizer, an empty query, or a
    store whose video cannot be found."""


class TracksError(PrismError):
    """A tracks file is malformed, of another video, or lacks a subject or frames asked for."""


class TrackerError(TracksError):
    """The built-in tracker cannot follow the requested number of animals in a video."""


class BenchError(PrismError):
    """A benchmark cannot run: a dataset root not in its released layout, a split or probe
    config that does not fit, a device that is not there, or a run folder of another run."""


class Cancelled(Exception):  # noqa: N818 - not an error: the caller asked the work to stop
    """Long work stopped because its caller asked it to (a cancel button or event)."""
