"""prism_science.synth: deterministic clips, labels that match the motion, files on disk, CLI."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.cli.synth import parse_size
from prism_science.errors import PrismError
from prism_science.synth import (
    BEHAVIORS,
    SynthConfig,
    generate_clip,
    generate_dataset,
    intervals_from_frames,
)
from prism_science.video import open_video

SMALL = SynthConfig(size=(96, 96), fps=15.0, seconds=(3.0, 4.0))


@pytest.fixture(scope="module")
def social_clips() -> list:
    config = SynthConfig(size=(96, 96), fps=15.0, seconds=(12.0, 12.0), n_animals=3)
    return [generate_clip(seed, config) for seed in range(3)]


def test_same_seed_same_clip_other_seed_other_clip() -> None:
    a, b, c = generate_clip(7, SMALL), generate_clip(7, SMALL), generate_clip(8, SMALL)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.behaviors, b.behaviors)
    assert a.caption == b.caption and a.animals == b.animals
    assert a.frames.shape[0] != c.frames.shape[0] or not np.array_equal(a.frames, c.frames)


def test_clip_shapes_and_identities(social_clips: list) -> None:
    for clip in social_clips:
        t = clip.n_frames
        assert clip.frames.shape == (t, 96, 96, 3) and clip.frames.dtype == np.uint8
        assert t == 12 * 15
        assert clip.behaviors.shape == (t, 3) and clip.tracks.shape == (t, 3, 3)
        assert clip.behaviors.min() >= 0 and clip.behaviors.max() < len(BEHAVIORS)
        assert len({a.colour for a in clip.animals}) == 3  # distinct identities
        assert [a.id for a in clip.animals] == ["animal0", "animal1", "animal2"]


def _speeds(clip) -> np.ndarray:
    """(T-1, n) centre speed in body lengths per second, from the tracks."""
    xy = clip.tracks[:, :, :2]
    lengths = np.array([a.body_length_px for a in clip.animals])
    return np.linalg.norm(np.diff(xy, axis=0), axis=2) * clip.fps / lengths


def test_labels_match_motion(social_clips: list) -> None:
    per_behavior: dict[str, list[float]] = {name: [] for name in BEHAVIORS}
    for clip in social_clips:
        speed = _speeds(clip)
        for k in range(len(clip.animals)):
            for b, start, end in intervals_from_frames(clip.behaviors[:-1, k]):
                if end - start >= 4:  # skip the settling frames at bout starts
                    per_behavior[BEHAVIORS[b]].extend(speed[start + 2 : end + 1, k].tolist())
    mean = {name: float(np.mean(v)) for name, v in per_behavior.items() if len(v) > 10}
    assert {"rest", "walk"} <= set(mean)
    assert mean["rest"] < 0.05
    assert mean["rest"] < 0.1 * mean["walk"]
    if "chase" in mean:
        assert mean["chase"] > 1.5 * mean["walk"]
    if "groom" in mean:
        assert mean["groom"] < 0.1 * mean["walk"]


def test_groom_moves_pixels_rest_does_not() -> None:
    """Rest and groom hold still, but only grooming changes the animal's pixels."""
    config = SynthConfig(size=(96, 96), seconds=(25.0, 25.0), n_animals=1, noise=(0, 0),
                         crf=(18, 18))
    motion: dict[str, list[float]] = {"rest": [], "groom": []}
    for seed in range(2):
        clip = generate_clip(seed, config)
        frames = clip.frames.astype(np.float32)
        for b, start, end in intervals_from_frames(clip.behaviors[:, 0]):
            name = BEHAVIORS[b]
            if name in motion and end - start >= 6:
                x, y = clip.tracks[start, 0, :2].astype(int)
                box = np.s_[max(0, y - 15) : y + 15, max(0, x - 15) : x + 15]
                diffs = np.abs(np.diff(frames[start + 2 : end + 1][(slice(None), *box)], axis=0))
                motion[name].append(float(diffs.mean()))
    assert motion["rest"] and motion["groom"]
    assert np.mean(motion["groom"]) > 3 * np.mean(motion["rest"])


def test_caption_names_animals_and_behaviors(social_clips: list) -> None:
    for clip in social_clips:
        for name in {BEHAVIORS[b] for b in np.unique(clip.behaviors)}:
            assert name in clip.caption, (name, clip.caption)
        for animal in clip.animals:
            assert f"{animal.colour} mouse" in clip.caption or f"{animal.colour} striped" in \
                clip.caption
        assert clip.caption.endswith(".")


def test_every_behavior_occurs_across_a_small_set(social_clips: list) -> None:
    seen = set(np.unique(np.concatenate([c.behaviors.ravel() for c in social_clips])).tolist())
    assert len(seen) >= 8, [BEHAVIORS[b] for b in seen]


def test_dataset_files_decode_to_stated_frames(tmp_path: Path) -> None:
    paths = generate_dataset(tmp_path, 2, seed=3, config=SMALL)
    assert [p.name for p in paths] == ["synth_00000.mp4", "synth_00001.mp4"]
    manifest = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [m["path"] for m in manifest] == ["synth_00000.mp4", "synth_00001.mp4"]
    for path, entry in zip(paths, manifest, strict=True):
        meta = json.loads(path.with_suffix(".json").read_text())
        assert meta["caption"] == entry["caption"]
        assert meta["behaviors"] == list(BEHAVIORS)
        with open_video(path) as reader:
            assert reader.info.n_frames == meta["n_frames"] == entry["n_frames"]
            assert reader.info.codec == "h264" and reader.info.pix_fmt == "yuv420p"
            assert (reader.info.height, reader.info.width) == (96, 96)
            assert reader.info.fps == pytest.approx(15.0)
        with open(path.with_name(path.stem + ".labels.csv"), newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert set(rows[0]) == {"behavior", "subject", "start_frame", "end_frame", "start_s",
                                "end_s", "annotator", "source", "confidence"}
        for animal in meta["animals"]:
            ids = meta["frame_behaviors"][animal["id"]]
            frames = np.full(len(ids), -1)
            for row in rows:
                if row["subject"] == animal["id"]:
                    assert row["source"] == "manual" and row["annotator"] == "synth"
                    s, e = int(row["start_frame"]), int(row["end_frame"])
                    assert float(row["end_s"]) == pytest.approx((e + 1) / 15.0, abs=1e-5)
                    frames[s : e + 1] = BEHAVIORS.index(row["behavior"])
            np.testing.assert_array_equal(frames, ids)


def test_parallel_workers_write_the_same_files(tmp_path: Path) -> None:
    config = SynthConfig(size=(64, 64), fps=10.0, seconds=(1.0, 1.5))
    generate_dataset(tmp_path / "one", 3, seed=2, config=config)
    generate_dataset(tmp_path / "two", 3, seed=2, config=config, workers=2)
    for name in ("manifest.jsonl", "synth_00002.json", "synth_00001.labels.csv"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_rerun_keeps_existing_clips(tmp_path: Path) -> None:
    generate_dataset(tmp_path, 1, seed=0, config=SMALL)
    video = tmp_path / "synth_00000.mp4"
    stamp = video.stat().st_mtime_ns
    generate_dataset(tmp_path, 2, seed=0, config=SMALL)
    assert video.stat().st_mtime_ns == stamp
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 2


def test_cli_writes_dataset(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    code = main(["synth", "--n-videos", "1", "--out", str(out), "--seed", "5", "--size", "64x48",
                 "--fps", "10", "--seconds", "2", "--n-animals", "2"])
    assert code == 0
    meta = json.loads((out / "synth_00000.json").read_text())
    assert (meta["width"], meta["height"], meta["n_frames"], len(meta["animals"])) == (64, 48,
                                                                                       20, 2)


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(PrismError, match="even"):
        SynthConfig(size=(95, 96))
    with pytest.raises(PrismError, match="n_animals"):
        SynthConfig(n_animals=4)
    with pytest.raises(argparse.ArgumentTypeError, match="size"):
        parse_size("big")
    assert parse_size("256x192") == (192, 256)
