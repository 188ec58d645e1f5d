"""The main job, end to end: ``prism-science demo`` (what ``make demo`` runs).

On the sample data with the bundled default encoder it

1. generates a few synthetic behavior videos (:mod:`prism_science.synth`) beside the real fly
   courtship clip of ``sample_data/``;
2. extracts per-frame features of all of them into one store (:mod:`prism_science.extraction`);
3. saves labels the way a user would have made them: on the fly clip only alternate blocks of
   frames are labeled (partial labeling; the other blocks are held out), and the synthetic videos
   are split by video into labeled and held-out ones;
4. trains a probe per dataset on the labeled part, predicts every frame, and evaluates on the
   held-out part, writing a report (JSON, Markdown, HTML, precision-recall curves, ethograms);
5. returns a summary the CLI prints as a table.

Every step reuses the library's public functions; nothing here is demo-only logic except the
choice of splits.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prism_science.errors import PrismError

logger = logging.getLogger(__name__)

FLY_BEHAVIOR = "wing_extension"
"""The fly clip's behavior: male wing extension (courtship song), from human-proofread pose."""

FLY_LABEL_COLUMN = "male_wing_extension"


def default_sample_dir() -> Path:
    """``sample_data/`` of the repository checkout this package runs from."""
    return Path(__file__).resolve().parents[1] / "sample_data"


@dataclass(frozen=True)
class DemoOptions:
    """Options of :func:`run_demo` (the flags of ``prism-science demo``).

    Attributes
    ----------
    out : Path
        Output folder: ``store.zarr``, ``synth/``, ``probes/``, ``reports/``.
    model : str
        Encoder name or weights folder (``"default"``: the bundled encoder).
    sample_dir : Path or None
        Folder holding ``fly_courtship/``; None: the checkout's ``sample_data/``.
    n_synthetic : int
        Synthetic videos to generate (0 skips the synthetic part); the last third is held out.
    probe : str
        Probe kind: ``linear``, ``mlp``, ``attention`` or ``temporal``.
    block_frames : int
        Size of the alternating labeled / held-out blocks on the fly clip.
    hop : int
        Frames between the starts of consecutive clips (at most the model's clip length).
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    seed : int
        Seed of the synthetic videos and of probe training.
    """

    out: Path = Path("demo_output")
    model: str = "default"
    sample_dir: Path | None = None
    n_synthetic: int = 9
    probe: str = "temporal"
    block_frames: int = 100
    hop: int = 8
    device: str = "auto"
    seed: int = 0


@dataclass
class DemoResult:
    """What the demo measured, per dataset, and where it wrote it (``validation``: what each
    probe's training held out, see :attr:`prism_science.pipeline.TrainResult.validation`)."""

    store: Path
    rows: list[dict] = field(default_factory=list)
    reports: dict[str, Path] = field(default_factory=dict)
    ethograms: list[Path] = field(default_factory=list)
    summaries: dict[str, dict] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    validation: dict[str, str] = field(default_factory=dict)

    def table(self) -> str:
        """The summary as a fixed-width text table."""
        header = (f"{'dataset':<10} {'behavior':<15} {'held-out':>8} {'positive':>8} "
                  f"{'AP':>6} {'F1':>6} {'bout F1':>8}")
        lines = [header, "-" * len(header)]
        for row in self.rows:
            lines.append(
                f"{row['dataset']:<10} {row['behavior']:<15} {row['frames']:>8d} "
                f"{row['positives']:>8d} {_fmt(row['ap']):>6} {_fmt(row['f1']):>6} "
                f"{_fmt(row['bout_f1']):>8}"
            )
        for dataset, summary in self.summaries.items():
            lines.append(f"{dataset}: mAP {_fmt(summary['mAP'])} over "
                         f"{summary['n_labeled_frames']} held-out frames")
        return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.3f}"


def read_fly_frame_labels(path: Path) -> np.ndarray:
    """The per-frame wing-extension flags of ``clip_heuristic_labels.csv``.

    Returns
    -------
    numpy.ndarray
        int8 (n_frames,) of 0/1, indexed by the file's ``frame`` column.
    """
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or {"frame", FLY_LABEL_COLUMN} - set(reader.fieldnames):
            raise PrismError(
                f"{path}: expected columns 'frame' and {FLY_LABEL_COLUMN!r}, found "
                f"{reader.fieldnames}; use the clip_heuristic_labels.csv of sample_data."
            )
        rows = [(int(r["frame"]), int(r[FLY_LABEL_COLUMN])) for r in reader]
    frames = np.array([f for f, _ in rows])
    if not np.array_equal(frames, np.arange(len(rows))):
        raise PrismError(f"{path}: the 'frame' column must count 0, 1, 2, ... without gaps")
    return np.array([v for _, v in rows], dtype=np.int8)


def alternate_blocks(n_frames: int, block_frames: int) -> np.ndarray:
    """bool (n_frames,): True on even blocks of ``block_frames`` frames (the labeled part)."""
    return (np.arange(n_frames) // block_frames) % 2 == 0


def _save_split_labels(store, video_id: str, matrix: np.ndarray, behaviors: list[str],
                       labeled: np.ndarray) -> None:
    """Save ``matrix`` as label set 'manual' where ``labeled``, and as 'heldout' elsewhere."""
    from prism_science.labels import from_frame_matrix, save_labels

    info = store.video_info(video_id)
    for name, rows in (("manual", labeled), ("heldout", ~labeled)):
        if not rows.any():
            continue
        part = np.where(rows[:, None], matrix, -1).astype(np.int8)
        table = from_frame_matrix(part, behaviors, fps=info.fps, timestamps=info.timestamps,
                                  annotator="demo", source="manual", video_id=video_id)
        save_labels(store, video_id, table, name=name)


def _train_predict_evaluate(store, dataset: str, train_ids: list[str], video_ids: list[str],
                            options: DemoOptions, result: DemoResult) -> None:
    """Train on label set 'manual' of ``train_ids``, predict ``video_ids``, evaluate 'heldout'."""
    from prism_science.evaluation import write_report
    from prism_science.pipeline import (
        evaluate_store,
        predict_to_store,
        save_trained_probe,
        train_probe,
    )

    t0 = time.perf_counter()
    trained = train_probe(store, "manual", options.probe, video_ids=train_ids,
                          seed=options.seed, min_bout=3, max_gap=2)
    result.validation[dataset] = trained.validation
    probe_dir = save_trained_probe(trained.probe, options.out / "probes" / dataset)
    predict_to_store(trained.probe, store, dataset, video_ids=video_ids, probe_dir=probe_dir)
    report, arrays = evaluate_store(store, "heldout", dataset, video_ids=video_ids)
    out_dir = options.out / "reports" / dataset
    written = write_report(report, out_dir, arrays["y_true"], arrays["scores"], arrays["y_pred"],
                           arrays["groups"], arrays["video_ids"], arrays["fps"])
    result.timings[f"probe {dataset}"] = time.perf_counter() - t0
    result.reports[dataset] = out_dir
    result.ethograms += [p for p in written.values() if Path(p).name.startswith("ethogram")]
    for row in report.per_behavior:
        result.rows.append({
            "dataset": dataset, "behavior": row["behavior"], "frames": int(row["n_labeled"]),
            "positives": int(row["n_positive"]), "ap": row["ap"], "f1": row["f1"],
            "bout_f1": row["bout_f1"].get(0.5),
        })
    result.summaries[dataset] = report.summary


def run_demo(options: DemoOptions) -> DemoResult:
    """Run the main job; see the module docstring.

    Returns
    -------
    DemoResult
        Per-behavior held-out AP, F1 and bout F1, and the paths written.

    Raises
    ------
    PrismError
        Sample data missing, the model cannot be loaded, or a step fails on bad input.
    """
    from prism_science.extraction import ExtractOptions, run_extraction
    from prism_science.extraction.windows import WindowParams
    from prism_science.labels import read_labels, to_frame_matrix
    from prism_science.store import open_store
    from prism_science.synth import BEHAVIORS, SynthConfig, generate_dataset

    sample_dir = options.sample_dir or default_sample_dir()
    fly_video = sample_dir / "fly_courtship" / "clip.mp4"
    fly_labels = sample_dir / "fly_courtship" / "clip_heuristic_labels.csv"
    for path in (fly_video, fly_labels):
        if not path.is_file():
            raise PrismError(
                f"sample data not found: {path}. Run the demo from a clone of the repository, "
                "or pass --sample-dir pointing at its sample_data/ folder."
            )
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    store_path = out / "store.zarr"
    result = DemoResult(store=store_path)

    t0 = time.perf_counter()
    synth_videos: list[Path] = []
    if options.n_synthetic > 0:
        synth_videos = generate_dataset(out / "synth", options.n_synthetic, seed=options.seed,
                                        config=SynthConfig(seconds=(8.0, 8.0)))
    result.timings["synthesize"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = run_extraction([fly_video, *synth_videos], store_path,
                            ExtractOptions(model=options.model, device=options.device,
                                           params=WindowParams(hop=options.hop)))
    result.timings["extract"] = time.perf_counter() - t0
    if report.failed:
        raise PrismError("feature extraction failed: " + "; ".join(
            f"{path}: {reason}" for path, reason in report.failed))

    with open_store(store_path, mode="r+") as store:
        by_source = {Path(store.video_info(v).source_path).resolve(): v for v in store.video_ids()}
        fly_id = by_source[fly_video.resolve()]
        flags = read_fly_frame_labels(fly_labels)
        n_frames = store.video_info(fly_id).n_frames
        if len(flags) != n_frames:
            raise PrismError(f"{fly_labels}: {len(flags)} label rows for a video of "
                             f"{n_frames} frames ({fly_video})")
        _save_split_labels(store, fly_id, flags[:, None], [FLY_BEHAVIOR],
                           alternate_blocks(n_frames, options.block_frames))
        _train_predict_evaluate(store, "fly", [fly_id], [fly_id], options, result)

        if synth_videos:
            synth_ids = [by_source[p.resolve()] for p in synth_videos]
            n_train = len(synth_ids) - max(1, len(synth_ids) // 3)
            behaviors = list(BEHAVIORS)
            for i, (video, video_id) in enumerate(zip(synth_videos, synth_ids, strict=True)):
                info = store.video_info(video_id)
                table = read_labels(video.with_suffix(".labels.csv"), n_frames=info.n_frames,
                                    fps=info.fps)
                matrix = to_frame_matrix(table, behaviors, n_frames=info.n_frames,
                                         subject="animal0", labeled_ranges=[(0, info.n_frames - 1)])
                labeled = np.full(info.n_frames, i < n_train)
                _save_split_labels(store, video_id, matrix, behaviors, labeled)
            _train_predict_evaluate(store, "synthetic", synth_ids[:n_train], synth_ids, options,
                                    result)
    return result
