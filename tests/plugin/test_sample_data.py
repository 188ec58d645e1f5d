"""Sample data and readers without a viewer: layer tuples carry a video and its session."""

from __future__ import annotations

import pytest

from napari_prism._context import SESSION_KEY
from napari_prism._reader import get_reader, is_store
from napari_prism._sample_data import fly_clip_path, make_fly_clip, make_synthetic_clip


def test_synthetic_sample_has_its_labels():
    [(data, kwargs, kind)] = make_synthetic_clip()
    try:
        session = kwargs["metadata"][SESSION_KEY]
        assert kind == "image" and kwargs["rgb"] and data.shape[1:] == (192, 192, 3)
        assert session.n_frames == data.shape[0] == 180
        assert session.bouts("manual") and session.subject.startswith("animal")
        assert session.path.name == "synthetic.prism-session.json"
    finally:
        data.close()


def test_fly_sample_has_wing_extension_bouts():
    if not fly_clip_path().is_file():
        pytest.skip("sample_data/fly_courtship/clip.mp4 is only in a source checkout")
    [(data, kwargs, _)] = make_fly_clip()
    try:
        session = kwargs["metadata"][SESSION_KEY]
        assert data.shape == (1500, 1024, 1024, 3)
        bouts = session.bouts("manual")
        assert {b.behavior for b in bouts} == {"wing_extension"}
        frames = sum(b.end_frame - b.start_frame + 1 for b in bouts)
        assert 0.2 < frames / 1500 < 0.35  # 27% of frames per the clip's SOURCE.md
        assert fly_clip_path().parent not in session.path.parents  # never writes into the repo
    finally:
        data.close()


def test_reader_claims_videos_and_stores_only(synth_clip, tmp_path):
    from prism_science.store import open_store

    assert get_reader(str(synth_clip)) is not None
    assert get_reader(str(tmp_path / "notes.txt")) is None
    assert get_reader([str(synth_clip), str(synth_clip)]) is None
    with open_store(tmp_path / "s.zarr", mode="a"):
        pass
    assert is_store(tmp_path / "s.zarr") and get_reader(str(tmp_path / "s.zarr")) is not None
    (tmp_path / "plain").mkdir()
    assert not is_store(tmp_path / "plain")
