"""Bad inputs not covered elsewhere, each generated here: videos, image folders, label files,
probe training sets and weights folders, through the commands a user runs.

Each case checks the outcome a user sees: the exit code, one message naming the file, frame or
field (never a traceback), the good inputs of the same batch processed, and nothing stored
before lost.
"""

from __future__ import annotations

import json
import time

import av
import numpy as np
import pytest
from PIL import Image

from prism_science.cli.main import main
from prism_science.labels import Interval, LabelTable, Segment, save_labels
from prism_science.store import open_store
from tests.pipeline.conftest import make_store
from tests.robustness.conftest import write_video

ROBUSTNESS_TITLE = "More bad inputs"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| an AVI of h264 with B-frames (AVI keeps no time stamps: decode order) through `extract`,
  beside the same frames in MKV | exit 0; 50 frames at the nominal rate; features equal to the
  MKV's |
| an image folder with one frame of another size; one with a corrupt PNG | exit 1, `FAILED`
  naming the image, its frame number and what to do; nothing marked complete |
| `extract` of a good video, a text file named `.mp4` and another good video into a store that
  already holds a finished video | exit 1 naming the bad file; both good videos complete; the
  earlier video's features unchanged |
| a weights folder whose `model.safetensors` header is overwritten, or whose `config.json` names
  another variant's shapes, or is missing, through `extract --model DIR` | exit 2, one line
  naming the file (sha256 mismatch, the tensor and its shape, the missing file); no traceback;
  the store not created |
| a plain CSV of 200 000 bouts (a huge label file) | imported with `--out` in under a minute |
| a label file with a behavior outside `--behaviors`; with overlapping bouts of one exclusive
  group | exit 2 naming the file, the line and the behavior; nothing imported |
| `probe train` on a label set of one behavior covering every labeled frame (no negative), on a
  set with no bouts, on a set no video has | exit 2 naming the label set and what to label |
"""

MODEL = "prism-test-p8-f4-r32"
EXTRACT = ("--model", MODEL, "--hop", "4", "--no-progress")
KEY = f"{MODEL}/mean"


def _features(path, video_id):
    with open_store(path, "r") as store:
        return store.feature_status(video_id, KEY), store.read_features(video_id, KEY).values


def _bframes(path, n=50):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        stream.options = {"bf": "2", "g": "8"}
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, size=(32, 32, 3), dtype=np.uint8)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 2 * i, axis=1), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_avi_with_b_frames_extracts_like_mkv(tmp_path, capsys):
    avi, mkv = _bframes(tmp_path / "clip.avi"), _bframes(tmp_path / "clip.mkv")
    with av.open(str(avi)) as container:  # the trap: decoded in decode order, no PTS
        pts = [f.pts for f in container.decode(video=0)]
    assert pts != sorted(pts)
    store = tmp_path / "s.zarr"
    assert main(["extract", str(avi), str(mkv), "--out", str(store), *EXTRACT]) == 0
    with open_store(store, "r") as opened:
        info = opened.video_info("clip.avi")
        assert info.n_frames == 50
        np.testing.assert_allclose(info.timestamps, np.arange(50) / 25, atol=1e-6)
    status, values = _features(store, "clip.avi")
    assert status == "complete"
    np.testing.assert_array_equal(values, _features(store, "clip.mkv")[1])


@pytest.mark.parametrize("damage", ["another size", "corrupt image"])
def test_image_folder_with_a_bad_frame_names_it(tmp_path, capsys, damage):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
            folder / f"f{i:02d}.png")
    if damage == "another size":
        Image.fromarray(np.zeros((48, 40, 3), np.uint8)).save(folder / "f05.png")
        bad, why = "f05.png", "frame 5 of .* is 40x48, expected 32x32"
    else:
        (folder / "f07.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
        bad, why = "f07.png", "frame 7 of .* cannot be read"
    store = tmp_path / "s.zarr"
    capsys.readouterr()
    assert main(["extract", str(folder), "--out", str(store), *EXTRACT]) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    failed = [line for line in text.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and bad in failed[0] and "Traceback" not in text
    import re

    assert re.search(why, failed[0]), failed[0]
    with open_store(store, "r") as opened:
        assert all(opened.feature_status(v, k) != "complete" for v in opened.video_ids()
                   for k in opened.feature_keys(v))


def test_one_bad_video_in_a_batch(tmp_path, capsys):
    first = write_video(tmp_path / "first.mp4", 20, width=32, height=32, seed=3)
    store = tmp_path / "s.zarr"
    assert main(["extract", str(first), "--out", str(store), *EXTRACT]) == 0
    before = _features(store, "first.mp4")[1]
    good = [write_video(tmp_path / f"{n}.mp4", 20, width=32, height=32, seed=i)
            for i, n in enumerate(("a", "c"))]
    bad = tmp_path / "b.mp4"
    bad.write_text("a text file renamed .mp4")
    capsys.readouterr()
    assert main(["extract", str(good[0]), str(bad), str(good[1]), "--out", str(store),
                 *EXTRACT]) == 1
    out = capsys.readouterr().out
    assert "2 extracted" in out and "1 failed" in out
    assert any(line.startswith("FAILED") and "b.mp4" in line for line in out.splitlines())
    for video_id in ("a.mp4", "c.mp4"):
        assert _features(store, video_id)[0] == "complete"
    status, after = _features(store, "first.mp4")
    assert status == "complete"
    np.testing.assert_array_equal(after, before)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from prism_science import load_model
    from prism_science.models.folder import save_model

    folder = tmp_path_factory.mktemp("weights")
    return save_model(load_model(MODEL), folder / "w"), write_video(
        folder / "v.mp4", 12, width=32, height=32)


def _spoil_header(folder):
    path = folder / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(b"\xff" * 16 + data[16:])
    return "model.safetensors", "sha256"


def _other_shapes(folder):
    path = folder / "config.json"
    meta = json.loads(path.read_text())
    meta["config"]["mlp_dim"] = int(meta["config"]["mlp_dim"]) * 2
    path.write_text(json.dumps(meta))
    return "config.json", "shape"


def _no_config(folder):
    (folder / "config.json").unlink()
    return "config.json", "config.json"


@pytest.mark.parametrize("spoil", [_spoil_header, _other_shapes, _no_config],
                         ids=["corrupt safetensors", "mismatched config", "no config.json"])
def test_bad_weights_folder_through_extract(weights, tmp_path, capsys, spoil):
    import shutil

    folder, video = weights
    copy = tmp_path / "w"
    shutil.copytree(folder, copy)
    name, what = spoil(copy)
    store = tmp_path / "s.zarr"
    capsys.readouterr()
    code = main(["extract", str(video), "--out", str(store), "--model", str(copy), "--hop", "4",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and what in err and (name in err or str(copy) in err), err
    assert not store.exists()


def test_huge_label_file_imports(tmp_path):
    n = 200_000
    path = tmp_path / "huge.csv"
    starts = np.arange(n) * 10
    behaviors = np.array(["walk", "groom", "rest", "rear"])[np.arange(n) % 4]
    path.write_text("video_id,behavior,start_frame,end_frame\n" + "".join(
        f"v,{b},{s},{s + 4}\n" for b, s in zip(behaviors.tolist(), starts.tolist(), strict=True)))
    t0 = time.perf_counter()
    assert main(["labels", "import", str(path), "--format", "csv", "--fps", "30", "--out",
                 str(tmp_path / "out.csv")]) == 0
    assert time.perf_counter() - t0 < 60
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert len(lines) == n + 1


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz_store") / "s.zarr"
    make_store(path, n_videos=3, labeled=3)
    with open_store(path, "a") as opened:
        for v in ("v0", "v1", "v2"):
            save_labels(opened, v, LabelTable([Interval("walk", 0, 149)], [Segment(0, 149)],
                                              n_frames=150, fps=30.0), "onlywalk")
            save_labels(opened, v, LabelTable([], [Segment(0, 149)], n_frames=150, fps=30.0),
                        "nothing")
    return path


@pytest.mark.parametrize("rows, behaviors, message", [
    ("walk,0,9\nrest,20,30\nfly,3,4\n", "walk,rest",
     r"line 4, field 'behavior': unknown behavior 'fly'"),
    ("walk,0,9\nrest,5,12\n", "SET",
     r"line 3: interval 'rest' frames 5-12 overlaps 'walk' frames 0-9 .*exclusive group"),
])
def test_labels_outside_the_behavior_set_are_refused(store, tmp_path, capsys, rows, behaviors,
                                                     message):
    import re

    if behaviors == "SET":
        behaviors = str(tmp_path / "set.json")
        (tmp_path / "set.json").write_text(json.dumps(
            {"names": ["walk", "rest"], "exclusive_groups": [["walk", "rest"]]}))
    path = tmp_path / "labels.csv"
    path.write_text("behavior,start_frame,end_frame\n" + rows)
    capsys.readouterr()
    assert main(["labels", "import", str(path), "--store", str(store), "--video-id", "v0",
                 "--name", "fuzz", "--behaviors", behaviors]) == 2
    err = capsys.readouterr().err
    assert re.search(message, err) and str(path) in err and "Traceback" not in err, err
    with open_store(store, "r") as opened:
        assert not opened.has_item("v0", "labels/fuzz")


@pytest.mark.parametrize("labels, message", [
    ("onlywalk", "no frame to learn what is not the behavior"),
    ("nothing", "name no behavior"),
    ("absent", "no video has the label set 'absent'"),
])
def test_probe_training_sets_that_cannot_train(store, tmp_path, capsys, labels, message):
    capsys.readouterr()
    assert main(["probe", "train", "--store", str(store), "--labels", labels, "--out",
                 str(tmp_path / "p"), "--max-epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert message in err and labels in err and "Traceback" not in err, err
    assert not (tmp_path / "p").exists()
