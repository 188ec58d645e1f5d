"""A labeling project: a folder of videos with one feature store, one ethogram, their sessions
and probes.

Layout of a project folder (everything but the videos is created on demand)::

    PROJECT/
      prism-project.json       format, version, the ethogram, videos kept elsewhere
      videos/                  video files placed here belong to the project
      features.zarr            the one feature store of the project's videos
      sessions/NAME.prism-session.json   each video's labels (see LabelingSession)
      probes/                  probes saved from the GUI

Videos outside the folder are recorded by absolute path in ``prism-project.json``; videos under
``videos/`` are found by listing it. The ethogram (behavior names, keys, colours, exclusive
groups) is the project's: :meth:`Project.apply_ethogram` gives it to a video's session, and
:meth:`Project.take_ethogram` takes it back after an edit, so every video is labeled with the
same behaviors and keys.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prism_science.errors import LabelError
from prism_science.session._persist import atomic_write_bytes, default_session_path
from prism_science.session._session import LabelingSession
from prism_science.session._types import Behavior
from prism_science.video import VIDEO_EXTENSIONS

__all__ = ["PROJECT_FILE", "PROJECT_FORMAT", "Project", "is_project"]

logger = logging.getLogger(__name__)

PROJECT_FILE = "prism-project.json"
PROJECT_FORMAT = "prism-science-project"
PROJECT_VERSION = 1


def is_project(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a project folder (it holds ``prism-project.json``)."""
    return (Path(path) / PROJECT_FILE).is_file()


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


class Project:
    """A project folder (see the module docstring). Use :meth:`open` or :meth:`create`.

    Parameters
    ----------
    folder : str or PathLike or None
        The project folder; None for a project of loose videos kept in memory only (sessions
        beside the videos, the store ``features.zarr`` beside the first one, nothing saved).
    behaviors : iterable of Behavior, optional
        The ethogram.
    external : iterable of path, optional
        Videos outside ``folder/videos``, by absolute path.
    """

    def __init__(
        self,
        folder: str | os.PathLike[str] | None,
        behaviors: Iterable[Behavior] = (),
        external: Iterable[str | os.PathLike[str]] = (),
    ) -> None:
        self.folder = None if folder is None else Path(folder).absolute()
        self.behaviors: list[Behavior] = [Behavior(**asdict(b)) for b in behaviors]
        self.external: list[Path] = [Path(p).absolute() for p in external]

    # ------------------------------------------------------------------ files
    def _in(self, name: str) -> Path:
        if self.folder is None:
            raise LabelError(f"a project of loose videos has no {name}; give a project folder")
        return self.folder / name

    @property
    def file(self) -> Path:
        """``prism-project.json``."""
        return self._in(PROJECT_FILE)

    @property
    def videos_dir(self) -> Path:
        """``videos/``: video files placed here belong to the project."""
        return self._in("videos")

    @property
    def store_path(self) -> Path:
        """The project's feature store: ``features.zarr`` in the folder (for loose videos,
        beside the first video)."""
        if self.folder is None:
            first = self.external[0] if self.external else Path.cwd() / "video"
            return first.parent / "features.zarr"
        return self.folder / "features.zarr"

    @property
    def sessions_dir(self) -> Path:
        """``sessions/``: one session file per video."""
        return self._in("sessions")

    @property
    def probes_dir(self) -> Path:
        """``probes/``: probes saved from the GUI."""
        return self._in("probes")

    @classmethod
    def loose(cls, videos: Sequence[str | os.PathLike[str]]) -> Project:
        """A project of video files without a folder (kept in memory; see the class)."""
        project = cls(None)
        project.add_videos(videos)
        return project

    @classmethod
    def create(
        cls, folder: str | os.PathLike[str], videos: Sequence[str | os.PathLike[str]] = ()
    ) -> Project:
        """Make ``folder`` a project (or open it when it already is one) and add ``videos``.

        Raises
        ------
        LabelError
            A video is not a video file, or the folder's project file cannot be read.
        """
        folder = Path(folder)
        project = cls.open(folder) if is_project(folder) else cls(folder)
        project.folder.mkdir(parents=True, exist_ok=True)
        project.add_videos(videos)
        project.save()
        return project

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> Project:
        """Read a project folder.

        Raises
        ------
        LabelError
            No ``prism-project.json`` in the folder, or it is damaged or of a newer version.
        """
        path = Path(folder) / PROJECT_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise LabelError(f"{folder}: not a prism-science project (no {PROJECT_FILE}); "
                             "create one with `prism-science gui FOLDER VIDEOS...`") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LabelError(f"{path}: cannot read the project file ({exc}); fix or remove "
                             "it") from exc
        if not isinstance(data, dict) or data.get("format") != PROJECT_FORMAT:
            raise LabelError(f"{path}: not a prism-science project file (format field)")
        if int(data.get("version", 0)) > PROJECT_VERSION:
            raise LabelError(f"{path}: project version {data.get('version')} is newer than "
                             f"this prism-science reads ({PROJECT_VERSION}); upgrade it")
        behaviors = [Behavior(str(b["name"]), str(b.get("key", "")), str(b.get("color", "")),
                              str(b.get("group", "")), bool(b.get("point", False)))
                     for b in data.get("behaviors", [])]
        return cls(folder, behaviors, [Path(p) for p in data.get("videos", [])])

    def to_dict(self) -> dict[str, Any]:
        """The project file's content."""
        return {
            "format": PROJECT_FORMAT,
            "version": PROJECT_VERSION,
            "behaviors": [asdict(b) for b in self.behaviors],
            "videos": [str(p) for p in self.external],
        }

    def save(self) -> Path | None:
        """Write ``prism-project.json`` atomically (nothing for loose videos)."""
        if self.folder is None:
            return None
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.file, json.dumps(self.to_dict(), indent=1).encode())
        return self.file

    # ------------------------------------------------------------------ videos
    @property
    def videos(self) -> list[Path]:
        """The project's videos: those under ``videos/`` (sorted), then the external ones."""
        inside = sorted(p for p in self.videos_dir.rglob("*") if _is_video(p)) \
            if self.folder is not None and self.videos_dir.is_dir() else []
        seen = {p.resolve() for p in inside}
        return inside + [p for p in self.external if p.resolve() not in seen]

    def add_videos(self, paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
        """Add video files (not copied; a folder adds the videos in it); returns those added.

        Raises
        ------
        LabelError
            A path is neither a video file nor a folder holding some.
        """
        known = {p.resolve() for p in self.videos}
        added: list[Path] = []
        for raw in paths:
            path = Path(raw).absolute()
            found = sorted(p for p in path.rglob("*") if _is_video(p)) if path.is_dir() \
                else [path]
            if not found or not all(_is_video(p) for p in found):
                raise LabelError(f"{path}: not a video file (expected one of "
                                 f"{', '.join(sorted(VIDEO_EXTENSIONS))}) nor a folder of them")
            for video in found:
                if video.resolve() in known:
                    continue
                known.add(video.resolve())
                if self.folder is None or not video.resolve().is_relative_to(
                        self.videos_dir.resolve()):
                    self.external.append(video)
                added.append(video)
        return added

    def session_path(self, video: str | os.PathLike[str]) -> Path:
        """Where the session of ``video`` is kept: ``sessions/<name>.prism-session.json``
        (the path under ``videos/`` with ``__`` for ``/``; external videos by file name,
        with their folder's name added when two share a file name)."""
        video = Path(video).absolute()
        if self.folder is None:
            return default_session_path(video)
        try:
            name = "__".join(video.resolve().relative_to(self.videos_dir.resolve()).parts)
        except ValueError:
            twins = [p for p in self.external if p.name == video.name]
            name = video.name if len(twins) <= 1 else f"{video.parent.name}__{video.name}"
        return self.sessions_dir / f"{name}.prism-session.json"

    def video_index(self, video: str | os.PathLike[str]) -> int:
        """Position of ``video`` in :attr:`videos`, or -1."""
        target = Path(video).resolve()
        for index, path in enumerate(self.videos):
            if path.resolve() == target:
                return index
        return -1

    # ------------------------------------------------------------------ ethogram
    def apply_ethogram(self, session: LabelingSession) -> None:
        """Give the project's ethogram to a video's session.

        Behaviors of the project missing from the session are added, those present get the
        project's key, colour and group. Behaviors the session has and the project does not:
        dropped when they have no labels, else kept and added to the project (labels are
        never deleted by opening a video).
        """
        if [asdict(b) for b in session.behaviors] == [asdict(b) for b in self.behaviors]:
            return  # already the project's: the session's undo history stays
        names = [b.name for b in self.behaviors]
        extra = [b for b in session.behaviors if b.name not in names]
        removed = False
        for behavior in extra:
            labeled = any(session.mask(behavior.name, source, subject).any()
                          for source in ("manual", "curated") for subject in session.subjects())
            if labeled:
                logger.info("%s: behavior %r has labels; added to the project's ethogram",
                            session.video_path, behavior.name)
            else:
                session.remove_behavior(behavior.name)
                removed = True
        # Keys move between behaviors: clear the session's keys first so no swap collides.
        for behavior in session.behaviors:
            if behavior.name in names and behavior.key:
                session.update_behavior(behavior.name, key="")
        for wanted in self.behaviors:
            if wanted.name in session.behavior_names():
                session.update_behavior(wanted.name, key=wanted.key, color=wanted.color,
                                        group=wanted.group, point=wanted.point)
            else:
                session.add_behavior(Behavior(**asdict(wanted)))
        self.take_ethogram(session)
        if removed:
            session.clear_history()  # removing unlabeled behaviors is not the user's edit

    def take_ethogram(self, session: LabelingSession) -> bool:
        """Make the session's ethogram the project's (after an edit); saves the project file
        when it changed and returns whether it did."""
        new = [Behavior(**asdict(b)) for b in session.behaviors]
        if new == self.behaviors:
            return False
        self.behaviors = new
        if self.folder is not None and self.file.exists():
            self.save()
        return True
