"""The timeline draws labels and predictions, follows the slider, and labels by dragging."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPoint, Qt
from qtpy.QtGui import QColor
from qtpy.QtWidgets import QApplication

from napari_prism._context import go_to_frame
from napari_prism._link import link
from napari_prism._timeline import LABEL_WIDTH, PREDICTED_BAND, ROW_HEIGHT, RULER_HEIGHT

from .conftest import fake_predictions


def grab(widget) -> np.ndarray:
    """(H, W, 3) uint8 RGB of what the widget shows."""
    from qtpy.QtGui import QImage

    image = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    ptr = image.bits()
    ptr.setsize(image.sizeInBytes())
    bgra = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine() // 4, 4)
    return bgra[:, : image.width(), 2::-1].copy()


def test_timeline_renders_labels_and_prediction_shading(make_napari_viewer, qtbot, video):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(video), plugin="prism-science")
    lk = link(viewer)
    session = lk.session
    session.add_behavior("walk")
    session.add_behavior("rest")
    session.set_range("walk", 0, 44)
    proba = np.zeros((90, 2), np.float32)
    proba[:, 1] = np.linspace(0.0, 1.0, 90)  # rest: shading grows left to right
    session.set_predictions("p", ["walk", "rest"], proba)
    lk.timeline.resize(LABEL_WIDTH + 900, 200)
    QApplication.processEvents()
    pixels = grab(lk.timeline)
    assert pixels.std() > 10  # not a blank (or black) image
    walk = np.array(QColor(session.behavior("walk").color).getRgb()[:3])
    y_manual = RULER_HEIGHT + 6  # manual band of the first row
    labeled_x = int(lk.timeline.x_of(20))
    unlabeled_x = int(lk.timeline.x_of(70))
    assert np.abs(pixels[y_manual, labeled_x].astype(int) - walk).max() <= 2
    assert np.abs(pixels[y_manual, unlabeled_x].astype(int) - walk).max() > 40
    y_pred = RULER_HEIGHT + ROW_HEIGHT + 21  # prediction band of the second row
    rest = np.array(QColor(session.behavior("rest").color).getRgb()[:3])
    weak = np.abs(pixels[y_pred, int(lk.timeline.x_of(5))].astype(int) - rest).sum()
    strong = np.abs(pixels[y_pred, int(lk.timeline.x_of(85))].astype(int) - rest).sum()
    assert strong < weak  # higher probability, closer to the behavior's colour
    # The predicted bouts strip: thresholds, then the probe's bout post-processing, the bouts
    # `prism-science probe predict` saves -- a short gap filled, a short bout dropped.
    walk_proba = np.zeros((90, 2), np.float32)
    walk_proba[10:30, 0] = 0.9
    walk_proba[19:21, 0] = 0.1  # a 2-frame gap
    walk_proba[60, 0] = 0.95  # a 1-frame spurious bout
    session.set_predictions("post", ["walk", "rest"], walk_proba, 0.5,
                            {"min_bout": 3, "max_gap": 2})
    QApplication.processEvents()
    pixels = grab(lk.timeline)
    y_bouts = RULER_HEIGHT + PREDICTED_BAND[0] + 1  # predicted bouts strip of the walk row

    def distance(frame: int) -> int:
        return int(np.abs(pixels[y_bouts, int(lk.timeline.x_of(frame + 0.5))].astype(int)
                          - walk).max())

    assert distance(15) <= 2 and distance(20) <= 2  # the gap is filled
    assert distance(60) > 40 and distance(45) > 40  # the spurious frame is not shown
    assert [(b.start_frame, b.end_frame) for b in session.bouts("post")] == [(10, 29)]


def test_timeline_syncs_with_slider_zooms_and_drags(make_napari_viewer, qtbot, video):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(video), plugin="prism-science")
    lk = link(viewer)
    session = lk.session
    session.add_behavior("walk")
    timeline = lk.timeline
    timeline.resize(LABEL_WIDTH + 450, 120)
    go_to_frame(viewer, 33)
    assert timeline.current_frame == 33
    # click on the ruler moves the viewer
    qtbot.mouseClick(timeline, Qt.LeftButton, pos=QPoint(int(timeline.x_of(60.5)), 5))
    assert viewer.dims.current_step[0] == 60
    # drag on the walk row labels frames 10..20; right-drag unlabels 12..14
    y = RULER_HEIGHT + ROW_HEIGHT // 2
    qtbot.mousePress(timeline, Qt.LeftButton, pos=QPoint(int(timeline.x_of(10.5)), y))
    qtbot.mouseMove(timeline, QPoint(int(timeline.x_of(15.5)), y))
    qtbot.mouseRelease(timeline, Qt.LeftButton, pos=QPoint(int(timeline.x_of(20.5)), y))
    assert [(b.start_frame, b.end_frame) for b in session.bouts()] == [(10, 20)]
    qtbot.mousePress(timeline, Qt.RightButton, pos=QPoint(int(timeline.x_of(12.5)), y))
    qtbot.mouseRelease(timeline, Qt.RightButton, pos=QPoint(int(timeline.x_of(14.5)), y))
    assert [(b.start_frame, b.end_frame) for b in session.bouts()] == [(10, 11), (15, 20)]
    # zoom in around a frame keeps it under the same pixel
    x_before = timeline.x_of(45)
    timeline.zoom(4.0, anchor_frame=45)
    assert timeline.view_frames == 22.5
    assert abs(timeline.x_of(45) - x_before) < 1e-6
    # extra rows: suggestions and a search curve make the timeline taller
    height = timeline.sizeHint().height()
    timeline.suggestions = np.array([3, 50])
    timeline.similarity = fake_predictions(90, 1)[:, 0]
    assert timeline.sizeHint().height() > height
    QApplication.processEvents()
    assert grab(timeline).std() > 10


def test_closing_the_timeline_dock_is_safe_and_it_comes_back(make_napari_viewer, video):
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    lk = link(viewer)
    session = lk.session
    session.add_behavior("walk")
    viewer.window.remove_dock_widget(lk.dock)
    QApplication.processEvents()
    session.set_range("walk", 1, 4)  # no error from the closed timeline
    go_to_frame(viewer, 7)
    timeline = link(viewer).timeline  # opening a plugin widget docks it again
    assert timeline.session is session and timeline.current_frame == 7
    assert any("prism timeline" in name for name in viewer.window.dock_widgets)
