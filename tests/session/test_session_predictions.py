"""What the plugin's timeline shows for a prediction: the probe's thresholds and bout
post-processing, the very bouts `prism-science probe predict` saves (Qt-free)."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.pipeline import load_predictions, predict_to_store, predict_video, train_probe
from prism_science.probes import binarize_predictions
from prism_science.session import LabelingSession, mask_to_runs
from prism_science.store import open_store
from tests.probes.test_probe_cli import KEY, build_store

POST = {"min_bout": 3, "max_gap": 2}


def walk_and_groom(tmp_path, n=40) -> LabelingSession:
    return LabelingSession(n, 25.0, path=tmp_path / "clip.mp4.prism-session.json",
                           behaviors=["walk", "groom"])


def test_timeline_drops_a_short_bout_and_fills_a_short_gap(tmp_path):
    session = walk_and_groom(tmp_path)
    proba = np.zeros((40, 2), np.float32)
    proba[5:15, 0] = 0.9
    proba[9:11, 0] = 0.2  # a 2-frame dip: filled (max_gap 2)
    proba[25, 0] = 0.95  # a 1-frame spurious bout: dropped (min_bout 3)
    proba[30:36, 1] = 0.45  # over groom's own threshold
    session.set_predictions("p", ["walk", "groom"], proba, [0.5, 0.4], POST)
    track = session.predictions["p"]
    assert mask_to_runs(track.predicted("walk")) == [(5, 14)]
    assert mask_to_runs(track.predicted("groom")) == [(30, 35)]
    assert track.predicted("rear") is None
    np.testing.assert_array_equal(track.binary(), binarize_predictions(proba, [0.5, 0.4], POST))
    # The bouts listed, reviewed and exported are the timeline's.
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts("p")] == [
        ("walk", 5, 14), ("groom", 30, 35)]
    assert [(r["start_frame"], r["end_frame"]) for r in session.records(["p"])] == [
        (5, 14), (30, 35)]
    # Without the probe's post-processing the gap and the spurious frame would show.
    session.set_predictions("raw", ["walk", "groom"], proba, [0.5, 0.4])
    assert mask_to_runs(session.predictions["raw"].predicted("walk")) == [
        (5, 8), (11, 14), (25, 25)]
    # The settings are saved with the session.
    again = LabelingSession.load(session.save(), n_frames=40)
    assert again.predictions["p"].postprocess == POST
    assert again.bouts("p") == session.bouts("p")
    with pytest.raises(LabelError, match="min_bout"):
        session.set_predictions("bad", ["walk", "groom"], proba, 0.5, {"min_bout": 0})


def test_gui_predictions_equal_the_saved_cli_predictions(tmp_path):
    store_path = tmp_path / "s.zarr"
    build_store(store_path)
    with open_store(store_path, mode="a") as store:
        probe = train_probe(store, "manual", "linear", params={"max_epochs": 30},
                            **POST).probe
        saved = predict_to_store(probe, store, "lin")  # what `prism-science probe predict` does
    changed = False
    for video_id, written in saved.items():
        binary = written.binary
        # The plugin's "predict video": probabilities, thresholds and post-processing.
        session = LabelingSession(len(binary), 30.0)
        with open_store(store_path, mode="r") as store:
            found = predict_video(probe, store, video_id, KEY)
        assert found.postprocess == POST
        track = session.set_predictions("lin", found.behaviors, found.scores, found.thresholds,
                                        found.postprocess)
        np.testing.assert_array_equal(track.binary(), binary)
        changed |= bool((binary != (found.scores >= np.asarray(found.thresholds))).any())
        # A store opened in the GUI shows the saved `probe predict` output as it is.
        opened = LabelingSession.from_store(store_path, video_id)
        np.testing.assert_array_equal(opened.predictions["lin"].binary(), binary)
    assert changed  # the post-processing did change some frames: the test compares something
    # Saving a session from the store leaves the `probe predict` arrays where they are, and
    # writes its own predictions in the same layout.
    opened.set_predictions("gui", found.behaviors, found.scores, found.thresholds, POST)
    opened.save()
    with open_store(store_path, mode="r") as store:
        np.testing.assert_array_equal(store.read_array(video_id, "predictions/lin/binary"),
                                      binary)
        scores, gui_binary, attrs = load_predictions(store, video_id, "gui")
        assert attrs["postprocess"] == POST and attrs["behaviors"] == found.behaviors
        np.testing.assert_array_equal(gui_binary, binary)
        assert "gui" in store.list_items(video_id, "labels/predicted")


def test_session_saves_over_old_single_array_predictions(tmp_path):
    """A store where an earlier plugin wrote ``predictions/<name>`` as one array: the session
    reads it, and saving rewrites it in the pipeline's layout (no 'not a group' error)."""
    store_path = tmp_path / "s.zarr"
    build_store(store_path, n_videos=1, labeled_videos=1)
    proba = np.zeros((150, 2), np.float32)
    proba[10:20, 0] = 0.9
    with open_store(store_path, mode="a") as store:
        store.write_array("v0", "predictions/probe", proba,
                          {"classes": ["walk", "groom"], "thresholds": [0.5, 0.5]})
    session = LabelingSession.from_store(store_path, "v0")
    assert mask_to_runs(session.predictions["probe"].predicted("walk")) == [(10, 19)]
    proba[30:40, 1] = 0.8
    session.set_predictions("probe", ["walk", "groom"], proba, 0.5, POST)
    session.save()
    with open_store(store_path, mode="r") as store:
        scores, binary, _ = load_predictions(store, "v0", "probe")
        assert store.has_item("v0", "predictions/probe/binary")
    np.testing.assert_array_equal(scores, proba)
    assert mask_to_runs(binary[:, 1].astype(bool)) == [(30, 39)]
    again = LabelingSession.from_store(store_path, "v0")
    np.testing.assert_array_equal(again.predictions["probe"].binary(), binary)
