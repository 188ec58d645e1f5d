"""DDP with 2 CPU processes on gloo computes the gradients of one process on the whole batch."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from prism_training import stage1, stage2
from prism_training.common import ContrastiveObjective, make_clip_source
from prism_training.config import apply_overrides, get_config
from prism_training.data import StepBatches, list_videos, read_manifest
from prism_training.engine import setup_distributed

BATCH = 4
KINDS = ("stage1", "stage2")


def _objective_and_batches(kind: str, tiny: Path, out: Path, rank: int, world: int):
    torch.set_num_threads(1)
    if kind == "stage1":
        cfg = apply_overrides(get_config("stage1_test"), [
            f"manifest={tiny / 'manifest.jsonl'}", f"cache_dir={out / 'cache'}",
            f"tokenizer={out / 'tok.model'}", f"batch_size={BATCH}"])
        entries = read_manifest(cfg.manifest)
        model = stage1.build_text_model(cfg, [e.caption for e in entries], out)
        source = make_clip_source(cfg, entries, model.num_frames, model.image_size)
        from prism_training.common import text_extras

        extras = text_extras(model.tokenizer, [c.entry.caption for c in source.clips])
        objective = ContrastiveObjective(model, 0.07, True)
    else:
        cfg = apply_overrides(get_config("stage2_test"), [
            f"video_dir={tiny}", f"cache_dir={out / 'cache'}", f"teacher={out / 'teacher'}",
            f"batch_size={BATCH}"])
        teacher = stage2.load_teacher(cfg)
        source = make_clip_source(cfg, list_videos(tiny), teacher.num_frames, teacher.image_size)
        objective = stage2.Stage2Objective(cfg, teacher, teacher.num_frames, teacher.image_size)
        from prism_training.masking import num_kept, shuffle_permutation, tube_mask

        n = objective.num_patches
        visible = teacher.num_frames * num_kept(n, cfg.mask_ratio)

        def extras(index, rng):
            return {"keep": tube_mask(rng, n, cfg.mask_ratio),
                    "perm": shuffle_permutation(rng, visible, True)}
    batches = StepBatches(source, BATCH, 0, 0, 1, rank, world, extras)
    return objective, batches


def _grads(objective: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in objective.named_parameters()
            if p.grad is not None}


def _worker(rank: int, world: int, tiny: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank,
                            world_size=world)
    info = setup_distributed()
    assert (info.rank, info.world_size) == (rank, world)
    for kind in KINDS:
        objective, batches = _objective_and_batches(kind, Path(tiny), Path(out), rank, world)
        model = torch.nn.parallel.DistributedDataParallel(objective, broadcast_buffers=False)
        model(batches[0])["loss"].backward()
        if rank == 0:
            torch.save(_grads(objective), Path(out) / f"ddp_grads_{kind}.pt")
    dist.barrier()
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def prepared(tiny_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    from prism_training.common import train_tokenizer

    entries = read_manifest(tiny_videos / "manifest.jsonl")
    train_tokenizer([e.caption for e in entries], out / "tok.model", 64)
    cfg = apply_overrides(get_config("stage1_test"), [f"tokenizer={out / 'tok.model'}"])
    from prism_science.models import save_model

    save_model(stage1.build_text_model(cfg, [], out), out / "teacher")
    return out


@pytest.mark.slow
def test_ddp_two_processes_match_single_process(tiny_videos: Path, prepared: Path) -> None:
    """Stage 1 (InfoNCE over the batch gathered from both ranks) and stage 2 (per-sample
    losses, masks drawn per sample): DDP gradients equal single-process ones."""
    out = prepared
    mp.spawn(_worker, args=(2, str(tiny_videos), str(out)), nprocs=2, join=True)
    for kind in KINDS:
        objective, batches = _objective_and_batches(kind, tiny_videos, out, 0, 1)
        objective(batches[0])["loss"].backward()
        single = _grads(objective)
        ddp = torch.load(out / f"ddp_grads_{kind}.pt", weights_only=True)
        assert single.keys() == ddp.keys() and len(single) > 10, kind
        for name, grad in single.items():
            torch.testing.assert_close(ddp[name], grad, rtol=1e-4, atol=1e-6,
                                       msg=f"{kind}: {name}")


class _HalfLoss(torch.nn.Module):
    """loss = mean of w * x over the rank's batch; logs it and a constant-per-rank metric."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor | float]:
        loss = (self.w * batch["x"]).mean()
        return {"loss": loss, "rank_metric": float(batch["rank"])}


def _metrics_worker(rank: int, world: int, out: str) -> None:
    from prism_training.engine import NanGuard, train_step

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{out}/metrics_store", rank=rank,
                            world_size=world)
    info = setup_distributed()
    model = torch.nn.parallel.DistributedDataParallel(_HalfLoss())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    # rank 0 sees x = 1, rank 1 sees x = 3: the whole batch's loss is 2.
    batch = {"x": torch.full((4,), 1.0 + 2 * rank), "rank": torch.tensor(rank)}
    metrics = train_step(model, optimizer, iter([batch]), NanGuard(10, 0.0, None), 0, info=info)
    torch.save(metrics, Path(out) / f"metrics_{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


def test_logged_metrics_are_means_over_ranks(tmp_path: Path) -> None:
    """Under torchrun every rank returns (and rank 0 logs) the mean over ranks, not its own."""
    mp.spawn(_metrics_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    for rank in range(2):
        metrics = torch.load(tmp_path / f"metrics_{rank}.pt", weights_only=True)
        assert metrics["loss"] == pytest.approx(2.0)
        assert metrics["rank_metric"] == pytest.approx(0.5)
        assert metrics["grad_norm"] == pytest.approx(2.0)

