"""Scores -> the dataset's metric; results.json, report.md, scores.csv and checks.json.

The metric of a run comes from :mod:`prism_science.evaluation.metrics`; checks.json recomputes
it from the ``scores.csv`` read back from disk with another implementation (scikit-learn's
``average_precision_score`` / ``balanced_accuracy_score``, and a PASCAL VOC interpolated AP
written here from its definition), so that a wrong file or a wrong metric shows as a mismatch.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.bench.data import BenchData, sha256_file
from prism_science.bench.protocol import METRICS
from prism_science.evaluation.metrics import (
    average_precision,
    interpolated_average_precision,
    top1_macro_accuracy,
)

PAPER_MODEL = "VideoPrism-B (frozen), the paper's CV-for-Science table"


def clean(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars and arrays -> Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, obj: Any) -> None:
    """Indented JSON, NaN written as null."""
    path.write_text(json.dumps(clean(obj), indent=2) + "\n", encoding="utf-8")


def score(metric: str, targets: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray]:
    """(value, per-class (K,)) of ``metric`` on (N, K) targets in {0, 1} and scores.

    Per class: AP for the mAPs, recall of the argmax class for ``top1_macro``; NaN for a class
    without a positive test sample (left out of the mean).
    """
    if metric == "map":
        per_class = average_precision(targets, scores)
    elif metric == "ava_frame_map":
        per_class = interpolated_average_precision(targets, scores)
    else:
        truth = np.argmax(targets, 1)
        prediction = np.argmax(scores, 1)
        per_class = np.array([np.mean(prediction[truth == k] == k) if (truth == k).any()
                              else np.nan for k in range(targets.shape[1])])
        value = top1_macro_accuracy(targets, scores)
        return value, per_class
    value = float(np.nanmean(per_class)) if np.isfinite(per_class).any() else float("nan")
    return value, per_class


def write_scores_csv(path: Path, data: BenchData, subset: str, scores: np.ndarray) -> None:
    """One row per test sample: video, frame, subject, box, the truth and the score per class."""
    samples = data.samples[subset]
    header = ["video", "frame", "subject", "x1", "y1", "x2", "y2"]
    header += [f"true:{c}" for c in data.classes] + [f"score:{c}" for c in data.classes]
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for i in range(len(samples)):
            box = samples.boxes[i].tolist() if samples.boxes is not None else ["", "", "", ""]
            writer.writerow([samples.video_ids[i], int(samples.frames[i]), samples.subjects[i],
                             *box, *samples.targets[i].tolist(),
                             *(f"{v:.9g}" for v in scores[i].tolist())])


def _voc_ap(truth: np.ndarray, scores: np.ndarray) -> float:
    """PASCAL VOC 2010+ / AVA average precision of one class, from its definition."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable: ties in input order
    tp = fp = 0
    recalls, precisions = [0.0], [0.0]
    for i in order:
        tp, fp = tp + int(truth[i]), fp + int(not truth[i])
        recalls.append(tp / truth.sum())
        precisions.append(tp / (tp + fp))
    recalls.append(1.0)
    precisions.append(0.0)
    for i in range(len(precisions) - 2, -1, -1):
        precisions[i] = max(precisions[i], precisions[i + 1])
    return float(sum((recalls[i] - recalls[i - 1]) * precisions[i]
                     for i in range(1, len(recalls)) if recalls[i] != recalls[i - 1]))


def recompute_from_csv(path: Path, metric: str, classes: list[str]) -> float:
    """The metric from a scores.csv read back, with implementations other than the run's."""
    from sklearn.metrics import average_precision_score, balanced_accuracy_score

    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    truth = np.array([[int(r[f"true:{c}"]) for c in classes] for r in rows], np.int64)
    scores = np.array([[float(r[f"score:{c}"]) for c in classes] for r in rows], np.float64)
    if metric == "top1_macro":
        return float(balanced_accuracy_score(truth.argmax(1), scores.argmax(1)))
    values = []
    for k in range(len(classes)):
        if truth[:, k].sum() == 0:
            continue
        if metric == "map":
            values.append(average_precision_score(truth[:, k], scores[:, k]))
        else:
            values.append(_voc_ap(truth[:, k], scores[:, k]))
    return float(np.mean(values)) if values else float("nan")


def versions() -> dict[str, str]:
    """Versions of what the numbers depend on."""
    import av
    import sklearn
    import torch

    import prism_science

    return {"prism_science": prism_science.__version__, "torch": torch.__version__,
            "numpy": np.__version__, "scikit-learn": sklearn.__version__, "av": av.__version__,
            "python": platform.python_version()}


def file_hashes(paths: list[Path], root: Path) -> dict[str, str]:
    """sha256 of each file, keyed by its path relative to ``root`` when it is under it."""
    out = {}
    for path in paths:
        try:
            key = str(path.relative_to(root))
        except ValueError:
            key = str(path)
        out[key] = sha256_file(path)
    return out


def summarise(metric: str, per_seed: dict[int, float], per_class: dict[int, np.ndarray],
              classes: list[str], paper_value: float) -> dict[str, Any]:
    """Mean +- sd over seeds (sd with ddof=1; 0 for one seed), per class means, paper delta."""
    values = np.array(list(per_seed.values()), np.float64)
    mean = float(np.mean(values))
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    stacked = np.stack(list(per_class.values()))
    with warnings.catch_warnings():  # a class without test positives: NaN, no warning
        warnings.simplefilter("ignore", RuntimeWarning)
        class_mean = np.nanmean(stacked, axis=0)
    return {
        "metric": {"name": metric, "definition": METRICS[metric]},
        "value": {"mean": mean, "sd": sd, "percent": 100 * mean,
                  "per_seed": {str(s): v for s, v in per_seed.items()}},
        "per_class": {c: float(v) for c, v in zip(classes, class_mean, strict=True)},
        "paper": {"model": PAPER_MODEL, "value_percent": paper_value,
                  "delta_points": 100 * mean - paper_value},
    }


def write_report(path: Path, results: dict[str, Any]) -> None:
    """report.md: the figure, the paper's, per class, counts, timings, notes."""
    value, paper = results["value"], results["paper"]
    model = results["model"]
    lines = [
        f"# {results['dataset']} benchmark",
        "",
        f"Model `{model['name']}` (weights sha256 {model['weights_sha256']}), probe: the "
        f"paper's MAP pooler, seeds {list(value['per_seed'])}.",
        "",
        "| metric | this run (mean ± sd) | paper (VideoPrism-B) | delta |",
        "|---|---|---|---|",
        f"| {results['metric']['name']} | {value['percent']:.1f} ± {100 * value['sd']:.1f} | "
        f"{paper['value_percent']:.1f} | {paper['delta_points']:+.1f} |",
        "",
        f"Metric: {results['metric']['definition']}.",
        "",
        "| class | value | test positives |",
        "|---|---|---|",
    ]
    for name, v in results["per_class"].items():
        shown = "n/a" if v is None or not math.isfinite(v) else f"{100 * v:.1f}"
        lines.append(f"| {name} | {shown} | {results['counts']['test_positives'][name]} |")
    counts = results["counts"]
    lines += ["", "| subset | videos | samples |", "|---|---|---|"]
    lines += [f"| {s} | {counts['videos'][s]} | {counts['samples'][s]} |"
              for s in counts["samples"]]
    lines += ["", "| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in results["wall_time_s"].items()]
    if results.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in results["notes"]]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
