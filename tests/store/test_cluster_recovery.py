"""Extraction that recovers: real `dask scheduler` / `dask worker` processes started in another
directory, a scheduler killed mid-run, completion read from the store, and shards of a job array
running concurrently into one store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import ClusterError, StoreError
from prism_science.extraction.jobs import Shard, assign_shards, store_lock, task_units
from prism_science.store import open_store
from tests.store.conftest import TEST_MODEL, write_video

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

KEY = f"{TEST_MODEL}/mean"
BASE = ["--model", TEST_MODEL, "--hop", "2", "--chunk-frames", "8", "--no-progress",
        "--device", "cpu"]
DASK = Path(sys.executable).parent / "dask"
COUNTS = re.compile(r"(\d+) extracted, (\d+) already complete, (\d+) marked complete now, "
                    r"(\d+) failed, (\d+) incomplete(?:, (\d+) waiting for other shards)?")


def _extract(*args):
    return main(["extract", *map(str, args), *BASE])


def _counts(summary: str) -> tuple[int, ...]:
    match = COUNTS.search(summary)
    assert match, summary
    return tuple(int(g or 0) for g in match.groups())


def _start_cluster(where: Path, workers: int = 1) -> tuple[str, list[subprocess.Popen]]:
    """A real `dask scheduler` and `dask worker` processes, started in ``where``."""
    where.mkdir(parents=True, exist_ok=True)
    # The repository on the path only so that instrumented tasks of this module unpickle; the
    # processes run in ``where``, so relative paths sent to them would not resolve.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "cwd": where,
             "env": env}
    file = where / "scheduler.json"
    procs = [subprocess.Popen([str(DASK), "scheduler", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(file)], **quiet)]
    deadline = time.monotonic() + 60
    while not file.exists() or not file.read_text().strip():
        assert time.monotonic() < deadline, "dask scheduler did not start"
        time.sleep(0.1)
    time.sleep(0.2)
    address = json.loads(file.read_text())["address"]
    procs += [subprocess.Popen([str(DASK), "worker", address, "--nthreads", "1",
                                "--no-dashboard", "--name", f"w{i}"], **quiet)
              for i in range(workers)]
    return address, procs


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in reversed(procs):
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory):
    """A real scheduler with one worker, both running in a directory of their own."""
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    address, procs = _start_cluster(tmp_path_factory.mktemp("elsewhere"))
    yield address
    _stop(procs)


def _read_all(path):
    with open_store(path, "r") as store:
        return {vid: store.read_features(vid, KEY).values for vid in store.video_ids()}


def _assert_equal_stores(a, b):
    left, right = _read_all(a), _read_all(b)
    assert sorted(left) == sorted(right)
    for vid in left:
        assert np.array_equal(left[vid], right[vid]), vid


def _slow_task(*args, **kwargs):
    """The real task, then a pause: leaves time to kill the scheduler mid-run."""
    from prism_science.extraction.cluster import extract_task

    written = extract_task(*args, **kwargs)
    time.sleep(1.0)
    return written


@pytest.mark.slow
def test_scheduler_killed_mid_run_then_rerun_completes(video_folder, tmp_path, monkeypatch,
                                                      capsys, scheduler):
    import prism_science.extraction.cluster as cluster_module

    monkeypatch.chdir(tmp_path)  # relative paths given; workers run in other directories
    assert _extract("videos", "--recursive", "--out", "ref.zarr") == 0
    address, procs = _start_cluster(tmp_path / "elsewhere")
    monkeypatch.setattr(cluster_module, "extract_task", _slow_task)

    def kill_scheduler_after_first_chunk():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if list(Path("f.zarr").glob("videos/*/features/*/*/chunk_done/c/*")):
                procs[0].kill()
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_scheduler_after_first_chunk, daemon=True)
    killer.start()
    capsys.readouterr()
    try:
        rc = _extract("videos", "--recursive", "--out", "f.zarr", "--cluster", address,
                      "--task-frames", "8", "--frames-per-file", "8")
    finally:
        killer.join(timeout=10)
        _stop(procs)
    out, err = capsys.readouterr()
    assert rc == 1, out + err
    assert "STOPPED: lost the Dask scheduler" in out and "rerun the same command" in out
    assert "Traceback" not in err and "CancelledError" not in err
    extracted, skipped, marked, failed, incomplete, _ = _counts(out)
    assert extracted + skipped + marked + failed + incomplete == 2 and incomplete >= 1
    assert "INCOMPLETE a.mp4" in out  # 37 frames: 5 one-chunk tasks, cannot all be done
    with open_store("f.zarr", "r") as store:
        assert store.feature_status("a.mp4", KEY) == "incomplete"
        # What was written before the loss is kept.
        assert any(store.done_chunks(v, KEY).any() for v in store.video_ids())

    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert _extract("videos", "--recursive", "--out", "f.zarr", "--cluster", scheduler) == 0
    out = capsys.readouterr().out
    assert _counts(out)[4] == 0 and sum(_counts(out)[:3]) == 2
    with open_store("f.zarr", "r") as store:
        assert all(store.feature_status(v, KEY) == "complete" for v in store.video_ids())
    _assert_equal_stores(tmp_path / "ref.zarr", tmp_path / "f.zarr")


@pytest.mark.slow
def test_written_but_unmarked_video_is_marked_by_cluster_rerun(video_folder, tmp_path,
                                                              monkeypatch, capsys, scheduler):
    monkeypatch.chdir(tmp_path)
    assert _extract("videos", "--recursive", "--out", "f.zarr") == 0
    with open_store("f.zarr", "a") as store:  # a run that died between last chunk and mark
        store._b.set_attrs(f"videos/a.mp4/features/{KEY}", {"complete": False})
        assert store.feature_status("a.mp4", KEY) == "incomplete"
    write_video(video_folder / "new.mp4", 12, seed=7)
    (video_folder / "broken.mp4").write_bytes(b"not a video")
    capsys.readouterr()
    assert _extract("videos", "--recursive", "--out", "f.zarr", "--cluster", scheduler) == 1
    out = capsys.readouterr().out
    # Every input video accounted for: new extracted, b skipped, a marked, broken failed.
    assert _counts(out)[:5] == (1, 1, 1, 1, 0), out
    assert "FAILED" in out and "broken.mp4" in out
    with open_store("f.zarr", "r") as store:
        assert store.feature_status("a.mp4", KEY) == "complete"
        assert store.feature_status("new.mp4", KEY) == "complete"


def test_no_worker_within_the_timeout_ends_with_a_message(video_folder, tmp_path, capsys):
    cluster = distributed.LocalCluster(n_workers=0, dashboard_address=None, processes=False,
                                       protocol="tcp://")
    try:
        t0 = time.monotonic()
        rc = _extract(video_folder / "a.mp4", "--out", tmp_path / "f.zarr", "--cluster",
                      cluster.scheduler_address, "--worker-timeout", "1")
        assert time.monotonic() - t0 < 30
    finally:
        cluster.close()
    out = capsys.readouterr().out
    assert rc == 1
    assert "no Dask worker joined the scheduler" in out and "--worker-timeout" in out
    assert "INCOMPLETE a.mp4" in out


def test_worker_that_cannot_see_the_store_says_the_filesystem_must_be_shared(tmp_path):
    from prism_science.extraction.cluster import extract_task

    with pytest.raises(StoreError, match="filesystem shared by all workers"):
        extract_task(str(tmp_path / "nowhere.zarr"), "a.mp4", str(tmp_path / "a.mp4"), KEY,
                     TEST_MODEL, {}, [(0, 8)])


def _shard_command(index: int, count: int) -> list[str]:
    return [sys.executable, "-m", "prism_science.cli.main", "extract", "videos", "--recursive",
            "--out", "f.zarr", "--shard", f"{index}/{count}", "--task-frames", "16",
            "--frames-per-file", "16", *BASE]


@pytest.mark.slow
def test_concurrent_shards_equal_one_process(tmp_path, monkeypatch, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name, frames, seed in (("a.mp4", 37, 1), ("b.mp4", 20, 2), ("c.mp4", 50, 3)):
        write_video(videos / name, frames, seed=seed)
    monkeypatch.chdir(tmp_path)
    assert _extract("videos", "--out", "ref.zarr") == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    shards = [subprocess.Popen(_shard_command(i, 2), cwd=tmp_path, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
              for i in range(2)]
    outputs = [shard.communicate(timeout=300) for shard in shards]
    for shard, (out, err) in zip(shards, outputs, strict=True):
        assert shard.returncode == 0, out + err
    summaries = [out for out, _ in outputs]
    assert "shard 0/2" in summaries[0] and "shard 1/2" in summaries[1]
    for summary in summaries:  # each shard accounts for all three videos
        assert sum(_counts(summary)) == 3 and _counts(summary)[3:5] == (0, 0), summary
    frames = [int(re.search(r"(\d+) frames in", s).group(1)) for s in summaries]
    assert all(frames) and sum(frames) == 37 + 20 + 50  # disjoint shares, nothing twice
    with open_store("f.zarr", "r") as store:  # the last shard to finish marked completion
        assert all(store.feature_status(v, KEY) == "complete" for v in store.video_ids())
    _assert_equal_stores(tmp_path / "ref.zarr", tmp_path / "f.zarr")
    assert not list(tmp_path.glob(".*prism-lock"))
    # A rerun of one shard finds everything complete.
    capsys.readouterr()
    assert main(_shard_command(0, 2)[3:]) == 0
    assert _counts(capsys.readouterr().out)[:2] == (0, 3)


def test_shard_plan_is_deterministic_disjoint_and_whole_chunks():
    videos = [("b.mp4", 20, 8), ("a.mp4", 1000, 64), ("c.mp4", 300, 64)]
    plans = assign_shards(videos, task_frames=256, count=3)
    assert plans == assign_shards(list(reversed(videos)), task_frames=256, count=3)
    units = sorted(u for plan in plans for u in plan)
    assert len(units) == len(set(units))
    for vid, n, cf in videos:
        mine = sorted((a, b) for v, a, b in units if v == vid)
        assert mine == task_units(n, cf, 256)
        assert mine[0][0] == 0 and mine[-1][1] == n
        assert all(a % cf == 0 for a, _ in mine)
        assert all(b0 == a1 for (_, b0), (a1, _) in zip(mine, mine[1:], strict=False))
    loads = [sum(b - a for _, a, b in plan) for plan in plans]
    assert max(loads) - min(loads) <= 256


def test_shard_parsing_and_slurm_array(monkeypatch):
    assert Shard.parse("2/8") == Shard(2, 8)
    for bad in ("8/8", "-1/4", "x", "1/0", "1/2/3"):
        with pytest.raises(ClusterError, match="--shard"):
            Shard.parse(bad)
    with pytest.raises(ClusterError, match="SLURM_ARRAY_TASK_ID is not set"):
        Shard.parse("auto", environ={})
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "8",
           "SLURM_ARRAY_TASK_MIN": "1"}
    assert Shard.parse("auto", environ=env) == Shard(4, 8)  # --array=1-8
    env = {"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "3",
           "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_STEP": "2"}
    assert Shard.parse("auto", environ=env) == Shard(2, 3)  # --array=0-4:2


def test_shard_options_refused_with_cluster_or_hdf5(video_folder, tmp_path, capsys):
    assert _extract(video_folder, "--out", tmp_path / "f.zarr", "--shard", "0/2",
                    "--cluster", "local:1") == 2
    assert "cannot be combined with --cluster" in capsys.readouterr().err
    assert _extract(video_folder, "--out", tmp_path / "f.h5", "--shard", "0/2") == 2
    assert "Zarr" in capsys.readouterr().err
    assert _extract(video_folder, "--out", tmp_path / "f.zarr", "--shard", "3/2") == 2
    assert "0 to N-1" in capsys.readouterr().err


def test_store_lock_waits_then_takes_over_a_dead_holder(tmp_path):
    store = tmp_path / "f.zarr"
    lock = tmp_path / ".f.zarr.prism-lock"
    with store_lock(store):
        assert lock.exists()
        with pytest.raises(StoreError, match="delete the lock file"), \
                store_lock(store, timeout=0.3):
            pass
    assert not lock.exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": dead.pid}))
    with store_lock(store, timeout=5):  # the holder died: taken over
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"host": "another-node", "pid": 1}))
    os.utime(lock, (time.time() - 1000, time.time() - 1000))
    with store_lock(store, timeout=5, stale_after=300):  # not refreshed for long: stale
        pass


def _sleepy_task(*args, **kwargs):
    time.sleep(3.0)
    return 0


def test_all_workers_gone_mid_run_ends_with_a_message(video_folder, tmp_path):
    """A walltime-killed Slurm job, simulated: the only worker exits while tasks remain."""
    from prism_science.extraction import ExtractOptions, run_extraction
    from prism_science.extraction.windows import WindowParams

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                       protocol="tcp://", dashboard_address=None)

    def exit_worker():
        with distributed.Client(cluster.scheduler_address) as client:
            deadline = time.monotonic() + 60
            while not client.processing() or not any(client.processing().values()):
                assert time.monotonic() < deadline
                time.sleep(0.05)
        cluster.scale(0)

    stopper = threading.Thread(target=exit_worker, daemon=True)
    stopper.start()
    options = ExtractOptions(model=TEST_MODEL, params=WindowParams(hop=2), device="cpu",
                             chunk_frames=8, progress=False)
    try:
        t0 = time.monotonic()
        report = run_extraction([video_folder], tmp_path / "f.zarr", options, recursive=True,
                                cluster=cluster.scheduler_address,
                                cluster_options={"worker_timeout": 1, "poll_seconds": 0.2,
                                                 "task_function": _sleepy_task})
        elapsed = time.monotonic() - t0
    finally:
        stopper.join(timeout=10)
        cluster.close()
    assert elapsed < 30
    assert report.interrupted and "no Dask worker connected" in report.interrupted
    assert not report.ok and sorted(v for v, _ in report.incomplete) == ["a.mp4", "sub__b.mp4"]
