"""`prism-science bench chimpact` on a miniature ChimpACT release (3 clips, raw labels)."""

from __future__ import annotations

import csv
import json

import numpy as np

from prism_science.bench import BenchOptions
from prism_science.bench.report import _voc_ap
from prism_science.bench.run import prepare

from .common import check_dry_run, check_resume, check_run, read_scores, run_cli
from .conftest import CHIMP_TEST


def test_chimpact_end_to_end(chimpact_root, tiny_model, quick_probe, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("chimpact", chimpact_root, tiny_model, out, quick_probe,
                   "--check-alignment", "3") == 0
    results = check_run(out, "ava_frame_map", n_test=8)
    assert results["counts"]["samples"] == {"train": 16, "test": 8}
    assert results["hashes"]["split_version"] == "chimpact-official-v1"
    assert results["config"]["protocol"]["clip_frames"] == 64
    assert results["config"]["resize_policy"] == "short_side_full"
    assert results["config"]["tokens_per_unit"] == [64, 32]  # RoI-pooled: one per time step
    assert results["paper"]["value_percent"] == 28.8
    # the AVA results CSV, read back: the metric recomputed from it
    rows, truth, scores, classes = read_scores(out / "seed0" / "scores.csv")
    with open(out / "predictions" / "seed0" / "test_ava_results.csv", newline="") as handle:
        ava = list(csv.reader(handle))
    assert len(ava) == 8 * 23
    assert {r[0] for r in ava} == set(CHIMP_TEST)
    assert sorted({int(r[1]) for r in ava}) == [0, 10, 20, 30]  # keyframes 10 * k
    assert [float(v) for v in ava[0][2:6]] == [round(2 / 48, 3), round(2 / 32, 3),
                                               round(22 / 48, 3), round(28 / 32, 3)]
    from_csv = np.array([float(r[7]) for r in ava]).reshape(8, 23)
    np.testing.assert_allclose(from_csv, scores, atol=1e-6)
    aps = [_voc_ap(truth[:, k], from_csv[:, k]) for k in range(23) if truth[:, k].any()]
    assert abs(np.mean(aps) - results["value"]["per_seed"]["0"]) < 1e-4
    checks = json.loads((out / "checks.json").read_text())
    assert checks["layout"]["counts"]["test_boxes"] == {"expected": 8, "found": 8, "ok": True}
    check_resume("chimpact", chimpact_root, tiny_model, out, quick_probe, capsys)


def test_chimpact_keyframes_are_ten_times_the_ordinal(chimpact_root):
    _, protocol, _, data, plan = prepare(BenchOptions("chimpact", chimpact_root, "x",
                                                      chimpact_root))
    test = data.samples["test"]
    assert sorted(set(test.frames.tolist())) == [0, 10, 20, 30]
    assert set(test.subjects) == {"1", "2"}
    assert test.boxes[0].tolist() == [2.0, 2.0, 22.0, 28.0]  # x, y, w, h -> x1, y1, x2, y2
    assert data.classes[20] == "touching" and test.targets[:, 20].sum() == 4
    assert len(plan) == 24 and plan.boxes is not None and protocol.clip_frames == 64


def test_interpolated_ap_from_its_definition():
    truth = np.array([1, 0, 1, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    # precision at the hits 1, 2/3, 1/2; envelope 1, 2/3, 1/2; recall steps of 1/3
    assert abs(_voc_ap(truth, scores) - (1 + 2 / 3 + 1 / 2) / 3) < 1e-12


def test_chimpact_dry_run(chimpact_root, tiny_model, tmp_path, capsys):
    plan = check_dry_run("chimpact", chimpact_root, tiny_model, tmp_path, capsys,
                         {"train": 16, "test": 8})
    assert plan["clips"] == 12 and plan["units"] == 24


def test_chimpact_bad_layout_names_the_missing_file(chimpact_root, tiny_model, tmp_path, capsys):
    (chimpact_root / "videos_full" / f"{CHIMP_TEST[0]}.mp4").unlink()
    assert run_cli("chimpact", chimpact_root, tiny_model, tmp_path / "run", "paper") == 2
    assert f"videos_full/{CHIMP_TEST[0]}.mp4: missing" in capsys.readouterr().err
