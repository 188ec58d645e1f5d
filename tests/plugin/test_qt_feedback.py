"""Feedback a user sees: failures of background jobs as notifications with their traceback,
progress with an ETA, closing during a job asks and cancels, exports off the GUI thread."""

from __future__ import annotations

import time

import pytest
from qtpy.QtCore import QEvent
from qtpy.QtGui import QCloseEvent
from qtpy.QtWidgets import QApplication, QMessageBox

from napari_prism._link import link
from napari_prism._tasks import TaskPanel, format_eta, running_panels
from prism_science.errors import StoreError


def _records():
    from napari.utils.notifications import notification_manager

    return notification_manager.records


def failing(path, *, cancel_event):
    yield 0, 2, "reading"
    raise StoreError(f"{path}: chunk 3 of video v1 is damaged; re-extract it")


def slow(n, *, cancel_event):
    for i in range(n):
        if cancel_event.is_set():
            return "stopped"
        time.sleep(0.05)
        yield i + 1, n, f"step {i + 1}"
    return "done"


def test_a_failing_job_is_a_notification_with_the_traceback(make_napari_viewer, qtbot):
    from napari.utils.notifications import ErrorNotification

    make_napari_viewer()
    panel = TaskPanel()
    qtbot.addWidget(panel)
    before = len(_records())
    panel.run(failing, "features.zarr", what="extracting features")
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    new = [n for n in _records()[before:] if isinstance(n, ErrorNotification)]
    assert len(new) == 1
    message = str(new[0].message)
    assert message.startswith("extracting features failed: features.zarr: chunk 3")
    assert "re-extract" in message
    # the traceback is behind the notification's "View Traceback" button
    assert "failing" in new[0].as_text() and "StoreError" in new[0].as_text()
    assert "failed" in panel.status.text() and isinstance(panel.last_error, StoreError)


def test_progress_shows_percent_and_time_left(make_napari_viewer, qtbot):
    make_napari_viewer()
    panel = TaskPanel()
    qtbot.addWidget(panel)
    seen = []
    panel.run(slow, 12, what="training")
    panel.worker.yielded.connect(lambda _: seen.append(panel.status.text()))
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert panel.last_result == "done"
    assert any("left" in text and "%" in text for text in seen), seen
    assert format_eta(75) == "1:15" and format_eta(3725) == "1:02:05"


def test_closing_during_a_job_asks_then_cancels(make_napari_viewer, qtbot, monkeypatch):
    viewer = make_napari_viewer()
    lk = link(viewer)
    panel = TaskPanel()
    qtbot.addWidget(panel)
    panel.run(slow, 10_000, what="extracting features")
    qtbot.waitUntil(lambda: panel.bar.maximum() == 10_000, timeout=5_000)
    assert running_panels() == [panel]
    asked = []

    def answer(reply):
        def question(parent, title, text, *args):
            asked.append(text)
            return reply
        return question

    # "No": the window stays open and the job goes on
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.No))
    event = QCloseEvent()
    assert lk.eventFilter(viewer.window._qt_window, event) is True  # swallowed
    assert not event.isAccepted() and panel.running
    assert "extracting features" in asked[0] and "Cancel and close" in asked[0]
    # "Yes": the job is cancelled and has stopped before the window closes
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.Yes))
    started = time.monotonic()
    assert lk.confirm_close() is True
    assert not panel.running and time.monotonic() - started < 5
    assert panel.status.text() == "extracting features: cancelled"
    # nothing running: closes without asking
    asked.clear()
    assert lk.eventFilter(viewer.window._qt_window, QCloseEvent()) is False and not asked
    assert QEvent.Close == QCloseEvent().type()


def test_nwb_export_runs_in_a_worker(make_napari_viewer, qtbot, video, tmp_path):
    pytest.importorskip("pynwb")
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    session = link(viewer).session
    session.add_behavior("chasing")
    session.set_range("chasing", 3, 9)
    _, io = viewer.window.add_plugin_dock_widget("prism-science", "Save and export labels")
    target = tmp_path / "labels.nwb"
    assert io.export(target, "nwb", background=True) is None  # returns at once
    assert io.task.running or target.exists()
    qtbot.waitUntil(lambda: not io.task.running, timeout=60_000)
    assert io.task.last_error is None, io.task.last_error
    assert target.is_file() and io.task.last_result == target
    QApplication.processEvents()


def test_scrubbing_decodes_off_the_gui_thread(make_napari_viewer, qtbot, video, monkeypatch):
    import threading

    import numpy as np

    from napari_prism._lazy_video import LazyVideo
    from prism_science.cli.gui import configure_napari

    configure_napari()  # as `prism-science gui` does, before the viewer exists
    viewer = make_napari_viewer(show=True)
    viewer.open(str(video), plugin="prism-science")
    layer = viewer.layers[0]
    threads = []
    original = LazyVideo.__getitem__

    def spy(self, key):
        threads.append(threading.current_thread() is threading.main_thread())
        return original(self, key)

    monkeypatch.setattr(LazyVideo, "__getitem__", spy)
    for frame in (40, 7, 83):
        viewer.dims.set_current_step(0, frame)
        expected = original(layer.data, frame)
        qtbot.waitUntil(lambda e=expected: np.array_equal(
            np.asarray(layer._slice.image.raw), e), timeout=10_000)
    assert threads and not any(threads)  # every decode ran in napari's slicing thread
