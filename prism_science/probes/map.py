"""The paper's probe: the official MAP pooler over a sample's tokens, then a linear head.

This is the frozen-backbone probe of the VideoPrism paper's CV-for-Science benchmarks, built from
the official attention pooler (:class:`prism_science.models.pooler.AttenTokenPoolingLayer`:
one learned query scaled per dimension, no logit cap, no residual, LayerNorm, no MLP) with
hidden width D (the feature width), dropout 0.5 on the pooled vector, and a linear classifier.
It trains with AdamW and a per-step cosine learning rate (peak 5e-5) for a fixed number of epochs
on all training samples: no early stopping and no held-out training videos.

Multi-class (softmax; optionally the softmax equalization loss, EQL, that KABR uses) or
multi-label (sigmoid), as every probe (see :mod:`prism_science.probes.base`). With
``multiclass=True`` a frames x behaviors matrix (-1/0/1) is read as one-of-K labels, so that
the store pipeline (``prism-science probe train --kind map --multiclass``) trains a softmax probe.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch import nn

from prism_science.errors import ProbeError
from prism_science.models.pooler import AttenTokenPoolingLayer
from prism_science.models.registry import get_config, registered_names, resolve_name
from prism_science.probes.base import BaseProbe, TrainingUnits

DEFAULT_HEADS = 12
"""Heads of the pooler when neither ``n_heads`` nor the features' model says otherwise (the
paper's, = ViT-B's)."""


class _MAPHead(nn.Module):
    """Official MAP pooler (hidden width D) -> dropout on the pooled vector -> linear."""

    def __init__(self, n_features: int, n_outputs: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        # Official classifier: AttenTokenPoolingLayer(hidden_dim=model_dim), query 0 kept.
        self.pooler = AttenTokenPoolingLayer(n_features, n_heads, hidden_dim=n_features)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(n_features, n_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:  # one token per sample
            x = x[:, None, :]
        tokens = rearrange(x, "b ... d -> b (...) d")  # (B, n_tokens, D)
        pooled = self.pooler(tokens)[:, 0]  # (B, D)
        return self.head(self.dropout(pooled))  # (B, K)


def _model_heads(provenance: dict | None) -> int | None:
    """Attention heads of the registered model that made the features, if it is known."""
    name = (provenance or {}).get("model_name")
    if not name:
        return None
    resolved = resolve_name(str(name))
    if resolved not in registered_names():  # a weights folder: not in the registry
        return None
    return int(get_config(resolved).num_heads)


class MAPProbe(BaseProbe):
    """The paper's MAP-pooler probe over the tokens of each sample.

    Input ``X``: ``(N, n_tokens, D)``, a grid ``(N, g, g, D)`` or ``(N, t, h, w, D)`` (every axis
    between the first and the last is a token axis: the official classifier pools all T*h*w
    tokens), or ``(N, D)`` (one token).

    Parameters
    ----------
    n_heads : int, optional
        Heads of the pooler; D must be divisible by it. Default: the heads of the registered
        model named by the ``feature_provenance`` passed to :meth:`fit`, else 12 (the paper's).
    dropout : float
        Dropout on the pooled vector (the paper: 0.5).
    loss : {"ce", "eql"}
        Multi-class loss: softmax cross-entropy or the softmax equalization loss (Tan et al.
        2020; KABR): for each sample, the logits of rare wrong classes (training frequency below
        ``eql_lambda``) are left out of the softmax with probability ``eql_gamma``. Multi-label
        probes always use the sigmoid cross-entropy.
    eql_lambda : float
        Frequency (fraction of training samples) under which a class counts as rare.
    eql_gamma : float
        Probability of leaving a rare wrong class out of a sample's softmax.
    multiclass : bool
        Read a 2-D ``y`` (frames x behaviors, -1/0/1) as one-of-K labels: a row with exactly
        one positive is that class, a row with no positive is left out, a row with several
        positives is refused.
    learning_rate : float
        Peak learning rate of the cosine schedule (the paper: 5e-5).
    weight_decay : float
        AdamW weight decay.
    warmup_fraction : float
        Fraction of the steps with a linear warm-up before the cosine decay (0: none).
    batch_size : int
        Samples per step.
    max_epochs : int
        Epochs, all of them run (no early stopping).
    class_weight : None, "balanced" or dict
        As in :class:`~prism_science.probes.LinearProbe`.
    tune_thresholds : bool
        Tune per-behavior thresholds on held-out videos (off by default: the paper's probe
        trains on every training video; the store pipeline tunes thresholds itself).
    validation_fraction : float
        Fraction of the videos held out when ``tune_thresholds``.
    random_state : int, RandomState or None
        Seed of the initialisation, dropout and batch order.

    Attributes
    ----------
    classes_ : np.ndarray
        Class labels (multi-class) or behavior names (multi-label, and ``multiclass=True``).
    multilabel_ : bool
    n_features_in_ : int
        D.
    n_heads_ : int
        Heads of the trained pooler.
    loss_curve_ : list of float
        Mean training loss per epoch.
    learning_rates_ : list of float
        Learning rate of each optimizer step.
    """

    _input_ndim = None
    # The paper's protocol: fixed epochs, every training sample used.
    early_stopping = False
    n_iter_no_change = 0
    tol = 0.0
    focal_gamma = 0.0

    def __init__(
        self,
        *,
        n_heads: int | None = None,
        dropout: float = 0.5,
        loss: str = "ce",
        eql_lambda: float = 0.05,
        eql_gamma: float = 0.9,
        multiclass: bool = False,
        learning_rate: float = 5e-5,
        weight_decay: float = 1e-4,
        warmup_fraction: float = 0.0,
        batch_size: int = 32,
        max_epochs: int = 30,
        class_weight: Any = None,
        tune_thresholds: bool = False,
        validation_fraction: float = 0.1,
        random_state: Any = None,
    ) -> None:
        self.n_heads = n_heads
        self.dropout = dropout
        self.loss = loss
        self.eql_lambda = eql_lambda
        self.eql_gamma = eql_gamma
        self.multiclass = multiclass
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.warmup_fraction = warmup_fraction
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.class_weight = class_weight
        self.tune_thresholds = tune_thresholds
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    # ------------------------------------------------------------------ module
    def _resolve_heads(self, n_features: int) -> int:
        heads = self.n_heads
        if heads is None:
            heads = _model_heads(getattr(self, "feature_provenance_", None)) or DEFAULT_HEADS
        heads = int(heads)
        if heads < 1 or n_features % heads:
            raise ProbeError(
                f"MAPProbe: the feature width D={n_features} is not divisible by n_heads={heads}; "
                "pass n_heads that divides it (--heads on the CLI; the paper uses the model's "
                "heads, 12 for a base model)."
            )
        return heads

    def _build_module(self, n_features: int, n_outputs: int) -> nn.Module:
        self.n_heads_ = self._resolve_heads(n_features)
        return _MAPHead(n_features, n_outputs, self.n_heads_, float(self.dropout))

    def _check_params(self) -> None:
        if self.loss not in ("ce", "eql"):
            raise ProbeError(f"MAPProbe: loss is {self.loss!r}; expected 'ce' or 'eql'.")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ProbeError(f"MAPProbe: dropout is {self.dropout!r}; expected 0 <= p < 1.")
        if int(self.max_epochs) < 1 or int(self.batch_size) < 1:
            raise ProbeError(
                f"MAPProbe: max_epochs={self.max_epochs} and batch_size={self.batch_size} must "
                "be at least 1."
            )
        if not 0.0 <= float(self.warmup_fraction) < 1.0:
            raise ProbeError(
                f"MAPProbe: warmup_fraction is {self.warmup_fraction!r}; expected 0 <= f < 1."
            )

    # ------------------------------------------------------------------ targets
    def _encode_targets(self, y: Any, n_samples: int, sample_weight: Any,
                        behavior_names: Any) -> tuple[np.ndarray, np.ndarray]:
        self._check_params()
        y_arr = np.asarray(y) if y is not None else None
        if not self.multiclass or y_arr is None or y_arr.ndim != 2:
            targets, weights = super()._encode_targets(y, n_samples, sample_weight,
                                                       behavior_names)
        else:
            targets, weights = self._encode_one_of_k(y_arr, n_samples, sample_weight,
                                                     behavior_names)
        if self.loss == "eql" and self.multilabel_:
            raise ProbeError(
                "MAPProbe: loss='eql' is the softmax equalization loss of a multi-class probe; "
                "pass 1-D labels or multiclass=True (--multiclass), or use loss='ce'."
            )
        if not self.multilabel_:
            counts = np.bincount(targets, weights=(weights > 0).astype(float),
                                 minlength=len(self.classes_))
            self.class_frequencies_ = counts / max(counts.sum(), 1.0)
        return targets, weights

    def _encode_one_of_k(self, y: np.ndarray, n_samples: int, sample_weight: Any,
                         behavior_names: Any) -> tuple[np.ndarray, np.ndarray]:
        if y.shape[0] != n_samples:
            raise ProbeError(
                f"y has {y.shape[0]} rows but X has {n_samples} samples: features and labels "
                "must cover the same frames; check that both come from the same video(s)."
            )
        if y.dtype.kind not in "biuf" or not np.isin(y, (-1, 0, 1)).all():
            raise ProbeError("multiclass=True: y must be a frames x behaviors matrix of -1 "
                             "(unlabeled), 0 and 1; build it with "
                             "prism_science.labels.to_frame_matrix.")
        n_positive = (y == 1).sum(1)
        several = np.flatnonzero(n_positive > 1)
        if len(several):
            raise ProbeError(
                f"multiclass=True: {len(several)} frame(s) have several behaviors at once "
                f"(first: row {int(several[0])}); a multi-class probe needs one behavior per "
                "frame. Fix the labels or train a multi-label probe (no --multiclass)."
            )
        names = (np.arange(y.shape[1]) if behavior_names is None
                 else np.asarray(list(behavior_names)))
        if names.shape != (y.shape[1],):
            raise ProbeError(
                f"behavior_names has {names.size} names but y has {y.shape[1]} columns; pass "
                "one name per column of y."
            )
        sw = (np.ones(n_samples, np.float32) if sample_weight is None
              else np.asarray(sample_weight, np.float32).reshape(-1))
        keep = (n_positive == 1) & (sw > 0)
        if not keep.any():
            raise ProbeError("multiclass=True: no frame has exactly one behavior; label bouts "
                             "first.")
        encoded = np.where(keep, np.argmax(y == 1, axis=1), 0).astype(np.int64)
        self.classes_ = names
        self.multilabel_ = False
        self.skipped_classes_ = []
        counts = np.bincount(encoded[keep], minlength=len(names)).astype(float)
        class_w = self._class_weight_vector(counts)
        weights = np.where(keep, sw * class_w[encoded], 0.0)
        return encoded, weights.astype(np.float32)

    # ------------------------------------------------------------------ loss
    def _loss(self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor):
        if self.multilabel_ or self.loss != "eql" or not self.module_.training:
            return super()._loss(logits, targets, weights)
        # Softmax EQL (Tan et al. 2020): w_k = 1 - beta * T_lambda(f_k) * (1 - y_k) masks the
        # logits of rare wrong classes out of the denominator; beta ~ Bernoulli(gamma).
        rare = torch.as_tensor(self.class_frequencies_ < float(self.eql_lambda))
        beta = torch.rand(logits.shape, generator=self._eql_generator) < float(self.eql_gamma)
        wrong = torch.ones_like(logits, dtype=torch.bool)
        wrong[torch.arange(len(targets)), targets] = False
        dropped = beta & rare[None, :] & wrong
        masked = logits.masked_fill(dropped, float("-inf"))
        log_prob = torch.log_softmax(masked, dim=-1).gather(1, targets[:, None])[:, 0]
        total = weights.sum()
        return (-log_prob * weights).sum() / total.clamp_min(1e-12), total

    # ------------------------------------------------------------------ training
    def _train(self, module: nn.Module, units: TrainingUnits, train_idx: np.ndarray,
               val_idx: np.ndarray, generator: torch.Generator) -> None:
        """Fixed epochs of AdamW with a per-step (warm-up +) cosine learning rate."""
        n_train = len(train_idx)
        self.module_ = module
        self._eql_generator = torch.Generator().manual_seed(
            int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        optimizer = torch.optim.AdamW(module.parameters(), lr=float(self.learning_rate),
                                      weight_decay=float(self.weight_decay))
        batch_size = int(self.batch_size)
        steps_per_epoch = max(1, math.ceil(n_train / batch_size))
        total_steps = steps_per_epoch * int(self.max_epochs)
        warmup = int(round(float(self.warmup_fraction) * total_steps))
        peak = float(self.learning_rate)

        def rate(step: int) -> float:
            if step < warmup:
                return peak * (step + 1) / warmup
            progress = (step - warmup) / max(1, total_steps - warmup)
            return 0.5 * peak * (1.0 + math.cos(math.pi * progress))

        self.loss_curve_: list[float] = []
        self.learning_rates_: list[float] = []
        self.validation_scores_: list[float] = []
        train_idx_t = torch.from_numpy(train_idx)
        step = 0
        for _ in range(int(self.max_epochs)):
            module.train()
            order = train_idx_t[torch.randperm(n_train, generator=generator)]
            epoch_loss, epoch_weight = 0.0, 0.0
            for start in range(0, n_train, batch_size):
                idx = order[start : start + batch_size]
                lr = rate(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                self.learning_rates_.append(lr)
                step += 1
                loss, total = self._loss(module(units.inputs[idx]), units.targets[idx],
                                         units.weights[idx])
                if float(total) == 0.0:
                    continue
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item() * float(total)
                epoch_weight += float(total)
            self.loss_curve_.append(epoch_loss / max(epoch_weight, 1e-12))
        module.eval()
        self.n_epochs_ = self.n_iter_ = int(self.max_epochs)
        self.best_loss_ = self.loss_curve_[-1] if self.loss_curve_ else math.inf

    def _predict_logits(self, X: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        """Logits ``(N, n_outputs)`` in batches of ``batch_size`` (token inputs are large)."""
        outputs = []
        step = max(1, int(self.batch_size))
        with torch.no_grad():
            for start in range(0, len(X), step):
                outputs.append(self.module_(torch.from_numpy(X[start : start + step])).numpy())
        if not outputs:
            return np.zeros((0, self._n_outputs()), np.float32)
        return np.concatenate(outputs)
