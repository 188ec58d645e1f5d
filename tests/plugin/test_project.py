"""The project folder without Qt: videos, session paths, one ethogram, damaged files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from prism_science.errors import LabelError
from prism_science.session import PROJECT_FILE, Behavior, LabelingSession, Project, is_project


def test_project_folder_videos_sessions_and_ethogram(synth_clip, tmp_path):
    folder = tmp_path / "proj"
    (folder / "videos" / "day1").mkdir(parents=True)
    shutil.copy(synth_clip, folder / "videos" / "day1" / "a.mp4")
    outside = tmp_path / "elsewhere" / "a.mp4"
    outside.parent.mkdir()
    shutil.copy(synth_clip, outside)
    project = Project.create(folder, [outside])
    assert is_project(folder) and not is_project(tmp_path)
    assert project.videos == [folder / "videos" / "day1" / "a.mp4", outside]
    assert project.add_videos([outside]) == []  # already there
    assert project.session_path(project.videos[0]).name == "day1__a.mp4.prism-session.json"
    assert project.session_path(outside).name == "a.mp4.prism-session.json"
    assert project.store_path == folder / "features.zarr"
    with pytest.raises(LabelError, match="not a video file"):
        project.add_videos([tmp_path / "notes.txt"])

    # the ethogram is the project's: one video's edit reaches the others' sessions
    one = LabelingSession(20, 10.0, video_path=project.videos[0])
    one.add_behavior("chasing")
    one.add_behavior(Behavior("courtship", key="1"))
    assert project.take_ethogram(one)
    other = LabelingSession(30, 10.0, video_path=outside)
    other.add_behavior(Behavior("grooming", key="c"))  # no labels: dropped
    other.add_behavior(Behavior("courtship", key="x"))
    project.apply_ethogram(other)
    assert [(b.name, b.key) for b in other.behaviors] == [("courtship", "1"), ("chasing", "c")]
    reopened = Project.open(folder)
    assert [(b.name, b.key) for b in reopened.behaviors] == [("courtship", "1"), ("chasing", "c")]
    assert reopened.external == [outside]
    # a behavior with labels is never dropped: it joins the project's ethogram
    third = LabelingSession(30, 10.0)
    third.add_behavior("mounting")
    third.set_range("mounting", 2, 5)
    reopened.apply_ethogram(third)
    assert "mounting" in [b.name for b in reopened.behaviors]
    assert np.flatnonzero(third.mask("mounting")).tolist() == [2, 3, 4, 5]


def test_damaged_or_newer_project_files_are_refused_by_name(tmp_path):
    with pytest.raises(LabelError, match="not a prism-science project"):
        Project.open(tmp_path)
    (tmp_path / PROJECT_FILE).write_text("{broken")
    with pytest.raises(LabelError, match=PROJECT_FILE):
        Project.open(tmp_path)
    (tmp_path / PROJECT_FILE).write_text(json.dumps({"format": "prism-science-project",
                                                     "version": 99}))
    with pytest.raises(LabelError, match="upgrade"):
        Project.open(tmp_path)


def test_loose_videos_keep_sessions_beside_them(synth_clip, tmp_path):
    video = tmp_path / "v.mp4"
    shutil.copy(synth_clip, video)
    project = Project.loose([video])
    assert project.folder is None and project.videos == [video]
    assert project.session_path(video) == tmp_path / "v.mp4.prism-session.json"
    assert project.store_path == tmp_path / "features.zarr"
    assert project.save() is None
