"""NWB export/import round trip (pynwb), including NWB files of other tools."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.labels import (
    BehaviorSet,
    Interval,
    LabelTable,
    Segment,
    detect_format,
    read_labels,
    to_frame_matrix,
    write_labels,
)


def _table():
    ts = np.arange(100) / 30.0
    ts[50:] += 0.1  # a gap: three frames dropped at frame 50
    return LabelTable(
        [Interval("wing extension", 10, 19, subject="fly1", annotator="ann"),
         Interval("chase", 48, 55, subject="fly2", source="predicted", confidence=0.8,
                  box=(1.0, 2.0, 3.0, 4.0))],
        [Segment(0, 59), Segment(60, 99, "fly1", ("chase",))], "fly_01", 100, 30.0, ts,
        BehaviorSet(("wing extension", "chase", "copulation")),
    ).recompute_seconds()


def test_nwb_round_trip_keeps_frames_seconds_and_partial_labels(tmp_path):
    table = _table()
    path = write_labels(table, tmp_path / "fly_01.nwb")
    assert detect_format(path) == "nwb"
    back = read_labels(path)
    assert back.video_id == "fly_01" and back.n_frames == 100 and back.fps == 30.0
    assert sorted(back.intervals, key=lambda iv: iv.start_frame) == table.intervals
    chase = back.intervals[1]
    # seconds from the real timestamps: frame 55 ends at 56/30 + 0.1
    assert chase.end_s == pytest.approx(56 / 30 + 0.1)
    assert back.segments == table.segments
    assert back.behavior_set.names == ("wing extension", "chase", "copulation")
    bset = back.behavior_set
    assert np.array_equal(to_frame_matrix(back, bset), to_frame_matrix(table, bset))


def test_nwb_reads_one_table_per_behavior_from_other_tools(tmp_path):
    from datetime import datetime, timezone

    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.epoch import TimeIntervals

    nwb = NWBFile(session_description="s", identifier="x",
                  session_start_time=datetime(2024, 1, 1, tzinfo=timezone.utc))
    for name, bouts in {"grooming": [(1.0, 2.0)], "rearing": [(3.0, 3.5), (4.0, 5.0)]}.items():
        table = TimeIntervals(name=name, description=name)
        for start, stop in bouts:
            table.add_row(start_time=start, stop_time=stop)
        nwb.add_time_intervals(table)
    path = tmp_path / "other.nwb"
    with NWBHDF5IO(str(path), "w") as io:
        io.write(nwb)
    table = read_labels(path, fps=10.0, n_frames=60)
    assert sorted((iv.behavior, iv.start_frame, iv.end_frame) for iv in table.intervals) == [
        ("grooming", 10, 19), ("rearing", 30, 34), ("rearing", 40, 49)]


def test_nwb_export_needs_seconds(tmp_path):
    with pytest.raises(LabelError, match="fps"):
        write_labels(LabelTable([Interval("x", 0, 3)], n_frames=5), tmp_path / "x.nwb")


def test_nwb_round_trip_of_a_table_without_segments_keeps_only_bout_frames_labeled(tmp_path):
    table = _table()
    table.segments = []  # only the bouts' own frames are labeled
    bset = table.behavior_set
    back = read_labels(write_labels(table, tmp_path / "bouts_only.nwb"))
    assert np.array_equal(to_frame_matrix(back, bset), to_frame_matrix(table, bset))
    assert (to_frame_matrix(back, bset) == -1).any()
