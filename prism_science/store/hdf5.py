"""The HDF5 feature store: a main file replaced atomically, feature arrays in data files.

See :class:`HDF5Backend` and docs/store.md ("HDF5 on disk"). The node interface is the one of
:mod:`prism_science.store.backends`.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import io
import json
import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from prism_science.errors import StoreError
from prism_science.store.backends import (
    READ_ONLY_ERRNOS,
    check_writable_location,
    damaged,
    errno_of,
    jsonable,
    write_error,
)
from prism_science.store.lock import LOCK_NAME, WriterLock

__all__ = ["LAYOUT", "LAYOUT_ATTR", "HDF5Backend", "atomic_write", "data_folder"]

logger = logging.getLogger(__name__)

LAYOUT_ATTR = "prism_science_layout"
"""Root attribute of an HDF5 main file in the kill-safe layout (absent: a single-file store)."""
LAYOUT = "main+data-files/1"
_DATA_ARRAYS = ("values", "chunk_done")
_FEATURE_SET = re.compile(r"^videos/[^/]+/features/[^/]+/[^/]+$")


def data_folder(path: str | os.PathLike[str]) -> Path:
    """The folder of an HDF5 store's data files: ``X.h5.d`` beside ``X.h5``."""
    path = Path(path)
    return path.with_name(path.name + ".d")


def _fsync_folder(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on folders
        logger.debug("%s: fsync of the folder: %s", folder, exc)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | memoryview) -> None:
    """Replace ``path`` by ``data`` atomically: a temporary file in the same folder, written,
    fsynced, renamed over ``path``, then the folder fsynced. A kill at any moment leaves either
    the old file or the new one (and at worst a ``.NAME.*.tmp`` file, removed later)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_folder(path.parent)


def _new_array(h5file: Any, name: str, shape: tuple[int, ...], dtype: Any,
               data: np.ndarray | None) -> Any:
    """A contiguous dataset allocated at creation: after its file is flushed, writing values
    changes only their own bytes (never HDF5's metadata), so a kill mid-write cannot damage
    what was written before.

    Markers (``chunk_done``) are written as zeros at once; ``values`` are not (the file is new:
    its unwritten part is a hole that reads as zeros and takes no disk space until written).
    """
    import h5py

    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER if name == "values" and data is None
                       else h5py.h5d.FILL_TIME_ALLOC)
    if data is not None:
        return h5file.create_dataset(name, data=data, dcpl=dcpl)
    return h5file.create_dataset(name, shape=shape, dtype=dtype, fillvalue=0, dcpl=dcpl)


class HDF5Backend:
    """Node access on an HDF5 store; attribute values are stored as JSON strings.

    The kill-safe layout (docs/store.md): ``X.h5`` (the *main file*) holds the tree, every
    attribute, timestamps, labels and other items, and is never written in place: a writer
    reads it into memory, changes it there and replaces ``X.h5`` atomically at each commit (one
    per change, or per :meth:`batch`). Feature arrays (``values``, ``chunk_done``), which grow
    during extraction, live in files of their own in ``X.h5.d/``, one per feature set,
    referenced from the main file by relative external links; a kill can only damage the file
    of the set being written, which is not complete and is started anew by the rerun.

    Writers hold :class:`~prism_science.store.lock.WriterLock` on ``X.h5.d/writer.lock``;
    handles opened for writing in one process share one backend. A single-file store written by
    an earlier version is read as it is, and moved to this layout on its first write (its file
    becomes, by a hard link, the data file of its complete feature sets: nothing is copied).
    """

    _writers: dict[str, HDF5Backend] = {}
    """Backends open for writing in this process, by resolved main-file path."""

    @classmethod
    def open(cls, path: Path, mode: str) -> HDF5Backend:
        """A backend on ``path``; writers in one process share the one already open."""
        if mode == "r":
            return cls(path, mode)
        key = str(path.resolve())
        shared = cls._writers.get(key)
        if shared is not None and shared._pid == os.getpid() and shared._users > 0:
            if mode == "w":
                raise StoreError(f"{path}: is open for writing in this process; close it "
                                 "before recreating it (mode 'w')")
            shared._users += 1
            return shared
        backend = cls(path, mode)
        cls._writers[key] = backend
        return backend

    def __init__(self, path: Path, mode: str, data_dir: Path | None = None) -> None:
        """Open ``path`` in ``mode``; ``data_dir``: read the data files from there instead
        of ``X.h5.d`` (a copy of a main file read in place of the original)."""
        import h5py

        if mode in ("r", "r+") and not path.is_file():
            raise StoreError(f"{path}: no HDF5 store there; check the path, or rerun the "
                             "extraction if it was interrupted while creating it")
        if path.is_dir():
            raise StoreError(f"{path}: is a folder; an HDF5 store is a file (or use Zarr)")
        if path.exists() and mode in ("r", "r+", "a") and not h5py.is_hdf5(path):
            raise StoreError(f"{path}: is not an HDF5 file; give a new path")
        self.path = path
        self.mode = mode
        self.data_dir = data_folder(path) if data_dir is None else data_dir
        self._failed: str | None = None
        self._data: dict[str, tuple[Any, bool]] = {}  # data file name -> (h5py file, writable)
        self._dirty: set[str] = set()  # data files written since their last fsync
        self._new_data: dict[str, str] = {}  # feature-set path -> data file made by this writer
        self._depth = 0  # open batch() blocks
        self._pending = False  # changes in memory not yet committed
        self._users = 1
        self._pid = os.getpid()
        self._mutex = threading.RLock()
        self._lock: WriterLock | None = None
        self._bio: io.BytesIO | None = None
        if mode == "r":
            self._file = self._open_file(lambda: h5py.File(path, "r", locking=False))
            return
        check_writable_location(path)
        self._lock = WriterLock.acquire(self.data_dir / LOCK_NAME, path)
        try:
            try:
                self._open_for_writing(mode)
            except (OSError, RuntimeError, KeyError, ValueError) as exc:
                if isinstance(exc, OSError) and errno_of(exc) in (
                        errno.ENOSPC, errno.EDQUOT, *READ_ONLY_ERRNOS):
                    raise write_error(path, exc, "the store") from exc
                raise damaged(path, "", exc) from exc
        except BaseException:
            self._close_data()
            self._lock.release()
            raise

    def _open_file(self, opener: Any) -> Any:
        try:
            return opener()
        except OSError as exc:
            if errno_of(exc) in (errno.ENOSPC, errno.EDQUOT, *READ_ONLY_ERRNOS):
                raise write_error(self.path, exc, "the HDF5 file") from exc
            raise StoreError(
                f"{self.path}: cannot open the HDF5 store ({exc}); a file damaged by a crash "
                "can be recovered with `prism-science store repair`") from exc

    def _open_for_writing(self, mode: str) -> None:
        import h5py

        legacy = False
        if mode != "w" and self.path.exists():
            try:
                image = self.path.read_bytes()
            except OSError as exc:
                raise write_error(self.path, exc, "the HDF5 file (reading it)") from exc
            self._bio = io.BytesIO(image)
            self._file = self._open_file(lambda: h5py.File(self._bio, "r+"))
            legacy = LAYOUT_ATTR not in self._file.attrs and (
                bool(self._file.attrs) or bool(list(self._file.keys())))
        else:
            self._bio = io.BytesIO()
            self._file = h5py.File(self._bio, "w", fs_strategy="fsm", fs_persist=True)
            self._pending = True  # mode "w" empties the store at the first commit
        if legacy:
            self._migrate()
        elif LAYOUT_ATTR not in self._file.attrs:
            self._file.attrs[LAYOUT_ATTR] = json.dumps(LAYOUT)
        self._relink()
        if self._pending and mode == "w":
            self._commit()
        self._sweep()

    # ------------------------------------------------------------------ layout
    def _link_name(self, name: str) -> str:
        return f"{self.data_dir.name}/{name}"

    def _external_links(self) -> list[tuple[str, Any]]:
        import h5py

        found: list[tuple[str, Any]] = []

        def visit(name: str, link: Any) -> None:
            if isinstance(link, h5py.ExternalLink):
                found.append((name, link))
        self._file.visititems_links(visit)
        return found

    def _relink(self) -> None:
        """Point the external links at this store's data folder (after a rename), so that
        tools following HDF5 links themselves find the data too."""
        import h5py

        for name, link in self._external_links():
            wanted = self._link_name(PurePosixPath(link.filename).name)
            if link.filename != wanted:
                del self._file[name]
                self._file[name] = h5py.ExternalLink(wanted, link.path)
                self._pending = True

    def _sweep(self) -> None:
        """Delete data files no committed main file refers to (left by a kill or replaced),
        and temporary main files of killed commits."""
        if self._pending or not self.data_dir.is_dir():
            return
        used = {PurePosixPath(link.filename).name for _, link in self._external_links()}
        for item in self.data_dir.glob("*.h5"):
            if item.name not in used and item.name not in self._data:
                logger.debug("%s: removing the unused data file %s", self.path, item.name)
                with contextlib.suppress(OSError):
                    item.unlink()
        for item in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"):
            with contextlib.suppress(OSError):
                item.unlink()

    def _migrate(self) -> None:
        """Move a single-file store (an earlier version's) to the kill-safe layout.

        The old file gets a second name in the data folder (a hard link; a copy where links
        are not possible) and stays untouched from then on: complete feature sets refer to it;
        incomplete ones are copied into data files of their own. The main file is made from the
        old one without the feature arrays and replaces ``X.h5`` atomically, so a kill at any
        point leaves either the old store or the migrated one.
        """
        import h5py

        legacy = f"legacy-{uuid.uuid4().hex[:8]}.h5"
        target = self.data_dir / legacy
        try:
            try:
                os.link(self.path, target)
            except OSError:
                shutil.copy2(self.path, target)
        except OSError as exc:
            raise write_error(self.path, exc, "the migrated store") from exc
        old = self._file
        self._bio = io.BytesIO()
        self._file = h5py.File(self._bio, "w", fs_strategy="fsm", fs_persist=True)
        moved = 0

        def copy(src: Any, dst: Any, prefix: str) -> None:
            nonlocal moved
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            complete = False
            if _FEATURE_SET.match(prefix):
                raw = src.attrs.get("complete")
                complete = json.loads(raw.decode() if isinstance(raw, bytes) else raw) \
                    if raw is not None else False
            for name in src:
                path = f"{prefix}/{name}".lstrip("/")
                obj = src[name]
                if isinstance(obj, h5py.Group):
                    copy(obj, dst.create_group(name), path)
                elif _FEATURE_SET.match(prefix) and name in _DATA_ARRAYS:
                    moved += 1
                    if complete:
                        dst[name] = h5py.ExternalLink(self._link_name(legacy), "/" + path)
                    else:
                        self.create_array(path, obj.shape, (), obj.dtype,
                                          data=np.asarray(obj[...]), separate=True)
                else:
                    src.copy(obj, dst, name=name)
        try:
            copy(old, self._file, "")
        except (OSError, RuntimeError, KeyError, ValueError) as exc:
            raise StoreError(
                f"{self.path}: cannot move this store to the kill-safe layout, part of it does "
                f"not read ({exc}); `prism-science store repair` recovers its complete "
                "videos into a new store") from exc
        finally:
            old.close()
        self._file.attrs[LAYOUT_ATTR] = json.dumps(LAYOUT)
        self._pending = True
        self._commit()
        logger.info("%s: moved to the kill-safe layout (feature arrays in %s, %d array(s))",
                    self.path, self.data_dir, moved)

    # ------------------------------------------------------------------ data files
    def _data_file(self, filename: str, writable: bool) -> Any:
        """The open data file a link names: by name in this store's data folder (the store may
        have been moved or renamed), else where the link says."""
        import h5py

        name = PurePosixPath(filename).name
        held = self._data.get(name)
        if held is not None and (held[1] or not writable):
            return held[0]
        if held is not None:
            held[0].close()
            del self._data[name]
        path = self.data_dir / name
        if not path.is_file() and (self.path.parent / filename).is_file():
            path = self.path.parent / filename
        if not path.is_file():
            raise StoreError(
                f"{self.path}: its data file {self.data_dir.name}/{name} is missing; a store is "
                f"the file {self.path.name} and the folder {self.data_dir.name} beside it: copy "
                "or move both together (or rerun `prism-science extract` to recompute the "
                "features it held)")
        writable = writable and self.mode != "r"
        # No HDF5 file locking: the writer lock keeps writers apart, and readers (in this
        # process too, where HDF5 refuses files opened with other locking flags) never wait.
        handle = h5py.File(path, "r+" if writable else "r", locking=False)
        self._data[name] = (handle, writable)
        return handle

    def _drop_new_data(self, parent: str, name: str) -> None:
        """Close and delete a data file this writer made whose creation failed (a full disk):
        nothing refers to it, and the store stays usable for the rest of the run."""
        handle = self._data.pop(name)[0]
        self._new_data.pop(parent, None)
        self._dirty.discard(name)
        with contextlib.suppress(Exception):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, int(handle.id.get_vfd_handle()))
            finally:
                os.close(null)
        with contextlib.suppress(Exception):
            handle.close()
        with contextlib.suppress(OSError):
            (self.data_dir / name).unlink()

    def _close_data(self) -> None:
        for handle, _ in self._data.values():
            with contextlib.suppress(Exception):
                handle.close()
        self._data.clear()
        self._dirty.clear()

    def _fsync_data(self) -> None:
        """Flush and fsync the data files written since the last commit: what the main file is
        about to say is written must be on disk first."""
        for name in sorted(self._dirty):
            handle = self._data[name][0]
            handle.flush()
            os.fsync(int(handle.id.get_vfd_handle()))
        self._dirty.clear()

    # ------------------------------------------------------------------ commits
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Changes made inside are committed together at the end (one atomic replace of the
        main file); an exception inside drops them (the store stays as last committed)."""
        with self._mutex:
            self._depth += 1
            try:
                yield
            except BaseException:
                self._depth -= 1
                if self._depth == 0 and self._pending and self.mode != "r":
                    self._rollback()
                raise
            self._depth -= 1
            if self._depth == 0:
                self._maybe_commit()

    def _changed(self) -> None:
        self._pending = True
        if self._depth == 0:
            self._maybe_commit()

    def _maybe_commit(self) -> None:
        if self._pending and self.mode != "r":
            with self.writing("the store's main file"):
                self._commit()

    def _commit(self) -> None:
        self._fsync_data()
        self._file.flush()
        atomic_write(self.path, self._bio.getbuffer())
        self._pending = False

    def _rollback(self) -> None:
        """Drop uncommitted changes: reopen the main file as last committed."""
        import h5py

        self._file.close()
        self._pending = False
        self._new_data.clear()
        if self.path.exists():
            self._bio = io.BytesIO(self.path.read_bytes())
            self._file = h5py.File(self._bio, "r+")
        else:
            self._bio = io.BytesIO()
            self._file = h5py.File(self._bio, "w", fs_strategy="fsm", fs_persist=True)
            self._file.attrs[LAYOUT_ATTR] = json.dumps(LAYOUT)

    # ------------------------------------------------------------------ errors
    @property
    def file(self) -> Any:
        """The open h5py main file; StoreError once a write failed (the store was closed)."""
        if self._failed is not None:
            raise StoreError(f"{self._failed} (the store was closed after that failure; nothing "
                             "more was written)")
        return self._file

    @contextlib.contextmanager
    def reading(self, path: str) -> Iterator[None]:
        """Turn HDF5's low-level read failures (a file damaged by a crash) into a StoreError.

        A KeyError saying that a member does not exist passes through (callers test for
        absence); any other KeyError (h5py's "bad object header", a link to a broken object)
        is damage.
        """
        try:
            yield
        except KeyError as exc:
            if "doesn't exist" in str(exc) or "not found" in str(exc) or not str(exc):
                raise
            raise damaged(self.path, path, exc) from exc
        except (OSError, RuntimeError) as exc:
            raise damaged(self.path, path, exc) from exc

    @contextlib.contextmanager
    def writing(self, doing: str) -> Iterator[None]:
        """Turn a failed write into a StoreError, and close the store safely.

        After a failed write (a full disk above all) the HDF5 library holds data it cannot
        write: using the file again, or even the library's own clean-up at exit, then crashes
        the process (signal 11). So the descriptors of the open data files are pointed at the
        null device, which lets HDF5 close them (what reached the disk before stays as it was),
        and every later use raises a StoreError. The main file on disk is the last committed
        one.
        """
        try:
            yield
        except (OSError, RuntimeError, ValueError) as exc:
            if isinstance(exc, ValueError) and errno_of(exc) is None:
                raise  # a ValueError of h5py's own, not a failed write
            error = write_error(self.path, exc, doing)
            self._abandon(str(error))
            raise error from exc

    def _abandon(self, reason: str) -> None:
        if self._failed is not None:
            return
        self._failed = reason
        handles = [h for h, _ in self._data.values()]
        if self._bio is None:
            handles.append(self._file)
        for handle in handles:
            try:
                fd = int(handle.id.get_vfd_handle())
                null = os.open(os.devnull, os.O_WRONLY)
                try:
                    os.dup2(null, fd)
                finally:
                    os.close(null)
            except Exception as exc:  # noqa: BLE001 - best effort: drivers without a descriptor
                logger.debug("%s: could not detach a file descriptor: %s", self.path, exc)
        self._close_data()
        with contextlib.suppress(Exception):
            self._file.close()
        self._release()
        logger.error("%s", reason)

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
        key = str(self.path.resolve())
        if self._writers.get(key) is self:
            del self._writers[key]

    # ------------------------------------------------------------------ nodes
    def _link(self, path: str) -> Any:
        try:
            return self.file.get(path, getlink=True)
        except (KeyError, ValueError):
            return None

    def node(self, path: str, writable: bool = False) -> Any:
        """The group or dataset at ``path``; ``writable``: a feature array about to be written
        (its data file is opened for writing)."""
        import h5py

        with self.reading(path):
            if not path:
                return self.file
            link = self._link(path)
            if isinstance(link, h5py.ExternalLink):
                handle = self._data_file(link.filename, writable)
                if writable:
                    self._dirty.add(PurePosixPath(link.filename).name)
                return handle[link.path]
            return self.file[path]

    def exists(self, path: str) -> bool:
        with self.reading(path):
            return not path or self._link(path) is not None

    def is_group(self, path: str) -> bool:
        import h5py

        if isinstance(self._link(path), h5py.ExternalLink):
            return False
        return isinstance(self.node(path), h5py.Group)

    def attrs(self, path: str) -> dict[str, Any]:
        out = {}
        with self.reading(path):
            for key, value in self.node(path).attrs.items():
                text = value.decode() if isinstance(value, bytes) else value
                out[key] = json.loads(text) if isinstance(text, str) else jsonable(text)
        return out

    def set_attrs(self, path: str, values: dict[str, Any]) -> None:
        attrs = self.node(path).attrs
        with self._mutex, self.writing(f"the attributes of {path or '/'!r}"):
            for key, value in values.items():
                attrs[key] = json.dumps(jsonable(value))
            self._changed()

    def groups(self, path: str) -> list[str]:
        import h5py

        node = self.node(path)
        with self.reading(path):
            try:
                return sorted(k for k in node if not isinstance(
                    node.get(k, getlink=True), h5py.ExternalLink)
                    and isinstance(node[k], h5py.Group))
            except KeyError as exc:  # a listed member that cannot be opened: a broken link
                raise OSError(f"a member of {path!r} cannot be opened: {exc}") from exc

    def children(self, path: str) -> list[str]:
        node = self.node(path)
        with self.reading(path):
            return sorted(node.keys())

    def require_group(self, path: str) -> None:
        with self._mutex, self.writing(f"the group {path!r}"):
            if path not in self.file:
                self.file.require_group(path)
                self._changed()

    def create_array(self, path: str, shape: tuple[int, ...], chunks: tuple[int, ...],
                     dtype: Any, data: np.ndarray | None = None,
                     shards: tuple[int, ...] | None = None, separate: bool = False) -> Any:
        """Create (or replace) a dataset; ``shards`` is ignored.

        ``separate``: a feature array written after creation (``values``, ``chunk_done``): it
        goes into the data file of its feature set (one per set, made by this writer), as a
        contiguous dataset allocated at once; the main file links to it.
        """
        import h5py

        with self._mutex, self.writing(f"the array {path!r}"):
            if self._link(path) is not None:
                del self.file[path]
            shape = data.shape if data is not None else shape
            if separate:
                parent, _, leaf = path.rpartition("/")
                name = self._new_data.get(parent)
                if name is None or name not in self._data:
                    self.data_dir.mkdir(exist_ok=True)
                    stem = _data_file_stem(parent)
                    name = f"{stem}.{uuid.uuid4().hex[:8]}.h5"
                    self._data[name] = (h5py.File(self.data_dir / name, "w", locking=False),
                                        True)
                    self._new_data[parent] = name
                handle = self._data[name][0]
                try:
                    if leaf in handle:
                        del handle[leaf]
                    array = _new_array(handle, leaf, shape, dtype, data)
                    handle.flush()
                except (OSError, RuntimeError, ValueError) as exc:
                    self._drop_new_data(parent, name)
                    raise write_error(self.path, exc, f"the array {path!r}") from exc
                self._dirty.add(name)
                self.file[path] = h5py.ExternalLink(self._link_name(name), "/" + leaf)
                self._changed()
                return array
            # HDF5 chunks may not exceed a fixed-size dataset's shape.
            chunks = tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True))
            if data is not None:
                array = self.file.create_dataset(path, data=data, chunks=chunks or None)
            else:
                array = self.file.create_dataset(path, shape=shape, dtype=dtype,
                                                 chunks=chunks or None, fillvalue=0)
            self._changed()
            return array

    def delete(self, path: str) -> None:
        with self._mutex, self.writing(f"(deleting) {path!r}"):
            del self.file[path]
            for parent in [p for p in self._new_data if p == path or p.startswith(path + "/")]:
                del self._new_data[parent]
            self._changed()

    def flush(self) -> None:
        """Write buffered feature values to their data files (and commit pending changes)."""
        with self._mutex, self.writing("buffered data"):
            for name in sorted(self._dirty):
                self._data[name][0].flush()
            if self._depth == 0:
                self._maybe_commit()

    def close(self) -> None:
        """Commit, close the files and free the writer lock (the last handle of a shared
        writer does)."""
        if self._failed is not None:
            return
        if self._users > 1:
            self._users -= 1
            return
        self._users = 0
        try:
            if self.mode != "r":
                with self.writing("buffered data (closing the store)"):
                    if self._pending:
                        self._commit()
                    self._fsync_data()
                self._close_data()
                self._sweep()
        finally:
            self._close_data()
            with contextlib.suppress(Exception):
                self._file.close()
            if self._failed is None:
                self._release()


def _data_file_stem(node_path: str) -> str:
    """A readable file-name stem for a feature set's data file: ``video.model.tokens``."""
    parts = [p for p in node_path.split("/") if p not in ("videos", "features")]
    stem = ".".join("".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "_"
                            for ch in part)[:60] for part in parts)
    return stem.lstrip("._") or "features"
