"""Saving and loading a labeling session: JSON file (+ predictions .npz) or a feature store.

Writes are atomic (temporary file, fsync, rename): a crash leaves the previous or the new file,
never a half-written one. Reading never lets a damaged file stop a video from opening:
:meth:`SessionPersistence.open_or_new` moves a session file that does not read (truncated,
garbage, wrong types, another video's, a newer version) aside as ``NAME.damaged-<time>`` and
starts an empty session; :meth:`SessionPersistence.from_store` skips a damaged session document
or label set of a store, and :func:`set_aside_in_store` moves it to ``<relpath>.damaged-<time>``
in the store.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from prism_science.errors import LabelError
from prism_science.session._types import SOURCES, Behavior

logger = logging.getLogger(__name__)

_Session = TypeVar("_Session", bound="SessionPersistence")

SESSION_FORMAT = "prism-science.session"
SESSION_VERSION = 1
STORE_SESSION_KEY = "gui/session"
"""Where a session is kept inside a feature store (a JSON document of the video)."""
PREDICTIONS_DIGEST = "predictions_sha256"
"""Field of a session file: the sha256 of the predictions ``.npz`` saved with it."""
DAMAGED_SUFFIX = ".damaged-"
"""A damaged session file ``F`` is kept as ``F.damaged-<YYYYmmdd-HHMMSS>``."""
# What building a session from a document of wrong types can raise besides LabelError.
_BAD_DOCUMENT = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def move_aside(path: str | os.PathLike[str]) -> Path:
    """Rename a damaged file to ``NAME.damaged-<time>`` beside it (never over another file).

    Returns
    -------
    Path
        The new name.
    """
    path = Path(path)
    aside = path.with_name(f"{path.name}{DAMAGED_SUFFIX}{_stamp()}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}{DAMAGED_SUFFIX}{_stamp()}-{n}")
    path.rename(aside)
    logger.warning("%s: damaged, kept as %s", path, aside.name)
    return aside


def set_aside_in_store(store_path: str | os.PathLike[str], video_id: str,
                       relpaths: list[str]) -> dict[str, str]:
    """Move damaged documents of a video in a store to ``<relpath>.damaged-<time>``.

    The bytes are copied as they are (an array item) and the original removed, so the next
    save writes a fresh document. A store that cannot be written leaves them in place.

    Returns
    -------
    dict
        ``{relpath: new relpath}`` of the documents moved.
    """
    from prism_science.errors import PrismError
    from prism_science.store import open_store

    moved: dict[str, str] = {}
    try:
        with open_store(store_path, mode="r+") as store:
            for relpath in relpaths:
                aside = f"{relpath}{DAMAGED_SUFFIX}{_stamp()}"
                n = 1
                while store.has_item(video_id, aside):
                    n += 1
                    aside = f"{relpath}{DAMAGED_SUFFIX}{_stamp()}-{n}"
                try:
                    raw = store.read_array(video_id, relpath)
                    store.write_array(video_id, aside, raw, {"damaged_copy_of": relpath})
                except (PrismError, OSError) as exc:
                    logger.warning("%s: cannot copy the damaged %s of %s aside: %s", store_path,
                                   relpath, video_id, exc)
                    continue
                store.delete_item(video_id, relpath)
                moved[relpath] = aside
    except (PrismError, OSError) as exc:
        logger.warning("%s: damaged documents of %s left in place (%s)", store_path, video_id,
                       exc)
    return moved


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a file so that a crash leaves either the old or the new content, never half.

    The bytes go to a temporary file in the same folder, are flushed to disk, and the file is
    renamed over ``path`` (an atomic replace on POSIX and Windows).

    Parameters
    ----------
    path : str or PathLike
        Destination file.
    data : bytes
        Its new content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_session_path(video_path: str | os.PathLike[str]) -> Path:
    """Where the session of a video autosaves: ``NAME.prism-session.json`` beside the video.

    When the video's folder is not writable, a file in ``~/.cache/prism-science/sessions``
    named after the video's absolute path is used instead.
    """
    video_path = Path(video_path)
    beside = video_path.with_name(video_path.name + ".prism-session.json")
    if os.access(video_path.parent, os.W_OK):
        return beside
    digest = hashlib.sha256(str(video_path.resolve()).encode()).hexdigest()[:16]
    cache = Path.home() / ".cache" / "prism-science" / "sessions"
    return cache / f"{video_path.name}.{digest}.json"


class SessionPersistence:
    """Save / load methods of :class:`~prism_science.session.LabelingSession`."""

    def to_dict(self) -> dict[str, Any]:
        """The session as JSON-able data (predictions excepted: see :meth:`save`)."""
        return {
            "format": SESSION_FORMAT,
            "version": SESSION_VERSION,
            "video": {"path": self.video_path, "n_frames": self.n_frames, "fps": self.fps},
            "annotator": self.annotator,
            "subject": self.subject,
            "behaviors": [asdict(b) for b in self.behaviors],
            "labels": self.records(SOURCES),
            "review": dict(self.review),
            "open_bouts": dict(self.open_bouts),
            "features": None if self.features is None else {
                "store": str(self.features[0]), "video_id": self.features[1]},
            "predictions": {
                name: {"classes": t.classes, "thresholds": t.thresholds,
                       "postprocess": t.postprocess}
                for name, t in self.predictions.items()
            },
        }

    def predictions_path(self, path: Path | None = None) -> Path | None:
        """The ``.npz`` that holds the predictions next to a session file."""
        path = path or self.path
        return None if path is None else path.with_name(path.name + ".predictions.npz")

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the session file (and its predictions ``.npz`` when they changed), atomically.

        Parameters
        ----------
        path : str or PathLike, optional
            Session file; defaults to the session's ``path``.

        Returns
        -------
        Path
            The session file written.
        """
        if path is None and self.store is not None:
            return self._save_to_store()
        target = Path(path) if path is not None else self.path
        if target is None:
            raise LabelError("this session has no file to save to; give a path")
        pred_path = self.predictions_path(target)
        assert pred_path is not None
        if self.predictions and (self._predictions_dirty or target != self.path
                                 or not pred_path.exists()):
            import io

            buffer = io.BytesIO()
            arrays = {f"proba_{i}": t.proba for i, t in enumerate(self.predictions.values())}
            np.savez_compressed(buffer, **arrays)
            atomic_write_bytes(pred_path, buffer.getvalue())
            self._predictions_sha256 = hashlib.sha256(buffer.getvalue()).hexdigest()
        document = self.to_dict()
        if self.predictions and getattr(self, "_predictions_sha256", None):
            # Pairs the two files: a crash between their renames leaves a .npz of a newer save
            # beside this file, which loading then recognises (and leaves unread).
            document[PREDICTIONS_DIGEST] = self._predictions_sha256
        text = json.dumps(document, indent=1, allow_nan=False)
        atomic_write_bytes(target, text.encode("utf-8"))
        if target == self.path or self.path is None:
            self.path = target
            self._dirty = False
            self._predictions_dirty = False
        self._last_save = time.monotonic()
        logger.debug("session saved to %s", target)
        return target

    def maybe_autosave(self, force: bool = False) -> bool:
        """Save when there are unsaved changes and the last save is ``autosave_interval`` old.

        Called after every change and by the GUI's timer; returns whether it saved. Failures
        are logged (the labels stay in memory and the next call retries).
        """
        if (self.path is None and self.store is None) or not self.dirty:
            return False
        recent = (self._last_save is not None
                  and time.monotonic() - self._last_save < self.autosave_interval)
        if not force and recent:
            return False
        try:
            self.save()
        except OSError as exc:
            logger.warning("autosave to %s failed: %s", self.path, exc)
            return False
        return True

    def _save_to_store(self) -> Path:
        """Write the session into its feature store: the session document, the manual and
        curated label sets (``labels/manual``, ``labels/curated``) and the predictions, in
        the layout of ``prism-science probe predict`` (:func:`prism_science.pipeline.
        write_predictions`: ``predictions/<name>/scores`` and ``binary``)."""
        from prism_science.labels.store_io import save_labels
        from prism_science.pipeline.predict import write_predictions
        from prism_science.store import open_store

        assert self.store is not None
        store_path, video_id = self.store
        with open_store(store_path, mode="a") as store:
            store.write_json(video_id, STORE_SESSION_KEY, self.to_dict())
            for source in SOURCES:
                save_labels(store, video_id, self.to_table((source,), video_id=video_id), source)
            if self._predictions_dirty:
                for name, track in self.predictions.items():
                    if self._cli_tracks.get(name) is track:
                        continue  # unchanged `probe predict` output: keep its scores and binary
                    write_predictions(store, video_id, name, track.proba, track.classes,
                                      track.thresholds, track.postprocess,
                                      {"written_by": "labeling session"})
        self._dirty = False
        self._predictions_dirty = False
        self._last_save = time.monotonic()
        logger.debug("session saved into %s (video %s)", store_path, video_id)
        return Path(store_path)

    @classmethod
    def from_store(
        cls, store_path: str | os.PathLike[str], video_id: str, *, timestamps: np.ndarray | None
        = None, damaged: list[tuple[str, str]] | None = None,
    ) -> _Session:
        """The session of a video in a feature store (empty when none was saved yet).

        Reads the session document when the GUI saved one, else the ``labels/manual`` and
        ``labels/curated`` label sets; then every ``predictions/<name>`` array that has
        ``classes`` in its attributes and one row per frame, and every prediction set written by
        ``prism-science probe predict`` (``predictions/<name>/scores`` with its thresholds and
        bout post-processing, so the session shows the bouts saved in ``binary``).

        A session document that does not read (damaged, wrong types, another video's, a newer
        version) is skipped and the label sets are read instead; a label set that does not read
        is skipped. Each is logged and, with ``damaged``, appended to it as ``(relpath,
        reason)`` (move them aside with :func:`set_aside_in_store`).

        Raises
        ------
        prism_science.errors.StoreError
            The store or the video is missing, or the store has another schema version.
        """
        from prism_science.errors import StoreError
        from prism_science.labels.store_io import load_labels
        from prism_science.store import open_store

        damaged = damaged if damaged is not None else []
        with open_store(store_path, mode="r") as store:
            info = store.video_info(video_id)
            timestamps = info.timestamps if timestamps is None else timestamps
            where = f"{store_path} (video {video_id})"
            session = None
            if store.has_item(video_id, STORE_SESSION_KEY):
                try:
                    session = cls.from_dict(store.read_json(video_id, STORE_SESSION_KEY),
                                            n_frames=info.n_frames, timestamps=timestamps,
                                            source_name=f"{where}, {STORE_SESSION_KEY}")
                except (StoreError, LabelError, UnicodeDecodeError, *_BAD_DOCUMENT) as exc:
                    logger.warning("%s: the session document does not read (%s); using the "
                                   "label sets", where, exc)
                    damaged.append((STORE_SESSION_KEY, str(exc)))
            if session is None:
                session = cls(info.n_frames, info.fps, timestamps=timestamps,
                              video_path=info.source_path)
                for source in SOURCES:
                    if not store.has_item(video_id, f"labels/{source}"):
                        continue
                    try:
                        session.add_table(load_labels(store, video_id, source))
                    except (StoreError, LabelError, UnicodeDecodeError, *_BAD_DOCUMENT) as exc:
                        logger.warning("%s: label set %r skipped: %s", where, source, exc)
                        damaged.append((f"labels/{source}", str(exc)))
            for name in store.list_items(video_id, "predictions"):
                relpath = f"predictions/{name}"
                try:
                    if store.has_item(video_id, f"{relpath}/scores"):  # `probe predict` output
                        attrs = store.read_array_attrs(video_id, f"{relpath}/scores")
                        proba = store.read_array(video_id, f"{relpath}/scores")
                        session._cli_tracks[name] = session.set_predictions(
                            name, attrs["behaviors"], proba, attrs.get("thresholds", 0.5),
                            attrs.get("postprocess"))
                        continue
                    attrs = store.read_array_attrs(video_id, relpath)
                    proba = store.read_array(video_id, relpath)
                    if "classes" in attrs:
                        session.set_predictions(name, attrs["classes"], proba,
                                                attrs.get("thresholds", 0.5),
                                                attrs.get("postprocess"))
                except (StoreError, LabelError, KeyError) as exc:
                    logger.warning("%s: predictions %r skipped: %s", where, name, exc)
        session.store = (Path(store_path), video_id)
        session._undo.clear()
        session._dirty = False
        session._predictions_dirty = False
        return session

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        n_frames: int | None = None,
        timestamps: np.ndarray | None = None,
        source_name: str = "session",
    ) -> _Session:
        """Rebuild a session from :meth:`to_dict` data.

        Raises
        ------
        LabelError
            Not a session, a newer format version, or labels that do not fit the video.
        """
        if not isinstance(data, dict) or data.get("format") != SESSION_FORMAT:
            raise LabelError(f"{source_name}: not a prism-science session file (no format field)")
        try:
            return cls._from_checked_dict(data, n_frames, timestamps, source_name)
        except LabelError as exc:
            if str(exc).startswith(source_name):
                raise
            raise LabelError(f"{source_name}: {exc}") from exc
        except _BAD_DOCUMENT as exc:
            raise LabelError(f"{source_name}: a field of the session has the wrong type or "
                             f"value ({type(exc).__name__}: {exc}); the file is damaged"
                             ) from exc

    @classmethod
    def _from_checked_dict(cls, data: dict[str, Any], n_frames: int | None,
                           timestamps: np.ndarray | None, source_name: str) -> _Session:
        version = data.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise LabelError(f"{source_name}: field 'version' is {version!r}, expected an "
                             "integer; the file is damaged")
        if version > SESSION_VERSION:
            raise LabelError(
                f"{source_name}: session version {data.get('version')} is newer than this "
                f"prism-science reads ({SESSION_VERSION}); upgrade prism-science"
            )
        video = data.get("video") or {}
        if not isinstance(video, dict):
            raise LabelError(f"{source_name}: field 'video' is {type(video).__name__}, expected "
                             "an object; the file is damaged")
        saved_n = int(video.get("n_frames") or 0)
        if n_frames is not None and saved_n and saved_n != n_frames:
            raise LabelError(
                f"{source_name}: session was made for a video of {saved_n} frames, this video "
                f"has {n_frames}; it belongs to another video"
            )
        session = cls(
            n_frames or saved_n, float(video.get("fps") or 30.0), timestamps=timestamps,
            video_path=video.get("path"), annotator=str(data.get("annotator") or ""),
        )
        for b in data.get("behaviors", []):
            session.add_behavior(Behavior(str(b["name"]), str(b.get("key", "")),
                                          str(b.get("color", "")), str(b.get("group", "")),
                                          bool(b.get("point", False))))
        session.add_records(data.get("labels", []))
        session.subject = str(data.get("subject") or "")
        session.review = {str(k): str(v) for k, v in (data.get("review") or {}).items()}
        session.open_bouts = {str(k): int(v) for k, v in (data.get("open_bouts") or {}).items()}
        for behavior, frame in session.open_bouts.items():
            if not 0 <= frame < session.n_frames:
                raise LabelError(f"{source_name}: open bout of {behavior!r} starts at frame "
                                 f"{frame}, outside the video (0..{session.n_frames - 1})")
        features = data.get("features")
        if isinstance(features, dict) and features.get("store") and features.get("video_id"):
            session.features = (Path(features["store"]), str(features["video_id"]))
        session._undo.clear()
        session._dirty = False
        return session

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        *,
        n_frames: int | None = None,
        timestamps: np.ndarray | None = None,
    ) -> _Session:
        """Read a session file written by :meth:`save` (and its predictions, if any).

        Raises
        ------
        LabelError
            The file is not valid JSON or not a session, or does not fit the video.
        """
        session, tracks = cls._load_labels(Path(path), n_frames, timestamps)
        session._load_predictions(tracks, Path(path))
        session._dirty = False
        session._predictions_dirty = False
        session._last_save = time.monotonic()
        return session

    @classmethod
    def _load_labels(cls, path: Path, n_frames: int | None,
                     timestamps: np.ndarray | None) -> tuple[_Session, dict[str, Any]]:
        """The session file without its predictions, and the predictions' metadata
        (LabelError when it does not read)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LabelError(f"{path}: cannot read the session file ({exc})") from exc
        session = cls.from_dict(data, n_frames=n_frames, timestamps=timestamps,
                                source_name=str(path))
        session.path = path
        session._predictions_sha256 = data.get(PREDICTIONS_DIGEST)
        tracks = data.get("predictions") or {}
        if not isinstance(tracks, dict):
            raise LabelError(f"{path}: field 'predictions' is {type(tracks).__name__}, expected "
                             "an object; the file is damaged")
        return session, tracks

    def _load_predictions(self, tracks: dict[str, Any], path: Path) -> None:
        """Read the predictions ``.npz`` of a session file (LabelError when it does not read)."""
        pred_path = self.predictions_path(path)
        if not tracks or pred_path is None:
            return
        if not pred_path.exists():
            logger.warning("%s: predictions file %s is missing; predictions not loaded",
                           path, pred_path)
            return
        expected = getattr(self, "_predictions_sha256", None)
        if expected is not None:
            try:
                digest = hashlib.sha256(pred_path.read_bytes()).hexdigest()
            except OSError as exc:
                raise LabelError(f"{pred_path}: the predictions do not read ({exc})") from exc
            if digest != expected:
                raise LabelError(
                    f"{pred_path}: written by another save of the session than {path.name} "
                    "(its sha256 differs from the one the session file records: a crash "
                    "between saving the two files); predict again to restore the predictions")
        try:
            with np.load(pred_path, allow_pickle=False) as arrays:
                for i, (name, meta) in enumerate(tracks.items()):
                    self.set_predictions(name, meta["classes"], arrays[f"proba_{i}"],
                                         meta.get("thresholds", 0.5), meta.get("postprocess"))
        except LabelError as exc:
            raise LabelError(f"{pred_path}: {exc}") from exc
        except (OSError, EOFError, zipfile.BadZipFile, *_BAD_DOCUMENT) as exc:
            raise LabelError(f"{pred_path}: the predictions do not read ({type(exc).__name__}: "
                             f"{exc}); the file is damaged") from exc

    @classmethod
    def open_or_new(
        cls,
        path: str | os.PathLike[str],
        *,
        n_frames: int,
        fps: float,
        timestamps: np.ndarray | None = None,
        video_path: str | os.PathLike[str] | None = None,
        annotator: str = "",
    ) -> tuple[_Session, list[str]]:
        """The session saved at ``path``, or a new one; a damaged file never stops the video.

        A session file that does not read (truncated, garbage, wrong types, a newer version,
        another video's) is renamed ``NAME.damaged-<time>`` (:func:`move_aside`), with its
        predictions ``.npz``, and an empty session starts; a damaged predictions file alone is
        moved aside and the labels are kept.

        Parameters
        ----------
        path : str or PathLike
            The session file (it need not exist).
        n_frames, fps, timestamps, video_path, annotator
            The video, for a new session (and to check a saved one).

        Returns
        -------
        session : LabelingSession
        notices : list of str
            One sentence per file moved aside, naming it; empty when all went well.
        """
        path = Path(path)
        notices: list[str] = []
        if path.exists():
            try:
                session, tracks = cls._load_labels(path, n_frames, timestamps)
            except LabelError as exc:
                pred_path = path.with_name(path.name + ".predictions.npz")
                aside = move_aside(path)
                also = ""
                if pred_path.exists():
                    also = f" (its predictions as {move_aside(pred_path).name})"
                notices.append(f"{exc}. The damaged session file was kept as {aside.name}"
                               f"{also}; a new session starts.")
            else:
                try:
                    session._load_predictions(tracks, path)
                except LabelError as exc:
                    session.predictions.clear()
                    pred_path = session.predictions_path(path)
                    aside = move_aside(pred_path) if pred_path and pred_path.exists() else None
                    notices.append(f"{exc}. The damaged predictions file was kept as "
                                   f"{aside.name if aside else '(gone)'}; the labels are loaded, "
                                   "the predictions are not.")
                session._dirty = False
                session._predictions_dirty = False
                session._last_save = time.monotonic()
                return session, notices
        session = cls(n_frames, fps, timestamps=timestamps, video_path=video_path, path=path,
                      annotator=annotator)
        return session, notices
