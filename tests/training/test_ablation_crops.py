"""``benchmarks/pretrain_ablation.py eval --crops`` on 3 tiny synthetic clips: the per-animal
crop eval set (labels, groups, crops cut by extraction's crop code and centred on the animal)
and the probe table end to end with the tiny test model."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prism_science.errors import SynthError, TracksError
from prism_science.extraction.subjects import crop_frames, smooth_track
from prism_science.models import build_model, save_model
from prism_science.synth import (
    BEHAVIORS,
    COLOURS,
    SIZES,
    SynthConfig,
    generate_dataset,
    write_animal_windows,
)
from prism_science.video import open_video

BENCHMARK = Path(__file__).resolve().parents[2] / "benchmarks" / "pretrain_ablation.py"
SIZE, WINDOW = 32, 4  # the test model's input: 32 px, 4 frames


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("pretrain_ablation", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pretrain_ablation"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("pretrain_ablation", None)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 clips of 2 animals, 16 frames of 96 px, with tracks (as synth --per-animal-crops)."""
    out = tmp_path_factory.mktemp("synth_crops_test")
    generate_dataset(out, 3, seed=1, config=SynthConfig(
        size=(96, 96), fps=8.0, seconds=(2.0, 2.0), n_animals=2, noise=(0.0, 0.0),
        blur=(0.0, 0.0)))
    write_animal_windows(out, window=8)
    return out


@pytest.fixture(scope="module")
def crop_set(ablation, synth_dir: Path) -> dict[str, np.ndarray]:
    return ablation.load_crop_eval_set(synth_dir, size=SIZE, window=WINDOW)


def _meta(synth_dir: Path, clip: str) -> dict:
    return json.loads((synth_dir / f"{clip}.json").read_text())


def test_crop_set_has_one_track_per_animal_with_its_labels(crop_set, synth_dir: Path) -> None:
    n = 3 * 2 * 4  # clips x animals x windows
    assert crop_set["frames"].shape == (n, WINDOW, SIZE, SIZE, 3)
    assert crop_set["frames"].dtype == np.uint8
    assert crop_set["appearance"].shape == (n, len(COLOURS) + len(SIZES) + 1)
    assert crop_set["behaviors"].shape == (n, WINDOW, len(BEHAVIORS))
    assert crop_set["groups"].shape == crop_set["clips"].shape == (n,)
    for i in range(n):
        meta = _meta(synth_dir, crop_set["clips"][i])
        animal = next(a for a in meta["animals"] if a["id"] == crop_set["subjects"][i])
        expected = np.zeros(len(COLOURS) + len(SIZES) + 1, np.float32)
        expected[list(COLOURS).index(animal["colour"])] = 1
        expected[len(COLOURS) + list(SIZES).index(animal["size"])] = 1
        expected[-1] = float(animal["stripes"])
        np.testing.assert_array_equal(crop_set["appearance"][i], expected)
        start = crop_set["starts"][i]
        behaviors = meta["frame_behaviors"][animal["id"]][start : start + WINDOW]
        np.testing.assert_array_equal(crop_set["behaviors"][i].argmax(1), behaviors)
        assert crop_set["behaviors"][i].sum() == WINDOW  # one behavior per frame
    # 4 evenly spaced windows of every animal of every clip
    for clip in np.unique(crop_set["clips"]):
        ids = [a["id"] for a in _meta(synth_dir, clip)["animals"]]
        for animal in ids:
            mine = (crop_set["clips"] == clip) & (crop_set["subjects"] == animal)
            assert crop_set["starts"][mine].tolist() == [0, 4, 8, 12]
    # two animals of different colours in a clip: different appearance labels
    assert len({tuple(row) for row in crop_set["appearance"]}) > 3


def test_groups_keep_every_animal_of_a_clip_together(crop_set) -> None:
    clips = crop_set["clips"]
    assert len(np.unique(crop_set["groups"])) == 3
    for clip in np.unique(clips):
        assert len(np.unique(crop_set["groups"][clips == clip])) == 1
        assert len(np.unique(crop_set["subjects"][clips == clip])) == 2


def test_crops_are_extractions_crops_centred_on_the_animal(crop_set, synth_dir: Path) -> None:
    for i in range(0, len(crop_set["frames"]), 3):
        clip, subject, start = crop_set["clips"][i], crop_set["subjects"][i], crop_set["starts"][i]
        meta = _meta(synth_dir, clip)
        k = [a["id"] for a in meta["animals"]].index(subject)
        animal = meta["animals"][k]
        # The crop as per-subject extraction cuts it, from the json's exact track: smoothed
        # centre, side 2.5 body lengths (at least 32 px), crop_frames, then the bilinear resize.
        centres, _ = smooth_track(np.array(meta["tracks"][subject])[:, :2])
        side = max(32, round(2.5 * animal["body_length_px"]))
        with open_video(synth_dir / meta["video"]) as reader:
            frames = reader.get_frames(range(start, start + WINDOW))
        cut = crop_frames(frames, centres[start : start + WINDOW], side)
        expected = np.stack([np.asarray(Image.fromarray(c).resize(
            (SIZE, SIZE), Image.BILINEAR, reducing_gap=None)) for c in cut])
        got = crop_set["frames"][i]
        assert np.abs(got.astype(int) - expected).mean() < 0.5, (clip, subject, start)
        # The centre shows the animal (its colour, shaded or striped), the corner the arena.
        colour = np.array(COLOURS[animal["colour"]], float)
        centre = got[:, SIZE // 2 - 1 : SIZE // 2 + 1, SIZE // 2 - 1 : SIZE // 2 + 1]
        corner = got[:, :2, :2]
        centre_distance = np.linalg.norm(centre.reshape(-1, 3).mean(0) - colour)
        corner_distance = np.linalg.norm(corner.reshape(-1, 3).mean(0) - colour)
        assert centre_distance < corner_distance, (clip, subject, centre_distance,
                                                   corner_distance)


def test_missing_or_foreign_tracks_are_named(ablation, synth_dir: Path,
                                             tmp_path: Path) -> None:
    for suffix in (".mp4", ".json"):
        shutil.copy(synth_dir / f"synth_00000{suffix}", tmp_path / f"synth_00000{suffix}")
    with pytest.raises(SynthError, match=r"synth_00000\.tracks\.csv.*--per-animal-crops"):
        ablation.load_crop_eval_set(tmp_path, size=SIZE, window=WINDOW)
    # another clip's tracks under this clip's name: other subjects' paths, or a mismatch
    text = (synth_dir / "synth_00000.tracks.csv").read_text().replace("animal1", "animalX")
    (tmp_path / "synth_00000.tracks.csv").write_text(text)
    with pytest.raises(TracksError, match=r"synth_00000\.tracks\.csv.*animal1"):
        ablation.load_crop_eval_set(tmp_path, size=SIZE, window=WINDOW)
    with pytest.raises(SynthError, match="fewer than a window"):
        ablation.load_crop_eval_set(synth_dir, size=SIZE, window=17)


def test_parse_encoders(ablation) -> None:
    assert ablation.parse_encoders("stage 1=runs/a/final, stage 2 = runs/b/final") == {
        "stage 1": "runs/a/final", "stage 2": "runs/b/final"}
    for bad in ("runs/a/final", "a=", "a=x,a=y", "random init=x"):
        with pytest.raises(ValueError, match="--encoders"):
            ablation.parse_encoders(bad)


def test_eval_crops_end_to_end(ablation, synth_dir: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(1)
    folder = save_model(build_model("prism-lvt-test-p8-f4-r32"), tmp_path / "tiny")
    monkeypatch.setattr(ablation, "ABLATION", tmp_path / "ablation")
    out = tmp_path / "table.json"
    argv = ["eval", "--crops", "--test-dir", str(synth_dir), "--encoders",
            f"tiny stage 2={folder},missing=/nonexistent/final", "--crop-size", str(SIZE),
            "--window", str(WINDOW), "--folds", "3", "--json", str(out)]
    assert ablation.main(argv) == 0
    rows = json.loads(out.read_text())
    assert [r["encoder"] for r in rows] == ["chance (positive rate)", ablation.PIXELS,
                                            "random init", "tiny stage 2"]
    printed = capsys.readouterr().out
    assert "tiny stage 2" in printed and "motion change" in printed
    for row in rows[1:]:
        assert 0.0 <= row["appearance_mAP"] <= 1.0
        assert 0.0 <= row["motion_mean_mAP"] <= 1.0
    assert "motion_change_mAP" not in rows[1]  # pixels: one readout
    assert all(f"motion_{r}_mAP" in rows[3] for r in ablation.MOTION_READOUTS)
    # A chance appearance rate of a one-hot animal: about 3 of 11 tasks positive.
    assert rows[0]["appearance_mAP"] < 0.6
    cached = sorted(p.name for p in (tmp_path / "ablation" / "features").iterdir())
    assert len(cached) == 2 and all("-crops32x4-" in name for name in cached)
    # random init has the given folder's architecture (not the recipes' tiny model)
    assert any(name.startswith("random init-random-") for name in cached)
    # rerun (one readout): the features come from the cache, the same probes
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "ablation" / "features").iterdir()}
    assert ablation.main([*argv, "--motion-readouts", "mean"]) == 0
    again = json.loads(out.read_text())
    assert {p.name: p.stat().st_mtime_ns
            for p in (tmp_path / "ablation" / "features").iterdir()} == stamps
    for old, new in zip(rows, again, strict=True):
        assert new["appearance_mAP"] == old["appearance_mAP"]
        assert new["motion_mean_mAP"] == old["motion_mean_mAP"]
        assert "motion_change_mAP" not in new
