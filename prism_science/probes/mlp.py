"""MLP probe: standardised features -> hidden layers (GELU, dropout) -> logits."""

from __future__ import annotations

from typing import Any

from torch import nn

from prism_science.probes.base import BaseProbe, Standardize


class _MLPModule(nn.Module):
    def __init__(
        self, n_features: int, n_outputs: int, hidden_sizes: tuple[int, ...], dropout: float
    ) -> None:
        super().__init__()
        self.standardize = Standardize(n_features)
        layers: list[nn.Module] = []
        width = n_features
        for hidden in hidden_sizes:
            layers += [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x):  # (B, D) -> (B, K)
        return self.head(self.body(self.standardize(x)))


class MLPProbe(BaseProbe):
    """Multi-layer perceptron on per-frame features ``(N, D)``.

    Parameters
    ----------
    hidden_sizes : tuple of int
        Width of each hidden layer.
    dropout : float
        Dropout after each hidden layer (training only).
    class_weight, focal_gamma, learning_rate, weight_decay, batch_size, max_epochs,
    early_stopping, validation_fraction, n_iter_no_change, tol, tune_thresholds, random_state
        As in :class:`~prism_science.probes.LinearProbe`.

    Attributes
    ----------
    As in :class:`~prism_science.probes.LinearProbe`.
    """

    def __init__(
        self,
        *,
        hidden_sizes: tuple[int, ...] = (256,),
        dropout: float = 0.1,
        class_weight: Any = None,
        focal_gamma: float = 0.0,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 256,
        max_epochs: int = 100,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        tol: float = 1e-4,
        tune_thresholds: bool = True,
        random_state: Any = None,
    ) -> None:
        self.hidden_sizes = hidden_sizes
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
        return _MLPModule(n_features, n_outputs, tuple(int(h) for h in self.hidden_sizes),
                          float(self.dropout))
