"""Workbench items driven with real key events on the canvas: bulk acceptance of a frame
range's predictions, point events, the ethogram imported from BORIS or CSV."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QColor

from napari_prism._context import go_to_frame

from .test_qt_keyboard import key, labeling  # noqa: F401 - the fixture
from .test_qt_project import two_clips  # noqa: F401 - the fixture


def test_bulk_accept_a_range_by_keys_and_by_button(labeling, qtbot):  # noqa: F811
    viewer, workbench, session = labeling
    proba = np.zeros((90, 3), np.float32)
    proba[10:20, 0] = 0.9  # chasing 10-19
    proba[40:50, 1] = 0.8  # courtship 40-49
    proba[70:80, 2] = 0.9  # copulation 70-79, outside the range
    session.set_predictions("probe", ["chasing", "courtship", "copulation"], proba)
    review = workbench.open_section("Review")
    go_to_frame(viewer, 45)
    key(viewer, qtbot, "]")  # the range ends here ...
    go_to_frame(viewer, 5)
    key(viewer, qtbot, "[")  # ... and starts here
    assert (review.range_start.value(), review.range_end.value()) == (5, 45)
    key(viewer, qtbot, Qt.Key_Return, Qt.ShiftModifier)
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts("curated")] == [
        ("chasing", 10, 19), ("courtship", 40, 45)]
    assert "accepted probe on frames 5-45" in review.info.text()
    key(viewer, qtbot, "z", Qt.ControlModifier)  # one undo step takes it all back
    assert session.bouts("curated") == []
    # the button does the same with the frames typed in the boxes
    review.range_start.setValue(60)
    review.range_end.setValue(89)
    qtbot.mouseClick(review.accept_range_button, Qt.LeftButton)
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts("curated")] == [
        ("copulation", 70, 79)]
    assert any(v == "accepted" for v in session.review.values())


def test_point_event_one_key_press_drawn_as_a_tick(labeling, qtbot):  # noqa: F811
    from qtpy.QtWidgets import QApplication

    from napari_prism._link import link
    from napari_prism._timeline import MANUAL_BAND, ROW_HEIGHT, RULER_HEIGHT

    from .test_qt_timeline import grab

    viewer, workbench, session = labeling
    ethogram = workbench.sections["Ethogram"]
    point_column = 4
    assert ethogram.table.horizontalHeaderItem(point_column).text() == "point"
    ethogram.table.item(2, point_column).setCheckState(Qt.Checked)  # copulation: point event
    assert session.behavior("copulation").point
    assert not session.behavior("chasing").point
    for frame in (30, 31, 60):
        go_to_frame(viewer, frame)
        key(viewer, qtbot, "p")  # one press, one event
    assert session.open_bouts == {}  # a point event never opens a bout
    go_to_frame(viewer, 50)
    key(viewer, qtbot, "c", Qt.ShiftModifier)  # a one-frame state bout, to compare
    assert [(b.behavior, b.start_frame, b.point) for b in session.bouts()] == [
        ("copulation", 30, True), ("copulation", 31, True), ("chasing", 50, False),
        ("copulation", 60, True)]
    # the project-wide type is saved with the session
    session.save()
    from prism_science.session import LabelingSession

    assert LabelingSession.load(session.path, n_frames=90).behavior("copulation").point
    # drawn as a tick the row's height; a one-frame state bout stays in its band
    timeline = link(viewer).timeline
    timeline.resize(timeline.width(), timeline.sizeHint().height())
    timeline.set_view(0, 90)
    QApplication.processEvents()
    pixels = grab(timeline).astype(int)

    def coloured(row: int, frame: int, dy: int) -> bool:
        x = int(timeline.x_of(frame + 0.5))
        y = RULER_HEIGHT + row * ROW_HEIGHT + dy
        colour = np.array(QColor(session.behaviors[row].color).getRgb()[:3])
        return bool((np.abs(pixels[y, x - 1:x + 2] - colour).sum(axis=1) < 40).any())

    below_band = MANUAL_BAND[0] + MANUAL_BAND[1] + 6
    assert coloured(2, 60, below_band) and coloured(2, 60, MANUAL_BAND[0] + 6)
    assert coloured(0, 50, MANUAL_BAND[0] + 2) and not coloured(0, 50, below_band)


def test_import_a_boris_ethogram_for_the_whole_project(make_napari_viewer, qtbot, tmp_path,
                                                        two_clips, monkeypatch):  # noqa: F811
    import json
    import shutil

    from qtpy.QtWidgets import QFileDialog

    from napari_prism._link import link
    from napari_prism._project import open_paths
    from prism_science.session import PROJECT_FILE

    from .test_session_bulk_and_points import BORIS_PROJECT

    folder = tmp_path / "project"
    (folder / "videos").mkdir(parents=True)
    for clip in two_clips:
        shutil.copy(clip, folder / "videos" / clip.name)
    viewer = make_napari_viewer(show=True)
    _, workbench = viewer.window.add_plugin_dock_widget("prism-science", "Workbench")
    open_paths(viewer, [folder])
    ethogram = workbench.open_section("Ethogram")
    boris = tmp_path / "lab.boris"
    boris.write_text(json.dumps(BORIS_PROJECT))
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(boris), "")))
    qtbot.mouseClick(ethogram.import_button, Qt.LeftButton)
    session = link(viewer).session
    assert [(b.name, b.key, b.point) for b in session.behaviors] == [
        ("chasing", "c", False), ("resting", "r", False), ("bite", "b", True),
        ("leap", "l", True)]  # '+' cannot label: leap got a free key
    assert ethogram.table.rowCount() == 4
    # the keys label at once: a state bout and a point event
    keys_on_canvas = [(5, "c"), (12, "c"), (30, "b")]
    for frame, text in keys_on_canvas:
        go_to_frame(viewer, frame)
        key(viewer, qtbot, text)
    assert [(b.behavior, b.start_frame, b.end_frame, b.point) for b in session.bouts()] == [
        ("chasing", 5, 12, False), ("bite", 30, 30, True)]
    # the ethogram is the project's: saved in its file, given to the second video
    saved = json.loads((folder / PROJECT_FILE).read_text())
    assert [(b["name"], b["point"]) for b in saved["behaviors"]] == [
        ("chasing", False), ("resting", False), ("bite", True), ("leap", True)]
    key(viewer, qtbot, Qt.Key_PageDown)
    second = link(viewer).session
    assert second is not session
    assert [(b.name, b.key, b.point) for b in second.behaviors] == [
        (b.name, b.key, b.point) for b in session.behaviors]
    # a broken file: a notification naming the line, the ethogram unchanged
    bad = tmp_path / "bad.csv"
    bad.write_text("jump,j,sometimes\n")
    assert ethogram.import_file(bad) == []
    from napari.utils.notifications import notification_manager

    assert "bad.csv, line 1: type 'sometimes'" in str(notification_manager.records[-1].message)
    assert len(second.behaviors) == 4
