"""The ``probe`` command: ``train``, ``predict``, ``evaluate`` and ``suggest`` behavior probes on a
store, and ``zero-shot`` scoring of behaviors named in words."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``probe train|predict|evaluate|zero-shot|suggest``."""
    parser = subparsers.add_parser(
        "probe",
        help="train, apply and evaluate behavior probes on stored features",
        description="Train small classifiers (probes) on frozen encoder features in a store, "
        "write their per-frame predictions next to the features, and evaluate them.",
    )
    sub = parser.add_subparsers(dest="probe_command", metavar="ACTION", required=True)

    train = sub.add_parser(
        "train", help="train a probe on a label set",
        description="Train a probe on the labeled frames of the store's videos (unlabeled "
        "frames are left out): first on part of them, measuring per-behavior AP, F1, "
        "precision and recall and tuning thresholds on held-out videos (or stretches of time "
        "of a single video), then on all of them. Writes probe.json, probe.safetensors and "
        "validation.json into --out.",
    )
    train.add_argument("--store", required=True, help="feature store (Zarr folder or .h5)")
    train.add_argument("--labels", required=True, help="label set name, e.g. manual")
    train.add_argument("--kind", default="linear",
                       choices=("linear", "mlp", "attention", "temporal", "prompt", "map"),
                       help="probe kind; prompt: learned prompts through a video-text model's "
                       "text tower, on --tokens frame_emb features (docs/prompt_probes.md); "
                       "map: the paper's probe, the official MAP pooler over all tokens "
                       "(docs/probes.md)")
    train.add_argument("--text-model", default=None,
                       help="--kind prompt: the video-text model (name or weights folder) that "
                       "extracted the features (default: the one their provenance names)")
    train.add_argument("--out", required=True, type=Path, help="probe folder to write")
    train.add_argument("--features", default=None, help="feature key (default: the only one)")
    train.add_argument("--per-subject", action="store_true",
                       help="train on per-subject features (extract --subjects): each "
                       "subject's labels with its own features, one unit per (video, subject); "
                       "--features is then MODEL/TOKENS (docs/tracks.md)")
    train.add_argument("--video-id", nargs="+", default=None, help="videos (default: all)")
    train.add_argument("--behaviors", type=_csv, default=None,
                       help="comma-separated behaviors (default: all in the label set)")
    train.add_argument("--val-fraction", type=float, default=0.2,
                       help="fraction of the videos (of one video: of its 5 stretches of time) "
                       "held out for the validation figures and thresholds; 0: none "
                       "(default 0.2)")
    train.add_argument("--class-weight", choices=("none", "balanced"), default=None,
                       help="weight positives of rare behaviors up (default balanced; none for "
                       "--kind map, as in the paper)")
    train.add_argument("--focal-gamma", type=float, default=0.0, help="focal loss exponent")
    train.add_argument("--max-epochs", type=int, default=None)
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--min-bout", type=int, default=1,
                       help="drop predicted bouts shorter than this many frames")
    train.add_argument("--max-gap", type=int, default=0,
                       help="fill gaps of at most this many frames between predicted bouts")
    train.add_argument("--seed", type=int, default=0)
    paper = train.add_argument_group(
        "--kind map (the paper's protocol: AdamW, cosine LR from 5e-5, fixed epochs)")
    paper.add_argument("--heads", type=int, default=None,
                       help="pooler heads (default: the features' model's, else 12)")
    paper.add_argument("--dropout", type=float, default=None,
                       help="dropout on the pooled vector (default 0.5)")
    paper.add_argument("--loss", choices=("ce", "eql"), default=None,
                       help="multi-class loss: softmax cross-entropy or equalization loss "
                       "(KABR); default ce")
    paper.add_argument("--eql-lambda", type=float, default=None,
                       help="--loss eql: classes rarer than this fraction count as rare "
                       "(default 0.05)")
    paper.add_argument("--multiclass", action="store_true",
                       help="softmax over the behaviors (one per frame; frames with none are "
                       "left out) instead of one sigmoid per behavior")
    paper.add_argument("--batch-size", type=int, default=None, help="default 32")
    paper.add_argument("--weight-decay", type=float, default=None, help="default 1e-4")
    paper.add_argument("--warmup-fraction", type=float, default=None,
                       help="fraction of the steps of linear warm-up (default 0)")
    train.set_defaults(func=run_train)

    predict = sub.add_parser(
        "predict", help="write a probe's predictions into the store",
        description="Predict every frame of the store's videos; writes predictions/<name>/"
        "scores and /binary arrays and the label set predicted/<name>. Every video is checked "
        "first (complete features of the probe's model and token mode): if one fails, nothing "
        "is written.",
    )
    predict.add_argument("--probe", required=True, type=Path, help="probe folder")
    predict.add_argument("--store", required=True)
    predict.add_argument("--video-id", nargs="+", default=None)
    predict.add_argument("--name", default=None, help="prediction set name (default: folder)")
    predict.add_argument("--features", default=None)
    predict.add_argument("--per-subject", action="store_true",
                         help="predict every subject into predictions/<name>@<subject> "
                         "(default for a probe trained --per-subject)")
    predict.set_defaults(func=run_predict)

    evaluate = sub.add_parser(
        "evaluate", help="evaluate stored predictions against a label set",
        description="Compute AP, mAP, F1, precision, recall, bout F1 (and macro accuracy and a "
        "confusion matrix for single-label data) over labeled frames; writes report.json, "
        "report.md, report.html and PNG plots.",
    )
    evaluate.add_argument("--store", required=True)
    evaluate.add_argument("--labels", required=True)
    evaluate.add_argument("--predictions", required=True, help="prediction set name")
    evaluate.add_argument("--out", required=True, type=Path, help="report folder")
    evaluate.add_argument("--video-id", nargs="+", default=None)
    evaluate.add_argument("--iou", type=float, nargs="+", default=[0.5],
                          help="IoU thresholds of the bout F1")
    evaluate.add_argument("--per-subject", action="store_true",
                          help="evaluate predictions/<name>@<subject> against each subject's "
                          "labels: a pooled report in --out, one per subject in --out/<subject>")
    evaluate.set_defaults(func=run_evaluate)

    zero = sub.add_parser(
        "zero-shot", help="score behaviors named in words, with no label (or a prompt probe)",
        description="Score every frame for behaviors named in words: each name is put in "
        "prompt templates, encoded by the video-text model's text tower and compared with the "
        "frames' embeddings (features extracted with --tokens frame_emb); several templates "
        "are averaged (a prompt ensemble). With --probe, a trained prompt probe's learned "
        "prompts score the names, trained on or not. Writes predictions/<name>/scores and "
        "/binary and the label set predicted/<name>, like `probe predict`.",
    )
    zero.add_argument("--store", required=True, help="feature store with frame_emb features")
    zero.add_argument("--behaviors", required=True,
                      help='comma-separated behavior names, e.g. "chasing,grooming"')
    zero.add_argument("--template", action="append", default=None,
                      help='prompt template with {} for the name (repeat for an ensemble; '
                      'default: "a video of {}.", "a mouse {}.", "an animal {}.")')
    zero.add_argument("--background", action="append", default=[],
                      help="text of what else happens (joins the softmax, not written); "
                      "needed with a single behavior")
    zero.add_argument("--probe", type=Path, default=None,
                      help="a trained prompt probe folder (its learned prompts, not templates)")
    zero.add_argument("--model", default=None,
                      help="video-text model that extracted the features (default: the one "
                      "their provenance names)")
    zero.add_argument("--name", default=None,
                      help="prediction set name (default: zero-shot, or the probe's folder)")
    zero.add_argument("--features", default=None, help="feature key (default: <model>/frame_emb)")
    zero.add_argument("--video-id", nargs="+", default=None)
    zero.add_argument("--temperature", type=float, default=0.07,
                      help="softmax temperature of zero-shot scores (default 0.07)")
    zero.add_argument("--threshold", type=float, default=0.5,
                      help="zero-shot score at which a behavior is on (default 0.5)")
    zero.add_argument("--min-bout", type=int, default=None)
    zero.add_argument("--max-gap", type=int, default=None)
    zero.set_defaults(func=run_zero_shot)

    suggest = sub.add_parser(
        "suggest", help="suggest frames or bouts to label next (active learning)",
        description="Rank unlabeled frames by the uncertainty of stored predictions, spread out "
        "in feature space (k-center greedy), or stretches of frames (--bouts); prints CSV rows "
        "video_id,start_frame,end_frame,score, most useful first.",
    )
    suggest.add_argument("--store", required=True)
    suggest.add_argument("--predictions", required=True, help="prediction set name")
    suggest.add_argument("--labels", default=None, help="label set whose frames are done")
    suggest.add_argument("-n", "--n", type=int, default=20, help="how many suggestions")
    suggest.add_argument("--bouts", action="store_true", help="suggest stretches of frames")
    suggest.add_argument("--length", type=int, default=30, help="frames per stretch (--bouts)")
    suggest.add_argument("--method", choices=("entropy", "margin"), default="entropy")
    suggest.add_argument("--video-id", nargs="+", default=None)
    suggest.set_defaults(func=run_suggest)


def run_train(args: argparse.Namespace) -> int:
    """Train and save a probe; prints its thresholds and validation figures per behavior."""
    from prism_science.errors import PrismError
    from prism_science.pipeline import save_trained_probe, train_probe
    from prism_science.store import open_store

    class_weight = args.class_weight or ("none" if args.kind == "map" else "balanced")
    params: dict = {"class_weight": None if class_weight == "none" else "balanced"}
    if args.kind != "map":
        params["focal_gamma"] = args.focal_gamma
    elif args.focal_gamma:
        print("error: --focal-gamma is not an option of --kind map (use --loss eql for "
              "imbalanced multi-class data)", file=sys.stderr)
        return 2
    for name in ("max_epochs", "learning_rate"):
        value = getattr(args, name)
        if value is not None:
            params[name] = value
    map_options = {"heads": "n_heads", "dropout": "dropout", "loss": "loss",
                   "eql_lambda": "eql_lambda", "batch_size": "batch_size",
                   "weight_decay": "weight_decay", "warmup_fraction": "warmup_fraction",
                   "multiclass": "multiclass"}
    given = {flag: value for flag in map_options
             if (value := getattr(args, flag)) not in (None, False)}
    if given and args.kind != "map":
        flags = ", ".join("--" + flag.replace("_", "-") for flag in sorted(given))
        print(f"error: {flags}: options of --kind map only", file=sys.stderr)
        return 2
    params.update({map_options[flag]: value for flag, value in given.items()})
    if args.text_model is not None:
        if args.kind != "prompt":
            print("error: --text-model is for --kind prompt", file=sys.stderr)
            return 2
        params["text_model"] = args.text_model
    try:
        with open_store(args.store, mode="r") as store:
            result = train_probe(
                store, args.labels, args.kind, feature_key=args.features,
                video_ids=args.video_id, behaviors=args.behaviors, params=params,
                validation_fraction=args.val_fraction, seed=args.seed,
                min_bout=args.min_bout, max_gap=args.max_gap,
                per_subject=args.per_subject,
            )
        save_trained_probe(result.probe, args.out)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for message in result.warnings:
        print(f"warning: {message}", file=sys.stderr)
    print(f"trained {args.kind} probe on {len(result.data.video_ids)} video(s), features "
          f"{result.data.feature_key}, {result.probe.n_epochs_} epochs -> {args.out}")
    print(result.format())
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Write predictions of a saved probe into the store (every video checked first)."""
    from prism_science.errors import PrismError
    from prism_science.pipeline import (
        default_prediction_name,
        load_trained_probe,
        predict_to_store,
    )
    from prism_science.store import open_store

    name = args.name or default_prediction_name(args.probe)
    try:
        probe = load_trained_probe(args.probe)
        per_subject = args.per_subject or bool(
            (getattr(probe, "feature_provenance_", None) or {}).get("per_subject"))
        with open_store(args.store, mode="r+") as store:
            if per_subject:
                from prism_science.pipeline.subjects import predict_subjects_to_store

                results = predict_subjects_to_store(probe, store, name, args.video_id,
                                                    args.features, probe_dir=args.probe)
            else:
                results = predict_to_store(probe, store, name, args.video_id, args.features,
                                           probe_dir=args.probe)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_predictions(results, name, per_subject)
    return 0


def _print_predictions(results: dict[str, Any], name: str, per_subject: bool = False) -> None:
    """One line per video (per ``video@subject``): frames, where they went, frames on."""
    from prism_science.pipeline import PREDICTIONS

    for video_id, prediction in results.items():
        counts = ", ".join(f"{b}={int(c)}" for b, c in
                           zip(prediction.behaviors, prediction.binary.sum(0), strict=True))
        target = name
        if per_subject:
            video_id, _, subject = video_id.rpartition("@")
            target = f"{name}@{subject}"
        print(f"{video_id}: {len(prediction.binary)} frames -> {PREDICTIONS}/{target} "
              f"({counts} frames on)")


def run_zero_shot(args: argparse.Namespace) -> int:
    """Score named behaviors (templates or a prompt probe) into the store."""
    from prism_science.errors import PrismError
    from prism_science.pipeline import default_prediction_name, load_trained_probe
    from prism_science.pipeline.zero_shot import (
        DEFAULT_TEMPLATES,
        DEFAULT_ZERO_SHOT_NAME,
        zero_shot_to_store,
    )
    from prism_science.store import open_store

    try:
        probe = load_trained_probe(args.probe) if args.probe is not None else None
        name = args.name or (default_prediction_name(args.probe) if probe is not None
                             else DEFAULT_ZERO_SHOT_NAME)
        with open_store(args.store, mode="r+") as store:
            results = zero_shot_to_store(
                store, args.behaviors, name=name, model=args.model,
                templates=args.template or DEFAULT_TEMPLATES, background=args.background,
                probe=probe, video_ids=args.video_id, feature_key=args.features,
                temperature=args.temperature, threshold=args.threshold,
                min_bout=args.min_bout, max_gap=args.max_gap)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_predictions(results, name)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate stored predictions and write the report folder."""
    import numpy as np

    from prism_science.errors import PrismError
    from prism_science.evaluation import write_report
    from prism_science.pipeline import evaluate_store
    from prism_science.store import open_store

    per_subject: dict = {}
    try:
        with open_store(args.store, mode="r") as store:
            if args.per_subject:
                from prism_science.pipeline.subjects import evaluate_subjects

                report, per_subject, arrays = evaluate_subjects(
                    store, args.labels, args.predictions, args.video_id, args.iou)
            else:
                report, arrays = evaluate_store(store, args.labels, args.predictions,
                                                args.video_id, args.iou)
        write_report(report, args.out, arrays["y_true"], arrays["scores"], arrays["y_pred"],
                     arrays["groups"], arrays["video_ids"], arrays["fps"])
        for subject, sub_report in per_subject.items():
            rows = [i for i, unit in enumerate(arrays["video_ids"])
                    if unit.rpartition("@")[2] == subject]
            mask = np.isin(arrays["groups"], rows)
            write_report(sub_report, args.out / _safe_name(subject), arrays["y_true"][mask],
                         arrays["scores"][mask], arrays["y_pred"][mask],
                         arrays["groups"][mask], arrays["video_ids"], arrays["fps"])
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if per_subject:
        print("pooled over subjects:")
    print(report.to_markdown().split("\n## ")[0].rstrip())
    for subject, sub_report in per_subject.items():
        print(f"\nsubject {subject}:")
        print(sub_report.to_markdown().split("\n## ")[0].rstrip())
    print(f"report written to {args.out}"
          + (" (one folder per subject inside)" if per_subject else ""))
    return 0


def _safe_name(subject: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in subject) or "subject"


def run_suggest(args: argparse.Namespace) -> int:
    """Print the frames (or stretches) to label next as CSV."""
    import numpy as np

    from prism_science.errors import PrismError
    from prism_science.evaluation.active import suggest_bouts, suggest_frames
    from prism_science.labels import load_labels, to_frame_matrix
    from prism_science.labels.store_io import list_labels
    from prism_science.pipeline import has_predictions, load_predictions, pool_features
    from prism_science.store import open_store

    try:
        with open_store(args.store, mode="r") as store:
            ids = args.video_id or [
                v for v in store.video_ids() if has_predictions(store, v, args.predictions)
            ]
            if not ids:
                raise PrismError(
                    f"{store.path}: no video has predictions {args.predictions!r}; run "
                    "`prism-science probe predict` first."
                )
            scores, labeled, features, groups = [], [], [], []
            for index, video_id in enumerate(ids):
                proba, _, attrs = load_predictions(store, video_id, args.predictions)
                done = np.zeros(len(proba), bool)
                if args.labels and args.labels in list_labels(store, video_id):
                    table = load_labels(store, video_id, args.labels)
                    matrix = to_frame_matrix(table, attrs["behaviors"], n_frames=len(proba))
                    done = (matrix >= 0).all(1)
                values = store.read_features(video_id, attrs.get("feature_key")).values
                features.append(pool_features(values, "linear"))
                scores.append(proba)
                labeled.append(done)
                groups.append(np.full(len(proba), index))
        proba, done = np.concatenate(scores), np.concatenate(labeled)
        group_ids = np.concatenate(groups)
        starts = np.r_[0, np.cumsum([len(s) for s in scores])]
        if args.bouts:
            rows = suggest_bouts(proba, args.n, args.length, done, group_ids, args.method)
        else:
            from prism_science.evaluation.active import uncertainty

            picks = suggest_frames(proba, args.n, np.concatenate(features), done, args.method)
            u = uncertainty(proba[picks], args.method) if len(picks) else []
            rows = [(int(i), int(i), float(v)) for i, v in zip(picks, u, strict=True)]
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("video_id,start_frame,end_frame,score")
    for start, end, score in rows:
        video = int(group_ids[start])
        offset = int(starts[video])
        print(f"{ids[video]},{start - offset},{end - offset},{score:.4f}")
    return 0
