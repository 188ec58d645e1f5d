"""Pretraining ablation: frozen-feature linear probes on held-out synthetic videos.

Compares encoders of the same architecture: random initialisation, stage 1 only (the teacher
of stage 2), a stage-2 run and its ablation arms (each trained from the same stage-1 teacher
with the same budget, one switch changed). Three recipes (``--recipe``):

* ``motion`` (the bundled default's): the teacher is ``stage1_tiny`` continued on 4-frame clips
  with same-video batches (``stage1_video_tiny``); the arms run ``stage2_motion_tiny`` -- our
  frame-difference target added, token shuffling off -- and the same with token shuffling
  back on, and without global distillation. The full arm is the default run's stage 2; the
  frame-only stage 1 the teacher started from is a row of its own;
* ``video``: the same teacher; VideoPrism's stage 2 (``stage2_video_tiny``), without token
  shuffling, without global distillation;
* ``frames`` (the previous default's): the teacher is ``stage1_tiny`` (single frames) and the
  arms are VideoPrism's stage 2 on 16-frame clips (``stage2_tiny``) and its two ablations.

Probes (scikit-learn logistic regression on standardised features, 5-fold cross-validation
grouped by clip; the table gives the mean of the folds' mAP and their standard deviation) on
4 windows of each held-out clip the encoders never saw:

* appearance, per 16-frame window (mean of all tokens): which colours / sizes of animal are
  present, and whether a striped one is (11 binary tasks, mean average precision);
* motion, per frame: which of the 10 behaviors some animal is doing (10 binary tasks, mean
  average precision) -- rest and groom, walk and chase differ only in motion. Three readouts of
  the frame's tokens (``--motion-readouts``): ``mean`` (the headline), ``change`` (mean plus the
  mean over patches of each token's absolute change since the previous frame: motion energy in
  the encoder's feature space) and ``max`` (mean plus the max over patches, for what a small
  part of the frame holds).

A row without any encoder calibrates the probes: 16x16 pixels plus the absolute difference to
the previous frame (PCA to 64 dimensions), the same logistic regressions.

``eval --crops`` runs the same probes on animal-centred crops (:func:`load_crop_eval_set`), one
per animal, as ``extract --subjects`` sees them: a held-out folder of ``prism-science synth
--per-animal-crops`` (each clip's exact tracks in ``NAME.tracks.csv``), every animal of every
clip cut by :mod:`prism_science.extraction.subjects` (side 2.5 body lengths, resized to 128 px),
4 windows of 16 frames per (clip, animal). Appearance is then that animal's colour, size and
stripes (11 binary tasks, one-hot), motion its own behavior per frame; the cross-validation
keeps all animals of a clip in one fold. ``--encoders "label=folder,..."`` replaces the
recipe's rows by these weights folders (the pixel and random-init rows stay; random init then
has the first folder's architecture).

Usage::

    python benchmarks/pretrain_ablation.py train                 # the arms not yet trained
    python benchmarks/pretrain_ablation.py eval --threads 2      # prints the table
    python benchmarks/pretrain_ablation.py eval --recipe frames  # the previous default's
    prism-science synth --n-videos 40 --out runs/synth_crops_test --seed 4 --size 320 \
        --per-animal-crops
    python benchmarks/pretrain_ablation.py eval --crops --threads 2 --encoders \
        "stage 1=runs/crops/stage1_video/final,stage 2=runs/crops/stage2/final"

Features are cached per encoder (weights sha256) in runs/ablation/features/; crop features
under names with ``crops`` and a hash of the crops, so they never collide with whole clips'.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prism_science.errors import SynthError, TracksError
from prism_science.extraction.subjects import subject_crops
from prism_science.models import VideoEncoderConfig, build_model, load_model
from prism_science.tracks import read_tracks
from prism_science.video import open_video
from prism_science.video.index import natural_sort_key
from prism_training.config import apply_overrides, get_config
from prism_training.data import build_cache, list_videos

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs"
ABLATION = RUNS / "ablation"


@dataclass(frozen=True)
class Recipe:
    """A stage-1 teacher and the stage-2 config of its arms; each arm changes one switch of
    that config (overrides), keeps its budget, and has its run folder."""

    stage2_config: str
    teacher: Path
    arms: dict[str, list[str]]
    arm_dirs: dict[str, Path]


FRAME_TEACHER = RUNS / "default" / "stage1" / "final"
VIDEO_TEACHER = RUNS / "default" / "stage1_video" / "final"
PAPER_ARMS = {  # VideoPrism's stage 2 and its two ablations
    "stage2_full": [],
    "stage2_no_shuffle": ["token_shuffle=false"],
    "stage2_no_global": ["global_distill=false"],
}
RECIPES = {
    # The bundled default's: its full arm is the default run's stage 2.
    "motion": Recipe("stage2_motion_tiny", VIDEO_TEACHER, {
        "stage2_full": [],
        "stage2_with_shuffle": ["token_shuffle=true"],
        "stage2_no_global": ["global_distill=false"],
    }, {
        "stage2_full": RUNS / "default" / "stage2",
        "stage2_with_shuffle": ABLATION / "motion" / "stage2_with_shuffle",
        "stage2_no_global": ABLATION / "motion" / "stage2_no_global",
    }),
    "video": Recipe("stage2_video_tiny", VIDEO_TEACHER, PAPER_ARMS,
                    {arm: ABLATION / "video" / arm for arm in PAPER_ARMS}),
    # The previous default's.
    "frames": Recipe("stage2_tiny", FRAME_TEACHER, PAPER_ARMS,
                     {arm: ABLATION / "frames" / arm for arm in PAPER_ARMS}),
}
PIXELS = "pixels + frame difference, PCA 64 (no encoder)"
WINDOW = 16
WINDOWS_PER_CLIP = 4
FOLDS = 5
MOTION_READOUTS = ("mean", "change", "max")  # planes of :func:`features`, see the docstring
CROP_SIZE = 128  # crops are resized to the tiny encoders' input side
RANDOM_MODEL = "prism-lvt-tiny-p16-f16-r128"  # the architecture of the recipes' encoders

logger = logging.getLogger("pretrain_ablation")


def train_arms(recipe: Recipe, steps: int, teacher: Path, batch_size: int, threads: int,
               arms: list[str]) -> None:
    """Train each stage-2 arm for ``steps`` steps of ``batch_size`` clips (same budget)."""
    from prism_training import stage2

    for arm in arms:
        out = recipe.arm_dirs[arm]
        if (out / "final" / "config.json").is_file():
            logger.info("%s already trained", arm)
            continue
        cfg = apply_overrides(get_config(recipe.stage2_config), [
            f"out_dir={out}", f"teacher={teacher}", f"total_steps={steps}",
            f"batch_size={batch_size}", f"warmup_steps={max(1, steps // 10)}",
            f"threads={threads}", "ckpt_every=5", "log_every=1", *recipe.arms[arm]])
        t0 = time.time()
        stage2.main(cfg, resume=(out / "checkpoint.pt").is_file(), workdir=RUNS)
        logger.info("%s: %d steps in %.0f s", arm, steps, time.time() - t0)


def clip_labels(meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """Clip appearance targets (11,) and per-frame behavior targets (T, 10), both 0/1."""
    from prism_science.synth import BEHAVIORS, COLOURS, SIZES

    animals = meta["animals"]
    appearance = [any(a["colour"] == c for a in animals) for c in COLOURS]
    appearance += [any(a["size"] == s for a in animals) for s in SIZES]
    appearance.append(any(a["stripes"] for a in animals))
    per_animal = np.array([meta["frame_behaviors"][a["id"]] for a in animals])  # (A, T)
    frames = np.zeros((per_animal.shape[1], len(BEHAVIORS)), np.float32)
    for row in per_animal:
        frames[np.arange(len(row)), row] = 1.0
    return np.array(appearance, np.float32), frames


def labelled_clips(synth_dir: str | Path, size: int) -> list[tuple[np.ndarray, np.ndarray,
                                                                    np.ndarray]]:
    """Every clip of a synthetic dataset, decoded once into the cache at ``size`` px:
    (frames (n, S, S, 3) uint8 memory-mapped, appearance (11,), behaviors (n, 10))."""
    out = []
    for clip in build_cache(list_videos(synth_dir), RUNS / "cache", size):
        meta = json.loads(clip.entry.path.with_suffix(".json").read_text())
        out.append((clip.frames(), *clip_labels(meta)))
    return out


def load_eval_set(test_dir: Path, size: int, window: int = WINDOW) -> dict[str, np.ndarray]:
    """Windows of the held-out clips: frames (W, window, S, S, 3) uint8 and their labels."""
    frames, appearance, behaviors, groups = [], [], [], []
    for k, (data, app, beh) in enumerate(labelled_clips(test_dir, size)):
        for start in np.linspace(0, len(data) - window, WINDOWS_PER_CLIP).astype(int):
            frames.append(np.asarray(data[start : start + window]))
            appearance.append(app)
            behaviors.append(beh[start : start + window])
            groups.append(k)
    return {"frames": np.stack(frames), "appearance": np.stack(appearance),
            "behaviors": np.stack(behaviors), "groups": np.array(groups)}


def animal_labels(meta: dict, animal_id: str) -> tuple[np.ndarray, np.ndarray]:
    """One animal's appearance targets (11,) -- one-hot colour (7), one-hot size (3), striped
    (1) -- and its per-frame behavior targets (T, 10), one-hot; both 0/1 float32."""
    from prism_science.synth import BEHAVIORS, COLOURS, SIZES

    animal = next((a for a in meta["animals"] if a["id"] == animal_id), None)
    if animal is None or animal_id not in meta.get("frame_behaviors", {}):
        raise SynthError(f"{meta.get('name', 'clip')}.json: no animal {animal_id!r} with "
                         "frame_behaviors; regenerate the clip with prism-science synth "
                         "--overwrite")
    appearance = [animal["colour"] == c for c in COLOURS]
    appearance += [animal["size"] == s for s in SIZES]
    appearance.append(bool(animal["stripes"]))
    per_frame = np.asarray(meta["frame_behaviors"][animal_id])
    behaviors = np.zeros((len(per_frame), len(BEHAVIORS)), np.float32)
    behaviors[np.arange(len(per_frame)), per_frame] = 1.0
    return np.array(appearance, np.float32), behaviors


def load_crop_eval_set(test_dir: str | Path, size: int = CROP_SIZE, window: int = WINDOW,
                       windows_per_clip: int = WINDOWS_PER_CLIP) -> dict[str, np.ndarray]:
    """Animal-centred windows of held-out synthetic clips, one crop track per animal.

    Every animal of every clip is cropped as ``extract --subjects`` crops it:
    :func:`prism_science.extraction.subjects.subject_crops` on the clip's exact tracks (side
    2.5 body lengths, smoothed centre), then :meth:`SubjectCrop.transform` (``crop_frames``
    and the resize to ``size``) on the full-size decoded frames.

    Parameters
    ----------
    test_dir : str or Path
        A folder of ``prism-science synth --per-animal-crops``: ``NAME.mp4``, ``NAME.json``
        and ``NAME.tracks.csv`` per clip.
    size : int
        Side of the crops in pixels (the encoders' input).
    window : int
        Frames per window.
    windows_per_clip : int
        Windows per (clip, animal), evenly spaced over the clip.

    Returns
    -------
    dict of np.ndarray
        ``frames`` (W, window, size, size, 3) uint8; ``appearance`` (W, 11) and ``behaviors``
        (W, window, 10) float32 0/1 targets of the window's animal; ``groups`` (W,) int, the
        clip's index (the cross-validation groups); ``clips`` (W,) clip names, ``subjects``
        (W,) animal ids, ``starts`` (W,) first frames.

    Raises
    ------
    SynthError
        The folder holds no clip metadata, a clip has no tracks file or is shorter than
        ``window`` frames.
    TracksError
        A tracks file lacks one of the clip's animals, or belongs to another video.
    """
    test_dir = Path(test_dir)
    metas = sorted((p for p in test_dir.glob("*.json") if p.with_suffix(".mp4").is_file()),
                   key=lambda p: natural_sort_key(p.name))
    if not metas:
        raise SynthError(f"{test_dir} holds no synthetic clips (NAME.mp4 + NAME.json); write "
                         f"them with: prism-science synth --n-videos 40 --out {test_dir} "
                         "--seed 4 --size 320 --per-animal-crops")
    out: dict[str, list] = {k: [] for k in ("frames", "appearance", "behaviors", "groups",
                                            "clips", "subjects", "starts")}
    for k, meta_path in enumerate(metas):
        meta = json.loads(meta_path.read_text())
        stem = meta_path.name[: -len(".json")]
        tracks_path = meta_path.with_name(f"{stem}.tracks.csv")
        if not tracks_path.is_file():
            raise SynthError(f"{tracks_path} is missing: crops need each clip's tracks; write "
                             f"them with: prism-science synth --n-videos N --out {test_dir} "
                             "... --per-animal-crops (the same arguments; clips are kept)")
        tracks = read_tracks(tracks_path)
        # synth names each track's subject by the animal's json id (animal0, animal1, ...)
        ids = [a["id"] for a in meta["animals"]]
        missing = [i for i in ids if i not in tracks.subjects]
        if missing:
            raise TracksError(f"{tracks_path}: no track of animal(s) {missing} of "
                              f"{meta_path.name} (subjects {list(tracks.subjects)}); delete it "
                              "and rerun prism-science synth ... --per-animal-crops")
        video = meta_path.with_suffix(".mp4")
        with open_video(video, cache_size=0) as reader:
            info = reader.info
            if info.n_frames < window:
                raise SynthError(f"{video}: {info.n_frames} frames, fewer than a window of "
                                 f"{window}; generate longer clips (--seconds)")
            starts = np.linspace(0, info.n_frames - window, windows_per_clip).astype(int)
            wanted = np.unique(np.concatenate([np.arange(s, s + window) for s in starts]))
            decoded = reader.get_frames(wanted)  # full size: crops are cut before resizing
        crops = subject_crops(tracks, info.n_frames, (info.height, info.width), size,
                              subjects=ids, video=str(video))
        for crop in crops:
            appearance, behaviors = animal_labels(meta, crop.subject)
            if len(behaviors) < info.n_frames:
                raise SynthError(f"{meta_path}: frame_behaviors of {crop.subject} cover "
                                 f"{len(behaviors)} of the video's {info.n_frames} frames; "
                                 "regenerate the clip with prism-science synth --overwrite")
            for start in starts:
                rows = np.searchsorted(wanted, np.arange(start, start + window))
                out["frames"].append(crop.transform(int(start), decoded[rows]))
                out["appearance"].append(appearance)
                out["behaviors"].append(behaviors[start : start + window])
                out["groups"].append(k)
                out["clips"].append(stem)
                out["subjects"].append(crop.subject)
                out["starts"].append(int(start))
    logger.info("%d crop windows of %d animals in %d clips of %s", len(out["frames"]),
                len(set(zip(out["clips"], out["subjects"], strict=True))), len(metas), test_dir)
    return {key: np.stack(values) if key in ("frames", "appearance", "behaviors")
            else np.array(values) for key, values in out.items()}


@torch.no_grad()
def features(model: torch.nn.Module, frames: np.ndarray, batch: int = 4) -> np.ndarray:
    """Per-frame summaries of the token grid -> (W, T, 3, D) float32, in the order of
    :data:`MOTION_READOUTS`: the mean of the frame's tokens, the mean over patches of each
    token's absolute change since the previous frame (0 in a window's first frame), and the
    max over the frame's tokens."""
    out = []
    for i in range(0, len(frames), batch):
        video = torch.from_numpy(frames[i : i + batch]).float() / 255.0
        tokens = model(video)  # (b, T*n, D)
        grid = tokens.reshape(tokens.shape[0], video.shape[1], -1, tokens.shape[-1])
        change = (grid - torch.cat([grid[:, :1], grid[:, :-1]], 1)).abs().mean(2)
        out.append(torch.stack([grid.mean(2), change, grid.amax(2)], 2).numpy())
    return np.concatenate(out)


def pixel_features(frames: np.ndarray, dims: int = 64) -> np.ndarray:
    """No encoder: per frame, 16x16 RGB pixels plus the absolute grey-level difference to the
    previous frame (the motion cue), standardised and reduced by PCA to ``dims`` ->
    (W, T, 1, dims): one plane, the ``mean`` readout (the other readouts do not apply).

    The PCA is fitted on all windows (unsupervised; no label is seen).
    """
    import torch.nn.functional as F
    from sklearn.decomposition import PCA

    w, t = frames.shape[:2]
    video = torch.from_numpy(frames).float().flatten(0, 1).permute(0, 3, 1, 2) / 255.0
    small = F.adaptive_avg_pool2d(video, 16).reshape(w, t, 3, 256).numpy()  # (W, T, 3, 256)
    grey = small.mean(2)
    motion = np.abs(np.diff(grey, axis=1, prepend=grey[:, :1]))
    x = np.concatenate([small.reshape(w, t, -1), motion], -1).reshape(w * t, -1)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    dims = min(dims, *x.shape)  # a tiny test set has fewer samples than dims
    return PCA(dims, random_state=0).fit_transform(x).reshape(w, t, 1, dims).astype(np.float32)


def frames_digest(frames: np.ndarray) -> str:
    """Short sha256 of an eval set's frames, naming its feature caches (crop sets differ by
    folder, size and window, and must never be read as another set's features)."""
    digest = hashlib.sha256(str(frames.shape).encode())
    digest.update(np.ascontiguousarray(frames).data)
    return digest.hexdigest()[:12]


def encoder_features(label: str, source: str | None, frames: np.ndarray, *,
                     set_tag: str = "", cache_dir: Path | None = None,
                     random_model: str | VideoEncoderConfig = RANDOM_MODEL
                     ) -> np.ndarray | None:
    """Cached features of one encoder (``source``: weights folder, or None for random init).

    ``set_tag`` goes into the cache's name (the crop sets'; empty for whole clips);
    ``random_model`` is the architecture of random init (a registered name or a config), built
    with seed 0; ``cache_dir`` defaults to runs/ablation/features.
    """
    if source is None:
        torch.manual_seed(0)
        if isinstance(random_model, str):
            model = build_model(random_model, vocabulary_size=8) \
                if random_model == RANDOM_MODEL else build_model(random_model)
        else:
            model = build_model(random_model)
        key = "random" if random_model == RANDOM_MODEL else "random-" + hashlib.sha256(
            repr(random_model).encode()).hexdigest()[:8]
    else:
        folder = Path(source)
        if not (folder / "config.json").is_file():
            logger.warning("%s: no weights at %s, skipped", label, folder)
            return None
        model = load_model(folder)
        key = model.weights_sha256[:12]
    tag = f"-{set_tag}" if set_tag else ""
    cache = (cache_dir or ABLATION / "features") / f"{label}-{key}{tag}-{len(frames)}-readouts.npy"
    if cache.is_file():
        return np.load(cache)
    t0 = time.time()
    feats = features(model.eval(), frames)
    logger.info("%s: features of %d windows in %.0f s", label, len(frames), time.time() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, feats)
    return feats


def _fold_task_ap(x: np.ndarray, target: np.ndarray, train: np.ndarray,
                  test: np.ndarray) -> float | None:
    """AP on ``test`` of a logistic regression fit on ``train`` (None: no positives to score)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if target[train].min() == target[train].max() or target[test].max() == 0:
        return None
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=500))
    probe.fit(x[train], target[train])
    return float(average_precision_score(target[test], probe.predict_proba(x[test])[:, 1]))


def probe_map(x: np.ndarray, y: np.ndarray, groups: np.ndarray, folds: int = FOLDS,
              n_jobs: int = 1) -> tuple[float, float]:
    """Grouped-CV mean average precision over the binary tasks (columns of y).

    Returns the mean over folds of each fold's mAP (tasks with positives in the fold's train
    and test parts), and the standard deviation of the fold mAPs. The (fold, task) fits run
    in ``n_jobs`` processes.
    """
    from joblib import Parallel, delayed
    from sklearn.model_selection import GroupKFold

    splits = list(GroupKFold(folds).split(x, y, groups))
    jobs = [(f, k) for f in range(len(splits)) for k in range(y.shape[1])]
    aps = Parallel(n_jobs=n_jobs)(delayed(_fold_task_ap)(x, y[:, k], *splits[f])
                                  for f, k in jobs)
    fold_maps = []
    for f in range(len(splits)):
        scores = [ap for (g, _), ap in zip(jobs, aps, strict=True) if g == f and ap is not None]
        if scores:
            fold_maps.append(float(np.mean(scores)))
    return float(np.mean(fold_maps)), float(np.std(fold_maps))


def motion_inputs(feats: np.ndarray, readout: str) -> np.ndarray | None:
    """Per-frame probe inputs (W, T, F) of one motion readout (None: not in these features)."""
    plane = MOTION_READOUTS.index(readout)
    if plane >= feats.shape[2]:
        return None
    if plane == 0:
        return feats[:, :, 0]
    return np.concatenate([feats[:, :, 0], feats[:, :, plane]], -1)


def evaluate(test_dir: Path, encoders: dict[str, str | None], n_jobs: int = 1,
             readouts: tuple[str, ...] = MOTION_READOUTS, *, crops: bool = False,
             size: int = CROP_SIZE, window: int = WINDOW, folds: int = FOLDS,
             cache_dir: Path | None = None,
             random_model: str | VideoEncoderConfig = RANDOM_MODEL) -> list[dict[str, float]]:
    """The table's rows: chance, then each encoder's probe mAPs (and fold sds).

    Parameters
    ----------
    test_dir : Path
        Held-out synthetic clips (with tracks when ``crops``).
    encoders : dict
        Row label -> weights folder; None: random init, or the pixel baseline for
        :data:`PIXELS`.
    n_jobs : int
        Processes of the probe fits.
    readouts : tuple of str
        Motion readouts (columns), of :data:`MOTION_READOUTS`.
    crops : bool
        Animal-centred crops (:func:`load_crop_eval_set`) instead of whole clips.
    size : int
        Crop side of the crop set (whole clips are read at 128 px).
    window : int
        Frames per window.
    folds : int
        Cross-validation folds (at most the number of clips).
    cache_dir : Path, optional
        Feature cache (default runs/ablation/features).
    random_model : str or VideoEncoderConfig
        Architecture of the random-init row.

    Returns
    -------
    list of dict
        ``encoder``, ``appearance_mAP``/``_sd``, ``motion_<readout>_mAP``/``_sd``.
    """
    if crops:
        data = load_crop_eval_set(test_dir, size, window)
        set_tag = f"crops{size}x{window}-{frames_digest(data['frames'])}"
    else:
        data = load_eval_set(test_dir, 128, window)
        set_tag = "" if window == WINDOW else f"w{window}"  # the cache names of 16 frames
    groups = data["groups"]
    w, t = data["behaviors"].shape[:2]
    behaviors = data["behaviors"].reshape(w * t, -1)
    rows = []
    # Chance level: the positive rate of each task is the AP of a constant score.
    chance = float(np.mean([c.mean() for c in behaviors.T if 0 < c.mean() < 1]))
    rows.append({"encoder": "chance (positive rate)",
                 "appearance_mAP": float(np.mean([c.mean() for c in data["appearance"].T
                                                  if 0 < c.mean() < 1])),
                 **{f"motion_{r}_mAP": chance for r in readouts}})
    for label, source in encoders.items():
        if label == PIXELS:
            feats = pixel_features(data["frames"])
        else:
            feats = encoder_features(label, source, data["frames"], set_tag=set_tag,
                                     cache_dir=cache_dir, random_model=random_model)
        if feats is None:
            continue
        row: dict[str, float | str] = {"encoder": label}
        row["appearance_mAP"], row["appearance_sd"] = probe_map(
            feats[:, :, 0].mean(1), data["appearance"], groups, folds, n_jobs=n_jobs)
        for readout in readouts:
            x = motion_inputs(feats, readout)
            if x is not None:
                row[f"motion_{readout}_mAP"], row[f"motion_{readout}_sd"] = probe_map(
                    x.reshape(w * t, -1), behaviors, np.repeat(groups, t), folds, n_jobs=n_jobs)
        rows.append(row)
        logger.info("%s: %s", label, {k: round(v, 3) for k, v in row.items()
                                      if k.endswith("mAP")})
    return rows


def parse_encoders(text: str) -> dict[str, str]:
    """``"stage 1=runs/a/final,stage 2=runs/b/final"`` -> {label: folder}, in order.

    Raises
    ------
    ValueError
        An item without ``=``, an empty label or folder, a label given twice, or a label of
        the rows always present (:data:`PIXELS`, ``random init``).
    """
    encoders: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        label, sep, folder = (x.strip() for x in item.partition("="))
        if not (sep and label and folder):
            raise ValueError(f"--encoders item {item!r}: expected LABEL=FOLDER, e.g. "
                             "'stage 2=runs/crops/stage2/final'")
        if label in (PIXELS, "random init"):
            raise ValueError(f"--encoders: {label!r} is a row of its own (always present); "
                             "choose another label")
        if label in encoders:
            raise ValueError(f"--encoders: label {label!r} is used twice; give each row its "
                             "own label")
        encoders[label] = folder
    return encoders


def format_table(rows: list[dict], readouts: tuple[str, ...]) -> str:
    """The table as text: mAP (fold sd) per column; '-' where a readout does not apply."""
    columns = [("appearance", "appearance")] + [(f"motion_{r}", f"motion {r}") for r in readouts]
    lines = [f"{'encoder':48s}" + "".join(f"{title:>18s}" for _, title in columns)]
    for row in rows:
        cells = []
        for key, _ in columns:
            value = row.get(f"{key}_mAP")
            cells.append("-" if value is None else f"{value:.3f} ({row.get(f'{key}_sd', 0):.3f})")
        lines.append(f"{row['encoder']:48s}" + "".join(f"{c:>18s}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("train", "eval"))
    parser.add_argument("--recipe", choices=list(RECIPES), default="motion",
                        help="teacher and stage-2 config of the arms (see the docstring)")
    parser.add_argument("--steps", type=int,
                        help="stage-2 steps of every arm (default: the recipe config's)")
    parser.add_argument("--batch-size", type=int, help="default: the recipe config's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--arms", help="comma-separated arms to train (default: all of the "
                                       "recipe's; those already trained are kept)")
    parser.add_argument("--teacher", help="stage-1 weights the arms distil from, the 'stage 1 "
                                          "only' row (default: the recipe's)")
    parser.add_argument("--test-dir",
                        help="held-out synthetic clips (default runs/synth_test, of "
                             "prism-science synth --seed 2; with --crops runs/synth_crops_test, "
                             "of prism-science synth --seed 4 --size 320 --per-animal-crops)")
    parser.add_argument("--crops", action="store_true",
                        help="eval: probe animal-centred crops, one per animal (see the "
                             "docstring)")
    parser.add_argument("--crop-size", type=int, default=CROP_SIZE,
                        help=f"eval --crops: side of the crops in pixels (default {CROP_SIZE})")
    parser.add_argument("--window", type=int, default=WINDOW,
                        help=f"eval: frames per window (default {WINDOW})")
    parser.add_argument("--folds", type=int, default=FOLDS,
                        help=f"eval: cross-validation folds, grouped by clip (default {FOLDS})")
    parser.add_argument("--encoders", metavar="LABEL=FOLDER,...",
                        help="eval: these weights folders instead of the recipe's rows (the "
                             "pixel and random-init rows stay)")
    parser.add_argument("--motion-readouts", default=",".join(MOTION_READOUTS),
                        help="comma-separated per-frame readouts of the motion probe "
                             f"(default: all of {','.join(MOTION_READOUTS)})")
    parser.add_argument("--json", help="also write the table as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    teacher = Path(args.teacher) if args.teacher else recipe.teacher
    if args.command == "train":
        arms = args.arms.split(",") if args.arms else list(recipe.arms)
        unknown = sorted(set(arms) - set(recipe.arms))
        if unknown:
            parser.error(f"unknown arms {unknown}; choose from {list(recipe.arms)}")
        config = get_config(recipe.stage2_config)
        train_arms(recipe, args.steps or config.total_steps, teacher,
                   args.batch_size or config.batch_size, args.threads, arms)
        return 0
    encoders: dict[str, str | None] = {PIXELS: None, "random init": None}
    random_model: str | VideoEncoderConfig = RANDOM_MODEL
    if args.encoders:
        try:
            given = parse_encoders(args.encoders)
        except ValueError as exc:
            parser.error(str(exc))
        encoders.update(given)
        first = next((f for f in given.values() if (Path(f) / "config.json").is_file()), None)
        if first is not None:  # random weights of the same architecture
            random_model = load_model(first).config
    else:
        if teacher != FRAME_TEACHER:
            encoders["stage 1 on frames only (stage1_tiny)"] = str(FRAME_TEACHER)
        encoders["stage 1 only"] = str(teacher)
        encoders.update({arm.replace("_", " "): str(recipe.arm_dirs[arm] / "final")
                         for arm in recipe.arms})
    readouts = tuple(args.motion_readouts.split(","))
    unknown = sorted(set(readouts) - set(MOTION_READOUTS))
    if unknown:
        parser.error(f"unknown motion readouts {unknown}; choose from {list(MOTION_READOUTS)}")
    test_dir = Path(args.test_dir) if args.test_dir else \
        RUNS / ("synth_crops_test" if args.crops else "synth_test")
    rows = evaluate(test_dir, encoders, n_jobs=args.threads, readouts=readouts,
                    crops=args.crops, size=args.crop_size, window=args.window,
                    folds=args.folds, random_model=random_model)
    print(format_table(rows, readouts))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
