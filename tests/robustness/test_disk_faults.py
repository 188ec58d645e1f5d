"""A full disk or a read-only one ends with a message and an exit code, never a signal.

HDF5 used to die with signal 11 (exit 139) when the disk filled up: after a failed write the
HDF5 library holds data it cannot write, and using the file again -- even its own clean-up at
exit -- crashed. The store is now closed safely after the failure and the run reports it. Each
case runs the CLI in its own process on a small tmpfs (root and `mount` needed, else skipped).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.store import open_store
from tests.robustness.conftest import run_cli, write_video

MODEL = "prism-test-p8-f4-r32"
KEY = f"{MODEL}/full"
EXTRACT = ("--model", MODEL, "--hop", "4", "--tokens", "full", "--chunk-frames", "8",
           "--no-progress")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / f"v{i}.mp4", 60, seed=i) for i in (1, 2)]


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    """Features of both videos extracted on a disk with room."""
    path = tmp_path_factory.mktemp("ref") / "ref.zarr"
    assert main(["extract", *map(str, videos), "--out", str(path), *EXTRACT]) == 0
    with open_store(path, "r") as store:
        return {v: store.read_features(v, KEY).values for v in store.video_ids()}


def _grow(mountpoint, size_kib: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size_kib}k", str(mountpoint)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["s.h5", "s.zarr"])
def test_full_disk_ends_with_a_message_and_a_rerun_completes(tmpfs, videos, reference, name):
    disk = tmpfs(256)  # room for one video's full-token features, not two
    store_path = disk / name
    result = run_cli("extract", *map(str, videos), "--out", str(store_path), *EXTRACT)
    assert result.returncode in (1, 2), (result.returncode, result.stderr[-2000:])  # no signal
    assert "disk is full" in result.stderr and "Traceback" not in result.stderr
    assert "free space" in result.stderr
    with open_store(store_path, "r") as store:  # the store still opens...
        written = 0
        for video_id in store.video_ids():  # ...and every chunk it says is written is right
            features = store.read_features(video_id, KEY, allow_incomplete=True)
            done = np.repeat(features.done_chunks, features.chunk_frames)[:len(features.values)]
            np.testing.assert_array_equal(features.values[done], reference[video_id][done])
            written += int(done.sum())
        assert written >= 40  # what fitted on the disk was kept
    again = run_cli("extract", *map(str, videos), "--out", str(store_path), *EXTRACT)
    assert again.returncode in (1, 2) and "disk is full" in again.stderr  # still full: same
    _grow(disk, 4096)
    final = run_cli("extract", *map(str, videos), "--out", str(store_path), *EXTRACT)
    assert final.returncode == 0, final.stderr[-2000:]
    with open_store(store_path, "r") as store:
        for video_id, values in reference.items():
            np.testing.assert_array_equal(store.read_features(video_id, KEY).values, values)


@pytest.fixture(scope="module")
def read_only_stores(tmpfs, videos, tmp_path_factory):
    """A read-only tmpfs holding an HDF5 and a Zarr store (v1 extracted) and a probe."""
    from tests.probes.test_probe_cli import build_store

    tmp_path = tmp_path_factory.mktemp("read_only")
    disk = tmpfs(8192)
    for name in ("s.h5", "s.zarr"):
        assert main(["extract", str(videos[0]), "--out", str(disk / name), *EXTRACT]) == 0
    build_store(disk / "planted.zarr", n_videos=2, labeled_videos=2)
    assert main(["probe", "train", "--store", str(disk / "planted.zarr"), "--labels", "manual",
                 "--out", str(tmp_path / "probe"), "--max-epochs", "3"]) == 0
    shutil.copy(disk / "s.h5", tmp_path / "before.h5")
    tmpfs.read_only(disk)
    return disk, tmp_path


@pytest.mark.parametrize("name", ["s.h5", "s.zarr"])
def test_read_only_store_is_refused_with_a_message(read_only_stores, videos, name, capsys):
    disk, saved = read_only_stores
    store_path = disk / name
    assert main(["extract", *map(str, videos), "--out", str(store_path), *EXTRACT]) == 2
    assert "read-only file system" in capsys.readouterr().err.lower()
    with open_store(store_path, "r") as store:  # untouched, still readable
        assert store.video_ids() == ["v1.mp4"]
        assert store.feature_status("v1.mp4", KEY) == "complete"
    if name == "s.h5":
        assert (saved / "before.h5").read_bytes() == store_path.read_bytes()


def test_probe_predict_and_label_import_on_read_only_store(read_only_stores, tmp_path):
    disk, saved = read_only_stores
    store_path = disk / "planted.zarr"
    # in a process of its own: the message, exit code 2 and no traceback are what a user sees
    result = run_cli("probe", "predict", "--probe", str(saved / "probe"), "--store",
                     str(store_path))
    assert result.returncode == 2, result.stderr[-2000:]
    assert "read-only file system" in result.stderr.lower()
    assert "Traceback" not in result.stderr
    labels = tmp_path / "v0.labels.csv"
    labels.write_text("behavior,start_frame,end_frame\nwalk,0,5\n")
    result = run_cli("labels", "import", str(labels), "--store", str(store_path),
                     "--video-id", "v0", "--replace")
    assert result.returncode == 2 and "read-only file system" in result.stderr.lower()
    assert "Traceback" not in result.stderr


def test_probe_train_onto_a_read_only_disk(read_only_stores, capsys):
    disk, _ = read_only_stores
    assert main(["probe", "train", "--store", str(disk / "planted.zarr"), "--labels", "manual",
                 "--out", str(disk / "new_probe"), "--max-epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert "cannot save the probe" in err and "read-only file system" in err.lower()
