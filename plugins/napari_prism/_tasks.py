"""Long work off the GUI thread: a progress bar, a cancel button and error notifications.

A :class:`TaskPanel` runs a generator function in a napari ``thread_worker``. The generator
yields ``(done, total, message)`` tuples to report progress, may check ``cancel_event`` between
steps, and returns its result, which is handed to ``on_result`` on the GUI thread. Errors become
napari notifications carrying the library's message; the viewer never blocks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from ._context import notify_error

__all__ = ["Progress", "TaskCancelled", "TaskPanel"]

logger = logging.getLogger(__name__)

Progress = tuple[int, int, str]


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
        worker = create_worker(task, *args, cancel_event=self.cancel_event, _start_thread=False,
                               _ignore_errors=True)
        worker.yielded.connect(self._progress)
        worker.returned.connect(lambda result: self._returned(result, what, on_result))
        # napari's workers relay errors to its notifications themselves (the library's
        # message); the panel only records the error and shows it in its status line.
        worker.errored.connect(lambda exc: self._errored(exc, what, notify=False))
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

    def _progress(self, report: Progress) -> None:
        done, total, message = report
        self.bar.setRange(0, max(int(total), 1))
        self.bar.setValue(min(int(done), max(int(total), 1)))
        self.status.setText(message)

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

    def _errored(self, exc: BaseException, what: str, notify: bool = True) -> None:
        if isinstance(exc, TaskCancelled):
            self.status.setText(f"{what}: cancelled")
            return
        self.last_error = exc
        logger.debug("%s failed", what, exc_info=exc)
        self.status.setText(f"{what} failed: {exc}")
        if notify:
            notify_error(exc, what)

    def _finished(self) -> None:
        self.worker = None
        self.cancel_button.setEnabled(False)
        self.bar.setRange(0, 1)
        self.bar.setValue(1 if self.last_error is None and not self.cancel_event.is_set() else 0)
