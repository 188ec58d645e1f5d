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

Usage::

    python benchmarks/pretrain_ablation.py train                 # the arms not yet trained
    python benchmarks/pretrain_ablation.py eval --threads 2      # prints the table
    python benchmarks/pretrain_ablation.py eval --recipe frames  # the previous default's

Features are cached per encoder (weights sha256) in runs/ablation/features/.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prism_science.models import build_model, load_model
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


def load_eval_set(test_dir: Path, size: int) -> dict[str, np.ndarray]:
    """Windows of the held-out clips: frames (W, 16, S, S, 3) uint8 and their labels."""
    frames, appearance, behaviors, groups = [], [], [], []
    for k, (data, app, beh) in enumerate(labelled_clips(test_dir, size)):
        for start in np.linspace(0, len(data) - WINDOW, WINDOWS_PER_CLIP).astype(int):
            frames.append(np.asarray(data[start : start + WINDOW]))
            appearance.append(app)
            behaviors.append(beh[start : start + WINDOW])
            groups.append(k)
    return {"frames": np.stack(frames), "appearance": np.stack(appearance),
            "behaviors": np.stack(behaviors), "groups": np.array(groups)}


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
    return PCA(dims, random_state=0).fit_transform(x).reshape(w, t, 1, dims).astype(np.float32)


def encoder_features(label: str, source: str | None, frames: np.ndarray) -> np.ndarray | None:
    """Cached features of one encoder (``source``: weights folder, or None for random init)."""
    if source is None:
        torch.manual_seed(0)
        model, key = build_model("prism-lvt-tiny-p16-f16-r128", vocabulary_size=8), "random"
    else:
        folder = Path(source)
        if not (folder / "config.json").is_file():
            logger.warning("%s: no weights at %s, skipped", label, folder)
            return None
        model = load_model(folder)
        key = model.weights_sha256[:12]
    cache = ABLATION / "features" / f"{label}-{key}-{len(frames)}-readouts.npy"
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
             readouts: tuple[str, ...] = MOTION_READOUTS) -> list[dict[str, float]]:
    data = load_eval_set(test_dir, 128)
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
            feats = encoder_features(label, source, data["frames"])
        if feats is None:
            continue
        row: dict[str, float | str] = {"encoder": label}
        row["appearance_mAP"], row["appearance_sd"] = probe_map(
            feats[:, :, 0].mean(1), data["appearance"], groups, n_jobs=n_jobs)
        for readout in readouts:
            x = motion_inputs(feats, readout)
            if x is not None:
                row[f"motion_{readout}_mAP"], row[f"motion_{readout}_sd"] = probe_map(
                    x.reshape(w * t, -1), behaviors, np.repeat(groups, t), n_jobs=n_jobs)
        rows.append(row)
        logger.info("%s: %s", label, {k: round(v, 3) for k, v in row.items()
                                      if k.endswith("mAP")})
    return rows


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
    parser.add_argument("--test-dir", default=str(RUNS / "synth_test"),
                        help="held-out synthetic clips (prism-science synth --seed 2)")
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
    if teacher != FRAME_TEACHER:
        encoders["stage 1 on frames only (stage1_tiny)"] = str(FRAME_TEACHER)
    encoders["stage 1 only"] = str(teacher)
    encoders.update({arm.replace("_", " "): str(recipe.arm_dirs[arm] / "final")
                     for arm in recipe.arms})
    readouts = tuple(args.motion_readouts.split(","))
    unknown = sorted(set(readouts) - set(MOTION_READOUTS))
    if unknown:
        parser.error(f"unknown motion readouts {unknown}; choose from {list(MOTION_READOUTS)}")
    rows = evaluate(Path(args.test_dir), encoders, n_jobs=args.threads, readouts=readouts)
    print(format_table(rows, readouts))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
