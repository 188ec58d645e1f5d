"""HDF5 extraction killed at every write of a small run: finished work is never lost.

A child process (``os.fork`` of the test process) runs ``prism-science extract`` of two videos
into an HDF5 store that already holds a finished video and a label set, and dies
(``os._exit``) just before its N-th write to the store's files, for every N of the run.

Writes are counted where they reach the operating system or the HDF5 library, for paths inside
the folder that holds only the store (``s.h5``, its temporary ``.s.h5.*.tmp`` files and its
data folder ``s.h5.d/``): ``os.open`` for writing (and every ``os.write``, ``os.pwrite``,
``os.ftruncate`` on such a descriptor: the writer lock, the temporary main files),
``os.replace``, ``os.rename``, ``os.link``, ``os.unlink``, ``os.remove``, ``os.mkdir``; and
in h5py, opening a file on disk for writing, ``Group.create_dataset``,
``Dataset.__setitem__``, ``File.flush`` and ``File.close`` of a file on disk (the main file
is changed in memory and never opened on disk for writing).

After each kill: the store opens, the first video's features and labels equal the reference,
every video marked complete equals the reference, and a rerun of the same command completes
to the reference. A second test kills the first run into a new store at every write: the store
opens or does not exist yet, and the rerun starts over and completes.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.labels import Interval, LabelTable, Segment, load_labels, save_labels
from prism_science.store import open_store
from tests.robustness.conftest import write_video

MODEL = "prism-test-p8-f4-r32"
KEY = f"{MODEL}/mean"
EXTRACT = ("--model", MODEL, "--hop", "4", "--chunk-frames", "8", "--no-progress")
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _store_writes(folder: Path, on_write) -> None:
    """Run ``on_write()`` before each write to a file in ``folder`` (see the module docstring).

    Patches ``os`` and ``h5py`` for the rest of the process: call it in a child process only.
    """
    root = str(folder.resolve()) + os.sep
    fds: set[int] = set()

    def inside(path) -> bool:
        try:
            return os.path.abspath(os.fspath(path)).startswith(root)
        except TypeError:
            return False

    def by_path(original, *where):
        def hooked(*args, **kwargs):
            if any(inside(args[i]) for i in where if i < len(args)):
                on_write()
            return original(*args, **kwargs)
        return hooked

    def by_fd(original):
        def hooked(fd, *args, **kwargs):
            if fd in fds:
                on_write()
            return original(fd, *args, **kwargs)
        return hooked

    original_open, original_close = os.open, os.close

    def open_(path, flags, *args, **kwargs):
        writing = bool(flags & _WRITE_FLAGS) and inside(path)
        if writing:
            on_write()
        fd = original_open(path, flags, *args, **kwargs)
        if writing:
            fds.add(fd)
        return fd

    def close(fd):
        fds.discard(fd)
        return original_close(fd)

    os.open, os.close = open_, close
    for name in ("write", "pwrite", "ftruncate"):
        setattr(os, name, by_fd(getattr(os, name)))
    for name, where in (("replace", (0, 1)), ("rename", (0, 1)), ("link", (1,)),
                        ("unlink", (0,)), ("remove", (0,)), ("mkdir", (0,))):
        setattr(os, name, by_path(getattr(os, name), *where))

    def on_disk(obj) -> bool:
        try:
            return inside(obj.file.filename)
        except Exception:  # noqa: BLE001 - a closed object or an in-memory file
            return False

    def by_object(original):
        def hooked(self, *args, **kwargs):
            if on_disk(self):
                on_write()
            return original(self, *args, **kwargs)
        return hooked

    original_init = h5py.File.__init__

    def file_init(self, name, mode="r", *args, **kwargs):
        if mode != "r" and isinstance(name, str | os.PathLike) and inside(name):
            on_write()
        return original_init(self, name, mode, *args, **kwargs)

    h5py.File.__init__ = file_init
    h5py.Group.create_dataset = by_object(h5py.Group.create_dataset)
    h5py.Dataset.__setitem__ = by_object(h5py.Dataset.__setitem__)
    h5py.File.flush = by_object(h5py.File.flush)
    h5py.File.close = by_object(h5py.File.close)


def _in_child(folder: Path, args: list[str], n_kill: int | None) -> int:
    """Run ``main(args)`` in a forked child that dies before its ``n_kill``-th write into
    ``folder`` (None: never; the child's exit code is then 100 + the number of writes)."""
    pid = os.fork()
    if pid == 0:
        try:
            count = [0]

            def write():
                count[0] += 1
                if count[0] == n_kill:
                    os._exit(17)
            _store_writes(folder, write)
            code = main(args)
            os._exit(100 + count[0] if code == 0 else 1)
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _labels() -> LabelTable:
    return LabelTable([Interval("groom", 3, 9)], [Segment(0, 19)])


def _contents(path: Path) -> dict:
    with open_store(path, "r") as store:
        return {v: (store.feature_status(v, KEY), store.read_features(v, KEY).values,
                    np.asarray(store.video_info(v).timestamps))
                for v in store.video_ids() if KEY in store.feature_keys(v)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three videos, a store holding the first (with labels), the uninterrupted run's
    contents and its number of writes."""
    folder = tmp_path_factory.mktemp("hdf5_kill_points")
    videos = [write_video(folder / f"v{i}.mp4", 20, width=32, height=32, seed=i)
              for i in (1, 2, 3)]
    base = folder / "base" / "s.h5"
    base.parent.mkdir()
    assert main(["extract", str(videos[0]), "--out", str(base), *EXTRACT]) == 0
    with open_store(base, "a") as store:
        save_labels(store, "v1.mp4", _labels())
        labels = load_labels(store, "v1.mp4").to_dict()
    ref = folder / "ref"
    shutil.copytree(base.parent, ref)
    code = _in_child(ref, ["extract", *map(str, videos[1:]), "--out", str(ref / "s.h5"),
                           *EXTRACT], None)
    assert code > 100, code
    return videos, base, _contents(ref / "s.h5"), code - 100, labels


def _check_store(path: Path, reference: dict, labels: dict, where: str) -> set[str]:
    """The checks after a kill; returns the ids marked complete."""
    with open_store(path, "r") as store:
        assert store.feature_status("v1.mp4", KEY) == "complete", where
        np.testing.assert_array_equal(store.read_features("v1.mp4", KEY).values,
                                      reference["v1.mp4"][1], err_msg=where)
        assert load_labels(store, "v1.mp4").to_dict() == labels, where
        complete = {v for v in store.video_ids() if store.has_video(v)
                    and store.feature_status(v, KEY) == "complete"}
        for video_id in complete:
            np.testing.assert_array_equal(store.read_features(video_id, KEY).values,
                                          reference[video_id][1], err_msg=where)
    return complete


def _check_rerun(path: Path, args: list[str], reference: dict, where: str) -> None:
    assert main(args) == 0, f"rerun after {where}"
    after = _contents(path)
    assert set(after) == set(reference), where
    for video_id, (status, values, timestamps) in after.items():
        assert status == "complete", f"{where}, {video_id}"
        np.testing.assert_array_equal(values, reference[video_id][1], err_msg=where)
        np.testing.assert_array_equal(timestamps, reference[video_id][2])


@pytest.mark.slow
def test_kill_at_every_write_into_a_store_holding_finished_work(run, tmp_path):
    videos, base, reference, n_writes, labels = run
    assert set(reference) == {"v1.mp4", "v2.mp4", "v3.mp4"} and n_writes >= 30
    completed_before_kill = set()
    for n_kill in range(1, n_writes + 1):
        folder = tmp_path / f"k{n_kill}"
        shutil.copytree(base.parent, folder)
        path = folder / "s.h5"
        args = ["extract", *map(str, videos[1:]), "--out", str(path), *EXTRACT]
        assert _in_child(folder, args, n_kill) == 17, f"kill point {n_kill}"
        where = f"kill point {n_kill} of {n_writes}"
        completed_before_kill |= _check_store(path, reference, labels, where) - {"v1.mp4"}
        _check_rerun(path, args, reference, where)
        with open_store(path, "r") as store:
            assert load_labels(store, "v1.mp4").to_dict() == labels
        # what the kill left behind (unused data files, temporary main files) is gone
        used = {p.name for p in (folder / "s.h5.d").glob("*.h5")}
        assert len(used) == 3, (where, sorted(used))
        assert not list(folder.glob(".s.h5.*.tmp")), where
        shutil.rmtree(folder)
    assert completed_before_kill == {"v2.mp4", "v3.mp4"}  # kills came after each finished


@pytest.mark.slow
def test_kill_at_every_write_of_a_new_store_then_rerun(run, tmp_path):
    videos, _, reference, _, _ = run
    reference = {"v1.mp4": reference["v1.mp4"]}
    probe = tmp_path / "count"
    probe.mkdir()
    args_of = ["extract", str(videos[0]), *EXTRACT, "--out"]
    n_writes = _in_child(probe, [*args_of, str(probe / "s.h5")], None) - 100
    assert n_writes >= 10
    for n_kill in range(1, n_writes + 1):
        folder = tmp_path / f"k{n_kill}"
        folder.mkdir()
        path = folder / "s.h5"
        args = [*args_of, str(path)]
        assert _in_child(folder, args, n_kill) == 17, f"kill point {n_kill}"
        if path.exists():  # created: it opens, and what it marks complete is right
            with open_store(path, "r") as store:
                for video_id in store.video_ids():
                    if store.has_video(video_id) and \
                            store.feature_status(video_id, KEY) == "complete":
                        np.testing.assert_array_equal(
                            store.read_features(video_id, KEY).values,
                            reference[video_id][1], err_msg=f"kill point {n_kill}")
        _check_rerun(path, args, reference, f"kill point {n_kill} of {n_writes} (new store)")
        shutil.rmtree(folder)
