"""The one training loop shared by every stage (MAE ``engine_pretrain`` style).

A stage gives the engine an *objective*: an ``nn.Module`` whose ``forward(batch)`` returns a dict
with a scalar ``"loss"`` and float metrics, plus a :class:`~prism_training.data.StepBatches`
factory. The engine runs it single-process or under ``torchrun`` (DDP; gloo on CPU, NCCL on
CUDA) with: a per-step linear-warmup + cosine learning rate, gradient accumulation, bf16 autocast
on CUDA, gradient clipping, a NaN guard (a step whose loss is not finite on any rank is skipped;
too many in a row stop the run), JSONL logs, a tqdm bar, and checkpoints
``{model, optimizer, step, config, rng}`` from which ``resume`` continues exactly where an
uninterrupted run would be (data order and augmentations are functions of the step, see
:mod:`prism_training.data`).

Read top to bottom: distributed setup and the schedule; checkpoints (RNG state, save, load,
resume check); :func:`train_step`, one optimizer step with accumulation, the NaN guard
(:class:`NanGuard`) and clipping; the run's setup (folder, optimizer, resume, DDP wrap); its
log; and :func:`train`, the loop that ties them together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from prism_science.errors import CheckpointError, ConfigError, TrainingError
from prism_training.config import TrainConfig, save_config, train_config_to_dict

__all__ = [
    "CHECKPOINT_FILE",
    "DistInfo",
    "NanGuard",
    "load_checkpoint",
    "lr_at_step",
    "setup_distributed",
    "train",
    "train_step",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.jsonl"
TRAIN_CONFIG_FILE = "train_config.json"
# Fields that may differ between a run and its resumption without changing its result.
# (synth_dir and window_frames only say where the manifest came from.)
_RESUME_FREE_FIELDS = {"progress", "stop_after_steps", "export_on_stop", "num_workers",
                       "threads", "log_every", "ckpt_every", "out_dir", "synth_dir",
                       "window_frames", "open_videos"}


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size``, its ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (which writes logs, checkpoints and the final weights)."""
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Join the process group ``torchrun`` describes in the environment (if any).

    Uses NCCL when CUDA is available, gloo otherwise. Single-process runs get rank 0 of 1.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    if dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)
    return DistInfo(device=device)


def lr_at_step(cfg: TrainConfig, step: int) -> float:
    """Learning rate of optimizer step ``step``: linear warmup to ``lr``, cosine to ``min_lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * progress))


def _param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        # Biases, norms, embeddings' scalars and the temperature are not decayed (as MAE/CLIP).
        (no_decay if param.ndim < 2 or "log_scale" in name else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


# ---------------------------------------------------------------------------- checkpoints
def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": json.dumps(random.getstate()),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np_state[1].numpy().astype(np.uint32), *np_state[2:]))
    py = json.loads(state["python"])
    random.setstate((py[0], tuple(py[1]), py[2]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` (tensors and plain data only, no code).

    Raises
    ------
    CheckpointError
        The file is missing, truncated or corrupt, or lacks one of the expected entries.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; start without --resume")
    try:
        # weights_only: a restricted unpickler that builds tensors and plain containers only.
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(exc).__name__}: {exc}); delete it "
            "to restart from scratch, or restore it from a backup"
        ) from None
    missing = [k for k in ("model", "optimizer", "step", "config", "rng") if k not in ckpt]
    if not isinstance(ckpt, dict) or missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it was not written by "
                              "prism_training -- delete it or start a new run folder")
    return ckpt


def _save_checkpoint(path: Path, objective: nn.Module, optimizer: torch.optim.Optimizer,
                     step: int, cfg: TrainConfig, extra: dict[str, Any]) -> None:
    state = {
        "model": objective.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": json.dumps(train_config_to_dict(cfg)),
        "rng": _rng_state(),
        "extra": json.dumps(extra),
    }
    # Written whole and flushed to disk under another name, then renamed over the previous
    # checkpoint: a crash at any moment leaves the previous checkpoint or the new one.
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as handle:
        torch.save(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    now = train_config_to_dict(cfg)
    # A field added after the checkpoint was written counts as its default, so a run cut off
    # before an upgrade resumes unless the new field is set to something else.
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
    diffs = sorted(k for k in set(now) | set(saved)
                   if k not in _RESUME_FREE_FIELDS and now.get(k) != saved.get(k))
    if diffs:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diffs[:6])
        raise ConfigError(
            f"cannot resume from {path}: the config differs in {detail}; resume with the same "
            "config (only progress/threads/logging fields may change) or use a new run folder"
        )


# ---------------------------------------------------------------------------- one step
def _all_finite(loss: torch.Tensor, info: DistInfo) -> bool:
    flag = torch.tensor([1.0 if bool(torch.isfinite(loss.detach()).all()) else 0.0],
                        device=info.device)
    if info.world_size > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0.5)


@dataclass
class NanGuard:
    """Counts optimizer steps skipped for a non-finite loss or gradient; stops a diverged run.

    Parameters
    ----------
    max_bad_steps : int
        More consecutive skipped steps than this raise :class:`TrainingError`.
    lr : float
        The configured learning rate (named in the error's advice).
    checkpoint : Path or None
        The run's checkpoint file (named in the error as the last good state).
    skipped : int
        Skipped steps so far (a resumed run starts from its checkpoint's count).
    """

    max_bad_steps: int
    lr: float = 0.0
    checkpoint: Path | None = None
    skipped: int = 0
    bad_run: int = 0

    def record(self, finite: bool, step: int) -> None:
        """Count step ``step`` as applied (``finite``) or skipped.

        Raises
        ------
        TrainingError
            More than ``max_bad_steps`` steps in a row were skipped.
        """
        if finite:
            self.bad_run = 0
            return
        self.skipped += 1
        self.bad_run += 1
        logger.warning("step %d: non-finite loss or gradient, step skipped", step)
        if self.bad_run > self.max_bad_steps:
            raise TrainingError(
                f"{self.bad_run} consecutive steps had a non-finite loss or gradient (last at "
                f"step {step}); lower lr (now {self.lr}) or check the data; the last good "
                f"checkpoint is {self.checkpoint}"
            )


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Iterator[dict[str, Any]],
    guard: NanGuard,
    step: int,
    accum_steps: int = 1,
    grad_clip: float = 0.0,
    info: DistInfo | None = None,
    use_amp: bool = False,
) -> dict[str, float]:
    """One optimizer step: ``accum_steps`` micro-batches, NaN guard, gradient clipping.

    The gradient is the mean of the micro-batches' gradients (each loss is divided by
    ``accum_steps``), so equal micro-batches give the gradient of their union as one batch.
    Under DDP (``model`` a ``DistributedDataParallel``) gradients are all-reduced only on the
    last micro-batch. When the loss of any micro-batch on any rank, or the gradient norm, is
    not finite, the step is skipped: no parameter changes, the gradients are cleared and
    ``guard`` counts it.

    Parameters
    ----------
    model : torch.nn.Module
        The objective (or its DDP wrapper): ``model(batch)`` returns ``{"loss": scalar tensor,
        <metric>: float or tensor, ...}``.
    optimizer : torch.optim.Optimizer
        Holds the trained parameters; its learning rate is set by the caller.
    batches : iterator of dict
        Micro-batches, already on the device; ``accum_steps`` of them are consumed.
    guard : NanGuard
        Counts skipped steps; raises when too many come in a row.
    step : int
        The step's index (for the guard's messages).
    accum_steps : int
        Micro-batches per step.
    grad_clip : float
        Largest global gradient norm (L2 over all trained parameters); 0 disables clipping.
    info : DistInfo, optional
        Process placement (default: one CPU process); on several ranks the NaN decision is
        taken jointly.
    use_amp : bool
        bf16 autocast of the forward pass (CUDA).

    Returns
    -------
    dict of str to float
        The metrics averaged over the micro-batches and, on several ranks, over the ranks; and
        ``grad_norm`` (before clipping) when the loss was finite.

    Raises
    ------
    TrainingError
        The guard's limit of consecutive skipped steps was passed.
    """
    info = info or DistInfo()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer.zero_grad(set_to_none=True)
    metrics: dict[str, float] = {}
    finite = True
    for micro in range(accum_steps):
        batch = next(batches)
        defer_sync = micro < accum_steps - 1 and isinstance(
            model, nn.parallel.DistributedDataParallel)
        with model.no_sync() if defer_sync else contextlib.nullcontext():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                out = model(batch)
            loss = out["loss"]
            finite = finite and _all_finite(loss, info)
            if finite:
                (loss / accum_steps).backward()
        for key, value in out.items():
            value = value.detach() if isinstance(value, torch.Tensor) else value
            metrics[key] = metrics.get(key, 0.0) + float(value) / accum_steps
    if finite:
        grad_norm = nn.utils.clip_grad_norm_(params, grad_clip or float("inf"))
        finite = bool(torch.isfinite(grad_norm))
        metrics["grad_norm"] = float(grad_norm)
    if finite:
        optimizer.step()
    else:
        optimizer.zero_grad(set_to_none=True)
    guard.record(finite, step)
    return _mean_over_ranks(metrics, info)


def _mean_over_ranks(metrics: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Each metric averaged over the ranks (each rank sees its share of the batch), so rank 0
    logs the whole batch's loss, not its own half. The keys are the same on every rank: the
    NaN decision is joint, and ``grad_norm`` is of the all-reduced gradients."""
    if info.world_size <= 1:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    values /= info.world_size
    return dict(zip(keys, values.tolist(), strict=True))


# ---------------------------------------------------------------------------- setup
@dataclass
class _Run:
    """What :func:`_setup_run` prepares: the run folder, the optimizer in its resumed state."""

    run_dir: Path
    checkpoint: Path
    model: nn.Module  # the objective, wrapped in DDP on several ranks
    optimizer: torch.optim.Optimizer
    start_step: int
    guard: NanGuard


def _setup_run(cfg: TrainConfig, objective: nn.Module, run_dir: Path, resume: bool,
               info: DistInfo) -> _Run:
    """Create the run folder and optimizer; restore a checkpoint or refuse to overwrite one;
    save the resolved config; wrap the objective in DDP on several ranks."""
    ckpt_path = run_dir / CHECKPOINT_FILE
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    objective.to(info.device)
    optimizer = torch.optim.AdamW(_param_groups(objective, cfg.weight_decay), lr=cfg.lr,
                                  betas=(0.9, cfg.beta2))
    start_step, skipped = 0, 0
    if resume:
        start_step, skipped = _restore(ckpt_path, cfg, objective, optimizer)
    elif info.is_main and ckpt_path.exists():
        raise CheckpointError(f"{run_dir} already holds a checkpoint; pass --resume to continue "
                              "it, or choose another --out folder")
    if info.is_main:
        save_config(cfg, run_dir / TRAIN_CONFIG_FILE)
    model: nn.Module = objective
    if info.world_size > 1:
        model = nn.parallel.DistributedDataParallel(
            objective, device_ids=[info.device.index] if info.device.type == "cuda" else None,
            broadcast_buffers=False,
        )
    guard = NanGuard(cfg.max_bad_steps, cfg.lr, ckpt_path, skipped=skipped)
    return _Run(run_dir, ckpt_path, model, optimizer, start_step, guard)


def _restore(ckpt_path: Path, cfg: TrainConfig, objective: nn.Module,
             optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Load model, optimizer and RNG state; returns (step, skipped steps) of the checkpoint."""
    ckpt = load_checkpoint(ckpt_path)
    _check_resumable(json.loads(ckpt["config"]), cfg, ckpt_path)
    try:
        objective.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {ckpt_path} does not fit this model ({exc}); "
                              "start a new run folder") from None
    _set_rng_state(ckpt["rng"])
    step = int(ckpt["step"])
    logger.info("resumed %s at step %d", ckpt_path, step)
    return step, int(json.loads(ckpt.get("extra", "{}")).get("skipped_steps", 0))


# ---------------------------------------------------------------------------- logging
class _RunLog:
    """The JSONL log and the progress bar of rank 0 (other ranks log nothing).

    A context manager; :attr:`last` holds the metrics of the latest step.
    """

    def __init__(self, cfg: TrainConfig, run_dir: Path, start_step: int, info: DistInfo) -> None:
        self.cfg = cfg
        self.is_main = info.is_main
        self.file = (run_dir / LOG_FILE).open("a") if info.is_main else None
        self.bar = None
        if info.is_main and cfg.progress:
            from tqdm import tqdm

            self.bar = tqdm(total=cfg.total_steps, initial=start_step, desc=cfg.name,
                            dynamic_ncols=True)
        self.last: dict[str, Any] = {}
        self.t0 = time.time()

    def record(self, step: int, lr: float, metrics: dict[str, float], skipped: int,
               last_step: bool) -> None:
        """Note the metrics of the step just done (``step`` counts steps done); every
        ``log_every`` steps and on ``last_step`` also write them to the log."""
        if not self.is_main:
            return
        self.last = {"step": step, "lr": lr, **metrics, "skipped_steps": skipped,
                     "elapsed_s": round(time.time() - self.t0, 2)}
        if step % self.cfg.log_every == 0 or last_step:
            self.file.write(json.dumps(self.last) + "\n")
            self.file.flush()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.2e}")

    def __enter__(self) -> _RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


def _checkpoint_all_ranks(run: _Run, objective: nn.Module, step: int, cfg: TrainConfig,
                          info: DistInfo) -> None:
    """Rank 0 writes the checkpoint; every rank waits for it."""
    if info.is_main:
        _save_checkpoint(run.checkpoint, objective, run.optimizer, step, cfg,
                         {"skipped_steps": run.guard.skipped})
    if info.world_size > 1:
        dist.barrier()


# ---------------------------------------------------------------------------- the loop
def train(
    cfg: TrainConfig,
    objective: nn.Module,
    make_batches: Callable[[int, int, int, int], torch.utils.data.Dataset],
    run_dir: str | Path,
    export: Callable[[nn.Module, Path], None] | None = None,
    resume: bool = False,
    info: DistInfo | None = None,
) -> dict[str, Any]:
    """Optimise ``objective`` for ``cfg.total_steps`` steps; checkpoint, log, export.

    Parameters
    ----------
    cfg : TrainConfig
        Resolved config (saved as ``run_dir/train_config.json``).
    objective : torch.nn.Module
        ``forward(batch) -> {"loss": scalar tensor, <metric>: float or tensor, ...}``; its
        parameters with ``requires_grad`` are trained.
    make_batches : callable
        ``make_batches(first_micro, last_micro, rank, world_size)`` returns a dataset whose item
        ``k`` is this rank's micro-batch number ``first_micro + k``.
    run_dir : str or Path
        Holds ``train_config.json``, ``checkpoint.pt``, ``log.jsonl`` and ``final/``.
    export : callable, optional
        ``export(objective, run_dir / "final")`` writes the trained weights at the end (rank 0).
    resume : bool
        Continue from ``run_dir/checkpoint.pt`` (its config must match ``cfg``).
    info : DistInfo, optional
        Process placement (default: :func:`setup_distributed`).

    Returns
    -------
    dict
        ``step`` (steps done), ``finished`` (bool), ``last`` (the last logged metrics),
        ``skipped_steps`` (non-finite losses).

    Raises
    ------
    CheckpointError
        ``resume`` with a missing or corrupt checkpoint.
    ConfigError
        ``resume`` with a config that differs from the checkpoint's.
    TrainingError
        More than ``cfg.max_bad_steps`` consecutive steps had a non-finite loss.
    """
    info = info or setup_distributed()
    torch.set_num_threads(max(1, cfg.threads))
    run = _setup_run(cfg, objective, Path(run_dir), resume, info)
    accum = max(1, cfg.accum_steps)
    dataset = make_batches(run.start_step * accum, cfg.total_steps * accum, info.rank,
                           info.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False,
                                         num_workers=cfg.num_workers)
    batches = (_to_device(batch, info.device) for batch in loader)
    use_amp = cfg.amp and info.device.type == "cuda"
    stop_at = cfg.total_steps
    if cfg.stop_after_steps > 0:
        stop_at = min(stop_at, cfg.stop_after_steps)
    step = run.start_step
    run.model.train()
    with _RunLog(cfg, run.run_dir, run.start_step, info) as log:
        while step < stop_at:
            lr = lr_at_step(cfg, step)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            metrics = train_step(run.model, run.optimizer, batches, run.guard, step, accum,
                                 cfg.grad_clip, info, use_amp)
            step += 1
            log.record(step, lr, metrics, run.guard.skipped, last_step=step == stop_at)
            if step % cfg.ckpt_every == 0 or step == stop_at:
                _checkpoint_all_ranks(run, objective, step, cfg, info)
    finished = step >= cfg.total_steps
    if (finished or cfg.export_on_stop) and info.is_main and export is not None:
        if not finished:
            logger.warning("exporting %s stopped at step %d of %d", run.run_dir, step,
                           cfg.total_steps)
        export(objective, run.run_dir / "final")
    if info.world_size > 1:
        dist.barrier()
    return {"step": step, "finished": finished, "last": log.last,
            "skipped_steps": run.guard.skipped}


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}
