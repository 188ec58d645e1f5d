"""`prism-science labels import|export|show|formats` end to end on tiny files and stores."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.labels import read_labels

from .test_labels_boris import EVENTS, _write_project

FPS = 25.0
TS = np.arange(250) / FPS
TS[100:] += 2 / FPS  # two frames dropped at frame 100


@pytest.fixture()
def store_path(tmp_path):
    store_mod = pytest.importorskip("prism_science.store")
    path = tmp_path / "features.zarr"
    with store_mod.open_store(path, mode="a") as store:
        store.put_video("fly_01.mp4", source_path="/data/videos/fly_01.mp4",
                        relative_path="fly_01.mp4", size_bytes=1, content_hash="sha256:0",
                        timestamps=TS, fps=FPS, width=32, height=32)
    return path


def test_import_into_store_show_and_export_every_format(tmp_path, store_path, capsys):
    project = _write_project(tmp_path)
    assert main(["labels", "import", str(project), "--store", str(store_path)]) == 0
    assert "fly_01.mp4: 5 intervals" in capsys.readouterr().out

    assert main(["labels", "show", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "fly_01.mp4 labels/manual (250 frames; 25 fps; subjects male, female)" in out
    assert "wing extension" in out and "100.0%" in out

    # (NWB export goes through the same write_labels; tests/labels/test_labels_nwb.py)
    for fmt, name in [("boris-tabular", "b.csv"), ("boris", "b.boris"), ("csv", "c.csv"),
                      ("deepethogram", "d_labels.csv")]:
        out_path = tmp_path / name
        subject = ["--subject", "male"] if fmt == "deepethogram" else []  # one animal a file
        assert main(["labels", "export", "--store", str(store_path), "--video-id", "fly_01.mp4",
                     "--format", fmt, "--out", str(out_path), *subject]) == 0
        assert out_path.is_file()
    capsys.readouterr()
    # the store's timestamps place the female's rest (4.0-5.0 s) after the dropped frames:
    # frame 99 is on screen from 3.96 s to 4.08 s, frame 123 starts at 5.0 s
    plain = read_labels(tmp_path / "c.csv", n_frames=250)
    rest = next(iv for iv in plain.intervals if iv.behavior == "rest")
    assert (rest.start_frame, rest.end_frame) == (99, 122)
    assert (rest.start_s, rest.end_s) == pytest.approx((3.96, 5.0))
    rows = list(csv.reader((tmp_path / "d_labels.csv").open()))
    assert len(rows) == 251 and rows[0][:2] == ["", "background"]
    boris = read_labels(tmp_path / "b.csv", fps=FPS, timestamps=TS)
    assert sorted(iv.start_frame for iv in boris.intervals) == sorted(
        iv.start_frame for iv in plain.intervals)
    project = json.loads((tmp_path / "b.boris").read_text())  # plays the stored video file
    assert list(project["observations"]) == ["obs1"]  # the observation kept in the store
    assert project["observations"]["obs1"]["file"]["1"] == ["/data/videos/fly_01.mp4"]
    back = read_labels(tmp_path / "b.boris", timestamps=TS)
    assert sorted((iv.behavior, iv.start_frame, iv.end_frame) for iv in back.intervals) == \
        sorted((iv.behavior, iv.start_frame, iv.end_frame) for iv in plain.intervals)
    assert main(["labels", "export", "--store", str(store_path), "--video-id", "fly_01.mp4",
                 "--format", "deepethogram", "--out", str(tmp_path / "all.csv")]) == 2
    assert "3 subjects" in capsys.readouterr().err


def test_import_to_plain_csv_and_show_file(tmp_path, capsys):
    project = _write_project(tmp_path)
    out = tmp_path / "fly_01.labels.csv"
    assert main(["labels", "import", str(project), "--out", str(out)]) == 0
    table = read_labels(out, fps=FPS, n_frames=250)
    assert len(table.intervals) == 5
    assert main(["labels", "show", str(project)]) == 0
    printed = capsys.readouterr().out
    assert "fly_01 (courtship.boris)" in printed and "chase" in printed
    assert main(["labels", "formats"]) == 0
    assert "deepethogram" in capsys.readouterr().out


def test_cli_errors_are_messages_not_tracebacks(tmp_path, store_path, capsys):
    project = _write_project(tmp_path, events=EVENTS + [[7.0, "male", "chase", "", ""]])
    assert main(["labels", "import", str(project), "--store", str(store_path)]) == 2
    assert "never stopped" in capsys.readouterr().err
    other = tmp_path / "other.boris"
    data = json.loads(_write_project(tmp_path).read_text())
    obs = data["observations"]["obs1"]
    obs["file"]["1"] = ["/data/unknown.mp4"]
    obs["media_info"]["fps"] = {"/data/unknown.mp4": FPS}
    obs["media_info"]["length"] = {"/data/unknown.mp4": 10.0}
    other.write_text(json.dumps(data))
    assert main(["labels", "import", str(other), "--store", str(store_path)]) == 2
    assert "no video 'unknown'" in capsys.readouterr().err
    assert main(["labels", "import", str(_write_project(tmp_path)), "--out",
                 str(tmp_path / "x.csv"), "--behaviors", "chase,rest"]) == 2
    assert "unknown behavior '" in capsys.readouterr().err
    assert main(["labels", "export", "--store", str(store_path), "--video-id", "fly_01.mp4",
                 "--name", "curated", "--format", "csv", "--out", str(tmp_path / "y.csv")]) == 2
    assert "no label set 'labels/curated'" in capsys.readouterr().err


def test_multi_video_import_skips_videos_not_in_the_store(tmp_path, store_path, capsys):
    from .test_labels_boris import AGGREGATED_HEADER, _agg_row, _write_csv

    rows = [_agg_row("male", "wing extension", "STATE", 1.0, 2.0),
            _agg_row("female", "chase", "STATE", 3.0, 4.0, obs="obs2", media="fly_02.mp4")]
    path = _write_csv(tmp_path / "agg.csv", AGGREGATED_HEADER, rows)
    assert main(["labels", "import", str(path), "--store", str(store_path),
                 "--name", "curated"]) == 0
    captured = capsys.readouterr()
    assert "fly_01.mp4: 1 intervals" in captured.out
    assert "skipped observation 'obs2' of video 'fly_02': not in the store" in captured.err
    assert "imported 1 table(s) of 1 video(s), 1 intervals; skipped 1" in captured.out
