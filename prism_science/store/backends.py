"""Node access for the feature store (:mod:`prism_science.store`): Zarr v3 or HDF5, one interface.

Both backends address groups and arrays by ``/``-joined paths and expose the same methods
(``node``, ``exists``, ``attrs``, ``set_attrs``, ``groups``, ``children``, ``require_group``,
``create_array``, ``delete``, ``flush``, ``close``), so :class:`~prism_science.store.FeatureStore`
holds the schema once, whatever the file format. HDF5 attribute values are stored as JSON strings.
``batch()`` groups changes into one commit (HDF5: one atomic replace of the main file; Zarr:
nothing to group). This module holds Zarr and what both share; the kill-safe HDF5 store is
:class:`prism_science.store.hdf5.HDF5Backend` (docs/store.md).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import StoreError

__all__ = ["READ_ONLY_ERRNOS", "ZarrBackend", "check_writable_location", "damaged", "errno_of",
           "jsonable", "write_error"]

logger = logging.getLogger(__name__)

READ_ONLY_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
"""Errors meaning that the disk or the file may not be written."""


def errno_of(exc: BaseException) -> int | None:
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
    code = errno_of(exc)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        after = "what was written before is kept and a rerun resumes"
        return StoreError(
            f"{path}: the disk is full (no space left) while writing {doing}; free space or use "
            f"a store on another disk, then rerun the same command; {after}"
        )
    if code in READ_ONLY_ERRNOS:
        return StoreError(
            f"{path}: cannot write {doing}: {os.strerror(code)}; the store is read-only for this "
            "process: open it on a writable disk, fix its permissions, or copy it elsewhere"
        )
    return StoreError(f"{path}: writing {doing} failed ({exc}); check the disk and rerun")


def damaged(store: Path, path: str, exc: BaseException) -> StoreError:
    """A StoreError saying that ``path`` of ``store`` does not read (``exc``) and to repair."""
    return StoreError(
        f"{store}: cannot read {path or '/'!r}, the store is damaged ({exc}); "
        "`prism-science store repair` recovers its complete videos (docs/store.md)"
    )


def check_writable_location(path: Path) -> None:
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
            check_writable_location(path)
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

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Zarr writes each change to its own file at once: nothing to group."""
        yield

    def node(self, path: str, writable: bool = False) -> Any:
        try:
            return self.root[path] if path else self.root
        except KeyError:
            raise
        except (OSError, ValueError, TypeError) as exc:  # a zarr.json that does not parse
            raise damaged(self.path, path, exc) from exc

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
                     shards: tuple[int, ...] | None = None, separate: bool = False) -> Any:
        """Create (or replace) an array; ``shards``: Zarr v3 shards of whole ``chunks`` (one
        file per shard), None for one file per chunk; ``separate`` is ignored (every array has
        files of its own)."""
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
