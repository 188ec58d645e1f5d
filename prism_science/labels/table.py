"""The interval table of one video's behavior labels, and frame <-> seconds conversion.

Conventions (docs/ARCHITECTURE.md, docs/labels.md):

- frames are 0-based; ``start_frame`` and ``end_frame`` are both **inclusive**;
- ``start_s`` is the timestamp of ``start_frame``; ``end_s`` is the timestamp of the frame after
  ``end_frame`` (or the last timestamp + 1/fps), so ``end_s - start_s`` is the bout's duration;
  seconds come from the video's real per-frame timestamps when known (dropped frames), else from
  ``frame / fps``, else they are NaN;
- which frames count as labeled is explicit: the table's ``segments`` (annotated ranges), plus the
  frames of every interval. Frames outside both are unlabeled (-1 in the frame matrix).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prism_science.errors import LabelError
from prism_science.labels.behaviors import BehaviorSet

logger = logging.getLogger(__name__)

SOURCES = ("manual", "predicted", "curated")
SCHEMA = "prism-science/labels"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Interval:
    """One bout: a behavior of one subject from ``start_frame`` to ``end_frame`` (inclusive).

    ``box`` is an optional ``(x0, y0, x1, y1)`` pixel box (ChimpACT / KABR box-level labels).
    ``modifiers`` are the coder's qualifiers of the bout as the tool wrote them (BORIS:
    ``|``-joined, one per modifier set; empty when none). ``origin`` (e.g.
    ``"labels.csv, line 12"``) is only used in error messages.
    """

    behavior: str
    start_frame: int
    end_frame: int
    start_s: float = math.nan
    end_s: float = math.nan
    subject: str | None = None
    annotator: str = ""
    source: str = "manual"
    confidence: float | None = None
    box: tuple[float, float, float, float] | None = None
    modifiers: str = ""
    origin: str | None = field(default=None, compare=False, repr=False)

    @property
    def n_frames(self) -> int:
        """Number of frames covered (``end_frame - start_frame + 1``)."""
        return self.end_frame - self.start_frame + 1

    @property
    def duration_s(self) -> float:
        """``end_s - start_s`` (NaN when seconds are unknown)."""
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Segment:
    """A labeled (annotated) frame range, inclusive at both ends.

    ``subject=None`` applies to every subject; ``behaviors=None`` to every behavior, else only to
    the named ones (JAABA and Fly vs. Fly label each behavior separately).
    """

    start_frame: int
    end_frame: int
    subject: str | None = None
    behaviors: tuple[str, ...] | None = None


# --------------------------------------------------------------------------- timing
def frame_starts(n_frames: int | None, fps: float | None,
                 timestamps: np.ndarray | None) -> np.ndarray | None:
    """Start time of every frame plus the end of the last one.

    Returns
    -------
    numpy.ndarray or None
        float64 (n + 1,): ``t[i]`` the start of frame ``i``, ``t[n]`` the end of the video; from
        ``timestamps`` when given (last + 1/fps, or + the median step), else ``i / fps``; None
        when neither is known.
    """
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=np.float64)
        if ts.size == 0:
            return None
        if fps:
            step = 1.0 / fps
        elif ts.size > 1:
            step = float(np.median(np.diff(ts)))
        else:
            step = 0.0
        return np.append(ts, ts[-1] + step)
    if fps and n_frames is not None:
        return np.arange(n_frames + 1, dtype=np.float64) / fps
    return None


def frames_to_seconds(start_frame: int, end_frame: int, fps: float | None,
                      timestamps: np.ndarray | None = None) -> tuple[float, float]:
    """``(start_s, end_s)`` of an inclusive frame range (NaN without fps and timestamps)."""
    if timestamps is not None and len(timestamps) > 0:
        ts = np.asarray(timestamps, dtype=np.float64)
        n = len(ts)
        if 0 <= start_frame < n and 0 <= end_frame < n:
            start = float(ts[start_frame])
            if end_frame + 1 < n:
                return start, float(ts[end_frame + 1])
            step = 1.0 / fps if fps else (float(np.median(np.diff(ts))) if n > 1 else 0.0)
            return start, float(ts[-1] + step)
    if fps:
        return start_frame / fps, (end_frame + 1) / fps
    return math.nan, math.nan


def _tolerance(fps: float | None) -> float:
    # Times this close to a frame boundary count as on it: exports round times to 1 ms, so up to
    # 0.6 ms, but never more than a quarter frame at high frame rates.
    return min(6e-4, 0.25 / fps) if fps else 6e-4


def _nearest_boundary(bounds: np.ndarray, t: float, step: float) -> int:
    """Index of the frame boundary (frame start, or the video's end) nearest to ``t``.

    Times past the video's end extrapolate by ``step`` so that they come out as frames beyond
    the video (which validation reports) instead of clamping to the last frame.
    """
    if t > bounds[-1] and step > 0:
        return len(bounds) - 1 + int(math.floor((t - bounds[-1]) / step + 0.5))
    i = int(np.searchsorted(bounds, t))
    if i <= 0:
        return 0
    if i >= len(bounds):
        return len(bounds) - 1
    return i if bounds[i] - t <= t - bounds[i - 1] else i - 1  # ties round up


def seconds_to_frames(start_s: float, end_s: float | None, fps: float | None,
                      timestamps: np.ndarray | None = None) -> tuple[int, int]:
    """Inclusive frame range of a bout from ``start_s`` to ``end_s``; ``end_s=None``: a point.

    A bout's start and stop are snapped to the nearest frame boundary, so bouts that meet in
    time (one stops when the next starts) never share a frame, and times rounded to the
    millisecond land on the right frame: a bout from 1.0 s to 2.0 s at 10 fps covers frames
    10..19. A point event is the frame on screen at its time. With ``timestamps`` the real frame
    times are used (dropped frames), else ``fps``. A bout shorter than a frame keeps one frame.
    """
    if timestamps is not None and len(timestamps) > 0:
        ts = np.asarray(timestamps, dtype=np.float64)
        step = float(np.median(np.diff(ts))) if len(ts) > 1 else 0.0
        tol = _tolerance(fps or (1.0 / step if step > 0 else None))
        frame_step = 1.0 / fps if fps else step
        bounds = np.append(ts, ts[-1] + frame_step)
        shown = max(int(np.searchsorted(ts, start_s + tol, side="right")) - 1, 0)
        if start_s >= bounds[-1] and frame_step > 0:  # after the video: keep it visible
            shown = len(ts) + int(math.floor((start_s - bounds[-1]) / frame_step))
        if end_s is None:
            return shown, shown
        start = _nearest_boundary(bounds, start_s, frame_step)
        end = _nearest_boundary(bounds, end_s, frame_step) - 1
    else:
        if not fps:
            raise LabelError(
                "converting seconds to frames needs the video's fps or timestamps; found "
                "neither. Pass fps=... (--fps) or the video's timestamps."
            )
        shown = max(int(math.floor((start_s + _tolerance(fps)) * fps)), 0)
        if end_s is None:
            return shown, shown
        start = max(int(math.floor(start_s * fps + 0.5)), 0)  # nearest boundary, ties up
        end = int(math.floor(end_s * fps + 0.5)) - 1
    if end < start:
        return shown, shown
    return start, end


def check_fps(file_fps: float | None, video_fps: float | None, where: str,
              tolerance: float = 0.01) -> float | None:
    """Reconcile the frame rate written in a label file with the video's.

    Returns the fps to use (the video's when given). Raises LabelError naming both numbers when
    they differ by more than ``tolerance`` (relative; the labels likely belong to another video
    or were coded on a re-encoded copy), and warns for smaller differences (e.g. 29.97 vs 30).
    """
    if video_fps is None:
        return file_fps
    if file_fps is None or file_fps <= 0:
        return video_fps
    rel = abs(file_fps - video_fps) / video_fps
    if rel > tolerance:
        raise LabelError(
            f"{where}: frame rate {file_fps:g} fps in the label file differs from the video's "
            f"{video_fps:g} fps; expected the same rate. Check that the labels belong to this "
            "video, or pass the rate the labels were coded at as fps."
        )
    if rel > 1e-4:  # files round fps to 3 decimals; smaller differences are that rounding
        logger.warning(
            "%s: label file says %g fps, the video %g fps; converting seconds with the video's "
            "rate (drift over an hour: %.1f s)", where, file_fps, video_fps, 3600 * rel)
    return video_fps


# --------------------------------------------------------------------------- the table
@dataclass
class LabelTable:
    """The behavior labels of one video.

    Attributes
    ----------
    intervals : list of Interval
        The bouts (any order; :meth:`sorted` orders them).
    segments : list of Segment
        The labeled frame ranges. Empty means only the frames of the intervals are labeled.
    video_id : str or None
    n_frames, fps : int or None, float or None
        The video's length and nominal rate when known.
    timestamps : numpy.ndarray or None
        float64 (n_frames,) real per-frame times in seconds (irregular when frames dropped).
    behavior_set : BehaviorSet or None
        The vocabulary declared by the source (keeps behaviors with no bouts).
    origin : str or None
        The file the table was read from (for messages).
    observation : str or None
        The observation (coding session) the table comes from when the file names one: a BORIS
        observation id, a CalMS21 annotator group, an NWB bouts table. Several observations of
        one video (one per coder or focal animal) are separate tables.
    """

    intervals: list[Interval] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    video_id: str | None = None
    n_frames: int | None = None
    fps: float | None = None
    timestamps: np.ndarray | None = None
    behavior_set: BehaviorSet | None = None
    origin: str | None = None
    observation: str | None = None

    # ------------------------------------------------------------- queries
    def behaviors(self) -> BehaviorSet:
        """The declared behavior set plus any behavior that occurs in the intervals."""
        seen = list(dict.fromkeys(iv.behavior for iv in self.intervals))
        if self.behavior_set is None:
            return BehaviorSet(tuple(seen))
        return self.behavior_set.union(seen)

    def subjects(self) -> list[str | None]:
        """Subjects in order of first appearance (None for subject-less intervals)."""
        return list(dict.fromkeys(
            [iv.subject for iv in self.intervals] + [s.subject for s in self.segments
                                                     if s.subject is not None]))

    def sorted(self) -> LabelTable:
        """A copy with intervals ordered by (start_frame, behavior, subject)."""
        def key(iv: Interval) -> tuple:
            return (iv.start_frame, iv.end_frame, iv.behavior, iv.subject or "")

        return replace(self, intervals=sorted(self.intervals, key=key),
                       segments=sorted(self.segments, key=lambda s: (s.start_frame, s.end_frame)))

    def frame_times(self) -> np.ndarray | None:
        """float64 (n + 1,) frame start times plus the video's end; see :func:`frame_starts`."""
        return frame_starts(self.n_frames, self.fps, self.timestamps)

    def last_frame(self) -> int:
        """The last frame index known to the table (n_frames - 1, else the latest end)."""
        if self.n_frames is not None:
            return self.n_frames - 1
        ends = [iv.end_frame for iv in self.intervals] + [s.end_frame for s in self.segments]
        return max(ends, default=-1)

    # ------------------------------------------------------------- transformations
    def with_timing(self, fps: float | None = None, timestamps: np.ndarray | None = None,
                    n_frames: int | None = None) -> LabelTable:
        """A copy with the video's timing set and the intervals' seconds recomputed from frames."""
        fps = fps if fps is not None else self.fps
        ts = np.asarray(timestamps, np.float64) if timestamps is not None else self.timestamps
        if n_frames is None:
            n_frames = len(ts) if ts is not None else self.n_frames
        out = replace(self, fps=fps, timestamps=ts, n_frames=n_frames)
        return out.recompute_seconds()

    def recompute_seconds(self) -> LabelTable:
        """A copy whose ``start_s``/``end_s`` come from the frames and the table's timing."""
        if self.fps is None and self.timestamps is None:
            return replace(self, intervals=list(self.intervals))
        intervals = []
        for iv in self.intervals:
            s, e = frames_to_seconds(iv.start_frame, iv.end_frame, self.fps, self.timestamps)
            intervals.append(replace(iv, start_s=s, end_s=e))
        return replace(self, intervals=intervals)

    def mark_fully_labeled(self) -> LabelTable:
        """A copy whose only segment covers the whole video (every frame labeled)."""
        last = self.last_frame()
        segments = [Segment(0, last)] if last >= 0 else []
        return replace(self, segments=segments)

    def select(self, subject: str | None = None, behaviors: Iterable[str] | None = None,
               source: str | None = None) -> LabelTable:
        """A copy keeping the intervals of one subject / some behaviors / one source."""
        keep = set(behaviors) if behaviors is not None else None
        intervals = [
            iv for iv in self.intervals
            if (subject is None or iv.subject == subject)
            and (keep is None or iv.behavior in keep)
            and (source is None or iv.source == source)
        ]
        segments = [s for s in self.segments
                    if subject is None or s.subject is None or s.subject == subject]
        return replace(self, intervals=intervals, segments=segments)

    # ------------------------------------------------------------- validation
    def validate(self, behaviors: BehaviorSet | Sequence[str] | None = None) -> LabelTable:
        """Check the table; returns it unchanged, or raises LabelError naming the row and field.

        Checks: non-negative frames, ``end_frame >= start_frame``, frames inside the video when
        ``n_frames`` is known, source in {manual, predicted, curated}, confidence in [0, 1],
        behaviors known to ``behaviors`` (default: the table's ``behavior_set`` when set), and no
        overlapping intervals of one exclusive group for the same subject.
        """
        where = self.origin or (f"labels of video {self.video_id!r}" if self.video_id
                                else "label table")
        if behaviors is None:
            bset = self.behavior_set
        elif isinstance(behaviors, BehaviorSet):
            bset = behaviors
        else:
            bset = BehaviorSet(tuple(behaviors))
        if self.timestamps is not None and self.n_frames is not None \
                and len(self.timestamps) != self.n_frames:
            raise LabelError(
                f"{where}: {len(self.timestamps)} timestamps for n_frames={self.n_frames}; "
                "expected one timestamp per frame. Pass the video's own timestamps."
            )
        for iv in self.intervals:
            at = iv.origin or f"{where}, interval {iv.behavior!r} {iv.start_frame}-{iv.end_frame}"
            if iv.start_frame < 0:
                raise LabelError(f"{at}, field 'start_frame': expected a frame index >= 0, "
                                 f"found {iv.start_frame}. Frames are 0-based.")
            if iv.end_frame < iv.start_frame:
                raise LabelError(
                    f"{at}, field 'end_frame': end_frame={iv.end_frame} is before "
                    f"start_frame={iv.start_frame}; expected end_frame >= start_frame (both "
                    "inclusive). Fix or swap the two.")
            if self.n_frames is not None and iv.end_frame >= self.n_frames:
                raise LabelError(
                    f"{at}, field 'end_frame': frame {iv.end_frame} is beyond the video, which "
                    f"has n_frames={self.n_frames} (frames 0..{self.n_frames - 1}). Check that "
                    "the labels belong to this video and that the frame rate is right.")
            if iv.source not in SOURCES:
                raise LabelError(f"{at}, field 'source': expected one of {list(SOURCES)}, "
                                 f"found {iv.source!r}.")
            if iv.confidence is not None and not (0.0 <= iv.confidence <= 1.0):
                raise LabelError(f"{at}, field 'confidence': expected a value in [0, 1] or "
                                 f"empty, found {iv.confidence!r}.")
            if bset is not None and iv.behavior not in bset:
                raise LabelError(
                    f"{at}, field 'behavior': unknown behavior {iv.behavior!r}; expected one "
                    f"of {list(bset.names)}. Add it to the behavior set or fix the label.")
        for seg in self.segments:
            if seg.start_frame < 0 or seg.end_frame < seg.start_frame or (
                    self.n_frames is not None and seg.end_frame >= self.n_frames):
                raise LabelError(
                    f"{where}: labeled segment {seg.start_frame}-{seg.end_frame} is not inside "
                    f"the video (n_frames={self.n_frames}); expected 0 <= start <= end < "
                    "n_frames.")
        if bset is not None:
            self._check_exclusive(bset, where)
        return self

    def _check_exclusive(self, bset: BehaviorSet, where: str) -> None:
        for group in bset.exclusive_groups:
            members = set(group)
            by_subject: dict[str | None, list[Interval]] = {}
            for iv in self.intervals:
                if iv.behavior in members:
                    by_subject.setdefault(iv.subject, []).append(iv)
            for subject, ivs in by_subject.items():
                ivs.sort(key=lambda iv: (iv.start_frame, iv.end_frame))
                prev = None
                for iv in ivs:
                    if prev is not None and iv.start_frame <= prev.end_frame:
                        at = iv.origin or where
                        who = f" of subject {subject!r}" if subject is not None else ""
                        raise LabelError(
                            f"{at}: interval {iv.behavior!r} frames {iv.start_frame}-"
                            f"{iv.end_frame}{who} overlaps {prev.behavior!r} frames "
                            f"{prev.start_frame}-{prev.end_frame} ({prev.origin or 'same file'})"
                            f"; behaviors of the exclusive group {list(group)} cannot overlap. "
                            "Shorten one of them or give them different subjects.")
                    if prev is None or iv.end_frame > prev.end_frame:
                        prev = iv

    # ------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (the store's ``labels/<name>`` document); see :meth:`from_dict`."""
        ts = None
        if self.timestamps is not None:
            regular = (self.fps and np.allclose(
                self.timestamps, np.arange(len(self.timestamps)) / self.fps, atol=1e-6))
            ts = None if regular else [float(t) for t in self.timestamps]
        return {
            "schema": SCHEMA,
            "version": SCHEMA_VERSION,
            "video_id": self.video_id,
            "observation": self.observation,
            "n_frames": self.n_frames,
            "fps": self.fps,
            "timestamps": ts,
            "behavior_set": self.behavior_set.to_dict() if self.behavior_set else None,
            "intervals": [_interval_to_dict(iv) for iv in self.intervals],
            "segments": [
                {"start_frame": s.start_frame, "end_frame": s.end_frame, "subject": s.subject,
                 "behaviors": list(s.behaviors) if s.behaviors is not None else None}
                for s in self.segments
            ],
        }

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any], origin: str | None = None) -> LabelTable:
        """Inverse of :meth:`to_dict`; LabelError naming the field when the document is bad."""
        where = origin or "labels document"
        if not isinstance(obj, Mapping) or obj.get("schema") != SCHEMA:
            raise LabelError(
                f"{where}: expected a labels document with schema {SCHEMA!r}, found "
                f"{(obj.get('schema') if isinstance(obj, Mapping) else type(obj).__name__)!r}. "
                "Write it with save_labels / LabelTable.to_dict.")
        if int(obj.get("version", 0)) > SCHEMA_VERSION:
            raise LabelError(
                f"{where}: labels schema version {obj.get('version')} is newer than this "
                f"prism-science reads ({SCHEMA_VERSION}); upgrade prism-science.")
        try:
            intervals = [
                Interval(
                    behavior=str(d["behavior"]), start_frame=int(d["start_frame"]),
                    end_frame=int(d["end_frame"]),
                    start_s=_nan(d.get("start_s")), end_s=_nan(d.get("end_s")),
                    subject=None if d.get("subject") is None else str(d["subject"]),
                    annotator=d.get("annotator") or "",
                    source=d.get("source") or "manual", confidence=d.get("confidence"),
                    box=tuple(d["box"]) if d.get("box") is not None else None,
                    modifiers=d.get("modifiers") or "",
                    origin=f"{where}, intervals[{i}]",
                )
                for i, d in enumerate(obj.get("intervals", []))
            ]
            segments = [
                Segment(int(s["start_frame"]), int(s["end_frame"]), s.get("subject"),
                        tuple(s["behaviors"]) if s.get("behaviors") is not None else None)
                for s in obj.get("segments", [])
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise LabelError(f"{where}: malformed interval or segment ({exc!r}); expected the "
                             "fields written by LabelTable.to_dict.") from exc
        ts = obj.get("timestamps")
        fps = obj.get("fps")
        n_frames = obj.get("n_frames")
        timestamps = np.asarray(ts, np.float64) if ts is not None else (
            np.arange(n_frames, dtype=np.float64) / fps if fps and n_frames is not None
            else None)
        bs = obj.get("behavior_set")
        return cls(intervals, segments, obj.get("video_id"), n_frames, fps, timestamps,
                   BehaviorSet.from_dict(bs) if bs else None, origin, obj.get("observation"))


def _nan(value: Any) -> float:
    return math.nan if value is None else float(value)


def _json_float(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def _interval_to_dict(iv: Interval) -> dict[str, Any]:
    return {
        "behavior": iv.behavior, "subject": iv.subject,
        "start_frame": int(iv.start_frame), "end_frame": int(iv.end_frame),
        "start_s": _json_float(iv.start_s), "end_s": _json_float(iv.end_s),
        "annotator": iv.annotator, "source": iv.source,
        "confidence": _json_float(iv.confidence) if iv.confidence is not None else None,
        "box": [float(v) for v in iv.box] if iv.box is not None else None,
        "modifiers": iv.modifiers,
    }


def merge_tables(tables: Sequence[LabelTable], video_id: str | None = None) -> LabelTable:
    """One table holding the intervals and segments of ``tables`` (e.g. one per subject).

    Timing and length come from the first table that has them; behavior sets are united.
    """
    if not tables:
        return LabelTable(video_id=video_id)
    first = tables[0]
    bset = None
    for t in tables:
        if t.behavior_set is not None:
            bset = t.behavior_set if bset is None else bset.union(t.behavior_set)
    n_frames = max((t.n_frames for t in tables if t.n_frames is not None), default=None)
    fps = next((t.fps for t in tables if t.fps is not None), None)
    ts = next((t.timestamps for t in tables if t.timestamps is not None), None)
    return LabelTable(
        intervals=[iv for t in tables for iv in t.intervals],
        segments=[s for t in tables for s in t.segments],
        video_id=video_id if video_id is not None else first.video_id,
        n_frames=n_frames, fps=fps, timestamps=ts, behavior_set=bset, origin=first.origin,
        observation=first.observation,
    )
