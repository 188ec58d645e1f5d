"""Distributed extraction on a real 2-worker Dask LocalCluster."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from prism_science.errors import PrismError
from prism_science.extraction import ExtractOptions, VideoJob, VideoSource, run_extraction
from prism_science.extraction.cluster import make_client, plan_tasks, slurm_cluster_kwargs
from prism_science.extraction.windows import WindowParams
from prism_science.store import open_store
from tests.store.conftest import TEST_MODEL

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

KEY = f"{TEST_MODEL}/mean"
# Shard files of 2 chunks: tasks of 16 frames are whole files.
OPTIONS = ExtractOptions(model=TEST_MODEL, params=WindowParams(hop=2), device="cpu",
                         batch_size=4, chunk_frames=8, shard_frames=16, progress=False)


def _kill_worker_once(*args, marker: str, log: str, **kwargs):
    """Log each task; on its second task a worker writes one chunk, waits, then SIGKILLs itself
    (once per test run). Its first task's result dies with it."""
    from prism_science.extraction.cluster import extract_task

    ranges = args[6]
    with open(log, "a") as file:
        file.write(f"{os.getpid()} {args[1]} {ranges[0][0]}\n")
    mine = [line for line in Path(log).read_text().splitlines()
            if line.split()[0] == str(os.getpid())]
    if len(mine) < 2:
        return extract_task(*args, **kwargs)
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return extract_task(*args, **kwargs)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    start = ranges[0][0]
    extract_task(*args[:6], [(start, min(ranges[0][1], start + 8))], **kwargs)
    time.sleep(1.5)  # the coordinator has taken (and released) the first task's result by now
    os.kill(os.getpid(), signal.SIGKILL)
    return 0  # pragma: no cover - never reached


@pytest.fixture(scope="module")
def scheduler():
    """A real LocalCluster: 2 worker processes, 1 thread each."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    client, cluster, _ = make_client("local:2")
    client.close()
    yield cluster.scheduler_address
    cluster.close()


def _read_all(path):
    with open_store(path, "r") as store:
        return {vid: (store.read_features(vid, KEY).values, store.video_info(vid).timestamps)
                for vid in store.video_ids()}


def _assert_same_stores(a, b):
    left, right = _read_all(a), _read_all(b)
    assert sorted(left) == sorted(right)
    for vid in left:
        np.testing.assert_allclose(left[vid][0], right[vid][0], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(left[vid][1], right[vid][1])


@pytest.mark.slow
def test_distributed_store_equals_single_process(video_folder, tmp_path, scheduler):
    single = run_extraction([video_folder], tmp_path / "single.zarr", OPTIONS, recursive=True)
    assert single.ok and len(single.extracted) == 2
    report = run_extraction([video_folder], tmp_path / "dist.zarr", OPTIONS, recursive=True,
                            cluster=scheduler, cluster_options={"task_frames": 16})
    assert report.ok, report.summary()
    assert sorted(report.extracted) == ["a.mp4", "sub__b.mp4"] and report.frames == 57
    with open_store(tmp_path / "dist.zarr", "r") as store:
        assert all(store.feature_status(v, KEY) == "complete" for v in store.video_ids())
    _assert_same_stores(tmp_path / "single.zarr", tmp_path / "dist.zarr")
    again = run_extraction([video_folder], tmp_path / "dist.zarr", OPTIONS, recursive=True,
                           cluster=scheduler)
    assert again.ok and len(again.skipped) == 2 and not again.extracted


def test_killed_worker_is_retried_and_store_completes(video_folder, tmp_path, scheduler):
    single = run_extraction([video_folder], tmp_path / "single.zarr", OPTIONS, recursive=True)
    assert single.ok
    marker, log = tmp_path / "killed.marker", tmp_path / "tasks.log"
    report = run_extraction(
        [video_folder], tmp_path / "dist.zarr", OPTIONS, recursive=True, cluster=scheduler,
        cluster_options={"task_frames": 16, "task_function": partial(
            _kill_worker_once, marker=str(marker), log=str(log))},
    )
    assert marker.exists(), "no worker was killed"
    assert report.ok, report.summary()
    _assert_same_stores(tmp_path / "single.zarr", tmp_path / "dist.zarr")
    # Only the killed task ran twice: finished tasks' results were released, not recomputed
    # when the worker holding them died.
    runs = Counter(tuple(line.split()[1:]) for line in log.read_text().splitlines())
    assert sum(runs.values()) == len(runs) + 1, runs


def test_plan_tasks_are_whole_chunks():
    source = VideoSource(Path("x.mp4"), "x.mp4", "x.mp4")
    job = VideoJob(source, n_frames=1000, chunk_frames=64, ranges=[(0, 128), (256, 1000)])
    tasks = plan_tasks(job, task_frames=300)
    flat = [r for task in tasks for r in task]
    assert all(len(task) == 1 for task in tasks)
    assert all(a % 64 == 0 and (b % 64 == 0 or b == 1000) for a, b in flat)
    assert sum(b - a for a, b in flat) == 128 + 744
    assert max(b - a for a, b in flat) == 256
    short = VideoJob(source, n_frames=100, chunk_frames=64, ranges=[(0, 100)])
    assert plan_tasks(short, task_frames=4096) == [[(0, 100)]]


def test_slurm_options_and_job_script(monkeypatch):
    monkeypatch.setenv("PRISM_SLURM_QUEUE", "gpu")
    monkeypatch.setenv("PRISM_SLURM_GPUS", "2")
    kwargs, jobs = slurm_cluster_kwargs({"jobs": 3, "memory": "8GB", "account": None},
                                        workers_per_gpu=2)
    assert jobs == (1, 3)  # adaptive: at least one job, at most three
    assert kwargs["queue"] == "gpu" and kwargs["memory"] == "8GB" and kwargs["processes"] == 4
    assert kwargs["job_extra_directives"] == ["--gres=gpu:2"]
    assert kwargs["worker_extra_args"][:2] == ["--resources", "GPU=1"]
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    with dask_jobqueue.SLURMCluster(**kwargs) as cluster:
        script = cluster.job_script()
    assert "#SBATCH --gres=gpu:2" in script and "#SBATCH -p gpu" in script
    assert "--resources GPU=1" in script
    with pytest.raises(PrismError, match="local:N"):
        make_client("local:zero")
    with pytest.raises(PrismError, match="expected local:N"):
        make_client("kubernetes")
