"""`prism-science bench kabr` on a miniature KABR release (3 mini-scenes of 30 frames)."""

from __future__ import annotations

import json

import numpy as np

from prism_science.bench import BenchOptions
from prism_science.bench.run import prepare
from prism_science.cli.main import main

from .common import check_dry_run, check_resume, check_run, run_cli


def test_kabr_end_to_end_resume_and_native_predictions(kabr_root, tiny_model, quick_probe,
                                                       tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli("kabr", kabr_root, tiny_model, out, quick_probe,
                   "--check-alignment", "3") == 0
    assert "top1_macro" in capsys.readouterr().out
    # 30 labeled frames per mini-scene, a sample every 5th: 6 per mini-scene
    results = check_run(out, "top1_macro", n_test=6)
    assert results["counts"]["samples"] == {"train": 12, "val": 6}
    assert results["paper"]["value_percent"] == 61.6
    assert results["config"]["protocol"]["loss"] == "eql"
    assert results["config"]["probe"]["dropout"] == 0.5
    assert results["config"]["probe"]["n_heads_used"] == 8  # 12 does not divide D = 32
    checks = json.loads((out / "checks.json").read_text())
    assert checks["alignment"]["n"] == 3 and checks["alignment"]["ok"]
    assert checks["layout"]["counts"]["val_samples"] == {"expected": 6, "found": 6, "ok": True}
    # kabr-tools' behavior-model CSV: video track frame label
    lines = (out / "predictions" / "seed0" / "val_predictions.csv").read_text().splitlines()
    assert lines[0] == "video track frame label" and len(lines) == 7
    frames = [int(line.split()[2]) for line in lines[1:]]
    assert frames == [0, 5, 10, 15, 20, 25]
    scores = np.load(out / "seed0" / "scores.npy")
    assert [int(line.split()[3]) for line in lines[1:]] == scores.argmax(1).tolist()
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)  # softmax
    check_resume("kabr", kabr_root, tiny_model, out, quick_probe, capsys)


def test_kabr_samples_follow_the_csv(kabr_root):
    _, protocol, _, data, plan = prepare(BenchOptions("kabr", kabr_root, "x", kabr_root))
    val = data.samples["val"]
    assert protocol.train_stride == protocol.test_stride == 5
    assert set(val.video_ids) == {"G0003"} and val.frames.tolist() == [0, 5, 10, 15, 20, 25]
    # G0003: np.roll(np.repeat([0, 1, 3], 10), 12): frame 0 holds class 1 (Graze)
    assert data.classes[int(val.targets[0].argmax())] == "Graze"
    assert (val.targets.sum(1) == 1).all()
    assert len(plan) == 18


def test_kabr_dry_run(kabr_root, tiny_model, tmp_path, capsys):
    plan = check_dry_run("kabr", kabr_root, tiny_model, tmp_path, capsys,
                         {"train": 12, "val": 6})
    assert plan["clip"] == {"frames": 16, "step": 1}


def test_kabr_bad_layout_names_the_missing_file(kabr_root, tiny_model, tmp_path, capsys):
    (kabr_root / "annotation" / "val.csv").unlink()
    assert run_cli("kabr", kabr_root, tiny_model, tmp_path / "run", "paper") == 2
    err = capsys.readouterr().err
    assert "val.csv: missing" in err and not (tmp_path / "run").exists()


def test_kabr_frames_folder_missing(kabr_root, tiny_model, tmp_path, capsys):
    for image in (kabr_root / "dataset" / "image" / "Z0002").iterdir():
        image.unlink()
    (kabr_root / "dataset" / "image" / "Z0002").rmdir()
    assert run_cli("kabr", kabr_root, tiny_model, tmp_path / "run", "paper") == 2
    assert "Z0002: missing" in capsys.readouterr().err


def test_kabr_online_cache_encodes_per_batch_and_writes_no_cache(kabr_root, tiny_model,
                                                                  quick_probe, tmp_path,
                                                                  capsys):
    out = tmp_path / "online"
    assert run_cli("kabr", kabr_root, tiny_model, out, quick_probe, "--cache", "online",
                   "--check-alignment", "2", "--seeds", "0") == 0
    assert not (out / "cache").exists()
    results = json.loads((out / "results.json").read_text())
    checks = json.loads((out / "checks.json").read_text())
    assert results["config"]["cache"] == "online" and checks["passed"]
    # the batched online path equals frame-by-frame decoding + encoding (float32: exact-ish)
    assert checks["alignment"]["max_relative_diff"] < 1e-5
    assert "extract" not in results["wall_time_s"]
    capsys.readouterr()
    assert main(["bench", "kabr", "--root", str(kabr_root), "--model", str(tiny_model),
                 "--out", str(tmp_path / "dry"), "--cache", "online", "--dry-run", "--json",
                 "--seeds", "0", "--probe", str(quick_probe)]) == 0
    plan = json.loads(capsys.readouterr().out)
    # every training step encodes its batch: epochs x train samples + test samples, per seed
    assert plan["forward_passes"] == 4 * 12 + 6


def test_probe_config_fields_are_checked_by_name(kabr_root, tiny_model, tmp_path, capsys):
    config = tmp_path / "probe.json"
    config.write_text(json.dumps({"epochs": 2, "learning_rat": 0.1}))
    assert run_cli("kabr", kabr_root, tiny_model, tmp_path / "run", config) == 2
    assert "unknown field(s) ['learning_rat']" in capsys.readouterr().err
    config.write_text(json.dumps({"protocol": {"resize": "squash"}}))
    assert run_cli("kabr", kabr_root, tiny_model, tmp_path / "run", config) == 2
    assert "field 'resize': 'squash'" in capsys.readouterr().err
