"""Labels saved in and loaded from the feature store (and any write_json/read_json object)."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.labels import (
    BehaviorSet,
    Interval,
    LabelTable,
    Segment,
    load_labels,
    save_labels,
)
from prism_science.labels.store_io import list_labels


def _table():
    ts = np.arange(100) / 30.0
    ts[50:] += 0.1  # a gap: three frames dropped at frame 50
    return LabelTable(
        [Interval("wing extension", 10, 19, subject="fly1", annotator="ann"),
         Interval("chase", 48, 55, subject="fly2", source="predicted", confidence=0.8,
                  box=(1.0, 2.0, 3.0, 4.0))],
        [Segment(0, 59), Segment(60, 99, "fly1", ("chase",))], "fly_01", 100, 30.0, ts,
        BehaviorSet(("wing extension", "chase", "copulation")),
    ).recompute_seconds()


class DictStore:
    """The two store methods labels use, on a dict (no video records)."""

    def __init__(self):
        self.docs = {}

    def write_json(self, video_id, key, obj):
        import json

        self.docs[(video_id, key)] = json.loads(json.dumps(obj))

    def read_json(self, video_id, key):
        return self.docs[(video_id, key)]


def test_save_and_load_with_a_plain_dict_store():
    store = DictStore()
    table = _table()
    assert save_labels(store, "fly_01", table) == "labels/manual"
    back = load_labels(store, "fly_01")
    assert back.intervals == table.intervals and back.segments == table.segments
    assert np.allclose(back.timestamps, table.timestamps)
    with pytest.raises(LabelError, match="no label set 'labels/curated'"):
        load_labels(store, "fly_01", "curated")
    with pytest.raises(LabelError, match="not allowed"):
        save_labels(store, "fly_01", table, name="../x")


@pytest.mark.parametrize("suffix", ["zarr", "h5"])
def test_feature_store_round_trip_uses_the_stored_video(tmp_path, suffix):
    store_mod = pytest.importorskip("prism_science.store")
    ts = np.arange(100) / 30.0
    ts[50:] += 0.1
    with store_mod.open_store(tmp_path / f"s.{suffix}", mode="a") as store:
        store.put_video("fly_01", source_path="/data/fly_01.mp4", relative_path="fly_01.mp4",
                        size_bytes=10, content_hash="sha256:abc", timestamps=ts, fps=30.0,
                        width=64, height=48)
        # a table read without timing: the store's timestamps give the seconds
        plain = LabelTable([Interval("chase", 48, 55, subject="fly2")], [Segment(0, 99)])
        save_labels(store, "fly_01", plain, name="manual")
        save_labels(store, "fly_01", _table(), name="predicted/linear")
        assert list_labels(store, "fly_01") == ["manual", "predicted/linear"]
        back = load_labels(store, "fly_01", "manual")
        assert back.n_frames == 100
        assert back.intervals[0].start_s == pytest.approx(48 / 30)
        assert back.intervals[0].end_s == pytest.approx(56 / 30 + 0.1)
        too_long = LabelTable([Interval("chase", 90, 120)], n_frames=130)
        with pytest.raises(LabelError, match=r"130 frames.*has 100"):
            save_labels(store, "fly_01", too_long)
        beyond = LabelTable([Interval("chase", 90, 120)])
        with pytest.raises(LabelError, match="beyond the video"):
            save_labels(store, "fly_01", beyond)
        with pytest.raises(LabelError, match="Record the video first"):
            save_labels(store, "unknown_video", plain)
        with pytest.raises(LabelError, match=r"has: \['manual', 'predicted/linear'\]"):
            load_labels(store, "fly_01", "curated")


def test_label_file_video_names_match_stored_ids():
    from prism_science.labels.store_io import match_video_id

    stored = ["fly_01.mp4", "day2__mouse.avi", "mouse.mp4", "a.b.mp4"]
    assert match_video_id("fly_01.mp4", stored) == "fly_01.mp4"
    assert match_video_id("fly_01", stored) == "fly_01.mp4"
    assert match_video_id("a.b", stored) == "a.b.mp4"
    assert match_video_id("other", stored) is None
    with pytest.raises(LabelError, match="several stored videos"):
        match_video_id("mouse", stored)
