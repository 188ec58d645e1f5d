"""Read MATLAB .mat files (v5 via scipy, v7.3 via h5py) into one plain Python form.

Both versions come back the same way so that readers need not care which MATLAB wrote them:
numeric and logical arrays as 2-D numpy arrays in MATLAB's orientation (rows x columns), char
arrays as ``str``, cell arrays as 2-D numpy object arrays of converted items, 1x1 structs as
dicts (struct arrays as lists of dicts). No pickle is involved in either format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import LabelError


def is_mat73(path: Path) -> bool:
    """True when ``path`` is a MATLAB v7.3 (HDF5) file."""
    import h5py

    with open(path, "rb") as fh:
        head = fh.read(128)
    return b"MATLAB 7.3" in head or h5py.is_hdf5(str(path))


def load_mat(path: Path) -> dict[str, Any]:
    """Variables of a .mat file (v5 or v7.3), converted as described in the module docstring."""
    path = Path(path)
    try:
        if is_mat73(path):
            return _load_h5(path)
        from scipy.io import loadmat

        raw = loadmat(str(path), squeeze_me=False, struct_as_record=True,
                      chars_as_strings=True)
    except LabelError:
        raise
    except Exception as exc:  # scipy/h5py raise many types on corrupt files
        raise LabelError(f"{path}: cannot read as a MATLAB .mat file (v5 or v7.3): {exc}. "
                         "Check that the file is complete and is a .mat file.") from exc
    return {k: _from_v5(v) for k, v in raw.items() if not k.startswith("__")}


# --------------------------------------------------------------------------- v5 (scipy)
def _from_v5(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        if value.dtype.names:  # struct array
            items = [{name: _from_v5(rec[name]) for name in value.dtype.names}
                     for rec in value.ravel(order="F")]
            return items[0] if value.size == 1 else items
        if value.dtype.kind == "U":
            strings = [str(s) for s in value.ravel(order="F")]
            return strings[0] if len(strings) == 1 else (strings or "")
        if value.dtype == object:
            out = np.empty(value.shape, dtype=object)
            for idx in np.ndindex(value.shape):
                out[idx] = _from_v5(value[idx])
            return out if out.ndim == 2 else out.reshape(1, -1)
        return np.atleast_2d(value)
    return value


# --------------------------------------------------------------------------- v7.3 (h5py)
def _load_h5(path: Path) -> dict[str, Any]:
    import h5py

    with h5py.File(path, "r") as f:
        return {k: _from_h5(f, f[k]) for k in f if not k.startswith("#")}


def _matlab_class(obj: Any) -> str:
    cls = obj.attrs.get("MATLAB_class", b"")
    return cls.decode() if isinstance(cls, bytes) else str(cls)


def _from_h5(f: Any, obj: Any) -> Any:
    import h5py

    if isinstance(obj, h5py.Group):
        return {k: _from_h5(f, obj[k]) for k in obj if not k.startswith("#")}
    cls = _matlab_class(obj)
    data = obj[()]
    if int(obj.attrs.get("MATLAB_empty", 0)):
        if cls == "char":
            return ""
        if cls == "cell":
            return np.empty((0, 0), dtype=object)
        return np.zeros((0, 0))
    if data.dtype == h5py.ref_dtype or cls == "cell":
        arr = np.atleast_2d(data).T  # HDF5 stores MATLAB's column-major dims reversed
        out = np.empty(arr.shape, dtype=object)
        for idx in np.ndindex(arr.shape):
            out[idx] = _from_h5(f, f[arr[idx]])
        return out
    if cls == "char":
        chars = np.atleast_2d(data).T
        rows = ["".join(chr(int(c)) for c in row) for row in chars]
        return rows[0] if len(rows) == 1 else rows
    arr = np.atleast_2d(np.asarray(data)).T
    if cls == "logical":
        return arr.astype(bool)
    return arr


# --------------------------------------------------------------------------- helpers
def cell_items(value: Any) -> list[Any]:
    """Items of a cell array (or a single value) in MATLAB's linear (column-major) order."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        return list(value.ravel(order="F"))
    if isinstance(value, list):
        return value
    return [value]


def as_strings(value: Any, path: Path, field: str) -> list[str]:
    """A cellstr (or a char array) as a list of str; LabelError naming ``field`` otherwise."""
    items = cell_items(value)
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, list) and all(isinstance(s, str) for s in item):
            out.extend(item)
        else:
            raise LabelError(f"{path}, variable {field!r}: expected a cell array of strings, "
                             f"found an item of type {type(item).__name__}.")
    return out


def as_matrix(value: Any, path: Path, field: str, columns: tuple[int, ...] = ()) -> np.ndarray:
    """A numeric 2-D float array; empty becomes (0, max(columns)); LabelError otherwise."""
    if isinstance(value, np.ndarray) and value.dtype != object and value.dtype.kind in "biuf":
        arr = np.atleast_2d(value).astype(np.float64)
        if arr.size == 0:
            return np.zeros((0, max(columns, default=0)))
        if columns and arr.shape[1] not in columns:
            raise LabelError(f"{path}, variable {field!r}: expected a K x "
                             f"{' or K x '.join(map(str, columns))} matrix, found shape "
                             f"{arr.shape}.")
        return arr
    raise LabelError(f"{path}, variable {field!r}: expected a numeric matrix, found "
                     f"{type(value).__name__}.")
