"""The feature store: one schema in Zarr v3 and HDF5, chunk markers, completion, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prism_science.errors import StoreError
from prism_science.extraction import FeatureWriter
from prism_science.store import (
    SCHEMA_VERSION,
    open_store,
    store_format,
    video_id_from_path,
)

KEY = "prism-test-p8-f4-r32/mean"


def _provenance(**changes):
    prov = {
        "model_name": "prism-test-p8-f4-r32",
        "weights_sha256": "ab" * 32,
        "num_frames": 4,
        "image_size": 32,
        "window": {"mode": "sliding", "stride": 1, "hop": 2, "tokens": "mean", "padding": "repeat"},
        "feature_shape": [3],
        "library_version": "0.1.0",
    }
    prov.update(changes)
    return prov


def _add_video(store, video_id="a.mp4", n=10, content="sha256s:1"):
    store.put_video(video_id, source_path=f"/data/{video_id}", relative_path=video_id,
                    size_bytes=1234, content_hash=content,
                    timestamps=np.arange(n) / 30.0, fps=30.0, width=64, height=48)


@pytest.fixture(params=["zarr", "hdf5"])
def store_path(request, tmp_path):
    return tmp_path / ("s.zarr" if request.param == "zarr" else "s.h5")


def test_format_by_suffix_and_video_ids():
    assert store_format("x.h5") == "hdf5" and store_format("x.HDF5") == "hdf5"
    assert store_format("x.zarr") == "zarr" and store_format("x") == "zarr"
    assert store_format("x.zarr", "hdf5") == "hdf5"
    assert video_id_from_path("mouse 1/day2.mp4") == "mouse_1__day2.mp4"
    assert video_id_from_path("./a/b/c.avi") == "a__b__c.avi"
    assert video_id_from_path("émile.mp4") == "mile.mp4"


def test_video_record_and_features_roundtrip(store_path):
    values = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    with open_store(store_path, "a") as store:
        _add_video(store)
        cf = store.create_features("a.mp4", KEY, (3,), _provenance(), chunk_frames=4)
        assert cf == 4
        assert store.feature_status("a.mp4", KEY) == "incomplete"
        writer = FeatureWriter(store, "a.mp4", KEY, 0)
        for start in range(0, 10, 3):
            writer.add(start, values[start:start + 3])
        writer.close()
        assert store.done_chunks("a.mp4", KEY).tolist() == [True, True, True]
        store.mark_complete("a.mp4", KEY)
    with open_store(store_path, "r") as store:
        assert store.video_ids() == ["a.mp4"]
        info = store.video_info("a.mp4")
        assert (info.n_frames, info.fps, info.width, info.height) == (10, 30.0, 64, 48)
        assert info.content_hash == "sha256s:1" and info.size_bytes == 1234
        np.testing.assert_allclose(info.timestamps, np.arange(10) / 30.0)
        assert store.feature_keys("a.mp4") == [KEY]
        feats = store.read_features("a.mp4")
        np.testing.assert_array_equal(feats.values, values)
        assert feats.provenance["weights_sha256"] == "ab" * 32
        assert feats.complete and feats.chunk_frames == 4
        np.testing.assert_array_equal(store.read_features("a.mp4", KEY, frames=slice(2, 5)).values,
                                      values[2:5])
        with pytest.raises(StoreError, match="read-only"):
            _add_video(store, "b.mp4")


def test_incomplete_features_are_refused_unless_asked(store_path):
    with open_store(store_path, "a") as store:
        _add_video(store)
        # One file per chunk (no shards): missing ranges are single chunks.
        store.create_features("a.mp4", KEY, (3,), _provenance(), chunk_frames=4,
                              shard_frames=4)
        store.write_chunks("a.mp4", KEY, 4, np.ones((4, 3), np.float32))
        assert store.missing_ranges("a.mp4", KEY) == [(0, 4), (8, 10)]
        with pytest.raises(StoreError, match="incomplete"):
            store.read_features("a.mp4", KEY)
        with pytest.raises(StoreError, match="cannot mark"):
            store.mark_complete("a.mp4", KEY)
        feats = store.read_features("a.mp4", KEY, allow_incomplete=True)
        assert feats.done_chunks.tolist() == [False, True, False]
        np.testing.assert_array_equal(feats.values[4:8], 1.0)
        np.testing.assert_array_equal(feats.values[:4], 0.0)
        with pytest.raises(StoreError, match="aligned"):
            store.write_chunks("a.mp4", KEY, 2, np.ones((4, 3), np.float32))
        # The last chunk may be short: it ends at the video's end.
        store.write_chunks("a.mp4", KEY, 8, np.ones((2, 3), np.float32))
        assert store.missing_ranges("a.mp4", KEY) == [(0, 4)]


def test_refuses_to_mix_parameters_and_overwrite_replaces(store_path):
    with open_store(store_path, "a") as store:
        _add_video(store)
        store.create_features("a.mp4", KEY, (3,), _provenance(), chunk_frames=4)
        # Same identity (other time/host) -> reused.
        assert store.create_features("a.mp4", KEY, (3,), _provenance(created="later")) == 4
        other = _provenance(window={"mode": "center", "stride": 1, "tokens": "mean",
                                    "padding": "repeat"})
        with pytest.raises(StoreError, match="refusing to mix") as info:
            store.create_features("a.mp4", KEY, (3,), other)
        assert "mode=sliding" in str(info.value) and "mode=center" in str(info.value)
        assert "--overwrite" in str(info.value)
        store.create_features("a.mp4", KEY, (3,), other, overwrite=True)
        assert store.feature_provenance("a.mp4", KEY)["window"]["mode"] == "center"
        assert store.chunk_frames("a.mp4", KEY) == 256


def test_other_content_under_same_id_is_refused(store_path):
    with open_store(store_path, "a") as store:
        _add_video(store)
        _add_video(store)  # same content: fine
        with pytest.raises(StoreError, match="--overwrite"):
            _add_video(store, content="sha256s:2")
        store.create_features("a.mp4", KEY, (3,), _provenance())
        store.put_video("a.mp4", source_path="x", relative_path="a.mp4", size_bytes=1,
                        content_hash="sha256s:2", timestamps=np.arange(12.0), fps=1.0,
                        width=1, height=1, overwrite=True)
        assert store.video_info("a.mp4").n_frames == 12
        assert store.feature_keys("a.mp4") == []


def test_several_models_per_store_and_key_choice(store_path):
    with open_store(store_path, "a") as store:
        _add_video(store)
        for key, shape in ((KEY, (3,)), ("other-model/grid2", (2, 2, 3))):
            store.create_features("a.mp4", key, shape, _provenance(feature_shape=list(shape)))
            store.write_chunks("a.mp4", key, 0, np.zeros((10, *shape), np.float32))
            store.mark_complete("a.mp4", key)
        assert sorted(store.feature_keys("a.mp4")) == sorted([KEY, "other-model/grid2"])
        with pytest.raises(StoreError, match="2 feature sets"):
            store.read_features("a.mp4")
        assert store.read_features("a.mp4", "other-model/grid2").values.shape == (10, 2, 2, 3)
        with pytest.raises(StoreError, match="no features"):
            store.read_features("a.mp4", "nope/mean")


def test_generic_json_and_arrays(store_path):
    with open_store(store_path, "a") as store:
        _add_video(store)
        doc = {"intervals": [{"behavior": "groom", "start_frame": 3}], "n": np.int64(2)}
        store.write_json("a.mp4", "labels/manual", doc)
        store.write_array("a.mp4", "predictions/probe1", np.eye(3, dtype=np.float32),
                          {"classes": ["a", "b", "c"]})
        store.write_array(None, "probes/p1/weights", np.arange(5))
        store.write_json(None, "probes/p1/meta", {"name": "p1"})
        with pytest.raises(StoreError, match="reserved"):
            store.write_json("a.mp4", "features/x", {})
        with pytest.raises(StoreError, match="not numeric"):
            store.write_array("a.mp4", "x", np.array(["a"]))
        with pytest.raises(StoreError, match="is a group"):
            store.write_array("a.mp4", "predictions", np.zeros(2))
        with pytest.raises(StoreError, match="not a group"):
            store.write_json("a.mp4", "labels/manual/extra", {})
        store.write_array("a.mp4", "predictions/probe1", np.eye(3, dtype=np.float32),
                          {"classes": ["a", "b", "c"]})  # replacing an item is fine
    with open_store(store_path, "r") as store:
        assert store.read_json("a.mp4", "labels/manual") == {
            "intervals": [{"behavior": "groom", "start_frame": 3}], "n": 2}
        np.testing.assert_array_equal(store.read_array("a.mp4", "predictions/probe1"), np.eye(3))
        assert store.read_array_attrs("a.mp4", "predictions/probe1") == {"classes": ["a", "b", "c"]}
        np.testing.assert_array_equal(store.read_array(None, "probes/p1/weights"), np.arange(5))
        assert store.read_json(None, "probes/p1/meta") == {"name": "p1"}
        assert store.list_items("a.mp4") == ["labels", "predictions"]
        assert store.list_items(None, "probes/p1") == ["meta", "weights"]
        assert store.has_item("a.mp4", "labels/manual")
        with pytest.raises(StoreError, match="no JSON"):
            store.read_json("a.mp4", "labels/none")


def test_other_schema_version_and_foreign_paths_are_refused(tmp_path):
    zpath = tmp_path / "s.zarr"
    with open_store(zpath, "a"):
        pass
    meta_file = zpath / "zarr.json"
    meta = json.loads(meta_file.read_text())
    meta["attributes"]["prism_science"]["schema_version"] = SCHEMA_VERSION + 1
    meta_file.write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="schema version 2"):
        open_store(zpath, "r")
    with pytest.raises(StoreError, match="no store"):
        open_store(tmp_path / "missing.zarr", "r")
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "x.txt").write_text("hi")
    with pytest.raises(StoreError, match="not a Zarr store"):
        open_store(folder, "a")
    bogus = tmp_path / "bogus.h5"
    bogus.write_text("not hdf5")
    with pytest.raises(StoreError, match="not an HDF5"):
        open_store(bogus, "a")
    import h5py

    hpath = tmp_path / "old.h5"
    with h5py.File(hpath, "w") as f:
        f.attrs["prism_science"] = json.dumps({"schema_version": 0})
    with pytest.raises(StoreError, match="schema version 0"):
        open_store(hpath, "a")


def _files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_sharded_feature_set_is_one_file_per_shard_and_missing_whole_shards(tmp_path):
    """Zarr shards: values and markers of 4 chunks in one file each; a shard with a chunk
    missing is missing whole; reads of any frame range work."""
    path = tmp_path / "s.zarr"
    values = np.random.default_rng(1).normal(size=(37, 3)).astype(np.float32)
    with open_store(path, "a") as store:
        _add_video(store, n=37)
        store.create_features("a.mp4", KEY, (3,), _provenance(), chunk_frames=4,
                              shard_frames=16)
        assert (store.chunk_frames("a.mp4", KEY), store.shard_frames("a.mp4", KEY)) == (4, 16)
        store.write_chunks("a.mp4", KEY, 16, values[16:32])  # one whole shard
        store.write_chunks("a.mp4", KEY, 0, values[0:4])     # one chunk of the first shard
        assert store.missing_ranges("a.mp4", KEY) == [(0, 16), (32, 37)]
        with pytest.raises(StoreError, match="not a multiple"):
            store.create_features("a.mp4", "other-model/mean", (3,), _provenance(),
                                  chunk_frames=4, shard_frames=10)
    feature_dir = path / "videos" / "a.mp4" / "features" / KEY
    assert _files(feature_dir / "values") == ["c/0/0", "c/1/0", "zarr.json"]
    assert _files(feature_dir / "chunk_done") == ["c/0", "c/1", "zarr.json"]
    with open_store(path, "a") as store:  # the rest, by a FeatureWriter: whole shards
        writer = FeatureWriter(store, "a.mp4", KEY, 0)
        with pytest.raises(StoreError, match="shard boundary"):
            FeatureWriter(store, "a.mp4", KEY, 4)
        writer.add(0, values[:16])
        writer.close()
        writer = FeatureWriter(store, "a.mp4", KEY, 32)
        writer.add(32, values[32:])
        writer.close()
        store.mark_complete("a.mp4", KEY)
    with open_store(path, "r") as store:
        np.testing.assert_array_equal(store.read_features("a.mp4", KEY).values, values)
        np.testing.assert_array_equal(
            store.read_features("a.mp4", KEY, frames=slice(13, 35)).values, values[13:35])
    assert len(_files(feature_dir / "values")) == 4  # 3 shards + metadata
    assert len(_files(feature_dir / "chunk_done")) == 4


def test_hdf5_ignores_shards(tmp_path):
    with open_store(tmp_path / "s.h5", "a") as store:
        _add_video(store, n=37)
        store.create_features("a.mp4", KEY, (3,), _provenance(), chunk_frames=4,
                              shard_frames=16)
        assert store.shard_frames("a.mp4", KEY) == 4


def test_store_written_before_sharding_reads_and_resumes(tmp_path):
    """A feature set as stores were written before shards (markers one chunk each, no
    shard_frames attribute) is read, resumed chunk by chunk, and completed."""
    path = tmp_path / "old.zarr"
    values = np.random.default_rng(2).normal(size=(10, 3)).astype(np.float32)
    with open_store(path, "a") as store:
        _add_video(store)
        feature_path = f"videos/a.mp4/features/{KEY}"
        store._b.require_group(feature_path)
        store._b.create_array(f"{feature_path}/chunk_done", (3,), (1,), np.uint8)
        store._b.create_array(f"{feature_path}/values", (10, 3), (4, 3), np.float32)
        store._b.set_attrs(feature_path, {"provenance": _provenance(), "chunk_frames": 4,
                                          "feature_shape": [3], "complete": False})
        store.write_chunks("a.mp4", KEY, 4, values[4:8])
    with open_store(path, "a") as store:
        assert store.shard_frames("a.mp4", KEY) == 4
        assert store.create_features("a.mp4", KEY, (3,), _provenance()) == 4  # reused as is
        assert store.missing_ranges("a.mp4", KEY) == [(0, 4), (8, 10)]
        for start, stop in store.missing_ranges("a.mp4", KEY):
            writer = FeatureWriter(store, "a.mp4", KEY, start)
            writer.add(start, values[start:stop])
            writer.close()
        store.mark_complete("a.mp4", KEY)
    with open_store(path, "r") as store:
        np.testing.assert_array_equal(store.read_features("a.mp4", KEY).values, values)
    assert len(_files(path / "videos" / "a.mp4" / "features" / KEY / "chunk_done")) == 4


def test_extracted_store_has_few_files_per_video(tmp_path):
    """3000 frames (100 s of 30 fps video): a handful of files with shards, against one value
    file and one marker file per 256-frame chunk without; same values either way."""
    from prism_science.extraction import ExtractOptions, run_extraction
    from prism_science.extraction.windows import WindowParams
    from tests.store.conftest import TEST_MODEL, write_video

    video = write_video(tmp_path / "long.mp4", 3000, width=32, height=32)
    stores = {}
    for name, shard_frames in (("sharded", None), ("unsharded", 256)):
        options = ExtractOptions(model=TEST_MODEL, params=WindowParams(hop=4), device="cpu",
                                 batch_size=32, shard_frames=shard_frames, progress=False)
        report = run_extraction([video], tmp_path / f"{name}.zarr", options)
        assert report.ok and report.frames == 3000, report.summary()
        stores[name] = tmp_path / f"{name}.zarr"
    sharded, unsharded = (len(_files(stores[n])) for n in ("sharded", "unsharded"))
    # values + markers: 1 file each (8192-frame shards), against 12 each (256-frame chunks);
    # the other 10 are metadata (zarr.json of each group and array, timestamps).
    assert sharded <= 12, _files(stores["sharded"])
    assert unsharded >= sharded + 2 * (12 - 1)
    with open_store(stores["sharded"], "r") as a, open_store(stores["unsharded"], "r") as b:
        np.testing.assert_array_equal(a.read_features("long.mp4").values,
                                      b.read_features("long.mp4").values)
