"""Box-level RoI features: RoIAlign against a literal reference, and ``extract --boxes``."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from prism_science.cli.main import main
from prism_science.errors import TracksError
from prism_science.extraction import roi as roi_module
from prism_science.extraction.roi import pool_boxes, pool_frame_boxes, roi_align, subject_boxes
from prism_science.store import FeatureStore, open_store
from prism_science.tracks import Tracks, read_tracks, write_tracks_csv

TEST_MODEL = "prism-test-p8-f4-r32"  # 32 px input, 8 px patches: a 4 x 4 token grid
BASE = ["--model", TEST_MODEL, "--hop", "2", "--chunk-frames", "8", "--no-progress"]


# ----------------------------------------------------------------------- the reference
def _bilinear(image: np.ndarray, height: int, width: int, y: float, x: float) -> float:
    """torchvision's bilinear_interpolate (ops/cpu/roi_align_kernel.cpp), line by line."""
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    if y <= 0:
        y = 0.0
    if x <= 0:
        x = 0.0
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * image[y_low, x_low] + hy * lx * image[y_low, x_high]
            + ly * hx * image[y_high, x_low] + ly * lx * image[y_high, x_high])


def reference_roi_align(input: np.ndarray, rois: np.ndarray, output_size: int,
                        spatial_scale: float, sampling_ratio: int, aligned: bool) -> np.ndarray:
    """A slow, literal transcription of torchvision's roi_align forward (CPU kernel)."""
    _, channels, height, width = input.shape
    out = np.zeros((len(rois), channels, output_size, output_size))
    for n, roi in enumerate(rois):
        image = input[int(roi[0])]
        offset = 0.5 if aligned else 0.0
        start_w = roi[1] * spatial_scale - offset
        start_h = roi[2] * spatial_scale - offset
        end_w = roi[3] * spatial_scale - offset
        end_h = roi[4] * spatial_scale - offset
        roi_w, roi_h = end_w - start_w, end_h - start_h
        if not aligned:
            roi_w, roi_h = max(roi_w, 1.0), max(roi_h, 1.0)
        bin_h, bin_w = roi_h / output_size, roi_w / output_size
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / output_size)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / output_size)
        count = max(grid_h * grid_w, 1)
        for ph in range(output_size):
            for pw in range(output_size):
                for c in range(channels):
                    total = 0.0
                    for iy in range(grid_h):
                        y = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                        for ix in range(grid_w):
                            x = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                            total += _bilinear(image[c], height, width, y, x)
                    out[n, c, ph, pw] = total / count
    return out


def _rois(rng: np.random.Generator, n_images: int, height: int, width: int) -> np.ndarray:
    """Boxes inside, across the edges, wholly outside, tiny, degenerate and inverted."""
    boxes = [
        [0, 1.0, 1.0, 5.0, 4.0], [1, 0.0, 0.0, width, height], [0, -3.0, -2.0, 2.5, 3.5],
        [1, width - 2.0, height - 1.5, width + 4.0, height + 3.0],
        [0, width + 2.0, 1.0, width + 6.0, 3.0], [1, -8.0, -8.0, -3.0, -2.0],
        [0, 2.2, 2.7, 2.4, 2.9], [1, 3.0, 3.0, 3.0, 3.0], [0, 5.0, 4.0, 2.0, 1.0],
        [1, -0.9, -0.7, width + 0.8, height + 0.6],
    ]
    for _ in range(12):
        x0, x1 = np.sort(rng.uniform(-2, width + 2, 2))
        y0, y1 = np.sort(rng.uniform(-2, height + 2, 2))
        boxes.append([rng.integers(n_images), x0, y0, x1, y1])
    return np.array(boxes, dtype=np.float64)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 1, 3, -1, 0])
@pytest.mark.parametrize("output_size", [1, 2, 3])
def test_grid_sample_roi_align_equals_torchvisions_algorithm(aligned, sampling_ratio,
                                                             output_size):
    rng = np.random.default_rng(output_size * 10 + sampling_ratio + 5 * aligned)
    input = rng.normal(size=(2, 3, 6, 7))
    rois = _rois(rng, 2, 6, 7)
    scale = 0.5 if sampling_ratio == 3 else 1.0  # spatial_scale too
    expected = reference_roi_align(input, rois, output_size, scale, sampling_ratio, aligned)
    got = roi_align(torch.from_numpy(input).float(), torch.from_numpy(rois).float(),
                    output_size, spatial_scale=scale, sampling_ratio=sampling_ratio,
                    aligned=aligned)
    assert got.shape == (len(rois), 3, output_size, output_size) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)
    # In float64 the two agree to rounding.
    got64 = roi_align(torch.from_numpy(input), torch.from_numpy(rois), output_size,
                      spatial_scale=scale, sampling_ratio=sampling_ratio, aligned=aligned)
    np.testing.assert_allclose(got64.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_one_row_or_column_grids_and_no_boxes():
    input = np.arange(5.0).reshape(1, 1, 1, 5)
    rois = np.array([[0, 0.0, 0.0, 5.0, 1.0], [0, 1.5, -0.5, 2.5, 0.5]])
    expected = reference_roi_align(input, rois, 2, 1.0, 2, True)
    got = roi_align(torch.from_numpy(input), torch.from_numpy(rois), 2, sampling_ratio=2,
                    aligned=True)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)
    empty = roi_align(torch.from_numpy(input), torch.zeros(0, 5, dtype=torch.float64), 2)
    assert empty.shape == (0, 1, 2, 2)


def test_pool_boxes_scales_pixel_boxes_to_the_grid_per_axis():
    rng = np.random.default_rng(1)
    grid = rng.normal(size=(4, 6, 5)).astype(np.float32)  # h=4, w=6, D=5
    frame = (120, 40)  # width 120, height 40: x scale 6/120, y scale 4/40
    boxes = np.array([[10.0, 5.0, 70.0, 30.0], [0.0, 0.0, 120.0, 40.0], [100.0, 20, 130, 45],
                      [np.nan, 1, 2, 3]])
    pooled = pool_boxes(grid, boxes, frame)
    assert pooled.shape == (4, 5) and pooled.dtype == np.float32
    assert np.isnan(pooled[3]).all()
    rois = np.concatenate([np.zeros((3, 1)), boxes[:3] * [6 / 120, 4 / 40, 6 / 120, 4 / 40]],
                          axis=1)
    expected = reference_roi_align(grid.transpose(2, 0, 1)[None].astype(np.float64), rois, 1,
                                   1.0, 2, True)
    np.testing.assert_allclose(pooled[:3], expected[:, :, 0, 0], rtol=1e-5, atol=1e-5)
    bins = pool_boxes(grid, boxes, frame, output_size=2, sampling_ratio=3)
    assert bins.shape == (4, 2, 2, 5)
    expected = reference_roi_align(grid.transpose(2, 0, 1)[None].astype(np.float64), rois, 2,
                                   1.0, 3, True)
    np.testing.assert_allclose(bins[:3], expected.transpose(0, 2, 3, 1), rtol=1e-5, atol=1e-5)
    assert pool_boxes(grid, np.zeros((0, 4)), frame).shape == (0, 5)


def test_a_linear_ramp_pools_to_its_value_at_the_box_centre():
    """aligned=True: token (i, j) sits at the centre of its patch, so a ramp over the tokens
    pooled over any box inside the frame gives the ramp at the box's centre."""
    h, w = 8, 8
    columns, rows = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    grid = np.stack([columns, rows], axis=-1)  # feature = (column, row) of the token
    boxes = np.array([[64.0, 32.0, 192.0, 96.0], [160.0, 120.0, 224.0, 200.0]])
    pooled = pool_boxes(grid, boxes, (256, 256))  # 32 px a token
    centre_x = (boxes[:, 0] + boxes[:, 2]) / 2 / 32 - 0.5
    centre_y = (boxes[:, 1] + boxes[:, 3]) / 2 / 32 - 0.5
    np.testing.assert_allclose(pooled, np.stack([centre_x, centre_y], axis=1), atol=1e-5)


def test_pool_boxes_equals_torchvision_roi_align():
    try:
        from torchvision.ops import roi_align as tv_roi_align

        tv_roi_align(torch.zeros(1, 1, 2, 2), torch.tensor([[0.0, 0, 0, 1, 1]]), 1)
    except Exception as exc:  # noqa: BLE001 - absent, or built for another torch
        pytest.skip(f"torchvision's roi_align is not usable here ({type(exc).__name__}: {exc}); "
                    "the grid_sample implementation is checked against the reference above")
    rng = np.random.default_rng(2)
    input = torch.from_numpy(rng.normal(size=(2, 3, 6, 7))).float()
    rois = torch.from_numpy(_rois(rng, 2, 6, 7)).float()
    for output_size, ratio, aligned in ((1, 2, True), (2, -1, True), (3, 2, False)):
        np.testing.assert_allclose(
            roi_align(input, rois, output_size, 0.5, ratio, aligned).numpy(),
            tv_roi_align(input, rois, output_size, 0.5, ratio, aligned).numpy(), atol=1e-5)


def test_pool_frame_boxes_pools_each_frame_with_its_own_box():
    rng = np.random.default_rng(3)
    grids = rng.normal(size=(3, 4, 4, 2)).astype(np.float32)
    boxes = np.array([[0.0, 0, 16, 16], [np.nan] * 4, [8.0, 4, 30, 32]])
    pooled = pool_frame_boxes(grids, boxes, (32, 32))
    for i in (0, 2):
        np.testing.assert_allclose(pooled[i], pool_boxes(grids[i], boxes[i:i + 1], (32, 32))[0],
                                   atol=1e-6)
    assert np.isnan(pooled[1]).all()


# ----------------------------------------------------------------------- extract --boxes
@pytest.fixture(scope="module")
def boxed(tmp_path_factory):
    """A 2-animal synthetic clip (30 frames, 96 x 64 px) and a tracks CSV with boxes."""
    from prism_science.synth import SynthConfig, generate_clip, write_clip

    clip = generate_clip(3, SynthConfig(size=(64, 96), fps=15.0, seconds=(2.0, 2.0),
                                        n_animals=2, noise=(0.0, 0.0), blur=(0.0, 0.0)))
    folder = tmp_path_factory.mktemp("boxed")
    video = write_clip(clip, folder, "boxed")
    names = [a.id for a in clip.animals]
    height, width = clip.frames.shape[1:3]
    centroids = clip.tracks[..., :2].astype(np.float32)
    half = np.array([a.body_length_px for a in clip.animals], np.float32)[None, :, None] * 0.75
    boxes = np.concatenate([centroids - half, centroids + half], axis=-1)
    tracks = Tracks(centroids=centroids, subjects=names, boxes=boxes,
                    frame_size=(int(height), int(width)))
    path = write_tracks_csv(tracks, folder / "boxed.tracks.csv", video=str(video))
    return video, path, clip


def _extract(*args):
    return main(["extract", *map(str, args), *BASE])


def _expected_roi(video, store_path, boxes_by_subject, frame_size, output_size=1):
    """Whole-frame ``--tokens full`` grids of the same run, pooled with pool_frame_boxes."""
    assert _extract(video, "--out", store_path, "--tokens", "full") == 0
    with open_store(store_path, "r") as store:
        grids = store.read_features(video.name, f"{TEST_MODEL}/full").values
    return {s: pool_frame_boxes(grids, b, frame_size, output_size)
            for s, b in boxes_by_subject.items()}


def test_boxes_store_each_subjects_pooled_whole_frame_tokens(boxed, tmp_path, monkeypatch):
    video, tracks_path, clip = boxed
    passes = {"n": 0}
    original = roi_module.iter_video_features

    def counting(*args, **kwargs):
        passes["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(roi_module, "iter_video_features", counting)
    out = tmp_path / "roi.zarr"
    assert _extract(video, "--out", out, "--subjects", tracks_path, "--boxes") == 0
    assert passes["n"] == 1  # one decode and encode of the video for both subjects
    tracks = read_tracks(tracks_path, video=str(video))
    names = tracks.subjects
    expected = _expected_roi(video, tmp_path / "full.zarr",
                             {s: tracks.boxes[:, k] for k, s in enumerate(names)}, (96, 64))
    with open_store(out, "r") as store:
        assert sorted(store.feature_keys(video.name)) == sorted(
            f"{TEST_MODEL}/mean@{n}" for n in names)
        values = {}
        for name in names:
            features = store.read_features(video.name, f"{TEST_MODEL}/mean@{name}")
            values[name] = features.values
            assert features.values.shape == (clip.n_frames, 32)
            roi = features.provenance["roi"]
            assert roi["subject"] == name and roi["pooling"] == "roi_align"
            assert roi["output_size"] == 1 and roi["sampling_ratio"] == 2 and roi["aligned"]
            assert len(roi["tracks_sha256"]) == 64 and roi["boxes"] == "csv"
            assert features.provenance["tracks_path"] == str(tracks_path)
            assert "crop" not in features.provenance
            np.testing.assert_allclose(features.values, expected[name], rtol=1e-4, atol=1e-5)
    assert np.abs(values[names[0]] - values[names[1]]).max() > 1e-3


def test_boxes_with_grid_tokens_keep_the_bins(boxed, tmp_path):
    video, tracks_path, clip = boxed
    out = tmp_path / "roi.zarr"
    assert _extract(video, "--out", out, "--subjects", tracks_path, "--boxes", "--tokens",
                    "grid", "--grid", "2") == 0
    tracks = read_tracks(tracks_path, video=str(video))
    name = tracks.subjects[1]
    expected = _expected_roi(video, tmp_path / "full.zarr", {name: tracks.boxes[:, 1]},
                             (96, 64), output_size=2)
    with open_store(out, "r") as store:
        features = store.read_features(video.name, f"{TEST_MODEL}/grid2@{name}")
    assert features.values.shape == (clip.n_frames, 2, 2, 32)
    np.testing.assert_allclose(features.values, expected[name], rtol=1e-4, atol=1e-5)


def test_interrupted_boxes_run_resumes_to_the_uninterrupted_result(boxed, tmp_path,
                                                                   monkeypatch, capsys):
    video, tracks_path, _ = boxed
    args = ["--subjects", tracks_path, "--boxes", "--frames-per-file", "8"]
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
    assert _extract(video, "--out", out, *args) == 130
    assert "STOPPED" in capsys.readouterr().out
    with open_store(out, "r") as store:
        keys = store.feature_keys(video.name)
        done = [k for k in keys if store.missing_ranges(video.name, k) != [(0, 30)]]
    assert done  # the chunks written before Ctrl-C are kept
    monkeypatch.setattr(FeatureStore, "write_chunks", original)
    assert _extract(video, "--out", out, *args) == 0
    with open_store(out, "r") as store, open_store(tmp_path / "ref.zarr", "r") as ref:
        keys = ref.feature_keys(video.name)
        assert sorted(store.feature_keys(video.name)) == sorted(keys)
        for key in keys:
            assert store.feature_status(video.name, key) == "complete"
            np.testing.assert_allclose(store.read_features(video.name, key).values,
                                       ref.read_features(video.name, key).values, atol=1e-6)
    # A third run has nothing left to do.
    assert _extract(video, "--out", out, *args) == 0
    assert "2 already complete" in capsys.readouterr().out


def test_shards_of_a_boxes_run_fill_the_store_together(boxed, tmp_path, capsys):
    video, tracks_path, _ = boxed
    args = ["--subjects", tracks_path, "--boxes", "--frames-per-file", "8", "--task-frames",
            "8"]
    assert _extract(video, "--out", tmp_path / "ref.zarr", *args) == 0
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out, *args, "--shard", "0/2") == 0
    assert "waiting for other shards" in capsys.readouterr().out
    assert _extract(video, "--out", out, *args, "--shard", "1/2") == 0
    with open_store(out, "r") as store, open_store(tmp_path / "ref.zarr", "r") as ref:
        for key in ref.feature_keys(video.name):
            assert store.feature_status(video.name, key) == "complete"
            np.testing.assert_allclose(store.read_features(video.name, key).values,
                                       ref.read_features(video.name, key).values, atol=1e-6)


def test_frames_without_a_box_are_nan_with_a_warning(boxed, tmp_path, caplog):
    video, tracks_path, _ = boxed
    tracks = read_tracks(tracks_path, video=str(video))
    tracks.centroids[5:25, 0] = np.nan
    tracks.boxes[5:25, 0] = np.nan
    gappy = write_tracks_csv(tracks, tmp_path / "gappy.tracks.csv", video=str(video))
    out = tmp_path / "f.zarr"
    with caplog.at_level(logging.WARNING):
        assert _extract(video, "--out", out, "--subjects", gappy, "--boxes") == 0
    name = tracks.subjects[0]
    assert f"subject {name!r} of {gappy} has no box in 20 of 30 frames (frames 5-24)" \
        in caplog.text
    with open_store(out, "r") as store:
        values = store.read_features(video.name, f"{TEST_MODEL}/mean@{name}").values
    assert np.isnan(values[5:25]).all() and np.isfinite(values[:5]).all()


def test_tracks_without_boxes_are_refused_naming_the_file(boxed, tmp_path, capsys):
    video, tracks_path, _ = boxed
    tracks = read_tracks(tracks_path, video=str(video))
    plain = write_tracks_csv(Tracks(centroids=tracks.centroids, subjects=tracks.subjects,
                                    frame_size=(64, 96)),
                             tmp_path / "points.tracks.csv", video=str(video))
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out, "--subjects", plain, "--boxes") == 2
    err = capsys.readouterr().err
    assert "points.tracks.csv (csv) has no boxes" in err and "drop --boxes" in err
    assert not out.exists() or not open_store(out, "r").video_ids()


def test_boxes_beyond_the_frame_are_clipped_or_refused(boxed, tmp_path, caplog):
    video, tracks_path, clip = boxed
    tracks = read_tracks(tracks_path, video=str(video))
    name = tracks.subjects[1]
    tracks.boxes[3, 1] = [80.0, 50.0, 110.0, 75.0]  # past the right and bottom edges
    with caplog.at_level(logging.WARNING):
        boxes = subject_boxes(tracks, clip.n_frames, (64, 96), subjects=[name],
                              video=str(video))[0]
    assert f"1 box(es) of subject {name!r} reach past the 96x64 frame (frames 3)" in caplog.text
    np.testing.assert_array_equal(boxes.boxes[3], [80.0, 50.0, 96.0, 64.0])
    assert boxes.clipped == 1
    tracks.boxes[7, 1] = [100.0, 10.0, 130.0, 30.0]  # wholly right of the frame
    with pytest.raises(TracksError, match=rf"subject {name!r} has 1 box\(es\) wholly outside "
                                          r"the 96x64 frame .* first at frame 7"):
        subject_boxes(tracks, clip.n_frames, (64, 96), video=str(video))
    tracks.boxes[7, 1] = [30.0, 10.0, 20.0, 30.0]
    with pytest.raises(TracksError, match=r"inverted box\(es\).*first at frame 7"):
        subject_boxes(tracks, clip.n_frames, (64, 96), video=str(video))
    tracks.boxes[:, 1] = np.nan
    with pytest.raises(TracksError, match=rf"subject {name!r} .* has no box in any frame"):
        subject_boxes(tracks, clip.n_frames, (64, 96), video=str(video))


def test_boxes_refuse_options_they_cannot_honour(boxed, tmp_path, capsys):
    video, tracks_path, _ = boxed
    out = tmp_path / "f.zarr"
    for extra, message in ((["--tokens", "full"], "--tokens full cannot be pooled per box"),
                           (["--crop-size", "40"], "--crop-size and --align-heading shape"),
                           (["--cluster", "local:1"], "--cluster is not supported")):
        assert _extract(video, "--out", out, "--subjects", tracks_path, "--boxes",
                        *extra) == 2
        assert message in capsys.readouterr().err
    assert main(["extract", str(video), "--out", str(out), "--boxes", *BASE]) == 2
    assert "--subjects TRACKS" in capsys.readouterr().err


def test_boxes_and_crops_do_not_mix_under_one_key(boxed, tmp_path, capsys):
    video, tracks_path, _ = boxed
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out, "--subjects", tracks_path, "--crop-size", "40") == 0
    capsys.readouterr()
    assert _extract(video, "--out", out, "--subjects", tracks_path, "--boxes") == 2
    err = capsys.readouterr().err
    assert "Refusing to mix them" in err and "crop " in err and "roi " in err
    assert _extract(video, "--out", out, "--subjects", tracks_path, "--boxes",
                    "--overwrite") == 0
    with open_store(out, "r") as store:
        key = store.feature_keys(video.name)[0]
        assert "roi" in store.read_features(video.name, key).provenance


def test_subjects_auto_with_boxes_uses_the_trackers_boxes(boxed, tmp_path):
    video, _, clip = boxed
    out = tmp_path / "f.zarr"
    assert _extract(video, "--out", out, "--subjects", "auto", "--n-animals", "2",
                    "--boxes") == 0
    with open_store(out, "r") as store:
        keys = store.feature_keys(video.name)
        assert len(keys) == 2
        for key in keys:
            features = store.read_features(video.name, key)
            assert features.provenance["roi"]["boxes"] == "csv"
            assert np.isfinite(features.values).mean() > 0.9


def test_per_subject_training_pairs_labels_with_roi_feature_sets(tmp_path):
    """pipeline.subjects finds the subjects of RoI sets from their ``roi`` provenance; subjects
    may come from different tracks, but crops and boxes do not mix in one probe."""
    from prism_science.errors import ProbeError
    from prism_science.labels import save_labels
    from prism_science.pipeline.subjects import load_subject_data, subject_feature_keys
    from tests.pipeline.conftest import MODEL, N_FRAMES, provenance
    from tests.pipeline.test_subjects import _subject_table

    rng = np.random.default_rng(0)
    path = tmp_path / "s.zarr"
    roi = {"boxes": "chimpact", "pooling": "roi_align", "output_size": 1,
           "sampling_ratio": 2, "aligned": True, "clipped_to_frame": True}
    with open_store(path, "a") as store:
        store.put_video("v0", source_path="/data/v0.mp4", relative_path="v0.mp4", size_bytes=1,
                        content_hash="0", timestamps=np.arange(N_FRAMES) / 30.0, fps=30.0,
                        width=64, height=64)
        for s, subject in enumerate(("Azibo", "Ojo 2")):
            key = f"{MODEL}/mean@{subject.replace(' ', '_')}"
            prov = {**provenance(), "roi": {**roi, "subject": subject,
                                            "tracks_sha256": str(s) * 64}}
            store.create_features("v0", key, (8,), prov, chunk_frames=64)
            store.write_chunks("v0", key, 0, rng.normal(size=(N_FRAMES, 8)).astype(np.float32))
            store.mark_complete("v0", key)
        y = (np.arange(N_FRAMES)[:, None] % 20 < 5).repeat(3, axis=1)
        save_labels(store, "v0", _subject_table({"Azibo": y, "Ojo 2": ~y}), "manual")
    with open_store(path, "r") as store:
        base, keys = subject_feature_keys(store, "v0")
        assert base == f"{MODEL}/mean" and set(keys) == {"Azibo", "Ojo 2"}
        data = load_subject_data(store, "manual", pool_for="linear")
    assert data.video_ids == ["v0@Azibo", "v0@Ojo 2"] and data.X.shape == (2 * N_FRAMES, 8)
    with open_store(path, "r+") as store:
        key = f"{MODEL}/mean@Ojo_2"
        store.create_features("v0", key, (8,), {**provenance(), "crop": {
            "subject": "Ojo 2", "tracks_sha256": "1" * 64, "size": 40, "align_heading": False,
            "smooth_frames": 5}}, chunk_frames=64, overwrite=True)
        store.write_chunks("v0", key, 0, np.zeros((N_FRAMES, 8), np.float32))
        store.mark_complete("v0", key)
    with open_store(path, "r") as store, pytest.raises(ProbeError, match="roi.pooling"):
        load_subject_data(store, "manual", pool_for="linear")
