"""`prism-science store repair`: every complete video of a damaged store is recovered.

HDF5 files damaged by a kill or a full disk (links to broken objects, a file cut short) block
every command, and h5py cannot delete a broken link: repair copies what reads back whole into a
new file. A Zarr store with a half-written video is repaired in place. A kill before a new Zarr
store's first write leaves a folder that the rerun starts over in.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import StoreError
from prism_science.store import open_store, repair_store
from prism_science.store.hdf5 import data_folder
from tests.robustness.conftest import write_video

MODEL = "prism-test-p8-f4-r32"
KEY = f"{MODEL}/mean"
EXTRACT = ("--model", MODEL, "--hop", "4", "--chunk-frames", "8", "--no-progress")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / f"v{i}.mp4", 40, seed=i) for i in (1, 2, 3)]


@pytest.fixture(scope="module")
def reference(videos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("reference")
    assert main(["extract", *map(str, videos), "--out", str(folder / "ref.h5"), *EXTRACT]) == 0
    with open_store(folder / "ref.h5", "r") as store:
        values = {v: store.read_features(v, KEY).values for v in store.video_ids()}
    return folder / "ref.h5", values


def _store_copy(reference, tmp_path, name="s.h5"):
    """A copy of the reference store under another name: the file and its data folder."""
    path = tmp_path / name
    shutil.copy(reference[0], path)
    shutil.copytree(data_folder(reference[0]), data_folder(path))
    return path


def _assert_equal_to_reference(path, reference, complete=None):
    _, values = reference
    with open_store(path, "r") as store:
        ids = complete if complete is not None else list(values)
        for video_id in ids:
            np.testing.assert_array_equal(store.read_features(video_id, KEY).values,
                                          values[video_id])


def _object_address(path, name):
    with h5py.File(path, "r") as handle:
        return h5py.h5o.get_info(handle[name].id).addr


def _overwrite(path, offset, data):
    with open(path, "r+b") as handle:
        handle.seek(offset)
        handle.write(data)


def test_hdf5_with_a_broken_object_is_recovered_into_a_new_file(reference, videos, tmp_path,
                                                                capsys):
    path = _store_copy(reference, tmp_path)
    with open_store(path, "a") as store:  # items other modules attach are carried over
        store.write_json("v1.mp4", "labels/manual", {"anything": [1, 2]})
        store.write_array("v1.mp4", "predictions/p/scores", np.ones((40, 2)), {"b": ["x"]})
        store.write_json(None, "probes/p", {"kind": "linear"})
    _overwrite(path, _object_address(path, "videos/v2.mp4/features"), bytes(range(64)))
    # the damage blocks the normal commands, with a message instead of a traceback
    assert main(["extract", *map(str, videos), "--out", str(path), *EXTRACT]) == 2
    assert "store repair" in capsys.readouterr().err
    assert main(["store", "repair", str(path)]) == 1
    out = capsys.readouterr().out
    assert "recovered v1.mp4" in out and "recovered v3.mp4" in out
    assert "partial   v2.mp4" in out and "features: dropped" in out
    repaired = tmp_path / "s.repaired.h5"
    _assert_equal_to_reference(repaired, reference, ["v1.mp4", "v3.mp4"])
    with open_store(repaired, "r") as store:
        assert store.read_json("v1.mp4", "labels/manual") == {"anything": [1, 2]}
        assert store.read_array_attrs("v1.mp4", "predictions/p/scores") == {"b": ["x"]}
        assert store.read_json(None, "probes/p") == {"kind": "linear"}
        assert store.feature_keys("v2.mp4") == []  # its record is kept: a rerun fills it
    assert main(["extract", *map(str, videos), "--out", str(repaired), *EXTRACT]) == 0
    _assert_equal_to_reference(repaired, reference)


def test_hdf5_cut_short_keeps_the_chunks_before_the_cut(reference, videos, tmp_path):
    path = _store_copy(reference, tmp_path)
    os.truncate(path, os.path.getsize(path) - 3000)
    with pytest.raises(StoreError, match="cannot open"):
        open_store(path, "r")
    report = repair_store(path, tmp_path / "fixed.h5")
    assert not report.everything_recovered and report.ids("lost") == []
    with open_store(tmp_path / "fixed.h5", "r") as store:
        for video_id, values in reference[1].items():  # what is marked written is right
            if KEY not in store.feature_keys(video_id):  # its metadata lay past the cut
                continue
            features = store.read_features(video_id, KEY, allow_incomplete=True)
            done = np.repeat(features.done_chunks, features.chunk_frames)[:40]
            np.testing.assert_array_equal(features.values[done], values[done])
        assert store.feature_status("v1.mp4", KEY) == "complete"
    assert main(["extract", *map(str, videos), "--out", str(tmp_path / "fixed.h5"),
                 *EXTRACT]) == 0
    _assert_equal_to_reference(tmp_path / "fixed.h5", reference)


def _zarr_copy(reference, tmp_path):
    path = tmp_path / "s.zarr"
    assert repair_store(reference[0], path).everything_recovered  # HDF5 -> Zarr copy
    return path


def test_zarr_half_written_video_is_repaired_in_place(reference, videos, tmp_path, capsys):
    path = _zarr_copy(reference, tmp_path)
    with open_store(path, "a") as store:
        store._b.set_attrs("videos/v3.mp4", {"video": None})  # its record never finished
        store._b.delete("videos/v2.mp4/features/" + KEY + "/chunk_done")  # set half-created
    values_dir = path / "videos" / "v1.mp4" / "features" / KEY / "values"
    storage = sorted(p for p in values_dir.rglob("*") if p.is_file() and p.name != "zarr.json")
    storage[-1].write_bytes(b"\x00garbage")  # a chunk (or shard) file that no longer decodes
    (path / "videos" / "zarr.abc123.partial").write_bytes(b"{")  # a killed metadata write
    assert main(["store", "repair", str(path)]) == 1
    out = capsys.readouterr().out
    assert "partial   v1.mp4" in out and "did not read back" in out
    assert "partial   v2.mp4" in out and "lost      v3.mp4" in out
    assert not list(path.rglob("*.partial"))
    with open_store(path, "r") as store:
        assert store.video_ids() == ["v1.mp4", "v2.mp4"]
        missing = store.missing_ranges("v1.mp4", KEY)
        assert missing and missing[-1][1] == 40  # the last file's frames, to be recomputed
        done = np.repeat(store.done_chunks("v1.mp4", KEY), 8)[:40]
        np.testing.assert_array_equal(  # the chunks that read back are kept as they were
            store.read_features("v1.mp4", KEY, allow_incomplete=True).values[done],
            reference[1]["v1.mp4"][done])
    assert main(["extract", *map(str, videos), "--out", str(path), *EXTRACT]) == 0
    _assert_equal_to_reference(path, reference)
    assert main(["store", "repair", str(path)]) == 0  # a healthy store: nothing to do
    assert "3 video(s) recovered whole" in capsys.readouterr().out


def test_repair_refuses_what_it_cannot_do(reference, tmp_path, capsys):
    path = _store_copy(reference, tmp_path)
    (tmp_path / "taken.h5").write_bytes(b"x")
    assert main(["store", "repair", str(path), "--out", str(tmp_path / "taken.h5")]) == 2
    assert "exists already" in capsys.readouterr().err
    (tmp_path / "junk.h5").write_bytes(os.urandom(4096))
    assert main(["store", "repair", str(tmp_path / "junk.h5")]) == 2
    assert "not an HDF5 file" in capsys.readouterr().err
    assert main(["store", "repair", str(tmp_path / "missing.zarr")]) == 2
    assert "no store there" in capsys.readouterr().err


def test_zarr_killed_before_its_first_write_starts_over(tmp_path, videos):
    path = tmp_path / "new.zarr"
    pid = os.fork()
    if pid == 0:  # the child dies at the store's first file write (zarr writes via rename)
        try:
            from pathlib import Path

            def die(self, target):
                os._exit(17)

            Path.replace = die
            open_store(path, "a")
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 17
    assert path.is_dir() and any(path.rglob("*.partial"))  # what a kill leaves
    assert not (path / "zarr.json").exists()
    assert main(["extract", str(videos[0]), "--out", str(path), *EXTRACT]) == 0
    with open_store(path, "r") as store:
        assert store.feature_status("v1.mp4", KEY) == "complete"
    other = tmp_path / "other.zarr"  # a folder holding other files is still refused
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["extract", str(videos[0]), "--out", str(other), *EXTRACT]) == 2
    assert (other / "notes.txt").read_text() == "mine"


CHILD = textwrap.dedent("""
    import os, sys
    from prism_science.store import backends, hdf5
    n_kill, count = int(sys.argv[1]), [0]
    def hook(cls, name):
        original = getattr(cls, name)
        def hooked(self, *args, **kwargs):
            count[0] += 1
            if count[0] == n_kill:
                os._exit(17)
            return original(self, *args, **kwargs)
        setattr(cls, name, hooked)
    for cls in (hdf5.HDF5Backend, backends.ZarrBackend):
        for name in ("require_group", "create_array", "set_attrs", "delete", "flush"):
            hook(cls, name)
    from prism_science.cli.main import main
    sys.exit(main(["extract", *sys.argv[4:], "--out", sys.argv[2], "--model", sys.argv[3],
                   "--hop", "4", "--chunk-frames", "8", "--no-progress"]))
""")


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".h5", ".zarr"])
def test_kill_while_adding_videos_loses_no_complete_video(reference, videos, tmp_path, suffix):
    """A store holding v1 is killed at several writes while v2 and v3 are added; after each,
    repair keeps v1 whole and the rerun on the repaired store completes to the reference."""
    for n_kill in (4, 11, 19):
        base = tmp_path / f"k{n_kill}{suffix}"
        assert main(["extract", str(videos[0]), "--out", str(base), *EXTRACT]) == 0
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        result = subprocess.run([sys.executable, "-c", CHILD, str(n_kill), str(base), MODEL,
                                 *map(str, videos[1:])], capture_output=True, text=True,
                                env=env, timeout=300)
        assert result.returncode == 17, result.stderr[-2000:]
        out = None if suffix == ".zarr" else tmp_path / f"k{n_kill}.repaired.h5"
        report = repair_store(base, out)
        assert "v1.mp4" in report.ids("recovered")
        target = out or base
        _assert_equal_to_reference(target, reference, ["v1.mp4"])
        assert main(["extract", *map(str, videos), "--out", str(target), *EXTRACT]) == 0
        _assert_equal_to_reference(target, reference)
