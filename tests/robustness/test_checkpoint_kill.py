"""Pretraining checkpoints killed at every write, and killed halfway through writing one.

A child process runs the training engine (:func:`prism_training.engine.train`, the loop of
``prism-science pretrain``) on a tiny objective, 6 steps with a checkpoint every 2, and dies
(``os._exit``) just before its N-th file-system change in the run folder, for every N of the
run; in a second fault it dies halfway through writing the k-th checkpoint's bytes. After each
kill the checkpoint, when there is one, loads and equals the uninterrupted run's checkpoint of
its step (never a torn file), and a rerun (``resume`` when a checkpoint is there) ends with
final weights identical to the uninterrupted run.
"""

from __future__ import annotations

import io
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prism_science.errors import CheckpointError
from tests.robustness.killpoints import FINISHED, KILLED, count_changes, kill_points

engine = pytest.importorskip("prism_training.engine")
from prism_training.config import apply_overrides, get_config  # noqa: E402 - after the skip

ROBUSTNESS_TITLE = "Pretraining checkpoints killed at every write"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| the pretraining engine (6 steps, a checkpoint every 2) killed (`os._exit`) before its N-th
  file-system change in the run folder, for every N | `checkpoint.pt`, when there, loads and
  equals the uninterrupted run's checkpoint of its step; `--resume` (or a fresh start when there
  is none) ends with final weights identical to the uninterrupted run |
| killed halfway through writing the bytes of the 1st, 2nd or 3rd checkpoint | the previous
  checkpoint (or none) is in place and loads; the resumed run ends identical |
"""

STEPS, EVERY = 6, 2


class _Objective(nn.Module):
    """A linear map trained by mean squared error (deterministic on CPU)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(3, 2)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"loss": ((self.linear(batch["x"]) - batch["y"]) ** 2).mean()}


class _Batches(torch.utils.data.Dataset):
    def __init__(self, first: int, last: int) -> None:
        self.first, self.last = first, last

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(self.first + k)
        x = torch.randn(8, 3, generator=gen)
        return {"x": x, "y": x @ torch.tensor([[1.0, 0.0], [-2.0, 1.0], [0.5, 3.0]])}


def _export(objective: nn.Module, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in objective.state_dict().items()},
              str(folder / "model.safetensors"))


def _train(run_dir: Path, resume: bool = False) -> None:
    cfg = apply_overrides(get_config("stage1_test"), [
        f"out_dir={run_dir}", f"total_steps={STEPS}", "warmup_steps=1", "lr=0.05",
        f"ckpt_every={EVERY}", "log_every=1", "progress=false", "threads=1"])
    engine.train(cfg, _Objective(), lambda a, b, r, w: _Batches(a, b), run_dir, export=_export,
                 resume=resume)


def _rerun(run_dir: Path) -> None:
    _train(run_dir, resume=(run_dir / engine.CHECKPOINT_FILE).exists())


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Final weights, the model state of each checkpoint step and the number of changes."""
    folder = tmp_path_factory.mktemp("ckpt_kill")
    states: dict[int, dict[str, torch.Tensor]] = {}
    original = engine._save_checkpoint

    def keep(path, objective, optimizer, step, cfg, extra):
        states[step] = {k: v.clone() for k, v in objective.state_dict().items()}
        return original(path, objective, optimizer, step, cfg, extra)

    engine._save_checkpoint = keep
    try:
        _train(folder / "run")
    finally:
        engine._save_checkpoint = original
    assert sorted(states) == list(range(EVERY, STEPS + 1, EVERY))
    n_changes = count_changes(lambda: _train(folder / "counted"), folder / "counted")
    return load_file(str(folder / "run" / "final" / "model.safetensors")), states, n_changes


def _check_checkpoint(run_dir: Path, states, where: str) -> int:
    """The checkpoint's step (0 when none); it must load and equal the reference's."""
    path = run_dir / engine.CHECKPOINT_FILE
    if not path.exists():
        return 0
    try:
        ckpt = engine.load_checkpoint(path)
    except CheckpointError as exc:
        pytest.fail(f"{where}: the checkpoint does not load: {exc}")
    step = int(ckpt["step"])
    model = {k.removeprefix("linear."): v for k, v in ckpt["model"].items()}
    for key, value in states[step].items():
        torch.testing.assert_close(model[key.removeprefix("linear.")], value, rtol=0, atol=0,
                                   msg=f"{where}: checkpoint of step {step}, {key}")
    return step


def _check_final(run_dir: Path, final, where: str) -> None:
    got = load_file(str(run_dir / "final" / "model.safetensors"))
    assert got.keys() == final.keys()
    for key in final:
        torch.testing.assert_close(got[key], final[key], rtol=0, atol=0,
                                   msg=f"{where}: final {key}")


def test_training_killed_at_every_write_resumes_identically(reference, tmp_path,
                                                            record_property):
    final, states, n_changes = reference
    record_property("faults", n_changes)
    run_dir = tmp_path / "run"
    steps, codes = set(), []
    for n, code in kill_points(lambda: _train(run_dir), run_dir,
                               prepare=lambda: shutil.rmtree(run_dir, ignore_errors=True)):
        codes.append(code)
        steps.add(_check_checkpoint(run_dir, states, f"kill at change {n}"))
        _rerun(run_dir)
        _check_final(run_dir, final, f"rerun after change {n}")
    assert codes.count(KILLED) == n_changes >= 8 and codes[-1] == FINISHED
    assert steps >= {0, EVERY, 2 * EVERY}  # kills before any, after the first, the second


@pytest.mark.parametrize("save_number", [1, 2, 3])
def test_killed_halfway_through_writing_a_checkpoint(reference, tmp_path, save_number):
    final, states, _ = reference
    run_dir = tmp_path / "run"
    original_save = torch.save

    def torn_save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] < save_number:
            return original_save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        original_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        if hasattr(f, "write"):
            f.write(data[: len(data) // 2])
            f.flush()
        else:
            Path(f).write_bytes(data[: len(data) // 2])
        os._exit(KILLED)

    calls = [0]
    pid = os.fork()
    if pid == 0:
        try:
            torch.save = torn_save
            _train(run_dir)
        finally:
            os._exit(FINISHED)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == KILLED
    step = _check_checkpoint(run_dir, states, f"torn save {save_number}")
    assert step == (save_number - 1) * EVERY  # the previous one, whole
    _rerun(run_dir)
    _check_final(run_dir, final, f"rerun after torn save {save_number}")
