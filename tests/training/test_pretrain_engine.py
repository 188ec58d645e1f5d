"""The engine's NaN guard, checkpoints of a plain objective, and gradient accumulation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from prism_science.errors import CheckpointError, TrainingError
from prism_training.config import apply_overrides, get_config
from prism_training.engine import load_checkpoint, train


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
