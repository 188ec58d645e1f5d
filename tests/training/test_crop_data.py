"""Animal-centred crop clips for pretraining (prism_training.crops): manifests, tracks (given or
from the built-in tracker, cached beside the manifest), crops that follow the animal,
augmentations, streaming decode with bounded memory, determinism and exact resume."""

from __future__ import annotations

import json
import math
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch

from prism_science.errors import DataError, TrackerError
from prism_science.synth.render import encode_h264
from prism_science.tracks import Tracks, write_tracks_csv
from prism_training import crops as crops_module
from prism_training.config import apply_overrides, get_config, resolve_config
from prism_training.crops import (
    ConcatSource,
    auto_tracks_path,
    build_crop_source,
    read_crop_manifest,
)
from prism_training.data import StepBatches, sample_rng

BODY = (16.0, 6.0)  # half-axes of the dark elongated "animals", pixels


def arena(n_frames: int, size: int = 96, n_animals: int = 2, seed: int = 0,
          radius_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dark ellipses circling on a light floor, heading along their motion.

    Returns frames (T, size, size, 3) uint8, centroids (T, n, 2) and heading (T, n) radians.
    """
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[:, None]
    radius = size * radius_scale * np.array([0.28, 0.16, 0.22])[:n_animals]
    speed = np.array([0.11, -0.17, 0.07])[:n_animals]
    phase = rng.uniform(0, 2 * np.pi, n_animals)
    angle = phase + speed * t  # (T, n)
    cx = size / 2 + radius * np.cos(angle)
    cy = size / 2 + radius * np.sin(angle)
    heading = angle + np.sign(speed) * np.pi / 2  # tangent to the circle
    heading = (heading + np.pi) % (2 * np.pi) - np.pi
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    frames = np.full((n_frames, size, size, 3), 200, np.uint8)
    for i in range(n_frames):
        for k in range(n_animals):
            dx, dy = xs - cx[i, k], ys - cy[i, k]
            c, s = math.cos(heading[i, k]), math.sin(heading[i, k])
            u, v = dx * c + dy * s, -dx * s + dy * c
            frames[i][(u / BODY[0]) ** 2 + (v / BODY[1]) ** 2 <= 1] = 30
    return frames, np.stack([cx, cy], axis=-1), heading


def write_arena(folder: Path, name: str, n_frames: int, size: int = 96,
                tracks: bool = True, **kwargs) -> tuple[Path, Path | None]:
    """An arena video (and its exact tracks CSV) in ``folder``; ``kwargs`` go to arena()."""
    frames, centroids, heading = arena(n_frames, size, **kwargs)
    video = folder / f"{name}.mp4"
    encode_h264(video, frames, 10.0, 18)
    if not tracks:
        return video, None
    n = centroids.shape[1]
    found = Tracks(centroids=centroids, subjects=[f"animal{k}" for k in range(n)],
                   heading=heading, body_length=np.full(heading.shape, 2 * BODY[0]),
                   frame_size=(size, size), n_frames_known=True, fps=10.0)
    return video, write_tracks_csv(found, folder / f"{name}.tracks.csv", video=video.name)


def write_manifest(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def arena_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("arena")
    write_arena(folder, "short", 40)
    write_arena(folder, "long", 400)
    write_manifest(folder / "crops.jsonl", [
        {"path": "short.mp4", "tracks": "short.tracks.csv", "caption": "two dark animals"},
        {"path": "long.mp4", "tracks": "long.tracks.csv", "subject": "animal1",
         "caption": "one dark animal", "start_frame": 0, "end_frame": 199},
    ])
    return folder


def _source(folder: Path, tmp: Path, manifest: str = "crops.jsonl", **kwargs):
    settings = {"num_frames": 4, "size": 32, "frame_stride": 2}
    settings.update(kwargs)
    return build_crop_source(read_crop_manifest(folder / manifest), tmp / "cache", **settings)


def _dark_spread(clip: torch.Tensor) -> tuple[float, float]:
    """Spread (std in pixels) of the dark pixels of a clip's first frame along x and y."""
    ys, xs = np.nonzero((clip[0].mean(-1) < 0.4).numpy())
    return float(xs.std()), float(ys.std())


def test_manifest_rows_are_checked_with_file_and_line(tmp_path: Path) -> None:
    bad = [
        ([{"path": "a.mp4", "caption": "x"}], "line 1.*'tracks' field is missing"),
        ([{"path": "a.mp4", "tracks": "auto", "caption": "x"}], "line 1.*n_animals >= 1"),
        ([{"path": "a.mp4", "tracks": "t.csv", "caption": "x"},
          {"path": "b.mp4", "tracks": "t.csv", "caption": " "}], "line 2.*caption is empty"),
        ([{"tracks": "t.csv", "caption": "x"}], "line 1.*'path' field"),
    ]
    for rows, message in bad:
        manifest = write_manifest(tmp_path / "m.jsonl", rows)
        with pytest.raises(DataError, match=message):
            read_crop_manifest(manifest, require_caption=True)
    entries = read_crop_manifest(write_manifest(tmp_path / "ok.jsonl", [
        {"path": "v/a.mp4", "tracks": "auto", "n_animals": 2, "start": 1.5}]))
    assert entries[0].path == tmp_path / "v" / "a.mp4" and entries[0].tracks is None
    assert entries[0].n_animals == 2 and entries[0].start_s == 1.5 and entries[0].caption == ""


def test_items_per_subject_and_range(arena_dir: Path, tmp_path: Path) -> None:
    source = _source(arena_dir, tmp_path, segment_frames=50)
    # short: 2 subjects x 1 stretch of 40 frames; long: animal1 only, frames 0-199 in 4 stretches
    spans = sorted((c.entry.path.name, c.subject, c.start, c.stop) for c in source.clips)
    assert spans == [("long.mp4", "animal1", 0, 50), ("long.mp4", "animal1", 50, 100),
                     ("long.mp4", "animal1", 100, 150), ("long.mp4", "animal1", 150, 200),
                     ("short.mp4", "animal0", 0, 40), ("short.mp4", "animal1", 0, 40)]
    assert [c.entry.caption for c in source.clips][:2] == ["two dark animals"] * 2
    # Per-frame crop tracks are cached as small .npy files: no decoded video anywhere.
    files = list((tmp_path / "cache" / "crops").iterdir())
    assert {f.suffix for f in files} == {".npy", ".json"}
    assert max(f.stat().st_size for f in files) < 400 * 4 * 4 + 1024


def test_crops_follow_the_animal_and_align_its_heading(tmp_path: Path) -> None:
    # One animal circling well inside the frame: no crop reaches past the frame's edge.
    write_arena(tmp_path, "one", 40, size=128, n_animals=1, radius_scale=0.8)
    write_manifest(tmp_path / "one.jsonl", [{"path": "one.mp4", "tracks": "one.tracks.csv"}])
    plain = _source(tmp_path, tmp_path, "one.jsonl", size=48, crop_size=40)
    aligned = _source(tmp_path, tmp_path, "one.jsonl", size=48, crop_size=40,
                      align_heading=True)
    turned = []
    for step in range(6):
        clip = plain.get(0, sample_rng(0, step, 0))
        assert clip.shape == (4, 48, 48, 3) and clip.dtype == torch.float32
        # the animal sits in the middle of every crop, the floor at the corners
        assert float(clip[:, 22:26, 22:26].mean()) < 0.3, step
        assert float(clip[:, :4, :4].mean()) > 0.6, step
        # heading up: the body's long axis is vertical in every aligned crop
        sx, sy = _dark_spread(aligned.get(0, sample_rng(0, step, 0)))
        assert sy > 1.8 * sx, (step, sx, sy)
        sx, sy = _dark_spread(clip)
        turned.append(sy / sx)
    assert min(turned) < 1.0  # unaligned, the animal lies along its path


def test_augmentations_are_deterministic_per_seed_step_position(arena_dir: Path,
                                                                  tmp_path: Path) -> None:
    source = _source(arena_dir, tmp_path, scale_jitter=1.4, shift=0.15, rotation=180.0,
                     allow_flip=True)
    again = _source(arena_dir, tmp_path, scale_jitter=1.4, shift=0.15, rotation=180.0,
                    allow_flip=True)
    for index in range(len(source)):
        a = source.get(index, sample_rng(3, 7, index))
        b = again.get(index, sample_rng(3, 7, index))
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        c = source.get(index, sample_rng(3, 8, index))
        assert not torch.equal(a, c)
    # Rotation turns the animal: over many draws its long axis points every way.
    ratios = []
    for step in range(12):
        sx, sy = _dark_spread(_source(arena_dir, tmp_path, size=48, rotation=180.0)
                              .get(0, sample_rng(0, step, 0)))
        ratios.append(sy / max(sx, 1e-6))
    assert min(ratios) < 0.8 and max(ratios) > 1.25


def test_resumed_batches_are_identical(arena_dir: Path, tmp_path: Path) -> None:
    source = _source(arena_dir, tmp_path, segment_frames=50, rotation=30.0, shift=0.1,
                     scale_jitter=1.2)
    whole = StepBatches(source, batch_size=4, seed=5, first_step=0, last_step=6)
    # a resumed run builds its source and batches afresh and starts at step 3
    resumed = StepBatches(_source(arena_dir, tmp_path, segment_frames=50, rotation=30.0,
                                  shift=0.1, scale_jitter=1.2),
                          batch_size=4, seed=5, first_step=3, last_step=6)
    for k in range(3):
        a, b = whole[3 + k], resumed[k]
        assert torch.equal(a["index"], b["index"])
        torch.testing.assert_close(a["video"], b["video"], rtol=0, atol=0)
    # two processes of a DDP run take contiguous halves of the same global batch
    half = StepBatches(source, batch_size=4, seed=5, first_step=0, last_step=6, rank=1,
                       world_size=2)
    torch.testing.assert_close(half[4]["video"], whole[4]["video"][2:], rtol=0, atol=0)


def test_memory_does_not_grow_with_video_length(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    write_arena(folder, "short", 30, size=160)
    write_arena(folder, "long", 600, size=160)  # 20x longer: 46 MB decoded
    peaks = {}
    for name in ("short", "long"):
        write_manifest(folder / f"{name}.jsonl", [{"path": f"{name}.mp4",
                                                  "tracks": f"{name}.tracks.csv"}])
        source = _source(folder, tmp_path / name, manifest=f"{name}.jsonl", size=32,
                         rotation=180.0)
        tracemalloc.start()
        for step in range(6):
            for index in range(len(source)):
                source.get(index, sample_rng(0, step, index))
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        source.close()
    decoded_long = 600 * 160 * 160 * 3
    assert peaks["long"] < 1.5 * peaks["short"] + 256 * 1024, peaks
    assert peaks["long"] < decoded_long / 20, peaks


def test_auto_tracks_run_once_and_are_cached_beside_the_manifest(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video, _ = write_arena(tmp_path, "rig", 60, tracks=False)
    manifest = write_manifest(tmp_path / "rig.jsonl",
                              [{"path": "rig.mp4", "tracks": "auto", "n_animals": 2}])
    entry = read_crop_manifest(manifest)[0]
    source = build_crop_source([entry], tmp_path / "cache", 4, 32)
    tracks_csv = auto_tracks_path(entry)
    assert tracks_csv.parent == tmp_path / "rig.tracks" and tracks_csv.is_file()
    assert sorted({c.subject for c in source.clips}) == ["animal0", "animal1"]
    clip = source.get(0, sample_rng(0, 0, 0))
    assert float(clip[:, 14:18, 14:18].mean()) < 0.3  # the tracked animal is in the middle

    def no_tracker(*args, **kwargs):
        raise AssertionError("the tracker ran again")

    monkeypatch.setattr(crops_module, "track_video", no_tracker)
    build_crop_source([entry], tmp_path / "cache", 4, 32)  # the crop cache
    build_crop_source([entry], tmp_path / "other_cache", 4, 32)  # the tracks CSV


def test_unusable_rows_are_skipped_or_refused_by_name(arena_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    rows = [{"path": "short.mp4", "tracks": "short.tracks.csv"}] * 9 + [
        {"path": "gone.mp4", "tracks": "short.tracks.csv"}]
    manifest = write_manifest(arena_dir / "some_bad.jsonl", rows)
    source = build_crop_source(read_crop_manifest(manifest), tmp_path / "c", 4, 32)
    assert len(source) == 18  # 9 rows x 2 subjects; the missing video is skipped
    rows = [{"path": "short.mp4", "tracks": "long.tracks.csv"},  # another video's tracks
            {"path": "short.mp4", "tracks": "short.tracks.csv", "subject": "animal7"},
            {"path": "long.mp4", "tracks": "auto", "n_animals": 3, "start_frame": 0},
            {"path": "long.mp4", "tracks": "auto", "n_animals": 3, "start_frame": 100}]
    calls = []

    def failing(path, n_animals, *args, **kwargs):
        calls.append(path)
        raise TrackerError(f"{path}: fewer than {n_animals} animals found")

    monkeypatch.setattr(crops_module, "track_video", failing)
    manifest = write_manifest(arena_dir / "bad.jsonl", rows)
    with pytest.raises(DataError) as info:
        build_crop_source(read_crop_manifest(manifest), tmp_path / "c", 4, 32)
    message = str(info.value)
    assert "4 of 4" in message and "400 frames" in message and "animal7" in message
    assert "fewer than 3 animals" in message and "max_bad_fraction" in message
    assert len(calls) == 1  # a video whose tracking failed is not tracked again for each row


def test_concat_source_and_config_paths(arena_dir: Path, tmp_path: Path) -> None:
    a = _source(arena_dir, tmp_path)
    b = _source(arena_dir, tmp_path, segment_frames=100)
    both = ConcatSource([a, b])
    assert len(both) == len(a) + len(b) and both.clips[len(a)] is b.clips[0]
    torch.testing.assert_close(both.get(len(a) + 1, sample_rng(0, 0, 0)),
                               b.get(1, sample_rng(0, 0, 0)), rtol=0, atol=0)
    cfg = resolve_config(get_config("stage2_crops"), tmp_path / "work")
    assert cfg.crop_manifest.split(",") == [str(tmp_path / "work" / "synth_crops" / "crops.jsonl"),
                                            str(tmp_path / "work" / "crops" / "real.jsonl")]
    cfg = apply_overrides(get_config("stage1_crops_test"), ["crop_rotation=15",
                                                            "align_heading=true"])
    assert cfg.crop_rotation == 15.0 and cfg.align_heading
