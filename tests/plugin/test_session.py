"""Qt-free tests of the labeling session (prism_science.session): run anywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.session import Behavior, LabelingSession, mask_to_runs


def make_session(tmp_path, n=100, **kwargs) -> LabelingSession:
    return LabelingSession(n, 25.0, path=tmp_path / "clip.mp4.prism-session.json",
                           behaviors=["walk", "groom"], **kwargs)


def test_mask_to_runs_inclusive_ends():
    mask = np.array([0, 1, 1, 0, 0, 1, 0, 1], dtype=bool)
    assert mask_to_runs(mask) == [(1, 2), (5, 5), (7, 7)]
    assert mask_to_runs(np.zeros(4, bool)) == []


def test_start_stop_labels_inclusive_range_in_either_order(tmp_path):
    session = make_session(tmp_path)
    assert session.start_stop("walk", 10) == "started"
    assert session.open_bouts == {"walk": 10}
    assert session.start_stop("walk", 14) == "stopped"
    assert session.start_stop("groom", 40) == "started"
    assert session.start_stop("groom", 30) == "stopped"
    bouts = session.bouts("manual")
    assert [(b.behavior, b.start_frame, b.end_frame) for b in bouts] == [
        ("walk", 10, 14), ("groom", 30, 40)]


def test_toggle_undo_redo(tmp_path):
    session = make_session(tmp_path)
    assert session.toggle_frame("walk", 5) is True
    assert session.toggle_frame("walk", 5) is False
    session.set_range("walk", 3, 6)
    assert session.mask("walk")[3:7].all()
    assert session.undo() and not session.mask("walk").any()
    assert session.undo() and session.mask("walk")[5]
    assert session.redo() and not session.mask("walk")[5]
    assert session.redo() and session.mask("walk")[3:7].all()
    assert session.redo() is False


def test_exclusive_group_clears_other_behaviors(tmp_path):
    session = make_session(tmp_path)
    session.update_behavior("walk", group="locomotion")
    session.update_behavior("groom", group="locomotion")
    session.set_range("walk", 0, 20)
    session.set_range("groom", 10, 15)
    assert session.mask("walk")[:10].all() and not session.mask("walk")[10:16].any()
    assert session.mask("walk")[16:21].all()
    # starting a group member closes the other's open bout at the frame before
    session.start_stop("walk", 50)
    session.start_stop("groom", 60)
    assert session.mask("walk")[50:60].all() and "walk" not in session.open_bouts


def test_behavior_management_errors(tmp_path):
    session = make_session(tmp_path)
    with pytest.raises(LabelError, match="already exists"):
        session.add_behavior("walk")
    with pytest.raises(LabelError, match="already used"):
        session.add_behavior(Behavior("run", key=session.behavior("walk").key))
    with pytest.raises(LabelError, match="not in the ethogram"):
        session.start_stop("fly", 3)
    with pytest.raises(LabelError, match="outside the video"):
        session.set_range("walk", 0, 100)
    assert session.behavior_for_key(session.behavior("groom").key) == "groom"
    for behavior in session.behaviors:
        assert behavior.key not in "vz"  # napari's keys are never chosen


def test_records_use_real_timestamps(tmp_path):
    ts = np.array([0.0, 0.04, 0.1, 0.14, 0.2])  # a dropped frame between 1 and 2
    session = LabelingSession(5, 25.0, timestamps=ts, behaviors=["walk"])
    session.set_range("walk", 1, 2)
    session.set_range("walk", 4, 4)
    rows = session.records(["manual"])
    assert (rows[0]["start_s"], rows[0]["end_s"]) == (0.04, 0.14)
    assert rows[1]["end_s"] == pytest.approx(0.24)


def test_save_load_roundtrip_with_predictions_and_review(tmp_path):
    session = make_session(tmp_path)
    session.set_subject("male")
    session.set_range("walk", 10, 19)
    session.start_stop("groom", 70)  # still open when saved
    proba = np.zeros((100, 2), np.float32)
    proba[10:20, 0] = 0.9
    proba[40:45, 1] = 0.55
    session.set_predictions("linear", ["walk", "groom"], proba)
    item = session.next_review_item("linear", 0)
    assert item is not None and item.behavior == "groom" and item.reason == "low_confidence"
    session.accept(item)
    path = session.save()
    data = json.loads(path.read_text())
    assert data["format"] == "prism-science.session"
    again = LabelingSession.load(path, n_frames=100)
    assert again.behavior_names() == ["walk", "groom"]
    assert again.subject == "male"
    assert np.array_equal(again.mask("walk"), session.mask("walk"))
    assert np.array_equal(again.mask("groom", "curated"), session.mask("groom", "curated"))
    assert not again.mask("groom").any()  # curated kept apart from manual
    assert again.open_bouts == {"groom": 70}
    assert again.review == {item.key: "accepted"}
    np.testing.assert_array_equal(again.predictions["linear"].proba, proba)
    assert again.bouts("linear") == session.bouts("linear")
    assert again.next_review_item("linear", 0) is None  # the only item was reviewed


def test_review_disagreement_reject_and_edit(tmp_path):
    session = make_session(tmp_path)
    session.set_range("walk", 50, 59)  # manual bout the prediction misses
    proba = np.zeros((100, 2), np.float32)
    proba[20:30, 0] = 0.95  # confident, but the manual labels say otherwise
    session.set_predictions("p", ["walk", "groom"], proba)
    items = session.review_items("p")
    assert [(i.start_frame, i.reason) for i in items] == [(20, "disagreement"),
                                                          (50, "disagreement")]
    session.reject(items[0])
    assert not session.mask("walk", "curated").any()
    session.edit(items[1], 48, 59)
    assert session.mask("walk", "curated")[48:60].all()
    assert session.review == {items[0].key: "rejected", items[1].key: "edited"}


def test_predictions_shape_checked(tmp_path):
    session = make_session(tmp_path)
    with pytest.raises(LabelError, match=r"expected \(100, 2\)"):
        session.set_predictions("p", ["walk", "groom"], np.zeros((99, 2)))


def test_autosave_is_atomic_and_throttled(tmp_path):
    session = LabelingSession(100, 25.0, path=tmp_path / "s.json", autosave_interval=3600.0)
    session.add_behavior("walk")  # first change: saved at once (never saved before)
    assert session.path.exists() and not session.dirty
    session.set_range("walk", 5, 6)
    assert session.dirty  # within the interval: not saved yet
    assert session.maybe_autosave(force=True) and not session.dirty
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert LabelingSession.load(session.path).mask("walk")[5]


def test_load_refuses_other_video_and_garbage(tmp_path):
    session = make_session(tmp_path)
    session.set_range("walk", 1, 2)
    path = session.save()
    with pytest.raises(LabelError, match="another video"):
        LabelingSession.load(path, n_frames=50)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(LabelError, match="cannot read"):
        LabelingSession.load(bad)


def test_label_table_roundtrip(tmp_path):
    session = make_session(tmp_path)
    session.update_behavior("walk", group="g")
    session.update_behavior("groom", group="g")
    session.set_range("walk", 0, 9)
    session.set_range("groom", 20, 29, source="curated")
    table = session.to_table(("manual", "curated"), fully_labeled=True)
    table.validate()
    assert [(iv.behavior, iv.source) for iv in table.intervals] == [
        ("walk", "manual"), ("groom", "curated")]
    assert table.behavior_set.exclusive_groups == (("walk", "groom"),)
    other = LabelingSession(100, 25.0)
    assert other.add_table(table) == 2
    assert np.array_equal(other.mask("groom", "curated"), session.mask("groom", "curated"))
    assert other.behavior("walk").group == other.behavior("groom").group != ""
