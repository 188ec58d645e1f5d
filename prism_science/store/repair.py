"""Recover what a damaged feature store still holds: ``prism-science store repair``.

A store damaged by a kill, a full disk or a bad sector (an HDF5 file whose links point at
broken objects, a file cut short, a Zarr video whose record was never finished, a chunk file that
no longer decodes) is read unit by unit, and every unit that reads back whole is kept:

- a **video** needs its record (the ``video`` attributes and its timestamps, one per frame);
  without it the video is lost (its features cannot be placed on frames);
- a **feature set** needs its attributes and ``chunk_done``; chunks whose values do not read
  back are marked not done (``complete`` is cleared), so ``prism-science extract`` recomputes
  only those chunks;
- every other **item** (labels, predictions, GUI session, ``shared/``) is kept when its
  attributes and data read back (JSON documents must parse), dropped otherwise.

HDF5 is repaired into a new file (h5py cannot delete a broken link, and a file whose metadata
is damaged is not safe to write again); Zarr in place (broken nodes deleted, chunks reset),
or into a new store with ``out=``. A file cut short (a truncated HDF5 file) is read from a copy
padded to the length its superblock records; chunks lying in the missing tail count as lost.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import StoreError
from prism_science.store.backends import ZarrBackend
from prism_science.store.feature_store import (
    SCHEMA_VERSION,
    check_video_id,
    open_store,
    store_format,
)
from prism_science.store.hdf5 import HDF5Backend, data_folder

__all__ = ["RepairReport", "VideoRepair", "repair_store"]

logger = logging.getLogger(__name__)

# What reading a damaged node can raise: h5py turns HDF5 errors into OSError, RuntimeError,
# KeyError or ValueError; zarr and JSON add ValueError/TypeError; a short array IndexError.
_DAMAGE = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError)
_RECORD_FIELDS = ("content_hash", "n_frames", "fps")


@dataclass
class VideoRepair:
    """What became of one video.

    Attributes
    ----------
    video_id : str
    status : str
        ``"recovered"`` (everything read back whole), ``"partial"`` (the record and some
        items kept, something dropped or reset: see ``notes``) or ``"lost"``.
    notes : list of str
        One line per dropped item, reset chunk range or incomplete feature set.
    """

    video_id: str
    status: str
    notes: list[str] = field(default_factory=list)


@dataclass
class RepairReport:
    """The outcome of :func:`repair_store`.

    Attributes
    ----------
    source, output : Path
        The damaged store and the repaired one (the same path for a Zarr store repaired in
        place).
    in_place : bool
    videos : list of VideoRepair
        One per video found, sorted by id.
    shared_notes : list of str
        Store-level items (``shared/``) that were dropped.
    """

    source: Path
    output: Path
    in_place: bool
    videos: list[VideoRepair] = field(default_factory=list)
    shared_notes: list[str] = field(default_factory=list)

    def ids(self, status: str) -> list[str]:
        """Ids of the videos with ``status`` (``recovered``, ``partial``, ``lost``)."""
        return [v.video_id for v in self.videos if v.status == status]

    @property
    def everything_recovered(self) -> bool:
        """Whether nothing was lost, dropped or reset."""
        return all(v.status == "recovered" for v in self.videos) and not self.shared_notes

    def lines(self) -> list[str]:
        """A human-readable report, one line per video and note."""
        where = "in place" if self.in_place else f"into {self.output}"
        out = [f"{self.source}: repaired {where}: {len(self.ids('recovered'))} video(s) "
               f"recovered whole, {len(self.ids('partial'))} in part, "
               f"{len(self.ids('lost'))} lost"]
        for video in self.videos:
            out.append(f"  {video.status:<9} {video.video_id}")
            out.extend(f"            {note}" for note in video.notes)
        out.extend(f"  shared    {note}" for note in self.shared_notes)
        return out


def repair_store(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None,
                 ) -> RepairReport:
    """Recover every complete video (and every readable item) of a damaged store.

    Parameters
    ----------
    path : str or PathLike
        The damaged store: an HDF5 file or a Zarr folder.
    out : str or PathLike, optional
        A new store to write what is recovered into (its format by suffix; it must not
        exist). Default: ``NAME.repaired.h5`` beside an HDF5 file; a Zarr store is repaired in
        place.

    Returns
    -------
    RepairReport
        What was recovered, in part or not at all.

    Raises
    ------
    StoreError
        No store at ``path``, ``out`` exists already, or the store cannot be opened at all
        (its root is unreadable).
    """
    path = Path(path)
    fmt = store_format(path)
    if not path.exists():
        raise StoreError(f"{path}: no store there; check the path")
    if out is None and fmt == "hdf5":
        out = path.with_name(f"{path.stem}.repaired{path.suffix}")
    if out is not None:
        out = Path(out)
        if out.exists():
            raise StoreError(f"{out}: exists already; give a new path for the repaired store "
                             "(or delete that one)")
        if store_format(out) == "hdf5" and data_folder(out).exists():
            raise StoreError(f"{data_folder(out)}: exists already (the data folder of an HDF5 "
                             "store at that path); give a new path, or delete that folder")
        if out.resolve() == path.resolve():
            raise StoreError(f"{out}: is the damaged store itself; give a new path")
    scratch = (out or path).parent  # a padded copy of a truncated file goes beside the output
    with _SourceOpener(path, fmt, writable=out is None, scratch=scratch) as src:
        if out is None:
            report = RepairReport(path, path, True)
            _repair_in_place(src, report)
        else:
            report = RepairReport(path, out, False)
            _copy_into(src, out, report)
    for line in report.lines():
        logger.debug("%s", line)
    return report


# ---------------------------------------------------------------------------- opening
class _Source:
    """Read access to the damaged store: a backend plus, for a truncated HDF5 file, the
    length the file really has (chunks beyond it are lost)."""

    def __init__(self, backend: ZarrBackend | HDF5Backend, real_eof: int | None) -> None:
        self.b = backend
        self.real_eof = real_eof


class _SourceOpener:
    """``with _SourceOpener(...) as source``: the damaged store opened for reading (Zarr: and
    for writing when repaired in place); a temporary padded copy is removed at the end."""

    def __init__(self, path: Path, fmt: str, writable: bool, scratch: Path) -> None:
        self.path, self.fmt, self.writable, self.scratch = path, fmt, writable, scratch
        self.padded: Path | None = None
        self.source: _Source | None = None

    def __enter__(self) -> _Source:
        if self.fmt == "zarr":
            if not (self.path / "zarr.json").is_file():
                raise StoreError(f"{self.path}: not a Zarr store (no zarr.json); nothing to "
                                 "repair: rerun the extraction into it to start it anew")
            self.source = _Source(ZarrBackend(self.path, "r+" if self.writable else "r"), None)
            return self.source
        try:
            self.source = _Source(HDF5Backend.open(self.path, "r"), None)
        except StoreError as exc:
            found = re.search(r"eof = (\d+).*stored_eof = (\d+)", str(exc.__cause__ or exc))
            if found is None:
                raise StoreError(f"{self.path}: cannot be opened at all ({exc}); nothing can "
                                 "be recovered from it") from exc
            real, stored = int(found.group(1)), int(found.group(2))
            logger.warning("%s: the file is cut short (%d of %d bytes); reading a padded copy",
                           self.path, real, stored)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".padded.h5",
                                       dir=self.scratch)
            os.close(fd)
            self.padded = Path(tmp)
            shutil.copyfile(self.path, self.padded)
            os.truncate(self.padded, stored)
            self.source = _Source(HDF5Backend(self.padded, "r",
                                              data_dir=data_folder(self.path)), real)
        return self.source

    def __exit__(self, *exc: object) -> None:
        if self.source is not None:
            try:
                self.source.b.close()
            except _DAMAGE + (StoreError,) as error:
                logger.debug("%s: closing the damaged store: %s", self.path, error)
        if self.padded is not None:
            self.padded.unlink(missing_ok=True)


# ---------------------------------------------------------------------------- reading units
def _children(src: _Source, path: str) -> list[str]:
    try:
        return src.b.children(path) if src.b.exists(path) else []
    except _DAMAGE as exc:
        raise _Unreadable(f"its member list does not read ({_why(exc)})") from exc


class _Unreadable(Exception):  # noqa: N818 - internal signal, always caught here
    """A unit that does not read back whole; the message says what and why."""


def _why(exc: BaseException) -> str:
    """The low-level reason of a read failure (the backend's StoreError wraps it)."""
    return str(exc.__cause__) if isinstance(exc, StoreError) and exc.__cause__ else str(exc)


def _read_attrs(src: _Source, path: str) -> dict[str, Any]:
    try:
        return src.b.attrs(path)
    except _DAMAGE as exc:
        raise _Unreadable(f"its attributes do not read ({_why(exc)})") from exc


def _lost_rows(src: _Source, node: Any) -> list[int] | None:
    """First rows of the chunks of an HDF5 dataset that lie beyond the real end of a truncated
    file (None: not a truncated HDF5 file)."""
    if src.real_eof is None:
        return None
    ident = node.id
    if node.chunks is None:
        offset = ident.get_offset()
        return [0] if offset is None or offset + ident.get_storage_size() > src.real_eof else []
    lost = []
    for index in range(ident.get_num_chunks()):
        info = ident.get_chunk_info(index)
        if info.byte_offset + info.size > src.real_eof:
            lost.append(int(info.chunk_offset[0]) if info.chunk_offset else 0)
    return lost


def _read_array(src: _Source, path: str) -> np.ndarray:
    try:
        node = src.b.node(path)
        if _lost_rows(src, node):
            raise _Unreadable(f"{path.rsplit('/', 1)[-1]!r} lies partly beyond the end of the "
                              "truncated file")
        return np.asarray(node[...])
    except _DAMAGE as exc:
        raise _Unreadable(f"{path.rsplit('/', 1)[-1]!r} does not read ({_why(exc)})") from exc


def _read_item(src: _Source, path: str) -> tuple[str, Any, dict[str, Any]]:
    """(kind, value, attrs) of a JSON document or array written by the store."""
    attrs = _read_attrs(src, path)
    kind = attrs.get("kind")
    data = _read_array(src, path)
    if kind == "json":
        try:
            return "json", json.loads(np.asarray(data, np.uint8).tobytes().decode("utf-8")), attrs
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _Unreadable(f"the JSON document does not parse ({exc})") from exc
    if kind == "array":
        return "array", data, attrs
    raise _Unreadable("no 'kind' attribute (an item interrupted while being written)")


def _walk_items(src: _Source, base: str, skip: tuple[str, ...] = ()) -> Iterator[str]:
    """Paths of the leaves (arrays) under ``base``; an unreadable group yields its path with a
    trailing ``/`` so the caller reports it."""
    try:
        names = _children(src, base)
    except _Unreadable:
        yield base + "/"
        return
    for name in names:
        if name in skip:
            continue
        path = f"{base}/{name}"
        try:
            group = src.b.is_group(path)
        except _DAMAGE:
            yield path
            continue
        if group:
            yield from _walk_items(src, path)
        else:
            yield path


@dataclass
class _FeatureSet:
    key: str
    attrs: dict[str, Any]
    done: np.ndarray  # (n_chunks,) bool, after resetting unreadable chunks
    bad_chunks: list[int]


def _check_features(src: _Source, path: str, key: str, n_frames: int) -> _FeatureSet:
    attrs = _read_attrs(src, path)
    if "chunk_frames" not in attrs or "provenance" not in attrs:
        raise _Unreadable("never finished being created (rerun extract)")
    cf = int(attrs["chunk_frames"])
    done = _read_array(src, f"{path}/chunk_done").astype(bool)
    try:
        values = src.b.node(f"{path}/values")
        shape = tuple(values.shape)
    except _DAMAGE as exc:
        raise _Unreadable(f"the values array does not open ({_why(exc)})") from exc
    if shape[0] != n_frames or len(done) != -(-n_frames // cf):
        raise _Unreadable(f"{shape[0]} frames and {len(done)} chunk markers "
                          f"for a video of {n_frames} frames")
    lost = set(_lost_rows(src, values) or [])
    bad = []
    for index in np.flatnonzero(done):
        start = int(index) * cf
        if any(start <= row < start + cf for row in lost):
            bad.append(int(index))
            continue
        try:
            block = np.asarray(values[start:min(n_frames, start + cf)])
        except _DAMAGE:
            bad.append(int(index))
            continue
        if not np.isfinite(block).all():
            bad.append(int(index))
    done = done.copy()
    done[bad] = False
    return _FeatureSet(key, attrs, done, bad)


def _frames(indices: list[int], cf: int, n_frames: int) -> str:
    spans = [f"{i * cf}..{min(n_frames, (i + 1) * cf) - 1}" for i in indices[:4]]
    return ", ".join(spans) + (" ..." if len(indices) > 4 else "")


@dataclass
class _VideoPlan:
    video_id: str
    record: dict[str, Any]
    video_attrs: dict[str, Any]
    timestamps: np.ndarray
    features: list[_FeatureSet]
    items: list[tuple[str, str, Any, dict[str, Any]]]  # relpath, kind, value, attrs
    drop: list[str]  # backend paths to delete (in place)
    report: VideoRepair


def _plan_video(src: _Source, video_id: str) -> _VideoPlan | VideoRepair:
    base = f"videos/{video_id}"
    try:
        check_video_id(video_id)
        video_attrs = _read_attrs(src, base)
        record = video_attrs.get("video")
        if not isinstance(record, dict) or any(f not in record for f in _RECORD_FIELDS):
            raise _Unreadable("its record was never finished (killed while being added); "
                              "rerun extract for it")
        n_frames = int(record["n_frames"])
        timestamps = _read_array(src, f"{base}/timestamps").astype(np.float64)
        if timestamps.shape != (n_frames,):
            raise _Unreadable(f"{timestamps.shape[0]} timestamps for {n_frames} frames")
    except (_Unreadable, StoreError) as exc:
        return VideoRepair(video_id, "lost", [str(exc)])
    report = VideoRepair(video_id, "recovered")
    plan = _VideoPlan(video_id, record, video_attrs, timestamps, [], [], [], report)
    feature_base = f"{base}/features"
    try:
        models = _children(src, feature_base)
    except _Unreadable as exc:
        models = []
        report.notes.append(f"features: dropped, {exc}")
        plan.drop.append(feature_base)
    for model in models:
        try:
            tokens = _children(src, f"{feature_base}/{model}")
        except _Unreadable as exc:
            report.notes.append(f"features {model}: dropped, {exc}")
            plan.drop.append(f"{feature_base}/{model}")
            continue
        for token in tokens:
            key, path = f"{model}/{token}", f"{feature_base}/{model}/{token}"
            try:
                fs = _check_features(src, path, key, n_frames)
            except _Unreadable as exc:
                report.notes.append(f"features {key}: dropped, {exc}")
                plan.drop.append(path)
                continue
            plan.features.append(fs)
            cf = int(fs.attrs["chunk_frames"])
            if fs.bad_chunks:
                report.notes.append(f"features {key}: frames {_frames(fs.bad_chunks, cf, n_frames)}"
                                    " did not read back; marked to be recomputed (rerun extract)")
            elif not fs.attrs.get("complete"):
                missing = int((~fs.done).sum())
                report.notes.append(f"features {key}: incomplete ({missing} chunk(s) of {cf} "
                                    "frames never written); kept, rerun extract to finish it")
    for path in _walk_items(src, base, skip=("features", "timestamps")):
        relpath = path[len(base) + 1:].rstrip("/")
        try:
            if path.endswith("/"):
                raise _Unreadable("the group does not read")
            kind, value, attrs = _read_item(src, path)
        except _Unreadable as exc:
            report.notes.append(f"{relpath}: dropped, {exc}")
            plan.drop.append(path.rstrip("/"))
            continue
        plan.items.append((relpath, kind, value, attrs))
    lost_something = any("dropped" in n or "recomputed" in n for n in report.notes)
    report.status = "partial" if lost_something else "recovered"
    return plan


def _plan_shared(src: _Source, notes: list[str]) -> tuple[list, list[str]]:
    items, drop = [], []
    for path in _walk_items(src, "shared"):
        relpath = path[len("shared/"):].rstrip("/")
        try:
            if path.endswith("/"):
                raise _Unreadable("the group does not read")
            kind, value, attrs = _read_item(src, path)
        except _Unreadable as exc:
            notes.append(f"{relpath}: dropped, {exc}")
            drop.append(path.rstrip("/"))
            continue
        items.append((relpath, kind, value, attrs))
    return items, drop


def _video_ids(src: _Source) -> list[str]:
    try:
        root = src.b.attrs("")
    except _DAMAGE as exc:
        raise StoreError(f"the root of the store does not read ({_why(exc)}); nothing can be "
                         "recovered from it") from exc
    meta = root.get("prism_science")
    if isinstance(meta, dict) and meta.get("schema_version") not in (None, SCHEMA_VERSION):
        raise StoreError(f"store schema version {meta.get('schema_version')}; this prism-science "
                         f"repairs version {SCHEMA_VERSION} stores")
    try:
        return _children(src, "videos")
    except _Unreadable as exc:
        raise StoreError(f"the list of videos does not read ({exc}); nothing can be recovered "
                         "from it") from exc


# ---------------------------------------------------------------------------- writing
def _copy_into(src: _Source, out: Path, report: RepairReport) -> None:
    """Write every readable unit into a new store at ``out`` (via a temporary path)."""
    video_ids = _video_ids(src)
    suffix = "".join(out.suffixes[-1:])
    tmp = out.with_name(f".{out.name}.repair-tmp{suffix}")
    _remove(tmp)
    try:
        with open_store(tmp, mode="w", format=store_format(out)) as dst:
            for video_id in video_ids:
                plan = _plan_video(src, video_id)
                if isinstance(plan, VideoRepair):
                    report.videos.append(plan)
                    continue
                _write_video(dst, src, plan)
                report.videos.append(plan.report)
            items, _ = _plan_shared(src, report.shared_notes)
            for relpath, kind, value, attrs in items:
                _write_item(dst, None, relpath, kind, value, attrs)
        if store_format(out) == "hdf5":  # its data files first, then the file naming them
            data_folder(tmp).replace(data_folder(out))
        os.replace(tmp, out)
    except BaseException:
        _remove(tmp)
        if store_format(out) == "hdf5":
            _remove(data_folder(tmp))
        raise
    if store_format(out) == "hdf5":  # its links named the temporary folder: point them home
        open_store(out, "r+").close()


def _write_item(dst: Any, video_id: str | None, relpath: str, kind: str, value: Any,
                attrs: dict[str, Any]) -> None:
    if kind == "json":
        dst.write_json(video_id, relpath, value)
    else:
        dst.write_array(video_id, relpath, value, attrs.get("attrs") or {})


def _write_video(dst: Any, src: _Source, plan: _VideoPlan) -> None:
    record = plan.record
    dst.put_video(plan.video_id, source_path=record.get("source_path", ""),
                  relative_path=record.get("relative_path", ""),
                  size_bytes=int(record.get("size_bytes", 0)),
                  content_hash=str(record["content_hash"]), timestamps=plan.timestamps,
                  fps=float(record["fps"]), width=int(record.get("width", 0)),
                  height=int(record.get("height", 0)))
    dst._b.set_attrs(f"videos/{plan.video_id}", plan.video_attrs)
    n_frames = plan.timestamps.shape[0]
    for fs in plan.features:
        path = f"videos/{plan.video_id}/features/{fs.key}"
        values = src.b.node(f"{path}/values")  # opened (and every done chunk read) before
        cf = int(fs.attrs["chunk_frames"])
        layout = {"shard_frames": int(fs.attrs["shard_frames"])} \
            if fs.attrs.get("shard_frames") else {}  # stores written since Zarr sharding
        dst.create_features(plan.video_id, fs.key, tuple(values.shape[1:]),
                            fs.attrs["provenance"], chunk_frames=cf, **layout)
        for index in np.flatnonzero(fs.done):
            start = int(index) * cf
            block = np.asarray(values[start:min(n_frames, start + cf)], np.float32)
            dst.write_chunks(plan.video_id, fs.key, start, block)
        dst._b.set_attrs(path, {**fs.attrs, "complete": bool(fs.attrs.get("complete"))
                                and bool(fs.done.all())})
    for relpath, kind, value, attrs in plan.items:
        _write_item(dst, plan.video_id, relpath, kind, value, attrs)


def _repair_in_place(src: _Source, report: RepairReport) -> None:
    """Zarr: delete the units that do not read, reset unreadable chunks, drop leftovers."""
    for leftover in report.source.rglob("*.partial"):
        leftover.unlink(missing_ok=True)
    b = src.b
    for video_id in _video_ids(src):
        plan = _plan_video(src, video_id)
        if isinstance(plan, VideoRepair):
            report.videos.append(plan)
            _delete(b, f"videos/{video_id}")
            continue
        report.videos.append(plan.report)
        for path in plan.drop:
            _delete(b, path)
        for fs in plan.features:
            if not fs.bad_chunks:
                continue
            path = f"videos/{video_id}/features/{fs.key}"
            _rewrite_bad_chunks(b.node(f"{path}/values"), fs)
            b.node(f"{path}/chunk_done")[:] = fs.done.astype(np.uint8)
            b.set_attrs(path, {"complete": False})
    _, drop = _plan_shared(src, report.shared_notes)
    for path in drop:
        _delete(b, path)


def _rewrite_bad_chunks(values: Any, fs: _FeatureSet) -> None:
    """Zarr: rewrite each storage file (a chunk, or a shard of whole chunks) holding a chunk
    that does not read, whole -- the good chunks as read, zeros for the bad ones -- so that no
    write has to read the damaged file first. Chunks that fail now are marked bad too."""
    cf = int(fs.attrs["chunk_frames"])
    unit = int(fs.attrs.get("shard_frames") or cf)  # frames per storage file
    n_frames = values.shape[0]
    bad = set(fs.bad_chunks)
    for first in sorted({index * cf // unit * unit for index in fs.bad_chunks}):
        stop = min(n_frames, first + unit)
        block = np.zeros((stop - first, *values.shape[1:]), np.float32)
        for index in range(first // cf, -(-stop // cf)):
            a, b = index * cf, min(stop, (index + 1) * cf)
            if index in bad or not fs.done[index]:
                continue
            try:
                block[a - first:b - first] = values[a:b]
            except _DAMAGE:
                bad.add(index)
        values[first:stop] = block
    fs.bad_chunks[:] = sorted(bad)
    fs.done[sorted(bad)] = False


def _delete(b: Any, path: str) -> None:
    try:
        b.delete(path)
    except _DAMAGE + (StoreError,):
        target = Path(b.path, *path.split("/"))  # Zarr: a folder per node
        shutil.rmtree(target, ignore_errors=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
