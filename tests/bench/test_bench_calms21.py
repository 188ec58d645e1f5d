"""`prism-science bench calms21` on a miniature CalMS21 task-1 release (3 sequences)."""

from __future__ import annotations

import json

import numpy as np

from prism_science.bench import BenchOptions
from prism_science.bench.run import prepare

from .common import check_dry_run, check_resume, check_run, run_cli


def test_calms21_end_to_end(calms21_root, tiny_model, quick_probe, tmp_path, capsys):
    config = json.loads(quick_probe.read_text())
    quick_probe.write_text(json.dumps({**config, "protocol": {"test_stride": 2}}))
    out = tmp_path / "run"
    assert run_cli("calms21", calms21_root, tiny_model, out, quick_probe,
                   "--check-alignment", "2") == 0
    results = check_run(out, "map", n_test=20)
    # train: every 16th of 2 x 40 frames; test: every 2nd of 40
    assert results["counts"]["samples"] == {"train": 6, "test": 20}
    assert list(results["per_class"]) == ["attack", "investigation", "mount"]  # no 'other'
    assert results["paper"]["value_percent"] == 91.1
    # native predictions: the task-1 JSON layout, a class id for every frame
    native = json.loads((out / "predictions" / "seed0" /
                         "calms21_task1_test_predictions.json").read_text())
    sequence = native["annotator-id_0"]["task1/test/mouse003_task1_annotator1"]
    assert sequence["metadata"]["vocab"] == {"attack": 0, "investigation": 1, "mount": 2,
                                             "other": 3}
    labels = np.array(sequence["annotations"])
    scores = np.load(out / "seed0" / "scores.npy")
    expected = np.where(scores.max(1) >= 0.5, scores.argmax(1), 3)
    assert len(labels) == 40
    np.testing.assert_array_equal(labels[::2], expected)
    np.testing.assert_array_equal(labels[1::2], expected)  # unsampled: the frame before
    check_resume("calms21", calms21_root, tiny_model, out, quick_probe, capsys)


def test_calms21_other_is_all_negative(calms21_root):
    _, protocol, _, data, _ = prepare(BenchOptions("calms21", calms21_root, "x", calms21_root))
    assert protocol.train_stride == 16 and protocol.test_stride == 1
    test = data.samples["test"]
    raw = json.loads((calms21_root / "task1_classic_classification" /
                      "calms21_task1_test.json").read_text())
    labels = np.array(raw["annotator-id_0"]["task1/test/mouse003_task1_annotator1"]
                      ["annotations"])
    assert len(test) == 40
    np.testing.assert_array_equal(test.targets.sum(1) == 0, labels == 3)
    np.testing.assert_array_equal(test.targets.argmax(1)[labels != 3], labels[labels != 3])


def test_calms21_dry_run(calms21_root, tiny_model, tmp_path, capsys):
    check_dry_run("calms21", calms21_root, tiny_model, tmp_path, capsys,
                  {"train": 6, "test": 40})


def test_calms21_bad_layout_names_the_missing_file(calms21_root, tiny_model, tmp_path, capsys):
    (calms21_root / "task1_videos_mp4" / "test" / "mouse003_task1_annotator1.mp4").unlink()
    assert run_cli("calms21", calms21_root, tiny_model, tmp_path / "run", "paper") == 2
    err = capsys.readouterr().err
    assert "task1_videos_mp4/test/mouse003_task1_annotator1.mp4: missing" in err


def test_calms21_npy_only_is_refused(calms21_root, tiny_model, tmp_path, capsys):
    labels = calms21_root / "task1_classic_classification"
    (labels / "calms21_task1_train.json").rename(labels / "calms21_task1_train.npy")
    assert run_cli("calms21", calms21_root, tiny_model, tmp_path / "run", "paper") == 2
    assert "a pickle that is not read" in capsys.readouterr().err
