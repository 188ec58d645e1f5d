"""MATLAB formats: Fly vs. Fly -actions.mat (v5 and v7.3) and JAABA scores .mat."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.io import savemat

from prism_science.errors import LabelError
from prism_science.labels import detect_format, read_labels, to_frame_matrix
from prism_science.labels.formats._matlab import is_mat73, load_mat

from .matfiles import Cell, write_mat73

BEHS = ["touch", "lunge", "wing extension"]
# bouts{fly, b}: K x 2 [start end], 1-based inclusive; fly 3 has no bouts at all
BOUTS = [
    [np.array([[10.0, 12.0]]), np.zeros((0, 2)), np.array([[20.0, 29.0], [40.0, 41.0]])],
    [np.zeros((0, 2)), np.array([[5.0, 5.0, 1.0]]), np.zeros((0, 2))],
    [np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2))],
]
EXPECTED = {("touch", "fly1", 9, 11), ("wing extension", "fly1", 19, 28),
            ("wing extension", "fly1", 39, 40), ("lunge", "fly2", 4, 4)}


def _write_v5(path):
    behs = np.empty((1, 3), dtype=object)
    behs[0, :] = BEHS
    bouts = np.empty((3, 3), dtype=object)
    for fly in range(3):
        for b in range(3):
            bouts[fly, b] = BOUTS[fly][b]
    savemat(path, {"behs": behs, "bouts": bouts})
    return path


def _write_v73(path):
    items = [BOUTS[fly][b] for b in range(3) for fly in range(3)]  # column-major
    return write_mat73(path, {"behs": Cell(BEHS, (1, 3)), "bouts": Cell(items, (3, 3))})


@pytest.mark.parametrize("writer", [_write_v5, _write_v73], ids=["v5", "v7.3"])
def test_flyvsfly_actions(tmp_path, writer):
    path = writer(tmp_path / "movie01-actions.mat")
    assert is_mat73(path) == (writer is _write_v73)
    assert detect_format(path) == "flyvsfly"
    table = read_labels(path, fps=30.0, n_frames=60)
    assert table.video_id == "movie01"
    got = {(iv.behavior, iv.subject, iv.start_frame, iv.end_frame) for iv in table.intervals}
    assert got == EXPECTED
    assert table.behavior_set.names == tuple(BEHS)
    # exhaustive annotation: every fly is labeled everywhere; fly3 (no bouts) is all negatives
    m1 = to_frame_matrix(table, BEHS, subject="fly1")
    assert (m1 >= 0).all() and m1[9:12, 0].all() and m1[:, 1].sum() == 0
    assert (to_frame_matrix(table, BEHS, subject="fly3") == 0).all()
    assert table.intervals[0].start_s == pytest.approx(9 / 30)
    with pytest.raises(LabelError, match=r"bouts\{1,3\} row 2.*beyond the video"):
        read_labels(path, n_frames=40)


def test_flyvsfly_length_from_track_file(tmp_path):
    path = _write_v5(tmp_path / "movie02-actions.mat")
    savemat(tmp_path / "movie02-track.mat",
            {"trk": {"names": np.array(["pos x"], dtype=object), "data": np.zeros((3, 75, 1))}})
    table = read_labels(path)
    assert table.n_frames == 75 and table.segments[0].end_frame == 74


@pytest.mark.parametrize("writer", [_write_v5, _write_v73], ids=["v5", "v7.3"])
def test_flyvsfly_2014_naming_and_a_movie_without_bouts(tmp_path, writer):
    """The FvF 2014 release: <Set>/<Set>/movieN/movieN_actions.mat + movieN_track.mat."""
    movie = tmp_path / "Aggression" / "Aggression" / "movie7"
    movie.mkdir(parents=True)
    path = writer(movie / "movie7_actions.mat")
    savemat(movie / "movie7_track.mat",
            {"trk": {"names": np.array(["pos x"], dtype=object), "data": np.zeros((3, 64, 1))}})
    assert detect_format(path) == "flyvsfly"
    table = read_labels(path)
    assert table.video_id == "movie7" and table.n_frames == 64
    assert {(iv.behavior, iv.subject, iv.start_frame, iv.end_frame)
            for iv in table.intervals} == EXPECTED

    empty = movie.parent / "movie8"
    empty.mkdir()
    behs = np.empty((1, 3), dtype=object)
    behs[0, :] = BEHS
    bouts = np.empty((2, 3), dtype=object)
    for fly in range(2):
        for b in range(3):
            bouts[fly, b] = np.zeros((0, 2))
    savemat(empty / "movie8_actions.mat", {"behs": behs, "bouts": bouts})
    savemat(empty / "movie8_track.mat",
            {"trk": {"names": np.array(["pos x"], dtype=object), "data": np.zeros((2, 50, 1))}})
    table = read_labels(empty / "movie8_actions.mat")
    assert table.video_id == "movie8" and table.intervals == []
    for fly in ("fly1", "fly2"):  # exhaustively annotated: all negatives, not unlabeled
        matrix = to_frame_matrix(table, BEHS, subject=fly)
        assert matrix.shape == (50, 3) and (matrix == 0).all()


def test_flyvsfly_bad_files(tmp_path):
    path = tmp_path / "bad-actions.mat"
    bouts = np.empty((1, 2), dtype=object)
    bouts[0, 0], bouts[0, 1] = np.zeros((0, 2)), np.zeros((0, 2))
    behs = np.empty((1, 3), dtype=object)
    behs[0, :] = BEHS
    savemat(path, {"behs": behs, "bouts": bouts})
    with pytest.raises(LabelError, match=r"'bouts': 2 columns.*3 behaviors"):
        read_labels(path, format="flyvsfly")
    other = tmp_path / "other.mat"
    savemat(other, {"x": np.ones(3)})
    with pytest.raises(LabelError, match=r"variables \['x'\]"):
        read_labels(other)
    truncated = tmp_path / "cut-actions.mat"
    truncated.write_bytes(_write_v5(tmp_path / "ok-actions.mat").read_bytes()[:200])
    with pytest.raises(LabelError, match="cannot read as a MATLAB"):
        read_labels(truncated, format="flyvsfly")


def test_v73_loader_orientation_and_types(tmp_path):
    path = write_mat73(tmp_path / "x.mat", {
        "name": "wing", "m": np.arange(6.0).reshape(2, 3), "empty": np.zeros((0, 2)),
        "s": {"a": np.array([[1.0, 2.0]]), "t": "hi"},
    })
    data = load_mat(path)
    assert data["name"] == "wing"
    assert data["m"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert data["empty"].size == 0 and data["s"]["t"] == "hi"
    assert data["s"]["a"].shape == (1, 2)


def _jaaba_scores(n_frames=50):
    """allScores of 2 flies as JAABA saves them (by absolute frame, NaN outside tStart..tEnd)."""
    s1 = np.full(n_frames, np.nan)
    s1[0:40] = -1.0
    s1[10:15] = 2.0  # frames 11..15 (1-based) -> bout t0=11, t1=16
    s1[30:32] = 0.5
    s2 = np.full(n_frames, np.nan)
    s2[20:50] = -0.5
    post1 = (np.nan_to_num(s1) > 0).astype(float)
    post2 = np.zeros(n_frames)
    return {
        "scores": [s1[None, :], s2[None, :]],
        "tStart": np.array([[1.0, 21.0]]), "tEnd": np.array([[40.0, 50.0]]),
        "postprocessed": [post1[None, :], post2[None, :]],
        "t0s": [np.array([[11.0, 31.0]]), np.zeros((1, 0))],
        "t1s": [np.array([[16.0, 33.0]]), np.zeros((1, 0))],
        "scoreNorm": np.array([[2.0]]),
    }


def test_jaaba_scores_v5(tmp_path):
    raw = _jaaba_scores()
    cells = {}
    for key, value in raw.items():
        if isinstance(value, list):
            arr = np.empty((1, len(value)), dtype=object)
            for i, v in enumerate(value):
                arr[0, i] = v
            cells[key] = arr
        else:
            cells[key] = value
    path = tmp_path / "scores_Chase.mat"
    savemat(path, {"allScores": cells, "behaviorName": "Chase", "version": "0.5.1"})
    assert detect_format(path) == "jaaba"
    table = read_labels(path, fps=30.0, video_id="exp1")
    assert [(iv.behavior, iv.subject, iv.start_frame, iv.end_frame) for iv in table.intervals] \
        == [("Chase", "fly1", 10, 14), ("Chase", "fly1", 30, 31)]
    assert all(iv.source == "predicted" for iv in table.intervals)
    assert table.intervals[0].confidence == pytest.approx(1.0)
    assert table.intervals[1].confidence == pytest.approx(0.625)
    m2 = to_frame_matrix(table, ["Chase"], subject="fly2")
    assert (m2[:20] == -1).all() and (m2[20:] == 0).all()
    assert table.n_frames == 50
    # without t0s/t1s the bouts come from postprocessed
    del cells["t0s"], cells["t1s"]
    savemat(path, {"allScores": cells, "behaviorName": "Chase"})
    again = read_labels(path, fps=30.0)
    assert [(iv.start_frame, iv.end_frame) for iv in again.intervals] == [(10, 14), (30, 31)]
