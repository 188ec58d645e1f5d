"""Stored predictions against a label set: :func:`evaluate_store` (``probe evaluate``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from prism_science.errors import ProbeError
from prism_science.pipeline.predict import has_predictions, load_predictions


def evaluate_store(
    store: Any,
    label_name: str,
    prediction_name: str,
    video_ids: Sequence[str] | None = None,
    iou_thresholds: Sequence[float] = (0.5,),
) -> tuple[Any, dict[str, Any]]:
    """Evaluate stored predictions against a label set, over the videos that have both.

    Parameters
    ----------
    store : FeatureStore
    label_name : str
        The truth (``labels/<label_name>``).
    prediction_name : str
        The prediction set (``predictions/<prediction_name>``, either layout).
    video_ids : sequence of str, optional
        Default every video of the store.
    iou_thresholds : sequence of float
        IoU thresholds of the bout F1.

    Returns
    -------
    (report, arrays)
        An :class:`~prism_science.evaluation.EvaluationReport` and the stacked ``y_true``,
        ``scores``, ``y_pred``, ``groups``, ``video_ids`` and ``fps`` (for plots).

    Raises
    ------
    ProbeError
        No video has both, or videos were predicted with probes of different behaviors.
    """
    from prism_science.evaluation import evaluate_predictions
    from prism_science.labels import load_labels, to_frame_matrix
    from prism_science.labels.store_io import list_labels

    ids = list(video_ids) if video_ids is not None else store.video_ids()
    truths, scores_all, preds, groups, used = [], [], [], [], []
    behaviors: list[str] | None = None
    first_attrs: dict[str, Any] = {}
    for video_id in ids:
        if label_name not in list_labels(store, video_id) or not has_predictions(
            store, video_id, prediction_name
        ):
            continue
        scores, binary, attrs = load_predictions(store, video_id, prediction_name)
        if behaviors is None:
            behaviors, first_attrs = list(attrs["behaviors"]), attrs
        elif list(attrs["behaviors"]) != behaviors:
            raise ProbeError(
                f"{store.path}: predictions {prediction_name!r} of video {video_id!r} have "
                f"behaviors {attrs['behaviors']}, other videos {behaviors}; predict all videos "
                "with the same probe."
            )
        table = load_labels(store, video_id, label_name)
        truths.append(to_frame_matrix(table, behaviors, n_frames=len(scores)))
        scores_all.append(scores)
        preds.append(binary)
        groups.append(np.full(len(scores), len(used), np.int64))
        used.append(video_id)
    if not used or behaviors is None:
        raise ProbeError(
            f"{store.path}: no video has both the label set {label_name!r} and predictions "
            f"{prediction_name!r}; run `prism-science probe predict` first."
        )
    y_true, scores, y_pred = (np.concatenate(truths), np.concatenate(scores_all),
                              np.concatenate(preds))
    group_ids = np.concatenate(groups)
    thresholds = first_attrs.get("thresholds")
    report = evaluate_predictions(
        y_true, scores, y_pred, behaviors, group_ids, iou_thresholds,
        thresholds=np.asarray(thresholds) if thresholds else None,
        metadata={"store": str(store.path), "labels": label_name,
                  "predictions": prediction_name, "videos": ", ".join(used),
                  "probe": first_attrs.get("probe_kind")},
    )
    fps = float(store.video_info(used[0]).fps) or None
    return report, {"y_true": y_true, "scores": scores, "y_pred": y_pred, "groups": group_ids,
                    "video_ids": used, "fps": fps}
