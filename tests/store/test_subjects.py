"""Per-subject extraction: crops centred on each animal's track, one feature set per subject."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import TracksError
from prism_science.extraction.subjects import (
    SubjectCrop,
    crop_frames,
    split_subject_key,
    subject_crops,
    subject_key,
)
from prism_science.store import FeatureStore, open_store
from prism_science.tracks import Tracks, read_tracks, write_tracks_csv
from tests.store.conftest import TEST_MODEL

BASE = ["--model", TEST_MODEL, "--hop", "2", "--chunk-frames", "8", "--no-progress"]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A 2-animal synthetic clip (30 frames, 96 px) with its ground-truth tracks CSV."""
    from prism_science.synth import SynthConfig, generate_clip, write_clip

    clip = generate_clip(3, SynthConfig(size=(96, 96), fps=15.0, seconds=(2.0, 2.0),
                                        n_animals=2, noise=(0.0, 0.0), blur=(0.0, 0.0)))
    folder = tmp_path_factory.mktemp("pair")
    video = write_clip(clip, folder, "pair")
    names = [a.id for a in clip.animals]
    lengths = np.array([[a.body_length_px for a in clip.animals]] * clip.n_frames, np.float32)
    tracks = Tracks(centroids=clip.tracks[..., :2].astype(np.float32), subjects=names,
                    heading=clip.tracks[..., 2].astype(np.float32), body_length=lengths,
                    frame_size=(96, 96))
    tracks_path = write_tracks_csv(tracks, folder / "pair.tracks.csv", video=str(video))
    return video, tracks_path, clip


def _extract(*args):
    return main(["extract", *map(str, args), *BASE])


def test_crop_is_the_expected_pixel_window_padded_at_edges():
    rng = np.random.default_rng(0)
    frames = rng.integers(1, 255, size=(3, 40, 50, 3), dtype=np.uint8)
    centers = np.array([[20.0, 15.0], [2.0, 38.0], [np.nan, np.nan]])
    crops = crop_frames(frames, centers, 10)
    np.testing.assert_array_equal(crops[0], frames[0, 10:20, 15:25])
    # Centre (2, 38): window x -3..6, y 33..42 -> the part past the frame is black.
    np.testing.assert_array_equal(crops[1, :7, 3:], frames[1, 33:40, 0:7])
    assert (crops[1, 7:] == 0).all() and (crops[1, :, :3] == 0).all()
    assert (crops[2] == 0).all()  # absent subject: nothing to crop


def test_heading_up_rotation_turns_a_rightward_animal_upright():
    frame = np.zeros((1, 41, 41, 3), np.uint8)
    frame[0, 20, 25:35] = 255  # a bar to the right of the centre: the "head" direction 0 rad
    up = crop_frames(frame, np.array([[20.0, 20.0]]), 21, headings=np.array([0.0]))
    column = up[0, :, 10, 0]
    assert column[:8].max() == 255 and column[12:].max() == 0  # now above the centre


def test_subject_keys_round_trip():
    assert subject_key("m/mean", "fly 1/a") == "m/mean@fly_1_a"
    assert split_subject_key("m/mean@male") == ("m/mean", "male")
    assert split_subject_key("m/mean") == ("m/mean", None)


def test_per_subject_extraction_follows_each_animal(pair, tmp_path):
    video, tracks_path, clip = pair
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out, "--subjects", tracks_path, "--crop-size", "40") == 0
    names = [a.id for a in clip.animals]
    with open_store(out, "r") as store:
        keys = store.feature_keys("pair.mp4")
        assert sorted(keys) == sorted(f"{TEST_MODEL}/mean@{n}" for n in names)
        values = [store.read_features("pair.mp4", k) for k in keys]
        for feats in values:
            assert feats.values.shape == (clip.n_frames, 32)
            assert np.isfinite(feats.values).all()
            crop = feats.provenance["crop"]
            assert crop["size"] == 40 and crop["align_heading"] is False
            assert len(crop["tracks_sha256"]) == 64
        # Two animals, two different feature streams.
        assert np.abs(values[0].values - values[1].values).max() > 1e-3


def test_subject_crop_feeds_the_model_the_animal(pair):
    video, tracks_path, clip = pair
    tracks = read_tracks(tracks_path, video=str(video))
    (crop,) = subject_crops(tracks, clip.n_frames, (96, 96), 32, crop_size=40,
                            subjects=[clip.animals[0].id])
    out = crop.transform(0, clip.frames[:2])
    assert out.shape == (2, 32, 32, 3)
    x, y = crop.centers[0]
    x0, y0 = int(round(x - 20)), int(round(y - 20))
    window = crop_frames(clip.frames[:1], crop.centers[:1], 40)[0]
    padded = np.pad(clip.frames[0], ((40, 40), (40, 40), (0, 0)))  # black past the edges
    np.testing.assert_array_equal(window, padded[y0 + 40:y0 + 80, x0 + 40:x0 + 80])
    # The animal is at the crop's centre: the crop differs from the arena's corner.
    assert np.abs(window.astype(int) - clip.frames[0, :40, :40].astype(int)).mean() > 1


def test_interrupted_subject_run_resumes_to_the_uninterrupted_result(pair, tmp_path,
                                                                     monkeypatch, capsys):
    video, tracks_path, clip = pair
    args = ["--subjects", tracks_path, "--crop-size", "40"]
    assert _extract(video, "--out", tmp_path / "ref.zarr", *args) == 0
    calls = {"n": 0}
    original = FeatureStore.write_chunks

    def dies_on_third_chunk(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(FeatureStore, "write_chunks", dies_on_third_chunk)
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out, *args, "--frames-per-file", "8") == 130
    assert "STOPPED" in capsys.readouterr().out
    monkeypatch.setattr(FeatureStore, "write_chunks", original)
    assert _extract(video, "--out", out, *args) == 0
    with open_store(out, "r") as store, open_store(tmp_path / "ref.zarr", "r") as ref:
        keys = ref.feature_keys("pair.mp4")
        assert sorted(store.feature_keys("pair.mp4")) == sorted(keys)
        for key in keys:
            np.testing.assert_allclose(store.read_features("pair.mp4", key).values,
                                       ref.read_features("pair.mp4", key).values, atol=1e-6)


def test_absent_frames_get_nan_and_a_warning(pair, tmp_path, caplog):
    video, tracks_path, clip = pair
    tracks = read_tracks(tracks_path, video=str(video))
    tracks.centroids[10:20, 0] = np.nan
    gappy = write_tracks_csv(tracks, tmp_path / "gappy.tracks.csv", video=str(video))
    out = tmp_path / "f.zarr"
    with caplog.at_level(logging.WARNING):
        assert _extract(video, "--out", out, "--subjects", gappy, "--crop-size", "40") == 0
    assert "absent from 10 of 30 frames (frames 10-19)" in caplog.text
    name = clip.animals[0].id
    with open_store(out, "r") as store:
        values = store.read_features("pair.mp4", f"{TEST_MODEL}/mean@{name}").values
    assert np.isnan(values[10:20]).all() and np.isfinite(values[:10]).all()


def test_tracks_of_another_video_are_refused(pair, tmp_path, capsys):
    video, _, clip = pair
    other = Tracks(centroids=np.full((45, 1, 2), 20.0, np.float32), subjects=["a"],
                   frame_size=(120, 160))
    path = write_tracks_csv(other, tmp_path / "other.csv", video="other.mp4")
    assert _extract(video, "--out", tmp_path / "f.zarr", "--subjects", path) == 2
    err = capsys.readouterr().err
    assert "another video" in err and "other.csv" in err


def test_align_heading_without_headings_and_auto_without_n_are_refused(pair, tmp_path, capsys):
    video, tracks_path, clip = pair
    tracks = read_tracks(tracks_path, video=str(video))
    with pytest.raises(TracksError, match="no body length|needs headings"):
        subject_crops(Tracks(centroids=tracks.centroids, subjects=tracks.subjects),
                      clip.n_frames, (96, 96), 32, align_heading=True)
    assert _extract(video, "--out", tmp_path / "f.zarr", "--subjects", "auto") == 2
    assert "--n-animals" in capsys.readouterr().err


def test_subjects_auto_tracks_and_writes_the_csv_next_to_the_store(pair, tmp_path):
    video, _, clip = pair
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out, "--subjects", "auto", "--n-animals", "2",
                    "--crop-size", "40") == 0
    written = tmp_path / "f.pair.mp4.tracks.csv"
    assert written.exists()
    with open_store(out, "r") as store:
        keys = store.feature_keys("pair.mp4")
        assert len(keys) == 2 and all("@" in k for k in keys)
        assert store.read_features("pair.mp4", keys[0]).provenance["tracks_path"] == str(written)


def test_subject_crop_mask_sets_absent_frames_to_nan():
    centers = np.array([[1.0, 1.0], [np.nan, np.nan], [2.0, 2.0]])
    crop = SubjectCrop("a", centers, None, 8, 8)
    values = np.ones((3, 4), np.float32)
    crop.mask(0, values)
    assert np.isnan(values[1]).all() and np.isfinite(values[[0, 2]]).all()
    np.testing.assert_array_equal(crop._filled_centers()[1], [1.0, 1.0])


def test_dask_worker_task_crops_like_the_local_run(pair, tmp_path, monkeypatch):
    """extract_task (what a Dask worker runs) re-reads the tracks and fills the same values."""
    from prism_science.extraction.cluster import extract_task

    video, tracks_path, clip = pair
    args = ["--subjects", tracks_path, "--crop-size", "40", "--frames-per-file", "8"]
    assert _extract(video, "--out", tmp_path / "ref.zarr", *args) == 0
    original = FeatureStore.write_chunks
    calls = {"n": 0}

    def dies_on_second_chunk(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return original(self, *a, **k)

    monkeypatch.setattr(FeatureStore, "write_chunks", dies_on_second_chunk)
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out, *args) == 130
    monkeypatch.setattr(FeatureStore, "write_chunks", original)
    subject = clip.animals[0].id
    key = f"{TEST_MODEL}/mean@{subject}"
    with open_store(out, "r") as store:
        missing = store.missing_ranges("pair.mp4", key)
    assert missing
    params = {"mode": "sliding", "stride": 1, "hop": 2, "tokens": "mean", "grid": 2,
              "padding": "repeat"}
    written = extract_task(str(out), "pair.mp4", str(video), key, TEST_MODEL, params, missing,
                           device="cpu", crop={"tracks_path": str(tracks_path),
                                               "subject": subject, "crop_size": 40,
                                               "align_heading": False})
    assert written == sum(b - a for a, b in missing)
    with open_store(out, "r+") as store, open_store(tmp_path / "ref.zarr", "r") as ref:
        store.mark_complete("pair.mp4", key)
        np.testing.assert_allclose(store.read_features("pair.mp4", key).values,
                                   ref.read_features("pair.mp4", key).values, atol=1e-6)
