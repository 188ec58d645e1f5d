"""Library side of the workbench items: bulk acceptance of predictions, point events and the
ethogram imported from a BORIS project or a CSV (no Qt)."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.session import Behavior, LabelingSession


def session_with_predictions() -> LabelingSession:
    session = LabelingSession(100, fps=10.0, behaviors=["walk", "rest"])
    proba = np.zeros((100, 2), np.float32)
    proba[10:20, 0] = 0.9  # walk 10-19
    proba[45:60, 0] = 0.8  # walk 45-59, crosses the end of the range below
    proba[30:35, 1] = 0.7  # rest 30-34
    session.set_predictions("probe", ["walk", "rest"], proba)
    return session


def test_accept_predictions_of_a_range_in_one_undo_step():
    session = session_with_predictions()
    session.set_range("walk", 12, 14, source="curated")  # already curated: counted once
    added = session.accept_predictions("probe", 50, 5)  # either order
    assert added == {"walk": (10 - 3) + 6, "rest": 5}  # 10-19 less 12-14, and 45-50
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts("curated")] == [
        ("walk", 10, 19), ("rest", 30, 34), ("walk", 45, 50)]
    assert not session.mask("walk").any()  # manual labels untouched
    # bouts wholly inside the range count as reviewed; the one crossing its end does not
    reviewed = {tuple(key.split("|")[1:]) for key in session.review}
    assert reviewed == {("walk", "10", "19"), ("rest", "30", "34")}
    assert session.undo()
    assert [(b.start_frame, b.end_frame) for b in session.bouts("curated")] == [(12, 14)]


def test_accept_predictions_of_chosen_behaviors_and_errors():
    session = session_with_predictions()
    assert session.accept_predictions("probe", 0, 99, behaviors=["rest"]) == {"rest": 5}
    assert not session.mask("walk", "curated").any()
    with pytest.raises(LabelError, match="no prediction named 'other'.*loaded: probe"):
        session.accept_predictions("other", 0, 10)
    with pytest.raises(LabelError, match="frame 100 is outside the video"):
        session.accept_predictions("probe", 0, 100)
    session.add_behavior("groom")
    with pytest.raises(LabelError, match="does not predict 'groom'"):
        session.accept_predictions("probe", 0, 10, behaviors=["groom"])


def point_session(tmp_path) -> LabelingSession:
    session = LabelingSession(50, fps=10.0, path=tmp_path / "s.prism-session.json",
                              behaviors=[Behavior("walk", "w"), Behavior("jump", "j", point=True)])
    assert session.start_stop("walk", 5) == "started"
    assert session.start_stop("walk", 9) == "stopped"
    for frame in (20, 21, 30):
        assert session.start_stop("jump", frame) == "point"  # one press, one event
    assert session.start_stop("jump", 30) == "removed"  # a second press at the frame undoes it
    assert session.start_stop("jump", 31) == "point"
    assert "jump" not in session.open_bouts
    return session


def test_point_events_are_one_frame_bouts_each(tmp_path):
    session = point_session(tmp_path)
    assert [(b.behavior, b.start_frame, b.end_frame, b.point) for b in session.bouts()] == [
        ("walk", 5, 9, False), ("jump", 20, 20, True), ("jump", 21, 21, True),
        ("jump", 31, 31, True)]  # adjacent events stay apart
    # saved and loaded with the session: the type and the events
    session.save()
    again = LabelingSession.load(session.path, n_frames=50)
    assert again.behavior("jump").point and not again.behavior("walk").point
    assert [(b.start_frame, b.point) for b in again.bouts() if b.behavior == "jump"] == [
        (20, True), (21, True), (31, True)]
    # switching to a state event merges them into runs again, and back
    again.update_behavior("jump", point=False)
    assert [(b.start_frame, b.end_frame) for b in again.bouts() if b.behavior == "jump"] == [
        (20, 21), (31, 31)]


def test_point_events_export_as_boris_points_and_plain_csv_rows(tmp_path):
    import csv
    import json

    from prism_science.labels import read_labels, write_labels

    session = point_session(tmp_path)
    table = session.to_table(video_id="clip")
    write_labels(table, tmp_path / "labels.boris", "boris")
    project = json.loads((tmp_path / "labels.boris").read_text())
    types = {b["code"]: b["type"] for b in project["behaviors_conf"].values()}
    assert types == {"walk": "State event", "jump": "Point event"}
    (events,) = [obs["events"] for obs in project["observations"].values()]
    assert [(e[0], e[2]) for e in events if e[2] == "jump"] == [(2.0, "jump"), (2.1, "jump"),
                                                                  (3.1, "jump")]
    assert len([e for e in events if e[2] == "walk"]) == 2  # start and stop
    write_labels(table, tmp_path / "events.csv", "boris-tabular")
    with open(tmp_path / "events.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["Behavior type"] for r in rows if r["Behavior"] == "jump"] == ["POINT"] * 3
    # BORIS read back: the same three events
    back = read_labels(tmp_path / "labels.boris", fps=10.0, n_frames=50)
    back = back if not isinstance(back, dict) else next(iter(back.values()))
    assert [(iv.start_frame, iv.end_frame) for iv in back.intervals
            if iv.behavior == "jump"] == [(20, 20), (21, 21), (31, 31)]
    # the plain CSV keeps one row per event
    write_labels(table, tmp_path / "plain.csv", "csv")
    with open(tmp_path / "plain.csv", newline="") as fh:
        plain = [r for r in csv.DictReader(fh) if r["behavior"] == "jump"]
    assert [(r["start_frame"], r["end_frame"]) for r in plain] == [
        ("20", "20"), ("21", "21"), ("31", "31")]


BORIS_PROJECT = {
    "project_format_version": "7.0", "observations": {},
    "behaviors_conf": {
        "0": {"type": "State event", "key": "C", "code": "chasing", "color": "#ff0000",
              "excluded": "resting"},
        "1": {"type": "State event", "key": "r", "code": "resting", "excluded": "chasing"},
        "2": {"type": "Point event", "key": "b", "code": "bite"},
        "3": {"type": "Point event", "key": "+", "code": "leap"},
    },
}


def test_read_ethogram_of_a_boris_project(tmp_path):
    import json

    from prism_science.session import read_ethogram

    path = tmp_path / "lab.boris"
    path.write_text(json.dumps(BORIS_PROJECT))
    behaviors, messages = read_ethogram(path)
    assert [(b.name, b.key, b.point) for b in behaviors] == [
        ("chasing", "c", False), ("resting", "r", False), ("bite", "b", True),
        ("leap", "", True)]
    assert behaviors[0].color == "#ff0000"
    assert behaviors[0].group == behaviors[1].group == "chasing+resting"  # mutual exclusion
    assert len(messages) == 1 and "'+'" in messages[0] and "leap" in messages[0]


def test_read_ethogram_csv_and_its_errors(tmp_path):
    from prism_science.session import read_ethogram

    path = tmp_path / "ethogram.csv"
    path.write_text("name,key,type\nchasing,c,state\ncourtship,o\nbite,B,Point event\n"
                    "copulation,c\n")
    behaviors, messages = read_ethogram(path)
    assert [(b.name, b.key, b.point) for b in behaviors] == [
        ("chasing", "c", False), ("courtship", "o", False), ("bite", "b", True),
        ("copulation", "", False)]
    assert "line 5" in messages[0] and "already taken" in messages[0]
    path.write_text("chasing,c\nbite,b,instant\n")
    with pytest.raises(LabelError, match=r"ethogram.csv, line 2: type 'instant' of 'bite'"):
        read_ethogram(path)
    path.write_text("chasing,c\nchasing,d\n")
    with pytest.raises(LabelError, match="line 2: behavior 'chasing' is listed twice"):
        read_ethogram(path)
    path.write_text("name,key\n")
    with pytest.raises(LabelError, match="no behavior found"):
        read_ethogram(path)
    with pytest.raises(LabelError, match="no such ethogram file"):
        read_ethogram(tmp_path / "missing.csv")


def test_import_ethogram_merges_into_a_session_and_moves_keys():
    from prism_science.session import import_ethogram

    session = LabelingSession(40, behaviors=[Behavior("walk", "c"), Behavior("bite", "x")])
    session.set_range("walk", 3, 6)
    messages = import_ethogram(session, [
        Behavior("chasing", "c"), Behavior("bite", "b", point=True), Behavior("courtship"),
        Behavior("copulation", "o")])
    keys = {b.name: (b.key, b.point) for b in session.behaviors}
    assert keys["walk"] == ("", False) and session.mask("walk")[3:7].all()  # kept, labels too
    assert keys["chasing"] == ("c", False) and keys["bite"] == ("b", True)
    assert keys["copulation"] == ("o", False)
    assert keys["courtship"][0] not in ("", "c", "b", "o")  # a free key, not copulation's
    assert messages == ["key 'c' moved from 'walk' to 'chasing'; 'walk' has no key now"]
