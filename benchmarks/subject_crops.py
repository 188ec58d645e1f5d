"""Whole-frame vs per-subject (animal-centred) features on the real fly courtship clip.

The clip (../shared/data/real/sleap_flies/clip.mp4: 1024x1024, 25 fps, 1500 frames, two flies
about 70 px long) comes with human-proofread SLEAP tracks (clip.slp, tracks "female" and
"male") and per-frame male wing-extension labels derived from that pose
(clip_heuristic_labels.csv, 27% of frames). Features of the bundled ``default`` encoder are
extracted twice into one store: whole frames (``--subjects`` off) and per subject from the
SLEAP tracks (crops of 2.5 body lengths, or ``--crop-size``). The same linear probe
(standardised features, logistic regression with balanced class weights) is scored by grouped
cross-validation over contiguous time blocks: whole frame, the male's crops, and the female's
crops as a control (her crops show the male only when he is close). The same probe on pixels
(16x16 grayscale + frame difference, PCA) of the whole frame and of the male's crops calibrates it.

    .venv/bin/python benchmarks/subject_crops.py [--hop 16] [--blocks 5] [--align-heading]
    .venv/bin/python benchmarks/subject_crops.py --models v2=default,v1=runs/v1,random

``--models`` compares encoders on the same features and probes: names or weights folders, and
``random`` (the default's architecture with random weights, seed 0). Prints balanced accuracy
and average precision per feature set, and the extraction time of each pass on this machine.

``--section openfield`` (or ``all``) adds the real open-field mouse video
(../shared/data/real/dlc_openfield/m3v1mp4.mp4: 640x480, 30 fps, 2330 frames, one mouse, no
labels). The mouse is tracked by the built-in tracker (``--subjects auto --n-animals 1``) and
per-frame labels are derived from that track (:func:`track_behaviour`: still / walking /
turning from smoothed speed and body-axis angular speed; frames matching none are left out).
The same probe is then scored on whole-frame pixels (16x16 grayscale + frame difference, PCA),
whole-frame default-encoder features, crop default-encoder features, crop pixels and (with
``--boxes``) RoI-pooled whole-frame tokens over the tracker's box, with a split by contiguous
time blocks. Labels derived from the track favour features that see motion.

    nice -n 10 .venv/bin/python benchmarks/subject_crops.py --section openfield --boxes
"""

from __future__ import annotations

import argparse
import csv
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, balanced_accuracy_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from prism_science.extraction import ExtractOptions, WindowParams, run_extraction
from prism_science.extraction.subjects import default_tracks_path, smooth_track, subject_crops
from prism_science.models import build_model, save_model
from prism_science.store import open_store
from prism_science.tracks import Tracks, read_tracks
from prism_science.video import open_video

REPO = Path(__file__).resolve().parents[1]
RANDOM_ARCHITECTURE = "prism-lvt-tiny-p16-f16-r128"  # the bundled default's


def _labels(path: Path, n_frames: int) -> np.ndarray:
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    y = np.zeros(n_frames, np.int64)
    for row in rows:
        frame = int(row["frame"])
        if frame < n_frames:
            y[frame] = int(float(row["male_wing_extension"]))
    return y


def _score(X: np.ndarray, y: np.ndarray, blocks: int,
           pca: int | None = None) -> tuple[float, float]:
    """Balanced accuracy and AP of the probe (PCA first when ``pca``) over time blocks."""
    keep = np.isfinite(X).all(1)
    X, y = X[keep], y[keep]
    groups = np.arange(len(y)) * blocks // len(y)  # contiguous stretches of time
    predicted = np.zeros(len(y), np.int64)
    scores = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=blocks).split(X, y, groups):
        steps = [StandardScaler()] + ([PCA(n_components=pca, random_state=0)] if pca else [])
        probe = make_pipeline(*steps, LogisticRegression(
            C=1.0, class_weight="balanced", max_iter=2000))
        probe.fit(X[train], y[train])
        predicted[test] = probe.predict(X[test])
        scores[test] = probe.predict_proba(X[test])[:, 1]
    return balanced_accuracy_score(y, predicted), average_precision_score(y, scores)


def fly_section(args: argparse.Namespace) -> None:
    """The fly clip: whole frame vs male / female crops from the proofread SLEAP tracks, for
    each model of ``--models``, against the same probe on pixels."""
    folder = args.shared / "data" / "real" / "sleap_flies"
    video, tracks_path = folder / "clip.mp4", folder / "clip.slp"
    tmp = tempfile.TemporaryDirectory()
    store_folder = args.store.parent if args.store else Path(tmp.name)
    params = WindowParams(hop=args.hop)
    seconds: dict[str, float] = {}
    sets: dict[str, np.ndarray] = {}
    crop_sizes: dict[str, int] = {}
    for label, model in _models(args, store_folder):
        store_path = store_folder / f"flies-{label}.zarr"
        for name, options in (
            ("whole frame", ExtractOptions(model=model, params=params, progress=False)),
            ("per subject", ExtractOptions(model=model, params=params, progress=False,
                                           subjects=str(tracks_path),
                                           crop_size=args.crop_size,
                                           align_heading=args.align_heading)),
        ):
            t0 = time.perf_counter()
            report = run_extraction([video], store_path, options)
            seconds[f"{label} {name}"] = time.perf_counter() - t0
            if not report.ok:
                raise SystemExit(report.summary())
        with open_store(store_path, "r") as store:
            keys = store.feature_keys("clip.mp4")
            whole = next(k for k in keys if "@" not in k)
            sets[f"{label}: whole frame"] = store.read_features("clip.mp4", whole).values
            for subject in ("male", "female"):
                features = store.read_features("clip.mp4", f"{whole}@{subject}")
                sets[f"{label}: {subject} crops"] = features.values
                crop_sizes[subject] = int(features.provenance["crop"]["size"])
    n_frames = len(next(iter(sets.values())))
    tracks = read_tracks(tracks_path)
    pixels = _pixel_features(video, tracks, crop_sizes["male"], subject="male")
    y = _labels(folder / "clip_heuristic_labels.csv", n_frames)
    print(f"clip.mp4: {n_frames} frames, male wing extension on {y.mean():.0%}; models "
          f"{', '.join(label for label, _ in _models(args, store_folder))}, hop {args.hop}; "
          f"crops {crop_sizes} px from clip.slp{', heading-up' if args.align_heading else ''}; "
          f"{args.blocks}-fold CV over contiguous time blocks; chance balanced accuracy 0.50")
    print(f"{'features':<34} {'bal. acc.':>9} {'AP':>6}")
    rows = [("pixels: whole frame", pixels["whole-frame pixels"], args.pca),
            ("pixels: male crops", pixels["crop pixels"], args.pca)]
    rows += [(name, X, None) for name, X in sets.items()]
    for name, X, pca in rows:
        bacc, ap = _score(X.reshape(len(X), -1), y, args.blocks, pca)
        print(f"{name:<34} {bacc:9.3f} {ap:6.3f}")
    print(f"prevalence (AP of chance) {y.mean():.3f}")
    print("extraction: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))


def _models(args: argparse.Namespace, folder: Path) -> list[tuple[str, str]]:
    """(label, model) of each ``--models`` entry: ``NAME`` or ``LABEL=FOLDER``, and ``random``:
    the default's architecture with random weights (seed 0), saved once under ``folder``."""
    out = []
    for entry in args.models.split(","):
        label, _, model = entry.partition("=")
        model = model or label
        if model == "random":
            target = folder / "random-weights"
            if not (target / "config.json").is_file():
                torch.manual_seed(0)
                save_model(build_model(RANDOM_ARCHITECTURE, vocabulary_size=8), target,
                           name="random-weights")
            model = str(target)
        out.append((label, model))
    return out


# ------------------------------------------------------------------------ open-field mouse
SMOOTH_FRAMES = 9  # 0.3 s at 30 fps: centroid, body axis and the two speeds are averaged
STILL_SPEED, STILL_TURN = 0.25, 20.0  # still: < 0.25 body lengths/s and < 20 deg/s
WALK_SPEED, WALK_TURN = 0.60, 60.0  # walking: > 0.60 body lengths/s and < 60 deg/s
TURN_SPEED, TURN_TURN = 0.45, 45.0  # turning: < 0.45 body lengths/s and > 45 deg/s
BEHAVIOURS = ("still", "walking", "turning")


def track_behaviour(tracks: Tracks, fps: float, subject: int = 0
                    ) -> tuple[np.ndarray, dict[str, float]]:
    """Per-frame still (0) / walking (1) / turning (2) labels of one subject from its track.

    Speed is the smoothed centroid's speed in body lengths per second (the tracker's median
    body length); turning is the angular speed of the body axis (the heading taken modulo 180
    degrees, so the tracker's head/tail flips do not count as turns), in degrees per second;
    both are averaged over ``SMOOTH_FRAMES``. Frames between the thresholds, and frames where
    the subject is absent, are -1 (left out): only clear cases are labelled.
    """
    centroids, _ = smooth_track(tracks.centroids[:, subject], None, window=SMOOTH_FRAMES)
    present = np.isfinite(centroids[:, 0])
    kernel = np.ones(SMOOTH_FRAMES) / SMOOTH_FRAMES
    body = float(tracks.median_body_length()[subject])
    filled = np.where(present[:, None], centroids, np.nanmean(centroids, axis=0))
    speed = np.hypot(*np.gradient(filled, axis=0).T) * fps / body
    heading = np.nan_to_num(tracks.heading[:, subject].astype(np.float64))
    axis = np.convolve(np.unwrap(2 * heading) / 2, kernel, mode="same")
    turn = np.degrees(np.abs(np.gradient(axis))) * fps
    speed, turn = np.convolve(speed, kernel, mode="same"), np.convolve(turn, kernel, mode="same")
    y = np.full(len(speed), -1, np.int64)
    y[(speed < STILL_SPEED) & (turn < STILL_TURN)] = 0
    y[(speed > WALK_SPEED) & (turn < WALK_TURN)] = 1
    y[(speed < TURN_SPEED) & (turn > TURN_TURN)] = 2
    y[~present] = -1
    return y, {"body_length_px": body, "median_speed": float(np.median(speed)),
               "median_turn": float(np.median(turn))}


def _gray16(frames: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 256) float32: 16x16 grayscale (PIL box filter)."""
    return np.stack([np.asarray(Image.fromarray(f).convert("L").resize(
        (16, 16), Image.BOX), np.float32).ravel() / 255.0 for f in frames])


def _pixel_features(video: Path, tracks: Tracks, crop_size: int,
                    subject: str | None = None) -> dict[str, np.ndarray]:
    """16x16 grayscale + frame difference of the whole frame and of the subject's crop.

    The crops are those the encoder saw (same smoothed centre and side), resized to 16 px.
    """
    with open_video(video) as reader:
        info = reader.info
        (crop,) = subject_crops(tracks, info.n_frames, (info.height, info.width), 16,
                                crop_size=crop_size,
                                subjects=[subject or tracks.subjects[0]])
        whole, crops = [], []
        for start, frames in reader.iter_chunks(64):
            whole.append(_gray16(frames))
            crops.append(_gray16(crop.transform(start, frames)))
    out = {}
    for name, gray in (("whole-frame pixels", np.concatenate(whole)),
                       ("crop pixels", np.concatenate(crops))):
        diff = np.diff(gray, axis=0, prepend=gray[:1])
        out[name] = np.concatenate([gray, diff], axis=1)
    return out


def _score_multiclass(X: np.ndarray, y: np.ndarray, blocks: int, pca: int | None
                      ) -> tuple[float, np.ndarray]:
    """Balanced accuracy of the probe over contiguous time blocks; per-class recall."""
    keep = (y >= 0) & np.isfinite(X).all(1)
    frames = np.flatnonzero(keep)
    X, y = X[keep], y[keep]
    groups = frames * blocks // (frames.max() + 1)  # blocks of the video's time, not of rows
    predicted = np.zeros(len(y), np.int64)
    for train, test in GroupKFold(n_splits=blocks).split(X, y, groups):
        steps = [StandardScaler()] + ([PCA(n_components=pca, random_state=0)] if pca else [])
        probe = make_pipeline(*steps, LogisticRegression(
            C=1.0, class_weight="balanced", max_iter=3000))
        probe.fit(X[train], y[train])
        predicted[test] = probe.predict(X[test])
    recall = np.array([(predicted[y == k] == k).mean() for k in range(len(BEHAVIOURS))])
    return balanced_accuracy_score(y, predicted), recall


def openfield_section(args: argparse.Namespace) -> None:
    """The open-field mouse: whole frame vs crop, pixels vs each model of ``--models``, on
    track-derived labels."""
    video = args.shared / "data" / "real" / "dlc_openfield" / "m3v1mp4.mp4"
    tmp = tempfile.TemporaryDirectory()
    folder = args.store.parent if args.store else Path(tmp.name)
    params = WindowParams(hop=args.hop)
    seconds: dict[str, float] = {}
    sets: dict[str, np.ndarray] = {}
    tracks_path: Path | None = None  # the built-in tracker runs once, for the first model
    for label, model in _models(args, folder):
        # Whole frames, crops of each size and RoI features in stores of their own: crops
        # and RoI features share the key <model>/mean@animal0.
        store_path = folder / f"openfield-{label}.zarr"
        crops_path = folder / f"openfield-{label}-crops{args.crop_size or ''}.zarr"
        subjects = str(tracks_path) if tracks_path else "auto"
        runs = [("whole frame", store_path, ExtractOptions(
                    model=model, params=params, progress=False)),
                ("crops", crops_path, ExtractOptions(
                    model=model, params=params, progress=False, subjects=subjects,
                    n_animals=1, crop_size=args.crop_size))]
        if args.boxes:
            runs.append(("RoI", folder / f"openfield-{label}-roi.zarr", None))
        for name, path, options in runs:
            if options is None:  # RoI: the tracker's boxes, known once the crops ran
                options = ExtractOptions(model=model, params=params, progress=False,
                                         subjects=str(tracks_path), boxes=True)
            t0 = time.perf_counter()
            report = run_extraction([video], path, options)
            seconds[f"{label} {name}"] = time.perf_counter() - t0
            if not report.ok:
                raise SystemExit(report.summary())
            if name == "crops" and tracks_path is None:
                tracks_path = default_tracks_path(crops_path, video.name)
        with open_store(store_path, "r") as store:
            whole = next(k for k in store.feature_keys(video.name) if "@" not in k)
            fps = store.video_info(video.name).fps
            sets[f"{label}: whole-frame encoder"] = store.read_features(video.name,
                                                                          whole).values
        with open_store(crops_path, "r") as store:
            crop_features = store.read_features(video.name, f"{whole}@animal0")
            sets[f"{label}: crop encoder"] = crop_features.values
            crop_size = int(crop_features.provenance["crop"]["size"])
        if args.boxes:
            with open_store(folder / f"openfield-{label}-roi.zarr", "r") as store:
                sets[f"{label}: RoI encoder (box)"] = store.read_features(
                    video.name, f"{whole}@animal0").values
    tracks = read_tracks(tracks_path)
    t0 = time.perf_counter()
    pixels = _pixel_features(video, tracks, crop_size)
    seconds["pixels (both)"] = time.perf_counter() - t0
    y, stats = track_behaviour(tracks, fps)
    counts = {b: int((y == k).sum()) for k, b in enumerate(BEHAVIOURS)}
    print(f"\n{video.name}: {len(y)} frames, tracked by the built-in tracker (body length "
          f"{stats['body_length_px']:.0f} px, crops {crop_size} px); labels from the track: "
          f"{counts}, {int((y < 0).sum())} frames left out; hop {args.hop}; {args.blocks}-fold "
          f"CV over contiguous time blocks; chance balanced accuracy {1 / len(BEHAVIOURS):.2f}")
    print(f"{'features':<34} {'dims':>5} {'bal. acc.':>9}  recall " + "/".join(BEHAVIOURS))
    rows = [("pixels: whole frame", pixels["whole-frame pixels"], args.pca),
            ("pixels: crop", pixels["crop pixels"], args.pca)]
    rows += [(name, X, None) for name, X in sets.items()]
    results = {}
    for name, X, pca in rows:
        X = X.reshape(len(X), -1)
        bacc, recall = _score_multiclass(X, y, args.blocks, pca)
        results[name] = bacc
        dims = f"{pca}pc" if pca else str(X.shape[1])
        print(f"{name:<34} {dims:>5} {bacc:9.3f}  " + " / ".join(f"{r:.2f}" for r in recall))
    base = results["pixels: whole frame"]
    for name, value in results.items():
        if name.endswith("crop encoder"):
            print(f"{name} / whole-frame pixels: {value / base:.2f}x")
    print("extraction: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--section", choices=("fly", "openfield", "all"), default="all")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared")
    parser.add_argument("--hop", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--crop-size", type=int, default=None)
    parser.add_argument("--align-heading", action="store_true",
                        help="rotate the crops heading-up (SLEAP head-thorax heading)")
    parser.add_argument("--models", default="default",
                        help="comma-separated models: a name, LABEL=FOLDER, or random (the "
                        "default's architecture with random weights); e.g. "
                        "v2=default,v1=runs/v1,random")
    parser.add_argument("--pca", type=int, default=64,
                        help="PCA components of the pixel features")
    parser.add_argument("--boxes", action="store_true",
                        help="open field: also RoI-pooled whole-frame tokens over the "
                        "tracker's box (extract --boxes)")
    parser.add_argument("--store", type=Path, default=None,
                        help="keep the stores beside this path, reused by a rerun "
                        "(default: a temporary folder)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.section in ("fly", "all"):
        fly_section(args)
    if args.section in ("openfield", "all"):
        openfield_section(args)


if __name__ == "__main__":
    main()
