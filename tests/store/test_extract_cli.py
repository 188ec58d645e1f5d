"""`prism-science extract` end to end on tiny videos with the test model."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.store import FeatureStore, open_store
from tests.store.conftest import TEST_MODEL, write_video

KEY = f"{TEST_MODEL}/mean"
BASE = ["--model", TEST_MODEL, "--hop", "2", "--chunk-frames", "8", "--no-progress"]


def _extract(*args):
    return main(["extract", *map(str, args), *BASE])


def _values(store_path, video_id, key=KEY):
    with open_store(store_path, "r") as store:
        return store.read_features(video_id, key).values


def test_folder_with_a_bad_video(video_folder, tmp_path, capsys):
    (video_folder / "broken.mp4").write_bytes((video_folder / "a.mp4").read_bytes()[:2000])
    (video_folder / "empty.mp4").write_bytes(b"")
    out = tmp_path / "f.zarr"
    rc = _extract(video_folder, "--recursive", "--out", out)
    report = capsys.readouterr().out
    assert rc == 1
    assert "2 extracted" in report and "2 failed" in report
    assert "broken.mp4" in report and "empty.mp4" in report
    with open_store(out, "r") as store:
        assert store.video_ids() == ["a.mp4", "sub__b.mp4"]
        info = store.video_info("sub__b.mp4")
        assert info.n_frames == 20 and info.width == 64 and info.height == 48
        assert info.source_path.endswith("b.mp4") and info.content_hash.startswith("sha256s:")
        np.testing.assert_allclose(info.timestamps, np.arange(20) / 30.0, atol=1e-6)
        feats = store.read_features("a.mp4", KEY)
        assert feats.values.shape == (37, 32) and feats.values.dtype == np.float32
        assert np.isfinite(feats.values).all() and feats.values.std() > 0
        prov = feats.provenance
        assert prov["model_name"] == TEST_MODEL and prov["window"]["hop"] == 2
        assert prov["weights_sha256"] and prov["library_version"] and prov["created"]


def test_rerun_skips_complete_videos(video_folder, tmp_path, capsys):
    out = tmp_path / "f.zarr"
    assert _extract(video_folder, "--out", out) == 0
    before = _values(out, "a.mp4")
    chunk = out / "videos" / "a.mp4" / "features" / TEST_MODEL / "mean" / "values" / "c" / "0" / "0"
    mtime = chunk.stat().st_mtime_ns
    capsys.readouterr()
    assert _extract(video_folder, "--out", out) == 0
    assert "0 extracted, 1 already complete" in capsys.readouterr().out
    assert chunk.stat().st_mtime_ns == mtime  # nothing rewritten
    np.testing.assert_array_equal(_values(out, "a.mp4"), before)


def test_interrupted_run_is_completed_by_a_rerun(video_folder, tmp_path, monkeypatch, capsys):
    out = tmp_path / "f.zarr"
    video = video_folder / "a.mp4"
    assert _extract(video, "--out", tmp_path / "ref.zarr") == 0
    reference = _values(tmp_path / "ref.zarr", "a.mp4")

    calls = {"n": 0}
    original = FeatureStore.write_chunks

    def dies_on_third_chunk(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(FeatureStore, "write_chunks", dies_on_third_chunk)
    # One file (and one write) per chunk, so that the third write is the third chunk.
    assert _extract(video, "--out", out, "--frames-per-file", "8") == 130
    report = capsys.readouterr().out  # Ctrl-C still ends with the summary
    assert "STOPPED: interrupted (Ctrl-C)" in report and "0 extracted" in report
    assert "INCOMPLETE a.mp4: 21 of 37 frames not written" in report
    with open_store(out, "r") as store:
        assert store.feature_status("a.mp4", KEY) == "incomplete"
        assert store.done_chunks("a.mp4", KEY).tolist() == [True, True, False, False, False]
        with pytest.raises(Exception, match="incomplete"):
            store.read_features("a.mp4", KEY)
    monkeypatch.setattr(FeatureStore, "write_chunks", original)
    written = []
    monkeypatch.setattr(FeatureStore, "write_chunks",
                        lambda self, vid, key, start, values: (written.append(start),
                                                               original(self, vid, key, start,
                                                                        values)))
    assert _extract(video, "--out", out) == 0
    assert sorted(written) == [16, 24, 32]  # only the missing chunks were computed
    np.testing.assert_allclose(_values(out, "a.mp4"), reference, atol=1e-6)


def test_refuses_other_parameters_then_overwrite(video_folder, tmp_path, capsys):
    out = tmp_path / "f.zarr"
    video = video_folder / "sub" / "b.mp4"
    assert _extract(video, "--out", out) == 0
    capsys.readouterr()
    assert _extract(video, "--out", out, "--window", "center") == 2
    err = capsys.readouterr().err
    assert "Refusing to mix" in err and "mode=sliding" in err and "mode=center" in err
    assert "--overwrite" in err
    assert _extract(video, "--out", out, "--window", "center", "--overwrite") == 0
    with open_store(out, "r") as store:
        assert store.feature_provenance("b.mp4", KEY)["window"]["mode"] == "center"
    # Another token mode is another feature set: it lives beside the first.
    assert _extract(video, "--out", out, "--tokens", "grid", "--grid", "2") == 0
    with open_store(out, "r") as store:
        assert sorted(store.feature_keys("b.mp4")) == [f"{TEST_MODEL}/grid2", KEY]
        assert store.read_features("b.mp4", f"{TEST_MODEL}/grid2").values.shape == (20, 2, 2, 32)


def test_changed_video_is_refused_without_overwrite(tmp_path, capsys):
    video = write_video(tmp_path / "v.mp4", 12, seed=3)
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out) == 0
    write_video(video, 14, seed=4)
    capsys.readouterr()
    assert _extract(video, "--out", out) == 1
    assert "--overwrite" in capsys.readouterr().out
    assert _extract(video, "--out", out, "--overwrite") == 0
    assert _values(out, "v.mp4").shape == (14, 32)


def test_hdf5_store_matches_zarr(video_folder, tmp_path):
    video = video_folder / "a.mp4"
    assert _extract(video, "--out", tmp_path / "f.zarr", "--tokens", "full") == 0
    assert _extract(video, "--out", tmp_path / "f.h5", "--tokens", "full") == 0
    zarr_values = _values(tmp_path / "f.zarr", "a.mp4", f"{TEST_MODEL}/full")
    with open_store(tmp_path / "f.h5", "r") as store:
        assert store.format == "hdf5"
        feats = store.read_features("a.mp4")
        assert feats.values.shape == (37, 4, 4, 32)
        np.testing.assert_allclose(feats.values, zarr_values, atol=1e-6)
        assert store.video_info("a.mp4").n_frames == 37


def test_option_errors(video_folder, tmp_path, capsys):
    from prism_science.models import find_weights

    if find_weights("default") is None:
        rc = main(["extract", str(video_folder), "--out", str(tmp_path / "x.zarr"),
                   "--no-progress"])
        assert rc == 2 and "default encoder is not bundled" in capsys.readouterr().err
    assert _extract(video_folder, "--out", tmp_path / "x.h5", "--cluster", "local:2") == 2
    assert "Zarr" in capsys.readouterr().err
    assert _extract(tmp_path / "missing.mp4", "--out", tmp_path / "y.zarr") == 1
    assert "does not exist" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        _extract(video_folder, "--out", tmp_path / "z.zarr", "--device", "gpu")
    import torch

    if not torch.cuda.is_available():
        capsys.readouterr()
        assert _extract(video_folder, "--out", tmp_path / "z.zarr", "--device", "cuda") == 2
        assert "sees no CUDA device" in capsys.readouterr().err


def test_decode_failure_keeps_written_chunks_and_names_the_frame(video_folder, monkeypatch,
                                                                 tmp_path, capsys):
    from prism_science.errors import VideoError
    from prism_science.video import VideoReader

    original = VideoReader.iter_chunks

    def fails_at_frame_32(self, chunk_size, start=0, stop=None, size=None, crop=None):
        for first, frames in original(self, chunk_size, start, stop, size, crop):
            if first + len(frames) > 32:
                raise VideoError(f"{self.path}: frame 32 cannot be decoded (file damaged)")
            yield first, frames

    monkeypatch.setattr(VideoReader, "iter_chunks", fails_at_frame_32)
    out = tmp_path / "f.zarr"
    assert _extract(video_folder, "--out", out) == 1
    assert "frame 32 cannot be decoded" in capsys.readouterr().out
    with open_store(out, "r") as store:
        done = store.done_chunks("a.mp4", KEY)
        assert done[:2].all() and not done.all()  # frames 0..15 kept
        kept = store.read_features("a.mp4", KEY, allow_incomplete=True).values[:16]
    monkeypatch.setattr(VideoReader, "iter_chunks", original)
    assert _extract(video_folder, "--out", out) == 0
    np.testing.assert_array_equal(_values(out, "a.mp4")[:16], kept)


def test_truncated_container_extracts_the_decodable_frames(tmp_path):
    video = write_video(tmp_path / "v.mkv", 60, seed=5)
    data = video.read_bytes()
    video.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "f.zarr"
    # Extracted up to the last decodable frame, and reported short (exit 3), never silently.
    assert _extract(video, "--out", out) == 3
    values = _values(out, "v.mkv")
    assert 0 < values.shape[0] < 60 and np.isfinite(values).all()


def test_find_videos_globs_recursion_and_image_folders(tmp_path):
    from PIL import Image

    from prism_science.extraction import find_videos

    root = tmp_path / "data"
    (root / "day1").mkdir(parents=True)
    (root / "day2").mkdir()
    (root / "frames").mkdir()
    for rel in ("x.mp4", "y.avi", "notes.txt", "day1/x.mp4", "day2/z.mp4"):
        (root / rel).write_bytes(b"")
    for i in range(6):
        Image.new("RGB", (40, 32), (i * 40, 0, 0)).save(root / "frames" / f"img{i}.png")
    sources, problems = find_videos([root])
    assert [s.relative_path for s in sources] == ["x.mp4", "y.avi"] and not problems
    sources, _ = find_videos([root], glob="*.mp4", recursive=True)
    assert [s.video_id for s in sources] == ["x.mp4", "day1__x.mp4", "day2__z.mp4", "frames"]
    # The same name from two places gets distinct ids; the same file twice is taken once.
    sources, _ = find_videos([root / "x.mp4", root / "day1" / "x.mp4", root / "x.mp4"])
    assert len(sources) == 2 and sources[0].video_id == "x.mp4"
    assert sources[1].video_id.startswith("x.mp4-")
    _, problems = find_videos([root / "day1", tmp_path / "nope"], glob="*.avi")
    assert [p for p, _ in problems] == [str(root / "day1"), str(tmp_path / "nope")]
    # A folder of image frames is one video.
    out = tmp_path / "f.zarr"
    assert _extract(root / "frames", "--out", out) == 0
    assert _values(out, "frames").shape == (6, 32)
