"""Node access for the feature store (:mod:`prism_science.store`): Zarr v3 or HDF5, one interface.

Both backends address groups and arrays by ``/``-joined paths and expose the same methods
(``node``, ``exists``, ``attrs``, ``set_attrs``, ``groups``, ``children``, ``require_group``,
``create_array``, ``delete``, ``flush``, ``close``), so :class:`~prism_science.store.FeatureStore`
holds the schema once, whatever the file format. HDF5 attribute values are stored as JSON strings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import StoreError

__all__ = ["HDF5Backend", "ZarrBackend", "jsonable"]


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
        if mode in ("a", "r+", "r") and path.is_dir() and any(path.iterdir()) and not (
            path / "zarr.json"
        ).exists():
            raise StoreError(
                f"{path}: is a non-empty folder that is not a Zarr store; give a new path"
            )
        if mode in ("r", "r+") and not (path / "zarr.json").exists():
            raise StoreError(f"{path}: no store there (zarr.json missing); check the path")
        if mode == "w" and path.exists():
            shutil.rmtree(path)
        self.root = zarr.open_group(str(path), mode="a" if mode == "w" else mode, zarr_format=3)

    def node(self, path: str) -> Any:
        return self.root[path] if path else self.root

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
        self.node(path).attrs.update(jsonable(values))

    def groups(self, path: str) -> list[str]:
        return sorted(self.node(path).group_keys())

    def children(self, path: str) -> list[str]:
        node = self.node(path)
        return sorted([*node.group_keys(), *node.array_keys()])

    def require_group(self, path: str) -> None:
        node = self.root
        for part in path.split("/"):
            node = node.require_group(part)

    def create_array(self, path: str, shape: tuple[int, ...], chunks: tuple[int, ...],
                     dtype: Any, data: np.ndarray | None = None) -> Any:
        parent, _, name = path.rpartition("/")
        if parent:
            self.require_group(parent)
        group = self.node(parent)
        if data is not None:
            return group.create_array(name, data=data, chunks=chunks, overwrite=True)
        return group.create_array(name, shape=shape, chunks=chunks, dtype=dtype, fill_value=0,
                                  overwrite=True)

    def delete(self, path: str) -> None:
        parent, _, name = path.rpartition("/")
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
        try:
            self.file = h5py.File(path, mode)
        except OSError as exc:
            raise StoreError(
                f"{path}: cannot open the HDF5 store in mode {mode!r} ({exc}); HDF5 files take "
                "one writer at a time: close other programs using it, or use a Zarr store"
            ) from exc

    def node(self, path: str) -> Any:
        return self.file[path] if path else self.file

    def exists(self, path: str) -> bool:
        return not path or path in self.file

    def is_group(self, path: str) -> bool:
        import h5py

        return isinstance(self.node(path), h5py.Group)

    def attrs(self, path: str) -> dict[str, Any]:
        out = {}
        for key, value in self.node(path).attrs.items():
            text = value.decode() if isinstance(value, bytes) else value
            out[key] = json.loads(text) if isinstance(text, str) else jsonable(text)
        return out

    def set_attrs(self, path: str, values: dict[str, Any]) -> None:
        attrs = self.node(path).attrs
        for key, value in values.items():
            attrs[key] = json.dumps(jsonable(value))

    def groups(self, path: str) -> list[str]:
        import h5py

        node = self.node(path)
        return sorted(k for k in node if isinstance(node[k], h5py.Group))

    def children(self, path: str) -> list[str]:
        return sorted(self.node(path).keys())

    def require_group(self, path: str) -> None:
        self.file.require_group(path)

    def create_array(self, path: str, shape: tuple[int, ...], chunks: tuple[int, ...],
                     dtype: Any, data: np.ndarray | None = None) -> Any:
        if path in self.file:
            del self.file[path]
        # HDF5 chunks may not exceed a fixed-size dataset's shape.
        shape = data.shape if data is not None else shape
        chunks = tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True))
        if data is not None:
            return self.file.create_dataset(path, data=data, chunks=chunks or None)
        return self.file.create_dataset(path, shape=shape, dtype=dtype, chunks=chunks or None,
                                        fillvalue=0)

    def delete(self, path: str) -> None:
        del self.file[path]

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()
