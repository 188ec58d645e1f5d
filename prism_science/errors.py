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
