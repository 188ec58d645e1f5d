"""Node access for the feature store (:mod:`prism_science.store`): Zarr v3 or HDF5, one interface.

Both backends address groups and arrays by ``/``-joined paths and expose the same methods
(``node``, ``exists``, ``attrs``, ``set_attrs``, ``groups``, ``children``, ``require_group``,
``create_array``, ``delete``, ``flush``, ``close``), so :class:`~prism_science.store.FeatureStore`
holds the schema once, whatever the file format. HDF5 attribute values are stored as JSON strings.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import StoreError

__all__ = ["HDF5Backend", "ZarrBackend", "jsonable", "write_error"]

logger = logging.getLogger(__name__)

_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


def _errno_of(exc: BaseException) -> int | None:
    """The errno of an OSError, or the ``errno = N`` that HDF5 writes into its messages."""
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    found = re.search(r"errno = (\d+)", str(exc))
    return int(found.group(1)) if found else None


def write_error(path: Path, exc: BaseException, doing: str) -> StoreError:
    """A StoreError saying why writing ``doing`` into the store at ``path`` failed, and what to do.

    A full disk and a read-only disk (or missing permission) get their own advice; the original
    error is named otherwise.
    """
    code = _errno_of(exc)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        after = ("if the file no longer opens, `prism-science store repair` recovers its "
                 "complete videos" if path.suffix.lower() in (".h5", ".hdf5", ".he5") else
                 "what was written before is kept and a rerun resumes")
        return StoreError(
            f"{path}: the disk is full (no space left) while writing {doing}; free space or use "
            f"a store on another disk, then rerun the same command; {after}"
        )
    if code in _READ_ONLY:
        return StoreError(
            f"{path}: cannot write {doing}: {os.strerror(code)}; the store is read-only for this "
            "process: open it on a writable disk, fix its permissions, or copy it elsewhere"
        )
    return StoreError(f"{path}: writing {doing} failed ({exc}); check the disk and rerun")


def _damaged(store: Path, path: str, exc: BaseException) -> StoreError:
    return StoreError(
        f"{store}: cannot read {path or '/'!r}, the store is damaged ({exc}); "
        "`prism-science store repair` recovers its complete videos (docs/store.md)"
    )


def _check_writable_location(path: Path) -> None:
    """StoreError when ``path`` (or, when it does not exist yet, its nearest existing folder)
    cannot be written: a read-only file system, or missing permission."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if os.access(probe, os.W_OK):
        return
    try:
        read_only = bool(os.statvfs(probe).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # AttributeError: no statvfs (Windows)
        read_only = False
    code = errno.EROFS if read_only else errno.EACCES
    where = "on a read-only file system" if read_only else "not writable by this user"
    raise write_error(path, OSError(code, os.strerror(code)), f"the store ({probe} is {where})")


def _half_created(path: Path) -> bool:
    """A Zarr folder left by a run killed before its first write: no ``zarr.json``, and nothing
    but Zarr's temporary ``*.partial`` files and empty folders."""
    if (path / "zarr.json").exists():
        return False
    for item in path.rglob("*"):
        if item.is_file() and not item.name.endswith(".partial"):
            return False
    return True


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars, tuples and paths made JSON types (recursively)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


class ZarrBackend:
    """Node access by '/'-joined paths on a Zarr v3 group."""

    def __init__(self, path: Path, mode: str) -> None:
        import zarr

        if path.exists() and not path.is_dir():
            raise StoreError(
                f"{path}: is a file, not a Zarr store; give a folder path, or a .h5 path for HDF5"
            )
        if (path / ".zgroup").exists() or (path / ".zarray").exists():
            raise StoreError(
                f"{path}: is a Zarr v2 store; prism-science writes Zarr v3: use another path"
            )
        self.path = path
        if mode != "r":
            _check_writable_location(path)
        if mode in ("a", "r+", "r") and path.is_dir() and any(path.iterdir()) and not (
            path / "zarr.json"
        ).exists():
            if not _half_created(path):
                raise StoreError(
                    f"{path}: is a non-empty folder that is not a Zarr store; give a new path"
                )
            if mode == "a":
                # A run killed before the store's first write: start over.
                logger.warning("%s: a store whose creation was interrupted; starting it anew",
                               path)
                shutil.rmtree(path)
        if mode in ("r", "r+") and not (path / "zarr.json").exists():
            raise StoreError(f"{path}: no store there (zarr.json missing); check the path, or "
                             "rerun the extraction if it was interrupted while creating it")
        try:
            if mode == "w" and path.exists():
                shutil.rmtree(path)
            self.root = zarr.open_group(str(path), mode="a" if mode == "w" else mode,
                                        zarr_format=3)
        except OSError as exc:
            raise write_error(path, exc, "the store's metadata") from exc

    @contextlib.contextmanager
    def writing(self, doing: str) -> Iterator[None]:
        """Turn an OSError raised while writing ``doing`` into a StoreError that says what to do."""
        try:
            yield
        except OSError as exc:
            raise write_error(self.path, exc, doing) from exc

    def node(self, path: str) -> Any:
        try:
            return self.root[path] if path else self.root
        except KeyError:
            raise
        except (OSError, ValueError, TypeError) as exc:  # a zarr.json that does not parse
            raise _damaged(self.path, path, exc) from exc

    def exists(self, path: str) -> bool:
        try:
            self.node(path)
        except KeyError:
            return False
        return True

    def is_group(self, path: str) -> bool:
        import zarr

        return isinstance(self.node(path), zarr.Group)

    def attrs(self, path: str) -> dict[str, Any]:
        return dict(self.node(path).attrs)

    def set_attrs(self, path: str, values: dict[str, Any]) -> None:
        with self.writing(f"the attributes of {path or '/'!r}"):
            self.node(path).attrs.update(jsonable(values))

    def groups(self, path: str) -> list[str]:
        return sorted(self.node(path).group_keys())

    def children(self, path: str) -> list[str]:
        node = self.node(path)
        return sorted([*node.group_keys(), *node.array_keys()])

    def require_group(self, path: str) -> None:
        node = self.root
        with self.writing(f"the group {path!r}"):
            for part in path.split("/"):
                node = node.require_group(part)

    def create_array(self, path: str, shape: tuple[int, ...], chunks: tuple[int, ...],
                     dtype: Any, data: np.ndarray | None = None,
                     shards: tuple[int, ...] | None = None) -> Any:
        """Create (or replace) an array; ``shards``: Zarr v3 shards of whole ``chunks`` (one
        file per shard), None for one file per chunk."""
        parent, _, name = path.rpartition("/")
        if parent:
            self.require_group(parent)
        group = self.node(parent)
        with self.writing(f"the array {path!r}"):
            if data is not None:
                return group.create_array(name, data=data, chunks=chunks, shards=shards,
                                          overwrite=True)
            return group.create_array(name, shape=shape, chunks=chunks, shards=shards,
                                      dtype=dtype, fill_value=0, overwrite=True)

    def delete(self, path: str) -> None:
        parent, _, name = path.rpartition("/")
        with self.writing(f"(deleting) {path!r}"):
            del self.node(parent)[name]

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class HDF5Backend:
    """Node access on an HDF5 file; attribute values are stored as JSON strings."""

    def __init__(self, path: Path, mode: str) -> None:
        import h5py

        if mode in ("r", "r+") and not path.is_file():
            raise StoreError(f"{path}: no HDF5 store there; check the path")
        if path.is_dir():
            raise StoreError(f"{path}: is a folder; an HDF5 store is a file (or use Zarr)")
        if path.exists() and mode in ("r", "r+", "a") and not h5py.is_hdf5(path):
            raise StoreError(f"{path}: is not an HDF5 file; give a new path")
        self.path = path
        self._failed: str | None = None
        if mode != "r":
            _check_writable_location(path)
        try:
            self._file = h5py.File(path, mode)
        except OSError as exc:
            if _errno_of(exc) in (errno.ENOSPC, errno.EDQUOT, *_READ_ONLY):
                raise write_error(path, exc, "the HDF5 file") from exc
            raise StoreError(
                f"{path}: cannot open the HDF5 store in mode {mode!r} ({exc}); HDF5 files take "
                "one writer at a time: close other programs using it, or use a Zarr store; a "
                "file damaged by a crash can be recovered with `prism-science store repair`"
            ) from exc

    @property
    def file(self) -> Any:
        """The open h5py file; StoreError once a write failed (the file was closed then)."""
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
            raise _damaged(self.path, path, exc) from exc
        except (OSError, RuntimeError) as exc:
            raise _damaged(self.path, path, exc) from exc

    @contextlib.contextmanager
    def writing(self, doing: str) -> Iterator[None]:
        """Turn a failed write into a StoreError, and close the file safely.

        After a failed write (a full disk above all) the HDF5 library holds data it cannot
        write: using the file again, or even the library's own clean-up at exit, then crashes
        the process (signal 11). So the file's descriptor is pointed at the null device, which
        lets HDF5 close the file (what reached the disk before stays as it was), and every later
        use raises a StoreError.
        """
        try:
            yield
        except (OSError, RuntimeError) as exc:
            error = write_error(self.path, exc, doing)
            self._abandon(str(error))
            raise error from exc

    def _abandon(self, reason: str) -> None:
        if self._failed is not None:
            return
        self._failed = reason
        try:
            handle = self._file.id.get_vfd_handle()
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, int(handle))
            finally:
                os.close(null)
        except Exception as exc:  # noqa: BLE001 - best effort: drivers without a descriptor
            logger.debug("%s: could not detach the file descriptor: %s", self.path, exc)
        try:
            self._file.close()
        except Exception as exc:  # noqa: BLE001 - the file is being abandoned
            logger.debug("%s: closing after a failed write: %s", self.path, exc)
        logger.error("%s", reason)

    def node(self, path: str) -> Any:
        with self.reading(path):
            return self.file[path] if path else self.file

    def exists(self, path: str) -> bool:
        with self.reading(path):
            return not path or path in self.file

    def is_group(self, path: str) -> bool:
        import h5py

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
        with self.writing(f"the attributes of {path or '/'!r}"):
            for key, value in values.items():
                attrs[key] = json.dumps(jsonable(value))

    def groups(self, path: str) -> list[str]:
        import h5py

        node = self.node(path)
        with self.reading(path):
            try:
                return sorted(k for k in node if isinstance(node[k], h5py.Group))
            except KeyError as exc:  # a listed member that cannot be opened: a broken link
                raise OSError(f"a member of {path!r} cannot be opened: {exc}") from exc

    def children(self, path: str) -> list[str]:
        node = self.node(path)
        with self.reading(path):
            return sorted(node.keys())

    def require_group(self, path: str) -> None:
        with self.writing(f"the group {path!r}"):
            self.file.require_group(path)

    def create_array(self, path: str, shape: tuple[int, ...], chunks: tuple[int, ...],
                     dtype: Any, data: np.ndarray | None = None,
                     shards: tuple[int, ...] | None = None) -> Any:
        """Create (or replace) a dataset; ``shards`` is ignored (one file already)."""
        with self.writing(f"the array {path!r}"):
            if path in self.file:
                del self.file[path]
            # HDF5 chunks may not exceed a fixed-size dataset's shape.
            shape = data.shape if data is not None else shape
            chunks = tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True))
            if data is not None:
                return self.file.create_dataset(path, data=data, chunks=chunks or None)
            return self.file.create_dataset(path, shape=shape, dtype=dtype,
                                            chunks=chunks or None, fillvalue=0)

    def delete(self, path: str) -> None:
        with self.writing(f"(deleting) {path!r}"):
            del self.file[path]

    def flush(self) -> None:
        with self.writing("buffered data"):
            self.file.flush()

    def close(self) -> None:
        if self._failed is not None:
            return
        with self.writing("buffered data (closing the file)"):
            self._file.close()
