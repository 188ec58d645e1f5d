"""Temporal probe: dilated 1-D convolutions over each video's per-frame feature sequence.

Outputs one prediction per frame, using context of ``(kernel_size - 1) / 2 * (2**n_layers - 1)``
frames on each side. Training cuts videos into chunks with that much context around each chunk
(context frames carry no loss), so a frame sees exactly the same inputs in training as when the
whole video is predicted at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from einops import rearrange
from sklearn.utils.validation import check_array
from torch import nn

from prism_science.errors import ProbeError
from prism_science.probes.base import BaseProbe, Standardize, TrainingUnits


def _is_sequence_list(X: Any) -> bool:
    """True for a list/tuple of per-video 2-D arrays (not a plain list of rows)."""
    return isinstance(X, (list, tuple)) and len(X) > 0 and all(np.ndim(x) == 2 for x in X)


class _DilatedBlock(nn.Module):
    def __init__(self, width: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv = nn.Conv1d(
            width, width, kernel_size, dilation=dilation, padding=dilation * (kernel_size - 1) // 2
        )
        self.act = nn.GELU()
        self.drop = nn.Dropout(dropout)
        self.mix = nn.Conv1d(width, width, 1)

    def forward(self, h):  # (B, H, L) -> (B, H, L)
        return self.mix(self.drop(self.act(self.conv(h))))


class _TemporalConvModule(nn.Module):
    """Input ``(B, L, D + 1)``: features plus a last channel that is 1 on real frames, 0 on padding;
    padded frames are zeroed after every layer, which equals zero padding at the video's ends."""

    def __init__(
        self, n_features: int, n_outputs: int, hidden: int, n_layers: int, kernel_size: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.standardize = Standardize(n_features)
        self.input = nn.Conv1d(n_features, hidden, 1)
        self.blocks = nn.ModuleList(
            _DilatedBlock(hidden, kernel_size, 2**i, dropout) for i in range(n_layers)
        )
        self.head = nn.Conv1d(hidden, n_outputs, 1)

    def forward(self, x):
        valid = rearrange(x[..., -1:], "b l one -> b one l")
        h = rearrange(self.standardize(x[..., :-1]), "b l d -> b d l") * valid
        h = self.input(h) * valid
        for block in self.blocks:
            h = (h + block(h)) * valid
        return rearrange(self.head(h), "b k l -> b l k")  # (B, L, K)


class TemporalProbe(BaseProbe):
    """Per-frame classifier over per-frame feature sequences (dilated temporal convolutions).

    Input ``X``: a list of ``(T_i, D)`` arrays, one per video; or ``(N, D)`` with ``groups``
    (video id per row; rows of a video in time order); or ``(N, D)`` alone (one video).
    ``y`` (and ``sample_weight``) may be a list of per-video arrays or one array of all rows.
    Predictions are per row, in the order of the rows of ``X`` (lists are concatenated).

    Parameters
    ----------
    hidden_dim : int
        Channels of the convolutions.
    n_layers : int
        Dilated blocks (dilation 1, 2, 4, ...).
    kernel_size : int
        Odd temporal kernel size.
    dropout : float
        Dropout inside each block (training only).
    chunk_length : int
        Frames with a loss per training chunk (context frames are added around it).
    batch_size : int
        Chunks per step.
    class_weight, focal_gamma, learning_rate, weight_decay, max_epochs, early_stopping,
    validation_fraction, n_iter_no_change, tol, tune_thresholds, random_state
        As in :class:`~prism_science.probes.LinearProbe`; the validation split holds out whole
        videos.
    """

    _input_ndim = 2

    def __init__(
        self,
        *,
        hidden_dim: int = 64,
        n_layers: int = 4,
        kernel_size: int = 3,
        dropout: float = 0.1,
        chunk_length: int = 256,
        class_weight: Any = None,
        focal_gamma: float = 0.0,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 16,
        max_epochs: int = 50,
        early_stopping: bool = True,
        validation_fraction: float = 0.2,
        n_iter_no_change: int = 5,
        tol: float = 1e-4,
        tune_thresholds: bool = True,
        random_state: Any = None,
    ) -> None:
        self.hidden_dim = hidden_dim
        self.n_layers = n_layers
        self.kernel_size = kernel_size
        self.dropout = dropout
        self.chunk_length = chunk_length
        self.class_weight = class_weight
        self.focal_gamma = focal_gamma
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.tune_thresholds = tune_thresholds
        self.random_state = random_state

    @property
    def context_frames(self) -> int:
        """Frames of context on each side of a prediction (the receptive-field radius)."""
        return (int(self.kernel_size) - 1) // 2 * (2 ** int(self.n_layers) - 1)

    def _build_module(self, n_features: int, n_outputs: int) -> nn.Module:
        if int(self.kernel_size) % 2 != 1:
            raise ProbeError(f"kernel_size must be odd, found {self.kernel_size}.")
        return _TemporalConvModule(
            n_features, n_outputs, int(self.hidden_dim), int(self.n_layers),
            int(self.kernel_size), float(self.dropout),
        )

    # ------------------------------------------------------------------ inputs
    def _check_X(self, X: Any, groups: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        if _is_sequence_list(X):
            if groups is not None:
                raise ProbeError(
                    "groups must be None when X is a list of per-video arrays (each array is "
                    "one video)."
                )
            arrays = [
                check_array(x, dtype=(np.float32, np.float64), input_name=f"X[{i}]")
                for i, x in enumerate(X)
            ]
            dims = {a.shape[1] for a in arrays}
            if len(dims) > 1:
                raise ProbeError(
                    f"the videos of X have different feature dimensions {sorted(dims)}; all "
                    "must come from the same encoder and token mode."
                )
            groups = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
            X = np.concatenate(arrays).astype(np.float32, copy=False)
            self._check_n_features(X.shape[1], reset)
            return np.ascontiguousarray(X), groups
        X, groups = super()._check_X(X, groups, reset)
        return X, (np.zeros(len(X), np.int64) if groups is None else groups)

    @staticmethod
    def _sequences(groups: np.ndarray) -> list[np.ndarray]:
        """Row indices of each video, in row order, videos in order of first appearance."""
        _, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
        order = np.argsort(first)  # group rank by first appearance
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        rows = np.argsort(rank[inverse], kind="stable")
        counts = np.bincount(rank[inverse], minlength=len(order))
        return np.split(rows, np.cumsum(counts)[:-1])

    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None,
            behavior_names: Any = None, feature_provenance: dict | None = None) -> TemporalProbe:
        """Train on per-video sequences; see :meth:`BaseProbe.fit` and the class docstring."""
        if _is_sequence_list(X):
            if isinstance(y, (list, tuple)):
                y = np.concatenate([np.asarray(part) for part in y])
            if isinstance(sample_weight, (list, tuple)):
                sample_weight = np.concatenate([np.asarray(part) for part in sample_weight])
        return super().fit(X, y, groups, sample_weight, behavior_names, feature_provenance)

    def _training_units(
        self, X: np.ndarray, targets: np.ndarray, weights: np.ndarray, groups: np.ndarray | None
    ) -> TrainingUnits:
        core = max(1, int(self.chunk_length))
        context = self.context_frames
        length = core + 2 * context
        starts, sequence_ids = [], []
        sequences = self._sequences(groups)
        for seq_id, rows in enumerate(sequences):
            for start in range(0, len(rows), core):
                starts.append((seq_id, start))
                sequence_ids.append(seq_id)
        n_chunks = len(starts)
        inputs = np.zeros((n_chunks, length, X.shape[1] + 1), np.float32)
        chunk_targets = np.zeros((n_chunks, length) + targets.shape[1:], targets.dtype)
        chunk_weights = np.zeros((n_chunks, length) + weights.shape[1:], np.float32)
        for c, (seq_id, start) in enumerate(starts):
            rows = sequences[seq_id]
            lo, hi = max(0, start - context), min(len(rows), start + core + context)
            offset = lo - (start - context)
            sel = rows[lo:hi]
            inputs[c, offset : offset + len(sel), :-1] = X[sel]
            inputs[c, offset : offset + len(sel), -1] = 1.0
            chunk_targets[c, offset : offset + len(sel)] = targets[sel]
            core_lo, core_hi = start, min(len(rows), start + core)
            core_sel = rows[core_lo:core_hi]
            pos = context + np.arange(len(core_sel))
            chunk_weights[c, pos] = weights[core_sel]
        return TrainingUnits(
            torch.from_numpy(inputs), torch.from_numpy(chunk_targets),
            torch.from_numpy(chunk_weights), np.asarray(sequence_ids),
        )

    def _init_standardize(self, module: nn.Module, inputs: torch.Tensor) -> None:
        flat = inputs.reshape(-1, inputs.shape[-1])
        real = flat[flat[:, -1] > 0, :-1]
        if len(real):
            module.standardize.set_statistics(real)

    def _predict_logits(self, X: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        logits = np.zeros((len(X), self._n_outputs()), np.float32)
        with torch.no_grad():
            for rows in self._sequences(groups):
                seq = np.ones((1, len(rows), X.shape[1] + 1), np.float32)
                seq[0, :, :-1] = X[rows]
                logits[rows] = self.module_(torch.from_numpy(seq))[0].numpy()
        return logits
