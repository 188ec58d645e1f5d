"""The paper's probe trained on streamed tokens: MAP pooler -> dropout 0.5 -> linear.

Same head as :class:`prism_science.probes.MAPProbe` (the official
:class:`~prism_science.models.pooler.AttenTokenPoolingLayer`, hidden width D), but fed batch by
batch from a :class:`~prism_science.bench.cache.TokenSource`, so that no subset is ever held in
RAM: each step reads its rows of the memory-mapped cache (or computes them online).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prism_science.bench.cache import TokenSource
from prism_science.bench.protocol import ProbeConfig, resolve_heads
from prism_science.errors import BenchError
from prism_science.models.pooler import AttenTokenPoolingLayer

logger = logging.getLogger(__name__)


class MAPHead(nn.Module):
    """Official MAP pooler (hidden width D) over a sample's tokens -> dropout -> linear."""

    def __init__(self, width: int, n_classes: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        # Official classifier: AttenTokenPoolingLayer(hidden_dim=model_dim), query 0 kept.
        self.pooler = AttenTokenPoolingLayer(width, n_heads, hidden_dim=width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, n_tokens, D) -> (B, K) logits."""
        return self.head(self.dropout(self.pooler(tokens)[:, 0]))


def eql_loss(logits: torch.Tensor, targets: torch.Tensor, rare: torch.Tensor, gamma: float,
             generator: torch.Generator) -> torch.Tensor:
    """Softmax equalization loss (Tan et al. 2020), KABR's: for each sample the logits of rare
    wrong classes leave the softmax with probability ``gamma``.

    ``targets``: (B,) class index; ``rare``: (K,) bool (training frequency < lambda).
    """
    beta = torch.rand(logits.shape, generator=generator) < gamma
    wrong = torch.ones_like(logits, dtype=torch.bool)
    wrong[torch.arange(len(targets)), targets] = False
    masked = logits.masked_fill(beta & rare[None, :] & wrong, float("-inf"))
    return -torch.log_softmax(masked, dim=-1).gather(1, targets[:, None]).mean()


@dataclass
class TrainedProbe:
    """A trained head and what it was trained with."""

    module: MAPHead
    n_heads: int
    loss_curve: list[float]
    learning_rates: list[float]
    class_frequencies: list[float]


def _lr(step: int, total: int, warmup: int, peak: float) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * peak * (1.0 + math.cos(math.pi * progress))


def train_probe(source: TokenSource, units: np.ndarray, targets: np.ndarray, width: int,
                loss: str, config: ProbeConfig, seed: int) -> TrainedProbe:
    """Train the head on ``units`` (rows of ``source``) for a fixed number of epochs.

    Parameters
    ----------
    source : TokenSource
        Where each step's tokens come from.
    units : np.ndarray
        (N,) int64 unit of each training sample.
    targets : np.ndarray
        (N, K) int8 in {0, 1}; one-hot rows for ``loss="eql"``.
    width : int
        D, the token width.
    loss : {"bce", "eql"}
        Sigmoid BCE (multi-label) or softmax EQL (multi-class).
    config : ProbeConfig
        Hyper-parameters (AdamW, per-step cosine from ``learning_rate``, ``epochs``).
    seed : int
        Seed of the initialisation, the batch order, dropout and EQL's draws.

    Returns
    -------
    TrainedProbe
    """
    n, k = targets.shape
    if n == 0:
        raise BenchError("no training sample: the train subset is empty; check the split.")
    if loss == "eql" and not (targets.sum(1) == 1).all():
        raise BenchError("loss 'eql' needs exactly one class per training sample.")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    heads = resolve_heads(config.n_heads, width)
    if heads != config.n_heads:
        logger.info("pooler heads %d -> %d (D=%d is not divisible by %d)", config.n_heads,
                    heads, width, config.n_heads)
    module = MAPHead(width, k, heads, config.dropout)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    frequencies = targets.mean(0).astype(np.float64)
    rare = torch.as_tensor(frequencies < config.eql_lambda)
    steps_per_epoch = math.ceil(n / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = int(round(config.warmup_fraction * total))
    losses, rates, step = [], [], 0
    for _ in range(config.epochs):
        module.train()
        order = torch.randperm(n, generator=generator).numpy()
        epoch_loss = 0.0
        for first in range(0, n, config.batch_size):
            idx = order[first : first + config.batch_size]
            lr = _lr(step, total, warmup, config.learning_rate)
            for group in optimizer.param_groups:
                group["lr"] = lr
            rates.append(lr)
            step += 1
            logits = module(torch.from_numpy(source.get(units[idx])))
            y = torch.from_numpy(targets[idx].astype(np.float32))
            if loss == "eql":
                value = eql_loss(logits, y.argmax(1), rare, config.eql_gamma, generator)
            else:
                value = nn.functional.binary_cross_entropy_with_logits(logits, y)
            optimizer.zero_grad(set_to_none=True)
            value.backward()
            optimizer.step()
            epoch_loss += float(value.detach()) * len(idx)
        losses.append(epoch_loss / n)
    module.eval()
    return TrainedProbe(module, heads, losses, rates, frequencies.tolist())


def predict_scores(module: MAPHead, source: TokenSource, units: np.ndarray, loss: str,
                   batch_size: int = 64) -> np.ndarray:
    """(N, K) float32 scores: sigmoid (multi-label) or softmax (multi-class) probabilities."""
    out = []
    module.eval()
    with torch.no_grad():
        for first in range(0, len(units), batch_size):
            logits = module(torch.from_numpy(source.get(units[first : first + batch_size])))
            out.append((torch.softmax(logits, -1) if loss == "eql"
                        else torch.sigmoid(logits)).numpy())
    k = module.head.out_features
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, k), np.float32)


def save_head(module: MAPHead, path: Path) -> None:
    """The head's tensors as safetensors."""
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))


def load_head(path: Path, width: int, n_classes: int, n_heads: int, dropout: float) -> MAPHead:
    """A head saved by :func:`save_head`, in eval mode."""
    module = MAPHead(width, n_classes, n_heads, dropout)
    module.load_state_dict(load_file(str(path)))
    return module.eval()
