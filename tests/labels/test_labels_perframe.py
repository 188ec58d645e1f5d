"""Per-frame and interval CSV/JSON formats: plain CSV, DeepEthogram, SimBA, CalMS21, KABR CSVs."""

from __future__ import annotations

import csv
import json
import shutil

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


def _write_rows(path, rows, delimiter=","):
    with open(path, "w", newline="") as fh:
        csv.writer(fh, delimiter=delimiter).writerows(rows)
    return path


# ----------------------------------------------------------------------------- plain CSV
def test_plain_csv_round_trip_with_boxes_and_seconds(tmp_path):
    table = LabelTable(
        [Interval("walk", 0, 9, subject="m1", annotator="ann", confidence=0.75),
         Interval("rest", 12, 12, source="curated", box=(1.0, 2.0, 30.5, 40.0))],
        [Segment(0, 19)], "clip", 20, 10.0,
    ).recompute_seconds()
    path = write_labels(table, tmp_path / "clip.labels.csv")
    header = path.read_text().splitlines()[0]
    assert header.startswith("behavior,subject,start_frame,end_frame,start_s,end_s,annotator,"
                             "source,confidence")
    assert detect_format(path) == "csv"
    back = read_labels(path, fps=10.0, n_frames=20)
    assert back.video_id == "clip" and back.segments == [Segment(0, 19)]
    assert back.intervals == sorted(table.intervals, key=lambda iv: iv.start_frame)
    assert back.intervals[0].end_s == pytest.approx(1.0)


def test_plain_csv_bad_rows(tmp_path):
    header = ["behavior", "subject", "start_frame", "end_frame", "start_s", "end_s",
              "annotator", "source", "confidence"]
    cases = [
        (["walk", "", "x", "3", "", "", "", "manual", ""], r"line 3, field 'start_frame'"),
        (["walk", "", "5", "3", "", "", "", "manual", ""], r"line 3, field 'end_frame'"),
        (["walk", "", "5", "30", "", "", "", "manual", ""], r"line 3.*beyond the video"),
        (["walk", "", "1", "3", "", "", "", "auto", ""], r"line 3, field 'source'"),
        (["walk", "", "1", "3", "", ""], r"line 3: expected 9 fields"),
    ]
    for row, message in cases:
        path = _write_rows(tmp_path / "bad.csv",
                           [header, ["walk", "", "0", "1", "", "", "", "manual", ""], row])
        with pytest.raises(LabelError, match=message):
            read_labels(path, n_frames=20)
    path = _write_rows(tmp_path / "unknown.csv",
                       [header, ["jump", "", "0", "1", "", "", "", "manual", ""]])
    with pytest.raises(LabelError, match=r"line 2.*unknown behavior 'jump'"):
        read_labels(path, behaviors=["walk"])


# ----------------------------------------------------------------------------- DeepEthogram
def _deg_file(path, rows):
    # DeepEthogram writes its label CSV with pandas: an unnamed index column first.
    return _write_rows(path, [["", "background", "face_groom", "scratch"]]
                       + [[i, *r] for i, r in enumerate(rows)])


def test_deepethogram_read_partial_labels_and_write_back(tmp_path):
    rows = [[1, 0, 0], [0, 1, 0], [0, 1, 1], [1, 0, 0], [-1, -1, -1], [-1, -1, -1]]
    path = _deg_file(tmp_path / "mouse01_labels.csv", rows)
    assert detect_format(path) == "deepethogram"
    table = read_labels(path, fps=30.0)
    assert table.video_id == "mouse01" and table.n_frames == 6
    assert table.behavior_set.names == ("face_groom", "scratch")
    m = to_frame_matrix(table, table.behavior_set)
    assert m.tolist() == [[0, 0], [1, 0], [1, 1], [0, 0], [-1, -1], [-1, -1]]
    out = write_labels(table, tmp_path / "out_labels.csv", format="deepethogram")
    written = list(csv.reader(out.open()))
    assert written[0] == ["", "background", "face_groom", "scratch"]
    assert [r[1:] for r in written[1:]] == [[str(v) for v in r] for r in rows]
    with pytest.raises(LabelError, match=r"6 label rows.*n_frames=7"):
        read_labels(path, n_frames=7)
    bad = _deg_file(tmp_path / "bad_labels.csv", [[1, 0, 0], [0, 2, 0]])
    with pytest.raises(LabelError, match=r"line 3, field 'face_groom'"):
        read_labels(bad)


# ----------------------------------------------------------------------------- SimBA
def test_simba_targets_and_machine_results(tmp_path):
    header = ["", "Nose_1_x", "Nose_1_y", "Nose_1_p", "Tail_1_x", "Tail_1_y", "Tail_1_p",
              "Movement_mouse_1", "Attack", "Sniffing"]
    attack = [0, 1, 1, 0, 0]
    sniff = [0, 0, 0, 1, 1]
    rows = [[i, 10.5, 3.2, 0.9, 4.0, 1.0, 0.8, 0.3 + i, attack[i], sniff[i]] for i in range(5)]
    path = _write_rows(tmp_path / "Together_1.csv", [header, *rows])
    assert detect_format(path) == "simba"
    table = read_labels(path, fps=30.0)
    assert table.video_id == "Together_1"
    assert [(iv.behavior, iv.start_frame, iv.end_frame) for iv in table.intervals] == [
        ("Attack", 1, 2), ("Sniffing", 3, 4)]
    assert all(iv.source == "manual" for iv in table.intervals)
    header2 = header + ["Probability_Attack", "Probability_Sniffing"]
    rows2 = [r + [0.9 if attack[i] else 0.1, 0.7 if sniff[i] else 0.2]
             for i, r in enumerate(rows)]
    pred = read_labels(_write_rows(tmp_path / "pred.csv", [header2, *rows2]), format="simba")
    assert all(iv.source == "predicted" for iv in pred.intervals)
    assert pred.intervals[0].confidence == pytest.approx(0.9)
    only = read_labels(path, format="simba", behaviors=["Attack"])
    assert {iv.behavior for iv in only.intervals} == {"Attack"}
    rows[2][8] = 3
    with pytest.raises(LabelError, match=r"line 4, field 'Attack'"):
        read_labels(_write_rows(tmp_path / "bad.csv", [header, *rows]), format="simba",
                    behaviors=["Attack"])


# ----------------------------------------------------------------------------- CalMS21
def test_calms21_task1_json(tmp_path):
    vocab = {"attack": 0, "investigation": 1, "mount": 2, "other": 3}
    labels = [3, 3, 1, 1, 1, 0, 0, 3, 2, 2]

    def sequence(ann):
        t = len(ann)
        return {"keypoints": np.zeros((t, 2, 2, 7)).tolist(),
                "scores": np.ones((t, 2, 7)).tolist(), "annotations": ann,
                "metadata": {"annotator-id": 0, "vocab": vocab}}

    data = {"annotator-id_0": {
        "task1/train/mouse001_task1_annotator1": sequence(labels),
        "task1/train/mouse002_task1_annotator1": sequence([3, 2, 2]),
    }}
    path = tmp_path / "calms21_task1_train.json"
    path.write_text(json.dumps(data))
    assert detect_format(path) == "calms21"
    tables = read_labels(path)
    t = tables["mouse001_task1_annotator1"]
    assert t.fps == 30.0 and t.n_frames == 10
    assert t.behavior_set.names == ("attack", "investigation", "mount")
    assert t.behavior_set.exclusive_groups == (("attack", "investigation", "mount"),)
    assert [(iv.behavior, iv.start_frame, iv.end_frame) for iv in t.intervals] == [
        ("investigation", 2, 4), ("attack", 5, 6), ("mount", 8, 9)]
    m = to_frame_matrix(t, t.behavior_set)
    assert (m >= 0).all() and m[0].tolist() == [0, 0, 0]
    assert t.intervals[0].start_s == pytest.approx(2 / 30)
    data["annotator-id_0"]["task1/train/mouse002_task1_annotator1"]["annotations"] = [3, 7]
    path.write_text(json.dumps(data))
    report = ReadReport()  # the bad sequence is skipped and reported, the other one imports
    assert list(read_label_tables(path, report=report)) == ["mouse001_task1_annotator1"]
    assert report.skipped[0][0] == "sequence 'task1/train/mouse002_task1_annotator1'"
    assert "frame 1: class id 7" in report.skipped[0][1]
    with pytest.raises(LabelError, match=r"mouse002.*frame 1: class id 7"):
        read_labels(path, video_id="mouse002_task1_annotator1")


# ----------------------------------------------------------------------------- KABR CSVs
def test_kabr_dataset_annotation_csv(tmp_path):
    rows = [["original_vido_id", "video_id", "frame_id", "path", "labels"]]
    labels = [0, 0, 1, 1, 1, 3]
    rows += [["G0001", "1", str(i + 1), f"G0001/{i + 1}.jpg", str(v)]
             for i, v in enumerate(labels)]
    rows += [["Z0002", "2", "1", "Z0002/1.jpg", "6"], ["Z0002", "2", "2", "Z0002/2.jpg", "6"]]
    path = _write_rows(tmp_path / "train.csv", rows, delimiter=" ")
    assert detect_format(path) == "kabr"
    tables = read_labels(path, fps=29.97)
    g = tables["G0001"]
    assert [(iv.behavior, iv.start_frame, iv.end_frame) for iv in g.intervals] == [
        ("Walk", 0, 1), ("Graze", 2, 4), ("Head Up", 5, 5)]
    assert g.behavior_set.exclusive_groups[0][0] == "Walk" and len(g.behavior_set) == 8
    assert [iv.behavior for iv in tables["Z0002"].intervals] == ["Run"]
    rows.append(["Z0002", "2", "3", "Z0002/3.jpg", "12"])
    with pytest.raises(LabelError, match=r"line 10, field 'labels'"):
        read_labels(_write_rows(tmp_path / "bad.csv", rows, delimiter=" "), format="kabr")


def test_kabr_behavior_model_csv_sample(shared_dir, tmp_path):
    sample = shared_dir / "data" / "formats" / "kabr"
    path = tmp_path / "DJI_0068.csv"
    shutil.copy(sample / "DJI_0068.csv", path)
    shutil.copy(sample / "classes.json", tmp_path / "classes.json")
    table = read_labels(path, fps=29.97)
    assert table.video_id == "DJI_0068"
    assert all(iv.source == "predicted" for iv in table.intervals)
    expected = {}
    with open(sample / "DJI_0068.csv") as fh:
        next(fh)
        for line in fh:
            _, track, frame, label = line.split()
            expected[(track, int(frame))] = int(label)
    names = list(json.loads((sample / "classes.json").read_text()))
    got = {}
    for iv in table.intervals:
        for f in range(iv.start_frame, iv.end_frame + 1):
            got[(iv.subject, f)] = names.index(iv.behavior)
    assert got == expected
    tracks = {k[0] for k in expected}
    assert set(table.subjects()) == tracks
    behaviors = BehaviorSet(tuple(names))
    # the detection tracks' boxes attach to the behavior rows of the same track and frame
    shutil.copy(sample / "DJI_tracks.xml", tmp_path / "DJI_tracks.xml")
    boxed = read_labels(path, fps=29.97, tracks=tmp_path / "DJI_tracks.xml")
    box_of = {}
    for iv in boxed.intervals:
        for f in range(iv.start_frame, iv.end_frame + 1):
            box_of[(iv.subject, f)] = iv.box
    assert box_of[("0", 0)] == (2011.0, 1883.0, 2133.0, 1978.0)
    assert box_of[("0", 4)] == (2011.0, 1883.0, 2134.0, 1978.0)
    assert box_of[("0", 15)] is None  # frames the tracks file does not cover keep no box
    assert set(box_of) == set(got)
    with pytest.raises(LabelError, match="does not take the option"):
        read_labels(path, format="kabr", keyframes_only=False)
    with pytest.raises(LabelError, match="n_frames"):
        to_frame_matrix(table, behaviors)
    first = sorted(tracks)[0]
    m = to_frame_matrix(table, behaviors, n_frames=table.last_frame() + 1, subject=first)
    frames = sorted(f for t, f in expected if t == first)
    assert (m[frames] >= 0).all() and (m[frames] == 1).sum(axis=1).tolist() == [1] * len(frames)


def test_registry_errors_list_the_formats(tmp_path):
    from prism_science.labels import FORMATS, format_names

    assert set(format_names(writable=True)) == {"csv", "boris", "boris-tabular",
                                                "deepethogram", "nwb"}
    assert all(f.reader is not None for f in FORMATS.values())
    odd = tmp_path / "notes.txt"
    odd.write_text("hello,world\n1,2\n")
    with pytest.raises(LabelError, match=r"cannot tell the label format.*deepethogram"):
        read_labels(odd)
    with pytest.raises(LabelError, match="unknown label format 'elan'"):
        read_labels(odd, format="elan")
    with pytest.raises(LabelError, match="no such label file"):
        read_labels(tmp_path / "missing.csv")
    table = LabelTable([Interval("x", 0, 1)], n_frames=3)
    with pytest.raises(LabelError, match="cannot tell the output format"):
        write_labels(table, tmp_path / "out.xyz")
    with pytest.raises(LabelError, match="cannot be written"):
        write_labels(table, tmp_path / "out.json", format="calms21")


def test_kabr_frames_beyond_the_video(tmp_path):
    rows = [["original_vido_id", "video_id", "frame_id", "path", "labels"]]
    rows += [["G0001", "1", str(i + 1), f"G0001/{i + 1}.jpg", "0"] for i in range(12)]
    path = _write_rows(tmp_path / "val.csv", rows, delimiter=" ")
    with pytest.raises(LabelError, match=r"val\.csv.*beyond the video.*n_frames=10"):
        read_labels(path, n_frames=10)
