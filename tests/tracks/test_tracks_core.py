"""The Tracks form: gap filling, derived centroid/heading, and the checks that name the file,
frame or subject that is wrong."""

from __future__ import annotations

import numpy as np
import pytest

from prism_science.errors import PrismError, TracksError
from prism_science.tracks import Tracks, from_boxes, from_keypoints, interpolate_gaps


def _line(n: int = 20, n_subjects: int = 2) -> Tracks:
    t = np.arange(n, dtype=np.float32)
    centroids = np.stack([np.stack([10 + 2 * t, 50 + 0 * t + 30 * k], axis=-1)
                          for k in range(n_subjects)], axis=1)
    return Tracks(centroids=centroids, subjects=[f"s{k}" for k in range(n_subjects)],
                  heading=np.zeros((n, n_subjects)), source="clip.tracks.csv",
                  frame_size=(100, 120), n_frames_known=True)


def test_short_gaps_are_interpolated_long_gaps_masked():
    tracks = _line()
    truth = tracks.centroids.copy()
    tracks.centroids[3:6, 0] = np.nan  # 3 frames
    tracks.centroids[8:16, 1] = np.nan  # 8 frames
    tracks.centroids[0:2, 1] = np.nan  # at the start: never filled
    tracks = Tracks(**{**tracks.__dict__})  # re-validate: heading masked where absent
    filled = interpolate_gaps(tracks, max_gap=5)
    np.testing.assert_allclose(filled.centroids[3:6, 0], truth[3:6, 0])
    assert filled.interpolated[3:6, 0].all() and filled.interpolated.sum() == 3
    assert not filled.present[8:16, 1].any() and not filled.present[0:2, 1].any()
    assert filled.missing_runs("s1") == [(0, 1), (8, 15)]
    np.testing.assert_allclose(filled.heading[3:6, 0], 0.0)
    assert np.isnan(tracks.centroids[3, 0, 0])  # the input is not modified
    longer = interpolate_gaps(tracks, max_gap=8)
    np.testing.assert_allclose(longer.centroids[8:16, 1], truth[8:16, 1])
    assert interpolate_gaps(tracks, max_gap=0).interpolated.sum() == 0


def test_heading_is_interpolated_on_the_circle():
    tracks = _line(n=5, n_subjects=1)
    tracks.heading[:, 0] = [3.0, np.nan, np.nan, np.nan, -3.0]  # across +-pi, not through 0
    tracks.centroids[1:4] = np.nan
    filled = interpolate_gaps(Tracks(**{**tracks.__dict__}), max_gap=3)
    assert np.all(np.abs(filled.heading[1:4, 0]) > 3.0)


def test_keypoints_give_centroid_heading_and_length():
    kp = np.array([[[[20, 10], [10, 10], [0, 10]]]], dtype=np.float32)  # head, thorax, abdomen
    tracks = from_keypoints(kp, ["fly"], ["head", "thorax", "abdomen"])
    np.testing.assert_allclose(tracks.centroids[0, 0], [10, 10])
    np.testing.assert_allclose(tracks.heading[0, 0], 0.0)
    np.testing.assert_allclose(tracks.body_length[0, 0], 20.0)
    mouse = np.array([[[[5, 5], [5, 25], [9, 9]]]], dtype=np.float32)  # snout above tail base
    t2 = from_keypoints(mouse, ["m"], ["snout", "tailbase", "leftear"])
    np.testing.assert_allclose(t2.heading[0, 0], -np.pi / 2)  # facing up (y down)
    t3 = from_keypoints(mouse, ["m"], ["snout", "tailbase", "leftear"],
                        heading_keypoints=("leftear", "tailbase"))
    assert t3.heading[0, 0] != t2.heading[0, 0]
    with pytest.raises(TracksError, match=r"heading keypoints \['nose'\]"):
        from_keypoints(mouse, ["m"], ["snout", "tailbase", "leftear"],
                       heading_keypoints=("nose", "tailbase"))


def test_boxes_give_centroid():
    boxes = np.array([[[0, 0, 10, 40]]], dtype=np.float32)
    tracks = from_boxes(boxes, ["chimp"])
    np.testing.assert_allclose(tracks.centroids[0, 0], [5, 20])
    np.testing.assert_allclose(tracks.body_length[0, 0], 40)
    assert np.isnan(tracks.heading).all()


def test_tracks_of_another_video_are_refused():
    tracks = _line(n=20)
    with pytest.raises(TracksError, match=r"clip.tracks.csv has 20 frames .* other.mp4 has 25"):
        tracks.check_video(25, (100, 120), "other.mp4")
    with pytest.raises(TracksError, match=r"frames of 120x100 px but other.mp4 is 640x480"):
        tracks.check_video(20, (480, 640), "other.mp4")
    assert tracks.check_video(20, (100, 120), "clip.mp4") is tracks
    # a file that does not state its length may end before the video: padded, never longer
    tracks.n_frames_known = False
    tracks.frame_size = None
    padded = tracks.check_video(30, (100, 120), "clip.mp4")
    assert padded.n_frames == 30 and not padded.present[20:].any()
    with pytest.raises(TracksError, match="has 20 frames .* has 10"):
        tracks.check_video(10, None, "short.mp4")
    with pytest.raises(TracksError, match="centroids lie outside the 20x15 frame of tiny.mp4, "
                       "first at frame 0 subject 's0'"):
        tracks.check_video(20, (15, 20), "tiny.mp4")


def test_subject_absent_for_many_frames_is_named():
    tracks = _line(n=20)
    tracks.centroids[2:16, 1] = np.nan
    tracks = Tracks(**{**tracks.__dict__})
    tracks.require_present(max_missing=0.8)
    with pytest.raises(TracksError, match=r"subject 's1' of clip.tracks.csv is absent from 14 of "
                       r"20 frames \(70%; allowed 50%\): frames 2-15"):
        tracks.require_present(max_missing=0.5)


def test_identities_that_match_no_track():
    tracks = _line()
    tracks.check_subjects(["s0", "s1", "", None])
    with pytest.raises(TracksError, match=r"subjects 'male' of labels.csv match no track of "
                       r"clip.tracks.csv \(its subjects: s0, s1\)"):
        tracks.check_subjects(["s0", "male"], what="labels.csv")
    with pytest.raises(TracksError, match="subject 'female' matches no track"):
        tracks.subject_index("female")
    assert tracks.select(["s1"]).subjects == ["s1"]
    assert issubclass(TracksError, PrismError)


def test_malformed_arrays_are_refused():
    with pytest.raises(TracksError, match="centroids must be"):
        Tracks(centroids=np.zeros((3, 2)), subjects=["a"])
    with pytest.raises(TracksError, match="2 subjects in the arrays but 1 names"):
        Tracks(centroids=np.zeros((3, 2, 2)), subjects=["a"])
    with pytest.raises(TracksError, match="unique"):
        Tracks(centroids=np.zeros((3, 2, 2)), subjects=["a", "a"])
    with pytest.raises(TracksError, match="heading must have shape"):
        Tracks(centroids=np.zeros((3, 2, 2)), subjects=["a", "b"], heading=np.zeros(3))
