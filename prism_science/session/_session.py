"""The labeling session: ethogram, per-frame label masks, edits with undo, predictions, review."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import LabelError, ProbeError
from prism_science.labels.behaviors import BehaviorSet
from prism_science.labels.table import Interval, LabelTable, Segment
from prism_science.session._persist import SessionPersistence
from prism_science.session._types import (
    SOURCES,
    Behavior,
    Bout,
    PredictionTrack,
    ReviewItem,
    mask_to_runs,
)

logger = logging.getLogger(__name__)

_PALETTE = (
    "#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4",
    "#46f0f0", "#f032e6", "#bcf60c", "#008080", "#9a6324",
)
_UNDO_LIMIT = 200
_KEY_CANDIDATES = "qwertyuiopasdfghjklxcbnm"
RESERVED_KEYS = "vz"
"""Keys never chosen automatically (napari uses them: toggle visibility, pan/zoom mode)."""
"""Keys never chosen automatically (napari uses them: toggle visibility, pan/zoom mode)."""


@dataclass
class _Edit:
    """One undo step: the masks as they were before it (None: the mask did not exist)."""

    before: dict[tuple[str, str, str], np.ndarray | None] = field(default_factory=dict)
    after: dict[tuple[str, str, str], np.ndarray | None] = field(default_factory=dict)


class LabelingSession(SessionPersistence):
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
        self.features: tuple[Path, str] | None = None  # (store, video id) holding its features
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
        # Tracks read from `prism-science probe predict` output (predictions/<name>/scores):
        # saving the session leaves them where they are.
        self._cli_tracks: dict[str, PredictionTrack] = {}
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

    def set_features(self, store_path: str | os.PathLike[str], video_id: str) -> None:
        """Record the feature store and video id holding this video's features (saved)."""
        self.features = (Path(store_path), str(video_id))
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
        new = Behavior(name, key, color, behavior.group.strip(), bool(behavior.point))
        self.behaviors.append(new)
        self._changed()
        return new

    def update_behavior(self, name: str, **changes: Any) -> None:
        """Change the name, key, colour, group or ``point`` (a point event, or a state event
        when False) of a behavior; renaming keeps its labels."""
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
        behavior.point = bool(changes.get("point", behavior.point))
        if behavior.point:
            self.open_bouts.pop(behavior.name, None)
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
        at the frame before (the animal switched behavior). A point event (``Behavior.point``)
        has no start and stop: the key marks ``frame`` alone, or unmarks it when marked.

        Returns
        -------
        str
            ``"started"`` or ``"stopped"``; for a point event ``"point"`` or ``"removed"``.
        """
        frame = self._check_frame(frame)
        if self.behavior(behavior).point:
            return "point" if self.toggle_frame(behavior, frame) else "removed"
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

        Predicted bouts are the runs of :meth:`PredictionTrack.binary` (probabilities at least
        the track's thresholds, then the probe's bout post-processing, as ``prism-science probe
        predict`` saves them); their confidence is the mean probability over the bout.
        """
        out: list[Bout] = []
        if source in self.predictions:
            track = self.predictions[source]
            for behavior in track.classes:
                column = track.column(behavior)
                predicted = track.predicted(behavior)
                assert column is not None and predicted is not None
                for a, b in mask_to_runs(predicted):
                    conf = float(column[a : b + 1].mean())
                    out.append(Bout(behavior, "", a, b, "predicted", round(conf, 6)))
            return sorted(out, key=lambda x: (x.start_frame, x.behavior))
        if source not in SOURCES:
            raise LabelError(
                f"unknown label source {source!r}; expected one of {SOURCES} or a prediction "
                f"({', '.join(self.predictions) or 'none loaded'})"
            )
        order = {name: i for i, name in enumerate(self.behavior_names())}
        points = {b.name for b in self.behaviors if b.point}
        for (src, behavior, subject), mask in self._masks.items():
            if src != source:
                continue
            if behavior in points:  # each marked frame is an event of its own
                out.extend(Bout(behavior, subject, int(f), int(f), source, point=True)
                           for f in np.flatnonzero(mask))
            else:
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
        postprocess: dict[str, int] | None = None,
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
        postprocess : dict, optional
            The probe's bout post-processing ``{"min_bout": int, "max_gap": int}`` (its
            ``postprocess_``), applied to the thresholded frames as ``prism-science probe
            predict`` does; None: none.

        Raises
        ------
        LabelError
            ``proba`` does not have one row per frame and one column per class, or
            ``postprocess`` is not valid.
        """
        proba = np.asarray(proba, dtype=np.float32)
        if proba.ndim != 2 or proba.shape != (self.n_frames, len(classes)):
            raise LabelError(
                f"predictions {name!r} have shape {proba.shape}, expected ({self.n_frames}, "
                f"{len(classes)}) (frames x classes); predict with features of this video"
            )
        thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(classes),))
        # Imported here: the probes package loads torch, which importing a session must not.
        from prism_science.probes.postprocess import postprocess_settings

        try:
            settings = postprocess_settings(postprocess)
        except ProbeError as exc:
            raise LabelError(f"predictions {name!r}: {exc}") from exc
        track = PredictionTrack(name, [str(c) for c in classes], proba,
                                [float(t) for t in thresholds], settings)
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
            predicted = track.predicted(behavior)
            assert column is not None and predicted is not None
            for a, b in mask_to_runs(self.mask(behavior)):
                hit = predicted[a : b + 1]
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

    def accept_predictions(
        self,
        prediction: str,
        start: int,
        end: int,
        behaviors: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Accept a prediction's bouts on frames ``start..end`` as curated labels, in bulk.

        Every predicted frame of the range (the track's thresholds and bout post-processing, as
        on the timeline) becomes a curated label of its behavior; labels already there stay
        (frames the prediction leaves out are not unlabeled). Predicted bouts that lie wholly
        inside the range count as reviewed (``"accepted"``), so review skips them. One call is
        one undo step for the labels.

        Parameters
        ----------
        prediction : str
            Name of a prediction track (:attr:`predictions`).
        start, end : int
            Frames of the range, both included, in either order.
        behaviors : sequence of str, optional
            Only these behaviors of the track (default: all of them).

        Returns
        -------
        dict of str to int
            Behavior -> number of frames newly labeled curated.

        Raises
        ------
        LabelError
            No such prediction, a frame outside the video, or a behavior the track does not
            predict.
        """
        if prediction not in self.predictions:
            raise LabelError(f"no prediction named {prediction!r} to accept; predict first "
                             f"(loaded: {', '.join(self.predictions) or 'none'})")
        track = self.predictions[prediction]
        a, b = sorted((self._check_frame(start), self._check_frame(end)))
        names = list(track.classes) if behaviors is None else list(behaviors)
        for name in names:
            if name not in track.classes:
                raise LabelError(f"prediction {prediction!r} does not predict {name!r} "
                                 f"(it predicts {', '.join(track.classes)})")
        edit = _Edit()
        added: dict[str, int] = {}
        for name in names:
            predicted = track.predicted(name)
            assert predicted is not None
            key = ("curated", name, self.subject)
            before = self.mask(name, "curated").copy()
            for run_a, run_b in mask_to_runs(predicted[a : b + 1]):
                self._assign(edit, key, a + run_a, a + run_b, True)
            added[name] = int((self.mask(name, "curated") & ~before).sum())
        for bout in self.bouts(prediction):
            if bout.behavior in names and a <= bout.start_frame and bout.end_frame <= b:
                item_key = ReviewItem(prediction, bout.behavior, bout.start_frame,
                                      bout.end_frame, "", 0.0).key
                self.review.setdefault(item_key, "accepted")
        if edit.before:
            self._push(edit)
        self._changed()
        return added

    def reject(self, item: ReviewItem) -> None:
        """Reject a reviewed bout: recorded as rejected; no label is added anywhere."""
        self.review[item.key] = "rejected"
        self._changed()

    def edit(self, item: ReviewItem, start: int, end: int) -> None:
        """Accept a reviewed bout with corrected bounds (curated labels on ``start..end``)."""
        self.set_range(item.behavior, start, end, True, source="curated")
        self.review[item.key] = "edited"
        self._changed()
