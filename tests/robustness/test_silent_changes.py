"""Nothing changes silently: label imports that would replace labels, events outside the video,
and what the docs promise for truncated videos."""

from __future__ import annotations

import json
import re

import av
import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import LabelError
from prism_science.labels import load_labels, read_labels
from prism_science.labels.store_io import list_labels
from prism_science.store import open_store
from tests.labels.test_labels_boris import _project

ROBUSTNESS_TITLE = "Nothing changes silently"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| a second `labels import` of other labels for a video that has `labels/manual` | exit 2, the
  video and both bout counts named, nothing imported; with `--replace` the old set is kept as
  `manual.backup-1` (then `-2`), listed by `labels list`; the same file again is `unchanged` (no
  backup) |
| a BORIS project with two videos, one of which already has other labels | exit 2, nothing
  imported (the other video gets no labels either) |
| a header-only CSV, with or without `--replace` | exit 2 "no labels"; the existing labels
  unchanged |
| a BORIS event at -5 s (point, state start) or -0.5 s | `LabelError` naming the event and its
  time ("before the start of the video"), exit 2; within half a frame of 0 s is frame 0 |
| a BORIS event after the end of the video | `LabelError`: frame beyond the video |
| an MP4 with its index at the start, cut at 60 % | extraction exits 1 naming the first frame
  that cannot be decoded and the last good one; the video stays incomplete (docs/extraction.md
  says so) |
"""

FPS = 25.0


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "s.zarr"
    with open_store(path, "a") as store:
        for name in ("fly_01.mp4", "fly_02.mp4"):
            store.put_video(name, source_path=f"/v/{name}", relative_path=name, size_bytes=1,
                            content_hash=name, timestamps=np.arange(250) / FPS, fps=FPS,
                            width=8, height=8)
    return path


def _csv(path, rows):
    path.write_text("behavior,start_frame,end_frame\n"
                    + "".join(f"{b},{s},{e}\n" for b, s, e in rows))
    return path


def _bouts(store_path, name="manual", video_id="fly_01.mp4"):
    with open_store(store_path, "r") as store:
        table = load_labels(store, video_id, name)
    return sorted((iv.behavior, iv.start_frame, iv.end_frame) for iv in table.intervals)


def test_second_import_is_refused_then_replaced_with_a_backup(tmp_path, store_path, capsys):
    first = _csv(tmp_path / "fly_01.labels.csv", [("walk", 0, 9), ("groom", 20, 29)])
    assert main(["labels", "import", str(first), "--store", str(store_path)]) == 0
    capsys.readouterr()
    (tmp_path / "b").mkdir()
    second = _csv(tmp_path / "b" / "fly_01.labels.csv", [("walk", 100, 120)])
    assert main(["labels", "import", str(second), "--store", str(store_path)]) == 2
    err = capsys.readouterr().err
    assert "already has labels/manual (2 bouts" in err and "--replace" in err
    assert "nothing of" in err
    assert _bouts(store_path) == [("groom", 20, 29), ("walk", 0, 9)]  # untouched
    assert main(["labels", "import", str(second), "--store", str(store_path),
                 "--replace"]) == 0
    assert "old set is kept as labels/manual.backup-1" in capsys.readouterr().out
    assert _bouts(store_path) == [("walk", 100, 120)]
    assert _bouts(store_path, "manual.backup-1") == [("groom", 20, 29), ("walk", 0, 9)]
    # the same file again: nothing to replace, no second backup
    assert main(["labels", "import", str(second), "--store", str(store_path)]) == 0
    assert "unchanged" in capsys.readouterr().out
    with open_store(store_path, "r") as store:
        assert list_labels(store, "fly_01.mp4") == ["manual", "manual.backup-1"]
    assert main(["labels", "list", str(store_path)]) == 0
    out = capsys.readouterr().out
    assert "labels/manual.backup-1  2 bouts" in out and "labels/manual  1 bouts" in out
    # a second replacement keeps both earlier versions
    third = _csv(tmp_path / "c.labels.csv", [("rest", 3, 4)])
    assert main(["labels", "import", str(third), "--store", str(store_path), "--video-id",
                 "fly_01.mp4", "--replace"]) == 0
    assert _bouts(store_path, "manual.backup-2") == [("walk", 100, 120)]


def test_multi_video_import_that_would_replace_one_video_imports_nothing(tmp_path, store_path,
                                                                         capsys):
    one = _csv(tmp_path / "fly_01.labels.csv", [("walk", 0, 9)])
    assert main(["labels", "import", str(one), "--store", str(store_path)]) == 0
    project = _project([[1.0, "male", "lunge", "", "", 25]])
    observation = project["observations"].pop("obs1")
    for name in ("fly_01", "fly_02"):  # one observation per video
        obs = json.loads(json.dumps(observation).replace("fly_01", name))
        project["observations"][name] = obs
    path = tmp_path / "both.boris"
    path.write_text(json.dumps(project))
    assert main(["labels", "import", str(path), "--store", str(store_path)]) == 2
    assert "fly_01.mp4" in capsys.readouterr().err
    with open_store(store_path, "r") as store:
        assert list_labels(store, "fly_02.mp4") == []  # all or nothing
    assert _bouts(store_path) == [("walk", 0, 9)]


def test_header_only_csv_never_empties_labels(tmp_path, store_path, capsys):
    one = _csv(tmp_path / "fly_01.labels.csv", [("walk", 0, 9)])
    assert main(["labels", "import", str(one), "--store", str(store_path)]) == 0
    (tmp_path / "e").mkdir()
    empty = _csv(tmp_path / "e" / "fly_01.labels.csv", [])
    for extra in ([], ["--replace"]):
        assert main(["labels", "import", str(empty), "--store", str(store_path), *extra]) == 2
        assert "no labels" in capsys.readouterr().err
        assert _bouts(store_path) == [("walk", 0, 9)]


@pytest.mark.parametrize("events", [
    [[-5.0, "male", "lunge", "", "", 0]],
    [[-5.0, "male", "wing extension", "", "", 0], [2.0, "male", "wing extension", "", "", 50]],
    [[-0.5, "female", "chase", "", "", 0], [1.0, "female", "chase", "", "", 25]],
])
def test_boris_event_before_the_video_is_refused_not_clamped(tmp_path, store_path, events,
                                                             capsys):
    path = tmp_path / "neg.boris"
    path.write_text(json.dumps(_project(events)))
    with pytest.raises(LabelError, match=r"events\[0\].* -?[05.]+ s is before the start"):
        read_labels(path)
    assert main(["labels", "import", str(path), "--store", str(store_path)]) == 2
    assert "before the start of the video" in capsys.readouterr().err
    with open_store(store_path, "r") as store:
        assert list_labels(store, "fly_01.mp4") == []
    # within half a frame of 0 s is rounding, not an event outside the video
    path.write_text(json.dumps(_project([[-0.01, "male", "lunge", "", "", 0]])))
    assert [(iv.start_frame, iv.end_frame) for iv in read_labels(path).intervals] == [(0, 0)]


def test_boris_event_after_the_video_is_refused(tmp_path):
    path = tmp_path / "late.boris"
    path.write_text(json.dumps(_project([[12.0, "male", "lunge", "", "", 300]])))
    with pytest.raises(LabelError, match="beyond the video"):
        read_labels(path)


def _faststart_video(path, n_frames=90):
    """An MP4 with its index (moov) at the start, as cameras and web exports write."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n_frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 3 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_truncated_video_with_intact_index_fails_as_documented(tmp_path, capsys):
    """docs/extraction.md: the run names the first bad and the last good frame, exit code 1,
    and the video is not complete."""
    data = _faststart_video(tmp_path / "full.mp4").read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # the index survives a cut at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    store_path = tmp_path / "s.zarr"
    assert main(["extract", str(cut), "--out", str(store_path), "--model",
                 "prism-test-p8-f4-r32", "--hop", "4", "--no-progress"]) == 1
    printed = capsys.readouterr()
    summary = printed.out + printed.err
    assert "FAILED cut.mp4" in summary or "FAILED " + str(cut) in summary
    bad = re.search(r"frame (\d+) cannot be decoded.*the last good frame is (\d+)", summary)
    assert bad and int(bad.group(2)) == int(bad.group(1)) - 1 < 90
    with open_store(store_path, "r") as store:
        key = store.feature_keys("cut.mp4")[0]
        assert store.feature_status("cut.mp4", key) == "incomplete"
