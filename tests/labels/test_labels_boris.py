"""BORIS: .boris project JSON, tabular and aggregated CSV exports; tabular export round trip."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.labels import (
    BehaviorSet,
    Interval,
    LabelTable,
    Segment,
    detect_format,
    read_label_tables,
    read_labels,
    to_frame_matrix,
    write_labels,
)
from prism_science.labels.formats import ReadReport

FPS = 25.0


def _project(events, fps=FPS, length=10.0, interval=(0, 0)):
    """A BORIS 8 project as BORIS writes it (one media observation)."""
    return {
        "time_format": "hh:mm:ss",
        "project_date": "2024-05-02T10:11:12",
        "project_name": "courtship",
        "project_description": "",
        "project_format_version": "7.0",
        "subjects_conf": {"0": {"key": "1", "name": "male", "description": ""},
                          "1": {"key": "2", "name": "female", "description": ""}},
        "behaviors_conf": {
            "0": {"type": "State event", "key": "w", "code": "wing extension",
                  "description": "", "color": "#ff0000", "category": "", "modifiers": {},
                  "excluded": "", "coding map": ""},
            "1": {"type": "State event", "key": "c", "code": "chase", "description": "",
                  "color": "", "category": "", "modifiers": {}, "excluded": "rest",
                  "coding map": ""},
            "2": {"type": "State event", "key": "r", "code": "rest", "description": "",
                  "color": "", "category": "", "modifiers": {}, "excluded": "chase",
                  "coding map": ""},
            "3": {"type": "Point event", "key": "l", "code": "lunge", "description": "",
                  "color": "", "category": "", "modifiers": {}, "excluded": "",
                  "coding map": ""},
        },
        "observations": {
            "obs1": {
                "file": {"1": ["/data/videos/fly_01.mp4"], "2": [], "3": [], "4": [], "5": [],
                         "6": [], "7": [], "8": []},
                "type": "MEDIA",
                "date": "2024-05-02T10:20:00",
                "description": "",
                "time offset": 0.0,
                "events": events,
                "observation time interval": list(interval),
                "independent_variables": {},
                "visualize_spectrogram": False,
                "visualize_waveform": False,
                "media_creation_date_as_offset": False,
                "media_scan_sampling_duration": 0,
                "image_display_duration": 1,
                "close_behaviors_between_videos": False,
                "media_info": {"length": {"/data/videos/fly_01.mp4": length},
                               "fps": {"/data/videos/fly_01.mp4": fps},
                               "hasVideo": {"/data/videos/fly_01.mp4": True},
                               "hasAudio": {"/data/videos/fly_01.mp4": False},
                               "offset": {"1": 0.0}},
            }
        },
        "behavioral_categories": [],
        "independent_variables": {},
        "coding_map": {},
        "behaviors_coding_map": [],
        "converters": {},
    }


EVENTS = [
    # [time, subject, code, modifiers, comment, frame index]
    [1.0, "male", "wing extension", "", "", 25],
    [1.2, "male", "lunge", "", "", 30],
    [2.0, "male", "wing extension", "", "", 50],
    [3.0, "female", "chase", "", "", 75],
    [4.0, "female", "chase", "", "", 100],
    [4.0, "female", "rest", "", "", 100],
    [5.0, "female", "rest", "", "", 125],
    [6.0, "", "wing extension", "", "", 150],
    [6.5, "", "wing extension", "", "", 162],
]


def _write_project(tmp_path, events=EVENTS, **kw):
    path = tmp_path / "courtship.boris"
    path.write_text(json.dumps(_project(events, **kw)))
    return path


def test_project_state_pairs_point_events_and_ethogram(tmp_path):
    path = _write_project(tmp_path)
    assert detect_format(path) == "boris"
    table = read_labels(path)
    assert table.video_id == "fly_01" and table.fps == FPS and table.n_frames == 250
    got = {(iv.behavior, iv.subject, iv.start_frame, iv.end_frame) for iv in table.intervals}
    assert got == {
        ("wing extension", "male", 25, 49), ("lunge", "male", 30, 30),
        ("chase", "female", 75, 99), ("rest", "female", 100, 124),
        ("wing extension", None, 150, 162),
    }
    wing = next(iv for iv in table.intervals if iv.subject == "male" and iv.n_frames > 1)
    assert (wing.start_s, wing.end_s) == pytest.approx((1.0, 2.0))
    bset = table.behavior_set
    assert bset.names == ("wing extension", "chase", "rest", "lunge")
    assert bset.exclusive_groups == (("chase", "rest"),)
    assert bset.keys["chase"] == "c" and bset.colors["wing extension"] == "#ff0000"
    assert table.segments == [Segment(0, 249)]
    m = to_frame_matrix(table, bset)
    assert (m >= 0).all() and m[25:50, 0].all() and m[50, 0] == 0


def test_project_uses_video_timestamps_and_checks_fps(tmp_path, caplog):
    path = _write_project(tmp_path)
    # two frames dropped before 1 s: the frame on screen at 1.0 s is frame 23
    ts = np.concatenate([np.arange(20) / FPS, (np.arange(20, 248) + 2) / FPS])
    table = read_labels(path, timestamps=ts, fps=FPS)
    wing = next(iv for iv in table.intervals if iv.subject == "male" and iv.n_frames > 1)
    assert (wing.start_frame, wing.end_frame) == (23, 47)
    assert wing.start_s == pytest.approx(1.0)
    read_labels(path, fps=25.02)  # small difference: warning naming both rates
    assert "25.02" in caplog.text
    with pytest.raises(LabelError, match=r"25 fps.*30 fps"):
        read_labels(path, fps=30.0)


def test_project_observation_interval_limits_labeled_frames(tmp_path):
    table = read_labels(_write_project(tmp_path, interval=(0.0, 7.0)))
    assert table.segments == [Segment(0, 174)]


@pytest.mark.parametrize(
    ("events", "message"),
    [
        ([[1.0, "male", "chase", "", ""]], "never stopped"),
        ([[1.0, "male", "chase", "", ""], [2.0, "male", "chase", "", ""],
          [3.0, "male", "jump", "", ""]], "unknown behavior 'jump'"),
        ([[1.0, "male", "chase", "", ""], [3.0, "male", "chase", "", ""],
          [2.0, "male", "rest", "", ""], [4.0, "male", "rest", "", ""]], "overlaps"),
        ([[20.0, "male", "lunge", "", ""]], "beyond the video"),
        ([["soon", "male", "lunge", "", ""]], r"events\[0\], field 'time'"),
    ],
)
def test_project_bad_events(tmp_path, events, message):
    with pytest.raises(LabelError, match=message):
        read_labels(_write_project(tmp_path, events=events))


TABULAR_HEADER = [
    "Observation id", "Observation date", "Description", "Observation duration",
    "Observation type", "Source", "Time offset (s)", "Media duration (s)", "FPS", "Subject",
    "Behavior", "Behavioral category", "Behavior type", "Time", "Media file name",
    "Image index", "Image file path", "Comment",
]


def _tabular_row(subject, behavior, status, time, obs="obs1", fps="25.000"):
    return ["obs1" if obs == "obs1" else obs, "2024-05-02 10:20:00", "", "10.000",
            "Media file(s)", "player #1:/data/videos/fly_01.mp4", "0.0", "10.000", fps,
            subject, behavior, "", status, f"{time:.3f}", "/data/videos/fly_01.mp4",
            int(round(time * 25)), "NA", ""]


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_tabular_export(tmp_path):
    rows = [_tabular_row("male", "wing extension", "START", 1.0),
            _tabular_row("male", "lunge", "POINT", 1.2),
            _tabular_row("male", "wing extension", "STOP", 2.0),
            _tabular_row("No focal subject", "rest", "START", 4.0),
            _tabular_row("No focal subject", "rest", "STOP", 5.0)]
    path = _write_csv(tmp_path / "obs1.csv", TABULAR_HEADER, rows)
    assert detect_format(path) == "boris-tabular"
    table = read_labels(path)
    assert table.video_id == "fly_01" and table.n_frames == 250
    got = {(iv.behavior, iv.subject, iv.start_frame, iv.end_frame) for iv in table.intervals}
    assert got == {("wing extension", "male", 25, 49), ("lunge", "male", 30, 30),
                   ("rest", None, 100, 124)}


def test_tabular_export_bad_rows_name_line_and_field(tmp_path):
    rows = [_tabular_row("male", "wing extension", "START", 1.0),
            _tabular_row("male", "wing extension", "HALT", 2.0)]
    path = _write_csv(tmp_path / "bad.csv", TABULAR_HEADER, rows)
    with pytest.raises(LabelError, match=r"bad\.csv, line 3, field 'Behavior type'"):
        read_labels(path, format="boris-tabular")
    rows[1] = _tabular_row("male", "wing extension", "STOP", 2.0)
    rows[1][13] = "two"
    path = _write_csv(tmp_path / "bad2.csv", TABULAR_HEADER, rows)
    with pytest.raises(LabelError, match=r"line 3, field 'Time'"):
        read_labels(path, format="boris-tabular")
    rows[1][13] = "2.0"
    path = _write_csv(tmp_path / "fps.csv", TABULAR_HEADER, rows)
    with pytest.raises(LabelError, match=r"25 fps.*50 fps"):
        read_labels(path, fps=50.0)


AGGREGATED_HEADER = [
    "Observation id", "Observation date", "Description", "Observation type", "Source",
    "Time offset (s)", "Coding duration", "Media duration (s)", "FPS (frame/s)", "Subject",
    "Observation duration by subject by observation", "Behavior", "Behavioral category",
    "Behavior type", "Start (s)", "Stop (s)", "Duration (s)", "Media file name",
    "Image index start", "Image index stop", "Image file path start", "Image file path stop",
    "Comment start", "Comment stop",
]


def _agg_row(subject, behavior, kind, start, stop, obs="obs1", media="fly_01.mp4"):
    return [obs, "2024-05-02 10:20:00", "", "Media file", f"player #1:/data/{media}", "0.0",
            "6.500", "10.000", "25.000", subject, "3.0", behavior, "", kind, f"{start:.3f}",
            f"{stop:.3f}" if kind == "STATE" else f"{start:.3f}",
            f"{stop - start:.3f}" if kind == "STATE" else "NA", f"/data/{media}",
            int(start * 25), int(stop * 25), "NA", "NA", "", ""]


def test_aggregated_export_with_two_observations(tmp_path):
    rows = [_agg_row("male", "wing extension", "STATE", 1.0, 2.0),
            _agg_row("male", "lunge", "POINT", 1.2, 1.2),
            _agg_row("female", "chase", "STATE", 3.0, 4.0, obs="obs2", media="fly_02.mp4")]
    path = _write_csv(tmp_path / "agg.csv", AGGREGATED_HEADER, rows)
    assert detect_format(path) == "boris-aggregated"
    tables = read_labels(path)
    assert set(tables) == {"fly_01", "fly_02"}
    assert [(iv.behavior, iv.start_frame, iv.end_frame) for iv in
            tables["fly_02"].intervals] == [("chase", 75, 99)]
    one = read_labels(path, video_id="fly_01")
    assert {iv.behavior for iv in one.intervals} == {"wing extension", "lunge"}
    rows.append(_agg_row("male", "rest", "STATE", 3.0, 2.0))
    path = _write_csv(tmp_path / "agg_bad.csv", AGGREGATED_HEADER, rows)
    report = ReadReport()  # obs1's bad row skips obs1 (reported); obs2 still imports
    assert set(read_label_tables(path, report=report)) == {"fly_02"}
    assert report.skipped[0][0].startswith("observation 'obs1'")
    assert re.search(r"line 5, field 'Stop \(s\)'", report.skipped[0][1])
    with pytest.raises(LabelError, match=r"line 5, field 'Stop \(s\)'"):
        read_labels(path, video_id="fly_01")


def test_tabular_writer_round_trip(tmp_path):
    table = LabelTable(
        [Interval("wing extension", 25, 49, subject="male"), Interval("lunge", 30, 30),
         Interval("chase", 75, 99, subject="female")],
        [Segment(0, 249)], "fly_01", 250, FPS,
        behavior_set=BehaviorSet(("wing extension", "chase", "lunge")),
    ).recompute_seconds()
    out = write_labels(table, tmp_path / "export.csv", format="boris-tabular")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == TABULAR_HEADER
    assert [r["Behavior type"] for r in rows] == ["START", "POINT", "STOP", "START", "STOP"]
    assert rows[0]["Time"] == "1.000" and rows[2]["Image index"] == "50"
    back = read_labels(out, format="boris-tabular")
    assert sorted((iv.behavior, iv.subject, iv.start_frame, iv.end_frame)
                  for iv in back.intervals) == sorted(
        (iv.behavior, iv.subject, iv.start_frame, iv.end_frame) for iv in table.intervals)
    with pytest.raises(LabelError, match="fps"):
        write_labels(LabelTable([Interval("x", 0, 1)]), tmp_path / "x.csv",
                     format="boris-tabular")


def test_older_tabular_export_with_metadata_lines_and_tabs(tmp_path):
    # BORIS 7 wrote observation metadata above the header and a Status column; TSV also exists
    lines = [
        "Observation id\tobs7",
        "Media file(s)\tplayer #1\t/data/videos/fly_07.mp4",
        "Observation date\t2021-03-01 10:00:00",
        "",
        "Time\tMedia file path\tTotal length\tFPS\tSubject\tBehavior\tBehavioral category"
        "\tComment\tStatus",
        "1.000\t/data/videos/fly_07.mp4\t10.0\t25.0\t\tchase\t\t\tSTART",
        "00:00:02.000\t/data/videos/fly_07.mp4\t10.0\t25.0\t\tchase\t\t\tSTOP",
    ]
    path = tmp_path / "obs7.tsv"
    path.write_text("\n".join(lines) + "\n")
    assert detect_format(path) == "boris-tabular"
    table = read_labels(path)
    assert table.video_id == "fly_07" and table.n_frames == 250
    assert [(iv.behavior, iv.subject, iv.start_frame, iv.end_frame)
            for iv in table.intervals] == [("chase", None, 25, 49)]
