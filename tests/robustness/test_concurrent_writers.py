"""Two writers of one store at once: both succeed with a correct store, or one is refused.

Zarr takes several extractions at once (records are prepared under ``jobs.store_lock``, chunks
are whole files written by rename), so two ``extract`` runs into one Zarr store both succeed.
An HDF5 store takes one writer at a time: the second is refused at once with a message naming
the lock file, the holder's pid, host and command, and what to do; readers are never blocked;
a lock left by a killed writer is taken over with a log line. Distributed extraction is Zarr
only and its workers open the store without this lock (tests/store/test_distributed.py).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import StoreError
from prism_science.store import lock as lock_module
from prism_science.store import open_store
from prism_science.store.hdf5 import data_folder
from prism_science.store.lock import LOCK_NAME, WriterLock
from tests.robustness.conftest import write_video

MODEL = "prism-test-p8-f4-r32"
KEY = f"{MODEL}/mean"
EXTRACT = ("--model", MODEL, "--hop", "4", "--chunk-frames", "8", "--no-progress")

HOLDER = textwrap.dedent("""
    import sys, time
    from prism_science.store import open_store
    store = open_store(sys.argv[1], "a")
    store.write_json(None, "notes/holder", {"busy": True})
    print("holding", flush=True)
    time.sleep(120)
""")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / f"v{i}.mp4", 48, width=32, height=32, seed=i) for i in (1, 2)]


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "ref.zarr"
    assert main(["extract", *map(str, videos), "--out", str(path), *EXTRACT]) == 0
    with open_store(path, "r") as store:
        return {v: store.read_features(v, KEY).values for v in store.video_ids()}


def _extract(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "prism_science", "extract", *args, *EXTRACT],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _assert_reference(path, reference):
    with open_store(path, "r") as store:
        assert store.video_ids() == sorted(reference)
        for video_id, values in reference.items():
            np.testing.assert_array_equal(store.read_features(video_id, KEY).values, values)


@pytest.fixture
def holder(tmp_path):
    """``holder(path)``: a process holding the HDF5 store ``path`` open for writing."""
    started = []

    def start(path):
        process = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(process)
        assert process.stdout.readline().strip() == "holding", process.stderr.read()
        return process
    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


@pytest.mark.slow
@pytest.mark.parametrize("same_videos", [True, False])
def test_two_zarr_extractions_at_once_both_succeed(videos, reference, tmp_path, same_videos):
    path = tmp_path / "s.zarr"
    first = _extract(*map(str, videos), "--out", str(path))
    second = _extract(*map(str, videos if same_videos else videos[1:]), "--out", str(path))
    for process in (first, second):
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-2000:]
    _assert_reference(path, reference)


@pytest.mark.slow
def test_two_hdf5_extractions_at_once_never_corrupt_the_store(videos, reference, tmp_path):
    path = tmp_path / "s.h5"
    runs = [_extract(*map(str, videos), "--out", str(path)) for _ in range(2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    for code, err in outcomes:
        assert code == 0 or (code == 2 and "another process is writing this store" in err
                             and str(data_folder(path) / LOCK_NAME) in err), err[-2000:]
    assert any(code == 0 for code, _ in outcomes)
    _assert_reference(path, reference)


def test_second_hdf5_writer_is_refused_at_once_and_readers_are_not_blocked(
        videos, reference, tmp_path, holder, capsys):
    path = tmp_path / "s.h5"
    assert main(["extract", str(videos[0]), "--out", str(path), *EXTRACT]) == 0
    process = holder(path)
    started = time.monotonic()
    assert main(["extract", *map(str, videos), "--out", str(path), *EXTRACT]) == 2
    assert time.monotonic() - started < 30  # refused at once, not after a wait
    err = capsys.readouterr().err
    lock_file = data_folder(path) / LOCK_NAME
    assert "another process is writing this store" in err
    assert str(lock_file) in err and f"pid {process.pid}" in err
    assert f"host {socket.gethostname()}" in err and "wait for that process" in err
    assert "delete the lock file" in err
    with pytest.raises(StoreError, match=f"pid {process.pid}"):
        open_store(path, "r+")
    # readers read while the writer holds the store (what it committed included)
    with open_store(path, "r") as store:
        np.testing.assert_array_equal(store.read_features("v1.mp4", KEY).values,
                                      reference["v1.mp4"])
        assert store.read_json(None, "notes/holder") == {"busy": True}
    assert main(["labels", "list", str(path)]) == 0  # a command that reads the store


def test_a_killed_writers_lock_is_taken_over_with_a_log_line(videos, reference, tmp_path,
                                                              holder, caplog):
    path = tmp_path / "s.h5"
    process = holder(path)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert str(process.pid) in (data_folder(path) / LOCK_NAME).read_text()  # left behind
    with caplog.at_level(logging.WARNING, logger="prism_science.store.lock"):
        assert main(["extract", *map(str, videos), "--out", str(path), *EXTRACT]) == 0
    assert f"taking over the writer lock {data_folder(path) / LOCK_NAME}" in caplog.text
    assert f"pid {process.pid}" in caplog.text
    _assert_reference(path, reference)
    assert (data_folder(path) / LOCK_NAME).read_text() == ""  # released at the end


def test_writers_in_one_process_share_the_store(tmp_path):
    path = tmp_path / "s.h5"
    with open_store(path, "a") as first, open_store(path, "a") as second:
        first.write_json(None, "a", {"x": 1})
        second.write_json(None, "b", {"y": 2})
        assert first.read_json(None, "b") == {"y": 2}
    with open_store(path, "r") as store:
        assert store.list_items(None) == ["a", "b"]


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_without_flock_the_pid_and_host_are_the_lock(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(lock_module, "fcntl", None)
    lock_file, store = tmp_path / "s.h5.d" / LOCK_NAME, tmp_path / "s.h5"
    lock_file.parent.mkdir()
    host = socket.gethostname()
    lock_file.write_text(f'{{"pid": {os.getppid()}, "host": "{host}", "since": "x", '
                         '"command": "prism-science extract"}')
    with pytest.raises(StoreError, match=f"pid {os.getppid()} on host {host}"):
        WriterLock.acquire(lock_file, store)
    lock_file.write_text('{"pid": 1, "host": "another-node", "since": "x"}')
    with pytest.raises(StoreError, match="another-node.*delete the lock file"):
        WriterLock.acquire(lock_file, store)
    dead = _dead_pid()
    lock_file.write_text(f'{{"pid": {dead}, "host": "{host}", "since": "x"}}')
    with caplog.at_level(logging.WARNING, logger="prism_science.store.lock"):
        held = WriterLock.acquire(lock_file, store)
    assert f"pid {dead}" in caplog.text and "no longer running" in caplog.text
    assert f'"pid": {os.getpid()}' in lock_file.read_text()
    held.release()
    assert lock_file.read_text() == "" and not held.held
