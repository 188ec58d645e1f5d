"""The kill-safe HDF5 layout: ``X.h5`` replaced atomically, feature arrays in ``X.h5.d/``.

Stores made by earlier versions (one file, written in place) are read as they are and moved to
the new layout on their first write; a store copied or renamed with its data folder stays
readable (and its links are pointed home at its next write); a change that fails half-way is
dropped whole; replacing a label set is atomic at every kill point.
"""

from __future__ import annotations

import logging
import os
import shutil

import h5py
import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import StoreError
from prism_science.labels import Interval, LabelTable, Segment, load_labels, save_labels
from prism_science.store import open_store
from prism_science.store.hdf5 import LAYOUT_ATTR, data_folder
from tests.store.conftest import write_video

MODEL = "prism-test-p8-f4-r32"
KEY = f"{MODEL}/mean"
EXTRACT = ("--model", MODEL, "--hop", "4", "--chunk-frames", "8", "--no-progress")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / f"v{i}.mp4", 20, width=32, height=32, seed=i) for i in (1, 2)]


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    path = tmp_path_factory.mktemp("reference") / "ref.h5"
    assert main(["extract", *map(str, videos), "--out", str(path), *EXTRACT]) == 0
    with open_store(path, "a") as store:
        save_labels(store, "v1.mp4", LabelTable([Interval("groom", 2, 6)], [Segment(0, 19)]))
    with open_store(path, "r") as store:
        return path, {v: store.read_features(v, KEY).values for v in store.video_ids()}


def _flatten(src_path, dst_path):
    """The single-file store an earlier version wrote: the same tree, arrays inline (chunked),
    no layout attribute."""
    with h5py.File(src_path, "r") as src, h5py.File(dst_path, "w") as dst:
        def copy(s, d):
            for key, value in s.attrs.items():
                if key != LAYOUT_ATTR:
                    d.attrs[key] = value
            for name in s:
                obj = s[name]  # HDF5 follows the external links itself
                if isinstance(obj, h5py.Group):
                    copy(obj, d.create_group(name))
                else:
                    data = obj[...]
                    new = d.create_dataset(name, data=data, chunks=True if data.ndim else None)
                    for key, value in obj.attrs.items():
                        new.attrs[key] = value
        copy(src, dst)


def test_a_single_file_store_is_read_as_is_and_moved_on_first_write(reference, videos,
                                                                    tmp_path, caplog):
    path, values = reference
    old = tmp_path / "old.h5"
    _flatten(path, old)
    with h5py.File(old, "r+") as handle:  # v2's features: unfinished, one chunk written
        handle[f"videos/v2.mp4/features/{KEY}"].attrs["complete"] = "false"
        handle[f"videos/v2.mp4/features/{KEY}/chunk_done"][1:] = 0
    inode = os.stat(old).st_ino
    with open_store(old, "r") as store:  # read as it is: nothing written
        np.testing.assert_array_equal(store.read_features("v1.mp4", KEY).values,
                                      values["v1.mp4"])
        assert store.feature_status("v2.mp4", KEY) == "incomplete"
    assert not data_folder(old).exists()
    with caplog.at_level(logging.INFO, logger="prism_science.store.hdf5"):
        assert main(["extract", *map(str, videos), "--out", str(old), *EXTRACT]) == 0
    assert "moved to the kill-safe layout" in caplog.text
    linked = list(data_folder(old).glob("legacy-*.h5"))
    assert len(linked) == 1 and os.stat(linked[0]).st_ino == inode  # a hard link: no copy
    with h5py.File(old, "r") as handle:
        assert LAYOUT_ATTR in handle.attrs
    with open_store(old, "r") as store:
        for video_id, expected in values.items():
            np.testing.assert_array_equal(store.read_features(video_id, KEY).values, expected)
        assert load_labels(store, "v1.mp4").intervals[0].behavior == "groom"


def test_a_store_copied_or_renamed_with_its_data_folder_stays_readable(reference, tmp_path):
    path, values = reference
    moved = tmp_path / "elsewhere" / "renamed.h5"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    shutil.copytree(data_folder(path), data_folder(moved))
    with open_store(moved, "r") as store:
        for video_id, expected in values.items():
            np.testing.assert_array_equal(store.read_features(video_id, KEY).values, expected)
    with open_store(moved, "a"):  # the next write points the links at renamed.h5.d
        pass
    with h5py.File(moved, "r") as handle:  # so tools following HDF5 links find the data
        link = handle.get(f"videos/v1.mp4/features/{KEY}/values", getlink=True)
        assert link.filename.startswith("renamed.h5.d/")
        np.testing.assert_array_equal(handle[f"videos/v1.mp4/features/{KEY}/values"][...],
                                      values["v1.mp4"])
    alone = tmp_path / "alone.h5"  # the file without its folder: a message saying so
    shutil.copy(moved, alone)
    with open_store(alone, "r") as store, pytest.raises(StoreError, match="alone.h5.d"):
        store.read_features("v1.mp4", KEY)


def test_a_change_that_fails_half_way_is_dropped_whole(reference, tmp_path):
    path = tmp_path / "s.h5"
    with open_store(path, "a") as store:
        store.write_json(None, "doc", {"version": 1})
        with pytest.raises(RuntimeError), store._b.batch():
            store.write_json(None, "doc", {"version": 2})
            store.write_json(None, "other", {"x": 1})
            raise RuntimeError("failed half-way")
        assert store.read_json(None, "doc") == {"version": 1}
        assert not store.has_item(None, "other")
    with open_store(path, "r") as store:
        assert store.read_json(None, "doc") == {"version": 1}
    assert not list(tmp_path.glob(".s.h5.*.tmp"))


@pytest.mark.slow
def test_replacing_labels_is_atomic_at_every_kill_point(reference, tmp_path):
    from tests.robustness.test_hdf5_kill_points import _store_writes

    path, _ = reference
    new = LabelTable([Interval("chase", 10, 15)], [Segment(0, 19)])
    n_kill, outcomes = 0, set()
    while True:
        n_kill += 1
        folder = tmp_path / f"k{n_kill}"
        folder.mkdir()
        store_path = folder / "s.h5"
        shutil.copy(path, store_path)
        shutil.copytree(data_folder(path), data_folder(store_path))
        pid = os.fork()
        if pid == 0:
            try:
                count = [0]

                def write(count=count, n_kill=n_kill):
                    count[0] += 1
                    if count[0] == n_kill:
                        os._exit(17)
                _store_writes(folder, write)
                with open_store(store_path, "a") as store:
                    save_labels(store, "v1.mp4", new)
                os._exit(0)
            finally:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        assert code in (0, 17), n_kill
        with open_store(store_path, "r") as store:
            behavior = load_labels(store, "v1.mp4").intervals[0].behavior
        assert behavior in ("groom", "chase"), n_kill
        outcomes.add(behavior)
        shutil.rmtree(folder)
        if code == 0:
            break
    assert outcomes == {"groom", "chase"} and n_kill > 3


def test_a_reader_in_the_writers_process_reads_features_being_written(tmp_path):
    path = tmp_path / "s.h5"
    with open_store(path, "a") as writer:
        writer.put_video("v", source_path="x", relative_path="x", size_bytes=1,
                         content_hash="h", timestamps=np.arange(20.0), fps=1.0, width=1, height=1)
        writer.create_features("v", "m/mean", (4,), {"model_name": "m"}, chunk_frames=8)
        writer.write_chunks("v", "m/mean", 0, np.ones((8, 4), np.float32))
        with open_store(path, "r") as reader:  # the GUI shows what extraction wrote so far
            features = reader.read_features("v", "m/mean", allow_incomplete=True)
            assert features.done_chunks.tolist() == [True, False, False]
            assert features.values[:8].sum() == 32 and features.values[8:].sum() == 0
        writer.write_chunks("v", "m/mean", 8, np.ones((12, 4), np.float32))
        writer.mark_complete("v", "m/mean")
    with open_store(path, "r") as reader:
        assert reader.read_features("v", "m/mean").values.sum() == 80
