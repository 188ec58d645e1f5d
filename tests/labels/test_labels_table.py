"""LabelTable, BehaviorSet and the per-frame matrix: conventions, partial labeling, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prism_science.errors import LabelError
from prism_science.labels import (
    BehaviorSet,
    Interval,
    LabelTable,
    Segment,
    check_fps,
    frames_to_seconds,
    from_frame_matrix,
    labeled_mask,
    seconds_to_frames,
    table_summary,
    to_frame_matrix,
)


def _table(**kw) -> LabelTable:
    intervals = [
        Interval("walk", 2, 4, subject="a"),
        Interval("groom", 6, 6, subject="a"),
        Interval("chase", 3, 5, subject="b"),
    ]
    return LabelTable(intervals, kw.pop("segments", [Segment(0, 9)]), "v1", 10, 10.0, **kw)


def test_inclusive_frames_and_seconds_from_fps():
    assert frames_to_seconds(2, 4, 10.0) == (0.2, 0.5)
    assert Interval("x", 2, 4).n_frames == 3
    t = _table().recompute_seconds()
    walk = t.intervals[0]
    assert (walk.start_s, walk.end_s) == pytest.approx((0.2, 0.5))


def test_seconds_come_from_real_timestamps_with_dropped_frames():
    # frame 3 was dropped: frame 3 is shown at 0.4 s, not 0.3 s
    ts = np.array([0.0, 0.1, 0.2, 0.4, 0.5, 0.6])
    assert frames_to_seconds(3, 4, 10.0, ts) == pytest.approx((0.4, 0.6))
    assert frames_to_seconds(5, 5, 10.0, ts) == pytest.approx((0.6, 0.7))
    assert seconds_to_frames(0.4, 0.6, 10.0, ts) == (3, 4)
    # fps alone would have put 0.4 s at frame 4
    assert seconds_to_frames(0.4, 0.6, 10.0) == (4, 5)
    table = LabelTable([Interval("x", 3, 4)], [], "v", 6, 10.0).with_timing(timestamps=ts)
    assert (table.intervals[0].start_s, table.intervals[0].end_s) == pytest.approx((0.4, 0.6))


def test_seconds_to_frames_covers_shown_frames_and_tolerates_rounding():
    assert seconds_to_frames(1.0, 2.0, 10.0) == (10, 19)
    assert seconds_to_frames(1.0, None, 10.0) == (10, 10)
    # BORIS rounds to ms: 1/30 s written as 0.033 is still frame 1
    assert seconds_to_frames(0.033, 0.067, 30.0) == (1, 1)
    with pytest.raises(LabelError, match="fps"):
        seconds_to_frames(1.0, 2.0, None)


def test_check_fps_warns_small_and_refuses_large_differences(caplog):
    assert check_fps(29.97, 30.0, "f.boris") == 30.0
    assert "29.97" in caplog.text
    with pytest.raises(LabelError, match=r"25 fps.*30 fps"):
        check_fps(25.0, 30.0, "f.boris")
    assert check_fps(25.0, None, "f") == 25.0


def test_frame_matrix_full_labeling_multilabel_and_subjects():
    t = _table()
    bset = BehaviorSet(("walk", "chase", "groom"))
    m = to_frame_matrix(t, bset)
    assert m.dtype == np.int8 and m.shape == (10, 3)
    assert (m >= 0).all()
    assert m[:, 0].tolist() == [0, 0, 1, 1, 1, 0, 0, 0, 0, 0]
    assert m[3].tolist() == [1, 1, 0]  # two behaviors at once (multi-label, two subjects)
    only_a = to_frame_matrix(t, bset, subject="a")
    assert only_a[:, 1].sum() == 0 and only_a[6, 2] == 1


def test_partial_labeling_is_explicit():
    t = _table(segments=[Segment(0, 4)])
    bset = BehaviorSet(("walk", "chase", "groom"))
    m = to_frame_matrix(t, bset)
    assert (m[:5] >= 0).all()
    # frames 5..9 are unlabeled except where an interval says a behavior is present
    assert m[7].tolist() == [-1, -1, -1]
    assert m[6].tolist() == [-1, -1, 1]
    assert m[5].tolist() == [-1, 1, -1]
    # labeled_ranges overrides the table's segments; no segment at all = only the bouts
    full = to_frame_matrix(t, bset, labeled_ranges=[(0, 9)])
    assert (full >= 0).all()
    bare = to_frame_matrix(LabelTable(t.intervals, [], n_frames=10), bset)
    assert bare[0].tolist() == [-1, -1, -1] and bare[2, 0] == 1


def test_exclusive_group_labels_other_members_absent():
    bset = BehaviorSet(("attack", "mount", "sniff"), (("attack", "mount"),))
    t = LabelTable([Interval("attack", 2, 3)], [], n_frames=6)
    m = to_frame_matrix(t, bset)
    assert m[2].tolist() == [1, 0, -1]
    assert m[0].tolist() == [-1, -1, -1]
    assert labeled_mask(t, bset).sum() == 4


def test_from_frame_matrix_round_trip_with_scores_and_partial_labels():
    bset = BehaviorSet(("walk", "chase", "groom"))
    t = _table(segments=[Segment(0, 6)])
    m = to_frame_matrix(t, bset, subject=None)
    back = from_frame_matrix(m, bset, fps=10.0, source="manual")
    assert np.array_equal(to_frame_matrix(back, bset), m)
    assert back.n_frames == 10 and back.behavior_set == bset
    scores = np.where(m == 1, 0.8, 0.1)
    pred = from_frame_matrix(m, bset, subject="a", scores=scores)
    assert all(iv.confidence == pytest.approx(0.8) for iv in pred.intervals)
    assert all(iv.subject == "a" and iv.source == "predicted" for iv in pred.intervals)
    with pytest.raises(LabelError, match="shape"):
        from_frame_matrix(m[:, :2], bset)


def test_matrix_needs_n_frames_and_rejects_frames_beyond():
    t = LabelTable([Interval("walk", 2, 12)])
    with pytest.raises(LabelError, match="n_frames"):
        to_frame_matrix(t, ["walk"])
    with pytest.raises(LabelError, match="outside the video"):
        to_frame_matrix(t, ["walk"], n_frames=10)


@pytest.mark.parametrize(
    ("interval", "message"),
    [
        (Interval("walk", 5, 3, origin="f.csv, line 4"), r"f\.csv, line 4.*end_frame"),
        (Interval("walk", 5, 12, origin="f.csv, line 5"), r"line 5.*beyond the video"),
        (Interval("fly", 1, 2, origin="f.csv, line 6"), r"line 6.*unknown behavior 'fly'"),
        (Interval("walk", 1, 2, source="guess"), "source"),
        (Interval("walk", 1, 2, confidence=1.5), "confidence"),
        (Interval("walk", -1, 2), "start_frame"),
    ],
)
def test_validation_names_row_and_field(interval, message):
    t = LabelTable([interval], n_frames=10, behavior_set=BehaviorSet(("walk", "rest")))
    with pytest.raises(LabelError, match=message):
        t.validate()


def test_overlap_in_exclusive_group_is_refused_per_subject():
    bset = BehaviorSet(("walk", "rest", "sniff"), (("walk", "rest"),))
    ok = LabelTable([Interval("walk", 0, 5, subject="a"), Interval("rest", 3, 8, subject="b"),
                     Interval("sniff", 2, 4, subject="a")], n_frames=10)
    ok.validate(bset)
    bad = LabelTable([Interval("walk", 0, 5, subject="a", origin="x.csv, line 2"),
                      Interval("rest", 5, 8, subject="a", origin="x.csv, line 3")], n_frames=10)
    with pytest.raises(LabelError, match=r"line 3.*overlaps 'walk'.*exclusive"):
        bad.validate(bset)


def test_behavior_set_checks_and_defaults():
    bset = BehaviorSet(("a", "b", "c"), (("a", "b"),), keys={"c": "x"})
    assert bset.keys["c"] == "x" and len(set(bset.keys.values())) == 3
    assert all(c.startswith("#") for c in bset.colors.values())
    assert bset.group_of("a") == ("a", "b") and bset.group_of("c") is None
    assert BehaviorSet.from_dict(bset.to_dict()) == bset
    with pytest.raises(LabelError, match="twice"):
        BehaviorSet(("a", "a"))
    with pytest.raises(LabelError, match="not among"):
        BehaviorSet(("a",), (("a", "z"),))
    with pytest.raises(LabelError, match="two exclusive groups"):
        BehaviorSet(("a", "b", "c"), (("a", "b"), ("b", "c")))
    merged = bset.union(["c", "d"])
    assert merged.names == ("a", "b", "c", "d")


def test_dict_round_trip_keeps_everything():
    ts = np.array([0.0, 0.1, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    t = LabelTable(
        [Interval("walk", 1, 3, subject="a", annotator="ann", confidence=0.5,
                  box=(1.0, 2.0, 3.0, 4.0)), Interval("rest", 5, 5, source="predicted")],
        [Segment(0, 6), Segment(7, 9, "a", ("walk",))], "v1", 10, 10.0, ts,
        BehaviorSet(("walk", "rest", "never")),
    ).recompute_seconds()
    d = t.to_dict()
    back = LabelTable.from_dict(d)
    assert back.intervals == t.intervals and back.segments == t.segments
    assert np.allclose(back.timestamps, ts) and back.behavior_set.names == ("walk", "rest", "never")
    assert back.intervals[0].start_s == pytest.approx(0.1)
    regular = LabelTable([], [], "v", 5, 10.0, np.arange(5) / 10.0).to_dict()
    assert regular["timestamps"] is None
    with pytest.raises(LabelError, match="schema"):
        LabelTable.from_dict({"intervals": []})


def test_summary_counts_bouts_frames_seconds_coverage():
    t = _table(segments=[Segment(0, 4)]).recompute_seconds()
    rows = {r["behavior"]: r for r in table_summary(t)}
    assert rows["walk"]["bouts"] == 1 and rows["walk"]["frames"] == 3
    assert rows["walk"]["seconds"] == pytest.approx(0.3)
    assert rows["walk"]["labeled_frames"] == 5 and rows["walk"]["coverage"] == pytest.approx(0.5)
    assert math.isnan(table_summary(LabelTable([Interval("x", 0, 1)]))[0]["coverage"])


def test_times_after_the_video_stay_beyond_it():
    ts = np.arange(10) / 10.0
    assert seconds_to_frames(1.5, 2.0, 10.0, ts) == (15, 19)
    assert seconds_to_frames(1.5, None, 10.0, ts) == (15, 15)
    assert seconds_to_frames(0.5, 1.2, 10.0, ts) == (5, 11)
    with pytest.raises(LabelError, match="beyond the video"):
        LabelTable([Interval("x", 15, 19)], n_frames=10).validate()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 4), st.randoms(use_true_random=False))
def test_matrix_round_trip_property(n, k, rnd):
    values = np.array([[rnd.choice((-1, 0, 1)) for _ in range(k)] for _ in range(n)], np.int8)
    names = [f"b{j}" for j in range(k)]
    table = from_frame_matrix(values, names)
    assert np.array_equal(to_frame_matrix(table, names), values)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=60), st.data())
def test_frames_seconds_round_trip_with_dropped_frames(gaps, data):
    fps = 30.0
    ts = np.cumsum([0] + [1 + g for g in gaps[1:]]) / fps  # 1..4 frame periods apart
    n = len(ts)
    a = data.draw(st.integers(0, n - 1))
    b = data.draw(st.integers(a, n - 1))
    start_s, end_s = frames_to_seconds(a, b, fps, ts)
    assert seconds_to_frames(start_s, end_s, fps, ts) == (a, b)
    # millisecond rounding, as BORIS writes times, lands on the same frames
    assert seconds_to_frames(round(start_s, 3), round(end_s, 3), fps, ts) == (a, b)
