"""``prism-science bench DATASET``: the paper's protocol on one dataset, end to end.

Stages, each timed and recorded in ``RUN_DIR/state.json`` (``--resume`` skips the finished
ones, and an extraction cut short resumes at its first unfinished batch):

1. read the dataset root as released, split it, plan the samples and their clip units;
2. ``extract``: the units into the fp16 cache (``--cache fp16``; nothing with ``online``);
3. per seed, ``train_seed<S>`` (the MAP-pooler probe, fixed epochs) and ``predict_seed<S>``
   (test scores, predictions in the dataset's native format and ``scores.csv``);
4. ``evaluate`` -> ``results.json`` and ``report.md``;
5. ``checks`` -> ``checks.json``: layout and counts, the metric recomputed from the files,
   ``--check-alignment N`` units recomputed from the video and compared with what the probe read.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from prism_science.bench import calms21, chimpact, flyvsfly, kabr
from prism_science.bench.cache import (
    Encoder,
    TokenSource,
    UnitComputer,
    UnitPlan,
    cache_meta,
    clip_frames,
    extract_to_cache,
    plan_units,
    token_shape,
)
from prism_science.bench.data import BenchData, sha256_file
from prism_science.bench.protocol import ProbeConfig, Protocol, load_configs, resolve_heads
from prism_science.bench.report import (
    file_hashes,
    recompute_from_csv,
    score,
    summarise,
    versions,
    write_json,
    write_report,
    write_scores_csv,
)
from prism_science.bench.train import load_head, predict_scores, save_head, train_probe
from prism_science.errors import BenchError

logger = logging.getLogger(__name__)

DATASETS: dict[str, ModuleType] = {"flyvsfly": flyvsfly, "calms21": calms21,
                                   "chimpact": chimpact, "kabr": kabr}
"""Benchmark name -> its module (PROTOCOL, DEFAULT_SPLIT, NATIVE_FORMAT, read,
write_predictions)."""


@dataclass
class BenchOptions:
    """What ``prism-science bench`` was asked (see the CLI's help for each)."""

    dataset: str
    root: Path
    model: str
    out: Path
    device: str = "cpu"
    seeds: tuple[int, ...] = (0, 1, 2)
    split: Path | None = None
    probe: str = "paper"
    cache: str = "fp16"
    check_alignment: int = 0
    resume: bool = False
    dry_run: bool = False
    batch_size: int = 8


def check_device(device: str) -> str:
    """``device`` when it can run here; CUDA asked for but absent is an error."""
    if device == "cpu":
        return device
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise BenchError(f"--device {device}: CUDA is not available here (torch "
                             f"{torch.__version__}, CUDA build {torch.version.cuda}); run with "
                             "--device cpu or on a machine with an NVIDIA GPU and a CUDA torch.")
        return device
    raise BenchError(f"--device {device}: expected 'cpu', 'cuda' or 'cuda:N'.")


def _model_shape(model: str) -> dict[str, int] | None:
    """num_frames, image_size, patch_size, model_dim from the config alone (no weights)."""
    from prism_science.models.folder import find_weights, read_config
    from prism_science.models.registry import get_config, resolve_name

    try:
        path = Path(model)
        if path.is_dir():
            config = read_config(path)[1]
        elif find_weights(resolve_name(model)) is not None:
            config = read_config(find_weights(resolve_name(model)))[1]
        else:
            config = get_config(model)
    except Exception:  # noqa: BLE001 - a dry run reports what it can
        return None
    return {k: int(getattr(config, k)) for k in ("num_frames", "image_size", "patch_size",
                                                  "model_dim")}


def _plan_summary(data: BenchData, protocol: Protocol, plan: UnitPlan, options: BenchOptions,
                  config: ProbeConfig) -> dict[str, Any]:
    subsets = [*protocol.train_subsets, protocol.test_subset]
    frames: dict[str, set[int]] = {}
    clips = plan.clips()
    for video_id, centre in clips:
        n = data.videos[video_id].n_frames
        frames.setdefault(video_id, set()).update(clip_frames(centre, n, protocol).tolist())
    n_train_units = sum(len(data.samples[s]) for s in protocol.train_subsets)
    n_test_units = len(data.samples[protocol.test_subset])
    shape = _model_shape(options.model)
    summary: dict[str, Any] = {
        "dataset": data.dataset, "root": str(data.root), "split": data.split_version,
        "videos": {s: sum(v.subset == s for v in data.videos.values()) for s in subsets},
        "samples": {s: len(data.samples[s]) for s in subsets},
        "units": len(plan), "clips": len(clips),
        "frames_decoded": sum(len(f) for f in frames.values()),
        "clip": {"frames": protocol.clip_frames, "step": protocol.clip_step},
        "resize": protocol.resize, "cache": options.cache, "seeds": list(options.seeds),
    }
    if options.cache == "fp16":
        summary["forward_passes"] = len(clips)
    else:  # every step re-encodes its batch's clips (distinct samples at most)
        summary["forward_passes"] = len(options.seeds) * (config.epochs * n_train_units
                                                          + n_test_units)
    if shape is not None:
        scale = shape["image_size"] / shape["patch_size"]
        tokens = protocol.clip_frames * (int(scale) ** 2 if protocol.resize ==
                                         "short_side_center_crop" else 1)
        summary["model"] = shape
        if plan.boxes is None:
            summary["cache_bytes"] = len(plan) * tokens * shape["model_dim"] * 2
        else:
            summary["cache_bytes"] = len(plan) * protocol.clip_frames * shape["model_dim"] * 2
    return summary


class _State:
    """``RUN_DIR/state.json``: the run's config hash and its finished stages with times."""

    def __init__(self, run_dir: Path, config: dict[str, Any], resume: bool) -> None:
        self.path = run_dir / "state.json"
        self.hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()
        if self.path.is_file():
            old = json.loads(self.path.read_text(encoding="utf-8"))
            if not resume:
                raise BenchError(f"{run_dir}: holds a run already (state.json); pass --resume "
                                 "to finish it, or another --out.")
            if old.get("config_hash") != self.hash:
                raise BenchError(f"{self.path}: that run had another configuration (dataset, "
                                 "model, split, probe, seeds or cache); --resume needs the same "
                                 "arguments, or use another --out.")
            self.stages = old.get("stages", {})
        else:
            self.stages = {}
        run_dir.mkdir(parents=True, exist_ok=True)
        self._save()

    def _save(self) -> None:
        self.path.write_text(json.dumps({"config_hash": self.hash, "stages": self.stages},
                                        indent=2), encoding="utf-8")

    def done(self, stage: str) -> bool:
        return bool(self.stages.get(stage, {}).get("done"))

    def finish(self, stage: str, seconds: float) -> None:
        self.stages[stage] = {"done": True, "seconds": seconds}
        self._save()

    def seconds(self) -> dict[str, float]:
        return {k: float(v.get("seconds", 0.0)) for k, v in self.stages.items()}


def prepare(options: BenchOptions) -> tuple[ModuleType, Protocol, ProbeConfig, BenchData,
                                            UnitPlan]:
    """Read the dataset and plan the units (stage 1)."""
    if options.dataset not in DATASETS:
        raise BenchError(f"unknown benchmark {options.dataset!r}; expected one of "
                         f"{sorted(DATASETS)}.")
    if options.cache not in ("fp16", "online"):
        raise BenchError(f"--cache {options.cache}: expected 'fp16' or 'online'.")
    if not options.seeds:
        raise BenchError("--seeds: give at least one seed.")
    module = DATASETS[options.dataset]
    protocol, config = load_configs(module.PROTOCOL, options.probe)
    root = Path(options.root)
    if not root.is_dir():
        raise BenchError(f"--root {root}: no such folder; expected the {options.dataset} "
                         "release's root (see docs/bench.md for its layout).")
    data = module.read(root, protocol, Path(options.split) if options.split else None)
    for subset in (*protocol.train_subsets, protocol.test_subset):
        if len(data.samples.get(subset, [])) == 0:
            raise BenchError(f"{root}: no labeled sample in subset {subset!r}; the benchmark "
                             "needs both training and test samples.")
    plan = plan_units(data, [*protocol.train_subsets, protocol.test_subset])
    return module, protocol, config, data, plan


def dry_run(options: BenchOptions) -> dict[str, Any]:
    """The plan (videos, samples, clips, frames, forward passes, cache size); writes nothing."""
    start = time.perf_counter()
    _, protocol, config, data, plan = prepare(options)
    summary = _plan_summary(data, protocol, plan, options, config)
    summary["read_seconds"] = time.perf_counter() - start
    summary["notes"] = data.notes
    return summary


def _model_identity(model: torch.nn.Module) -> dict[str, Any]:
    return {"name": getattr(model, "name", None),
            "weights_sha256": getattr(model, "weights_sha256", None),
            "tensors_sha256": getattr(model, "tensors_sha256", None),
            "config": model.config.to_dict() if hasattr(model.config, "to_dict") else None}


def run_bench(options: BenchOptions) -> dict[str, Any]:
    """Run the benchmark; returns the results dict also written to ``RUN_DIR/results.json``.

    Raises
    ------
    BenchError
        Bad layout, split, probe config, device or run folder (the message says which file).
    """
    from prism_science.models import load_model

    if options.dry_run:
        return dry_run(options)
    device = check_device(options.device)
    t0 = time.perf_counter()
    module, protocol, config, data, plan = prepare(options)
    read_seconds = time.perf_counter() - t0
    run_dir = Path(options.out)
    settings = {"dataset": options.dataset, "root": str(Path(options.root).resolve()),
                "model": str(options.model), "split": data.split_version,
                "split_files": file_hashes(data.split_files, data.root),
                "probe": config.to_dict(), "protocol": protocol.to_dict(),
                "seeds": list(options.seeds), "cache": options.cache}
    state = _State(run_dir, settings, options.resume)
    state.finish("read", read_seconds)
    model = load_model(options.model, device=device)
    identity = _model_identity(model)
    notes = list(data.notes)
    if identity["weights_sha256"] is None:
        if options.resume:
            raise BenchError(f"--model {options.model}: no weights (random initialisation, "
                             "different at every load), so a run cannot be resumed with it; "
                             "pass a weights folder.")
        notes.append(f"model {options.model} has no weights: random initialisation")
    if protocol.clip_frames != model.num_frames:
        notes.append(f"clips of {protocol.clip_frames} frames into a model of "
                     f"{model.num_frames}: its temporal position embeddings are resized "
                     "(bilinear, as the official code)")
    encoder = Encoder(model, device)
    computer = UnitComputer(data, plan, protocol, encoder)
    shape = token_shape(computer)
    width = int(shape[1])
    write_json(run_dir / "config.json", {**settings, "model_identity": identity,
                                         "device": device, "tokens_per_unit": shape})

    cache_dir = run_dir / "cache"
    if options.cache == "fp16":
        if not state.done("extract"):
            start = time.perf_counter()
            stats = extract_to_cache(computer, cache_dir,
                                     cache_meta(plan, protocol, identity, shape),
                                     batch_size=options.batch_size)
            logger.info("extracted %d units (%d reused) in %.1f s", stats["computed"],
                        stats["reused"], stats["seconds"])
            state.finish("extract", time.perf_counter() - start)
        source = TokenSource(cache_dir=cache_dir)
    else:
        source = TokenSource(computer=computer)

    train_units = np.concatenate([plan.sample_units[s] for s in protocol.train_subsets])
    train_targets = np.concatenate([data.samples[s].targets for s in protocol.train_subsets])
    test = protocol.test_subset
    heads = resolve_heads(config.n_heads, width)
    per_seed, per_class, head_hashes, training = {}, {}, {}, {}
    evaluate_seconds = 0.0
    for seed in options.seeds:
        seed_dir = run_dir / f"seed{seed}"
        seed_dir.mkdir(exist_ok=True)
        head_path = seed_dir / "probe.safetensors"
        if not state.done(f"train_seed{seed}"):
            start = time.perf_counter()
            trained = train_probe(source, train_units, train_targets, width, protocol.loss,
                                  config, seed)
            save_head(trained.module, head_path)
            write_json(seed_dir / "training.json", {
                "seed": seed, "n_heads": trained.n_heads, "loss_curve": trained.loss_curve,
                "learning_rates_first_last": [trained.learning_rates[0],
                                              trained.learning_rates[-1]],
                "steps": len(trained.learning_rates),
                "class_frequencies": trained.class_frequencies})
            state.finish(f"train_seed{seed}", time.perf_counter() - start)
        if not state.done(f"predict_seed{seed}"):
            start = time.perf_counter()
            head = load_head(head_path, width, len(data.classes), heads, config.dropout)
            scores = predict_scores(head, source, plan.sample_units[test], protocol.loss)
            np.save(seed_dir / "scores.npy", scores)
            native = run_dir / "predictions" / f"seed{seed}"
            native.mkdir(parents=True, exist_ok=True)
            module.write_predictions(native, data, test, scores)
            write_scores_csv(seed_dir / "scores.csv", data, test, scores)
            state.finish(f"predict_seed{seed}", time.perf_counter() - start)
        start = time.perf_counter()
        scores = np.load(seed_dir / "scores.npy")
        per_seed[seed], per_class[seed] = score(protocol.metric, data.samples[test].targets,
                                                scores)
        evaluate_seconds += time.perf_counter() - start
        head_hashes[str(seed)] = sha256_file(head_path)
        training[str(seed)] = json.loads((seed_dir / "training.json").read_text())
    state.finish("evaluate", evaluate_seconds)
    results = _results(options, module, protocol, config, data, plan, identity, per_seed,
                       per_class, head_hashes, training, notes, heads, shape, device, state)
    write_json(run_dir / "results.json", results)
    write_report(run_dir / "report.md", results)

    start = time.perf_counter()
    checks = run_checks(options, protocol, data, plan, results, source, computer, run_dir)
    write_json(run_dir / "checks.json", checks)
    state.finish("checks", time.perf_counter() - start)
    results["wall_time_s"] = state.seconds()
    results["checks_passed"] = checks["passed"]
    write_json(run_dir / "results.json", results)
    write_report(run_dir / "report.md", results)
    return results


def _results(options: BenchOptions, module: ModuleType, protocol: Protocol,
             config: ProbeConfig, data: BenchData, plan: UnitPlan, identity: dict[str, Any],
             per_seed: dict[int, float], per_class: dict[int, np.ndarray],
             head_hashes: dict[str, str], training: dict[str, Any], notes: list[str],
             heads: int, shape: tuple[int, int], device: str, state: _State) -> dict[str, Any]:
    test = protocol.test_subset
    subsets = [*protocol.train_subsets, test]
    out = {"dataset": data.dataset, "root": str(data.root)}
    out.update(summarise(protocol.metric, per_seed, per_class, data.classes,
                         protocol.paper_value))
    out["counts"] = {
        "videos": {s: sum(v.subset == s for v in data.videos.values()) for s in subsets},
        "samples": {s: len(data.samples[s]) for s in subsets},
        "units": len(plan),
        "test_positives": {c: int(data.samples[test].targets[:, k].sum())
                           for k, c in enumerate(data.classes)},
        "train_positives": {c: int(sum(data.samples[s].targets[:, k].sum()
                                       for s in protocol.train_subsets))
                            for k, c in enumerate(data.classes)},
    }
    out["hashes"] = {"split": file_hashes(data.split_files, data.root),
                     "split_version": data.split_version,
                     "labels": file_hashes(data.label_files, data.root),
                     "weights": {k: identity[k] for k in ("weights_sha256", "tensors_sha256")},
                     "probe_heads": head_hashes}
    out["model"] = {"name": identity["name"] or str(options.model),
                    "weights_sha256": identity["weights_sha256"], "argument": str(options.model)}
    out["config"] = {"protocol": protocol.to_dict(), "probe": {**config.to_dict(),
                                                              "n_heads_used": heads},
                     "resize_policy": protocol.resize, "tokens_per_unit": list(shape),
                     "cache": options.cache, "device": device,
                     "autocast": "bf16" if device.startswith("cuda") else "none (fp32)",
                     "native_predictions": module.NATIVE_FORMAT}
    out["training"] = training
    out["versions"] = versions()
    out["wall_time_s"] = state.seconds()
    out["notes"] = notes
    return out


def run_checks(options: BenchOptions, protocol: Protocol, data: BenchData, plan: UnitPlan,
               results: dict[str, Any], source: TokenSource, computer: UnitComputer,
               run_dir: Path) -> dict[str, Any]:
    """checks.json: layout and counts, the metric recomputed, alignment of N units."""
    checks: dict[str, Any] = {"layout": {}, "metric": {}, "alignment": None}
    counts = {}
    for key, expected in sorted(data.expected_counts.items()):
        subset, _, kind = key.partition("_")
        if kind == "samples":
            found = len(data.samples.get(subset, []))
        elif kind == "frames":
            found = sum(v.n_frames for v in data.videos.values() if v.subset == subset)
        else:  # boxes with a behavior
            found = len(data.samples.get(subset, []))
        counts[key] = {"expected": expected, "found": found, "ok": expected == found}
    checks["layout"] = {"counts": counts, "videos": len(data.videos),
                        "videos_found": all(v.path.exists() for v in data.videos.values()),
                        "notes": data.notes}
    test = protocol.test_subset
    for seed in options.seeds:
        path = run_dir / f"seed{seed}" / "scores.csv"
        recomputed = recompute_from_csv(path, protocol.metric, data.classes)
        reported = results["value"]["per_seed"][str(seed)]
        with open(path, encoding="utf-8") as handle:
            rows = sum(1 for _ in handle) - 1
        checks["metric"][str(seed)] = {
            "reported": reported, "recomputed": recomputed, "rows": rows,
            "rows_ok": rows == len(data.samples[test]),
            "ok": bool(np.isclose(reported, recomputed, rtol=0, atol=1e-9, equal_nan=True))}
    if options.check_alignment > 0:
        checks["alignment"] = check_alignment(data, plan, protocol, source, computer,
                                              options.check_alignment)
    passed = all(c["ok"] for c in counts.values()) and checks["layout"]["videos_found"]
    passed = passed and all(c["ok"] and c["rows_ok"] for c in checks["metric"].values())
    if checks["alignment"] is not None:
        passed = passed and checks["alignment"]["ok"]
    checks["passed"] = bool(passed)
    return checks


def check_alignment(data: BenchData, plan: UnitPlan, protocol: Protocol, source: TokenSource,
                    computer: UnitComputer, n: int, seed: int = 0) -> dict[str, Any]:
    """N random units re-decoded frame by frame from the video, encoded, and compared with
    what the probe read (the fp16 cache, or the batched online path)."""
    rng = np.random.default_rng(seed)
    units = np.sort(rng.choice(len(plan), size=min(n, len(plan)), replace=False))
    fresh = UnitComputer(data, plan, protocol, computer.encoder, per_frame_reads=True)
    try:
        reference = fresh.compute(units)
    finally:
        fresh.close()
    stored = source.get(units)
    diff = np.abs(reference - stored)
    scale = float(np.abs(reference).max()) or 1.0
    # fp16 storage: relative error <= 2^-11 per value; bf16 on CUDA: 2^-8; with a margin.
    tolerance = 2e-2 if computer.encoder.autocast else 2e-3
    per_unit = [{"video": plan.video_ids[u], "centre_frame": int(plan.centres[u]),
                 "max_abs_diff": float(d.max())} for u, d in zip(units, diff, strict=True)]
    return {"n": len(units), "max_abs_diff": float(diff.max()),
            "max_relative_diff": float(diff.max()) / scale, "tolerance_relative": tolerance,
            "units": per_unit, "ok": float(diff.max()) / scale <= tolerance}
