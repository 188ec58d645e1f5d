"""Value types of a labeling session: behaviors, bouts, predictions, review items."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SOURCES = ("manual", "curated")
"""Label sources a person edits; predictions live in :class:`PredictionTrack` objects."""


@dataclass
class Behavior:
    """One behavior of the ethogram.

    Attributes
    ----------
    name : str
        Behavior name, unique in the session.
    key : str
        Keyboard key that starts/stops a bout of it ("" for none).
    color : str
        ``#rrggbb`` colour on the timeline.
    group : str
        Exclusive group: behaviors sharing a non-empty group never overlap for one subject
        (labeling one clears the others on those frames).
    point : bool
        A point event (BORIS's "Point event", e.g. a jump or a bite): its key marks the current
        frame alone, each labeled frame is a bout of its own, drawn as a tick and exported as
        a BORIS POINT event. False: a state event with a duration (start/stop).
    """

    name: str
    key: str = ""
    color: str = ""
    group: str = ""
    point: bool = False


@dataclass(frozen=True)
class Bout:
    """A labeled interval; ``end_frame`` is inclusive."""

    behavior: str
    subject: str
    start_frame: int
    end_frame: int
    source: str
    confidence: float | None = None
    point: bool = False


@dataclass
class PredictionTrack:
    """Per-frame probabilities of a probe for one video, and the bouts they predict.

    Attributes
    ----------
    name : str
        Name of the probe (or prediction run).
    classes : list of str
        Behavior names of the columns of ``proba``.
    proba : np.ndarray
        (n_frames, n_classes) float32 probabilities in [0, 1].
    thresholds : list of float
        Per class, the probability from which a frame counts as predicted positive (a probe's
        tuned thresholds, or 0.5).
    postprocess : dict
        The probe's bout post-processing, ``{"min_bout": int, "max_gap": int}`` (its
        ``postprocess_``); the default keeps every thresholded frame.
    """

    name: str
    classes: list[str]
    proba: np.ndarray
    thresholds: list[float] = field(default_factory=list)
    postprocess: dict[str, int] = field(
        default_factory=lambda: {"min_bout": 1, "max_gap": 0})
    _binary: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def threshold_of(self, behavior: str) -> float:
        """The decision threshold of ``behavior`` (0.5 when none was given)."""
        index = self.classes.index(behavior)
        return float(self.thresholds[index]) if index < len(self.thresholds) else 0.5

    def column(self, behavior: str) -> np.ndarray | None:
        """(n_frames,) float32 probabilities of ``behavior``, or None when not predicted."""
        if behavior not in self.classes:
            return None
        return self.proba[:, self.classes.index(behavior)]

    def binary(self) -> np.ndarray:
        """(n_frames, n_classes) int64 0/1: the predictions shown on the timeline and exported.

        Thresholds, then bout post-processing, by
        :func:`prism_science.probes.postprocess.binarize_predictions`, the function
        ``prism-science probe predict`` uses for the ``binary`` it saves. Computed once.
        """
        if self._binary is None:
            # Imported here: the probes package loads torch, which a session must not need.
            from prism_science.probes.postprocess import binarize_predictions

            thresholds = [self.threshold_of(c) for c in self.classes]
            self._binary = binarize_predictions(self.proba, thresholds, self.postprocess)
        return self._binary

    def predicted(self, behavior: str) -> np.ndarray | None:
        """(n_frames,) bool predicted frames of ``behavior`` (see :meth:`binary`), or None."""
        if behavior not in self.classes:
            return None
        return self.binary()[:, self.classes.index(behavior)].astype(bool)


@dataclass(frozen=True)
class ReviewItem:
    """A predicted bout that needs a person's look.

    Attributes
    ----------
    prediction, behavior : str
        The prediction track and behavior.
    start_frame, end_frame : int
        The bout, ``end_frame`` inclusive.
    reason : str
        ``"low_confidence"`` (mean probability near the threshold) or ``"disagreement"``
        (prediction and manual labels disagree on most of the bout).
    score : float
        Mean probability over the bout.
    """

    prediction: str
    behavior: str
    start_frame: int
    end_frame: int
    reason: str
    score: float

    @property
    def key(self) -> str:
        """Identity of the bout in the review decisions."""
        return f"{self.prediction}|{self.behavior}|{self.start_frame}|{self.end_frame}"


def mask_to_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of True in a boolean mask.

    Parameters
    ----------
    mask : np.ndarray
        (n,) bool.

    Returns
    -------
    list of (int, int)
        (start, end) with ``end`` inclusive, in increasing order.
    """
    padded = np.concatenate(([False], np.asarray(mask, dtype=bool), [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]
