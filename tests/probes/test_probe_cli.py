"""`prism-science probe train|predict|evaluate` on a store with planted features and labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.labels import Interval, LabelTable, Segment, save_labels
from prism_science.probes.postprocess import binary_to_bouts
from prism_science.store import open_store
from tests.probes.conftest import planted_videos

MODEL = "prism-test-p8-f4-r32"
KEY = f"{MODEL}/mean"
BEHAVIORS = ["walk", "groom", "rare"]


def provenance(model=MODEL, sha="c" * 64):
    return {"model_name": model, "weights_sha256": sha, "num_frames": 4, "image_size": 32,
            "window": {"mode": "sliding", "stride": 1, "hop": 8, "tokens": "mean",
                       "padding": "repeat"},
            "feature_shape": [8]}


def build_store(path, n_videos=4, labeled_videos=3, model=MODEL, sha="c" * 64):
    X, y, groups = planted_videos(n_videos=n_videos, n_frames=150, seed=5)
    key = f"{model}/mean"
    with open_store(path, mode="a") as store:
        for v in range(n_videos):
            video_id = f"v{v}"
            n = int((groups == v).sum())
            store.put_video(video_id, source_path=f"/data/{video_id}.mp4",
                            relative_path=f"{video_id}.mp4", size_bytes=1, content_hash=str(v),
                            timestamps=np.arange(n) / 30.0, fps=30.0, width=32, height=32)
            store.create_features(video_id, key, (8,), provenance(model, sha), chunk_frames=64)
            store.write_chunks(video_id, key, 0, X[groups == v])
            store.mark_complete(video_id, key)
            if v < labeled_videos:
                yv = y[groups == v]
                intervals = [Interval(BEHAVIORS[k], int(s), int(e))
                             for k in range(3) for s, e in binary_to_bouts(yv[:, k])]
                # Partial labeling: only the first 120 frames are annotated.
                table = LabelTable(intervals=[iv for iv in intervals if iv.end_frame < 120],
                                   segments=[Segment(0, 119)], n_frames=n, fps=30.0)
                save_labels(store, video_id, table, "manual")
    return X, y, groups


@pytest.fixture
def store_path(tmp_path):
    path = tmp_path / "s.zarr"
    build_store(path)
    return path


def test_train_predict_evaluate(tmp_path, store_path, capsys):
    probe_dir = tmp_path / "probes" / "lin"
    rc = main(["probe", "train", "--store", str(store_path), "--labels", "manual", "--kind",
               "linear", "--out", str(probe_dir), "--min-bout", "2", "--max-epochs", "30"])
    assert rc == 0, capsys.readouterr().err
    meta = json.loads((probe_dir / "probe.json").read_text())
    assert meta["behavior_names"] == BEHAVIORS
    assert meta["feature_provenance"]["feature_key"] == KEY
    assert meta["postprocess"] == {"min_bout": 2, "max_gap": 0}
    validation = json.loads((probe_dir / "validation.json").read_text())
    assert validation["validation"]["unit"] == "video"
    assert [validation["per_behavior"][b]["threshold"] for b in BEHAVIORS] == meta["thresholds"]
    assert "validation: 1 held-out video of 3" in capsys.readouterr().out

    rc = main(["probe", "predict", "--probe", str(probe_dir), "--store", str(store_path)])
    assert rc == 0, capsys.readouterr().err
    with open_store(store_path, mode="r") as store:
        for video_id in store.video_ids():
            scores = store.read_array(video_id, "predictions/lin/scores")
            binary = store.read_array(video_id, "predictions/lin/binary")
            assert scores.shape == binary.shape == (150, 3)
            attrs = store.read_array_attrs(video_id, "predictions/lin/scores")
            assert attrs["behaviors"] == BEHAVIORS
            assert attrs["provenance"]["model_name"] == MODEL
            for k in range(3):  # min bout 2 applied
                bouts = binary_to_bouts(binary[:, k])
                assert all(e - s + 1 >= 2 for s, e in bouts)
            assert "predicted" in store.list_items(video_id, "labels")

    out = tmp_path / "report"
    rc = main(["probe", "evaluate", "--store", str(store_path), "--labels", "manual",
               "--predictions", "lin", "--out", str(out), "--iou", "0.5", "0.3"])
    assert rc == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["summary"]["n_videos"] == 3  # the unlabeled video has no truth
    assert report["summary"]["n_labeled_frames"] == 3 * 120
    walk = report["per_behavior"][0]
    assert walk["behavior"] == "walk" and walk["ap"] > 0.8
    assert {"report.md", "report.html", "pr_curves.png"} <= {p.name for p in out.iterdir()}
    assert "mAP" in capsys.readouterr().out


def test_predict_refuses_features_of_another_model(tmp_path, store_path, capsys):
    probe_dir = tmp_path / "p"
    assert main(["probe", "train", "--store", str(store_path), "--labels", "manual",
                 "--out", str(probe_dir), "--max-epochs", "5"]) == 0
    other = tmp_path / "other.zarr"
    build_store(other, n_videos=1, labeled_videos=0, sha="d" * 64)
    rc = main(["probe", "predict", "--probe", str(probe_dir), "--store", str(other)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "weights_sha256" in err and "retrain" in err


def test_missing_label_set_is_a_clear_error(tmp_path, store_path, capsys):
    rc = main(["probe", "train", "--store", str(store_path), "--labels", "curated", "--out",
               str(tmp_path / "p")])
    assert rc == 2
    assert "no video has the label set 'curated'" in capsys.readouterr().err


def test_temporal_probe_from_cli(tmp_path, store_path, capsys):
    rc = main(["probe", "train", "--store", str(store_path), "--labels", "manual", "--kind",
               "temporal", "--out", str(tmp_path / "t"), "--max-epochs", "10"])
    assert rc == 0, capsys.readouterr().err
    rc = main(["probe", "predict", "--probe", str(tmp_path / "t"), "--store", str(store_path),
               "--video-id", "v3", "--name", "temporal"])
    assert rc == 0
    with open_store(store_path, mode="r") as store:
        assert store.read_array("v3", "predictions/temporal/scores").shape == (150, 3)
        assert not store.has_item("v0", "predictions/temporal/scores")


def test_suggest_skips_labeled_frames(tmp_path, store_path, capsys):
    probe_dir = tmp_path / "lin"
    assert main(["probe", "train", "--store", str(store_path), "--labels", "manual", "--out",
                 str(probe_dir), "--max-epochs", "10"]) == 0
    assert main(["probe", "predict", "--probe", str(probe_dir), "--store", str(store_path)]) == 0
    capsys.readouterr()
    assert main(["probe", "suggest", "--store", str(store_path), "--predictions", "lin",
                 "--labels", "manual", "-n", "15"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "video_id,start_frame,end_frame,score" and len(lines) == 16
    for line in lines[1:]:
        video, start, end, _ = line.split(",")
        assert start == end
        # frames 0-119 of v0..v2 are labeled: never suggested
        assert video == "v3" or int(start) >= 120
    assert main(["probe", "suggest", "--store", str(store_path), "--predictions", "lin",
                 "--bouts", "--length", "10", "-n", "3"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert len(rows) == 3 and all(int(e) - int(s) == 9 for _, s, e, _ in rows)
