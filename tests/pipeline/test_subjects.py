"""Per-subject labels, probes and evaluation: each animal's labels with its own features."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import ProbeError
from prism_science.labels import Interval, LabelTable, Segment, save_labels
from prism_science.pipeline import load_trained_probe, train_probe
from prism_science.pipeline.subjects import (
    evaluate_subjects,
    load_subject_data,
    predict_subjects_to_store,
    subject_feature_keys,
)
from prism_science.probes.postprocess import binary_to_bouts
from prism_science.store import open_store
from tests.pipeline.conftest import BEHAVIORS, DIM, MODEL, N_FRAMES, provenance
from tests.probes.conftest import planted_videos

SUBJECTS = ("male", "female")


def _subject_table(y_by_subject: dict[str, np.ndarray]) -> LabelTable:
    intervals = [Interval(BEHAVIORS[k], int(s), int(e), subject=subject)
                 for subject, y in y_by_subject.items() for k in range(len(BEHAVIORS))
                 for s, e in binary_to_bouts(y[:, k])]
    return LabelTable(intervals=intervals, segments=[Segment(0, N_FRAMES - 1)],
                      n_frames=N_FRAMES, fps=30.0)


def make_subject_store(path, n_videos=3, absent=(), labels_subjects=SUBJECTS):
    """Videos with per-subject feature sets ``MODEL/mean@male|female``: each subject's
    behaviors shift its own features only (the other subject's features say nothing)."""
    X, y, groups = planted_videos(n_videos=2 * n_videos, n_frames=N_FRAMES, seed=3)
    planted = {}
    with open_store(path, mode="a") as store:
        for v in range(n_videos):
            video_id = f"v{v}"
            store.put_video(video_id, source_path=f"/data/{video_id}.mp4",
                            relative_path=f"{video_id}.mp4", size_bytes=1, content_hash=str(v),
                            timestamps=np.arange(N_FRAMES) / 30.0, fps=30.0, width=64,
                            height=64)
            ys = {}
            for s, subject in enumerate(SUBJECTS):
                unit = 2 * v + s
                values = X[groups == unit].copy()
                if (video_id, subject) in absent:
                    values[40:60] = np.nan
                key = f"{MODEL}/mean@{subject}"
                prov = {**provenance(), "crop": {"subject": subject, "tracks_sha256": "t" * 64,
                                                 "size": 40 + s, "align_heading": False,
                                                 "smooth_frames": 5}}
                store.create_features(video_id, key, values.shape[1:], prov, chunk_frames=64)
                store.write_chunks(video_id, key, 0, values.astype(np.float32))
                store.mark_complete(video_id, key)
                ys[subject] = y[groups == unit]
            planted[video_id] = ys
            labeled = {labels_subjects[i]: ys[SUBJECTS[i]] for i in range(len(SUBJECTS))}
            save_labels(store, video_id, _subject_table(labeled), "manual")
    return planted


def test_units_pair_each_subjects_labels_with_its_features(tmp_path):
    planted = make_subject_store(tmp_path / "s.zarr", absent={("v1", "male")})
    with open_store(tmp_path / "s.zarr", "r") as store:
        base, keys = subject_feature_keys(store, "v0")
        assert base == f"{MODEL}/mean"
        assert keys == {"female": f"{MODEL}/mean@female", "male": f"{MODEL}/mean@male"}
        data = load_subject_data(store, "manual", pool_for="linear")
    assert data.video_ids == ["v0@female", "v0@male", "v1@female", "v1@male", "v2@female",
                              "v2@male"]
    assert data.X.shape == (6 * N_FRAMES, DIM) and np.isfinite(data.X).all()
    rows = data.rows("v1@male")
    expected = planted["v1"]["male"].astype(np.int8)
    y = data.y[rows]
    # Absent frames (NaN features) carry no label; the others are the male's own labels.
    assert (y[40:60] == -1).all()
    np.testing.assert_array_equal(np.delete(y, range(40, 60), 0),
                                  np.delete(expected, range(40, 60), 0))
    np.testing.assert_array_equal(data.y[data.rows("v0@female")],
                                  planted["v0"]["female"].astype(np.int8))


def test_per_subject_train_predict_evaluate(tmp_path):
    make_subject_store(tmp_path / "s.zarr", absent={("v1", "male")})
    with open_store(tmp_path / "s.zarr", "r") as store:
        result = train_probe(store, "manual", "linear", per_subject=True,
                             validation_fraction=0.34, seed=0)
    assert result.probe.feature_provenance_["per_subject"] is True
    assert set(result.split.held_out) <= set(result.data.video_ids)  # units are the groups
    assert result.metrics["walk"]["AP"] > 0.8
    with open_store(tmp_path / "s.zarr", "r+") as store:
        out = predict_subjects_to_store(result.probe, store, "p")
        assert sorted(out) == ["v0@female", "v0@male", "v1@female", "v1@male", "v2@female",
                               "v2@male"]
        scores = out["v1@male"].scores
        assert (scores[40:60] == 0).all() and np.isfinite(scores).all()
        assert store.has_item("v0", "predictions/p@male/scores")
        from prism_science.labels import load_labels

        predicted = load_labels(store, "v0", "predicted/p")
        assert set(predicted.subjects()) == {"male", "female"}  # bouts keep their subject
        pooled, per_subject, arrays = evaluate_subjects(store, "manual", "p")
    assert set(per_subject) == {"male", "female"}
    assert len(arrays["video_ids"]) == 6
    print(pooled.summary)
    assert pooled.summary["mAP"] > 0.6
    for report in per_subject.values():
        assert report.summary["mAP"] > 0.5
    # Pooled frames are the sum of the subjects' frames.
    assert len(arrays["y_true"]) == 6 * N_FRAMES


def test_cli_per_subject_probe_round_trip(tmp_path, capsys):
    make_subject_store(tmp_path / "s.zarr")
    store, probe_dir = str(tmp_path / "s.zarr"), str(tmp_path / "probe")
    assert main(["probe", "train", "--store", store, "--labels", "manual", "--out", probe_dir,
                 "--per-subject", "--val-fraction", "0.34"]) == 0
    assert "6 video(s)" in capsys.readouterr().out
    assert load_trained_probe(probe_dir).feature_provenance_["per_subject"]
    assert main(["probe", "predict", "--probe", probe_dir, "--store", store]) == 0
    printed = capsys.readouterr().out
    assert "v0: 150 frames -> predictions/probe@male" in printed
    report_dir = tmp_path / "report"
    assert main(["probe", "evaluate", "--store", store, "--labels", "manual", "--predictions",
                 "probe", "--out", str(report_dir), "--per-subject"]) == 0
    printed = capsys.readouterr().out
    assert "pooled over subjects" in printed and "subject male:" in printed
    assert (report_dir / "report.json").exists()
    male = json.loads((report_dir / "male" / "report.json").read_text())
    assert male


def test_label_subject_without_a_track_is_named(tmp_path):
    make_subject_store(tmp_path / "s.zarr", labels_subjects=("male", "queen"))
    with open_store(tmp_path / "s.zarr", "r") as store, \
            pytest.raises(ProbeError, match="'queen'.*match no track"):
        load_subject_data(store, "manual")


def test_labels_without_subjects_are_refused(tmp_path):
    make_subject_store(tmp_path / "s.zarr")
    with open_store(tmp_path / "s.zarr", "r+") as store:
        table = LabelTable(intervals=[Interval("walk", 0, 9)],
                           segments=[Segment(0, N_FRAMES - 1)], n_frames=N_FRAMES, fps=30.0)
        save_labels(store, "v0", table, "nosubject")
        with pytest.raises(ProbeError, match="name no subject"):
            load_subject_data(store, "nosubject", video_ids=["v0"])


def test_whole_frame_store_has_no_subject_features(tmp_path):
    from tests.pipeline.conftest import make_store

    make_store(tmp_path / "w.zarr", n_videos=1, labeled=1)
    with open_store(tmp_path / "w.zarr", "r") as store, \
            pytest.raises(ProbeError, match="--subjects"):
        subject_feature_keys(store, "v0")


def test_subject_crop_fields_may_differ_but_models_may_not(tmp_path):
    make_subject_store(tmp_path / "s.zarr", n_videos=2)
    with open_store(tmp_path / "s.zarr", "r+") as store:
        key = f"{MODEL}/mean@male"
        values = store.read_features("v1", key).values
        other = {**provenance(hop=16), "crop": {"subject": "male", "tracks_sha256": "u" * 64,
                                                "size": 40, "align_heading": False,
                                                "smooth_frames": 5}}
        store.create_features("v1", key, values.shape[1:], other, chunk_frames=64,
                              overwrite=True)
        store.write_chunks("v1", key, 0, values)
        store.mark_complete("v1", key)
        with pytest.raises(ProbeError, match="window.hop"):
            load_subject_data(store, "manual")


def test_whole_frame_training_ignores_subject_sets(tmp_path):
    from prism_science.pipeline import load_store_data
    from tests.pipeline.conftest import make_store

    make_store(tmp_path / "w.zarr", n_videos=2, labeled=2)
    with open_store(tmp_path / "w.zarr", "r+") as store:
        values = store.read_features("v0", f"{MODEL}/mean").values
        prov = {**provenance(), "crop": {"subject": "a", "tracks_sha256": "t" * 64, "size": 40,
                                         "align_heading": False, "smooth_frames": 5}}
        store.create_features("v0", f"{MODEL}/mean@a", values.shape[1:], prov, chunk_frames=64)
        store.write_chunks("v0", f"{MODEL}/mean@a", 0, values)
        store.mark_complete("v0", f"{MODEL}/mean@a")
        data = load_store_data(store, "manual")
    assert data.feature_key == f"{MODEL}/mean" and data.video_ids == ["v0", "v1"]
