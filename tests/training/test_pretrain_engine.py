"""The engine: one train_step (accumulation, NaN guard, clipping) on its own, then whole runs
of a plain objective (NaN steps, checkpoints, accumulation)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from prism_science.errors import CheckpointError, TrainingError
from prism_training.config import apply_overrides, get_config
from prism_training.engine import NanGuard, load_checkpoint, train, train_step


class _Regression(nn.Module):
    """loss = mean squared error of a linear map; NaN on the steps listed in ``bad``."""

    def __init__(self, bad: set[int]) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 1)
        self.bad = bad
        self.calls = 0

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        self.calls += 1
        loss = ((self.linear(batch["x"]) - batch["y"]) ** 2).mean()
        if batch["step"].item() in self.bad:
            loss = loss * float("nan")
        return {"loss": loss}


class _Batches(torch.utils.data.Dataset):
    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        step = self.first + k
        gen = torch.Generator().manual_seed(step)
        x = torch.randn(8, 3, generator=gen)
        return {"x": x, "y": x @ torch.tensor([[1.0], [-2.0], [0.5]]), "step": torch.tensor(step)}


class _Scaled(nn.Module):
    """loss = ``scale`` x mean squared error of a linear map; NaN when the batch says so."""

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)
        self.scale = scale

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        loss = self.scale * ((self.linear(batch["x"]) - batch["y"]) ** 2).mean()
        if batch.get("nan", False):
            loss = loss * float("nan")
        return {"loss": loss, "half_loss": loss.detach() / 2}


def _data(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    return {"x": x, "y": torch.randn(n, 2, generator=gen)}


def _grads(module: nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


def test_train_step_accumulation_equals_one_big_batch() -> None:
    data = _data(8)
    halves = [{k: v[:4] for k, v in data.items()}, {k: v[4:] for k, v in data.items()}]
    big, accumulated = _Scaled(), _Scaled()
    opt_big = torch.optim.SGD(big.parameters(), lr=0.1)
    opt_acc = torch.optim.SGD(accumulated.parameters(), lr=0.1)
    m_big = train_step(big, opt_big, iter([data]), NanGuard(3), step=0)
    m_acc = train_step(accumulated, opt_acc, iter(halves), NanGuard(3), step=0, accum_steps=2)
    for a, b in zip(_grads(big), _grads(accumulated), strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(big.parameters(), accumulated.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    assert m_acc["loss"] == pytest.approx(m_big["loss"], rel=1e-6)
    assert m_acc["half_loss"] == pytest.approx(m_acc["loss"] / 2, rel=1e-6)
    assert m_acc["grad_norm"] == pytest.approx(m_big["grad_norm"], rel=1e-6)
    # Two micro-batches consumed, no more.
    rest = iter([*halves, data])
    train_step(_Scaled(), torch.optim.SGD(_Scaled().parameters(), lr=0.1), rest, NanGuard(3),
               step=0, accum_steps=2)
    assert next(rest) is data


def test_train_step_skips_and_counts_a_nan_step() -> None:
    model = _Scaled()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    guard = NanGuard(max_bad_steps=1, lr=0.1, checkpoint=Path("run/checkpoint.pt"))
    # A NaN in the second micro-batch spoils the whole step.
    bad = iter([_data(4), {**_data(4, 1), "nan": True}])
    metrics = train_step(model, optimizer, bad, guard, step=7, accum_steps=2)
    assert (guard.skipped, guard.bad_run) == (1, 1) and "grad_norm" not in metrics
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters()) and not optimizer.state
    train_step(model, optimizer, iter([_data(4)]), guard, step=8)
    assert (guard.skipped, guard.bad_run) == (1, 0)  # a good step ends the bad run
    assert not torch.equal(before[0], model.linear.weight)
    # More than max_bad_steps=1 skipped in a row stop the run, naming the last checkpoint.
    train_step(model, optimizer, iter([{**_data(4), "nan": True}]), guard, step=9)
    with pytest.raises(TrainingError, match=r"2 consecutive .* step 10\).*run/checkpoint\.pt"):
        train_step(model, optimizer, iter([{**_data(4), "nan": True}]), guard, step=10)
    assert guard.skipped == 3


def test_train_step_skips_a_finite_loss_with_a_non_finite_gradient() -> None:
    class _InfGrad(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, batch):
            return {"loss": torch.sqrt(self.w.abs()).sum()}  # d/dw at 0 is infinite

    model = _InfGrad()
    guard = NanGuard(3)
    metrics = train_step(model, torch.optim.SGD(model.parameters(), lr=1.0), iter([{}]), guard,
                         step=0)
    assert guard.skipped == 1 and metrics["loss"] == 0.0 and model.w.item() == 0.0


def test_train_step_clipping_bounds_the_gradient_norm() -> None:
    def total_norm(module: nn.Module) -> float:
        return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in _grads(module)])))

    clipped, free = _Scaled(scale=100.0), _Scaled(scale=100.0)
    m_clipped = train_step(clipped, torch.optim.SGD(clipped.parameters(), lr=0.0),
                           iter([_data(8)]), NanGuard(3), step=0, grad_clip=0.5)
    m_free = train_step(free, torch.optim.SGD(free.parameters(), lr=0.0), iter([_data(8)]),
                        NanGuard(3), step=0, grad_clip=0.0)
    assert m_free["grad_norm"] > 5.0
    assert m_clipped["grad_norm"] == pytest.approx(m_free["grad_norm"])  # the norm before clipping
    assert total_norm(clipped) == pytest.approx(0.5, rel=1e-4)
    assert total_norm(free) == pytest.approx(m_free["grad_norm"], rel=1e-5)
    # Same direction, only shorter.
    for a, b in zip(_grads(clipped), _grads(free), strict=True):
        torch.testing.assert_close(a * m_free["grad_norm"] / 0.5, b, rtol=1e-4, atol=1e-5)


def _cfg(tmp_path: Path, *extra: str):
    return apply_overrides(get_config("stage1_test"), [
        f"out_dir={tmp_path}", "total_steps=40", "warmup_steps=2", "lr=0.05",
        "ckpt_every=10", "log_every=1", *extra])


def test_nan_steps_are_skipped_and_loss_falls(tmp_path: Path) -> None:
    objective = _Regression(bad={3, 4})
    summary = train(_cfg(tmp_path), objective, lambda a, b, r, w: _Batches(a, b), tmp_path)
    assert summary["finished"] and summary["skipped_steps"] == 2
    logs = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logs[-1]["loss"] < 0.5 * logs[0]["loss"]
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["step"] == 40 and set(ckpt["rng"]) >= {"torch", "numpy", "python"}
    assert json.loads(ckpt["extra"])["skipped_steps"] == 2


def test_too_many_bad_steps_stop_the_run(tmp_path: Path) -> None:
    objective = _Regression(bad=set(range(5, 40)))
    with pytest.raises(TrainingError, match="consecutive steps had a non-finite loss"):
        train(_cfg(tmp_path, "max_bad_steps=3"), objective,
              lambda a, b, r, w: _Batches(a, b), tmp_path)


def test_accumulation_runs_micro_batches(tmp_path: Path) -> None:
    objective = _Regression(bad=set())
    train(_cfg(tmp_path, "accum_steps=2", "total_steps=5"), objective,
          lambda a, b, r, w: _Batches(a, b), tmp_path)
    assert objective.calls == 10


def test_checkpoint_that_is_not_ours_is_refused(tmp_path: Path) -> None:
    torch.save({"weights": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="lacks"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")
