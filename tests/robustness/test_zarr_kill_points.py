"""Zarr extraction killed at every write of a small run.

A child process runs ``prism-science extract`` of two videos into a new Zarr store and dies
(``os._exit``) just before its N-th file change inside the store (zarr writes each file to a
temporary name and renames it over the target; deletions unlink), for every N of the run. After
each kill the store opens (or, killed before its first write, holds no ``zarr.json`` and is
started over), every video it marks complete equals the uninterrupted run, and a rerun of the same
command completes to a store equal to the uninterrupted one.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.store import open_store
from tests.robustness.conftest import write_video

ROBUSTNESS_TITLE = "Zarr extraction killed at every write"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| `extract` of two videos into a new Zarr store killed (`os._exit`) just before its N-th file
  change in the store (each zarr file rename or unlink), for every N of the run (96) | the store
  opens (killed before its first write: no `zarr.json`, started over by the rerun); every video
  it marks complete equals the uninterrupted run; the rerun of the same command exits 0 with
  every video complete and equal (features and timestamps). A kill between a video group's
  creation and its record's attributes used to make every rerun fail with `KeyError:
  videos/v1.mp4/timestamps`: such a record now counts as none |
"""

MODEL = "prism-test-p8-f4-r32"
KEY = f"{MODEL}/mean"
EXTRACT = ("--model", MODEL, "--hop", "4", "--chunk-frames", "8", "--no-progress")


def _store_changes(store: Path, on_change):
    """Patch Path.replace / Path.unlink so that ``on_change()`` runs before each one inside
    ``store``; returns a function that undoes the patch."""
    original_replace, original_unlink = Path.replace, Path.unlink
    root = str(store.resolve())

    def inside(path) -> bool:
        return str(Path(path).resolve()).startswith(root)

    def replace(self, target):
        if inside(target):
            on_change()
        return original_replace(self, target)

    def unlink(self, missing_ok=False):
        if inside(self):
            on_change()
        return original_unlink(self, missing_ok=missing_ok)

    Path.replace, Path.unlink = replace, unlink

    def undo():
        Path.replace, Path.unlink = original_replace, original_unlink
    return undo


def _contents(path: Path) -> dict:
    with open_store(path, "r") as store:
        return {v: (store.feature_status(v, KEY), store.read_features(v, KEY).values,
                    np.asarray(store.video_info(v).timestamps))
                for v in store.video_ids() if KEY in store.feature_keys(v)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The two videos, the uninterrupted store's contents and its number of file changes."""
    folder = tmp_path_factory.mktemp("kill_points")
    videos = [write_video(folder / f"v{i}.mp4", 20, width=32, height=32, seed=i) for i in (1, 2)]
    ref = folder / "ref.zarr"
    count = [0]
    undo = _store_changes(ref, lambda: count.__setitem__(0, count[0] + 1))
    try:
        assert main(["extract", *map(str, videos), "--out", str(ref), *EXTRACT]) == 0
    finally:
        undo()
    return videos, _contents(ref), count[0]


@pytest.mark.slow
def test_kill_at_every_store_write_then_rerun(run, tmp_path, record_property):
    videos, reference, n_changes = run
    assert set(reference) == {"v1.mp4", "v2.mp4"} and n_changes >= 10
    record_property("faults", n_changes)
    completed_before_kill = set()
    for n_kill in range(1, n_changes + 1):
        path = tmp_path / f"k{n_kill}.zarr"
        args = ["extract", *map(str, videos), "--out", str(path), *EXTRACT]
        pid = os.fork()
        if pid == 0:  # the child: die before the n_kill-th change of the store
            try:
                count = [0]

                def change(count=count, n_kill=n_kill):
                    count[0] += 1
                    if count[0] == n_kill:
                        os._exit(17)
                _store_changes(path, change)
                main(args)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 17, f"kill point {n_kill}"
        if (path / "zarr.json").exists():
            with open_store(path, "r") as store:  # the store opens
                complete = [v for v in store.video_ids() if store.has_video(v)
                            and KEY in store.feature_keys(v)
                            and store.feature_status(v, KEY) == "complete"]
                for video_id in complete:
                    completed_before_kill.add(n_kill)
                    np.testing.assert_array_equal(store.read_features(video_id, KEY).values,
                                                  reference[video_id][1],
                                                  err_msg=f"kill point {n_kill}, {video_id}")
        assert main(args) == 0, f"rerun after kill point {n_kill}"
        after = _contents(path)
        assert set(after) == set(reference), f"kill point {n_kill}"
        for video_id, (status_, values, timestamps) in after.items():
            assert status_ == "complete", f"kill point {n_kill}, {video_id}"
            np.testing.assert_array_equal(values, reference[video_id][1],
                                          err_msg=f"kill point {n_kill}, {video_id}")
            np.testing.assert_array_equal(timestamps, reference[video_id][2])
    assert completed_before_kill  # some kills came after the first video was complete
