"""Stored features + label tables -> probes -> predictions in the store: the one path the CLI,
the plugin and the demo share.

- :mod:`~prism_science.pipeline.data`: features and label matrices per video (labels from a
  store label set or from per-video LabelTables), token pooling per probe kind, row selection,
  and the checks that every video's features are complete and made alike;
- :mod:`~prism_science.pipeline.split`: the validation split, by video or by stretches of time
  of a single video;
- :mod:`~prism_science.pipeline.train`: training with per-behavior validation figures and
  thresholds, then a refit on everything; saving a probe with its ``validation.json``;
- :mod:`~prism_science.pipeline.predict`: the predictions layout in the store, predicting,
  reading predictions back, default names;
- :mod:`~prism_science.pipeline.evaluate`: stored predictions against a label set.
"""

from __future__ import annotations

from prism_science.pipeline.data import (
    LabelInput,
    StoreData,
    check_feature_sets,
    load_store_data,
    pool_features,
    select_rows,
)
from prism_science.pipeline.evaluate import evaluate_store
from prism_science.pipeline.predict import (
    DEFAULT_PREDICTION_NAME,
    PREDICTIONS,
    VideoPrediction,
    check_predictable,
    default_prediction_name,
    has_predictions,
    load_predictions,
    predict_to_store,
    predict_video,
    write_predictions,
)
from prism_science.pipeline.split import SINGLE_VIDEO_BLOCKS, ValidationSplit, split_validation
from prism_science.pipeline.train import (
    DEFAULT_THRESHOLD,
    DEFAULT_VALIDATION_FRACTION,
    MIN_BOUTS,
    VALIDATION_FILE,
    TrainResult,
    load_trained_probe,
    save_trained_probe,
    train_probe,
)

__all__ = [
    "DEFAULT_PREDICTION_NAME",
    "DEFAULT_THRESHOLD",
    "DEFAULT_VALIDATION_FRACTION",
    "MIN_BOUTS",
    "PREDICTIONS",
    "SINGLE_VIDEO_BLOCKS",
    "VALIDATION_FILE",
    "LabelInput",
    "StoreData",
    "TrainResult",
    "ValidationSplit",
    "VideoPrediction",
    "check_feature_sets",
    "check_predictable",
    "default_prediction_name",
    "evaluate_store",
    "has_predictions",
    "load_predictions",
    "load_store_data",
    "load_trained_probe",
    "pool_features",
    "predict_to_store",
    "predict_video",
    "save_trained_probe",
    "select_rows",
    "split_validation",
    "train_probe",
    "write_predictions",
]
