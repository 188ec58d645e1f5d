"""Attention probe: multi-head attention pooling (MAP) of a token grid, then a linear head.

This is the frozen-backbone probe of the VideoPrism paper: one learned query attends over all
tokens of a sample, followed (as in the official MAP head) by LayerNorm and a residual MLP.
"""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange
from torch import nn

from prism_science.probes.base import BaseProbe, Standardize


class _MAPModule(nn.Module):
    def __init__(
        self, n_features: int, n_outputs: int, hidden_dim: int, n_heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.standardize = Standardize(n_features)
        self.query = nn.Parameter(torch.randn(1, 1, hidden_dim) * 0.02)
        self.attention = nn.MultiheadAttention(
            hidden_dim, n_heads, dropout=dropout, kdim=n_features, vdim=n_features,
            batch_first=True,
        )
        self.norm = nn.LayerNorm(hidden_dim)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim, 2 * hidden_dim), nn.GELU(), nn.Linear(2 * hidden_dim, hidden_dim)
        )
        self.head = nn.Linear(hidden_dim, n_outputs)

    def forward(self, x):
        if x.ndim == 2:  # one token per sample
            x = x[:, None, :]
        tokens = self.standardize(rearrange(x, "b ... d -> b (...) d"))  # (B, n_tokens, D)
        query = self.query.expand(len(tokens), -1, -1)
        pooled, _ = self.attention(query, tokens, tokens, need_weights=False)  # (B, 1, H)
        pooled = pooled[:, 0]
        normed = self.norm(pooled)
        return self.head(normed + self.mlp(normed))  # (B, K)


class AttentionProbe(BaseProbe):
    """MAP attention probe over the tokens of each sample.

    Input ``X``: ``(N, n_tokens, D)``, a grid ``(N, g, g, D)`` (or ``(N, t, g, g, D)``; all axes
    between the first and the last are flattened into tokens), or ``(N, D)`` (one token).

    Parameters
    ----------
    hidden_dim : int
        Width of the query and of the pooled embedding; must be divisible by ``n_heads``.
    n_heads : int
        Attention heads.
    dropout : float
        Attention dropout (training only).
    class_weight, focal_gamma, learning_rate, weight_decay, batch_size, max_epochs,
    early_stopping, validation_fraction, n_iter_no_change, tol, tune_thresholds, random_state
        As in :class:`~prism_science.probes.LinearProbe`.
    """

    _input_ndim = None

    def __init__(
        self,
        *,
        hidden_dim: int = 128,
        n_heads: int = 4,
        dropout: float = 0.0,
        class_weight: Any = None,
        focal_gamma: float = 0.0,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 128,
        max_epochs: int = 100,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        tol: float = 1e-4,
        tune_thresholds: bool = True,
        random_state: Any = None,
    ) -> None:
        self.hidden_dim = hidden_dim
        self.n_heads = n_heads
        self.dropout = dropout
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

    def _build_module(self, n_features: int, n_outputs: int) -> nn.Module:
        return _MAPModule(n_features, n_outputs, int(self.hidden_dim), int(self.n_heads),
                          float(self.dropout))
