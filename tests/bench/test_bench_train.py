"""The benchmark probe on streamed tokens: learns, follows the schedule, reads by rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_science.bench.protocol import ProbeConfig, resolve_heads
from prism_science.bench.train import eql_loss, predict_scores, train_probe


class CountingSource:
    """A token source over an in-memory array that records every request."""

    def __init__(self, tokens: np.ndarray) -> None:
        self.tokens, self.requests = tokens, []

    def get(self, units: np.ndarray) -> np.ndarray:
        self.requests.append(len(units))
        return self.tokens[units].astype(np.float32)


def planted(n: int = 96, k: int = 3, tokens: int = 6, width: int = 24, seed: int = 0):
    """Tokens whose class k shows as a shift of dimension k in every token."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    x = rng.normal(0, 1, (n, tokens, width)).astype(np.float16)
    x[np.arange(n), :, labels] += 3.0
    return x, np.eye(k, dtype=np.int8)[labels], labels


@pytest.mark.parametrize("loss", ["bce", "eql"])
def test_probe_learns_a_planted_signal_streaming_batches(loss):
    x, targets, labels = planted()
    source = CountingSource(x)
    config = ProbeConfig(epochs=15, batch_size=16, learning_rate=3e-3, n_heads=12)
    trained = train_probe(source, np.arange(64), targets[:64], 24, loss, config, seed=0)
    assert max(source.requests) == 16  # never more than a batch at once
    assert len(trained.loss_curve) == 15 and trained.loss_curve[-1] < trained.loss_curve[0]
    assert trained.n_heads == 12  # divides 24
    rates = trained.learning_rates
    assert len(rates) == 15 * 4 and rates[0] == pytest.approx(3e-3)
    assert rates[-1] < 1e-5  # cosine to zero, every epoch run
    scores = predict_scores(trained.module, source, np.arange(64, 96), loss)
    assert np.mean(scores.argmax(1) == labels[64:]) >= 0.8
    if loss == "eql":
        np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)


def test_same_seed_same_probe_other_seed_other_probe():
    x, targets, _ = planted()
    config = ProbeConfig(epochs=2, batch_size=16)
    runs = [train_probe(CountingSource(x), np.arange(96), targets, 24, "bce", config, seed)
            for seed in (0, 0, 1)]
    state = [r.module.state_dict()["head.weight"] for r in runs]
    assert torch.equal(state[0], state[1]) and not torch.equal(state[0], state[2])


def test_heads_fall_back_to_a_divisor_of_the_width():
    assert resolve_heads(12, 768) == 12 and resolve_heads(12, 32) == 8
    assert resolve_heads(12, 7) == 7 and resolve_heads(4, 30) == 3


def test_eql_leaves_rare_wrong_classes_out_of_the_softmax():
    logits = torch.tensor([[0.0, 5.0, 5.0]])
    target = torch.tensor([0])
    rare = torch.tensor([False, True, False])
    always = eql_loss(logits, target, rare, 1.0, torch.Generator().manual_seed(0))
    never = eql_loss(logits, target, rare, 0.0, torch.Generator().manual_seed(0))
    # gamma 1: class 1 (rare, wrong) is masked: -log(e^0 / (e^0 + e^5))
    assert float(always) == pytest.approx(np.log1p(np.exp(5.0)), rel=1e-6)
    assert float(never) == pytest.approx(np.log(1 + 2 * np.exp(5.0)), rel=1e-6)
