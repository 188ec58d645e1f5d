"""A labeling session: the Qt-free logic behind the napari plugin.

A :class:`LabelingSession` holds, for one video, the behaviors being labeled (name, key, colour,
exclusive group), the frames labeled by hand (``manual``), the frames a person approved while
reviewing predictions (``curated``), the classifier's per-frame probabilities (``predicted``)
and the review decisions, all kept apart so that none overwrites another. Edits are undoable and
the session autosaves itself with atomic writes, so a crash loses at most the last few seconds.

Labels are stored per frame (one boolean mask per behavior and subject): edits, exclusive groups,
undo and drawing are then simple array operations; intervals (``end_frame`` inclusive, as in the
plain interval CSV) are derived from the masks when saving or exporting.

The session file is JSON (a format name, a version, behaviors, intervals, review decisions);
predictions, which may be large, go to an ``.npz`` beside it, read back with
``allow_pickle=False``.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.table import Interval, LabelTable, Segment

__all__ = [
    "SESSION_FORMAT",
    "SESSION_VERSION",
    "RESERVED_KEYS",
    "SOURCES",
    "Behavior",
    "Bout",
    "LabelingSession",
    "PredictionTrack",
    "ReviewItem",
    "atomic_write_bytes",
    "default_session_path",
    "mask_to_runs",
]

logger = logging.getLogger(__name__)

SESSION_FORMAT = "prism-science.session"
SESSION_VERSION = 1
STORE_SESSION_KEY = "gui/session"
"""Where a session is kept inside a feature store (a JSON document of the video)."""
SOURCES = ("manual", "curated")
"""Label sources a person edits; predictions live in :class:`PredictionTrack` objects."""

_PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4",
    "#46f0f0", "#f032e6", "#bcf60c", "#008080", "#9a6324",
)
_UNDO_LIMIT = 200
_KEY_CANDIDATES = "qwertyuiopasdfghjklxcbnm"
RESERVED_KEYS = "vz"
"""Keys never chosen automatically (napari uses them: toggle visibility, pan/zoom mode)."""


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
    """

    name: str
    key: str = ""
    color: str = ""
    group: str = ""


@dataclass(frozen=True)
class Bout:
    """A labeled interval; ``end_frame`` is inclusive."""

    behavior: str
    subject: str
    start_frame: int
    end_frame: int
    source: str
    confidence: float | None = None


@dataclass
class PredictionTrack:
    """Per-frame probabilities of a probe for one video.

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
    """

    name: str
    classes: list[str]
    proba: np.ndarray
    thresholds: list[float] = field(default_factory=list)

    def threshold_of(self, behavior: str) -> float:
        """The decision threshold of ``behavior`` (0.5 when none was given)."""
        index = self.classes.index(behavior)
        return float(self.thresholds[index]) if index < len(self.thresholds) else 0.5

    def column(self, behavior: str) -> np.ndarray | None:
        """(n_frames,) float32 probabilities of ``behavior``, or None when not predicted."""
        if behavior not in self.classes:
            return None
        return self.proba[:, self.classes.index(behavior)]


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


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file so that a crash leaves either the old or the new content, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path`` (an atomic replace on POSIX and Windows).

    Parameters
    ----------
    path : str or PathLike
        Destination file.
    data : bytes
        Its new content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_session_path(video_path: str | os.PathLike[str]) -> Path:
    """Where the session of a video autosaves: ``NAME.prism-session.json`` beside the video.

    When the video's folder is not writable, a file in ``~/.cache/prism-science/sessions``
    named after the video's absolute path is used instead.
    """
    video_path = Path(video_path)
    beside = video_path.with_name(video_path.name + ".prism-session.json")
    if os.access(video_path.parent, os.W_OK):
        return beside
    import hashlib

    digest = hashlib.sha256(str(video_path.resolve()).encode()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "prism-science" / "sessions"
    return cache / f"{video_path.name}.{digest}.json"


@dataclass
class _Edit:
    """One undo step: the masks as they were before it (None: the mask did not exist)."""

    before: dict[tuple[str, str, str], np.ndarray | None] = field(default_factory=dict)
    after: dict[tuple[str, str, str], np.ndarray | None] = field(default_factory=dict)


class LabelingSession:
    """Labels of one video being edited by a person.

    Parameters
    ----------
    n_frames : int
        Number of frames of the video.
    fps : float
        Frame rate, used for times when ``timestamps`` is not given.
    timestamps : np.ndarray, optional
        (n_frames,) float64 seconds of each frame (from the video's PTS).
    video_path : str or PathLike, optional
        The video; recorded in the session file.
    behaviors : iterable of Behavior or str, optional
        Initial ethogram.
    annotator : str
        Name written in exported labels.
    path : str or PathLike, optional
        Session file for :meth:`save` and autosave (see :func:`default_session_path`).
    autosave_interval : float
        Seconds between autosaves while edits keep coming (:meth:`maybe_autosave`).
    """

    def __init__(
        self,
        n_frames: int,
        fps: float = 30.0,
        *,
        timestamps: np.ndarray | None = None,
        video_path: str | os.PathLike[str] | None = None,
        behaviors: Iterable[Behavior | str] = (),
        annotator: str = "",
        path: str | os.PathLike[str] | None = None,
        autosave_interval: float = 2.0,
    ) -> None:
        if n_frames <= 0:
            raise LabelError(f"a session needs a video with frames, found n_frames={n_frames}")
        self.n_frames = int(n_frames)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        if timestamps is None:
            timestamps = np.arange(self.n_frames, dtype=np.float64) / self.fps
        self.timestamps = np.asarray(timestamps, dtype=np.float64)
        if self.timestamps.shape != (self.n_frames,):
            raise LabelError(
                f"timestamps have shape {self.timestamps.shape}, expected ({self.n_frames},)"
            )
        self.video_path = None if video_path is None else str(video_path)
        self.annotator = annotator
        self.path = None if path is None else Path(path)
        self.store: tuple[Path, str] | None = None  # (store path, video id) to save into
        self.autosave_interval = float(autosave_interval)
        self.subject = ""
        self.behaviors: list[Behavior] = []
        self.predictions: dict[str, PredictionTrack] = {}
        self.review: dict[str, str] = {}  # ReviewItem.key -> "accepted" | "rejected" | "edited"
        self.open_bouts: dict[str, int] = {}  # behavior -> start frame of a bout being recorded
        self._masks: dict[tuple[str, str, str], np.ndarray] = {}  # (source, behavior, subject)
        self._undo: list[_Edit] = []
        self._redo: list[_Edit] = []
        self._listeners: list[Callable[[], None]] = []
        self._dirty = False
        self._predictions_dirty = False
        self._last_save: float | None = None  # monotonic time of the last save
        self.revision = 0  # bumped on every change (views repaint when it moves)
        for behavior in behaviors:
            self.add_behavior(behavior)
        self._dirty = False

    # ------------------------------------------------------------------ change tracking
    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change of labels, behaviors or predictions."""
        self._listeners.append(callback)

    def unsubscribe(self, callback: Callable[[], None]) -> None:
        """Stop calling a callback given to :meth:`subscribe`."""
        if callback in self._listeners:
            self._listeners.remove(callback)

    def _changed(self) -> None:
        self._dirty = True
        self.revision += 1
        for callback in list(self._listeners):
            try:
                callback()
            except Exception:  # noqa: BLE001 - a broken view must not lose the edit
                logger.exception("session listener %r failed", callback)
        self.maybe_autosave()

    @property
    def dirty(self) -> bool:
        """Whether there are changes not yet saved."""
        return self._dirty or self._predictions_dirty

    def set_subject(self, subject: str) -> None:
        """Choose the animal that keyboard and timeline edits label ("" for none)."""
        if subject != self.subject:
            self.subject = subject
            self.open_bouts.clear()
            self._changed()

    def set_annotator(self, name: str) -> None:
        """Set the name written as ``annotator`` of manual and curated labels."""
        if name != self.annotator:
            self.annotator = name
            self._changed()

    # ------------------------------------------------------------------ behaviors
    def behavior(self, name: str) -> Behavior:
        """The behavior called ``name``; raises LabelError naming the known ones otherwise."""
        for behavior in self.behaviors:
            if behavior.name == name:
                return behavior
        known = ", ".join(b.name for b in self.behaviors) or "none"
        raise LabelError(f"behavior {name!r} is not in the ethogram (known: {known}); add it first")

    def behavior_names(self) -> list[str]:
        """Names of the behaviors, in ethogram order."""
        return [b.name for b in self.behaviors]

    def add_behavior(self, behavior: Behavior | str) -> Behavior:
        """Add a behavior; a missing key or colour is chosen automatically.

        Raises
        ------
        LabelError
            The name is empty or already used, or the key is used by another behavior.
        """
        if isinstance(behavior, str):
            behavior = Behavior(behavior)
        name = behavior.name.strip()
        if not name:
            raise LabelError("a behavior needs a non-empty name")
        if name in self.behavior_names():
            raise LabelError(f"behavior {name!r} already exists; choose another name")
        used_keys = {b.key.lower() for b in self.behaviors if b.key}
        key = behavior.key or next(
            (c for c in name.lower() + _KEY_CANDIDATES if "a" <= c <= "z"
             and c not in used_keys and c not in RESERVED_KEYS), "")
        if key and key.lower() in used_keys:
            raise LabelError(f"key {key!r} of behavior {name!r} is already used; choose another")
        color = behavior.color or _PALETTE[len(self.behaviors) % len(_PALETTE)]
        new = Behavior(name, key, color, behavior.group.strip())
        self.behaviors.append(new)
        self._changed()
        return new

    def update_behavior(self, name: str, **changes: str) -> None:
        """Change the key, colour or group of a behavior (renaming keeps its labels)."""
        behavior = self.behavior(name)
        new_name = changes.get("name", name).strip()
        if new_name != name:
            if not new_name or new_name in self.behavior_names():
                raise LabelError(f"cannot rename {name!r} to {new_name!r}: empty or already used")
            for key in [k for k in self._masks if k[1] == name]:
                self._masks[(key[0], new_name, key[2])] = self._masks.pop(key)
            self._undo.clear()
            self._redo.clear()
            behavior.name = new_name
        key = changes.get("key", behavior.key)
        if key and any(b.key.lower() == key.lower() for b in self.behaviors if b is not behavior):
            raise LabelError(f"key {key!r} is already used by another behavior; choose another")
        behavior.key = key
        behavior.color = changes.get("color", behavior.color)
        behavior.group = changes.get("group", behavior.group).strip()
        self._changed()

    def remove_behavior(self, name: str) -> None:
        """Remove a behavior and its manual and curated labels (undo restores the labels)."""
        self.behavior(name)
        edit = _Edit()
        for key in [k for k in self._masks if k[1] == name]:
            edit.before[key] = self._masks.pop(key)
            edit.after[key] = None
        self.behaviors = [b for b in self.behaviors if b.name != name]
        self.open_bouts.pop(name, None)
        if edit.before:
            self._push(edit)
        self._changed()

    # ------------------------------------------------------------------ masks
    def mask(self, behavior: str, source: str = "manual", subject: str | None = None) -> np.ndarray:
        """(n_frames,) bool frames labeled ``behavior`` (a copy-free read-only view)."""
        key = (source, behavior, self.subject if subject is None else subject)
        mask = self._masks.get(key)
        if mask is None:
            return np.zeros(self.n_frames, dtype=bool)
        view = mask.view()
        view.flags.writeable = False
        return view

    def subjects(self) -> list[str]:
        """Subjects that have labels, plus the current one."""
        return sorted({k[2] for k in self._masks} | {self.subject})

    def _check_frame(self, frame: int) -> int:
        frame = int(frame)
        if not 0 <= frame < self.n_frames:
            raise LabelError(f"frame {frame} is outside the video (0..{self.n_frames - 1})")
        return frame

    def set_range(
        self,
        behavior: str,
        start: int,
        end: int,
        value: bool = True,
        *,
        source: str = "manual",
        subject: str | None = None,
    ) -> None:
        """Label (``value=True``) or unlabel frames ``start..end`` (inclusive, any order).

        Labeling a behavior of an exclusive group clears the group's other behaviors on those
        frames for the same subject and source. One call is one undo step.
        """
        self.behavior(behavior)
        if source not in SOURCES:
            raise LabelError(f"source must be one of {SOURCES}, found {source!r}")
        a, b = sorted((self._check_frame(start), self._check_frame(end)))
        subject = self.subject if subject is None else subject
        edit = _Edit()
        self._assign(edit, (source, behavior, subject), a, b, value)
        group = self.behavior(behavior).group
        if value and group:
            for other in self.behaviors:
                if other.name != behavior and other.group == group:
                    self._assign(edit, (source, other.name, subject), a, b, False)
        if edit.before:
            self._push(edit)
            self._changed()

    def _assign(self, edit: _Edit, key: tuple[str, str, str], a: int, b: int, value: bool) -> None:
        old = self._masks.get(key)
        if old is None and not value:
            return
        if old is not None and bool(np.all(old[a : b + 1] == value)):
            return
        new = np.zeros(self.n_frames, dtype=bool) if old is None else old.copy()
        new[a : b + 1] = value
        edit.before.setdefault(key, old)
        edit.after[key] = new
        self._masks[key] = new

    def _push(self, edit: _Edit) -> None:
        self._undo.append(edit)
        del self._undo[:-_UNDO_LIMIT]
        self._redo.clear()

    def _apply(self, state: dict[tuple[str, str, str], np.ndarray | None]) -> None:
        for key, mask in state.items():
            if mask is None:
                self._masks.pop(key, None)
            else:
                self._masks[key] = mask

    def clear_history(self) -> None:
        """Forget the undo and redo steps (after loading labels that should not be undone)."""
        self._undo.clear()
        self._redo.clear()

    def undo(self) -> bool:
        """Undo the last edit; returns False when there is nothing to undo."""
        if not self._undo:
            return False
        edit = self._undo.pop()
        self._apply(edit.before)
        self._redo.append(edit)
        self._changed()
        return True

    def redo(self) -> bool:
        """Redo the last undone edit; returns False when there is nothing to redo."""
        if not self._redo:
            return False
        edit = self._redo.pop()
        self._apply(edit.after)
        self._undo.append(edit)
        self._changed()
        return True

    # ------------------------------------------------------------------ keyboard labeling
    def start_stop(self, behavior: str, frame: int) -> str:
        """Start a bout of ``behavior`` at ``frame``, or stop the open one there.

        Stopping labels every frame between the start and ``frame`` (both included, in either
        order). Starting a behavior of an exclusive group closes the group's open bouts first,
        at the frame before (the animal switched behavior).

        Returns
        -------
        str
            ``"started"`` or ``"stopped"``.
        """
        self.behavior(behavior)
        frame = self._check_frame(frame)
        if behavior in self.open_bouts:
            start = self.open_bouts.pop(behavior)
            self.set_range(behavior, start, frame, True)
            self._changed()
            return "stopped"
        group = self.behavior(behavior).group
        if group:
            for other in self.behaviors:
                if other.group == group and other.name in self.open_bouts:
                    start = self.open_bouts.pop(other.name)
                    self.set_range(other.name, start, max(start, frame - 1), True)
        self.open_bouts[behavior] = frame
        self._changed()
        return "started"

    def cancel_open(self, behavior: str | None = None) -> None:
        """Drop the open bout of ``behavior`` (all open bouts when None) without labeling."""
        if behavior is None:
            self.open_bouts.clear()
        else:
            self.open_bouts.pop(behavior, None)
        self._changed()

    def toggle_frame(self, behavior: str, frame: int) -> bool:
        """Flip the label of ``behavior`` on one frame; returns the new value."""
        frame = self._check_frame(frame)
        value = not bool(self.mask(behavior)[frame])
        self.set_range(behavior, frame, frame, value)
        return value

    def behavior_for_key(self, key: str) -> str | None:
        """Name of the behavior bound to a keyboard key (case-insensitive), or None."""
        for behavior in self.behaviors:
            if behavior.key and behavior.key.lower() == key.lower():
                return behavior.name
        return None

    # ------------------------------------------------------------------ bouts and records
    def bouts(self, source: str = "manual") -> list[Bout]:
        """Bouts of one source (``manual``, ``curated``, or a prediction track's name).

        Predicted bouts are the runs of frames whose probability is at least the track's
        threshold; their confidence is the mean probability over the bout.
        """
        out: list[Bout] = []
        if source in self.predictions:
            track = self.predictions[source]
            for behavior in track.classes:
                column = track.column(behavior)
                assert column is not None
                for a, b in mask_to_runs(column >= track.threshold_of(behavior)):
                    conf = float(column[a : b + 1].mean())
                    out.append(Bout(behavior, "", a, b, "predicted", round(conf, 6)))
            return sorted(out, key=lambda x: (x.start_frame, x.behavior))
        if source not in SOURCES:
            raise LabelError(
                f"unknown label source {source!r}; expected one of {SOURCES} or a prediction "
                f"({', '.join(self.predictions) or 'none loaded'})"
            )
        order = {name: i for i, name in enumerate(self.behavior_names())}
        for (src, behavior, subject), mask in self._masks.items():
            if src == source:
                out.extend(Bout(behavior, subject, a, b, source) for a, b in mask_to_runs(mask))
        return sorted(out, key=lambda x: (x.start_frame, order.get(x.behavior, 0), x.subject))

    def _times(self, start: int, end: int) -> tuple[float, float]:
        end_s = (
            self.timestamps[end + 1] if end + 1 < self.n_frames
            else self.timestamps[-1] + 1.0 / self.fps
        )
        return float(self.timestamps[start]), float(end_s)

    def records(self, sources: Sequence[str] = SOURCES) -> list[dict[str, Any]]:
        """Bouts as rows of the plain interval CSV (columns of ``RECORD_FIELDS``).

        Parameters
        ----------
        sources : sequence of str
            ``manual``, ``curated`` and/or prediction track names (exported as ``predicted``).
        """
        rows = []
        for source in sources:
            for bout in self.bouts(source):
                start_s, end_s = self._times(bout.start_frame, bout.end_frame)
                rows.append({
                    "behavior": bout.behavior, "subject": bout.subject,
                    "start_frame": bout.start_frame, "end_frame": bout.end_frame,
                    "start_s": round(start_s, 6), "end_s": round(end_s, 6),
                    "annotator": self.annotator if bout.source != "predicted" else source,
                    "source": bout.source, "confidence": bout.confidence,
                })
        return rows

    def add_records(self, rows: Iterable[dict[str, Any]], *, replace: bool = False) -> int:
        """Add interval rows (plain interval CSV fields) as manual or curated labels.

        Unknown behaviors are added to the ethogram; rows whose source is ``predicted`` are
        skipped (predictions come as probabilities, see :meth:`set_predictions`). One call is
        one undo step.

        Returns
        -------
        int
            Number of bouts added.

        Raises
        ------
        LabelError
            A row has no behavior, or frames outside the video.
        """
        parsed: list[tuple[str, str, str, int, int]] = []
        for i, row in enumerate(rows):
            source = str(row.get("source") or "manual")
            if source == "predicted":
                continue
            if source not in SOURCES:
                raise LabelError(f"row {i}: source {source!r} is not one of {SOURCES}")
            behavior = str(row.get("behavior") or "").strip()
            if not behavior:
                raise LabelError(f"row {i}: the behavior field is empty; name the behavior")
            try:
                start, end = int(row["start_frame"]), int(row["end_frame"])
            except (KeyError, TypeError, ValueError) as exc:
                raise LabelError(f"row {i} ({behavior}): start_frame/end_frame must be "
                                 f"integers ({exc!r})") from exc
            if not (0 <= start <= end < self.n_frames):
                raise LabelError(
                    f"row {i} ({behavior}): frames {start}..{end} are outside the video "
                    f"(0..{self.n_frames - 1}) or reversed; the labels may belong to another video"
                )
            parsed.append((source, behavior, str(row.get("subject") or ""), start, end))
        # Everything checked: now apply, so that a bad row leaves the session untouched.
        edit = _Edit()
        if replace:
            for key in list(self._masks):
                edit.before[key] = self._masks.pop(key)
                edit.after[key] = None
        for source, behavior, subject, start, end in parsed:
            if behavior not in self.behavior_names():
                self.add_behavior(behavior)
            self._assign(edit, (source, behavior, subject), start, end, True)
        added = len(parsed)
        if edit.before:
            self._push(edit)
        self._changed()
        return added

    # ------------------------------------------------------------------ label tables
    def behavior_set(self) -> BehaviorSet:
        """The ethogram as a :class:`prism_science.labels.BehaviorSet` (groups, keys, colours)."""
        groups: dict[str, list[str]] = {}
        for b in self.behaviors:
            if b.group:
                groups.setdefault(b.group, []).append(b.name)
        return BehaviorSet(
            tuple(self.behavior_names()),
            tuple(tuple(g) for g in groups.values() if len(g) > 1),
            {b.name: b.key for b in self.behaviors if b.key},
            {b.name: b.color for b in self.behaviors if b.color},
        )

    def to_table(
        self, sources: Sequence[str] = ("manual",), *, fully_labeled: bool = False,
        video_id: str | None = None,
    ) -> LabelTable:
        """The labels of some sources as a :class:`prism_science.labels.LabelTable`.

        Parameters
        ----------
        sources : sequence of str
            ``manual``, ``curated`` and/or prediction track names.
        fully_labeled : bool
            Declare every frame labeled (frames outside bouts are negatives for training);
            otherwise only the bouts' frames count as labeled.
        video_id : str, optional
            Recorded in the table.
        """
        intervals = [
            Interval(r["behavior"], r["start_frame"], r["end_frame"], r["start_s"], r["end_s"],
                     r["subject"] or None, r["annotator"], r["source"], r["confidence"])
            for r in self.records(sources)
        ]
        segments = [Segment(0, self.n_frames - 1)] if fully_labeled else []
        return LabelTable(intervals, segments, video_id, self.n_frames, self.fps,
                          self.timestamps, self.behavior_set(), self.video_path)

    def add_table(self, table: LabelTable, *, replace: bool = False) -> int:
        """Add a LabelTable's manual and curated intervals (behaviors with their keys/colours).

        Returns the number of bouts added; raises LabelError when they do not fit the video.
        """
        bset = table.behaviors()
        for name in bset.names:
            if name not in self.behavior_names():
                group = bset.group_of(name)
                key = bset.keys.get(name, "")
                if key and self.behavior_for_key(key):
                    key = ""
                self.add_behavior(Behavior(name, key, bset.colors.get(name, ""),
                                           "+".join(group) if group else ""))
        rows = [
            {"behavior": iv.behavior, "subject": iv.subject or "", "start_frame": iv.start_frame,
             "end_frame": iv.end_frame, "source": iv.source}
            for iv in table.intervals
        ]
        return self.add_records(rows, replace=replace)

    # ------------------------------------------------------------------ predictions and review
    def set_predictions(
        self, name: str, classes: Sequence[str], proba: np.ndarray,
        threshold: float | Sequence[float] = 0.5,
    ) -> PredictionTrack:
        """Attach a probe's per-frame probabilities (replacing a track of the same name).

        Parameters
        ----------
        name : str
            Track name (e.g. the probe's name).
        classes : sequence of str
            Behavior of each column.
        proba : np.ndarray
            (n_frames, n_classes) probabilities.
        threshold : float or sequence of float
            Probability from which a frame is predicted positive (one for all classes, or one
            per class such as a probe's tuned ``thresholds_``).

        Raises
        ------
        LabelError
            ``proba`` does not have one row per frame and one column per class.
        """
        proba = np.asarray(proba, dtype=np.float32)
        if proba.ndim != 2 or proba.shape != (self.n_frames, len(classes)):
            raise LabelError(
                f"predictions {name!r} have shape {proba.shape}, expected ({self.n_frames}, "
                f"{len(classes)}) (frames x classes); predict with features of this video"
            )
        thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(classes),))
        track = PredictionTrack(name, [str(c) for c in classes], proba,
                                [float(t) for t in thresholds])
        self.predictions[name] = track
        for behavior in track.classes:
            if behavior not in self.behavior_names():
                self.add_behavior(behavior)
        self._predictions_dirty = True
        self._changed()
        return track

    def review_items(
        self, prediction: str, margin: float = 0.15, min_overlap: float = 0.5
    ) -> list[ReviewItem]:
        """Predicted bouts to review, in frame order.

        A bout is listed when its mean probability is within ``margin`` of the behavior's
        threshold (low confidence) or when
        manual labels of its behavior cover less than ``min_overlap`` of it (disagreement) --
        unless the manual labels are empty on that stretch of video, where nothing can disagree.
        Manual bouts that the prediction misses entirely are listed too (reason
        ``disagreement``, score the mean probability there).
        """
        if prediction not in self.predictions:
            raise LabelError(f"no prediction named {prediction!r}; run Predict first")
        track = self.predictions[prediction]
        labeled_any = np.zeros(self.n_frames, dtype=bool)
        for (src, _, _), mask in self._masks.items():
            if src == "manual":
                labeled_any |= mask
        items: list[ReviewItem] = []
        for bout in self.bouts(prediction):
            conf = float(bout.confidence or 0.0)
            manual = self.mask(bout.behavior)[bout.start_frame : bout.end_frame + 1]
            reason = ""
            if abs(conf - track.threshold_of(bout.behavior)) <= margin:
                reason = "low_confidence"
            elif labeled_any.any() and manual.mean() < min_overlap and manual.size:
                reason = "disagreement"
            if reason:
                items.append(ReviewItem(prediction, bout.behavior, bout.start_frame,
                                        bout.end_frame, reason, conf))
        for behavior in track.classes:
            column = track.column(behavior)
            assert column is not None
            for a, b in mask_to_runs(self.mask(behavior)):
                hit = column[a : b + 1] >= track.threshold_of(behavior)
                if float(hit.mean()) < min_overlap:
                    items.append(ReviewItem(prediction, behavior, a, b, "disagreement",
                                            float(column[a : b + 1].mean())))
        return sorted(set(items), key=lambda it: (it.start_frame, it.behavior))

    def next_review_item(
        self, prediction: str, frame: int, *, include_reviewed: bool = False, **kwargs: float
    ) -> ReviewItem | None:
        """The first review item starting after ``frame`` (wrapping around), or None."""
        items = [
            it for it in self.review_items(prediction, **kwargs)
            if include_reviewed or it.key not in self.review
        ]
        if not items:
            return None
        after = [it for it in items if it.start_frame > frame]
        return (after or items)[0]

    def accept(self, item: ReviewItem) -> None:
        """Accept a reviewed bout as it is: its frames become curated labels."""
        self.set_range(item.behavior, item.start_frame, item.end_frame, True, source="curated")
        self.review[item.key] = "accepted"
        self._changed()

    def reject(self, item: ReviewItem) -> None:
        """Reject a reviewed bout: recorded as rejected; no label is added anywhere."""
        self.review[item.key] = "rejected"
        self._changed()

    def edit(self, item: ReviewItem, start: int, end: int) -> None:
        """Accept a reviewed bout with corrected bounds (curated labels on ``start..end``)."""
        self.set_range(item.behavior, start, end, True, source="curated")
        self.review[item.key] = "edited"
        self._changed()

    # ------------------------------------------------------------------ save / load
    def to_dict(self) -> dict[str, Any]:
        """The session as JSON-able data (predictions excepted: see :meth:`save`)."""
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "video": {"path": self.video_path, "n_frames": self.n_frames, "fps": self.fps},
            "annotator": self.annotator,
            "subject": self.subject,
            "behaviors": [asdict(b) for b in self.behaviors],
            "labels": self.records(SOURCES),
            "review": dict(self.review),
            "open_bouts": dict(self.open_bouts),
            "predictions": {
                name: {"classes": t.classes, "thresholds": t.thresholds}
                for name, t in self.predictions.items()
            },
        }

    def predictions_path(self, path: Path | None = None) -> Path | None:
        """The ``.npz`` that holds the predictions next to a session file."""
        path = path or self.path
        return None if path is None else path.with_name(path.name + ".predictions.npz")

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the session file (and its predictions ``.npz`` when they changed), atomically.

        Parameters
        ----------
        path : str or PathLike, optional
            Session file; defaults to the session's ``path``.

        Returns
        -------
        Path
            The session file written.
        """
        if path is None and self.store is not None:
            return self._save_to_store()
        target = Path(path) if path is not None else self.path
        if target is None:
            raise LabelError("this session has no file to save to; give a path")
        pred_path = self.predictions_path(target)
        assert pred_path is not None
        if self.predictions and (self._predictions_dirty or target != self.path
                                 or not pred_path.exists()):
            import io

            buffer = io.BytesIO()
            arrays = {f"proba_{i}": t.proba for i, t in enumerate(self.predictions.values())}
            np.savez_compressed(buffer, **arrays)
            atomic_write_bytes(pred_path, buffer.getvalue())
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        atomic_write_bytes(target, text.encode("utf-8"))
        if target == self.path or self.path is None:
            self.path = target
            self._dirty = False
            self._predictions_dirty = False
        self._last_save = time.monotonic()
        logger.debug("session saved to %s", target)
        return target

    def maybe_autosave(self, force: bool = False) -> bool:
        """Save when there are unsaved changes and the last save is ``autosave_interval`` old.

        Called after every change and by the GUI's timer; returns whether it saved. Failures
        are logged (the labels stay in memory and the next call retries).
        """
        if (self.path is None and self.store is None) or not self.dirty:
            return False
        recent = (self._last_save is not None
                  and time.monotonic() - self._last_save < self.autosave_interval)
        if not force and recent:
            return False
        try:
            self.save()
        except OSError as exc:
            logger.warning("autosave to %s failed: %s", self.path, exc)
            return False
        return True

    def _save_to_store(self) -> Path:
        """Write the session into its feature store: the session document, the manual and
        curated label sets (``labels/manual``, ``labels/curated``) and the predictions
        (``predictions/<name>`` arrays with their classes)."""
        from prism_science.labels.store_io import save_labels
        from prism_science.store import open_store

        assert self.store is not None
        store_path, video_id = self.store
        with open_store(store_path, mode="a") as store:
            store.write_json(video_id, STORE_SESSION_KEY, self.to_dict())
            for source in SOURCES:
                save_labels(store, video_id, self.to_table((source,), video_id=video_id), source)
            if self._predictions_dirty:
                for name, track in self.predictions.items():
                    store.write_array(video_id, f"predictions/{name}", track.proba,
                                      {"classes": track.classes,
                                       "thresholds": track.thresholds})
        self._dirty = False
        self._predictions_dirty = False
        self._last_save = time.monotonic()
        logger.debug("session saved into %s (video %s)", store_path, video_id)
        return Path(store_path)

    @classmethod
    def from_store(
        cls, store_path: str | os.PathLike[str], video_id: str, *, timestamps: np.ndarray | None
        = None,
    ) -> LabelingSession:
        """The session of a video in a feature store (empty when none was saved yet).

        Reads the session document when the GUI saved one, else the ``labels/manual`` and
        ``labels/curated`` label sets; then every ``predictions/<name>`` array that has
        ``classes`` in its attributes and one row per frame.

        Raises
        ------
        prism_science.errors.StoreError
            The store or the video is missing, or the store has another schema version.
        """
        from prism_science.errors import StoreError
        from prism_science.labels.store_io import load_labels
        from prism_science.store import open_store

        with open_store(store_path, mode="r") as store:
            info = store.video_info(video_id)
            timestamps = info.timestamps if timestamps is None else timestamps
            where = f"{store_path} (video {video_id})"
            if store.has_item(video_id, STORE_SESSION_KEY):
                session = cls.from_dict(store.read_json(video_id, STORE_SESSION_KEY),
                                        n_frames=info.n_frames, timestamps=timestamps,
                                        source_name=where)
            else:
                session = cls(info.n_frames, info.fps, timestamps=timestamps,
                              video_path=info.source_path)
                for source in SOURCES:
                    if store.has_item(video_id, f"labels/{source}"):
                        session.add_table(load_labels(store, video_id, source))
            for name in store.list_items(video_id, "predictions"):
                relpath = f"predictions/{name}"
                try:
                    attrs = store.read_array_attrs(video_id, relpath)
                    proba = store.read_array(video_id, relpath)
                    if "classes" in attrs:
                        session.set_predictions(name, attrs["classes"], proba,
                                                attrs.get("thresholds", 0.5))
                except (StoreError, LabelError) as exc:
                    logger.warning("%s: predictions %r skipped: %s", where, name, exc)
        session.store = (Path(store_path), video_id)
        session._undo.clear()
        session._dirty = False
        session._predictions_dirty = False
        return session

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        n_frames: int | None = None,
        timestamps: np.ndarray | None = None,
        source_name: str = "session",
    ) -> LabelingSession:
        """Rebuild a session from :meth:`to_dict` data.

        Raises
        ------
        LabelError
            Not a session, a newer format version, or labels that do not fit the video.
        """
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise LabelError(f"{source_name}: not a prism-science session file (no format field)")
        if int(data.get("version", 0)) > SESSION_VERSION:
            raise LabelError(
                f"{source_name}: session version {data.get('version')} is newer than this "
                f"prism-science reads ({SESSION_VERSION}); upgrade prism-science"
            )
        video = data.get("video") or {}
        saved_n = int(video.get("n_frames") or 0)
        if n_frames is not None and saved_n and saved_n != n_frames:
            raise LabelError(
                f"{source_name}: session was made for a video of {saved_n} frames, this video "
                f"has {n_frames}; it belongs to another video"
            )
        session = cls(
            n_frames or saved_n, float(video.get("fps") or 30.0), timestamps=timestamps,
            video_path=video.get("path"), annotator=str(data.get("annotator") or ""),
        )
        for b in data.get("behaviors", []):
            session.add_behavior(Behavior(str(b["name"]), str(b.get("key", "")),
                                          str(b.get("color", "")), str(b.get("group", ""))))
        session.add_records(data.get("labels", []))
        session.subject = str(data.get("subject") or "")
        session.review = {str(k): str(v) for k, v in (data.get("review") or {}).items()}
        session.open_bouts = {str(k): int(v) for k, v in (data.get("open_bouts") or {}).items()}
        session._undo.clear()
        session._dirty = False
        return session

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        n_frames: int | None = None,
        timestamps: np.ndarray | None = None,
    ) -> LabelingSession:
        """Read a session file written by :meth:`save` (and its predictions, if any).

        Raises
        ------
        LabelError
            The file is not valid JSON or not a session, or does not fit the video.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LabelError(f"{path}: cannot read the session file ({exc})") from exc
        session = cls.from_dict(data, n_frames=n_frames, timestamps=timestamps,
                                source_name=str(path))
        session.path = path
        tracks = data.get("predictions") or {}
        pred_path = session.predictions_path(path)
        if tracks and pred_path is not None and pred_path.exists():
            with np.load(pred_path, allow_pickle=False) as arrays:
                for i, (name, meta) in enumerate(tracks.items()):
                    session.set_predictions(name, meta["classes"], arrays[f"proba_{i}"],
                                            meta.get("thresholds", 0.5))
        elif tracks:
            logger.warning("%s: predictions file %s is missing; predictions not loaded",
                           path, pred_path)
        session._dirty = False
        session._predictions_dirty = False
        session._last_save = time.monotonic()
        return session
