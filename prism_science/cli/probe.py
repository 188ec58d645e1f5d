"""The ``probe`` command: ``train``, ``predict`` and ``evaluate`` behavior probes on a store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``probe train|predict|evaluate``."""
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
        "frames are left out). Early stopping and per-behavior thresholds use held-out videos.",
    )
    train.add_argument("--store", required=True, help="feature store (Zarr folder or .h5)")
    train.add_argument("--labels", required=True, help="label set name, e.g. manual")
    train.add_argument("--kind", default="linear",
                       choices=("linear", "mlp", "attention", "temporal"))
    train.add_argument("--out", required=True, type=Path, help="probe folder to write")
    train.add_argument("--features", default=None, help="feature key (default: the only one)")
    train.add_argument("--video-id", nargs="+", default=None, help="videos (default: all)")
    train.add_argument("--behaviors", type=_csv, default=None,
                       help="comma-separated behaviors (default: all in the label set)")
    train.add_argument("--val-fraction", type=float, default=None,
                       help="fraction of videos held out for early stopping and thresholds")
    train.add_argument("--class-weight", choices=("none", "balanced"), default="balanced",
                       help="weight positives of rare behaviors up (default balanced)")
    train.add_argument("--focal-gamma", type=float, default=0.0, help="focal loss exponent")
    train.add_argument("--max-epochs", type=int, default=None)
    train.add_argument("--learning-rate", type=float, default=None)
    train.add_argument("--min-bout", type=int, default=1,
                       help="drop predicted bouts shorter than this many frames")
    train.add_argument("--max-gap", type=int, default=0,
                       help="fill gaps of at most this many frames between predicted bouts")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=run_train)

    predict = sub.add_parser(
        "predict", help="write a probe's predictions into the store",
        description="Predict every frame of the store's videos; writes predictions/<name>/"
        "scores and /binary arrays and the label set predicted/<name>.",
    )
    predict.add_argument("--probe", required=True, type=Path, help="probe folder")
    predict.add_argument("--store", required=True)
    predict.add_argument("--video-id", nargs="+", default=None)
    predict.add_argument("--name", default=None, help="prediction set name (default: folder)")
    predict.add_argument("--features", default=None)
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
    evaluate.set_defaults(func=run_evaluate)

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
    """Train and save a probe; prints its validation thresholds."""
    from prism_science.errors import PrismError
    from prism_science.pipeline import train_probe
    from prism_science.probes import save_probe
    from prism_science.store import open_store

    params: dict = {"random_state": args.seed, "focal_gamma": args.focal_gamma,
                    "class_weight": None if args.class_weight == "none" else "balanced"}
    for name in ("val_fraction", "max_epochs", "learning_rate"):
        value = getattr(args, name)
        if value is not None:
            params["validation_fraction" if name == "val_fraction" else name] = value
    try:
        with open_store(args.store, mode="r") as store:
            probe, data = train_probe(
                store, args.labels, args.kind, args.features, args.video_id, args.behaviors,
                params, args.min_bout, args.max_gap,
            )
        save_probe(probe, args.out)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"trained {args.kind} probe on {len(data.video_ids)} video(s), features "
          f"{data.feature_key}, {probe.n_epochs_} epochs -> {args.out}")
    for name, threshold in zip(probe.classes_.tolist(), probe.thresholds_, strict=True):
        skipped = " (skipped: no positive frame)" if name in probe.skipped_classes_ else ""
        print(f"  {name:<24} threshold {threshold:.3f}{skipped}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Write predictions of a saved probe into the store."""
    from prism_science.errors import PrismError
    from prism_science.pipeline import PREDICTIONS, predict_to_store
    from prism_science.probes import load_probe
    from prism_science.store import open_store

    name = args.name or args.probe.resolve().name
    try:
        probe = load_probe(args.probe)
        with open_store(args.store, mode="r+") as store:
            results = predict_to_store(probe, store, name, args.video_id, args.features,
                                       probe_dir=args.probe)
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for video_id, binary in results.items():
        counts = ", ".join(f"{b}={int(c)}" for b, c in
                           zip(probe.classes_.tolist(), binary.sum(0), strict=True))
        print(f"{video_id}: {len(binary)} frames -> {PREDICTIONS}/{name} ({counts} frames on)")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """Evaluate stored predictions and write the report folder."""
    from prism_science.errors import PrismError
    from prism_science.evaluation import write_report
    from prism_science.pipeline import evaluate_store
    from prism_science.store import open_store

    try:
        with open_store(args.store, mode="r") as store:
            report, arrays = evaluate_store(store, args.labels, args.predictions,
                                            args.video_id, args.iou)
        write_report(report, args.out, arrays["y_true"], arrays["scores"], arrays["y_pred"],
                     arrays["groups"], arrays["video_ids"], arrays["fps"])
    except PrismError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.to_markdown().split("\n## ")[0].rstrip())
    print(f"report written to {args.out}")
    return 0


def run_suggest(args: argparse.Namespace) -> int:
    """Print the frames (or stretches) to label next as CSV."""
    import numpy as np

    from prism_science.errors import PrismError
    from prism_science.evaluation.active import suggest_bouts, suggest_frames
    from prism_science.labels import load_labels, to_frame_matrix
    from prism_science.labels.store_io import list_labels
    from prism_science.pipeline import PREDICTIONS, load_predictions
    from prism_science.store import open_store

    try:
        with open_store(args.store, mode="r") as store:
            ids = args.video_id or [
                v for v in store.video_ids()
                if store.has_item(v, f"{PREDICTIONS}/{args.predictions}/scores")
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
                values = store.read_features(video_id, attrs["feature_key"]).values
                features.append(values.reshape(len(values), -1, values.shape[-1]).mean(1))
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
