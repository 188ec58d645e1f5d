"""Saving and loading probes: ``probe.safetensors`` (torch weights) + ``probe.json`` (the rest).

Nothing is pickled. ``probe.json`` holds the probe kind and hyper-parameters, ``classes_``,
thresholds, skipped behaviors, the features' provenance (model name, weights sha256, token mode,
window parameters, feature key), bout post-processing settings, and the sha256 of the weights
file, which :func:`load_probe` verifies.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file
from sklearn.utils.validation import check_is_fitted

from prism_science.errors import ProbeError
from prism_science.probes.attention import AttentionProbe
from prism_science.probes.base import BaseProbe
from prism_science.probes.linear import LinearProbe
from prism_science.probes.mlp import MLPProbe
from prism_science.probes.temporal import TemporalProbe

logger = logging.getLogger(__name__)

FORMAT_NAME = "prism-science-probe"
FORMAT_VERSION = 1
WEIGHTS_FILE = "probe.safetensors"
META_FILE = "probe.json"

PROBE_KINDS: dict[str, type[BaseProbe]] = {
    "linear": LinearProbe,
    "mlp": MLPProbe,
    "attention": AttentionProbe,
    "temporal": TemporalProbe,
}


def make_probe(kind: str, **params: Any) -> BaseProbe:
    """A new, unfitted probe of ``kind`` (``linear``, ``mlp``, ``attention``, ``temporal``)."""
    if kind not in PROBE_KINDS:
        raise ProbeError(f"unknown probe kind {kind!r}; expected one of {sorted(PROBE_KINDS)}.")
    return PROBE_KINDS[kind](**params)


def _kind_of(probe: BaseProbe) -> str:
    for kind, cls in PROBE_KINDS.items():
        if type(probe) is cls:
            return kind
    raise ProbeError(
        f"cannot save a {type(probe).__name__}: expected a probe of kind {sorted(PROBE_KINDS)}."
    )


def _json_params(probe: BaseProbe) -> dict[str, Any]:
    params = {}
    for name, value in probe.get_params(deep=False).items():
        if isinstance(value, np.random.RandomState):
            value = None
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, dict):  # class_weight: keys may be ints
            value = {"__pairs__": [[_plain(k), float(v)] for k, v in value.items()]}
        elif isinstance(value, np.generic):
            value = value.item()
        params[name] = value
    return params


def _restore_params(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    restored = {}
    for name, value in params.items():
        if isinstance(value, dict) and "__pairs__" in value:
            value = dict(value["__pairs__"])
        elif isinstance(value, list) and name == "hidden_sizes":
            value = tuple(value)
        restored[name] = value
    return restored


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_probe(
    probe: BaseProbe, directory: str | Path, postprocess: dict[str, int] | None = None
) -> Path:
    """Write a fitted probe to ``directory`` (created if needed).

    Parameters
    ----------
    probe : BaseProbe
        A fitted probe.
    directory : str or Path
        Output folder; receives ``probe.safetensors`` and ``probe.json``.
    postprocess : dict, optional
        Bout post-processing settings to apply at prediction (``{"min_bout": int,
        "max_gap": int}``); defaults to the probe's ``postprocess_`` attribute if set.

    Returns
    -------
    Path
        The folder.
    """
    check_is_fitted(probe, "module_")
    kind = _kind_of(probe)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().clone() for k, v in probe.module_.state_dict().items()}
    weights_path = directory / WEIGHTS_FILE
    save_file(state, str(weights_path), metadata={"format": FORMAT_NAME})
    classes = probe.classes_
    meta = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "class": type(probe).__name__,
        "params": _json_params(probe),
        "classes": [_plain(c) for c in classes.tolist()],
        "classes_dtype": classes.dtype.str,
        "multilabel": bool(probe.multilabel_),
        "behavior_names": [str(c) for c in classes.tolist()],
        "n_features_in": int(probe.n_features_in_),
        "thresholds": None if probe.thresholds_ is None else [float(t) for t in probe.thresholds_],
        "skipped_classes": [_plain(c) for c in probe.skipped_classes_],
        "feature_provenance": getattr(probe, "feature_provenance_", None),
        "postprocess": postprocess if postprocess is not None else getattr(
            probe, "postprocess_", {"min_bout": 1, "max_gap": 0}
        ),
        "training": {"n_epochs": int(probe.n_epochs_), "best_loss": float(probe.best_loss_)},
        "weights_file": WEIGHTS_FILE,
        "weights_sha256": _sha256(weights_path),
    }
    (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=_plain))
    logger.info("saved %s probe to %s", kind, directory)
    return directory


def load_probe(directory: str | Path) -> BaseProbe:
    """Read a probe written by :func:`save_probe`.

    Parameters
    ----------
    directory : str or Path
        Folder with ``probe.json`` and ``probe.safetensors``.

    Returns
    -------
    BaseProbe
        The fitted probe (``feature_provenance_`` and ``postprocess_`` restored).

    Raises
    ------
    ProbeError
        When a file is missing, from another format, or the weights do not match their sha256.
    """
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise ProbeError(
            f"{meta_path} not found: {directory} is not a probe folder; train one with "
            "`prism-science probe train ... --out DIR`."
        )
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ProbeError(f"{meta_path} is not valid JSON ({exc}); re-save the probe.") from exc
    if meta.get("format") != FORMAT_NAME or meta.get("format_version", 0) > FORMAT_VERSION:
        raise ProbeError(
            f"{meta_path}: field 'format' is {meta.get('format')!r} version "
            f"{meta.get('format_version')!r}, expected {FORMAT_NAME!r} <= {FORMAT_VERSION}; "
            "upgrade prism-science or retrain the probe."
        )
    weights_path = directory / meta.get("weights_file", WEIGHTS_FILE)
    if not weights_path.is_file():
        raise ProbeError(f"{weights_path} not found: the probe folder is incomplete; re-save it.")
    found_sha = _sha256(weights_path)
    if found_sha != meta.get("weights_sha256"):
        raise ProbeError(
            f"{weights_path}: sha256 {found_sha[:12]} differs from {meta_path} "
            f"({str(meta.get('weights_sha256'))[:12]}): the weights are corrupt or from another "
            "probe; re-save the probe."
        )
    kind = meta["kind"]
    probe = make_probe(kind, **_restore_params(kind, meta["params"]))
    probe.classes_ = np.asarray(meta["classes"], dtype=np.dtype(meta["classes_dtype"]))
    probe.multilabel_ = bool(meta["multilabel"])
    probe.n_features_in_ = int(meta["n_features_in"])
    probe.thresholds_ = None if meta["thresholds"] is None else np.asarray(meta["thresholds"])
    probe.skipped_classes_ = list(meta["skipped_classes"])
    probe.feature_provenance_ = meta.get("feature_provenance")
    probe.postprocess_ = meta.get("postprocess") or {"min_bout": 1, "max_gap": 0}
    probe.n_epochs_ = probe.n_iter_ = meta["training"]["n_epochs"]
    probe.best_loss_ = meta["training"]["best_loss"]
    module = probe._build_module(probe.n_features_in_, len(probe.classes_))
    try:
        module.load_state_dict(load_file(str(weights_path)), strict=True)
    except RuntimeError as exc:
        raise ProbeError(
            f"{weights_path} does not fit a {kind} probe with the parameters in {meta_path}: "
            f"{exc}. Re-save the probe."
        ) from exc
    module.eval()
    probe.module_ = module
    return probe
