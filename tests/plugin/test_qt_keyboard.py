"""Keyboard-first labeling with real key events on the canvas: label keys win over napari's
layer shortcuts, digits label, focus comes back after buttons, play/speed/jump keys, time on
the canvas, review keys, and timeline clicks that seek."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt
from qtpy.QtWidgets import QApplication, QPushButton

from napari_prism._context import go_to_frame
from napari_prism._link import link
from napari_prism._timeline import PREDICTED_BAND, REJECTED_CROSS, ROW_HEIGHT, RULER_HEIGHT

from .conftest import fake_predictions
from .test_qt_timeline import grab

BEHAVIORS = ("chasing", "courtship", "copulation")


def canvas(viewer):
    return viewer.window._qt_viewer.canvas.native


def key(viewer, qtbot, text, modifier=Qt.NoModifier) -> None:
    qtbot.keyClick(canvas(viewer), text, modifier)


def errors(since: int) -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records[since:]
            if n.severity == "error"]


def n_records() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


@pytest.fixture
def labeling(make_napari_viewer, video):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(video), plugin="prism-science")
    _, workbench = viewer.window.add_plugin_dock_widget("prism-science", "Workbench")
    ethogram = workbench.open_section("Ethogram")
    for name in BEHAVIORS:
        ethogram.new_name.setText(name)
        ethogram._add()
    return viewer, workbench, link(viewer).session


def test_label_keys_win_over_napari_layer_shortcuts(labeling, qtbot):
    viewer, workbench, session = labeling
    layer = viewer.layers[0]
    assert viewer.layers.selection.active is layer  # the image layer has c, o, x, 1, 2 bound
    assert [b.key for b in session.behaviors] == ["c", "o", "p"]
    limits = list(layer.contrast_limits)
    go_to_frame(viewer, 5)
    key(viewer, qtbot, "c")  # napari's image layer: auto-contrast; here: start chasing
    go_to_frame(viewer, 9)
    key(viewer, qtbot, "c")
    go_to_frame(viewer, 20)
    key(viewer, qtbot, "o", Qt.ShiftModifier)  # toggle one frame of courtship
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts()] == [
        ("chasing", 5, 9), ("courtship", 20, 20)]
    assert list(layer.contrast_limits) == limits
    # digits label too (DeepEthogram's habit), and win over napari's "1" (image layer mode)
    ethogram = workbench.sections["Ethogram"]
    ethogram.table.item(2, 1).setText("1")
    assert session.behavior("copulation").key == "1"
    mode = layer.mode
    go_to_frame(viewer, 30)
    key(viewer, qtbot, "1")
    go_to_frame(viewer, 33)
    key(viewer, qtbot, "1")
    assert ("copulation", 30, 33) in [(b.behavior, b.start_frame, b.end_frame)
                                      for b in session.bouts()]
    assert layer.mode == mode
    # keys that play, jump or review are refused at assignment, with a notification
    before = n_records()
    ethogram.table.item(0, 1).setText("+")
    assert session.behavior("chasing").key == "c"
    assert any("chasing" in m and "letter" in m for m in errors(before))
    # the same keys work when another layer is selected
    points = viewer.add_points(np.zeros((1, 3)))
    assert viewer.layers.selection.active is points
    go_to_frame(viewer, 40)
    key(viewer, qtbot, "o")
    go_to_frame(viewer, 44)
    key(viewer, qtbot, "o")
    ethogram.table.item(2, 1).setText("2")
    go_to_frame(viewer, 50)
    key(viewer, qtbot, "2")  # the points layer's "add points" mode key: labels here
    key(viewer, qtbot, "2")
    assert ("courtship", 40, 44) in [(b.behavior, b.start_frame, b.end_frame)
                                     for b in session.bouts()]
    assert ("copulation", 50, 50) in [(b.behavior, b.start_frame, b.end_frame)
                                      for b in session.bouts()]
    assert points.mode == "pan_zoom"


def test_focus_returns_to_the_canvas_after_a_button(labeling, qtbot):
    viewer, workbench, session = labeling
    window = viewer.window._qt_window
    window.activateWindow()
    if hasattr(QApplication, "setActiveWindow"):  # Qt 5; Xvfb has no window manager to do it
        QApplication.setActiveWindow(window)
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    ethogram = workbench.sections["Ethogram"]
    ethogram.new_name.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is ethogram.new_name, timeout=5_000)
    undo = next(b for b in ethogram.findChildren(QPushButton) if b.text() == "undo")
    qtbot.mouseClick(undo, Qt.LeftButton)
    qtbot.waitUntil(lambda: QApplication.focusWidget() is canvas(viewer), timeout=5_000)


def test_play_speed_jump_keys_and_time_on_the_canvas(labeling, qtbot):
    viewer, _, session = labeling
    lk = link(viewer)
    overlay = viewer.canvas.overlays["text"]
    go_to_frame(viewer, 10)
    assert overlay.visible and "frame 10" in overlay.text
    assert "00:00:00.667" in overlay.text  # frame 10 of a 15 fps clip, from its timestamps
    key(viewer, qtbot, Qt.Key_Right, Qt.ControlModifier)
    assert viewer.dims.current_step[0] == 20
    key(viewer, qtbot, Qt.Key_Left, Qt.ControlModifier)
    key(viewer, qtbot, Qt.Key_Left, Qt.ControlModifier)
    key(viewer, qtbot, Qt.Key_Left, Qt.ControlModifier)
    assert viewer.dims.current_step[0] == 0  # clamped at the first frame
    key(viewer, qtbot, "=")
    assert lk.speed == 2.0 and "x2" in overlay.text
    key(viewer, qtbot, "-")
    key(viewer, qtbot, "-")
    assert lk.speed == 0.5
    qtbot.keyClick(canvas(viewer), Qt.Key_Plus, Qt.ShiftModifier)
    assert lk.speed == 1.0
    # Space plays at the video's own frame rate (15 fps) times the speed, Space pauses
    key(viewer, qtbot, Qt.Key_Space)
    qtbot.waitUntil(lambda: lk.playing, timeout=5_000)
    slider = viewer.window._qt_viewer.dims.slider_widgets[0]
    assert slider.fps == round(session.fps) == 15
    qtbot.waitUntil(lambda: viewer.dims.current_step[0] > 3, timeout=10_000)
    key(viewer, qtbot, Qt.Key_Space)
    qtbot.waitUntil(lambda: not lk.playing, timeout=5_000)


def test_timeline_click_seeks_and_drag_labels(labeling, qtbot):
    viewer, _, session = labeling
    timeline = link(viewer).timeline
    timeline.resize(timeline.width(), timeline.sizeHint().height())
    y = RULER_HEIGHT + ROW_HEIGHT // 2
    qtbot.mouseClick(timeline, Qt.LeftButton, pos=QPoint(int(timeline.x_of(42.5)), y))
    assert viewer.dims.current_step[0] == 42 and session.bouts() == []
    qtbot.mousePress(timeline, Qt.LeftButton, pos=QPoint(int(timeline.x_of(10.5)), y))
    qtbot.mouseMove(timeline, QPoint(int(timeline.x_of(12.5)), y))
    qtbot.mouseRelease(timeline, Qt.LeftButton, pos=QPoint(int(timeline.x_of(14.5)), y))
    assert [(b.start_frame, b.end_frame) for b in session.bouts()] == [(10, 14)]


def test_review_by_keys_and_rejected_bouts_drawn_apart(labeling, qtbot):
    viewer, workbench, session = labeling
    proba = fake_predictions(90, 3, seed=4)
    session.set_predictions("probe", list(BEHAVIORS), proba, [0.5, 0.5, 0.5])
    review = workbench.open_section("Review")
    review.margin.setValue(0.5)  # every predicted bout is up for review
    go_to_frame(viewer, 0)
    key(viewer, qtbot, ".")
    first = review.item
    assert first is not None and viewer.dims.current_step[0] == first.start_frame
    key(viewer, qtbot, Qt.Key_Delete)  # reject, and on to the next bout
    assert session.review[first.key] == "rejected"
    second = review.item
    assert second is not None and second.key != first.key
    key(viewer, qtbot, Qt.Key_Return)  # accept: its frames become curated labels
    assert session.review[second.key] == "accepted"
    assert session.mask(second.behavior, "curated")[second.start_frame:second.end_frame + 1].all()
    # the rejected bout is crossed out in red on the timeline; an unreviewed one is not
    timeline = link(viewer).timeline
    timeline.resize(timeline.width(), timeline.sizeHint().height())
    timeline.set_view(0, 90)
    QApplication.processEvents()
    pixels = grab(timeline).astype(int)
    row = list(BEHAVIORS).index(first.behavior)
    y0 = RULER_HEIGHT + row * ROW_HEIGHT + 17
    y1 = RULER_HEIGHT + row * ROW_HEIGHT + PREDICTED_BAND[0] + PREDICTED_BAND[1]
    red = np.array([REJECTED_CROSS.red(), REJECTED_CROSS.green(), REJECTED_CROSS.blue()])

    def crossed(start: int, end: int) -> bool:
        a, b = int(timeline.x_of(start)) + 1, int(timeline.x_of(end + 1)) - 1
        patch = pixels[y0:y1, a:b]
        return bool((np.abs(patch - red).sum(axis=2) < 60).any())

    assert crossed(first.start_frame, first.end_frame)
    others = [b for b in session.bouts("probe") if b.behavior == first.behavior
              and b.start_frame != first.start_frame]
    assert others and not crossed(others[0].start_frame, others[0].end_frame)
