"""Stored features + label tables -> probes -> predictions in the store: the one path the CLI,
the plugin and the demo share."""

from __future__ import annotations

from prism_science.pipeline.workflow import (
    PREDICTIONS,
    StoreData,
    evaluate_store,
    load_predictions,
    load_store_data,
    predict_to_store,
    train_probe,
)

__all__ = [
    "PREDICTIONS",
    "StoreData",
    "evaluate_store",
    "load_predictions",
    "load_store_data",
    "predict_to_store",
    "train_probe",
]
