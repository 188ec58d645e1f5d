"""A project, not a video: with keys alone, label chasing, courtship and copulation in two videos
of one project, extract, train, predict, review and export; the gui command opens projects."""

from __future__ import annotations

import argparse
import json
import shutil

import pytest
from qtpy.QtCore import Qt

from napari_prism._context import SESSION_KEY, go_to_frame, prism_layers
from napari_prism._link import link
from napari_prism._project import open_paths
from prism_science.session import PROJECT_FILE, Project

MODEL = "prism-test-p8-f4-r32"
BEHAVIORS = ("chasing", "courtship", "copulation")


@pytest.fixture(scope="module")
def two_clips(tmp_path_factory):
    """Two different 90-frame synthetic clips (15 fps)."""
    from prism_science.synth import SynthConfig, generate_clip, write_clip

    out = tmp_path_factory.mktemp("clips")
    config = SynthConfig(size=(64, 64), fps=15.0, seconds=(6.0, 6.0), n_animals=1)
    return [write_clip(generate_clip(seed, config), out, name)
            for seed, name in ((3, "arena1"), (8, "arena2"))]


@pytest.fixture
def project_folder(two_clips, tmp_path):
    folder = tmp_path / "courtship-project"
    (folder / "videos").mkdir(parents=True)
    for clip in two_clips:
        shutil.copy(clip, folder / "videos" / clip.name)
    return folder


def keys(viewer, qtbot, *presses):
    """(frame, key) presses on the canvas; key may carry a modifier as (key, modifier)."""
    canvas = viewer.window._qt_viewer.canvas.native
    for frame, key in presses:
        if frame is not None:
            go_to_frame(viewer, frame)
        key, modifier = key if isinstance(key, tuple) else (key, Qt.NoModifier)
        qtbot.keyClick(canvas, key, modifier)


def bouts(session):
    return [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts()]


def test_two_videos_of_a_project_with_keys_alone(make_napari_viewer, qtbot, project_folder,
                                                  tmp_path):
    viewer = make_napari_viewer(show=True)
    _, workbench = viewer.window.add_plugin_dock_widget("prism-science", "Workbench")
    project = open_paths(viewer, [project_folder])  # a folder of videos becomes a project
    assert (project_folder / PROJECT_FILE).is_file()
    assert [p.name for p in project.videos] == ["arena1.mp4", "arena2.mp4"]
    assert [layer.name for layer in prism_layers(viewer)] == ["arena1.mp4"]
    videos = workbench.sections["Videos"]
    assert videos.list.count() == 2 and videos.list.currentItem().text() == "arena1.mp4"
    ethogram = workbench.open_section("Ethogram")
    for name in BEHAVIORS:
        ethogram.new_name.setText(name)
        ethogram._add()
    first = link(viewer).session
    assert [(b.name, b.key) for b in first.behaviors] == [
        ("chasing", "c"), ("courtship", "o"), ("copulation", "p")]
    keys(viewer, qtbot, (5, "c"), (20, "c"), (30, "o"), (45, "o"), (60, "p"), (80, "p"))
    assert bouts(first) == [("chasing", 5, 20), ("courtship", 30, 45), ("copulation", 60, 80)]

    # PageDown: the next video replaces the first (one layer, never overlaid), same ethogram
    keys(viewer, qtbot, (None, Qt.Key_PageDown))
    assert [layer.name for layer in prism_layers(viewer)] == ["arena2.mp4"]
    second = link(viewer).session
    assert second is not first and second.n_frames == 90
    assert [(b.name, b.key) for b in second.behaviors] == [(b.name, b.key)
                                                           for b in first.behaviors]
    assert videos.list.currentItem().text() == "arena2.mp4"
    keys(viewer, qtbot, (10, "p"), (25, "p"), (40, "c"), (55, "c"), (65, "o"), (85, "o"))
    assert bouts(second) == [("copulation", 10, 25), ("chasing", 40, 55), ("courtship", 65, 85)]
    # sessions live in the project folder; the ethogram is the project's
    link(viewer).autosave()
    saved = json.loads((project_folder / PROJECT_FILE).read_text())
    assert [b["name"] for b in saved["behaviors"]] == list(BEHAVIORS)
    assert sorted(p.name for p in (project_folder / "sessions").glob("*.json")) == [
        "arena1.mp4.prism-session.json", "arena2.mp4.prism-session.json"]
    keys(viewer, qtbot, (None, Qt.Key_PageUp))
    assert link(viewer).session is first and len(prism_layers(viewer)) == 1

    # extract the project's videos into its store; the Train section lists the features at once
    extract = workbench.open_section("Extract features")
    assert extract.default_store() == project_folder / "features.zarr"
    extract.model.setCurrentText(MODEL)
    extract.device.setCurrentText("cpu")
    extract.hop.setValue(4)
    probe = workbench.sections["Train and predict"]
    assert probe.key.count() == 0
    extract.extract()
    qtbot.waitUntil(lambda: not extract.task.running, timeout=180_000)
    assert extract.task.last_error is None, extract.task.last_error
    assert probe.key.currentText() == f"{MODEL}/mean"  # no "refresh" needed

    # train on both videos' labels (one open, one not), predict, review with keys, export
    workbench.open_section("Train and predict")
    probe.epochs.setValue(15)
    tables, _ = probe.label_tables(project_folder / "features.zarr")
    assert len(tables) == 2
    probe.train()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=180_000)
    assert probe.task.last_error is None, probe.task.last_error
    probe.predict_current()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=60_000)
    track = first.predictions["probe"]
    assert track.proba.shape == (90, 3)
    review = workbench.open_section("Review")
    review.margin.setValue(0.5)
    go_to_frame(viewer, 0)
    keys(viewer, qtbot, (None, "."))
    if review.item is not None:
        item = review.item
        keys(viewer, qtbot, (None, Qt.Key_Return))
        assert first.review[item.key] == "accepted"
    io = workbench.open_section("Save and export")
    exported = io.export(tmp_path / "arena1.csv", "csv")
    assert exported is not None and "courtship" in exported.read_text()


def test_gui_command_opens_a_project_with_the_workbench(make_napari_viewer, project_folder,
                                                         monkeypatch):
    import napari
    from napari.settings import get_settings

    from prism_science.cli import gui

    opened = {}

    def fake_run() -> None:
        viewer = napari.current_viewer()
        opened["layers"] = [layer.name for layer in viewer.layers]
        opened["docks"] = sorted(viewer.window.dock_widgets)
        opened["project"] = link(viewer).project
        opened["canvas"] = viewer.window._qt_viewer.canvas.native.width()
        viewer.close()

    monkeypatch.setattr(napari, "run", fake_run)
    outside = project_folder.parent / "extra.mp4"
    shutil.copy(project_folder / "videos" / "arena1.mp4", outside)
    Project.create(project_folder)
    assert gui.run(argparse.Namespace(path=[str(project_folder), str(outside)],
                                      widgets="Workbench")) == 0
    assert opened["layers"] == ["arena1.mp4"]  # one video at a time
    assert any("Workbench" in name for name in opened["docks"])
    assert [p.name for p in opened["project"].videos] == ["arena1.mp4", "arena2.mp4",
                                                         "extra.mp4"]
    assert Project.open(project_folder).external == [outside]
    # napari's builtin reader is not preselected for videos: ours is
    assert get_settings().plugins.extension2reader["*.mp4"] == "prism-science"
    assert get_settings().experimental.async_  # frames decode off the GUI thread
    assert gui.run(argparse.Namespace(path=[str(outside) + ".missing"], widgets="all")) == 2


def test_switching_keeps_unsaved_history_and_never_overlays(make_napari_viewer, project_folder):
    viewer = make_napari_viewer()
    project = open_paths(viewer, [project_folder])
    lk = link(viewer)
    lk.session.add_behavior("chasing")
    lk.session.set_range("chasing", 2, 6)
    for _ in range(3):
        lk.step_video(+1)
        assert len(prism_layers(viewer)) == 1
    assert prism_layers(viewer)[0].name == "arena2.mp4"
    lk.step_video(+1)
    session = prism_layers(viewer)[0].metadata[SESSION_KEY]
    assert bouts(session) == [("chasing", 2, 6)]
    assert session.undo() and bouts(session) == []  # the same session, history included
    assert project.session_path(project.videos[0]).name == "arena1.mp4.prism-session.json"


def test_the_video_stays_big_at_1280x800(make_napari_viewer, qtbot, video):
    from napari_prism._workbench import SECTIONS, video_first_layout

    viewer = make_napari_viewer(show=True)
    _, workbench = viewer.window.add_plugin_dock_widget("prism-science", "Workbench")
    video_first_layout(viewer)
    viewer.open(str(video), plugin="prism-science")
    for name in ("chasing", "courtship", "copulation"):
        link(viewer).session.add_behavior(name)
    window = viewer.window._qt_window
    window.resize(1280, 800)
    qtbot.waitUntil(lambda: window.width() == 1280, timeout=5_000)
    qtbot.wait(200)
    canvas = viewer.window._qt_viewer.canvas.native
    assert canvas.width() >= 0.65 * 1280 and canvas.height() >= 0.55 * window.height()
    assert workbench.width() <= 420
    titles = [workbench.toolbox.itemText(i) for i in range(workbench.toolbox.count())]
    assert titles == list(SECTIONS)  # one dock, readable section titles
