"""Text search with a tiny video-text model, the gui command, and bad input in the viewer."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from napari_prism._link import link
from napari_prism._timeline import LABEL_WIDTH, similarity_axis
from prism_science.errors import SearchError

from ..test_search import make_lvt_folder
from .test_qt_timeline import grab


@pytest.fixture(scope="module")
def lvt_folder(tmp_path_factory):
    """The LvT test model with a tiny SentencePiece tokenizer, saved as a weights folder."""
    return make_lvt_folder(tmp_path_factory.mktemp("lvt"))


def _rows_of_colour(pixels: np.ndarray, rgb: tuple[int, int, int], x0: int) -> np.ndarray:
    """Pixel rows (y) right of ``x0`` holding a colour close to ``rgb``."""
    near = np.abs(pixels[:, x0:].astype(int) - np.array(rgb)).sum(axis=2) < 60
    return np.flatnonzero(near.any(axis=1))


def test_search_by_text_draws_the_library_curve_and_lists_ranges(
        make_napari_viewer, qtbot, video, lvt_folder, monkeypatch):
    from prism_science import search as library

    viewer = make_napari_viewer(show=True)
    viewer.open(str(video), plugin="prism-science")
    _, search = viewer.window.add_plugin_dock_widget("prism-science", "Search by text")
    offered = [search.model.itemText(i) for i in range(search.model.count())]
    assert search.model.currentText() == "default" and offered == library.text_models()
    assert not any(name.startswith(("prism-test", "prism-lvt-test")) for name in offered)
    search.model.setCurrentText(str(lvt_folder))
    search.device.setCurrentText("cpu")
    search.peaks.setValue(3)
    search.query.setText("a mouse grooming")
    search.search()
    qtbot.waitUntil(lambda: not search.task.running, timeout=120_000)
    assert search.task.last_error is None, search.task.last_error
    timeline = link(viewer).timeline
    expected = library.search(video, "a mouse grooming", model=lvt_folder, top=3)[0]
    np.testing.assert_allclose(timeline.similarity, expected.similarity, atol=1e-6)  # as is
    assert 1 <= search.list.count() == len(expected.hits) <= 3
    first = expected.hits[0]
    assert int(search.list.item(0).data(256)) == first.start_frame
    assert f"{first.start_frame}-{first.end_frame}" in search.list.item(0).text()
    assert library.format_time(first.start_s) in search.list.item(0).text()
    search.list.itemClicked.emit(search.list.item(0))
    assert viewer.dims.current_step[0] == first.start_frame
    # the search row fits in the timeline, and it is painted there
    qtbot.waitUntil(lambda: timeline.height() >= timeline.sizeHint().height(), timeout=5_000)
    pixels = grab(timeline)
    curve_rows = _rows_of_colour(pixels, (120, 220, 255), LABEL_WIDTH)
    assert curve_rows.size and curve_rows.max() < timeline.height()
    # another query on the same video reuses the clip embeddings kept by the widget
    monkeypatch.setattr(library, "iter_clip_embeddings", _must_not_encode)
    search.query.setText("two animal resting")
    search.search()
    qtbot.waitUntil(lambda: not search.task.running, timeout=60_000)
    assert search.task.last_error is None, search.task.last_error
    assert search.result.query == "two animal resting"


def _must_not_encode(*args, **kwargs):
    raise AssertionError("the video was encoded again")


def test_similarity_is_drawn_on_an_absolute_axis_inside_the_timeline(
        make_napari_viewer, qtbot, video):
    viewer = make_napari_viewer(show=True)
    viewer.open(str(video), plugin="prism-science")
    timeline = link(viewer).timeline
    for name in ("walk", "groom", "rest"):
        timeline.session.add_behavior(name)
    timeline.suggestions = np.array([3, 50])
    weak = np.linspace(-0.042, -0.039, 90).astype(np.float32)  # the flat random model
    timeline.similarity = weak
    qtbot.waitUntil(lambda: timeline.height() >= timeline.sizeHint().height(), timeout=5_000)
    assert similarity_axis(weak) == (-0.2, 0.0)
    assert similarity_axis(np.array([0.05, 0.31])) == (0.0, 0.4)
    pixels = grab(timeline)
    ticks = _rows_of_colour(pixels, (255, 200, 0), LABEL_WIDTH)
    curve = _rows_of_colour(pixels, (120, 220, 255), LABEL_WIDTH + 2)
    assert ticks.size and curve.size and max(ticks.max(), curve.max()) < timeline.height()
    # a 0.003 spread is not stretched over the row: the curve stays within a few pixels
    assert curve.max() - curve.min() <= 3
    # a dock too short for the rows still shows them, at its bottom edge
    timeline.setMinimumHeight(0)
    timeline.resize(timeline.width(), 90)
    short = grab(timeline)
    assert _rows_of_colour(short, (120, 220, 255), LABEL_WIDTH + 2).size


def test_search_with_a_model_without_text_tower_is_refused_before_loading(
        make_napari_viewer, video, monkeypatch):
    from prism_science import search as library

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before the refusal")

    monkeypatch.setattr(library, "load_encoder", no_loading)
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    _, search = viewer.window.add_plugin_dock_widget("prism-science", "Search by text")
    for name, reason in (("prism-test-p8-f4-r32", "text tower"),
                         ("prism-lvt-test-p8-f4-r32", "tokenizer")):
        search.model.setCurrentText(name)
        search.query.setText("grooming")
        search.search()
        assert not search.task.running  # no worker started
        assert isinstance(search.task.last_error, SearchError)
        assert reason in str(search.task.last_error) and name in str(search.task.last_error)
        assert "default" in search.task.status.text()


def test_bad_video_and_unreadable_session(make_napari_viewer, video, tmp_path):
    viewer = make_napari_viewer()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(Exception, match="broken.mp4"):
        viewer.open(str(broken), plugin="prism-science")
    assert len(viewer.layers) == 0
    # a damaged session file is kept aside, never overwritten, and a new session starts
    session_file = video.with_name(video.name + ".prism-session.json")
    session_file.write_text("{damaged")
    viewer.open(str(video), plugin="prism-science")
    assert link(viewer).session is not None
    kept = [p for p in video.parent.iterdir() if ".damaged-" in p.name]
    assert len(kept) == 1 and kept[0].read_text() == "{damaged"


def test_predict_without_features_notifies(make_napari_viewer, qtbot, video, tmp_path):
    from prism_science.probes import LinearProbe, save_probe

    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    _, probe_widget = viewer.window.add_plugin_dock_widget("prism-science", "Train and predict")
    rng = np.random.default_rng(0)
    other = LinearProbe(max_epochs=2).fit(rng.normal(size=(40, 7)).astype(np.float32),
                                          np.repeat([[1, 0], [0, 1]], 20, axis=0),
                                          behavior_names=["a", "b"])
    probe_widget.load(save_probe(other, tmp_path / "probe"))
    assert probe_widget.probe is not None
    probe_widget.predict_current()  # no features for this video: a notification, no crash
    assert not probe_widget.task.running and link(viewer).session.predictions == {}


def test_gui_command_opens_the_video_with_the_plugin_docked(make_napari_viewer, video,
                                                            monkeypatch):
    import napari

    from prism_science.cli import gui

    opened = {}

    def fake_run() -> None:
        viewer = napari.current_viewer()
        opened["layers"] = [layer.name for layer in viewer.layers]
        opened["docks"] = sorted(viewer.window.dock_widgets)
        viewer.close()

    monkeypatch.setattr(napari, "run", fake_run)
    args = argparse.Namespace(path=str(video), widgets="Ethogram,Train and predict")
    assert gui.run(args) == 0
    assert opened["layers"] == ["clip.mp4"]
    assert any("Ethogram" in name for name in opened["docks"])
    assert any("prism timeline" in name for name in opened["docks"])
    assert gui.run(argparse.Namespace(path=str(video) + ".missing", widgets="all")) == 2
