"""The synthetic world's per-animal views: one caption per animal, exact tracks, the crop
manifest that animal-centred pretraining reads, and ``prism-science synth --per-animal-crops``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prism_science.cli.main import main as cli_main
from prism_science.errors import SynthError
from prism_science.synth import (
    BEHAVIORS,
    AnimalAttributes,
    SynthConfig,
    animal_caption,
    generate_clip,
    make_caption,
    write_animal_windows,
    write_clip,
)
from prism_science.synth.world import _VERBS
from prism_science.tracks import read_tracks
from prism_training.crops import build_crop_source, read_crop_manifest
from prism_training.data import sample_rng

_CFG = SynthConfig(size=(96, 96), fps=8.0, seconds=(3.0, 3.0), n_animals=2)


def test_animal_caption_says_who_does_what() -> None:
    animals = [AnimalAttributes("animal0", "brown", "large", False, 20.0),
               AnimalAttributes("animal1", "grey", "small", True, 14.0)]
    ids = {name: i for i, name in enumerate(BEHAVIORS)}
    # animal0 chases animal1 then grooms; animal1 flees then rests
    behaviors = np.array([[ids["chase"], ids["flee"]]] * 3 + [[ids["groom"], ids["rest"]]] * 3)
    targets = np.array([[1, 0]] * 3 + [[-1, -1]] * 3)
    assert animal_caption(behaviors, targets, animals, 0) == \
        "a large brown mouse chases a small grey striped mouse, then grooms."
    assert animal_caption(behaviors, targets, animals, 1, species="fly") == \
        "a small grey striped fly flees, then rests."
    # the clip caption is unchanged: its first clause is the first animal's caption
    clip = make_caption(behaviors, targets, animals)
    assert clip == ("a large brown mouse chases a small grey striped mouse, then grooms; "
                    "the grey mouse flees, then rests.")
    with pytest.raises(SynthError, match="animal index 2"):
        animal_caption(behaviors, targets, animals, 2)


def test_synth_cli_writes_tracks_and_per_animal_crop_manifest(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    code = cli_main(["synth", "--n-videos", "2", "--out", str(out), "--size", "96", "--fps", "8",
                     "--seconds", "3", "--n-animals", "2", "--per-animal-crops",
                     "--crop-window", "8"])
    assert code == 0
    rows = [json.loads(line) for line in (out / "crops.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 3 * 2  # clips x windows of 8 of 24 frames x animals
    for meta_path in sorted(out.glob("synth_*.json")):
        meta = json.loads(meta_path.read_text())
        tracks = read_tracks(out / f"{meta['name']}.tracks.csv")
        assert tracks.subjects == ["animal0", "animal1"] and tracks.n_frames == meta["n_frames"]
        assert tracks.frame_size == (96, 96)
        for k, subject in enumerate(tracks.subjects):
            exact = np.array(meta["tracks"][subject])
            np.testing.assert_allclose(tracks.centroids[:, k], exact[:, :2], atol=0.01)
            np.testing.assert_allclose(tracks.heading[:, k], exact[:, 2], atol=0.002)
        mine = [r for r in rows if r["path"] == meta["video"]]
        assert {r["tracks"] for r in mine} == {f"{meta['name']}.tracks.csv"}
        for row in mine:
            # each window's caption names exactly the behaviors of its own animal there
            frames = range(row["start_frame"], row["end_frame"] + 1)
            own = {BEHAVIORS[meta["frame_behaviors"][row["subject"]][t]] for t in frames}
            named = {b for b in BEHAVIORS if _VERBS[b] in row["caption"]}
            assert own <= named, row
            animal = next(a for a in meta["animals"] if a["id"] == row["subject"])
            assert row["caption"].startswith(f"a {animal['size']} {animal['colour']}")


def test_crop_manifest_of_synthetic_clips_gives_animal_centred_clips(tmp_path: Path) -> None:
    clip = generate_clip(5, _CFG)
    write_clip(clip, tmp_path / "synth", "c0")
    manifest = write_animal_windows(tmp_path / "synth", tmp_path / "lists" / "crops.jsonl",
                                    window=12)
    entries = read_crop_manifest(manifest, require_caption=True)
    assert len(entries) == 2 * 2
    assert entries[0].path.resolve() == (tmp_path / "synth" / "c0.mp4").resolve()
    source = build_crop_source(entries, tmp_path / "cache", 1, 32, rotation=0.0)
    for index, item in enumerate(source.clips):
        k = int(item.subject[-1])
        frame = source.frame_indices(index, sample_rng(0, 0, index))[0]
        crop = source.get(index, sample_rng(0, 0, index))[0].numpy() * 255
        # the crop's centre has the animal's body colour, within compression and shading
        x, y = clip.tracks[frame, k, :2]
        expected = np.asarray(clip.frames[frame, int(y), int(x)], dtype=np.float32)
        centre = crop[15:17, 15:17].reshape(-1, 3).mean(0)
        assert np.abs(centre - expected).mean() < 40, (index, centre, expected)
    with pytest.raises(SynthError, match="no NAME.json"):
        write_animal_windows(tmp_path / "lists")
