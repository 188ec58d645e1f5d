"""The GUI session's autosave killed at every write: beside the video, and into a Zarr store.

A child process edits a labeling session in three steps (labels, then more labels and
predictions, then a label removed and new predictions of the same shape) and saves after each,
as the autosave does; it dies (``os._exit``) just before its N-th file-system change in the
video's folder (or the store), for every N. After each kill the session opens without a damaged
file (:meth:`LabelingSession.open_or_new` moves nothing aside) and shows the labels and the
predictions of one of the saves, never the labels of one with the predictions of another; in the
store, the other video's labels and predictions are equal to before. Then a rerun of the edits
saves the final session, which reopens equal to the uninterrupted run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from prism_science.labels import Interval, LabelTable, Segment, save_labels
from prism_science.pipeline.predict import write_predictions
from prism_science.session import LabelingSession, default_session_path
from prism_science.store import open_store
from tests.robustness.conftest import write_video
from tests.robustness.killpoints import FINISHED, KILLED, count_changes, kill_points

ROBUSTNESS_TITLE = "GUI session autosave killed at every write"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| the GUI session saving three edits (labels, predictions, a label removed and new predictions
  of the same shape) to its file beside the video, killed (`os._exit`) before its N-th
  file-system change, for every N | the session opens showing the labels of one save with that
  save's predictions; when the `.npz` beside it is a newer save's (it used to load silently as
  the older one's predictions: the session file now records the `.npz`'s sha256), the labels
  open without predictions and the `.npz` is moved aside (`.damaged-<time>`) with one
  notification; nothing else is moved aside; a rerun saves the final session, equal to the
  uninterrupted run |
| the same session, saved once more (two edits) into a Zarr store holding its earlier save
  (`gui/session`, `labels/manual`, `labels/curated`, `predictions/<name>`) beside another
  video's labels and predictions (slow) | the session opens from
  the store (a half-written document is skipped for the label sets) with the labels of one save;
  the other video's labels and predictions unchanged; the rerun's session equals the
  uninterrupted run |
"""

N_FRAMES = 24
BEHAVIOR_STEPS = [  # (behavior, start, end, value) per save
    [("walk", 2, 9, True)],
    [("groom", 12, 15, True)],
    [("walk", 2, 9, False)],
]


def _proba(step: int) -> np.ndarray:
    return np.linspace(0.1, 0.9, N_FRAMES)[:, None].repeat(2, 1) * (0.5 + 0.2 * step)


def _edit(session, step: int) -> None:
    for behavior, start, end, value in BEHAVIOR_STEPS[step]:
        if behavior not in session.behavior_names():
            session.add_behavior(behavior)
        session.set_range(behavior, start, end, value)
    if step > 0:
        session.set_predictions("probe", ["walk", "groom"], _proba(step))


def _view(session) -> tuple:
    bouts = sorted((b.behavior, b.start_frame, b.end_frame) for b in session.bouts())
    predictions = {name: np.round(track.proba, 6).tolist()
                   for name, track in session.predictions.items()}
    return bouts, predictions


def _expected_views(make) -> list[tuple]:
    """What the session shows after 0, 1, 2, 3 saves."""
    session = make()
    views = [_view(session)]
    for step in range(3):
        _edit(session, step)
        views.append(_view(session))
    return views


@pytest.fixture
def video(tmp_path) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    return write_video(folder / "clip.mp4", N_FRAMES, width=32, height=32)


def test_session_file_autosave_killed_at_every_write(video, tmp_path, record_property):
    folder, path = video.parent, default_session_path(video)

    def new():  # no file: the reference must not autosave
        return LabelingSession(N_FRAMES, 30.0, video_path=video)

    def opened():
        session, notices = LabelingSession.open_or_new(path, n_frames=N_FRAMES, fps=30.0,
                                                       video_path=video)
        return session, notices

    def edit_and_save():
        session = opened()[0]
        for step in range(3):
            _edit(session, step)
            session.save()

    views = _expected_views(new)
    keep = {p.name for p in folder.iterdir()}

    def prepare():
        for p in folder.iterdir():
            if p.name not in keep:
                p.unlink()

    prepare()
    n_changes = count_changes(edit_and_save, folder)
    record_property("faults", n_changes)
    prepare()
    seen, codes = set(), []
    for n, code in kill_points(edit_and_save, folder, prepare=prepare):
        codes.append(code)
        session, notices = opened()
        # nothing, or (a newer save's .npz beside the session file) that .npz moved aside
        assert notices == [] or (len(notices) == 1 and "another save" in notices[0]
                                 and _view(session)[1] == {}), f"change {n}: {notices}"
        bouts, predictions = _view(session)
        label_views = [v[0] for v in views]
        assert bouts in label_views, f"change {n}: {bouts}"
        save = label_views.index(bouts)
        # the predictions of the same save, or (a newer save's .npz beside it) none, never
        # another save's
        assert predictions in (views[save][1], {}), f"change {n}: predictions of another save"
        seen.add(save)
        assert all(".predictions.npz.damaged-" in p.name for p in folder.iterdir()
                   if ".damaged-" in p.name)
        edit_and_save()  # the rerun
        assert _view(opened()[0]) == views[-1], f"rerun after change {n}"
    assert codes.count(KILLED) == n_changes and codes[-1] == FINISHED
    assert seen == {0, 1, 2, 3}


def _store(tmp_path: Path, video: Path) -> Path:
    path = tmp_path / "s.zarr"
    with open_store(path, "a") as store:
        for name in ("clip.mp4", "other.mp4"):
            store.put_video(name, source_path=str(video), relative_path=name, size_bytes=1,
                            content_hash=name, timestamps=np.arange(N_FRAMES) / 30.0, fps=30.0,
                            width=32, height=32)
        save_labels(store, "other.mp4", LabelTable([Interval("rest", 4, 7)], [Segment(0, 23)],
                                                   n_frames=N_FRAMES, fps=30.0))
        write_predictions(store, "other.mp4", "probe", _proba(5)[:, :1], ["rest"])
    return path


def _other_video(path: Path) -> tuple:
    with open_store(path, "r") as store:
        return (store.read_json("other.mp4", "labels/manual"),
                store.read_array("other.mp4", "predictions/probe/scores").tolist(),
                store.read_array("other.mp4", "predictions/probe/binary").tolist())


@pytest.mark.slow
def test_store_session_autosave_killed_at_every_write(video, tmp_path, record_property):
    (tmp_path / "template").mkdir()
    template = _store(tmp_path / "template", video)
    first = LabelingSession.from_store(template, "clip.mp4")
    _edit(first, 0)
    first.save()  # the session saved once: the save killed replaces it
    target = tmp_path / "s.zarr"
    other = _other_video(template)

    def opened(damaged=None):
        return LabelingSession.from_store(target, "clip.mp4", damaged=damaged)

    def edit_and_save():
        session = opened()
        session.autosave_interval = 1e9  # one save, at the end
        _edit(session, 1)
        _edit(session, 2)
        session.save()

    views = _expected_views(lambda: LabelingSession(N_FRAMES, 30.0))
    views = [views[1], views[3]]  # before and after the save
    label_views = [v[0] for v in views]

    def prepare():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(template, target)

    prepare()
    n_changes = count_changes(edit_and_save, target)
    record_property("faults", n_changes)
    seen, codes = set(), []
    for n, code in kill_points(edit_and_save, target, prepare=prepare):
        codes.append(code)
        damaged: list = []
        session = opened(damaged)  # opens
        bouts, predictions = _view(session)
        assert bouts in label_views, f"change {n}: {bouts}"
        seen.add(label_views.index(bouts))
        assert predictions in ({}, views[-1][1]), f"change {n}: predictions of no save"
        assert _other_video(target) == other, f"change {n}: the other video changed"
        edit_and_save()  # the rerun
        assert _view(opened()) == views[-1], f"rerun after change {n}"
        assert _other_video(target) == other
    assert codes.count(KILLED) == n_changes and codes[-1] == FINISHED
    assert seen == {0, 1}
