"""The built-in tracker: accuracy on a synthetic clip with ground-truth tracks, the animals it
cannot find, the ``prism-science track`` command, and the real fly clip when ../shared is there."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import TrackerError
from prism_science.synth.render import encode_h264
from prism_science.tracks import (
    TrackerConfig,
    Tracks,
    compare_tracks,
    read_tracks,
    track_video,
    write_tracks_csv,
)

N_DISC_FRAMES = 60


def _discs(n_frames: int = N_DISC_FRAMES, hide: tuple[int, int] | None = None):
    """Two dark ellipses crossing a light floor; the second hidden in frames ``hide``."""
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = np.full((n_frames, h, w, 3), 200, dtype=np.uint8)
    truth = np.full((n_frames, 2, 2), np.nan, dtype=np.float32)
    heading = np.zeros((n_frames, 2), dtype=np.float32)
    for t in range(n_frames):
        centres = [(20.0 + 1.2 * t, 30.0), (100.0 - 1.0 * t, 70.0)]
        for k, (cx, cy) in enumerate(centres):
            if hide and k == 1 and hide[0] <= t < hide[1]:
                continue
            inside = ((xx - cx) / 7.0) ** 2 + ((yy - cy) / 3.5) ** 2 <= 1.0
            frames[t][inside] = 40
            truth[t, k] = (cx, cy)
            heading[t, k] = 0.0 if k == 0 else np.pi
    return frames, Tracks(centroids=truth, subjects=["left", "right"], heading=heading)


@pytest.fixture(scope="module")
def disc_video(tmp_path_factory):
    frames, truth = _discs()
    path = tmp_path_factory.mktemp("discs") / "discs.mp4"
    encode_h264(path, frames, 25.0, crf=18)
    return path, truth


@pytest.fixture(scope="module")
def synth_clip(tmp_path_factory):
    from prism_science.synth import SynthConfig, generate_clip, write_clip

    clip = generate_clip(0, SynthConfig(size=(192, 192), seconds=(6.0, 6.0), n_animals=2,
                                        noise=(2.0, 2.0), crf=(23, 23)))
    path = write_clip(clip, tmp_path_factory.mktemp("synth"), "pair")
    # SynthClip.tracks: centres with pixel corners at integers; ours: pixel centres at integers
    truth = Tracks(centroids=clip.tracks[..., :2] - 0.5, subjects=[a.id for a in clip.animals],
                   heading=clip.tracks[..., 2])
    return path, truth, clip


def test_tracker_on_synthetic_clip_matches_ground_truth(synth_clip):
    path, truth, clip = synth_clip
    result = track_video(path, 2)
    tracks = result.tracks
    assert tracks.n_frames == len(clip.frames) and tracks.subjects == ["animal0", "animal1"]
    assert tracks.frame_size == clip.frames.shape[1:3]
    comparison = compare_tracks(tracks, truth)
    assert comparison.identity_swaps == 0
    assert comparison.found_fraction > 0.95
    assert comparison.median_error_px < 5.0  # animals about 22 px long
    for k, subject in enumerate(tracks.subjects):
        j = truth.subjects.index(comparison.mapping[subject])
        error = np.angle(np.exp(1j * (tracks.heading[:, k] - truth.heading[:, j])))
        assert np.nanmedian(np.abs(error)) < np.radians(20)  # head and tail told apart
    lengths = tracks.median_body_length()
    assert np.all((lengths > 8) & (lengths < 40))


def test_tracker_on_discs_is_sub_pixel_and_keeps_identities(disc_video):
    path, truth = disc_video
    result = track_video(path, 2)
    assert result.polarity == "dark" and len(result.short_frames) == 0
    comparison = compare_tracks(result.tracks, truth)
    assert comparison.median_error_px < 1.0
    assert comparison.identity_swaps == 0  # the discs cross paths at mid-clip
    assert comparison.mapping == {"animal0": "left", "animal1": "right"}
    np.testing.assert_allclose(result.tracks.median_body_length(), 14.0, rtol=0.15)
    heading = result.tracks.heading
    assert np.nanmedian(np.abs(heading[:, 0])) < 0.2  # moving right
    assert np.nanmedian(np.abs(np.abs(heading[:, 1]) - np.pi)) < 0.2  # moving left


def test_tracker_names_the_frames_where_an_animal_is_missing(tmp_path):
    frames, _ = _discs(hide=(20, 40))
    path = tmp_path / "hidden.mp4"
    encode_h264(path, frames, 25.0, crf=18)
    with pytest.raises(TrackerError, match=r"fewer than 2 animals found in 20 of 60 frames "
                       r"\(33%, allowed 10%\): frames 20-39\. Try a lower --threshold"):
        track_video(path, 2)
    result = track_video(path, 2, TrackerConfig(max_missing=0.5, max_gap=5))
    np.testing.assert_array_equal(result.short_frames, np.arange(20, 40))
    hidden = result.tracks.subjects.index("animal1")
    assert not result.tracks.present[20:40, hidden].any()  # a 20-frame gap stays masked
    with pytest.raises(TrackerError, match="no frame shows 3 separate animals .* --min-area"):
        track_video(path, 3)


def test_track_command_writes_a_csv_the_readers_load(disc_video, tmp_path, capsys):
    path, truth = disc_video
    out = tmp_path / "discs.tracks.csv"
    assert main(["track", str(path), "--n-animals", "2", "--out", str(out),
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "animal0: present in 60/60 frames" in printed and f"wrote {out}" in printed
    tracks = read_tracks(out)
    assert tracks.frame_size == (96, 128) and tracks.n_frames_known
    assert compare_tracks(tracks, truth).median_error_px < 1.0
    # converting a tracks file: checked against the video first
    other = tmp_path / "other.tracks.csv"
    write_tracks_csv(Tracks(centroids=np.zeros((10, 1, 2)), subjects=["a"], frame_size=(96, 128),
                            n_frames_known=True), other)
    assert main(["track", str(path), "--from", str(other), "--out",
                 str(tmp_path / "x.csv")]) == 2
    assert "has 10 frames (last frame 9) but" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()
    assert main(["track", str(path), "--from", str(out), "--out", str(tmp_path / "y.csv")]) == 0
    assert read_tracks(tmp_path / "y.csv").present.all()
    assert main(["track", str(path)]) == 2
    assert "either --n-animals N" in capsys.readouterr().err


@pytest.mark.slow
def test_real_fly_clip_against_proofread_sleap_tracks(shared_dir):
    pytest.importorskip("movement", reason="the [tracks] extra is not installed")
    folder = shared_dir / "data" / "real" / "sleap_flies"
    if not (folder / "clip.slp").is_file():
        pytest.skip(f"{folder / 'clip.slp'} not found")
    from prism_science.video import open_video

    reference = read_tracks(folder / "clip.slp")
    with open_video(folder / "clip.mp4") as reader:
        info = reader.info
    reference = reference.check_video(info.n_frames, (info.height, info.width), "clip.mp4")
    assert reference.subjects == ["female", "male"] and reference.present.all()
    result = track_video(folder / "clip.mp4", 2, stop=200)
    comparison = compare_tracks(result.tracks, reference)
    assert comparison.frames_compared == 200
    assert comparison.identity_swaps == 0
    assert comparison.median_error_px < 8.0  # flies about 70 px long at 1024 px
