"""Assertions every benchmark's end-to-end test makes."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, balanced_accuracy_score

from prism_science.cli.main import main

RUN_FILES = ("results.json", "report.md", "checks.json", "config.json", "state.json",
             "cache/tokens.npy", "cache/done.npy", "cache/units.json")


def run_cli(dataset: str, root: Path, model: Path, out: Path, probe: Path, *extra: str) -> int:
    """``prism-science bench`` with two seeds and the quick probe."""
    return main(["bench", dataset, "--root", str(root), "--model", str(model), "--out",
                 str(out), "--seeds", "0", "1", "--probe", str(probe), *extra])


def read_scores(path: Path) -> tuple[list[dict], np.ndarray, np.ndarray, list[str]]:
    """Rows, truth (N, K), scores (N, K), classes of a scores.csv."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    classes = [k.removeprefix("true:") for k in rows[0] if k.startswith("true:")]
    truth = np.array([[int(r[f"true:{c}"]) for c in classes] for r in rows])
    scores = np.array([[float(r[f"score:{c}"]) for c in classes] for r in rows])
    return rows, truth, scores, classes


def mean_ap(truth: np.ndarray, scores: np.ndarray) -> float:
    """sklearn step AP, mean over classes with a positive."""
    return float(np.mean([average_precision_score(truth[:, k], scores[:, k])
                          for k in range(truth.shape[1]) if truth[:, k].any()]))


def check_run(out: Path, metric: str, n_test: int, seeds=(0, 1)) -> dict:
    """The files are there and the metric of each seed is what the scores say."""
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    results = json.loads((out / "results.json").read_text())
    checks = json.loads((out / "checks.json").read_text())
    assert results["metric"]["name"] == metric and results["metric"]["definition"]
    assert checks["passed"] is True, checks
    assert results["checks_passed"] is True
    values = []
    for seed in seeds:
        rows, truth, scores, classes = read_scores(out / f"seed{seed}" / "scores.csv")
        assert len(rows) == n_test == results["counts"]["samples"][
            results["config"]["protocol"]["test_subset"]]
        if metric == "map":
            expected = mean_ap(truth, scores)
        elif metric == "top1_macro":
            expected = balanced_accuracy_score(truth.argmax(1), scores.argmax(1))
        else:
            expected = None
        reported = results["value"]["per_seed"][str(seed)]
        if expected is not None:
            assert math.isclose(reported, expected, abs_tol=1e-9)
        assert checks["metric"][str(seed)]["ok"]
        values.append(reported)
        assert (out / f"seed{seed}" / "probe.safetensors").is_file()
    assert math.isclose(results["value"]["mean"], float(np.mean(values)), abs_tol=1e-12)
    assert math.isclose(results["value"]["sd"], float(np.std(values, ddof=1)), abs_tol=1e-12)
    assert math.isclose(results["paper"]["delta_points"],
                        100 * results["value"]["mean"] - results["paper"]["value_percent"])
    assert results["hashes"]["weights"]["weights_sha256"]
    assert results["hashes"]["labels"] and results["hashes"]["split"]
    assert set(results["wall_time_s"]) >= {"read", "extract", "train_seed0", "predict_seed0",
                                           "checks"}
    assert results["versions"]["torch"]
    report = (out / "report.md").read_text()
    assert "paper (VideoPrism-B)" in report and results["dataset"] in report
    return results


def check_resume(dataset: str, root: Path, model: Path, out: Path, probe: Path,
                 capsys) -> None:
    """A second run without --resume is refused; with it, finished stages are skipped and the
    figures are the same; an interrupted extraction resumes from its done mask."""
    before = json.loads((out / "results.json").read_text())
    assert run_cli(dataset, root, model, out, probe) == 2
    assert "--resume" in capsys.readouterr().err
    tokens_mtime = (out / "cache" / "tokens.npy").stat().st_mtime_ns
    head_mtime = (out / "seed0" / "probe.safetensors").stat().st_mtime_ns
    assert run_cli(dataset, root, model, out, probe, "--resume") == 0
    assert (out / "cache" / "tokens.npy").stat().st_mtime_ns == tokens_mtime
    assert (out / "seed0" / "probe.safetensors").stat().st_mtime_ns == head_mtime
    after = json.loads((out / "results.json").read_text())
    assert after["value"] == before["value"]

    # an extraction cut short: half the units marked undone, the training stages forgotten
    done = np.load(out / "cache" / "done.npy")
    cached = np.load(out / "cache" / "tokens.npy")
    done[len(done) // 2 :] = False
    np.save(out / "cache" / "done.npy", done)
    state = json.loads((out / "state.json").read_text())
    for stage in list(state["stages"]):
        if stage != "read":
            del state["stages"][stage]
    (out / "state.json").write_text(json.dumps(state))
    assert run_cli(dataset, root, model, out, probe, "--resume") == 0
    assert np.load(out / "cache" / "done.npy").all()
    np.testing.assert_allclose(np.load(out / "cache" / "tokens.npy"), cached, atol=1e-3)
    assert json.loads((out / "results.json").read_text())["value"] == before["value"]


def check_dry_run(dataset: str, root: Path, model: Path, tmp_path: Path, capsys,
                  n_samples: dict[str, int]) -> dict:
    """--dry-run prints the plan and writes nothing."""
    out = tmp_path / "dry"
    assert main(["bench", dataset, "--root", str(root), "--model", str(model), "--out",
                 str(out), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert not out.exists()
    assert plan["samples"] == n_samples
    assert plan["forward_passes"] == plan["clips"] > 0
    assert plan["frames_decoded"] > 0 and plan["cache_bytes"] > 0
    assert main(["bench", dataset, "--root", str(root), "--model", str(model), "--out",
                 str(out), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "estimated forward passes" in text and not out.exists()
    return plan
