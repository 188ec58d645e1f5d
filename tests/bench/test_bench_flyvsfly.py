"""`prism-science bench flyvsfly` on a miniature Fly vs. Fly release (3 movies, both namings)."""

from __future__ import annotations

import json

import numpy as np

from prism_science.bench import BenchOptions
from prism_science.bench.run import prepare
from prism_science.labels import read_labels, to_frame_matrix

from .common import check_dry_run, check_resume, check_run, run_cli


def test_flyvsfly_end_to_end(fvf_root, tiny_model, quick_probe, tmp_path, capsys):
    # a sample every 3rd frame keeps the test fast (the protocol: every frame)
    config = json.loads(quick_probe.read_text())
    quick_probe.write_text(json.dumps({**config, "protocol": {"train_stride": 3,
                                                              "test_stride": 3}}))
    out = tmp_path / "run"
    assert run_cli("flyvsfly", fvf_root, tiny_model, out, quick_probe,
                   "--check-alignment", "4") == 0
    results = check_run(out, "map", n_test=14)
    assert results["counts"]["samples"] == {"train": 28, "test": 14}
    assert results["config"]["protocol"]["test_stride"] == 3
    assert results["paper"]["value_percent"] == 89.1
    assert results["hashes"]["split_version"] == "prism-flyvsfly-split-v1"
    assert list(results["per_class"]) == ["lunge", "wing threat", "tussle", "wing extension",
                                          "circle", "copulation"]
    # no test positive of wing threat / tussle / copulation: left out of the mean
    assert results["per_class"]["tussle"] is None
    checks = json.loads((out / "checks.json").read_text())
    assert checks["alignment"]["ok"] and checks["alignment"]["n"] == 4
    # native predictions: a FlyTracker actions file per test movie, read back by our reader
    mat = out / "predictions" / "seed0" / "Aggression" / "movie3" / "movie3_actions.mat"
    table = read_labels(mat, format="flyvsfly", n_frames=40)
    predicted = to_frame_matrix(table, results["per_class"].keys(), n_frames=40)
    scores = np.load(out / "seed0" / "scores.npy")
    np.testing.assert_array_equal(predicted[::3], (scores >= 0.5).astype(np.int8))
    check_resume("flyvsfly", fvf_root, tiny_model, out, quick_probe, capsys)


def test_flyvsfly_labels_are_exhaustive_and_per_frame(fvf_root):
    _, protocol, _, data, _ = prepare(BenchOptions("flyvsfly", fvf_root, "x", fvf_root))
    assert {v: d.subset for v, d in data.videos.items()} == {
        "Aggression/movie1": "train", "Aggression/movie2": "train", "Aggression/movie3": "test"}
    test = data.samples["test"]
    assert test.frames.tolist() == list(range(40))  # every frame, negatives included
    lunge = test.targets[:, 0]
    # movie3: lunge on frames 5..14 rolled by 9 -> 14..23
    assert np.flatnonzero(lunge).tolist() == list(range(14, 24))
    assert protocol.clip_frames == 16 and protocol.loss == "bce"


def test_flyvsfly_explicit_split_file(fvf_root, tmp_path):
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"dataset": "flyvsfly", "version": "mine", "subsets": {
        "train": ["Aggression/movie2", "Aggression/movie3"], "test": ["Aggression/movie1"]}}))
    _, _, _, data, _ = prepare(BenchOptions("flyvsfly", fvf_root, "x", fvf_root, split=split))
    assert data.split_version == "mine"
    assert set(data.samples["test"].video_ids) == {"Aggression/movie1"}


def test_flyvsfly_dry_run(fvf_root, tiny_model, tmp_path, capsys):
    plan = check_dry_run("flyvsfly", fvf_root, tiny_model, tmp_path, capsys,
                         {"train": 80, "test": 40})
    assert plan["frames_decoded"] == 120


def test_flyvsfly_bad_layout_names_the_missing_file(fvf_root, tiny_model, tmp_path, capsys):
    (fvf_root / "Aggression" / "Aggression" / "movie2" / "movie2-actions.mat").unlink()
    assert run_cli("flyvsfly", fvf_root, tiny_model, tmp_path / "run", "paper") == 2
    err = capsys.readouterr().err
    assert "movie2/movie2_actions.mat: missing" in err and "movie2-actions.mat" in err


def test_flyvsfly_cuda_missing_is_a_clear_error(fvf_root, tiny_model, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        return
    assert run_cli("flyvsfly", fvf_root, tiny_model, tmp_path / "run", "paper",
                   "--device", "cuda") == 2
    assert "CUDA is not available" in capsys.readouterr().err
