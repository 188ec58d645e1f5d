"""The plugin per animal, the way a person uses it: tracks drawn over the video, Tab / Shift+Tab
switch the subject the keys label, one timeline group per subject (keys and mouse drags label
that subject's row), a tracks file of another video refused with a notification, the built-in
tracker from the GUI, and per-subject extraction then per-subject training from the widgets."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from .conftest import _qt_unavailable

pytestmark = [pytest.mark.qt]
if _qt_unavailable():
    pytest.skip(f"Qt tests skipped: {_qt_unavailable()}", allow_module_level=True)

from napari_prism._context import current_frame, go_to_frame  # noqa: E402
from napari_prism._link import link  # noqa: E402
from napari_prism._timeline import LABEL_WIDTH, MANUAL_BAND, subject_color  # noqa: E402
from napari_prism._tracks import default_tracks_file, tracks_view  # noqa: E402

from .test_qt_timeline import grab  # noqa: E402

MODEL = "prism-test-p8-f4-r32"


@pytest.fixture(scope="module")
def pair_clip(tmp_path_factory):
    """A 2-animal synthetic clip (30 frames, 96 px) and its ground-truth tracks CSV."""
    from prism_science.synth import SynthConfig, generate_clip, write_clip
    from prism_science.tracks import Tracks, write_tracks_csv

    clip = generate_clip(3, SynthConfig(size=(96, 96), fps=15.0, seconds=(2.0, 2.0),
                                        n_animals=2, noise=(0.0, 0.0), blur=(0.0, 0.0)))
    folder = tmp_path_factory.mktemp("pair")
    video = write_clip(clip, folder, "pair")
    lengths = np.array([[a.body_length_px for a in clip.animals]] * clip.n_frames, np.float32)
    tracks = Tracks(centroids=clip.tracks[..., :2].astype(np.float32),
                    subjects=[a.id for a in clip.animals],
                    heading=clip.tracks[..., 2].astype(np.float32), body_length=lengths,
                    frame_size=(96, 96))
    tracks_path = write_tracks_csv(tracks, folder / "truth.tracks.csv", video=str(video))
    return video, tracks_path, tracks


@pytest.fixture
def pair(pair_clip, tmp_path):
    """A private copy of the 2-animal clip (sessions and tracks are written beside it)."""
    video, tracks_path, tracks = pair_clip
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(video, folder / video.name)
    shutil.copy(tracks_path, folder / tracks_path.name)
    return folder / video.name, folder / tracks_path.name, tracks


def canvas(viewer):
    return viewer.window._qt_viewer.canvas.native


def key(viewer, qtbot, text, modifier=Qt.NoModifier) -> None:
    qtbot.keyClick(canvas(viewer), text, modifier)


def notifications(since: int, severity: str = "error") -> list[str]:
    from napari.utils.notifications import notification_manager

    return [str(n.message) for n in notification_manager.records[since:]
            if n.severity == severity]


def hex_of(rgb) -> str:
    return "#" + "".join(f"{int(v):02x}" for v in rgb)


def n_records() -> int:
    from napari.utils.notifications import notification_manager

    return len(notification_manager.records)


@pytest.fixture
def labeling(make_napari_viewer, pair):
    video, tracks_path, tracks = pair
    viewer = make_napari_viewer(show=True)
    viewer.open(str(video), plugin="prism-science")
    _, workbench = viewer.window.add_plugin_dock_widget("prism-science", "Workbench")
    ethogram = workbench.open_section("Ethogram")
    for name in ("chasing", "resting"):
        ethogram.new_name.setText(name)
        ethogram._add()
    return viewer, workbench, link(viewer).session, tracks_path, tracks


def test_tracks_follow_the_frame_and_tab_switches_the_subject_the_keys_label(labeling, qtbot):
    viewer, workbench, session, tracks_path, truth = labeling
    view = tracks_view(viewer)
    assert view.tracks is None  # no VIDEO.tracks.csv beside the video
    ethogram = workbench.sections["Ethogram"]
    assert "tracks: none" in ethogram.tracks.label.text()
    assert view.open(tracks_path) is not None
    layer = view.layer
    assert layer in viewer.layers and layer._type_string == "points"
    assert viewer.layers.selection.active is viewer.layers[0]  # keys stay the video's
    assert session.subject == "animal0"  # the first animal is the labeling target
    # the points shown at a frame are that frame's centroids, (y, x), one per subject
    for frame in (0, 17, 29):
        go_to_frame(viewer, frame)
        shown = layer.data[layer._view_indices]
        expected = truth.centroids[frame][:, ::-1]
        assert shown.shape == (2, 3) and np.all(shown[:, 0] == frame)
        np.testing.assert_allclose(np.sort(shown[:, 1:], axis=0), np.sort(expected, axis=0),
                                   atol=0.01)
    # the labeling target is larger, opaque, white-bordered; the other one dimmed
    owners = np.array([truth.subjects.index(s) for s in layer.properties["subject"]])
    assert layer.size[owners == 0].min() > layer.size[owners == 1].max()
    assert np.all(layer.face_color[owners == 0, 3] == 1.0)
    assert np.all(layer.face_color[owners == 1, 3] < 0.5)
    assert ethogram.subject.currentText() == "animal0"
    assert [ethogram.subject.itemText(i) for i in range(ethogram.subject.count())] == \
        ["animal0", "animal1"]

    # Tab: the next animal; its bout with the label key lands in its own timeline row
    go_to_frame(viewer, 5)
    key(viewer, qtbot, Qt.Key_Tab)
    assert session.subject == "animal1"
    assert "animal1" in viewer.status
    assert "labeling animal1" in viewer.canvas.overlays["text"].text
    assert ethogram.subject.currentText() == "animal1"
    assert layer.size[owners == 1].min() > layer.size[owners == 0].max()  # highlight follows
    key(viewer, qtbot, "c")
    go_to_frame(viewer, 12)
    key(viewer, qtbot, "c")
    # Shift+Tab: back to the first animal, which gets a bout of its own
    key(viewer, qtbot, Qt.Key_Backtab, Qt.ShiftModifier)
    assert session.subject == "animal0"
    go_to_frame(viewer, 20)
    key(viewer, qtbot, "r")
    go_to_frame(viewer, 25)
    key(viewer, qtbot, "r")
    assert [(b.behavior, b.subject, b.start_frame, b.end_frame) for b in session.bouts()] == [
        ("chasing", "animal1", 5, 12), ("resting", "animal0", 20, 25)]
    assert current_frame(viewer) == 25  # Tab did not move the frame or the focus

    # the timeline: one group per subject, each bout drawn in its subject's row only
    timeline = link(viewer).timeline
    assert timeline.subject_groups() == ["animal0", "animal1"]
    timeline.resize(900, timeline.sizeHint().height())
    image = grab(timeline)
    chasing = session.behavior("chasing").color

    def pixel(subject: str, behavior: str, frame: int) -> str:
        y = int(timeline.row_top(subject, behavior)) + MANUAL_BAND[0] + MANUAL_BAND[1] // 2
        return hex_of(image[y, int(timeline.x_of(frame + 0.5))])

    assert pixel("animal1", "chasing", 8) == chasing
    assert pixel("animal0", "chasing", 8) != chasing
    assert pixel("animal0", "resting", 22) == session.behavior("resting").color
    assert pixel("animal1", "resting", 22) != session.behavior("resting").color
    assert hex_of(image[int(timeline.row_top("animal1", None)) + 5, 2]) == subject_color(1)


def test_a_drag_in_a_subject_row_labels_that_subject_and_a_header_click_targets_it(
        labeling, qtbot):
    viewer, _, session, tracks_path, _ = labeling
    tracks_view(viewer).open(tracks_path)
    timeline = link(viewer).timeline
    timeline.resize(900, timeline.sizeHint().height())
    y = int(timeline.row_top("animal1", "resting")) + 6
    x0, x1 = int(timeline.x_of(3.5)), int(timeline.x_of(9.5))
    assert x0 > LABEL_WIDTH
    qtbot.mousePress(timeline, Qt.LeftButton, pos=QPoint(x0, y))
    qtbot.mouseMove(timeline, QPoint(x1, y))
    qtbot.mouseRelease(timeline, Qt.LeftButton, pos=QPoint(x1, y))
    assert session.subject == "animal0"  # the target did not change: the row chose
    assert np.flatnonzero(session.mask("resting", subject="animal1")).tolist() == \
        list(range(3, 10))
    assert not session.mask("resting", subject="animal0").any()
    # a click on the header of animal1 makes it the labeling target
    qtbot.mouseClick(timeline, Qt.LeftButton,
                     pos=QPoint(300, int(timeline.row_top("animal1", None)) + 4))
    assert session.subject == "animal1"


def test_tracks_of_another_video_are_refused_with_a_notification(labeling, tmp_path):
    from prism_science.tracks import Tracks, write_tracks_csv

    viewer, _, _, _, truth = labeling
    other = Tracks(centroids=truth.centroids[:10], subjects=truth.subjects,
                   frame_size=(96, 96))
    path = write_tracks_csv(other, tmp_path / "short.tracks.csv", video="other.mp4")
    before = n_records()
    layers = len(viewer.layers)
    assert tracks_view(viewer).open(path) is None
    messages = notifications(before)
    assert any("short.tracks.csv has 10 frames" in m and "pair.mp4 has 30" in m
               and "another video" in m for m in messages), messages
    assert len(viewer.layers) == layers and tracks_view(viewer).tracks is None


def test_a_dropped_tracks_file_is_drawn_over_the_video(labeling, qtbot):
    viewer, _, _, tracks_path, truth = labeling
    before = n_records()
    viewer.open(str(tracks_path), plugin="prism-science")  # what a drop on the window does
    view = tracks_view(viewer)
    qtbot.waitUntil(lambda: view.tracks is not None, timeout=5_000)
    qtbot.wait(200)  # the view's own layer is never taken over again
    assert view.tracks.subjects == truth.subjects
    points = [layer for layer in viewer.layers if layer._type_string == "points"]
    assert points == [view.layer]  # the reader's layer was replaced by the checked one
    shown = [m for m in notifications(before, "info") if m.startswith("tracks of 2 subject")]
    assert len(shown) == 1, shown


def test_track_it_runs_the_tracker_and_saves_the_tracks_beside_the_video(labeling, qtbot):
    viewer, workbench, session, _, truth = labeling
    widget = workbench.sections["Ethogram"].tracks
    widget.n_animals.setValue(2)
    widget.track()
    qtbot.waitUntil(lambda: not widget.task.running, timeout=120_000)
    assert widget.task.last_error is None, widget.task.last_error
    out = default_tracks_file(session.video_path)
    assert out.is_file() and widget.task.status.text() == f"tracks saved to {out}"
    view = tracks_view(viewer)
    assert view.path == out and view.tracks.subjects == ["animal0", "animal1"]
    assert view.layer in viewer.layers
    assert "animal0" in widget.label.text()
    # the tracker's tracks have boxes: drawn as (frame, y, x) rectangles, the target's wider
    boxes = view.boxes
    assert boxes is not None and len(boxes.data) == int(view.tracks.present.sum())
    owners = np.asarray(boxes.metadata["prism_boxes_owner"])
    target = view.tracks.subjects.index(session.subject)
    widths = np.asarray(boxes.edge_width)
    assert widths[owners == target].min() > widths[owners != target].max()


def test_per_subject_extraction_then_per_subject_training_from_the_widgets(
        labeling, qtbot, tmp_path):
    from napari_prism._extract_widget import PER_SUBJECT
    from prism_science.pipeline.subjects import subject_prediction_name
    from prism_science.store import open_store

    viewer, workbench, session, tracks_path, _ = labeling
    extract = workbench.open_section("Extract features")
    assert not extract.per_subject.model().item(1).isEnabled()  # no tracks yet: whole frames
    tracks_view(viewer).open(tracks_path)
    assert extract.per_subject.model().item(1).isEnabled()
    # each subject's own bouts (the two animals do different things at the same time)
    for subject, chasing, resting in (("animal0", (3, 12), (18, 27)),
                                      ("animal1", (16, 26), (2, 10))):
        session.set_range("chasing", *chasing, subject=subject)
        session.set_range("resting", *resting, subject=subject)
    store = tmp_path / "features.zarr"
    extract.store.setText(str(store))
    extract.model.setCurrentText(MODEL)
    extract.device.setCurrentText("cpu")
    extract.hop.setValue(2)
    extract.per_subject.setCurrentText(PER_SUBJECT)
    extract.crop_size.setValue(40)
    extract.extract()
    qtbot.waitUntil(lambda: not extract.task.running, timeout=180_000)
    assert extract.task.last_error is None, extract.task.last_error
    video_id = session.features[1]
    keys = [f"{MODEL}/mean@animal0", f"{MODEL}/mean@animal1"]
    with open_store(store, mode="r") as opened:
        assert sorted(opened.feature_keys(video_id)) == keys
        for key, subject in zip(keys, ("animal0", "animal1"), strict=True):
            assert opened.feature_status(video_id, key) == "complete"
            crop = opened.feature_provenance(video_id, key)["crop"]
            assert crop["subject"] == subject and crop["size"] == 40
        first = opened.read_features(video_id, keys[0]).values
        second = opened.read_features(video_id, keys[1]).values
    assert first.shape[0] == 30 and not np.allclose(first, second)  # each animal's own crops

    probe = workbench.open_section("Train and predict")
    probe.refresh_keys()
    probe.key.setCurrentText(keys[0])
    assert probe.per_subject.isEnabled() and probe.per_subject.isChecked()
    probe.epochs.setValue(10)
    probe.train()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=180_000)
    assert probe.task.last_error is None, probe.task.last_error
    assert probe.result.data.video_ids == [f"{video_id}@animal0", f"{video_id}@animal1"]
    assert probe.probe.feature_provenance_["per_subject"] is True
    probe.predict_current()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=120_000)
    assert probe.task.last_error is None, probe.task.last_error
    name = probe._name()
    for subject in ("animal0", "animal1"):
        set_name = subject_prediction_name(name, subject)
        assert session.predictions[set_name].proba.shape == (30, 2)
        assert link(viewer).timeline.track_for(subject).name == set_name
    with open_store(store, mode="r") as opened:
        assert opened.has_item(video_id, f"predictions/{subject_prediction_name(name, 'animal1')}")
