"""The shared training engine of every probe: targets, losses, validation split, early stopping.

A probe is a scikit-learn classifier whose model is a small torch module trained on frozen
features. Two target layouts are supported:

- **multi-class** (softmax): ``y`` is 1-D, ``(N,)``, any labels; ``classes_`` are the sorted unique
  labels. Frames that should not count (unlabeled) get ``sample_weight`` 0.
- **multi-label** (sigmoid): ``y`` is 2-D, ``(N, n_behaviors)`` int with 1 = behavior present,
  0 = absent and -1 = unlabeled; unlabeled entries are masked out of the loss (partial labeling).
  ``classes_`` are the behavior names (``behavior_names`` fit argument) or ``arange(n_behaviors)``.
  A behavior with no positive example is skipped with a warning: its probabilities are 0 and it is
  listed in ``skipped_classes_``.

Subclasses define the torch module (``_build_module``) and how inputs become training units
(``_training_units``); frame-wise probes train on rows, the temporal probe on chunks of videos.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import logging
import math
import warnings
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted
from torch import nn
from torch.nn import functional as F

from prism_science.errors import ProbeError

logger = logging.getLogger(__name__)

# Feature provenance fields that must match for a probe to accept features; the window fields
# only warn (same encoder and tokens, other temporal context).
PROVENANCE_STRICT = ("model_name", "weights_sha256", "token_mode", "feature_shape")
PROVENANCE_SOFT = ("window",)

EpochCallback = Callable[[int, int], None]

# The per-epoch progress callback of the fits running in this context (thread); a context
# rather than a fit argument keeps the scikit-learn fit signature and reaches nested fits.
_EPOCH_CALLBACK: contextvars.ContextVar[EpochCallback | None] = contextvars.ContextVar(
    "prism_probe_epoch_callback", default=None
)


@contextlib.contextmanager
def fit_progress(callback: EpochCallback | None) -> Iterator[None]:
    """Report the epochs of every probe fit in this block to ``callback(epoch, n_epochs)``.

    ``epoch`` counts from 1 after each finished epoch (L-BFGS: each finished iteration) and
    ``n_epochs`` is the probe's ``max_epochs``; early stopping ends a fit before ``n_epochs``.
    The callback runs in the training thread; an exception it raises (e.g. to cancel) stops
    the fit and propagates out of ``fit``. The setting is per thread (a context variable).

    Parameters
    ----------
    callback : callable or None
        ``callback(epoch: int, n_epochs: int) -> None``; ``None`` turns reporting off.

    Examples
    --------
    >>> with fit_progress(lambda epoch, n: print(f"epoch {epoch}/{n}")):  # doctest: +SKIP
    ...     probe.fit(X, y)
    """
    token = _EPOCH_CALLBACK.set(callback)
    try:
        yield
    finally:
        _EPOCH_CALLBACK.reset(token)


def report_epoch(epoch: int, n_epochs: int) -> None:
    """Hand a finished epoch to the callback of :func:`fit_progress`, if one is set."""
    callback = _EPOCH_CALLBACK.get()
    if callback is not None:
        callback(int(epoch), int(n_epochs))


def summarize_provenance(provenance: dict | None, feature_key: str | None = None) -> dict:
    """The part of a feature set's provenance a probe keeps and checks.

    Parameters
    ----------
    provenance : dict or None
        As stored with the features (``store.read_features(...).provenance``): ``model_name``,
        ``weights_sha256``, ``window`` (with ``tokens`` and ``grid``), ``feature_shape``, ...
    feature_key : str, optional
        The store key the features were read from (e.g. ``"prism-tiny-p16-f16-r128/mean"``).

    Returns
    -------
    dict
        ``model_name``, ``weights_sha256``, ``token_mode`` (``mean``, ``grid2``, ``full``),
        ``feature_shape``, ``window`` (the other window parameters) and ``feature_key``.
    """
    provenance = dict(provenance or {})
    window = dict(provenance.get("window") or {})
    tokens = provenance.get("token_mode") or window.get("tokens")
    if tokens == "grid":
        tokens = f"grid{window.get('grid')}"
    summary = {
        "model_name": provenance.get("model_name"),
        "weights_sha256": provenance.get("weights_sha256"),
        "token_mode": tokens,
        "feature_shape": list(provenance["feature_shape"])
        if provenance.get("feature_shape") is not None else None,
        "window": {k: v for k, v in window.items() if k not in ("tokens", "grid")},
    }
    if feature_key is not None or provenance.get("feature_key") is not None:
        summary["feature_key"] = feature_key or provenance.get("feature_key")
    return summary


@dataclass
class TrainingUnits:
    """Tensors the engine batches over: the first axis is the unit (a frame or a chunk).

    Attributes
    ----------
    inputs : torch.Tensor
        ``(U, ...)`` float32 inputs of the module.
    targets : torch.Tensor
        ``(U, ...)`` long class indices (multi-class) or ``(U, ..., K)`` float 0/1 (multi-label).
    weights : torch.Tensor
        Same leading shape as ``targets`` (per-entry for multi-label), float; 0 = excluded.
    unit_groups : np.ndarray
        ``(U,)`` group (video) id of each unit, used to split validation by video.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    unit_groups: np.ndarray


class Standardize(nn.Module):
    """Per-feature standardisation with statistics fixed at fit time (saved with the probe)."""

    def __init__(self, n_features: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("scale", torch.ones(n_features))

    def set_statistics(self, features: torch.Tensor) -> None:
        """Set mean and scale from ``features`` of shape ``(M, n_features)``."""
        std, mean = torch.std_mean(features.float(), dim=0, unbiased=False)
        self.mean.copy_(mean)
        self.scale.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.scale


def _torch_seed(random_state: Any) -> int:
    """A torch seed from a scikit-learn ``random_state`` (None -> drawn from numpy)."""
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if random_state is None:
        return int(np.random.randint(0, 2**31 - 1))
    return int(random_state)


def split_by_group(
    unit_groups: np.ndarray, fraction: float, rng: np.random.Generator, min_units: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Split unit indices into train / validation so that no group is on both sides.

    Parameters
    ----------
    unit_groups : np.ndarray
        ``(U,)`` group id of each unit.
    fraction : float
        Target fraction of groups (at least one) held out for validation.
    rng : np.random.Generator
        Source of randomness.
    min_units : int
        Validation is dropped (empty) when it would hold fewer units than this or leave no
        training unit.

    Returns
    -------
    train, val : np.ndarray
        int64 index arrays; ``val`` is empty when no valid split exists.
    """
    all_units = np.arange(len(unit_groups))
    unique = np.unique(unit_groups)
    if fraction <= 0 or len(unique) < 2:
        return all_units, all_units[:0]
    n_val = max(1, int(math.ceil(fraction * len(unique))))
    n_val = min(n_val, len(unique) - 1)
    val_groups = rng.permutation(unique)[:n_val]
    is_val = np.isin(unit_groups, val_groups)
    if is_val.sum() < min_units or is_val.all():
        return all_units, all_units[:0]
    return all_units[~is_val], all_units[is_val]


def best_f1_threshold(truth: np.ndarray, proba: np.ndarray) -> float:
    """The probability threshold that maximises F1 of ``proba >= t`` against binary ``truth``.

    Parameters
    ----------
    truth : np.ndarray
        ``(M,)`` 0/1 labels (unlabeled entries already removed).
    proba : np.ndarray
        ``(M,)`` float scores.

    Returns
    -------
    float
        The threshold (midway between neighbouring scores); 0.5 when ``truth`` has no positive.
    """
    truth = np.asarray(truth).astype(bool)
    if truth.sum() == 0:
        return 0.5
    order = np.argsort(-proba, kind="stable")
    sorted_proba = proba[order]
    true_pos = np.cumsum(truth[order])
    n_pred = np.arange(1, len(truth) + 1)
    f1 = 2 * true_pos / (n_pred + truth.sum())
    # Only cut where the score changes, so that ties are all in or all out.
    distinct = np.r_[sorted_proba[1:] < sorted_proba[:-1], True]
    f1 = np.where(distinct, f1, -1.0)
    best = int(np.argmax(f1))
    if best + 1 < len(sorted_proba):
        return float((sorted_proba[best] + sorted_proba[best + 1]) / 2)
    return float(sorted_proba[best] - 1e-6)


class BaseProbe(ClassifierMixin, BaseEstimator, metaclass=ABCMeta):
    """Base class of the torch probes (see the module docstring for targets and outputs).

    Subclasses list every hyper-parameter in their own ``__init__`` (scikit-learn reads them from
    its signature) and implement ``_build_module``, ``_check_X`` and, for non frame-wise inputs,
    ``_training_units`` / ``_predict_logits``.
    """

    # Filled by subclasses' __init__; listed here for type checkers.
    class_weight: Any
    focal_gamma: float
    learning_rate: float
    weight_decay: float
    batch_size: int
    max_epochs: int
    early_stopping: bool
    validation_fraction: float
    n_iter_no_change: int
    tol: float
    tune_thresholds: bool
    random_state: Any

    # ------------------------------------------------------------------ hooks for subclasses
    @abstractmethod
    def _build_module(self, n_features: int, n_outputs: int) -> nn.Module:
        """The torch module: inputs of one unit batch -> logits ``(..., n_outputs)``."""

    # Number of axes of a frame-wise input: 2 = (N, D); None = (N, ..., D) of any rank >= 2.
    _input_ndim: int | None = 2

    def _check_X(self, X: Any, groups: Any, reset: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate ``X``; returns float32 ``(N, ..., D)`` and groups ``(N,)`` or None."""
        X = check_array(
            X,
            dtype=(np.float32, np.float64),
            allow_nd=self._input_ndim is None,
            ensure_all_finite=True,
            input_name="X",
        ).astype(np.float32, copy=False)
        X = np.ascontiguousarray(X)
        self._check_n_features(X.shape[-1], reset)
        return X, self._check_groups(groups, len(X))

    def _check_n_features(self, n_features: int, reset: bool) -> None:
        if reset:
            self.n_features_in_ = int(n_features)
        elif n_features != self.n_features_in_:
            raise ProbeError(
                f"X has {n_features} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input: the features come from another "
                "encoder or token mode; re-extract them or retrain the probe."
            )

    @staticmethod
    def _check_groups(groups: Any, n_samples: int) -> np.ndarray | None:
        if groups is None:
            return None
        groups = np.asarray(groups).reshape(-1)
        if len(groups) != n_samples:
            raise ProbeError(
                f"groups has {len(groups)} entries but X has {n_samples} samples; pass one "
                "video id per sample."
            )
        return groups

    def _training_units(
        self, X: np.ndarray, targets: np.ndarray, weights: np.ndarray, groups: np.ndarray | None
    ) -> TrainingUnits:
        """Frame-wise default: one unit per row; groups default to one per row."""
        unit_groups = np.arange(len(X)) if groups is None else np.asarray(groups)
        return TrainingUnits(
            torch.from_numpy(X), torch.from_numpy(targets), torch.from_numpy(weights), unit_groups
        )

    def _predict_logits(self, X: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """Frame-wise default: logits ``(N, n_outputs)`` in batches."""
        outputs = []
        with torch.no_grad():
            for start in range(0, len(X), 8192):
                batch = torch.from_numpy(X[start : start + 8192])
                outputs.append(self.module_(batch).float().numpy())
        if not outputs:
            return np.zeros((0, self._n_outputs()), np.float32)
        return np.concatenate(outputs)

    # ------------------------------------------------------------------ targets
    def _encode_targets(
        self, y: Any, n_samples: int, sample_weight: Any, behavior_names: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """Targets and per-entry weights; sets ``classes_``, ``multilabel_``, skipped classes."""
        if y is None:
            raise ValueError(
                f"{type(self).__name__} requires y to be passed, but the target y is None; "
                "pass labels (N,) or a frames x behaviors matrix."
            )
        y = np.asarray(y)
        if y.ndim == 0 or y.shape[0] != n_samples:
            raise ProbeError(
                f"y has {y.shape[:1]} rows but X has {n_samples} samples: features and labels "
                "must cover the same frames; check that both come from the same video(s)."
            )
        if sample_weight is None:
            sw = np.ones(n_samples, np.float32)
        else:
            sw = np.asarray(sample_weight, dtype=np.float32).reshape(-1)
            if sw.shape[0] != n_samples or not np.all(np.isfinite(sw)) or np.any(sw < 0):
                raise ProbeError(
                    f"sample_weight must be {n_samples} finite non-negative numbers, found "
                    f"shape {np.shape(sample_weight)}; pass one weight per sample."
                )
        if not np.any(sw > 0):
            raise ProbeError(
                "sample weights are all zero: no sample is left to train on; give the labeled "
                "samples a positive weight."
            )
        if y.ndim == 2:
            return self._encode_multilabel(y, sw, behavior_names)
        if y.ndim != 1:
            raise ProbeError(
                f"y must be 1-D (multi-class labels) or 2-D (frames x behaviors with -1/0/1), "
                f"found shape {y.shape}."
            )
        check_classification_targets(y)
        self.multilabel_ = False
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ProbeError(
                f"y holds only one class ({classes.tolist()}): a classifier needs at least 2 "
                "classes; label examples of another behavior (or of 'no behavior')."
            )
        self.classes_ = classes
        self.skipped_classes_ = []
        counts = np.bincount(encoded, weights=sw, minlength=len(classes))
        class_w = self._class_weight_vector(counts)
        weights = sw * class_w[encoded]
        return encoded.astype(np.int64), weights.astype(np.float32)

    def _encode_multilabel(
        self, y: np.ndarray, sw: np.ndarray, behavior_names: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        if y.dtype.kind not in "biuf" or not np.isin(y, (-1, 0, 1)).all():
            found = np.unique(y)[:10].tolist() if y.dtype.kind in "biuf" else str(y.dtype)
            raise ProbeError(
                f"multi-label y must hold only -1 (unlabeled), 0 and 1; found values {found}. "
                "Build it with prism_science.labels.to_frame_matrix."
            )
        n_behaviors = y.shape[1]
        if behavior_names is None:
            self.classes_ = np.arange(n_behaviors)
        else:
            names = np.asarray(list(behavior_names))
            if names.shape != (n_behaviors,):
                raise ProbeError(
                    f"behavior_names has {names.size} names but y has {n_behaviors} columns; "
                    "pass one name per column of y."
                )
            self.classes_ = names
        self.multilabel_ = True
        y = y.astype(np.int64)
        labeled = (y >= 0) & (sw[:, None] > 0)
        if not labeled.any():
            raise ProbeError(
                "y has no labeled entry (all -1): label at least one bout, or pass the labeled "
                "frames only."
            )
        positives = ((y == 1) & labeled).sum(0)
        negatives = ((y == 0) & labeled).sum(0)
        skipped = np.flatnonzero(positives == 0)
        self.skipped_classes_ = self.classes_[skipped].tolist()
        if len(skipped):
            message = (
                f"behaviors {self.skipped_classes_} have no positive labeled frame: they are "
                "skipped (probability 0); label at least one bout of each to train them."
            )
            warnings.warn(message, UserWarning, stacklevel=3)
        weights = labeled.astype(np.float32) * sw[:, None]
        weights[:, skipped] = 0.0
        if self.class_weight is not None:
            pos_w = self._positive_weights(positives, negatives)
            weights = np.where(y == 1, weights * pos_w[None, :], weights)
        return np.clip(y, 0, 1).astype(np.float32), weights.astype(np.float32)

    def _class_weight_vector(self, counts: np.ndarray) -> np.ndarray:
        """Per-class loss weights (multi-class) from ``class_weight``."""
        n_classes = len(counts)
        if self.class_weight is None:
            return np.ones(n_classes, np.float32)
        if self.class_weight == "balanced":
            return (counts.sum() / (n_classes * np.maximum(counts, 1e-12))).astype(np.float32)
        if isinstance(self.class_weight, dict):
            return np.array(
                [float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()], np.float32
            )
        raise ProbeError(
            f"class_weight must be None, 'balanced' or a dict class -> weight; found "
            f"{self.class_weight!r}."
        )

    def _positive_weights(self, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
        """Weight of positive entries per behavior (multi-label) from ``class_weight``."""
        if self.class_weight == "balanced":
            ratio = negatives / np.maximum(positives, 1)
            return np.clip(ratio, 1.0, 1000.0).astype(np.float32)
        if isinstance(self.class_weight, dict):
            return np.array(
                [float(self.class_weight.get(c, 1.0)) for c in self.classes_.tolist()], np.float32
            )
        raise ProbeError(
            f"class_weight must be None, 'balanced' or a dict behavior -> weight of its positive "
            f"frames; found {self.class_weight!r}."
        )

    def _n_outputs(self) -> int:
        return len(self.classes_)

    # ------------------------------------------------------------------ loss
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor):
        """Weighted mean loss over entries with weight > 0 (returns loss, total weight)."""
        gamma = float(self.focal_gamma)
        if self.multilabel_:
            logits = logits.reshape(-1, logits.shape[-1])
            targets = targets.reshape(logits.shape)
            weights = weights.reshape(logits.shape)
            per_entry = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
            if gamma > 0:
                prob = torch.sigmoid(logits)
                p_true = torch.where(targets > 0.5, prob, 1 - prob)
                per_entry = per_entry * (1 - p_true).pow(gamma)
        else:
            logits = logits.reshape(-1, logits.shape[-1])
            targets = targets.reshape(-1)
            weights = weights.reshape(-1)
            log_prob = F.log_softmax(logits, dim=-1).gather(1, targets[:, None])[:, 0]
            per_entry = -log_prob
            if gamma > 0:
                per_entry = per_entry * (1 - log_prob.exp()).pow(gamma)
        total = weights.sum()
        return (per_entry * weights).sum() / total.clamp_min(1e-12), total

    # ------------------------------------------------------------------ fit / predict
    def fit(
        self,
        X: Any,
        y: Any,
        groups: Any = None,
        sample_weight: Any = None,
        behavior_names: Any = None,
        feature_provenance: dict | None = None,
    ) -> BaseProbe:
        """Train the probe.

        Parameters
        ----------
        X : array-like
            Features; the layout depends on the probe (see its class docstring).
        y : array-like
            ``(N,)`` multi-class labels, or ``(N, n_behaviors)`` int in {-1, 0, 1} (multi-label,
            -1 = unlabeled).
        groups : array-like of shape (N,), optional
            Video id of each sample; the validation split (early stopping, thresholds) holds out
            whole videos. Without groups, samples are split at random.
        sample_weight : array-like of shape (N,), optional
            Non-negative weight per sample; 0 excludes a sample.
        behavior_names : sequence of str, optional
            Names of the columns of a multi-label ``y`` (become ``classes_``).
        feature_provenance : dict, optional
            Provenance of the features as stored with them (model name, weights sha256, window,
            feature shape; see :func:`summarize_provenance`); saved with the probe and checked
            by :meth:`check_features`.

        Returns
        -------
        self
        """
        X, groups = self._check_X(X, groups, reset=True)
        targets, weights = self._encode_targets(y, len(X), sample_weight, behavior_names)
        self.feature_provenance_ = (
            summarize_provenance(feature_provenance) if feature_provenance else None
        )
        seed = _torch_seed(self.random_state)
        rng = np.random.default_rng(seed)
        generator = torch.Generator().manual_seed(seed)

        units = self._training_units(X, targets, weights, groups)
        if self.early_stopping or self.tune_thresholds:
            train_idx, val_idx = split_by_group(
                units.unit_groups, self.validation_fraction, rng, min_units=2
            )
        else:
            train_idx, val_idx = np.arange(len(units.inputs)), np.arange(0)
        # Initialisation and dropout draw from torch's global generator: seed it, and restore
        # the caller's state afterwards.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = self._build_module(self.n_features_in_, self._n_outputs())
            if getattr(self, "solver", "adam") == "lbfgs":
                self._train_lbfgs(module, units, train_idx)
            else:
                self._train(module, units, train_idx, val_idx, generator)
        self.module_ = module
        self.thresholds_ = self._tune_thresholds(units, val_idx)
        logger.info(
            "%s trained %d epochs on %d units (%d validation units), best loss %.4f",
            type(self).__name__, self.n_epochs_, len(train_idx), len(val_idx), self.best_loss_,
        )
        return self

    def _train(
        self,
        module: nn.Module,
        units: TrainingUnits,
        train_idx: np.ndarray,
        val_idx: np.ndarray,
        generator: torch.Generator,
    ) -> None:
        """The epoch loop: AdamW, early stopping, best weights restored into ``module``."""
        n_train = len(train_idx)
        self._init_standardize(module, units.inputs[train_idx])
        self.module_ = module
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        use_val = self.early_stopping and len(val_idx) > 0
        best_loss, best_state, stale = math.inf, None, 0
        self.loss_curve_: list[float] = []
        self.validation_scores_: list[float] = []
        # Small training sets get smaller batches (at least 8 steps per epoch), so that the
        # early-stopping patience, counted in epochs, still spans enough optimizer steps.
        batch_size = max(1, min(int(self.batch_size), math.ceil(n_train / 8)))
        train_idx_t = torch.from_numpy(train_idx)
        n_epochs = 0
        for epoch in range(1, int(self.max_epochs) + 1):
            n_epochs = epoch
            module.train()
            order = train_idx_t[torch.randperm(n_train, generator=generator)]
            epoch_loss, epoch_weight = 0.0, 0.0
            for start in range(0, n_train, batch_size):
                idx = order[start : start + batch_size]
                loss, total = self._loss(
                    module(units.inputs[idx]), units.targets[idx], units.weights[idx]
                )
                if float(total) == 0.0:
                    continue
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item() * float(total)
                epoch_weight += float(total)
            train_loss = epoch_loss / max(epoch_weight, 1e-12)
            self.loss_curve_.append(train_loss)
            monitored = train_loss
            if use_val:
                monitored = self._evaluate_loss(units, val_idx)
                self.validation_scores_.append(monitored)
            report_epoch(epoch, int(self.max_epochs))
            if monitored < best_loss - float(self.tol):
                best_loss, stale = monitored, 0
                best_state = copy.deepcopy(module.state_dict())
            else:
                stale += 1
                if stale >= int(self.n_iter_no_change):
                    break
        if best_state is not None:
            module.load_state_dict(best_state)
        module.eval()
        self.n_epochs_ = n_epochs
        self.n_iter_ = n_epochs
        self.best_loss_ = best_loss

    def _init_standardize(self, module: nn.Module, inputs: torch.Tensor) -> None:
        """Fit the ``Standardize`` layer (attribute ``standardize``) on the training inputs."""
        standardize = getattr(module, "standardize", None)
        if isinstance(standardize, Standardize) and len(inputs):
            standardize.set_statistics(inputs.reshape(-1, inputs.shape[-1]))

    def _evaluate_loss(self, units: TrainingUnits, idx: np.ndarray) -> float:
        self.module_.eval()
        total_loss, total_weight = 0.0, 0.0
        with torch.no_grad():
            for start in range(0, len(idx), 4096):
                sel = torch.from_numpy(idx[start : start + 4096])
                loss, weight = self._loss(
                    self.module_(units.inputs[sel]), units.targets[sel], units.weights[sel]
                )
                total_loss += float(loss) * float(weight)
                total_weight += float(weight)
        return total_loss / total_weight if total_weight > 0 else math.inf

    def _tune_thresholds(self, units: TrainingUnits, val_idx: np.ndarray) -> np.ndarray | None:
        """Per-behavior max-F1 thresholds on the validation units (multi-label only)."""
        if not self.multilabel_:
            return None
        n_out = self._n_outputs()
        thresholds = np.full(n_out, 0.5)
        if not self.tune_thresholds or len(val_idx) == 0:
            return thresholds
        sel = torch.from_numpy(val_idx)
        with torch.no_grad():
            proba = torch.sigmoid(self.module_(units.inputs[sel])).reshape(-1, n_out).numpy()
        truth = units.targets[sel].reshape(-1, n_out).numpy()
        labeled = units.weights[sel].reshape(-1, n_out).numpy() > 0
        for k in range(n_out):
            mask = labeled[:, k]
            if truth[mask, k].sum() > 0:
                thresholds[k] = best_f1_threshold(truth[mask, k], proba[mask, k])
        return thresholds

    def predict_proba(self, X: Any, groups: Any = None) -> np.ndarray:
        """Probabilities, ``(N, n_classes)`` float; columns follow ``classes_``.

        Multi-class: softmax over classes (rows sum to 1). Multi-label: independent sigmoid per
        behavior; skipped behaviors (no positive training example) are 0.
        """
        check_is_fitted(self, "module_")
        X, groups = self._check_X(X, groups, reset=False)
        self.module_.eval()
        logits = torch.from_numpy(np.ascontiguousarray(self._predict_logits(X, groups)))
        if self.multilabel_:
            proba = torch.sigmoid(logits).double().numpy()
            skipped = np.isin(self.classes_, np.asarray(self.skipped_classes_, self.classes_.dtype))
            proba[:, skipped] = 0.0
            return proba
        return torch.softmax(logits.double(), dim=-1).numpy()

    def predict(self, X: Any, groups: Any = None) -> np.ndarray:
        """Predictions: ``(N,)`` labels from ``classes_`` (multi-class) or ``(N, n_behaviors)``
        int 0/1 with the per-behavior ``thresholds_`` (multi-label)."""
        proba = self.predict_proba(X, groups)
        if self.multilabel_:
            return (proba >= self.thresholds_[None, :]).astype(np.int64)
        return self.classes_[np.argmax(proba, axis=1)]

    # ------------------------------------------------------------------ provenance
    def check_features(self, provenance: dict | None, source: str = "these features") -> None:
        """Raise :class:`ProbeError` when ``provenance`` is not the one the probe was trained on.

        Parameters
        ----------
        provenance : dict or None
            Provenance of the features to apply the probe to (``store.read_features(...)
            .provenance``); compared through :func:`summarize_provenance`.
        source : str
            Where the features come from, for the message (e.g. ``"store x.zarr, video v1"``).
        """
        check_is_fitted(self, "module_")
        trained = getattr(self, "feature_provenance_", None)
        if not trained or not provenance:
            return
        provenance = summarize_provenance(provenance)
        for field in PROVENANCE_STRICT:
            if trained.get(field) is not None and trained.get(field) != provenance.get(field):
                raise ProbeError(
                    f"probe trained on features of model {trained.get('model_name')!r} "
                    f"(sha {str(trained.get('weights_sha256'))[:12]}, token mode "
                    f"{trained.get('token_mode')!r}); {source} are from "
                    f"{provenance.get('model_name')!r} (sha "
                    f"{str(provenance.get('weights_sha256'))[:12]}, token mode "
                    f"{provenance.get('token_mode')!r}): field {field!r} differs. Re-extract "
                    f"with --model {trained.get('model_name')} or retrain the probe."
                )
        for field in PROVENANCE_SOFT:
            if trained.get(field) and provenance.get(field) and trained[field] != provenance[field]:
                logger.warning(
                    "%s: %s %r differs from the probe's %r (same model; predictions may shift)",
                    source, field, provenance[field], trained[field],
                )

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.non_deterministic = False
        return tags
