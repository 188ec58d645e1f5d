"""The one training path: data gathering, validation split, thresholds, refusals, warnings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import ProbeError
from prism_science.labels import Interval, LabelTable, load_labels, save_labels
from prism_science.pipeline import (
    DEFAULT_THRESHOLD,
    SINGLE_VIDEO_BLOCKS,
    load_store_data,
    load_trained_probe,
    save_trained_probe,
    select_rows,
    split_validation,
    train_probe,
)
from prism_science.store import open_store

from .conftest import BEHAVIORS, MODEL, N_FRAMES, make_store

LINEAR = {"max_epochs": 30}


def test_split_holds_out_whole_videos_and_is_reproducible(tmp_path):
    make_store(tmp_path / "s.zarr", n_videos=5, labeled=5)
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        data = select_rows(load_store_data(store, "manual", pool_for="linear"), "linear")
        first, again = split_validation(data, 0.2, seed=3), split_validation(data, 0.2, seed=3)
    assert first.unit == "video" and first.n_units == 5 and len(first.held_out) == 1
    np.testing.assert_array_equal(first.val, again.val)
    held = data.video_ids.index(first.held_out[0])
    # Every row of the held-out video validates, none of it trains.
    np.testing.assert_array_equal(np.sort(first.val), np.flatnonzero(data.groups == held))
    assert not np.isin(first.train, first.val).any()
    assert len(first.train) + len(first.val) == len(data.X) == 5 * 120  # labeled rows only


def test_single_video_splits_its_labeled_frames_into_time_blocks(tmp_path):
    make_store(tmp_path / "s.zarr", n_videos=1, labeled=1, labeled_frames=100)
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        linear = select_rows(load_store_data(store, "manual", pool_for="linear"), "linear")
        temporal = select_rows(load_store_data(store, "manual", pool_for="temporal"),
                               "temporal")
    split = split_validation(linear, 0.2, seed=0)
    assert split.unit == "time block" and split.n_units == SINGLE_VIDEO_BLOCKS
    # Blocks hold equal numbers of labeled frames, in time order: 100 / 5 = 20 frames each.
    assert np.bincount(split.groups).tolist() == [20] * 5
    assert len(split.val) == 20
    (held,) = split.held_out
    start = int(linear.frames[split.val].min())
    assert held == f"v0 frames {start}-{start + 19}" and start % 20 == 0
    # The temporal probe keeps the unlabeled frames 100-149; they join the last block and the
    # labeled frames get the same blocks as for the linear probe.
    assert len(temporal.X) == N_FRAMES
    split_t = split_validation(temporal, 0.2, seed=0)
    np.testing.assert_array_equal(split_t.groups[:100], split.groups)
    assert (split_t.groups[100:] == 4).all()


def test_thresholds_come_from_the_validation_split(tmp_path):
    make_store(tmp_path / "s.zarr")
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        result = train_probe(store, "manual", "linear", params=LINEAR, min_bout=2)
    probe = result.probe
    assert result.split.unit == "video" and len(result.split.held_out) == 1
    assert result.data.video_ids == ["v0", "v1", "v2"]  # v3 has no labels
    for k, name in enumerate(BEHAVIORS):
        figures = result.metrics[name]
        assert probe.thresholds_[k] == pytest.approx(figures["threshold"])
        if figures["positives"]:
            assert figures["threshold_source"] == "validation"
            assert 0 <= figures["F1"] <= 1 and 0 <= figures["AP"] <= 1
    assert result.metrics["groom"]["AP"] > 0.8  # 25 held-out positive frames
    assert probe.postprocess_ == {"min_bout": 2, "max_gap": 0}
    assert probe.validation_["per_behavior"]["walk"]["threshold"] == probe.thresholds_[0]
    assert "threshold" in result.format() and "walk" in result.format()


def test_no_positive_in_the_held_out_part_keeps_the_default_threshold(tmp_path):
    make_store(tmp_path / "s.zarr", n_videos=3, labeled=3)
    with open_store(tmp_path / "s.zarr", mode="r+") as store:
        # 'rare' happens in v0 only; wherever the split puts v0, one side lacks it.
        for video_id in ("v0", "v1", "v2"):
            table = load_labels(store, video_id, "manual")
            table.intervals = [iv for iv in table.intervals if iv.behavior != "rare"]
            if video_id == "v0":
                table.intervals.append(Interval("rare", 40, 49))
            save_labels(store, video_id, table, "manual")
        results = [train_probe(store, "manual", "linear", params=LINEAR, seed=seed)
                   for seed in range(4)]
    for result in results:
        rare = result.metrics["rare"]
        if result.split.held_out != ["v0"]:  # the bouts of 'rare' are all in training
            assert rare["positives"] == 0 and np.isnan(rare["AP"])
            assert rare["threshold"] == DEFAULT_THRESHOLD
            assert rare["threshold_source"] == "default"
            assert any("'rare'" in w and "no positive" in w for w in result.warnings)
        else:  # all in the held-out video: nothing to train it on
            assert rare["threshold"] == DEFAULT_THRESHOLD
            assert any("'rare'" in w and "none is left to train on" in w
                       for w in result.warnings)
        assert result.probe.thresholds_[2] == DEFAULT_THRESHOLD
    assert any(r.split.held_out != ["v0"] for r in results)


def test_too_few_bouts_warn(tmp_path):
    make_store(tmp_path / "s.zarr", n_videos=2, labeled=2)
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        result = train_probe(store, "manual", "linear", params=LINEAR)
    bouts = {name: m["bouts"] for name, m in result.metrics.items()}
    assert bouts["rare"] < 3 <= bouts["walk"]
    assert any("'rare'" in w and "too few to train and validate" in w for w in result.warnings)
    assert not any("'walk'" in w for w in result.warnings)


def test_labels_without_a_negative_frame_are_refused(tmp_path):
    make_store(tmp_path / "s.zarr", n_videos=2, labeled=0)
    tables = {  # bouts only, no labeled stretch: every labeled frame is a positive
        "v0": LabelTable([Interval("walk", 10, 30), Interval("walk", 60, 80)], [],
                         n_frames=N_FRAMES, fps=30.0),
        "v1": LabelTable([Interval("walk", 5, 25)], [], n_frames=N_FRAMES, fps=30.0),
    }
    with open_store(tmp_path / "s.zarr", mode="r") as store, pytest.raises(
            ProbeError, match=r"every labeled frame of \['walk'\] is a positive"):
        train_probe(store, tables, "linear", params=LINEAR)


def test_mixed_hops_are_refused_naming_both_videos(tmp_path, capsys):
    make_store(tmp_path / "s.zarr", n_videos=3, labeled=3, hops={2: 16})
    rc = main(["probe", "train", "--store", str(tmp_path / "s.zarr"), "--labels", "manual",
               "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "videos 'v0' and 'v2'" in err and "window.hop: 8 vs 16" in err
    assert not (tmp_path / "p").exists()


def test_two_weights_under_one_model_name_are_refused(tmp_path):
    make_store(tmp_path / "s.zarr", n_videos=3, labeled=3, shas={1: "d" * 64})
    with open_store(tmp_path / "s.zarr", mode="r") as store, pytest.raises(
            ProbeError, match=r"videos 'v0' and 'v1'.*weights_sha256: 'cccccccccccc' vs "
                              r"'dddddddddddd'"):
        train_probe(store, "manual", "linear", params=LINEAR)


def test_incomplete_features_stop_training_before_reading(tmp_path):
    make_store(tmp_path / "s.zarr", n_videos=3, labeled=3, incomplete=(1,))
    with open_store(tmp_path / "s.zarr", mode="r") as store, pytest.raises(
            ProbeError, match=rf"features '{MODEL}/mean' of video 'v1' are incomplete"):
        train_probe(store, "manual", "linear", params=LINEAR)


def test_cli_train_writes_thresholds_and_validation_into_the_probe_folder(tmp_path, capsys):
    make_store(tmp_path / "s.zarr")
    out = tmp_path / "probes" / "walkers"
    rc = main(["probe", "train", "--store", str(tmp_path / "s.zarr"), "--labels", "manual",
               "--out", str(out), "--max-epochs", "30", "--seed", "1"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    meta = json.loads((out / "probe.json").read_text())
    validation = json.loads((out / "validation.json").read_text())
    assert validation["validation"]["unit"] == "video"
    assert validation["videos"] == ["v0", "v1", "v2"]
    per = validation["per_behavior"]
    assert [per[b]["threshold"] for b in BEHAVIORS] == pytest.approx(meta["thresholds"])
    assert set(per["walk"]) >= {"AP", "F1", "precision", "recall", "threshold", "positives",
                                "bouts", "threshold_source"}
    # The CLI prints the same figures.
    assert "validation: 1 held-out video of 3" in captured.out
    walk_line = next(line for line in captured.out.splitlines() if line.strip().startswith(
        "walk"))
    assert f"{per['walk']['threshold']:.3f}" in walk_line
    # Loading gives the probe back with its validation.
    probe = load_trained_probe(out)
    assert probe.validation_ == validation
    np.testing.assert_allclose(probe.thresholds_, meta["thresholds"])


def test_save_without_validation_removes_a_stale_file(tmp_path):
    make_store(tmp_path / "s.zarr")
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        result = train_probe(store, "manual", "linear", params=LINEAR)
    folder = save_trained_probe(result.probe, tmp_path / "p")
    assert (folder / "validation.json").is_file()
    result.probe.validation_ = None
    save_trained_probe(result.probe, folder)
    assert not (folder / "validation.json").exists()
    assert load_trained_probe(folder).validation_ is None


def test_no_validation_split_says_so(tmp_path):
    make_store(tmp_path / "s.zarr")
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        result = train_probe(store, "manual", "linear", params=LINEAR, validation_fraction=0)
    assert not result.split.has_validation
    assert all(m["threshold"] == DEFAULT_THRESHOLD for m in result.metrics.values())
    assert any("no validation split" in w for w in result.warnings)


def test_final_fit_sees_each_video_whole(tmp_path, monkeypatch):
    """The time blocks of a single video only choose the held-out part: the probe kept for
    prediction is fitted with one group per video, as it predicts (chopping the demo's fly
    video into blocks cost the temporal probe 0.86 -> 0.54 AP)."""
    import prism_science.pipeline.train as train_module

    calls = []
    original = train_module._fit

    def spy(kind, params, X, y, groups, *rest):
        calls.append(np.unique(groups).tolist())
        return original(kind, params, X, y, groups, *rest)

    monkeypatch.setattr(train_module, "_fit", spy)
    make_store(tmp_path / "s.zarr", n_videos=1, labeled=1, labeled_frames=100)
    with open_store(tmp_path / "s.zarr", mode="r") as store:
        train_probe(store, "manual", "temporal", params={"max_epochs": 2})
    validation_fit, final_fit = calls
    assert len(validation_fit) == SINGLE_VIDEO_BLOCKS - 1  # the training blocks
    assert final_fit == [0]
