"""The feature store: Zarr v3 (default) or HDF5 behind one logical schema (docs/store.md).

::

    /                                   attrs prism_science = {schema_version, library_version, ...}
    videos/<video_id>/                  attrs video = {source_path, relative_path, size_bytes,
                                                       content_hash, n_frames, fps, width, height}
    videos/<video_id>/timestamps        (N,) float64 seconds of each frame
    videos/<video_id>/features/<model>/<tokens>/
        values                          (N, *feature_shape) float32, chunked along frames
                                        (Zarr: chunks grouped in shards, one file per shard)
        chunk_done                      (n_chunks,) uint8, 1 once a chunk of values is written
        attrs                           provenance, chunk_frames, shard_frames (Zarr shards),
                                        complete (written LAST)
    videos/<video_id>/<relpath>         arrays and JSON documents of other modules
    shared/<relpath>                    store-level arrays and JSON documents (video_id=None)

A feature set is written chunk by chunk; each chunk's ``chunk_done`` marker is set after its
values, and ``complete`` after every marker, so a run killed at any moment leaves a store that a
rerun completes without losing what was written. In a Zarr store the values of
``shard_frames`` frames (whole chunks; default :data:`DEFAULT_SHARD_FRAMES`) are one file, a
Zarr v3 shard, and their markers another, so an hour of 30 fps video is a few dozen files;
writers that own whole shards never touch the same file. Stores written before sharding (one
file per chunk and per marker) read and resume as they are. An HDF5 store is a main file
``X.h5``, only ever replaced atomically (one commit per method below), and a folder ``X.h5.d``
with one data file per feature set, so a kill never damages finished work; it takes one writing
process at a time (:mod:`prism_science.store.lock`): the distributed mode needs Zarr. The two
file formats are reached through :mod:`prism_science.store.backends`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from prism_science import __version__
from prism_science.errors import StoreError
from prism_science.store.backends import ZarrBackend, jsonable
from prism_science.store.hdf5 import HDF5Backend

__all__ = [
    "CHUNK_BYTES_LIMIT",
    "DEFAULT_CHUNK_FRAMES",
    "DEFAULT_SHARD_FRAMES",
    "IDENTITY_FIELDS",
    "SCHEMA_VERSION",
    "SHARD_BYTES_LIMIT",
    "FeatureStore",
    "Features",
    "StoredVideo",
    "describe_params",
    "is_store",
    "open_store",
    "check_video_id",
    "confined_path",
    "safe_name",
    "store_format",
    "video_id_from_path",
]

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Version of the layout above; a store with another version is refused."""
DEFAULT_CHUNK_FRAMES = 256
"""Frames per chunk of a feature array (halved for very large per-frame features)."""
CHUNK_BYTES_LIMIT = 64 << 20
"""Largest chunk of feature values, in bytes, before ``chunk_frames`` is halved."""
DEFAULT_SHARD_FRAMES = 8192
"""Frames per Zarr shard (one file of whole chunks; about 4.5 minutes of 30 fps video)."""
SHARD_BYTES_LIMIT = 128 << 20
"""Largest shard of feature values, in bytes (a writer holds one shard in memory)."""
IDENTITY_FIELDS = ("model_name", "weights_sha256", "num_frames", "image_size", "window",
                   "feature_shape", "crop", "roi")
"""Provenance fields that must agree for features to be mixed in one feature set."""

_HDF5_SUFFIXES = (".h5", ".hdf5", ".he5")
_ZARR_META = "zarr.json"
_RESERVED = ("features", "timestamps")


def store_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """``"hdf5"`` for ``.h5``/``.hdf5`` paths (or ``format="hdf5"``), else ``"zarr"``."""
    if format is not None:
        if format not in ("zarr", "hdf5"):
            raise StoreError(f"store format must be 'zarr' or 'hdf5', found {format!r}")
        return format
    return "hdf5" if Path(path).suffix.lower() in _HDF5_SUFFIXES else "zarr"


def is_store(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a prism-science feature store (a Zarr folder or an HDF5 file)."""
    path = Path(path)
    if path.is_dir():
        meta = path / "zarr.json"
        try:
            return meta.is_file() and "prism_science" in json.loads(meta.read_text()).get(
                "attributes", {})
        except (OSError, ValueError):
            return False
    if path.is_file() and path.suffix.lower() in _HDF5_SUFFIXES:
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                return "prism_science" in handle.attrs
        except OSError:
            return False
    return False


def video_id_from_path(relative_path: str | os.PathLike[str]) -> str:
    """A store-safe id from a video's path relative to the folder it was found in.

    Path separators become ``__``; characters other than letters, digits, ``.``, ``-`` and
    ``_`` become ``_``. ``"mouse 1/day2.mp4"`` -> ``"mouse_1__day2.mp4"``.
    """
    parts = [p for p in Path(relative_path).as_posix().split("/") if p not in ("", ".", "..")]
    safe = [
        "".join(ch if ch.isascii() and (ch.isalnum() or ch in ".-_") else "_" for ch in part)
        for part in parts
    ]
    video_id = "__".join(safe).lstrip("._") or "video"
    return video_id


_NAME_MAX_BYTES = 200
"""Longest file name :func:`safe_name` makes (file systems allow 255 bytes; room for suffixes)."""


def safe_name(name: str, fallback: str = "video") -> str:
    """``name`` (a video id read from a file, say) made one harmless file name.

    As :func:`video_id_from_path`: ``/`` and ``\\`` separate parts; ``.``, ``..`` and empty
    parts are dropped, the others joined with ``__``; characters other than ASCII letters,
    digits, ``.``, ``-`` and ``_`` become ``_`` and leading dots and underscores are dropped (no
    hidden files); the result is cut to 200 bytes. ``"../../x"`` -> ``"x"``,
    ``"/etc/cron.d/a b"`` -> ``"etc__cron.d__a_b"``; ``fallback`` when nothing is left.
    """
    parts = [p for p in re.split(r"[/\\]", str(name)) if p not in ("", ".", "..")]
    safe = "__".join(
        "".join(ch if ch.isascii() and (ch.isalnum() or ch in ".-_") else "_" for ch in part)
        for part in parts)
    return safe.lstrip("._")[:_NAME_MAX_BYTES].rstrip(".") or fallback


def confined_path(folder: str | os.PathLike[str], name: str, suffix: str = "") -> Path:
    """The file ``folder / (safe_name(name) + suffix)``, checked to lie inside ``folder``.

    Every place where an id read from a user's file becomes a file name goes through this, so a
    label file naming a video ``../../x`` or ``/etc/x`` never writes outside ``folder``.

    Raises
    ------
    StoreError
        When the path would still resolve outside ``folder`` (a symbolic link in ``folder``
        pointing elsewhere, for instance).
    """
    folder = Path(folder)
    path = folder / (safe_name(name) + suffix)
    root = folder.resolve()
    if path.resolve().parent != root:
        raise StoreError(f"{path}: the file for id {name!r} would be written outside {folder} "
                         "(a link points elsewhere); remove the link or choose another folder")
    return path


def check_video_id(video_id: str) -> str:
    """``video_id`` when it is usable as a store key, else StoreError.

    A store key is one name: not empty, not ``.`` or ``..``, no ``/`` or ``\\``, no control
    characters, not starting with ``__``, not ``zarr.json`` (Zarr's own metadata file), at
    most 255 bytes. Ids are refused rather than changed, since a key silently renamed would no
    longer match its labels.
    """
    bad = (not isinstance(video_id, str) or not video_id or video_id in (".", "..")
           or video_id.lower() == _ZARR_META
           or "/" in video_id or "\\" in video_id or video_id.startswith("__")
           or any(ord(ch) < 32 or ord(ch) == 127 for ch in video_id)
           or len(video_id.encode("utf-8", "surrogatepass")) > 255)
    if bad:
        raise StoreError(
            f"invalid video id {video_id!r}: a store key is one name without '/', '\\', "
            "control characters or a leading '__', not '.', '..' or 'zarr.json', at most 255 "
            "bytes; use video_id_from_path(path), or --video-id to name the stored video")
    return video_id


def describe_params(provenance: dict[str, Any]) -> str:
    """One line naming the model and window parameters of a feature set's provenance."""
    window = provenance.get("window", {})
    sha = str(provenance.get("weights_sha256") or "unknown")
    sha = sha[:24] if sha.startswith("random-init-") else sha[:12]
    return (
        f"model {provenance.get('model_name')} (weights {sha}), "
        f"T={provenance.get('num_frames')}, {provenance.get('image_size')}px, "
        + ", ".join(f"{k}={v}" for k, v in sorted(window.items()))
        + ("" if not provenance.get("crop") else ", crop "
           + ", ".join(f"{k}={v}" for k, v in sorted(provenance["crop"].items())))
        + ("" if not provenance.get("roi") else ", roi "
           + ", ".join(f"{k}={v}" for k, v in sorted(provenance["roi"].items())))
    )


@dataclass(frozen=True, eq=False)
class StoredVideo:
    """A video's record in the store (see :meth:`FeatureStore.put_video`)."""

    video_id: str
    source_path: str
    relative_path: str
    size_bytes: int
    content_hash: str
    n_frames: int
    fps: float
    width: int
    height: int
    timestamps: np.ndarray


@dataclass(frozen=True, eq=False)
class Features:
    """A feature set read from the store.

    Attributes
    ----------
    values : np.ndarray
        (N, *feature_shape) float32 (or the requested frame range).
    provenance : dict
        Model name, weights sha256, window parameters, library version, time, host.
    complete : bool
        Whether the completion mark is set.
    done_chunks : np.ndarray
        (n_chunks,) bool, chunks whose values have been written.
    """

    video_id: str
    key: str
    values: np.ndarray
    provenance: dict[str, Any]
    complete: bool
    done_chunks: np.ndarray
    chunk_frames: int


class FeatureStore:
    """A store of videos, their per-frame features, and other modules' arrays and documents.

    Open with :func:`open_store`. Usable as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str], mode: str = "a",
                 format: str | None = None) -> None:
        if mode not in ("r", "r+", "a", "w"):
            raise StoreError(f"store mode must be one of r, r+, a, w; found {mode!r}")
        self.path = Path(path)
        self.mode = mode
        self.format = store_format(self.path, format)
        self._b: ZarrBackend | HDF5Backend = (
            ZarrBackend(self.path, mode) if self.format == "zarr"
            else HDF5Backend.open(self.path, mode))
        self._closed = False
        try:
            self._check_schema()
        except StoreError:
            self.close()
            raise

    # ------------------------------------------------------------------ basics
    @property
    def writable(self) -> bool:
        """Whether the store was opened for writing."""
        return self.mode != "r"

    def _check_schema(self) -> None:
        root = self._b.attrs("")
        meta = root.get("prism_science")
        if meta is None:
            if self._b.children(""):
                raise StoreError(
                    f"{self.path}: holds data but no prism_science attributes; it was not written "
                    "by prism-science: use another path"
                )
            if self.writable:
                self._b.set_attrs("", {"prism_science": {
                    "schema_version": SCHEMA_VERSION, "library_version": __version__,
                    "format": self.format}})
            return
        found = meta.get("schema_version")
        if found != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: store schema version {found} (written by prism-science "
                f"{meta.get('library_version')}), this prism-science {__version__} reads version "
                f"{SCHEMA_VERSION}; re-extract into a new store, or use the prism-science version "
                "that wrote it"
            )

    def _require_writable(self) -> None:
        if not self.writable:
            raise StoreError(f"{self.path}: opened read-only; open it with mode='a' to write")

    def close(self) -> None:
        """Close the store (HDF5: commit, close its files, free the writer lock); further use
        is an error. Closing twice does nothing."""
        if not self._closed:
            self._closed = True
            self._b.close()

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.path)!r}, mode={self.mode!r}, format={self.format!r})"

    # ------------------------------------------------------------------ videos
    @staticmethod
    def _video_path(video_id: str) -> str:
        return f"videos/{check_video_id(video_id)}"

    def video_ids(self) -> list[str]:
        """Ids of the videos in the store, sorted."""
        return self._b.groups("videos") if self._b.exists("videos") else []

    def has_video(self, video_id: str) -> bool:
        """Whether the store has a record of ``video_id`` (one whose writing was interrupted,
        without its ``video`` attributes, counts as none: :meth:`put_video` starts it anew)."""
        path = self._video_path(video_id)
        return self._b.exists(path) and bool(self._b.attrs(path).get("video"))

    def _require_video(self, video_id: str) -> str:
        path = self._video_path(video_id)
        if not self._b.exists(path):
            known = ", ".join(self.video_ids()[:10]) or "none"
            raise StoreError(f"{self.path}: no video {video_id!r} in the store (videos: {known})")
        return path

    def video_info(self, video_id: str) -> StoredVideo:
        """The stored record of a video: source path, size, content hash, frames, timestamps."""
        path = self._require_video(video_id)
        meta = self._b.attrs(path).get("video", {})
        return StoredVideo(
            video_id=video_id,
            source_path=meta.get("source_path", ""),
            relative_path=meta.get("relative_path", ""),
            size_bytes=int(meta.get("size_bytes", 0)),
            content_hash=meta.get("content_hash", ""),
            n_frames=int(meta.get("n_frames", 0)),
            fps=float(meta.get("fps", 0.0)),
            width=int(meta.get("width", 0)),
            height=int(meta.get("height", 0)),
            timestamps=np.asarray(self._b.node(f"{path}/timestamps")[...], dtype=np.float64),
        )

    def put_video(
        self,
        video_id: str,
        *,
        source_path: str,
        relative_path: str,
        size_bytes: int,
        content_hash: str,
        timestamps: np.ndarray,
        fps: float,
        width: int,
        height: int,
        overwrite: bool = False,
    ) -> None:
        """Record a video (or check that the recorded one is the same content).

        Parameters
        ----------
        video_id : str
            Store-safe id (:func:`video_id_from_path`).
        timestamps : np.ndarray
            (N,) float64 seconds of each frame; N is the frame count.
        overwrite : bool
            Replace a record of other content (and drop its features) instead of refusing.

        Raises
        ------
        StoreError
            The store records other content under this id and ``overwrite`` is False.
        """
        self._require_writable()
        with self._b.batch():
            self._put_video(video_id, source_path=source_path, relative_path=relative_path,
                            size_bytes=size_bytes, content_hash=content_hash,
                            timestamps=timestamps, fps=fps, width=width, height=height,
                            overwrite=overwrite)

    def _put_video(self, video_id: str, *, source_path: str, relative_path: str,
                   size_bytes: int, content_hash: str, timestamps: np.ndarray, fps: float,
                   width: int, height: int, overwrite: bool) -> None:
        path = self._video_path(video_id)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        if self._b.exists(path) and not self._b.attrs(path).get("video"):
            self._b.delete(path)  # a record interrupted while being written
        if self._b.exists(path):
            old = self._b.attrs(path).get("video", {})
            same = (old.get("content_hash") == content_hash
                    and int(old.get("n_frames", -1)) == timestamps.shape[0])
            if same:
                self._b.set_attrs(path, {"video": {**old, "source_path": str(source_path)}})
                return
            if not overwrite:
                raise StoreError(
                    f"{self.path}: video {video_id!r} was stored from {old.get('source_path')} "
                    f"(content {old.get('content_hash', '?')[:20]}, {old.get('n_frames')} frames) "
                    f"but {source_path} has content {content_hash[:20]}, {timestamps.shape[0]} "
                    "frames; use --overwrite to replace it, or another store"
                )
            self._b.delete(path)
        self._b.require_group(path)
        self._b.create_array(f"{path}/timestamps", (), (max(1, timestamps.shape[0]),), None,
                             data=timestamps)
        self._b.set_attrs(path, {"video": {
            "source_path": str(source_path), "relative_path": str(relative_path),
            "size_bytes": int(size_bytes), "content_hash": content_hash,
            "n_frames": int(timestamps.shape[0]), "fps": float(fps),
            "width": int(width), "height": int(height)}})

    def delete_video(self, video_id: str) -> None:
        """Remove a video and everything stored under it."""
        self._require_writable()
        with self._b.batch():
            self._b.delete(self._require_video(video_id))

    # ------------------------------------------------------------------ features
    def _feature_path(self, video_id: str, key: str) -> str:
        parts = key.split("/")
        if len(parts) != 2 or not all(parts):
            raise StoreError(f"feature key must be '<model>/<tokens>', found {key!r}")
        return f"{self._video_path(video_id)}/features/{key}"

    def feature_keys(self, video_id: str) -> list[str]:
        """Feature sets of a video, e.g. ``["prism-tiny-p16-f16-r128/mean"]``."""
        base = f"{self._require_video(video_id)}/features"
        if not self._b.exists(base):
            return []
        return [f"{m}/{t}" for m in self._b.groups(base) for t in self._b.groups(f"{base}/{m}")]

    def feature_status(self, video_id: str, key: str) -> str:
        """``"missing"``, ``"incomplete"`` or ``"complete"``."""
        if not self.has_video(video_id):
            return "missing"
        path = self._feature_path(video_id, key)
        if not self._b.exists(path):
            return "missing"
        attrs = self._b.attrs(path)
        if "chunk_frames" not in attrs:
            return "missing"
        return "complete" if attrs.get("complete") else "incomplete"

    def feature_provenance(self, video_id: str, key: str) -> dict[str, Any]:
        """The provenance dict of a feature set (see :data:`IDENTITY_FIELDS`)."""
        return self._b.attrs(self._require_features(video_id, key)).get("provenance", {})

    def _require_features(self, video_id: str, key: str) -> str:
        path = self._feature_path(video_id, key)
        if not self._b.exists(path) or "chunk_frames" not in self._b.attrs(path):
            keys = ", ".join(self.feature_keys(video_id)) or "none"
            raise StoreError(
                f"{self.path}: video {video_id!r} has no features {key!r} (it has: {keys}); "
                "run `prism-science extract` for it"
            )
        return path

    def create_features(
        self,
        video_id: str,
        key: str,
        feature_shape: tuple[int, ...],
        provenance: dict[str, Any],
        chunk_frames: int | None = None,
        overwrite: bool = False,
        shard_frames: int | None = None,
    ) -> int:
        """Create an empty feature set (or reuse an existing one with the same identity).

        Parameters
        ----------
        video_id, key : str
            The video (already recorded with :meth:`put_video`) and ``"<model>/<tokens>"``.
        feature_shape : tuple of int
            Shape of one frame's feature.
        provenance : dict
            Must hold :data:`IDENTITY_FIELDS`; stored as is.
        chunk_frames : int, optional
            Frames per chunk; default :data:`DEFAULT_CHUNK_FRAMES`, halved while a chunk would
            exceed :data:`CHUNK_BYTES_LIMIT`.
        overwrite : bool
            Drop an existing feature set (whatever its parameters) and start anew.
        shard_frames : int, optional
            Zarr: frames per shard file, a multiple of ``chunk_frames`` (equal: one file per
            chunk, no shards); default :data:`DEFAULT_SHARD_FRAMES` rounded down to whole
            chunks, fewer while a shard would exceed :data:`SHARD_BYTES_LIMIT`. HDF5: ignored.

        Returns
        -------
        int
            ``chunk_frames`` of the (new or existing) set.

        Raises
        ------
        StoreError
            A feature set with this key but other parameters exists and ``overwrite`` is False.
        """
        self._require_writable()
        with self._b.batch():
            return self._create_features(video_id, key, feature_shape, provenance,
                                         chunk_frames, overwrite, shard_frames)

    def _arrays_readable(self, path: str) -> bool:
        """Whether the arrays of an incomplete feature set open and their markers read (HDF5:
        its data file may have been damaged by a kill while being written)."""
        try:
            np.asarray(self._b.node(f"{path}/chunk_done")[...])
            self._b.node(f"{path}/values").shape  # noqa: B018 - opening it is the check
        except (StoreError, KeyError, OSError, RuntimeError, ValueError) as exc:
            logger.warning("%s: the unfinished features %s do not read back (%s); starting "
                           "them anew", self.path, path, exc)
            return False
        return True

    def _create_features(self, video_id: str, key: str, feature_shape: tuple[int, ...],
                         provenance: dict[str, Any], chunk_frames: int | None,
                         overwrite: bool, shard_frames: int | None) -> int:
        n_frames = self.video_info(video_id).n_frames
        path = self._feature_path(video_id, key)
        attrs = self._b.attrs(path) if self._b.exists(path) else {}
        # A set whose attributes were never written was interrupted while being created.
        if "chunk_frames" in attrs and not overwrite:
            old = attrs.get("provenance", {})
            if all(old.get(f) == jsonable(provenance.get(f)) for f in IDENTITY_FIELDS):
                if attrs.get("complete") or self._arrays_readable(path):
                    return int(attrs["chunk_frames"])
                attrs = {}
        if "chunk_frames" in attrs and not overwrite:
            raise StoreError(
                f"{self.path}: video {video_id!r} already has features {key!r} from "
                f"{describe_params(old)}; refusing to mix them with "
                f"{describe_params(provenance)}; use --overwrite to replace them, or another "
                "store"
            )
        if chunk_frames is None:
            frame_bytes = 4 * int(np.prod(feature_shape))
            chunk_frames = DEFAULT_CHUNK_FRAMES
            while chunk_frames > 16 and chunk_frames * frame_bytes > CHUNK_BYTES_LIMIT:
                chunk_frames //= 2
        n_chunks = -(-n_frames // chunk_frames)
        per_shard = self._chunks_per_shard(chunk_frames, feature_shape, shard_frames)
        if self._b.exists(path):
            self._b.delete(path)
        self._b.require_group(path)
        # One marker file per shard: a writer owning the shard sets its markers alone.
        self._b.create_array(f"{path}/chunk_done", (n_chunks,), (per_shard,), np.uint8,
                             separate=True)
        chunks = (chunk_frames, *feature_shape)
        self._b.create_array(f"{path}/values", (n_frames, *feature_shape), chunks, np.float32,
                             shards=(per_shard * chunk_frames, *feature_shape)
                             if per_shard > 1 else None, separate=True)
        # Written last: their presence says the arrays exist.
        self._b.set_attrs(path, {"provenance": provenance, "chunk_frames": chunk_frames,
                                 "shard_frames": per_shard * chunk_frames,
                                 "feature_shape": list(feature_shape), "complete": False})
        return chunk_frames

    def _chunks_per_shard(self, chunk_frames: int, feature_shape: tuple[int, ...],
                          shard_frames: int | None) -> int:
        if self.format != "zarr":
            return 1
        if shard_frames is not None:
            if shard_frames < 1 or shard_frames % chunk_frames:
                raise StoreError(
                    f"{self.path}: {shard_frames} frames per shard file is not a multiple of "
                    f"the {chunk_frames} frames per chunk; give a multiple (or "
                    f"{chunk_frames} for one file per chunk)")
            return shard_frames // chunk_frames
        chunk_bytes = 4 * chunk_frames * int(np.prod(feature_shape))
        return max(1, min(DEFAULT_SHARD_FRAMES // chunk_frames,
                          SHARD_BYTES_LIMIT // max(1, chunk_bytes)))

    def chunk_frames(self, video_id: str, key: str) -> int:
        """Frames per chunk of a feature set."""
        return int(self._b.attrs(self._require_features(video_id, key))["chunk_frames"])

    def shard_frames(self, video_id: str, key: str) -> int:
        """Frames per shard file of a feature set: the unit a writer owns and writes whole.

        ``chunk_frames`` for HDF5 and for Zarr stores written before sharding.
        """
        attrs = self._b.attrs(self._require_features(video_id, key))
        return int(attrs.get("shard_frames") or attrs["chunk_frames"])

    def done_chunks(self, video_id: str, key: str) -> np.ndarray:
        """(n_chunks,) bool: chunks whose values have been written."""
        path = self._require_features(video_id, key)
        return np.asarray(self._b.node(f"{path}/chunk_done")[...]).astype(bool)

    def missing_ranges(self, video_id: str, key: str) -> list[tuple[int, int]]:
        """Frame ranges ``(start, stop)`` not yet written, aligned to whole shards (a shard with
        any chunk missing is missing whole: it is written by one writer at once)."""
        done = self.done_chunks(video_id, key)
        cf = self.chunk_frames(video_id, key)
        per_shard = self.shard_frames(video_id, key) // cf
        if per_shard > 1:
            padded = np.ones(-(-done.size // per_shard) * per_shard, dtype=bool)
            padded[:done.size] = done
            done = np.repeat(padded.reshape(-1, per_shard).all(axis=1), per_shard)[:done.size]
        n = self.video_info(video_id).n_frames
        ranges: list[tuple[int, int]] = []
        for index in np.flatnonzero(~done):
            start, stop = int(index) * cf, min(n, (int(index) + 1) * cf)
            if ranges and ranges[-1][1] == start:
                ranges[-1] = (ranges[-1][0], stop)
            else:
                ranges.append((start, stop))
        return ranges

    def write_chunks(self, video_id: str, key: str, frame_start: int, values: np.ndarray) -> None:
        """Write whole chunks of values, then their done markers.

        Parameters
        ----------
        frame_start : int
            First frame; a multiple of ``chunk_frames``.
        values : np.ndarray
            (n, *feature_shape) float32; ``frame_start + n`` is a multiple of ``chunk_frames``
            or the video's last frame + 1.
        """
        self._require_writable()
        path = self._require_features(video_id, key)
        array = self._b.node(f"{path}/values", writable=True)
        cf = self.chunk_frames(video_id, key)
        n_frames = array.shape[0]
        stop = frame_start + values.shape[0]
        if frame_start % cf or (stop % cf and stop != n_frames) or stop > n_frames:
            raise StoreError(
                f"{self.path}: write of frames {frame_start}..{stop} to {video_id}/{key} is not "
                f"aligned to whole chunks of {cf} frames (video has {n_frames}); this is a bug"
            )
        if tuple(values.shape[1:]) != tuple(array.shape[1:]):
            raise StoreError(
                f"{self.path}: features for {video_id}/{key} have shape {values.shape[1:]}, the "
                f"stored array expects {array.shape[1:]}"
            )
        with self._b.writing(f"features of video {video_id!r}, frames {frame_start}..{stop}"):
            array[frame_start:stop] = values.astype(np.float32, copy=False)
            # HDF5: the values reach the file before their markers (a kill in between leaves
            # them unmarked, to be recomputed); Zarr wrote them already.
            self._b.flush()
            done = self._b.node(f"{path}/chunk_done", writable=True)
            first, last = frame_start // cf, -(-stop // cf)
            done[first:last] = np.ones(last - first, dtype=np.uint8)
        self._b.flush()

    def mark_complete(self, video_id: str, key: str) -> None:
        """Set the completion mark; refuses while any chunk is missing."""
        self._require_writable()
        path = self._require_features(video_id, key)
        missing = self.missing_ranges(video_id, key)
        if missing:
            raise StoreError(
                f"{self.path}: cannot mark {video_id}/{key} complete, frames {missing[:3]} are "
                "not written; rerun the extraction to fill them"
            )
        self._b.set_attrs(path, {"complete": True})
        self._b.flush()

    def read_features(
        self,
        video_id: str,
        key: str | None = None,
        allow_incomplete: bool = False,
        frames: slice | None = None,
    ) -> Features:
        """Read a video's features.

        Parameters
        ----------
        video_id : str
            The video.
        key : str, optional
            ``"<model>/<tokens>"``; may be left out when the video has one feature set.
        allow_incomplete : bool
            Return an unfinished set (unwritten frames read as zeros; see ``done_chunks``).
        frames : slice, optional
            Frame range to read (default all).

        Returns
        -------
        Features
            ``values`` (N, *feature_shape) float32 and ``provenance``.

        Raises
        ------
        StoreError
            No such video or features, several feature sets and no key, or an incomplete set.
        """
        if key is None:
            keys = self.feature_keys(video_id)
            if len(keys) != 1:
                raise StoreError(
                    f"{self.path}: video {video_id!r} has {len(keys)} feature sets "
                    f"({', '.join(keys) or 'none'}); pass key= to choose one"
                )
            key = keys[0]
        path = self._require_features(video_id, key)
        attrs = self._b.attrs(path)
        complete = bool(attrs.get("complete"))
        if not complete and not allow_incomplete:
            missing = self.missing_ranges(video_id, key)
            raise StoreError(
                f"{self.path}: features {key!r} of video {video_id!r} are incomplete (frames "
                f"{missing[:3]}{' ...' if len(missing) > 3 else ''} missing, or the run did not "
                "finish); rerun `prism-science extract` to complete them, or pass "
                "allow_incomplete=True"
            )
        array = self._b.node(f"{path}/values")
        values = np.asarray(array[frames if frames is not None else slice(None)], np.float32)
        return Features(video_id=video_id, key=key, values=values,
                        provenance=attrs.get("provenance", {}), complete=complete,
                        done_chunks=self.done_chunks(video_id, key),
                        chunk_frames=int(attrs["chunk_frames"]))

    def delete_features(self, video_id: str, key: str) -> None:
        """Remove one feature set of a video."""
        self._require_writable()
        with self._b.batch():
            self._b.delete(self._feature_path(video_id, key))

    # ------------------------------------------------------------------ generic items
    def _item_path(self, video_id: str | None, relpath: str) -> str:
        parts = [p for p in relpath.split("/") if p]
        if not parts or any(p in (".", "..") or p.startswith("__") or p.lower() == _ZARR_META
                            or "\\" in p or any(ord(ch) < 32 for ch in p) for p in parts):
            raise StoreError(f"invalid item path {relpath!r}; use names like 'labels/manual'")
        if video_id is None:
            return "shared/" + "/".join(parts)
        if parts[0] in _RESERVED:
            raise StoreError(
                f"item path {relpath!r} starts with reserved name {parts[0]!r}; choose another"
            )
        return f"{self._require_video(video_id)}/" + "/".join(parts)

    def _clear_item(self, video_id: str | None, relpath: str) -> str:
        """Path of an item about to be (re)written; refuses to replace or nest in groups/items."""
        path = self._item_path(video_id, relpath)
        parts = path.split("/")
        for depth in range(2, len(parts)):
            parent = "/".join(parts[:depth])
            if self._b.exists(parent) and not self._b.is_group(parent):
                raise StoreError(
                    f"{self.path}: cannot write {path!r}: {parent!r} is an array or document, "
                    "not a group; choose another path"
                )
        if self._b.exists(path):
            if self._b.is_group(path):
                raise StoreError(
                    f"{self.path}: cannot write {path!r}: it is a group holding "
                    f"{', '.join(self._b.children(path)) or 'nothing'}; choose another path"
                )
            self._b.delete(path)
        return path

    def has_item(self, video_id: str | None, relpath: str) -> bool:
        """Whether an array or JSON document exists at ``relpath``."""
        return self._b.exists(self._item_path(video_id, relpath))

    def delete_item(self, video_id: str | None, relpath: str) -> None:
        """Remove an array, JSON document or group of items (nothing happens when absent)."""
        self._require_writable()
        path = self._item_path(video_id, relpath)
        if self._b.exists(path):
            with self._b.batch():
                self._b.delete(path)

    def list_items(self, video_id: str | None, relpath: str = "") -> list[str]:
        """Names directly under ``relpath`` (arrays, documents and groups)."""
        base = ("shared" if video_id is None else self._require_video(video_id))
        path = f"{base}/{relpath.strip('/')}".rstrip("/")
        if not self._b.exists(path) or not self._b.is_group(path):
            return []
        return [c for c in self._b.children(path) if c not in _RESERVED or video_id is None]

    def write_array(self, video_id: str | None, relpath: str, array: np.ndarray,
                    attrs: dict[str, Any] | None = None) -> None:
        """Write (or replace) a numeric array with JSON-able attributes.

        Parameters
        ----------
        video_id : str or None
            The video it belongs to, or None for store-level items (under ``shared/``).
        relpath : str
            ``'/'``-separated path, e.g. ``"predictions/probe1"``.
        array : np.ndarray
            Any shape; numeric or bool dtype (strings and objects: use :meth:`write_json`).
        attrs : dict, optional
            Stored with the array.
        """
        self._require_writable()
        array = np.asarray(array)
        if array.dtype.kind not in "biuf":
            raise StoreError(
                f"write_array({relpath!r}): dtype {array.dtype} is not numeric; store text and "
                "records with write_json"
            )
        chunks = tuple(max(1, s) for s in array.shape)
        if array.ndim:
            chunks = (max(1, min(array.shape[0], max(1, (16 << 20) // max(1, array[:1].nbytes)))),
                      *chunks[1:])
        with self._b.batch():  # HDF5: the old item is replaced by the new one at once
            path = self._clear_item(video_id, relpath)
            self._b.create_array(path, array.shape, chunks, array.dtype, data=array)
            self._b.set_attrs(path, {"kind": "array", "attrs": attrs or {}})

    def read_array(self, video_id: str | None, relpath: str) -> np.ndarray:
        """Read an array written by :meth:`write_array`."""
        path = self._item_path(video_id, relpath)
        if not self._b.exists(path) or self._b.is_group(path):
            raise StoreError(f"{self.path}: no array at {path!r}")
        return np.asarray(self._b.node(path)[...])

    def read_array_attrs(self, video_id: str | None, relpath: str) -> dict[str, Any]:
        """The attributes given to :meth:`write_array`."""
        path = self._item_path(video_id, relpath)
        if not self._b.exists(path):
            raise StoreError(f"{self.path}: no array at {path!r}")
        return self._b.attrs(path).get("attrs", {})

    def write_json(self, video_id: str | None, relpath: str, obj: Any) -> None:
        """Write (or replace) a JSON document, stored as UTF-8 bytes in a uint8 array."""
        self._require_writable()
        data = np.frombuffer(json.dumps(jsonable(obj)).encode("utf-8"), dtype=np.uint8)
        with self._b.batch():  # HDF5: the old document is replaced by the new one at once
            path = self._clear_item(video_id, relpath)
            self._b.create_array(path, data.shape, (max(1, data.shape[0]),), np.uint8,
                                 data=data)
            self._b.set_attrs(path, {"kind": "json"})

    def read_json(self, video_id: str | None, relpath: str) -> Any:
        """Read a JSON document written by :meth:`write_json`."""
        path = self._item_path(video_id, relpath)
        if not self._b.exists(path) or self._b.attrs(path).get("kind") != "json":
            raise StoreError(f"{self.path}: no JSON document at {path!r}")
        return json.loads(np.asarray(self._b.node(path)[...], np.uint8).tobytes().decode())


def open_store(path: str | os.PathLike[str], mode: str = "a",
               format: str | None = None) -> FeatureStore:
    """Open (or create) a feature store.

    Parameters
    ----------
    path : str or PathLike
        ``.h5`` / ``.hdf5`` -> HDF5 file; anything else -> Zarr v3 folder.
    mode : str
        ``"r"`` read-only, ``"r+"`` write an existing store, ``"a"`` create or write,
        ``"w"`` create anew (deletes an existing store at the path).
    format : str, optional
        ``"zarr"`` or ``"hdf5"`` to override the choice by suffix.

    Returns
    -------
    FeatureStore

    Raises
    ------
    StoreError
        Missing store in mode r/r+, a path holding something else, or another schema version.
    """
    return FeatureStore(path, mode=mode, format=format)
