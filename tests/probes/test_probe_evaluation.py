"""Evaluation reports, plots and cross-validation by video."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.evaluation import (
    NO_BEHAVIOR,
    cross_validate,
    evaluate_predictions,
    plot_ethogram,
    write_report,
)
from prism_science.probes import LinearProbe


def test_report_values_and_files(tmp_path, planted):
    X, y, groups = planted
    rng = np.random.default_rng(0)
    scores = np.clip(y * 0.6 + rng.random(y.shape) * 0.5, 0, 1)
    y = y.copy()
    y[:50] = -1
    pred = (scores > 0.5).astype(int)
    report = evaluate_predictions(y, scores, pred, ["walk", "groom", "rare"], groups,
                                  iou_thresholds=(0.5, 0.75), metadata={"probe": "test"})
    assert report.summary["n_videos"] == 6
    assert report.summary["n_labeled_frames"] == len(y) - 50
    row = report.per_behavior[0]
    assert row["behavior"] == "walk" and 0 < row["ap"] <= 1
    assert set(row["bout_f1"]) == {0.5, 0.75}
    assert report.summary["mAP"] == pytest.approx(np.mean([r["ap"] for r in report.per_behavior]))

    written = write_report(report, tmp_path / "report", y, scores, pred, groups)
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["summary"]["mAP"] == pytest.approx(report.summary["mAP"])
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert "| walk |" in markdown and "pr_curves.png" in markdown
    assert "<table>" in (tmp_path / "report" / "report.html").read_text()
    pngs = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert "pr_curves.png" in pngs and len(pngs) == 7  # + one ethogram per video
    for path in written.values():
        assert path.stat().st_size > 0
    assert (tmp_path / "report" / "pr_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_single_label_data_gets_confusion_matrix_and_macro_accuracy():
    y = np.array([[1, 0], [1, 0], [0, 1], [0, 0], [0, 1], [-1, -1]])
    scores = np.array([[0.9, 0.1], [0.2, 0.7], [0.1, 0.8], [0.1, 0.2], [0.3, 0.4], [0.9, 0.1]])
    report = evaluate_predictions(y, scores, behavior_names=["a", "b"])
    labels = report.confusion["labels"]
    assert labels == ["a", "b", NO_BEHAVIOR]
    # truth a,a,b,none,b ; pred a,b,b,none,none -> per class 1/2, 1/2, 1/1
    assert report.confusion["matrix"] == [[1, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert report.summary["macro_accuracy"] == pytest.approx((0.5 + 0.5 + 1) / 3)
    multi = evaluate_predictions(np.array([[1, 1], [0, 0]]), np.zeros((2, 2)))
    assert multi.confusion is None and multi.summary["macro_accuracy"] is None


def test_nan_metrics_become_null_in_json():
    report = evaluate_predictions(np.array([[0], [0], [-1]]), np.array([[0.1], [0.9], [0.5]]))
    data = json.loads(report.to_json())
    assert data["per_behavior"][0]["ap"] is None and data["summary"]["mAP"] is None


def test_ethogram_without_truth(tmp_path):
    path = plot_ethogram(None, np.eye(5, 2, dtype=int), ["a", "b"], tmp_path / "e.png", fps=30)
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_cross_validation_by_video(planted):
    X, y, groups = planted
    result = cross_validate(LinearProbe(max_epochs=20, random_state=0), X, y, groups,
                            n_splits=3, behavior_names=["walk", "groom", "rare"], min_bout=2)
    assert len(result.folds) == 3
    assert result.mean["mAP"] > 0.7 and result.std["mAP"] >= 0
    videos_per_fold = [f.summary["n_videos"] for f in result.folds]
    assert sum(videos_per_fold) == 6
    assert json.dumps(result.to_dict())
