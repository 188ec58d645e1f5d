"""Long work off the GUI thread: a progress bar with an ETA, a cancel button and notifications.

A :class:`TaskPanel` runs a generator function in a napari ``thread_worker``. The generator
yields ``(done, total, message)`` tuples to report progress, may check ``cancel_event`` between
steps, and returns its result, which is handed to ``on_result`` on the GUI thread. Every failure
becomes a napari error notification carrying the library's message, with the traceback behind
its *View Traceback* button (:func:`notify_exception`); the viewer never blocks.
:func:`running_panels` lists the tasks under way, so that closing the viewer can ask first.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ._context import notify_error

__all__ = [
    "Progress",
    "TaskCancelled",
    "TaskPanel",
    "format_eta",
    "notify_exception",
    "running_panels",
]

logger = logging.getLogger(__name__)

Progress = tuple[int, int, str]

_PANELS: weakref.WeakSet[TaskPanel] = weakref.WeakSet()


def running_panels() -> list[TaskPanel]:
    """The task panels whose task is under way (alive widgets only)."""
    found = []
    for panel in list(_PANELS):
        try:
            if panel.running:
                panel.objectName()  # raises when Qt deleted the widget
                found.append(panel)
        except RuntimeError:
            continue
    return found


def notify_exception(exc: BaseException, what: str = "") -> None:
    """Show a failure as a napari error notification: ``what: message``, and the traceback
    behind the notification's *View Traceback* button (logged too)."""
    message = f"{what} failed: {exc}" if what else str(exc)
    logger.warning("%s", message, exc_info=(type(exc), exc, exc.__traceback__))
    try:
        from napari.utils.notifications import ErrorNotification, notification_manager
    except ImportError:  # outside napari the log has it already
        return
    notification = ErrorNotification(exc)
    notification.message = message
    notification_manager.dispatch(notification)


def format_eta(seconds: float) -> str:
    """Seconds as ``m:ss`` (or ``h:mm:ss`` from an hour on)."""
    seconds = max(int(round(seconds)), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TaskCancelled(Exception):
    """Raised inside a task when its cancel button was pressed (not an error)."""


class TaskPanel(QWidget):
    """Progress bar, status line and cancel button of one widget's background task."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        row.addWidget(self.bar, 1)
        self.cancel_button = QPushButton("cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        row.addWidget(self.cancel_button)
        layout.addLayout(row)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.cancel_event = threading.Event()
        self.worker: Any = None
        self.last_error: BaseException | None = None
        self.last_result: Any = None
        self.what = ""
        self._started = 0.0
        self._first_report: tuple[float, int] | None = None  # (time, done) of the first count
        _PANELS.add(self)

    @property
    def running(self) -> bool:
        """Whether a task is under way."""
        return self.worker is not None

    def run(
        self,
        task: Callable[..., Generator[Progress, None, Any]],
        *args: Any,
        what: str,
        on_result: Callable[[Any], None] | None = None,
    ) -> None:
        """Start ``task(*args, cancel_event=...)`` in a thread worker.

        Parameters
        ----------
        task : generator function
            Yields ``(done, total, message)``; its return value goes to ``on_result``.
        what : str
            Name of the work, for the status line and error notifications.
        on_result : callable, optional
            Called on the GUI thread with the task's return value.
        """
        from napari.qt.threading import create_worker

        if self.running:
            notify_error(RuntimeError(f"{what}: another task is running; wait or cancel it"))
            return
        self.cancel_event = threading.Event()
        self.last_error = None
        self.last_result = None
        self.what = what
        self._started = time.monotonic()
        self._first_report = None
        worker = create_worker(task, *args, cancel_event=self.cancel_event, _start_thread=False,
                               _ignore_errors=True)
        worker.yielded.connect(self._progress)
        worker.returned.connect(lambda result: self._returned(result, what, on_result))
        # _ignore_errors: napari 0.9 neither raises nor shows a worker's error; the panel
        # records it, shows it in its status line and as a notification with the traceback.
        worker.errored.connect(lambda exc: self._errored(exc, what))
        # quit() stops a generator worker at its next yield: it emits aborted, not returned
        worker.aborted.connect(lambda: self.status.setText(f"{what}: cancelled"))
        worker.finished.connect(self._finished)
        self.worker = worker
        self.bar.setRange(0, 0)  # busy until the first report
        self.status.setText(f"{what}...")
        self.cancel_button.setEnabled(True)
        worker.start()

    def cancel(self) -> None:
        """Ask the running task to stop at its next step."""
        if self.worker is not None:
            self.cancel_event.set()
            self.worker.quit()
            self.status.setText("cancelling...")

    def wait(self, timeout: float = 10.0) -> bool:
        """Process Qt events until the task has finished (at most ``timeout`` seconds);
        returns whether it finished."""
        from qtpy.QtWidgets import QApplication

        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            QApplication.processEvents()
            time.sleep(0.01)
        return not self.running

    def _progress(self, report: Progress) -> None:
        done, total, message = report
        done, total = int(done), max(int(total), 1)
        if self.cancel_event.is_set():
            return  # the status says "cancelling..."
        self.bar.setRange(0, total)
        self.bar.setValue(min(done, total))
        self.status.setText(message + self._eta(done, total))

    def _eta(self, done: int, total: int) -> str:
        """`` - 40%, about m:ss left``, from the pace since the first progress report (model
        loading before it is not counted)."""
        now = time.monotonic()
        if self._first_report is None or done < self._first_report[1]:
            self._first_report = (now, done)
            return f" - {100 * done // total}%" if done else ""
        start, start_done = self._first_report
        if done >= total or done == start_done:
            return f" - {100 * done // total}%"
        left = (now - start) / (done - start_done) * (total - done)
        return f" - {100 * done // total}%, about {format_eta(left)} left"

    def _returned(self, result: Any, what: str, on_result: Callable[[Any], None] | None) -> None:
        self.last_result = result
        if self.cancel_event.is_set():
            self.status.setText(f"{what}: cancelled")
            return
        if on_result is not None:
            try:
                on_result(result)
            except Exception as exc:  # noqa: BLE001 - shown to the user, the session goes on
                self._errored(exc, what)

    def _errored(self, exc: BaseException, what: str) -> None:
        if isinstance(exc, TaskCancelled) or self.cancel_event.is_set():
            self.status.setText(f"{what}: cancelled")
            return
        self.last_error = exc
        self.status.setText(f"{what} failed: {exc}")
        notify_exception(exc, what)

    def _finished(self) -> None:
        self.worker = None
        self.cancel_button.setEnabled(False)
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if self.last_error is None and not self.cancel_event.is_set() else 0)
