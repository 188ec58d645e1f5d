"""Whole-frame vs per-subject (animal-centred) features on the real fly courtship clip.

The clip (../shared/data/real/sleap_flies/clip.mp4: 1024x1024, 25 fps, 1500 frames, two flies
about 70 px long) comes with human-proofread SLEAP tracks (clip.slp, tracks "female" and
"male") and per-frame male wing-extension labels derived from that pose
(clip_heuristic_labels.csv, 27% of frames). Features of the bundled ``default`` encoder are
extracted twice into one store: whole frames (``--subjects`` off) and per subject from the
SLEAP tracks (crops of 2.5 body lengths, or ``--crop-size``). The same linear probe
(standardised features, logistic regression with balanced class weights) is scored by grouped
cross-validation over contiguous time blocks: whole frame, the male's crops, and the female's
crops as a control (her crops show the male only when he is close).

    .venv/bin/python benchmarks/subject_crops.py [--hop 16] [--blocks 5] [--align-heading]

Prints balanced accuracy and average precision per feature set, and the extraction time of
each pass on this machine.
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prism_science.extraction import ExtractOptions, WindowParams, run_extraction
from prism_science.store import open_store

REPO = Path(__file__).resolve().parents[1]


def _labels(path: Path, n_frames: int) -> np.ndarray:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    y = np.zeros(n_frames, np.int64)
    for row in rows:
        frame = int(row["frame"])
        if frame < n_frames:
            y[frame] = int(float(row["male_wing_extension"]))
    return y


def _score(X: np.ndarray, y: np.ndarray, blocks: int) -> tuple[float, float]:
    keep = np.isfinite(X).all(1)
    X, y = X[keep], y[keep]
    groups = np.arange(len(y)) * blocks // len(y)  # contiguous stretches of time
    predicted = np.zeros(len(y), np.int64)
    scores = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=blocks).split(X, y, groups):
        probe = make_pipeline(StandardScaler(), LogisticRegression(
            C=1.0, class_weight="balanced", max_iter=2000))
        probe.fit(X[train], y[train])
        predicted[test] = probe.predict(X[test])
        scores[test] = probe.predict_proba(X[test])[:, 1]
    return balanced_accuracy_score(y, predicted), average_precision_score(y, scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--hop", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--crop-size", type=int, default=None)
    parser.add_argument("--align-heading", action="store_true",
                        help="rotate the crops heading-up (SLEAP head-thorax heading)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--store", type=Path, default=None,
                        help="reuse/keep the store here (default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    folder = args.shared / "data" / "real" / "sleap_flies"
    video, tracks = folder / "clip.mp4", folder / "clip.slp"
    tmp = tempfile.TemporaryDirectory()
    store_path = args.store or Path(tmp.name) / "flies.zarr"
    params = WindowParams(hop=args.hop)
    base = ExtractOptions(model=args.model, params=params, progress=False)
    seconds = {}
    for name, options in (
        ("whole frame", base),
        ("per subject", ExtractOptions(model=args.model, params=params, progress=False,
                                       subjects=str(tracks), crop_size=args.crop_size,
                                       align_heading=args.align_heading)),
    ):
        t0 = time.perf_counter()
        report = run_extraction([video], store_path, options)
        seconds[name] = time.perf_counter() - t0
        if not report.ok:
            raise SystemExit(report.summary())
    with open_store(store_path, "r") as store:
        keys = store.feature_keys("clip.mp4")
        whole = next(k for k in keys if "@" not in k)
        sets = {"whole frame": store.read_features("clip.mp4", whole).values}
        crop_sizes = {}
        for subject in ("male", "female"):
            key = f"{whole}@{subject}"
            features = store.read_features("clip.mp4", key)
            sets[f"{subject} crops"] = features.values
            crop_sizes[subject] = features.provenance["crop"]["size"]
    n_frames = len(sets["whole frame"])
    y = _labels(folder / "clip_heuristic_labels.csv", n_frames)
    print(f"clip.mp4: {n_frames} frames, male wing extension on {y.mean():.0%}; model "
          f"{args.model} ({whole}), hop {args.hop}; crops {crop_sizes} px from clip.slp"
          f"{', heading-up' if args.align_heading else ''}; "
          f"{args.blocks}-fold CV over contiguous time blocks; chance balanced accuracy 0.50")
    print(f"{'features':<14} {'bal. acc.':>9} {'AP':>6}")
    for name, X in sets.items():
        bacc, ap = _score(X.reshape(len(X), -1), y, args.blocks)
        print(f"{name:<14} {bacc:9.3f} {ap:6.3f}")
    print(f"prevalence (AP of chance) {y.mean():.3f}")
    print(f"extraction: whole frame {seconds['whole frame']:.1f} s, both subjects "
          f"{seconds['per subject']:.1f} s ({seconds['per subject'] / 2:.1f} s per subject)")


if __name__ == "__main__":
    main()
