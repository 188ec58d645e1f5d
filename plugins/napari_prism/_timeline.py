"""The timeline: behaviors x frames, drawn with QPainter, under the napari canvas.

Each behavior has a row: manual labels (solid; a point event is a tick the row's height with a
diamond on top), curated labels (hatched strip), the selected
prediction's probabilities (colour whose opacity is the probability) and, under them, its
predicted bouts (a thin solid strip: thresholds then the probe's bout post-processing, from
:meth:`prism_science.session.PredictionTrack.binary`, the bouts ``prism-science probe predict``
saves). Predicted bouts rejected in review are drawn grey and crossed out; accepted ones are in
the curated strip. A ruler on top shows frame numbers, and the current frame with its time
(hh:mm:ss.mmm, from the frame's timestamp); the current frame is a vertical line. A click on the
ruler or on a row moves to that frame (drag on the ruler to scrub); drag across frames of a row
with the left button to label them, with the right button to unlabel them; the mouse wheel zooms
around the pointer, Shift+wheel pans. Optional extra rows show the frames
suggested for labeling and a text-search similarity curve, drawn on an absolute cosine scale
(:func:`similarity_axis`) with its matching ranges shaded. Setting them grows the widget so the
rows fit; in a dock too short for them they are drawn at its bottom edge, over the last rows.

Several animals (:attr:`TimelineWidget.track_subjects`, the subjects of the loaded tracks, plus
the subjects of the labels): one group of rows per subject, under a header row with the
subject's name and its track colour (:func:`subject_color`; the labeling target is marked and
brighter). Each group shows that subject's labels and its own prediction set (the per-subject
set ``<name>@<subject>`` that ``prism-science probe predict`` writes for per-subject probes);
a drag in a group's row labels that subject, a click on a header makes it the labeling target.
Labels without a subject and whole-frame predictions are in a group of their own
(*no subject*).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt, Signal
from qtpy.QtGui import QBrush, QColor, QImage, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from prism_science.session import LabelingSession, PredictionTrack, mask_to_runs

__all__ = ["SUBJECT_COLOURS", "TimelineWidget", "similarity_axis", "subject_color"]

LABEL_WIDTH = 150
RULER_HEIGHT = 20
ROW_HEIGHT = 26
EXTRA_ROW_HEIGHT = 30
SEARCH_ROW_HEIGHT = 46
MIN_FRAMES_VISIBLE = 20
MAX_MIN_HEIGHT = 200
# Bands of a behavior row, (offset from the row's top, height) in pixels.
MANUAL_BAND = (2, 11)
CURATED_BAND = (13, 4)
PROBABILITY_BAND = (17, 5)
PREDICTED_BAND = (22, 3)
REJECTED_COLOUR = QColor(110, 110, 110)
REJECTED_CROSS = QColor(230, 60, 60)
HEADER_HEIGHT = 18
SUBJECT_COLOURS = ("#1f9bff", "#ff8c1a", "#2ecc40", "#f03ce0", "#ffe11a", "#1affd5",
                   "#ff4136", "#b18cff")
"""Colours of the subjects of a video, in track order (timeline headers and tracks layer)."""
NO_SUBJECT = "no subject"


def subject_color(index: int) -> str:
    """``#rrggbb`` colour of the ``index``-th subject (cycling through :data:`SUBJECT_COLOURS`)."""
    return SUBJECT_COLOURS[index % len(SUBJECT_COLOURS)]


def _subject_set_name(name: str, subject: str) -> str:
    """The per-subject prediction set of ``name`` (as the pipeline names it)."""
    # Imported here: the pipeline loads torch, which drawing an empty timeline need not wait for.
    from prism_science.pipeline.subjects import subject_prediction_name

    return subject_prediction_name(name, subject)


def similarity_axis(values: np.ndarray) -> tuple[float, float]:
    """Axis limits of a cosine-similarity curve: whole tenths around the values, zero included,
    at least 0.2 wide, so that differences of a few hundredths never fill the row."""
    lo = min(0.0, float(np.floor(np.min(values) * 10 + 1e-6)) / 10)
    hi = max(0.0, float(np.ceil(np.max(values) * 10 - 1e-6)) / 10)
    if hi - lo < 0.2:
        if hi > 0:
            hi = lo + 0.2
        else:
            lo = hi - 0.2
    return lo, hi


def _bin(values: np.ndarray, f0: int, f1: int, width: int, how: str) -> np.ndarray:
    """Values of frames f0..f1-1 -> one value per pixel column ("max" or "mean"), (width,)."""
    seg = values[f0:f1].astype(np.float32, copy=False)
    if seg.size == 0 or width <= 0:
        return np.zeros(max(width, 0), dtype=np.float32)
    if seg.size <= width:  # zoomed in: each frame covers one or more columns
        idx = (np.arange(width) * seg.size) // width
        return seg[idx]
    edges = (np.arange(width) * seg.size) // width
    if how == "max":
        return np.maximum.reduceat(seg, edges)
    sums = np.add.reduceat(seg, edges)
    counts = np.diff(np.append(edges, seg.size))
    return sums / counts


class TimelineWidget(QWidget):
    """Timeline of one labeling session (see the module docstring).

    Signals
    -------
    frameRequested(int)
        The user clicked or dragged to a frame; the owner moves the viewer there.
    subjectRequested(str)
        The user clicked a subject's header row: make it the labeling target.
    """

    frameRequested = Signal(int)
    subjectRequested = Signal(str)

    def __init__(self, session: LabelingSession | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.session: LabelingSession | None = None
        self.current_frame = 0
        self.view_start = 0.0
        self.view_frames = 1.0
        self.prediction: str | None = None  # track shown; None: the last one added
        self._suggestions = np.zeros(0, dtype=np.int64)
        self._similarity: np.ndarray | None = None
        self.search_ranges: list[tuple[int, int]] = []  # (start, end) inclusive, shaded
        self.track_subjects: list[str] = []  # subjects of the loaded tracks, in track order
        # (subject, behavior, start frame, value); subject None: the session's current one
        self._drag: tuple[str | None, str, int, bool] | None = None
        self._drag_end = 0
        self._scrubbing = False
        self.setMouseTracking(False)
        self.setFocusPolicy(Qt.ClickFocus)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Preferred)
        self.setMinimumHeight(RULER_HEIGHT + ROW_HEIGHT)
        if session is not None:
            self.set_session(session)

    # ------------------------------------------------------------------ state
    def set_session(self, session: LabelingSession | None) -> None:
        """Show another session (None: empty timeline)."""
        if self.session is not None:
            self.session.unsubscribe(self._on_session_changed)
        self.session = session
        if session is not None:
            session.subscribe(self._on_session_changed)
            self.view_start, self.view_frames = 0.0, float(session.n_frames)
        self._suggestions = np.zeros(0, dtype=np.int64)
        self._similarity = None
        self.search_ranges = []
        self._on_session_changed()

    @property
    def suggestions(self) -> np.ndarray:
        """Frames suggested for labeling, (k,) int64, drawn as ticks in their own row."""
        return self._suggestions

    @suggestions.setter
    def suggestions(self, frames: np.ndarray) -> None:
        self._suggestions = np.asarray(frames, dtype=np.int64).ravel()
        self._on_session_changed()

    @property
    def similarity(self) -> np.ndarray | None:
        """(n_frames,) cosine similarity of a text search, or None; drawn in its own row."""
        return self._similarity

    @similarity.setter
    def similarity(self, curve: np.ndarray | None) -> None:
        self._similarity = None if curve is None else np.asarray(curve, dtype=np.float32)
        self._on_session_changed()

    def set_track_subjects(self, subjects: list[str]) -> None:
        """The subjects of the loaded tracks (their groups come first, in this order)."""
        self.track_subjects = [str(s) for s in subjects]
        self._on_session_changed()

    def _on_session_changed(self) -> None:
        try:
            # Many behaviors must not squeeze the video: past MAX_MIN_HEIGHT the dock's edge
            # can be dragged to show every row.
            self.setMinimumHeight(min(self.sizeHint().height(), MAX_MIN_HEIGHT))
            self.updateGeometry()
            self.update()
        except RuntimeError:  # the dock was closed and Qt deleted the widget: stop listening
            if self.session is not None:
                self.session.unsubscribe(self._on_session_changed)

    def set_current_frame(self, frame: int) -> None:
        """Move the cursor; scrolls the view to keep the frame visible."""
        self.current_frame = int(frame)
        end = self.view_start + self.view_frames
        if not self.view_start <= frame < end:
            self.view_start = self._clamp_start(frame - self.view_frames / 2)
        self.update()

    def set_view(self, start: float, frames: float) -> None:
        """Show ``frames`` frames from ``start`` (clamped to the video)."""
        n = self._n_frames()
        self.view_frames = float(min(max(frames, min(MIN_FRAMES_VISIBLE, n)), n))
        self.view_start = self._clamp_start(start)
        self.update()

    def zoom(self, factor: float, anchor_frame: float | None = None) -> None:
        """Zoom by ``factor`` (> 1 zooms in) keeping ``anchor_frame`` under the same pixel."""
        anchor = self.current_frame if anchor_frame is None else anchor_frame
        rel = (anchor - self.view_start) / self.view_frames
        frames = self.view_frames / factor
        n = self._n_frames()
        frames = float(min(max(frames, min(MIN_FRAMES_VISIBLE, n)), n))
        self.view_frames = frames
        self.view_start = self._clamp_start(anchor - rel * frames)
        self.update()

    def _n_frames(self) -> int:
        return self.session.n_frames if self.session is not None else 1

    def _clamp_start(self, start: float) -> float:
        return float(min(max(start, 0.0), max(self._n_frames() - self.view_frames, 0.0)))

    # ------------------------------------------------------------------ geometry
    def subject_groups(self) -> list[str]:
        """Subjects with a group of rows, in order ("" for labels without a subject); empty
        when there is one subject or none (then the rows are the current subject's)."""
        session = self.session
        if session is None:
            return []
        names = list(self.track_subjects)
        names += [s for s in session.subjects() if s and s not in names]
        if not names:
            return []
        unassigned = session.subject == "" or any(
            session.mask(b, source, "").any() for b in session.behavior_names()
            for source in ("manual", "curated"))
        if not unassigned:
            unassigned = any("@" not in name for name in session.predictions)
        if unassigned:
            names.insert(0, "")
        return names if len(names) > 1 else []

    def _entries(self) -> list[tuple[float, int, str | None, str | None]]:
        """Rows top to bottom: (top, height, subject, behavior); behavior None: a subject's
        header; subject None: the session's current subject (a single group, no header)."""
        behaviors = self.session.behavior_names() if self.session is not None else []
        out: list[tuple[float, int, str | None, str | None]] = []
        top = float(RULER_HEIGHT)
        groups = self.subject_groups()
        for subject in groups or [None]:
            if subject is not None:
                out.append((top, HEADER_HEIGHT, subject, None))
                top += HEADER_HEIGHT
            for behavior in behaviors:
                out.append((top, ROW_HEIGHT, subject, behavior))
                top += ROW_HEIGHT
        return out

    def _rows_height(self) -> int:
        entries = self._entries()
        return int(entries[-1][0] + entries[-1][1] - RULER_HEIGHT) if entries else 0

    def _rows(self) -> list[str]:
        return self.session.behavior_names() if self.session is not None else []

    def _extra_rows(self) -> list[str]:
        rows = []
        if self.suggestions.size:
            rows.append("suggested")
        if self.similarity is not None:
            rows.append("search")
        return rows

    def sizeHint(self):  # noqa: N802 - Qt API
        size = super().sizeHint()
        height = RULER_HEIGHT + max(self._rows_height(), ROW_HEIGHT)
        height += self._extra_height() + 4
        size.setHeight(height)
        return size

    @staticmethod
    def _row_height(name: str) -> int:
        return SEARCH_ROW_HEIGHT if name == "search" else EXTRA_ROW_HEIGHT

    def _extra_height(self) -> int:
        return sum(self._row_height(name) for name in self._extra_rows())

    def _extra_top(self) -> int:
        """Top of the extra rows: under the behavior rows, or higher when the widget is short."""
        top = RULER_HEIGHT + self._rows_height()
        return max(min(top, self.height() - self._extra_height()), RULER_HEIGHT)

    def frame_at(self, x: float) -> int:
        """Frame under pixel column ``x`` (clamped to the video)."""
        width = max(self.width() - LABEL_WIDTH, 1)
        frame = self.view_start + (x - LABEL_WIDTH) / width * self.view_frames
        return int(min(max(int(np.floor(frame)), 0), self._n_frames() - 1))

    def x_of(self, frame: float) -> float:
        """Pixel column of the left edge of ``frame``."""
        width = max(self.width() - LABEL_WIDTH, 1)
        return LABEL_WIDTH + (frame - self.view_start) / self.view_frames * width

    def row_at(self, y: float) -> str | None:
        """Behavior of the row under pixel row ``y``, or None (ruler, headers, extra rows)."""
        entry = self.entry_at(y)
        return entry[1] if entry is not None else None

    def entry_at(self, y: float) -> tuple[str, str | None] | None:
        """(subject, behavior) of the row under pixel row ``y`` (behavior None: the subject's
        header row; subject: the session's current one when there are no groups), or None."""
        if self.session is None or y < RULER_HEIGHT:
            return None
        for top, height, subject, behavior in self._entries():
            if top <= y < top + height:
                return (self.session.subject if subject is None else subject), behavior
        return None

    def row_top(self, subject: str | None, behavior: str | None) -> float | None:
        """Top pixel of the row of ``behavior`` in ``subject``'s group (``behavior`` None: the
        header; ``subject`` None: the only group), or None when not shown."""
        for top, _, group, name in self._entries():
            if name == behavior and (subject is None or group is None or group == subject):
                return top
        return None

    def track_for(self, subject: str) -> PredictionTrack | None:
        """The prediction track shown for ``subject``: the per-subject set of the selected
        prediction (``<name>@<subject>``), else (labels without a subject, or one subject
        and whole-frame predictions) the selected prediction itself."""
        if self.session is None or not self.session.predictions:
            return None
        predictions = self.session.predictions
        name = self.prediction if self.prediction is not None else list(predictions)[-1]
        base = name.rsplit("@", 1)[0] if "@" in name else name
        if subject:
            per_subject = predictions.get(_subject_set_name(base, subject))
            if per_subject is not None:
                return per_subject
            if self.subject_groups():
                return None  # a whole-frame prediction belongs to the "no subject" group
        if base in predictions:
            return predictions[base]
        last = list(predictions)[-1]
        return predictions[last] if "@" not in last else None

    def _shown_track(self) -> PredictionTrack | None:
        if self.session is None:
            return None
        return self.track_for(self.session.subject)

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt API
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        palette = self.palette()
        painter.fillRect(self.rect(), QColor(38, 41, 48))
        painter.setPen(palette.text().color())
        session = self.session
        if session is None:
            painter.setPen(QColor(200, 200, 200))
            painter.drawText(self.rect(), Qt.AlignCenter, "open a video to see its timeline")
            return
        width = self.width() - LABEL_WIDTH
        f0 = int(np.floor(self.view_start))
        f1 = int(min(np.ceil(self.view_start + self.view_frames), session.n_frames))
        x0 = int(self.x_of(f0))
        x1 = int(self.x_of(f1))
        cols = max(x1 - x0, 1)
        self._paint_ruler(painter, width)
        groups = self.subject_groups()
        for row, (top, _, group, name) in enumerate(self._entries()):
            subject = session.subject if group is None else group
            if name is None:
                self._paint_header(painter, top, subject, groups)
                continue
            self._paint_row(painter, row, top, subject, session.behavior(name),
                            self.track_for(subject), f0, f1, cols, x0)
        self._paint_extra_rows(painter, f0, f1, cols, x0)
        x = self.x_of(self.current_frame)
        painter.setPen(QPen(QColor(255, 255, 255), 1))
        painter.drawLine(QPointF(x, 0), QPointF(x, self.height()))

    def _paint_header(self, painter: QPainter, top: float, subject: str,
                      groups: list[str]) -> None:
        """A subject's header row: its track colour, its name; the labeling target marked."""
        assert self.session is not None
        active = subject == self.session.subject
        tracked = [s for s in groups if s in self.track_subjects]
        index = self.track_subjects.index(subject) if subject in tracked else \
            len(self.track_subjects) + groups.index(subject)
        color = QColor(subject_color(index)) if subject else QColor(150, 150, 150)
        painter.fillRect(QRectF(0, top, self.width(), HEADER_HEIGHT - 1),
                         QColor(62, 68, 82) if active else QColor(30, 32, 38))
        painter.fillRect(QRectF(0, top, 4 if not active else 6, HEADER_HEIGHT - 1), color)
        painter.setPen(QColor(255, 255, 255) if active else QColor(170, 170, 170))
        text = subject or NO_SUBJECT
        painter.drawText(QRectF(10, top, self.width() - 14, HEADER_HEIGHT), Qt.AlignVCenter,
                         f"{text}   (labeling target: the keys label this subject)"
                         if active else text)

    def _paint_row(self, painter: QPainter, row: int, top: float, subject: str,
                   behavior: Any, track: PredictionTrack | None, f0: int, f1: int, cols: int,
                   x0: int) -> None:
        """One behavior's row of one subject: labels, curated labels, prediction, open bout."""
        session = self.session
        assert session is not None
        color = QColor(behavior.color or "#888888")
        painter.fillRect(QRectF(0, top, self.width(), ROW_HEIGHT - 1),
                         QColor(48, 52, 60) if row % 2 else QColor(44, 47, 55))
        painter.setPen(QColor(230, 230, 230))
        painter.fillRect(QRectF(4, top + 8, 10, 10), color)
        key = f" [{behavior.key}]" if behavior.key else ""
        painter.drawText(QRectF(18, top, LABEL_WIDTH - 20, ROW_HEIGHT), Qt.AlignVCenter,
                         f"{behavior.name}{key}")
        manual_mask = session.mask(behavior.name, subject=subject)
        curated_mask = session.mask(behavior.name, "curated", subject)
        if behavior.point:  # point events: a tick the row's height at each marked frame
            self._paint_points(painter, curated_mask, f0, f1, top, color.darker(160))
            self._paint_points(painter, manual_mask, f0, f1, top, color)
        manual = _bin(manual_mask, f0, f1, cols, "max")
        if behavior.point:
            manual[:] = 0
        for a, b in mask_to_runs(manual > 0):
            painter.fillRect(QRectF(x0 + a, top + MANUAL_BAND[0], b - a + 1, MANUAL_BAND[1]),
                             color)
        curated = _bin(curated_mask, f0, f1, cols, "max")
        hatch = QBrush(color.darker(130), Qt.BDiagPattern)
        for a, b in mask_to_runs(curated > 0):
            rect = QRectF(x0 + a, top + CURATED_BAND[0], b - a + 1, CURATED_BAND[1])
            painter.fillRect(rect, color.darker(160))
            painter.fillRect(rect, hatch)
        if track is not None:
            column = track.column(behavior.name)
            predicted = track.predicted(behavior.name)
            if column is not None and predicted is not None:
                self._paint_probability(painter, column, f0, f1, cols, x0,
                                        top + PROBABILITY_BAND[0], color)
                bouts = _bin(predicted, f0, f1, cols, "max")
                offset, height = PREDICTED_BAND
                for a, b in mask_to_runs(bouts > 0):
                    painter.fillRect(QRectF(x0 + a, top + offset, b - a + 1, height), color)
                self._paint_rejected(painter, track.name, behavior.name, f0, f1, top)
        if behavior.name in session.open_bouts and subject == session.subject:
            start = session.open_bouts[behavior.name]
            a, b = sorted((start, self.current_frame))
            rect = QRectF(self.x_of(a), top + 2, self.x_of(b + 1) - self.x_of(a), 11)
            painter.fillRect(rect, QColor(color.red(), color.green(), color.blue(), 90))
            painter.setPen(QPen(color.lighter(150), 1, Qt.DashLine))
            painter.drawRect(rect)
        drag = self._drag
        if drag is not None and drag[1] == behavior.name and \
                (drag[0] is None or drag[0] == subject):
            a, b = sorted((drag[2], self._drag_end))
            rect = QRectF(self.x_of(a), top + 1, self.x_of(b + 1) - self.x_of(a), 13)
            fill = QColor(color) if drag[3] else QColor(20, 20, 20)
            fill.setAlpha(140)
            painter.fillRect(rect, fill)

    def _paint_points(self, painter: QPainter, mask: np.ndarray, f0: int, f1: int, top: int,
                      color: QColor) -> None:
        """Point events: a vertical tick (at least 2 px wide) at each marked frame, with a
        small diamond on top, so that a one-frame event stays visible when zoomed out."""
        for frame in np.flatnonzero(mask[f0:f1]) + f0:
            x = self.x_of(frame + 0.5)
            width = max(2.0, self.x_of(frame + 1) - self.x_of(frame) - 1)
            painter.fillRect(QRectF(x - width / 2, top + 3, width, ROW_HEIGHT - 6), color)
            painter.fillRect(QRectF(x - 3, top + 1, 6, 4), color.lighter(130))

    def rejected(self, track: str, behavior: str) -> list[tuple[int, int]]:
        """(start, end) frames, inclusive, of the bouts of ``behavior`` in prediction
        ``track`` rejected in review."""
        assert self.session is not None
        out = []
        for key, decision in self.session.review.items():
            parts = key.rsplit("|", 3)
            if decision == "rejected" and len(parts) == 4 and parts[:2] == [track, behavior]:
                out.append((int(parts[2]), int(parts[3])))
        return out

    def _paint_rejected(
        self, painter: QPainter, track: str, behavior: str, f0: int, f1: int, top: float,
    ) -> None:
        """Rejected bouts: probability and predicted strips grey, crossed out in red."""
        y, bottom = top + PROBABILITY_BAND[0], top + PREDICTED_BAND[0] + PREDICTED_BAND[1]
        for start, end in self.rejected(track, behavior):
            if end < f0 or start >= f1:
                continue
            a, b = self.x_of(max(start, f0)), self.x_of(min(end + 1, f1))
            rect = QRectF(a, y, max(b - a, 1.0), bottom - y)
            painter.fillRect(rect, REJECTED_COLOUR)
            painter.fillRect(rect, QBrush(REJECTED_CROSS, Qt.DiagCrossPattern))

    def _paint_ruler(self, painter: QPainter, width: int) -> None:
        painter.fillRect(QRectF(0, 0, self.width(), RULER_HEIGHT), QColor(28, 30, 36))
        painter.setPen(QColor(180, 180, 180))
        assert self.session is not None
        from prism_science.search import format_time

        frame = min(max(self.current_frame, 0), self.session.n_frames - 1)
        painter.drawText(QRectF(4, 0, LABEL_WIDTH - 8, RULER_HEIGHT), Qt.AlignVCenter,
                         f"{frame}  {format_time(self.session.timestamps[frame])}"
                         + (f"  {self.session.subject}" if self.session.subject
                            and not self.subject_groups() else ""))
        target_px = 80
        raw = self.view_frames * target_px / max(width, 1)
        step = max(1, int(10 ** np.floor(np.log10(max(raw, 1)))))
        for mult in (1, 2, 5, 10):
            if step * mult >= raw:
                step *= mult
                break
        first = int(np.ceil(self.view_start / step) * step)
        for frame in range(first, int(self.view_start + self.view_frames) + 1, step):
            x = self.x_of(frame)
            painter.drawLine(QPointF(x, RULER_HEIGHT - 6), QPointF(x, RULER_HEIGHT))
            painter.drawText(QPointF(x + 2, RULER_HEIGHT - 7), str(frame))

    def _paint_probability(
        self, painter: QPainter, column: np.ndarray, f0: int, f1: int, cols: int, x0: int,
        top: float, color: QColor,
    ) -> None:
        values = np.clip(_bin(column, f0, f1, cols, "mean"), 0.0, 1.0)
        rgba = np.empty((1, cols, 4), dtype=np.uint8)
        rgba[..., 0], rgba[..., 1], rgba[..., 2] = color.red(), color.green(), color.blue()
        rgba[..., 3] = (values * 255).astype(np.uint8)
        image = QImage(rgba.data, cols, 1, cols * 4, QImage.Format_RGBA8888)
        painter.drawImage(QRectF(x0, top, cols, PROBABILITY_BAND[1]), image)

    def _paint_extra_rows(self, painter: QPainter, f0: int, f1: int, cols: int, x0: int) -> None:
        top = self._extra_top()
        for name in self._extra_rows():
            height = self._row_height(name)
            painter.fillRect(QRectF(0, top, self.width(), height - 1), QColor(34, 37, 44))
            painter.setPen(QColor(230, 230, 230))
            if name == "suggested":
                painter.drawText(QRectF(6, top, LABEL_WIDTH - 8, height), Qt.AlignVCenter, name)
                painter.setPen(QPen(QColor(255, 200, 0), 2))
                for frame in self.suggestions:
                    if f0 <= frame < f1:
                        x = self.x_of(frame + 0.5)
                        painter.drawLine(QPointF(x, top + 4), QPointF(x, top + height - 4))
            elif self.similarity is not None:
                self._paint_similarity(painter, top, height, f0, f1, cols, x0)
            top += height

    def _paint_similarity(
        self, painter: QPainter, top: float, height: int, f0: int, f1: int, cols: int, x0: int,
    ) -> None:
        """The curve on a fixed cosine axis (labelled at its ends), matching ranges shaded."""
        assert self.similarity is not None
        lo, hi = similarity_axis(self.similarity)
        y_top, y_bottom = top + 4, top + height - 5

        def y_of(value: float) -> float:
            return y_bottom - (value - lo) / (hi - lo) * (y_bottom - y_top)

        painter.drawText(QRectF(6, top, LABEL_WIDTH - 40, height), Qt.AlignVCenter,
                         "search\ncosine")
        painter.setPen(QColor(160, 160, 160))
        for value in (hi, lo):
            painter.drawText(QRectF(LABEL_WIDTH - 36, y_of(value) - 7, 32, 14),
                             Qt.AlignRight | Qt.AlignVCenter, f"{value:.1f}")
        for start, end in self.search_ranges:
            if end >= f0 and start < f1:
                a, b = self.x_of(max(start, f0)), self.x_of(min(end + 1, f1))
                painter.fillRect(QRectF(a, y_top, b - a, y_bottom - y_top),
                                 QColor(120, 220, 255, 45))
        if lo < 0 < hi:
            painter.setPen(QPen(QColor(110, 110, 110), 1, Qt.DashLine))
            painter.drawLine(QPointF(x0, y_of(0.0)), QPointF(x0 + cols, y_of(0.0)))
        values = _bin(self.similarity, f0, f1, cols, "max")
        path = QPainterPath()
        for i, value in enumerate(values):
            point = QPointF(x0 + i, y_of(float(value)))
            if i == 0:
                path.moveTo(point)
            else:
                path.lineTo(point)
        painter.setPen(QPen(QColor(120, 220, 255), 1.5))
        painter.drawPath(path)

    # ------------------------------------------------------------------ mouse
    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt API
        if self.session is None:
            return
        pos = event.pos()
        entry = self.entry_at(pos.y())
        frame = self.frame_at(pos.x())
        if entry is not None and entry[1] is None:  # a subject's header: the labeling target
            self.subjectRequested.emit(entry[0])
            return
        if entry is None or pos.x() < LABEL_WIDTH:
            if pos.x() >= LABEL_WIDTH:
                self._scrubbing = True
                self.frameRequested.emit(frame)
            return
        value = event.button() == Qt.LeftButton
        subject = entry[0] if self.subject_groups() else None
        self._drag = (subject, entry[1], frame, value)
        self._drag_end = frame
        self.update()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt API
        frame = self.frame_at(event.pos().x())
        if self._scrubbing:
            self.frameRequested.emit(frame)
        elif self._drag is not None:
            self._drag_end = frame
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt API
        self._scrubbing = False
        if self._drag is not None and self.session is not None:
            subject, behavior, start, value = self._drag
            self._drag = None
            end = self.frame_at(event.pos().x())
            if end == start:  # a click, not a drag: go there
                self.frameRequested.emit(start)
            else:
                self.session.set_range(behavior, start, end, value, subject=subject)
            self.update()

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt API
        delta = event.angleDelta().y() or event.angleDelta().x()
        if not delta or self.session is None:
            return
        if event.modifiers() & Qt.ShiftModifier:
            shift = -np.sign(delta) * self.view_frames * 0.1
            self.set_view(self.view_start + shift, self.view_frames)
        else:
            x = event.position().x() if hasattr(event, "position") else event.pos().x()
            self.zoom(1.25 if delta > 0 else 0.8, anchor_frame=self.frame_at(x))
        event.accept()
