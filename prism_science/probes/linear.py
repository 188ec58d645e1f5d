"""Linear probe: standardised features -> one linear layer (logistic regression, in torch)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from prism_science.errors import ProbeError
from prism_science.probes.base import BaseProbe, Standardize, TrainingUnits, report_epoch


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
    the saved probe).

    Parameters
    ----------
    solver : {"lbfgs", "adam"}
        ``"lbfgs"`` (default): full-batch L-BFGS to the optimum of the L2-regularised loss
        (deterministic, fast on 100k frames; ``max_epochs`` = iterations, early stopping not
        used). ``"adam"``: mini-batch AdamW with early stopping, like the other probes.
    class_weight : None, "balanced" or dict
        Multi-class: weight per class (``"balanced"`` = n / (n_classes * count)). Multi-label:
        weight of the positive frames of each behavior (``"balanced"`` = negatives / positives,
        clipped to [1, 1000]).
    focal_gamma : float
        Focal-loss exponent; 0 = plain cross-entropy. 2 helps rare behaviors.
    learning_rate, weight_decay : float
        AdamW learning rate and weight decay; ``weight_decay`` is also the L2 penalty
        (coefficient of ``0.5 * ||W||^2`` added to the mean loss) of the L-BFGS solver.
    batch_size : int
        Samples per step.
    max_epochs : int
        Upper bound on passes over the training data (L-BFGS: on iterations).
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
        solver: str = "lbfgs",
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
        self.solver = solver
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
        if self.solver not in ("lbfgs", "adam"):
            raise ProbeError(f"solver must be 'lbfgs' or 'adam', found {self.solver!r}.")
        return _LinearModule(n_features, n_outputs)

    def _train_lbfgs(
        self, module: nn.Module, units: TrainingUnits, train_idx: np.ndarray
    ) -> None:
        """Full-batch L-BFGS on the training units (deterministic; no early stopping needed:
        ``weight_decay`` is an L2 penalty on the weights, as in logistic regression)."""
        self._init_standardize(module, units.inputs[train_idx])
        self.module_ = module
        sel = torch.from_numpy(train_idx)
        with torch.no_grad():  # standardise once: every L-BFGS evaluation sees the full batch
            inputs = module.standardize(units.inputs[sel])
        targets, weights = units.targets[sel], units.weights[sel]
        head = module.head
        penalized = [head.weight]
        optimizer = torch.optim.LBFGS(
            head.parameters(), lr=1.0, max_iter=int(self.max_epochs), history_size=20,
            tolerance_grad=1e-7, tolerance_change=float(self.tol) * 1e-3,
            line_search_fn="strong_wolfe",
        )
        self.loss_curve_ = []
        self.validation_scores_ = []
        reported = [0]

        def closure() -> torch.Tensor:
            optimizer.zero_grad(set_to_none=True)
            loss, _ = self._loss(head(inputs), targets, weights)
            loss = loss + 0.5 * float(self.weight_decay) * sum((p * p).sum() for p in penalized)
            loss.backward()
            self.loss_curve_.append(loss.item())
            # L-BFGS evaluates the closure a few times per iteration: report its iterations
            iteration = int(optimizer.state[head.weight].get("n_iter", 0))
            if iteration > reported[0]:
                reported[0] = iteration
                report_epoch(min(iteration, int(self.max_epochs)), int(self.max_epochs))
            return loss

        module.train()
        optimizer.step(closure)
        module.eval()
        state = optimizer.state[head.weight]
        self.n_epochs_ = self.n_iter_ = int(state.get("n_iter", 0))
        self.best_loss_ = self.loss_curve_[-1] if self.loss_curve_ else math.inf
