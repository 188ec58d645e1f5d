"""Review, Suggest and the label import/export widget on a video with predictions."""

from __future__ import annotations

import numpy as np

from napari_prism._context import go_to_frame
from napari_prism._link import link

from .conftest import fake_predictions


def open_with_predictions(make_napari_viewer, video):
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    session = link(viewer).session
    session.add_behavior("walk")
    session.add_behavior("rest")
    session.set_range("walk", 60, 75)  # the predictions below miss this bout
    proba = np.zeros((90, 2), np.float32)
    proba[10:20, 0] = 0.55  # an uncertain predicted bout
    proba[30:40, 1] = 0.6  # another
    session.set_predictions("probe", ["walk", "rest"], proba)
    return viewer, session


def test_review_accept_reject_edit_keep_curated_apart(make_napari_viewer, video):
    viewer, session = open_with_predictions(make_napari_viewer, video)
    _, review = viewer.window.add_plugin_dock_widget("prism-science", "Review predictions")
    assert review.prediction.currentText() == "probe"
    go_to_frame(viewer, 0)
    item = review.next_item()
    assert (item.behavior, item.start_frame, item.end_frame) == ("walk", 10, 19)
    assert viewer.dims.current_step[0] == 10
    review.accept()  # moves on to the next item
    assert (review.item.behavior, review.item.start_frame) == ("rest", 30)
    review.reject()
    assert review.item.reason == "disagreement" and review.item.start_frame == 60
    review.start.setValue(58)
    review.accept_edited()
    assert review.item is None  # all reviewed
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts("curated")] == [
        ("walk", 10, 19), ("walk", 58, 75)]
    assert sorted(session.review.values()) == ["accepted", "edited", "rejected"]
    assert not session.mask("walk")[10:20].any()  # manual labels untouched
    assert "3 of 3" in review.progress.text()


def test_suggest_ranks_unlabeled_stretches(make_napari_viewer, video):
    viewer, session = open_with_predictions(make_napari_viewer, video)
    session.set_predictions("probe", ["walk", "rest"], fake_predictions(90, 2))
    _, suggest = viewer.window.add_plugin_dock_widget("prism-science", "Suggest frames")
    suggest.count.setValue(3)
    suggest.length.setValue(10)
    ranked = suggest.suggest()
    assert 1 <= len(ranked) <= 3 and suggest.list.count() == len(ranked)
    for start, end, _ in ranked:
        assert not session.mask("walk")[start : end + 1].any()  # labeled frames left out
    assert list(link(viewer).timeline.suggestions) == [s for s, _, _ in ranked]
    suggest.list.itemClicked.emit(suggest.list.item(0))
    assert viewer.dims.current_step[0] == ranked[0][0]


def test_import_export_and_bad_label_file(make_napari_viewer, video, synth_clip, tmp_path):
    viewer, session = open_with_predictions(make_napari_viewer, video)
    _, io = viewer.window.add_plugin_dock_widget("prism-science", "Save and export labels")
    before = session.mask("walk").copy()
    bad = tmp_path / "bad.csv"
    bad.write_text("behavior,start_frame,end_frame\nwalk,10,5000\n")
    assert io.import_file(bad) == 0  # a notification, and nothing changes
    np.testing.assert_array_equal(session.mask("walk"), before)
    added = io.import_file(synth_clip.with_name("clip.labels.csv"))
    assert added > 0 and "animal0" in session.subjects()
    io.include["predictions"].setChecked(True)
    boris = io.export(tmp_path / "out.boris.csv", "boris-tabular")
    assert boris is not None and "START" in boris.read_text()
    nwb = io.export(tmp_path / "out.nwb", "nwb")
    assert nwb is not None and nwb.stat().st_size > 0
    written = viewer.layers.save(str(tmp_path / "via_writer.csv"), plugin="prism-science")
    assert written and "behavior,subject" in (tmp_path / "via_writer.csv").read_text()
