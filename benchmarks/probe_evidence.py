"""Evidence for probes on frozen encoder features: per-behavior AP against two baselines.

Datasets
--------
``synthetic``
    Held-out synthetic videos (:mod:`prism_science.synth`, fixed seed): the probes train on the
    first clips and are scored on the others. Target: **multi-label over animals** -- a frame is
    positive for a behavior when any animal of the clip shows it (the merge of all subjects of
    ``NAME.labels.csv``), since per-frame features are not tied to one animal.
``fly``
    The real fly courtship clip (``sample_data/fly_courtship/clip.mp4``, 1500 frames) with the
    per-frame ``male_wing_extension`` column of ``clip_heuristic_labels.csv``. Blocked 2-fold
    split: 50-frame blocks, even blocks train and odd blocks test, then swapped; frames within
    ``guard`` frames of a block boundary are left unlabeled on both sides (encoder clips span
    16 frames, so a boundary frame's feature sees frames of the neighbouring block). AP is the
    mean over the two folds.

Rows
----
``encoder + <probe>`` for each probe kind (linear, mlp, attention on the pooled token grid,
temporal) on features of ``--model``; ``random encoder + <probe>``: the same architecture with
random weights (seeded, saved once under the cache folder); ``pixels + PCA + logreg``: no
encoder -- 16x16 grayscale frames plus the absolute difference to the previous frame (motion),
standardised, PCA to 64 dimensions, one balanced logistic regression per behavior.

Features are cached in ``runs/probe_evidence/<weights sha>/`` (a Zarr feature store per
dataset, resumed by :func:`prism_science.extraction.run_extraction`), so reruns are fast.

    .venv/bin/python benchmarks/probe_evidence.py --model default \
        --write-md docs/probes_evidence.md
    .venv/bin/python benchmarks/probe_evidence.py --model prism-tiny-p16-f16-r128 --quick
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch._dynamo  # noqa: F401 - LBFGS imports it on first use (s); keep that out of timings
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from prism_science.evaluation.metrics import average_precision
from prism_science.extraction import ExtractOptions, run_extraction
from prism_science.extraction.features import load_encoder
from prism_science.extraction.windows import WindowParams
from prism_science.labels import read_labels, to_frame_matrix
from prism_science.models import build_model
from prism_science.models.weights import save_model
from prism_science.probes import make_probe
from prism_science.store import open_store
from prism_science.synth import BEHAVIORS, SynthConfig, generate_dataset
from prism_science.video import content_hash, open_video

logger = logging.getLogger("probe_evidence")

REPO = Path(__file__).resolve().parents[1]
FLY_VIDEO = REPO / "sample_data" / "fly_courtship" / "clip.mp4"
FLY_LABELS = REPO / "sample_data" / "fly_courtship" / "clip_heuristic_labels.csv"
FLY_BEHAVIOR = "male_wing_extension"
PROBE_KINDS = ("linear", "mlp", "attention", "temporal")
PIXEL_SIZE = 16
PIXEL_PCA = 64
RANDOM_SEED = 1
_THREADS = 1  # torch and BLAS threads: on 2 busy shared cores one thread is fastest


@dataclass
class Dataset:
    """Per-frame labels of some videos and how their frames are split into folds.

    ``y`` is (N, K) int8 (-1 unlabeled / 0 / 1) over the frames of ``videos`` concatenated in
    order; ``segments`` (N,) int64 names contiguous runs of frames that train and predict as
    units (videos, or blocks of one video); each fold is (train mask, test mask) over the N rows.
    """

    name: str
    videos: list[Path]
    behaviors: list[str]
    y: np.ndarray
    segments: np.ndarray
    folds: list[tuple[np.ndarray, np.ndarray]]
    description: str


@dataclass
class Row:
    """One method's scores on one dataset: AP per behavior (K,), mAP, its standard deviation
    over training seeds (NaN for one seed) and fit + predict seconds per seed."""

    method: str
    ap: np.ndarray
    seconds: float
    map_sd: float = float("nan")

    @property
    def mean_ap(self) -> float:
        return _mean_finite(self.ap)


@dataclass
class Result:
    """Tables (dataset -> rows), the datasets, and (step, seconds) wall times."""

    model: str
    model_sha: str
    window: str = ""
    max_epochs: int | None = None
    seeds: list[int] = field(default_factory=list)
    datasets: dict[str, Dataset] = field(default_factory=dict)
    tables: dict[str, list[Row]] = field(default_factory=dict)
    timings: list[tuple[str, float]] = field(default_factory=list)


class _Timer:
    def __init__(self, result: Result, step: str) -> None:
        self.result, self.step = result, step

    def __enter__(self) -> _Timer:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        seconds = time.perf_counter() - self.t0
        self.result.timings.append((self.step, seconds))
        logger.info("%s: %.1f s", self.step, seconds)


# ----------------------------------------------------------------------------------- datasets
def synthetic_dataset(folder: Path, n_train: int, n_test: int, seed: int,
                      config: SynthConfig) -> Dataset:
    """Generate (or reuse) ``n_train + n_test`` clips; split train/test by clip."""
    videos = generate_dataset(folder, n_train + n_test, seed=seed, config=config)
    ys, segments = [], []
    for index, video in enumerate(videos):
        with open_video(video) as reader:
            n_frames = reader.info.n_frames
        labels = video.with_name(video.name[: -len(".mp4")] + ".labels.csv")
        table = read_labels(labels, n_frames=n_frames)
        ys.append(to_frame_matrix(table, BEHAVIORS, n_frames=n_frames))  # any animal
        segments.append(np.full(n_frames, index, np.int64))
    y, seg = np.concatenate(ys), np.concatenate(segments)
    train = seg < n_train
    return Dataset(
        name="synthetic", videos=videos, behaviors=list(BEHAVIORS), y=y, segments=seg,
        folds=[(train, ~train)],
        description=(f"{n_train} train + {n_test} held-out synthetic clips (seed {seed}, "
                     f"{config.size[0]}x{config.size[1]} px, {config.fps:g} fps, "
                     f"{config.seconds[0]:g}-{config.seconds[1]:g} s, {len(y)} frames); "
                     "multi-label: a behavior is present in a frame when any animal shows it"),
    )


def fly_dataset(video: Path, labels: Path, block: int = 50, guard: int = 8) -> Dataset:
    """The fly clip's wing-extension flag; blocked 2-fold split with guard bands."""
    table = np.genfromtxt(labels, delimiter=",", names=True)
    flag = np.asarray(table[FLY_BEHAVIOR], np.int8)
    with open_video(video) as reader:
        n_frames = reader.info.n_frames
    if len(flag) != n_frames:
        raise ValueError(f"{labels}: {len(flag)} label rows but {video} has {n_frames} frames; "
                         "the labels must have one row per frame")
    frames = np.arange(n_frames)
    blocks = frames // block
    offset = frames % block
    near_edge = (offset < guard) | (offset >= block - guard)
    y = flag[:, None].copy()
    y[near_edge] = -1  # guard band: neither trained on nor scored
    even = blocks % 2 == 0
    return Dataset(
        name="fly", videos=[video], behaviors=[FLY_BEHAVIOR], y=y, segments=blocks.astype(np.int64),
        folds=[(even, ~even), (~even, even)],
        description=(f"{video.name}, {n_frames} frames, `{FLY_BEHAVIOR}` ({int(flag.sum())} "
                     f"positive frames); blocked 2-fold: {block}-frame blocks, even blocks train / "
                     f"odd blocks test and swapped, {guard} frames each side of every block "
                     "boundary unlabeled; AP averaged over the 2 folds"),
    )


# ----------------------------------------------------------------------------------- features
def pixel_features(video: Path, cache: Path) -> np.ndarray:
    """(T, 2*16*16) float32: 16x16 grayscale in [0, 1] and |difference to previous frame|."""
    key = content_hash(video).split(":")[-1][:16]
    path = cache / f"pixels{PIXEL_SIZE}_{video.stem}_{key}.npy"
    if path.is_file():
        return np.load(path, allow_pickle=False)
    chunks = []
    with open_video(video) as reader:
        for _, frames in reader.iter_chunks(64, size=(PIXEL_SIZE, PIXEL_SIZE)):
            chunks.append(frames.astype(np.float32).mean(-1).reshape(len(frames), -1) / 255.0)
    gray = np.concatenate(chunks)
    motion = np.abs(np.diff(gray, axis=0, prepend=gray[:1]))
    out = np.concatenate([gray, motion], axis=1).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def random_encoder_dir(reference: torch.nn.Module, cache: Path) -> Path:
    """A weights folder with the architecture of ``reference`` and seeded random weights."""
    config = json.dumps(reference.config.to_dict(), sort_keys=True, default=str)
    digest = hashlib.sha256(config.encode()).hexdigest()[:8]  # same name, new config: new folder
    folder = cache / f"random-{reference.name}-{digest}-seed{RANDOM_SEED}"
    if not (folder / "model.safetensors").is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model = build_model(reference.config, name=f"{reference.name}-random")
        save_model(model, folder)
    return folder


def encoder_features(model: str, sha: str, dataset: Dataset, cache: Path,
                     params: WindowParams) -> tuple[list[np.ndarray], float | None]:
    """Per-video token-grid features (T, g, g, D) of ``model`` (weights ``sha``), extracted
    once into the store ``cache/<sha>/<dataset>.zarr`` and read back from it; and the seconds
    that extraction took when the features were reused from an earlier run (else None)."""
    short = sha.removeprefix("random-init-")[:12]
    store_path = cache / short / f"{dataset.name}.zarr"
    record = store_path.with_name(f"{dataset.name}.{params.token_key}.seconds.json")
    options = ExtractOptions(model=model, params=params, device="cpu", progress=False)
    report = run_extraction(dataset.videos, store_path, options)
    if not report.ok:
        raise RuntimeError(report.summary())
    earlier = None
    if report.extracted:
        record.write_text(json.dumps({"seconds": report.seconds, "frames": report.frames}))
    elif record.is_file():
        earlier = float(json.loads(record.read_text())["seconds"])
    out = []
    with open_store(store_path, "r") as store:
        by_source = {Path(store.video_info(v).source_path).resolve(): v for v in store.video_ids()}
        for video in dataset.videos:
            out.append(store.read_features(by_source[video.resolve()], report.key).values)
    return out, earlier


# ----------------------------------------------------------------------------------- methods
def _probe_inputs(kind: str, features: np.ndarray) -> np.ndarray:
    """Attention probes get the token grid; the others its mean over tokens."""
    if kind == "attention" or features.ndim == 2:
        return features
    return features.reshape(len(features), -1, features.shape[-1]).mean(1)


def probe_method(kind: str, max_epochs: int | None, seed: int = 0) -> Callable[..., np.ndarray]:
    """A fit-and-score function for one probe kind (balanced classes, ``random_state=seed``)."""
    params: dict = {"class_weight": "balanced", "random_state": seed}
    if max_epochs is not None:
        params["max_epochs"] = max_epochs

    def fit_score(X_train, y_train, g_train, X_test, g_test):
        probe = make_probe(kind, **params)
        probe.fit(_probe_inputs(kind, X_train), y_train, groups=g_train)
        return probe.predict_proba(_probe_inputs(kind, X_test), groups=g_test)

    return fit_score


def pixel_method(X_train, y_train, g_train, X_test, g_test) -> np.ndarray:
    """Standardise, PCA, one balanced logistic regression per behavior (unlabeled rows out)."""
    scores = np.zeros((len(X_test), y_train.shape[1]), np.float32)
    for k in range(y_train.shape[1]):
        with threadpool_limits(_THREADS):  # BLAS threads spin badly on a loaded machine
            scores[:, k] = _pixel_logreg(X_train, y_train[:, k], X_test, k)
    return scores


def _pixel_logreg(X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
                  k: int) -> np.ndarray:
    """(N_test,) probability of behavior ``k``; zeros when training has one class only."""
    rows = y_train >= 0
    target = y_train[rows]
    if len(np.unique(target)) < 2:
        logger.warning("pixels: behavior %d has one class in training; scores 0", k)
        return np.zeros(len(X_test), np.float32)
    n_components = min(PIXEL_PCA, int(rows.sum()) - 1, X_train.shape[1])
    model = make_pipeline(StandardScaler(), PCA(n_components, random_state=0),
                          LogisticRegression(class_weight="balanced", max_iter=2000))
    model.fit(X_train[rows], target)
    return model.predict_proba(X_test)[:, 1]


def evaluate(dataset: Dataset, features: list[np.ndarray],
             methods: Sequence[Callable[..., np.ndarray]], name: str) -> Row:
    """Fit on each fold's train rows and score its test rows, once per method (seed).

    AP per behavior is averaged over folds, then over seeds; ``map_sd`` is the standard
    deviation over seeds of the per-seed mAP; ``seconds`` the mean fit + predict time of a seed.
    """
    X = np.concatenate(features)
    if len(X) != len(dataset.y):
        raise ValueError(f"{dataset.name}: {len(X)} feature rows but {len(dataset.y)} label rows")
    t0 = time.perf_counter()
    per_seed = []
    for method in methods:
        aps = []
        for train, test in dataset.folds:
            y_train = dataset.y[train]
            scores = method(X[train], y_train, dataset.segments[train], X[test],
                            dataset.segments[test])
            ap = average_precision(dataset.y[test], scores)
            ap[~(y_train == 1).any(0)] = np.nan  # nothing to learn from: not a measure of it
            aps.append(ap)
        per_seed.append(_nanmean(np.stack(aps)))
    seconds = (time.perf_counter() - t0) / len(methods)
    seed_maps = [_mean_finite(ap) for ap in per_seed]
    sd = float(np.nanstd(seed_maps)) if len(methods) > 1 else float("nan")
    row = Row(name, _nanmean(np.stack(per_seed)), seconds, sd)
    logger.info("%s / %s: mAP %.3f (%.1f s)", dataset.name, name, row.mean_ap, seconds)
    return row


def _nanmean(values: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN where a column is all NaN (no warning)."""
    with warnings.catch_warnings():  # "mean of empty slice" for behaviors absent everywhere
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=0)


def _mean_finite(ap: np.ndarray) -> float:
    """mAP: the mean of the defined APs, NaN when none is."""
    return float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")


def chance_row(dataset: Dataset) -> Row:
    """AP of uninformative scores: each behavior's positive fraction among labeled test frames
    (averaged over folds like the methods; ``-`` where a method's AP is undefined)."""
    rates = []
    for train, test in dataset.folds:
        y = dataset.y[test]
        labeled = (y >= 0).sum(0)
        positives = (y == 1).sum(0)
        rate = np.where((positives > 0) & (dataset.y[train] == 1).any(0),
                        positives / np.maximum(labeled, 1), np.nan)
        rates.append(rate)
    return Row("chance (test prevalence)", _nanmean(np.stack(rates)), 0.0)


# ----------------------------------------------------------------------------------- driver
def run_benchmark(
    model: str,
    cache: Path,
    *,
    quick: bool = False,
    n_train: int = 12,
    n_test: int = 6,
    synth_seed: int = 2024,
    synth_config: SynthConfig | None = None,
    fly: bool = True,
    probe_kinds: Sequence[str] = PROBE_KINDS,
    params: WindowParams | None = None,
    max_epochs: int | None = None,
    seeds: Sequence[int] | None = None,
) -> Result:
    """Run every method on every dataset and return the tables and step timings.

    Parameters
    ----------
    model : str
        Encoder name or weights folder (``"default"``, a registered name, a path).
    cache : Path
        Folder for the synthetic clips, the pixel features and the feature stores.
    quick : bool
        Probes train for at most 10 epochs (unless ``max_epochs`` says otherwise).
    n_train, n_test, synth_seed, synth_config
        The synthetic dataset (default :class:`SynthConfig`: 192x192, 15 fps, 8-12 s clips).
    fly : bool
        Include the real fly clip.
    probe_kinds : sequence of str
        Probe kinds of the encoder rows.
    params : WindowParams, optional
        Feature extraction windows; default sliding windows (hop 8) pooled to a 4x4 token grid.
    max_epochs : int, optional
        Probe training epochs cap; default the probes' own (10 with ``quick``).
    seeds : sequence of int, optional
        Probe ``random_state`` values; each probe row averages them (default 0, 1, 2; 0 with
        ``quick``).

    Returns
    -------
    Result
        ``tables[dataset]``: rows ``chance (test prevalence)``, ``encoder + <kind>``, ``random
        encoder + <kind>``, ``pixels + PCA + logreg``, each with (K,) AP (NaN where undefined)
        and seconds.
    """
    if max_epochs is None and quick:
        max_epochs = 10
    seeds = list(seeds if seeds is not None else ((0,) if quick else (0, 1, 2)))
    reference = load_encoder(model)
    # hop 8 for 16-frame clips; never past the clip span of short test models
    params = params or WindowParams(tokens="grid", grid=4,
                                    hop=max(1, min(8, int(reference.num_frames) // 2)))
    grid = f"{params.grid}x{params.grid} grid" if params.tokens == "grid" else params.tokens
    window = (f"{params.mode} {reference.num_frames}-frame windows at {reference.image_size} px"
              + (f", hop {params.hop}" if params.mode == "sliding" else "")
              + (f", stride {params.stride}" if params.stride > 1 else "")
              + f", tokens pooled to a {grid}")
    result = Result(model=model, model_sha=str(reference.weights_sha256), window=window,
                    max_epochs=max_epochs, seeds=seeds)
    with _Timer(result, "synthetic clips (generate or reuse)"):
        datasets = [synthetic_dataset(cache / "synth", n_train, n_test, synth_seed,
                                      synth_config or SynthConfig())]
    if fly:
        datasets.append(fly_dataset(FLY_VIDEO, FLY_LABELS))
    with _Timer(result, "random-weight encoder (build or reuse)"):
        random_dir = random_encoder_dir(reference, cache)
        random_sha = str(load_encoder(str(random_dir)).weights_sha256)
    encoders = (("encoder", model, result.model_sha), ("random encoder", str(random_dir),
                                                       random_sha))
    for dataset in datasets:
        result.datasets[dataset.name] = dataset
        rows = result.tables.setdefault(dataset.name, [chance_row(dataset)])
        for label, encoder, sha in encoders:
            step = f"{dataset.name}: {label} features (extract or reuse)"
            with _Timer(result, step):
                features, earlier = encoder_features(encoder, sha, dataset, cache, params)
            if earlier is not None:
                result.timings[-1] = (f"{step}: reused; extracting took {earlier:.0f} s",
                                      result.timings[-1][1])
            for kind in probe_kinds:
                with _Timer(result, f"{dataset.name}: {label} + {kind} probe (fit + predict)"):
                    methods = [probe_method(kind, max_epochs, seed) for seed in seeds]
                    rows.append(evaluate(dataset, features, methods, f"{label} + {kind}"))
        with _Timer(result, f"{dataset.name}: pixel features"):
            pixels = [pixel_features(v, cache / "pixels") for v in dataset.videos]
        with _Timer(result, f"{dataset.name}: pixels + PCA + logreg (fit + predict)"):
            rows.append(evaluate(dataset, pixels, [pixel_method], "pixels + PCA + logreg"))
    return result


def _fmt(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3f}"


def format_table(dataset: Dataset, rows: list[Row]) -> str:
    """A Markdown table: one row per method, AP per behavior, mAP, its sd over probe seeds,
    fit + predict seconds (per seed)."""
    header = ["method", *dataset.behaviors, "mAP", "sd", "fit+predict s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.method, *(_fmt(a) for a in row.ap), f"**{_fmt(row.mean_ap)}**",
                 _fmt(row.map_sd), f"{row.seconds:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(rows: list[Row]) -> str:
    """The best row of each family and the ratios of their mAPs (the headline figures)."""
    def best(prefix: str) -> Row | None:
        family = [r for r in rows if r.method.startswith(prefix) and np.isfinite(r.mean_ap)]
        return max(family, key=lambda r: r.mean_ap) if family else None

    encoder, random, pixels = best("encoder + "), best("random encoder + "), best("pixels")
    chance = next((r for r in rows if r.method.startswith("chance")), None)
    if encoder is None:
        return "No encoder row has a defined mAP."
    text = f"Best encoder probe: {encoder.method} (mAP {_fmt(encoder.mean_ap)})"
    for label, other in (("best random-weight probe", random), ("pixel baseline", pixels),
                         ("chance", chance)):
        if other is not None and np.isfinite(other.mean_ap) and other.mean_ap > 0:
            text += (f"; {label} {_fmt(other.mean_ap)} (ratio "
                     f"{encoder.mean_ap / other.mean_ap:.2f}x)")
    return text + "."


def format_result(result: Result, command: str) -> str:
    """The whole report as Markdown (what --write-md writes)."""
    sha = result.model_sha.removeprefix("random-init-")[:12]
    random_note = (" This model itself has no trained weights (a seeded random initialisation), "
                   "so its rows are a second random-weight control."
                   if result.model_sha.startswith("random-init-") else "")
    epochs = f", at most {result.max_epochs} epochs" if result.max_epochs else ""
    seeds = ", ".join(str(x) for x in result.seeds)
    parts = [
        "# Probe evidence: frozen encoder features vs. baselines",
        "",
        "Generated by `benchmarks/probe_evidence.py`; do not edit by hand, rerun:",
        "",
        f"```bash\n{command}\n```",
        "",
        f"Encoder: `{result.model}` (weights sha256 `{sha}`).{random_note} Rows: each probe kind "
        f"(`prism_science.probes`, `class_weight='balanced'`, `random_state` in {seeds}, "
        f"defaults otherwise{epochs}) on the encoder's per-frame features ({result.window}: the "
        "attention probe attends over the grid tokens, the others get their mean); the same "
        "probes on the same architecture with random weights "
        f"(seed {RANDOM_SEED}); and a baseline without encoder: 16x16 grayscale pixels plus the "
        "absolute difference to the previous frame, standardised, PCA to 64 dimensions, one "
        "balanced logistic regression per behavior. AP = average precision over labeled test "
        "frames (`prism_science.evaluation.metrics.average_precision`); `-` = no positive in the "
        "test or "
        "training frames; mAP = mean over the other behaviors. Probe rows average their APs over "
        "the seeds; `sd` is the standard deviation of mAP over the seeds. The chance row is the "
        "AP of uninformative scores (the test prevalence of each behavior).",
        "",
    ]
    for name, rows in result.tables.items():
        dataset = result.datasets[name]
        parts += [f"## {name}", "", dataset.description + ".", "", format_table(dataset, rows),
                  "", summarize(rows), ""]
    parts += [
        "## Caveats", "",
        "- A few thousand frames and one dataset split: differences of a few AP points between "
        "rows are within noise (compare with `sd`, which covers probe seeds only).",
        "- Fly clip: every positive frame lies in one episode at the end of the clip (frames "
        "1045-1491), so a method can score well by recognising that episode's appearance "
        "(where the flies are, how they are posed) rather than the wing itself. The blocked "
        "split tests generalisation to unseen 50-frame blocks of the same clip, not to other "
        "flies or clips.",
        "- Synthetic clips: behaviors differ only in motion, and the multi-label target merges "
        "all animals of a clip; rare behaviors (attack, defend) have few positive frames.",
        "",
    ]
    parts += ["## Wall time of each step", "", "| step | seconds |", "|---|---|"]
    parts += [f"| {step} | {seconds:.1f} |" for step, seconds in result.timings]
    parts += ["", f"Total: {sum(s for _, s in result.timings):.0f} s on this machine (2 shared "
              "CPU cores; features cached in `runs/probe_evidence/`, so a rerun skips extraction).",
              ""]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default",
                        help="encoder: 'default', a registered name or a weights folder")
    parser.add_argument("--quick", action="store_true",
                        help="4 + 2 synthetic clips, no fly clip, probes trained 10 epochs")
    parser.add_argument("--cache", type=Path, default=REPO / "runs" / "probe_evidence")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--no-fly", action="store_true", help="skip the real fly clip")
    parser.add_argument("--write-md", type=Path, default=None,
                        help="write the report (Markdown) to this file")
    args = parser.parse_args(argv)
    torch.set_num_threads(_THREADS)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("prism_science").setLevel(logging.ERROR)  # random-init notices, per load
    # behaviors absent from a training split: their AP is reported as "-" (see the report)
    warnings.filterwarnings("ignore", message="behaviors .* have no positive")
    n_train = args.n_train or (4 if args.quick else 12)
    n_test = args.n_test or (2 if args.quick else 6)
    result = run_benchmark(args.model, args.cache, quick=args.quick, n_train=n_train,
                           n_test=n_test, fly=not (args.quick or args.no_fly))
    command = "python benchmarks/probe_evidence.py " + " ".join(
        [f"--model {args.model}"] + (["--quick"] if args.quick else [])
        + ([f"--n-train {n_train}", f"--n-test {n_test}"]
           if (args.n_train or args.n_test) else [])
        + (["--no-fly"] if args.no_fly else [])
        + ([f"--write-md {args.write_md}"] if args.write_md else []))
    report = format_result(result, command)
    print(report)
    if args.write_md:
        args.write_md.write_text(report)
        print(f"wrote {args.write_md}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
