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
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from prism_science.errors import CheckpointError, ConfigError, TrainingError
from prism_training.config import TrainConfig, config_to_dict, save_config

__all__ = [
    "CHECKPOINT_FILE",
    "DistInfo",
    "lr_at_step",
    "load_checkpoint",
    "setup_distributed",
    "train",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "log.jsonl"
TRAIN_CONFIG_FILE = "train_config.json"
# Fields that may differ between a run and its resumption without changing its result.
_RESUME_FREE_FIELDS = {"progress", "stop_after_steps", "export_on_stop", "num_workers",
                       "threads", "log_every", "ckpt_every", "out_dir"}


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
        "config": json.dumps(config_to_dict(cfg)),
        "rng": _rng_state(),
        "extra": json.dumps(extra),
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, path: Path) -> None:
    now = config_to_dict(cfg)
    diffs = sorted(k for k in set(now) | set(saved)
                   if k not in _RESUME_FREE_FIELDS and now.get(k) != saved.get(k))
    if diffs:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diffs[:6])
        raise ConfigError(
            f"cannot resume from {path}: the config differs in {detail}; resume with the same "
            "config (only progress/threads/logging fields may change) or use a new run folder"
        )


def _all_finite(loss: torch.Tensor, info: DistInfo) -> bool:
    flag = torch.tensor([1.0 if bool(torch.isfinite(loss.detach()).all()) else 0.0],
                        device=info.device)
    if info.world_size > 1:
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0.5)


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
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT_FILE
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    objective.to(info.device)
    optimizer = torch.optim.AdamW(_param_groups(objective, cfg.weight_decay), lr=cfg.lr,
                                  betas=(0.9, cfg.beta2))
    start_step, skipped = 0, 0
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        _check_resumable(json.loads(ckpt["config"]), cfg, ckpt_path)
        try:
            objective.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {ckpt_path} does not fit this model ({exc}); "
                                  "start a new run folder") from None
        _set_rng_state(ckpt["rng"])
        start_step = int(ckpt["step"])
        skipped = int(json.loads(ckpt.get("extra", "{}")).get("skipped_steps", 0))
        logger.info("resumed %s at step %d", ckpt_path, start_step)
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
    accum = max(1, cfg.accum_steps)
    dataset = make_batches(start_step * accum, cfg.total_steps * accum, info.rank,
                           info.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False,
                                         num_workers=cfg.num_workers)
    batches = iter(loader)
    params = [p for p in objective.parameters() if p.requires_grad]
    use_amp = cfg.amp and info.device.type == "cuda"
    log_file = (run_dir / LOG_FILE).open("a") if info.is_main else None
    bar = None
    if info.is_main and cfg.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.total_steps, initial=start_step, desc=cfg.name, dynamic_ncols=True)
    stop_at = cfg.total_steps
    if cfg.stop_after_steps > 0:
        stop_at = min(stop_at, cfg.stop_after_steps)
    last: dict[str, Any] = {}
    bad_run = 0
    step = start_step
    model.train()
    t0 = time.time()
    try:
        while step < stop_at:
            lr = lr_at_step(cfg, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=True)
            metrics: dict[str, float] = {}
            finite = True
            for micro in range(accum):
                batch = _to_device(next(batches), info.device)
                sync = micro == accum - 1 or info.world_size == 1
                ctx = contextlib.nullcontext() if sync else model.no_sync()
                with ctx:
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                        out = model(batch)
                    loss = out["loss"]
                    finite = finite and _all_finite(loss, info)
                    if finite:
                        (loss / accum).backward()
                for key, value in out.items():
                    value = value.detach() if isinstance(value, torch.Tensor) else value
                    metrics[key] = metrics.get(key, 0.0) + float(value) / accum
            if finite:
                grad_norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip or float("inf"))
                finite = bool(torch.isfinite(grad_norm))
                metrics["grad_norm"] = float(grad_norm)
            if finite:
                optimizer.step()
                bad_run = 0
            else:
                skipped += 1
                bad_run += 1
                optimizer.zero_grad(set_to_none=True)
                logger.warning("step %d: non-finite loss or gradient, step skipped", step)
                if bad_run > cfg.max_bad_steps:
                    raise TrainingError(
                        f"{bad_run} consecutive steps had a non-finite loss or gradient (last at "
                        f"step {step}); lower lr (now {cfg.lr}) or check the data; the last good "
                        f"checkpoint is {ckpt_path}"
                    )
            step += 1
            if info.is_main:
                last = {"step": step, "lr": lr, **metrics, "skipped_steps": skipped,
                        "elapsed_s": round(time.time() - t0, 2)}
                if step % cfg.log_every == 0 or step == stop_at:
                    log_file.write(json.dumps(last) + "\n")
                    log_file.flush()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.2e}")
            if step % cfg.ckpt_every == 0 or step == stop_at:
                if info.is_main:
                    _save_checkpoint(ckpt_path, objective, optimizer, step, cfg,
                                     {"skipped_steps": skipped})
                if info.world_size > 1:
                    dist.barrier()
    finally:
        if bar is not None:
            bar.close()
        if log_file is not None:
            log_file.close()
    finished = step >= cfg.total_steps
    if (finished or cfg.export_on_stop) and info.is_main and export is not None:
        if not finished:
            logger.warning("exporting %s stopped at step %d of %d", run_dir, step,
                           cfg.total_steps)
        export(objective, run_dir / "final")
    if info.world_size > 1:
        dist.barrier()
    return {"step": step, "finished": finished, "last": last, "skipped_steps": skipped}


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}
