"""The protocol of each benchmark (clips, sampling, resize, loss, metric) and the probe config.

Both are frozen dataclasses saved with every run (``RUN_DIR/config.json``). The probe config
(``--probe paper`` or ``--probe CONFIG.json``) holds the paper's hyper-parameters of the MAP
pooler probe; a JSON config may also override protocol fields under ``"protocol"`` (e.g. the
strides of a quick run). Unknown fields are refused by name.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_science.errors import BenchError

RESIZE_POLICIES = ("short_side_center_crop", "short_side_full")
"""``short_side_center_crop``: the official VideoPrism notebook's resize -- the short side to the
model's image size, then the central square (done as: cut the central square of side
min(W, H), then resize it to image_size x image_size). ``short_side_full``: the short side to the
image size, the whole frame kept (width rounded to a multiple of the patch size): for box-level
tasks, so that no box falls outside the input."""

METRICS = {
    "map": "mean over behaviors of the average precision (step-wise, as scikit-learn's "
           "average_precision_score) of the per-sample scores; behaviors without a positive "
           "test sample are left out",
    "ava_frame_map": "AVA frame-mAP@0.5 with the ground-truth boxes as detections (every box "
                     "matches its own ground truth, IoU 1): per behavior the interpolated AP "
                     "(PASCAL VOC 2010+/AVA) over all test boxes of all keyframes, then the mean "
                     "over behaviors with a positive",
    "top1_macro": "macro top-1 accuracy: the argmax class per sample, then the mean over the "
                  "classes present in the test labels of their recall",
}


@dataclass(frozen=True)
class Protocol:
    """How one dataset is benchmarked.

    Parameters
    ----------
    dataset : str
        ``flyvsfly``, ``calms21``, ``chimpact`` or ``kabr``.
    clip_frames : int
        Frames per clip, centred on the sample's frame (frames ``c - n//2 ... c + n - n//2 - 1``
        times ``clip_step``; indices before the first / after the last frame repeat the edge).
    clip_step : int
        Frame step inside a clip.
    train_stride, test_stride : int
        Every how many labeled frames (per video, in frame order) a sample is taken.
    resize : str
        One of :data:`RESIZE_POLICIES`.
    loss : str
        ``bce`` (sigmoid binary cross-entropy, multi-label) or ``eql`` (softmax equalization
        loss, multi-class).
    metric : str
        A key of :data:`METRICS`.
    paper_value : float
        VideoPrism-B's figure in the paper (percent).
    train_subsets, test_subset
        Which subsets of the split train the probe and which one is evaluated.
    """

    dataset: str
    clip_frames: int = 16
    clip_step: int = 1
    train_stride: int = 1
    test_stride: int = 1
    resize: str = "short_side_center_crop"
    loss: str = "bce"
    metric: str = "map"
    paper_value: float = float("nan")
    train_subsets: tuple[str, ...] = ("train",)
    test_subset: str = "test"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = dataclasses.asdict(self)
        out["train_subsets"] = list(self.train_subsets)
        out["metric_definition"] = METRICS[self.metric]
        return out


@dataclass(frozen=True)
class ProbeConfig:
    """The paper's probe: the official MAP pooler (width D) -> dropout -> linear.

    Parameters
    ----------
    n_heads : int
        Heads of the pooler (the paper: 12). When the feature width D is not divisible by it
        (tiny test models), the largest divisor of D below it is used and recorded.
    dropout : float
        On the pooled vector (the paper: 0.5).
    learning_rate : float
        Peak of the per-step cosine schedule (the paper: 5e-5), AdamW.
    weight_decay : float
        AdamW weight decay.
    epochs : int
        Fixed number of epochs, all run (no early stopping, no held-out training videos).
    batch_size : int
        Samples per step.
    warmup_fraction : float
        Fraction of the steps with a linear warm-up (0: none).
    eql_lambda, eql_gamma : float
        Softmax EQL (KABR): classes rarer than ``eql_lambda`` (fraction of training samples)
        are left out of a wrong sample's softmax with probability ``eql_gamma``.
    """

    n_heads: int = 12
    dropout: float = 0.5
    learning_rate: float = 5e-5
    weight_decay: float = 1e-4
    epochs: int = 30
    batch_size: int = 32
    warmup_fraction: float = 0.0
    eql_lambda: float = 0.05
    eql_gamma: float = 0.9

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


def _checked_replace(obj: Any, values: dict[str, Any], where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(obj)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise BenchError(f"{where}: unknown field(s) {unknown}; expected some of "
                         f"{sorted(names)}.")
    typed = {}
    for key, value in values.items():
        current = getattr(obj, key)
        try:
            if isinstance(current, tuple):
                typed[key] = tuple(value) if isinstance(value, list) else (value,)
            elif isinstance(current, bool) or current is None:
                typed[key] = value
            else:
                typed[key] = type(current)(value)
        except (TypeError, ValueError) as exc:
            raise BenchError(f"{where}, field {key!r}: {value!r} is not a "
                             f"{type(current).__name__} ({exc}).") from exc
    return dataclasses.replace(obj, **typed)


def check_protocol(protocol: Protocol, where: str = "protocol") -> Protocol:
    """Refuse values that cannot run, naming the field."""
    if protocol.resize not in RESIZE_POLICIES:
        raise BenchError(f"{where}, field 'resize': {protocol.resize!r}; expected one of "
                         f"{list(RESIZE_POLICIES)}.")
    if protocol.loss not in ("bce", "eql"):
        raise BenchError(f"{where}, field 'loss': {protocol.loss!r}; expected 'bce' or 'eql'.")
    if protocol.metric not in METRICS:
        raise BenchError(f"{where}, field 'metric': {protocol.metric!r}; expected one of "
                         f"{sorted(METRICS)}.")
    for name in ("clip_frames", "clip_step", "train_stride", "test_stride"):
        if int(getattr(protocol, name)) < 1:
            raise BenchError(f"{where}, field {name!r}: {getattr(protocol, name)}; expected an "
                             "integer >= 1.")
    return protocol


def check_probe(config: ProbeConfig, where: str = "probe config") -> ProbeConfig:
    """Refuse values that cannot train, naming the field."""
    if not 0.0 <= config.dropout < 1.0:
        raise BenchError(f"{where}, field 'dropout': {config.dropout}; expected 0 <= p < 1.")
    if config.epochs < 1 or config.batch_size < 1 or config.n_heads < 1:
        raise BenchError(f"{where}: epochs, batch_size and n_heads must be >= 1 (found "
                         f"{config.epochs}, {config.batch_size}, {config.n_heads}).")
    if config.learning_rate <= 0:
        raise BenchError(f"{where}, field 'learning_rate': {config.learning_rate}; expected > 0.")
    if not 0.0 <= config.warmup_fraction < 1.0:
        raise BenchError(f"{where}, field 'warmup_fraction': {config.warmup_fraction}; "
                         "expected 0 <= f < 1.")
    return config


def load_configs(protocol: Protocol, probe: str | Path | None) -> tuple[Protocol, ProbeConfig]:
    """The paper's probe config (``None`` or ``"paper"``), or one read from a JSON file.

    A JSON config holds ``ProbeConfig`` fields at the top level and, optionally, protocol
    overrides under ``"protocol"``.

    Raises
    ------
    BenchError
        The file is missing or not JSON, or a field is unknown or of the wrong type.
    """
    config = ProbeConfig()
    if probe is None or str(probe) == "paper":
        return check_protocol(protocol), config
    path = Path(probe)
    if not path.is_file():
        raise BenchError(f"--probe {probe}: no such file; pass 'paper' or a JSON file of probe "
                         "config fields (see docs/bench.md).")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not valid JSON ({exc}); expected an object of probe config "
                         "fields.") from exc
    if not isinstance(values, dict):
        raise BenchError(f"{path}: expected a JSON object of probe config fields, found "
                         f"{type(values).__name__}.")
    overrides = values.pop("protocol", {})
    if not isinstance(overrides, dict):
        raise BenchError(f"{path}, field 'protocol': expected an object of protocol fields.")
    overrides.pop("metric_definition", None)
    if overrides.get("dataset", protocol.dataset) != protocol.dataset:
        raise BenchError(f"{path}, 'protocol', field 'dataset': {overrides['dataset']!r} but "
                         f"this is the {protocol.dataset} benchmark; leave the field out.")
    protocol = _checked_replace(protocol, overrides, f"{path}, 'protocol'")
    config = _checked_replace(config, values, str(path))
    return check_protocol(protocol, f"{path}, 'protocol'"), check_probe(config, str(path))


def resolve_heads(n_heads: int, width: int) -> int:
    """``n_heads`` when it divides the feature width, else the largest divisor of the width
    below it (a tiny model's D = 32 with 12 heads -> 8)."""
    for heads in range(min(n_heads, width), 0, -1):
        if width % heads == 0:
            return heads
    return 1
