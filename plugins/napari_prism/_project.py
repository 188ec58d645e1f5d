"""The video list of a project: one video on the canvas at a time, switched from the list or with
PageUp / PageDown; the project folder's logic is :mod:`prism_science.session.project`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import PrismError
from prism_science.session import Project, is_project

from ._context import notify_error, notify_info
from ._link import link

if TYPE_CHECKING:
    import napari

__all__ = ["VideoListWidget", "open_paths"]

_PATH_ROLE = Qt.UserRole


def open_paths(viewer: napari.Viewer, paths: list[str | os.PathLike[str]]) -> Project | None:
    """Open what ``prism-science gui`` was given: a project folder (with or without videos to
    add), a folder of videos (made a project), or video files (a project of loose videos).
    The first video is shown; returns the project (None when nothing was given).

    Raises
    ------
    prism_science.errors.PrismError
        A path is not a video, a video folder or a project.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        return None
    first, rest = paths[0], paths[1:]
    if first.is_dir() and (is_project(first) or rest):
        project = Project.create(first, rest)
    elif first.is_dir():
        project = _folder_project(first)
    else:
        project = Project.loose(paths)
    lk = link(viewer)
    lk.set_project(project)
    if project.videos:
        lk.show_video(project.videos[0])
    return project


def _folder_project(folder: Path) -> Project:
    """A folder given alone: its videos become a project there (``prism-project.json``)."""
    project = Project.create(folder)
    if not project.videos and not project.external:
        project.add_videos([folder])
        project.save()
    return project


class VideoListWidget(QWidget):
    """The project's videos; a click shows one (the previous video's layer is replaced)."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        layout = QVBoxLayout(self)
        self.title = QLabel("")
        self.title.setWordWrap(True)
        layout.addWidget(self.title)
        self.list = QListWidget()
        self.list.setMinimumHeight(60)
        self.list.itemClicked.connect(self._clicked)
        layout.addWidget(self.list, 1)
        row = QHBoxLayout()
        for text, slot in (("add videos...", self._add_dialog),
                           ("open project...", self._open_dialog)):
            button = QPushButton(text)
            button.clicked.connect(slot)
            row.addWidget(button)
        layout.addLayout(row)
        hint = QLabel("PageUp / PageDown: previous / next video")
        hint.setStyleSheet("color: gray")
        layout.addWidget(hint)
        self.link.on_session_changed(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        """List the videos, the current one selected."""
        project = self.link.project
        if project is None:
            self.title.setText("no project: open a project folder, or add videos")
        elif project.folder is None:
            self.title.setText(f"{len(project.videos)} videos (no project folder: sessions "
                               "beside the videos)")
        else:
            self.title.setText(f"project {project.folder}")
        videos = self.link.videos()
        current = self.link.current_video()
        self.list.blockSignals(True)
        self.list.clear()
        for video in videos:
            item = QListWidgetItem(video.name)
            item.setData(_PATH_ROLE, str(video))
            item.setToolTip(str(video))
            self.list.addItem(item)
            if current is not None and video.resolve() == current.resolve():
                item.setSelected(True)
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)

    def _clicked(self, item: QListWidgetItem) -> None:
        self.show_video(Path(item.data(_PATH_ROLE)))

    def show_video(self, path: Path) -> None:
        """Show ``path`` on the canvas instead of the current video."""
        self.link.show_video(path)
        self.link.focus_canvas()

    def add_videos(self, paths: list[str | os.PathLike[str]]) -> None:
        """Add videos to the project (a project of loose videos when there is none)."""
        project = self.link.project
        try:
            if project is None:
                project = Project.loose([*self.link.videos(), *paths])
                self.link.set_project(project)
            else:
                project.add_videos(paths)
                project.save()
        except (PrismError, OSError) as exc:
            notify_error(exc, "add videos")
            return
        if self.link.session is None and project.videos:
            self.link.show_video(project.videos[0])
        self.refresh()

    def open_project(self, folder: str | os.PathLike[str]) -> None:
        """Open (or make) a project folder and show its first video."""
        try:
            project = Project.create(folder)
        except (PrismError, OSError) as exc:
            notify_error(exc, "open project")
            return
        self.link.set_project(project)
        if project.videos:
            self.link.show_video(project.videos[0])
        else:
            notify_info(f"{folder}: no videos yet; put them in {project.videos_dir} or add them")
        self.refresh()

    def _add_dialog(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Add videos")
        if paths:
            self.add_videos(paths)

    def _open_dialog(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Project folder")
        if folder:
            self.open_project(folder)
