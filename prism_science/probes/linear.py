"""Linear probe: standardised features -> one linear layer (logistic regression, in torch)."""

from __future__ import annotations

from typing import Any

from torch import nn

from prism_science.probes.base import BaseProbe, Standardize


class _LinearModule(nn.Module):
    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.standardize = Standardize(n_features)
        self.head = nn.Linear(n_features, n_outputs)

    def forward(self, x):  # (B, D) -> (B, K)
        return self.head(self.standardize(x))


class LinearProbe(BaseProbe):
    """Logistic regression on per-frame features, softmax (multi-class) or sigmoid (multi-label).

    Input ``X`` is ``(N, D)`` float. Features are standardised with training statistics (kept in
    the saved probe). Trained with AdamW on mini-batches; L2 regularisation via ``weight_decay``.

    Parameters
    ----------
    class_weight : None, "balanced" or dict
        Multi-class: weight per class (``"balanced"`` = n / (n_classes * count)). Multi-label:
        weight of the positive frames of each behavior (``"balanced"`` = negatives / positives,
        clipped to [1, 1000]).
    focal_gamma : float
        Focal-loss exponent; 0 = plain cross-entropy. 2 helps rare behaviors.
    learning_rate, weight_decay : float
        AdamW settings.
    batch_size : int
        Samples per step.
    max_epochs : int
        Upper bound on passes over the training data.
    early_stopping : bool
        Stop when the validation loss (held-out videos, see ``fit(groups=...)``) has not improved
        by ``tol`` for ``n_iter_no_change`` epochs and keep the best weights. Without a
        validation split the training loss is monitored instead.
    validation_fraction : float
        Fraction of videos (groups) held out for early stopping and threshold tuning.
    n_iter_no_change : int
        Patience in epochs.
    tol : float
        Minimum loss improvement that resets the patience.
    tune_thresholds : bool
        Multi-label: choose each behavior's threshold on the validation split to maximise F1
        (otherwise 0.5); stored in ``thresholds_``.
    random_state : int, RandomState or None
        Seeds initialisation, shuffling and the split; training is deterministic for an int.

    Attributes
    ----------
    classes_ : np.ndarray
        Class labels (multi-class) or behavior names / indices (multi-label).
    n_features_in_ : int
        Feature dimension D.
    multilabel_ : bool
    thresholds_ : np.ndarray of shape (n_behaviors,) or None
    skipped_classes_ : list
        Behaviors without a positive training frame (probability 0).
    module_ : torch.nn.Module
    loss_curve_, validation_scores_ : list of float
    """

    def __init__(
        self,
        *,
        class_weight: Any = None,
        focal_gamma: float = 0.0,
        learning_rate: float = 1e-2,
        weight_decay: float = 1e-4,
        batch_size: int = 1024,
        max_epochs: int = 100,
        early_stopping: bool = True,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 5,
        tol: float = 1e-4,
        tune_thresholds: bool = True,
        random_state: Any = None,
    ) -> None:
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
        return _LinearModule(n_features, n_outputs)
