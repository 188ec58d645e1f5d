"""Write MATLAB v7.3 .mat files with h5py in MATLAB's own layout (for reader fixtures).

MATLAB v7.3 files are HDF5 with a 512-byte user block holding the MAT header; dimensions are
stored reversed (column-major); char arrays are uint16; cell arrays are datasets of object
references into the ``#refs#`` group; empty arrays store their dims with ``MATLAB_empty=1``;
structs are groups with ``MATLAB_class='struct'``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import h5py
import numpy as np

_HEADER = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
           b"HDF5 schema 1.00 .")


class Cell:
    """A MATLAB cell array of the given shape holding ``items`` in column-major order."""

    def __init__(self, items: list[Any], shape: tuple[int, int]):
        self.items, self.shape = items, shape


def _set_class(obj: Any, name: str) -> None:
    obj.attrs["MATLAB_class"] = np.bytes_(name)


def _write(parent: h5py.Group, refs: h5py.Group, name: str, value: Any, counter) -> Any:
    if isinstance(value, dict):
        group = parent.create_group(name)
        _set_class(group, "struct")
        for key, item in value.items():
            _write(group, refs, key, item, counter)
        return group
    if isinstance(value, Cell):
        ref_names = []
        for item in value.items:
            ref_name = f"r{next(counter)}"
            _write(refs, refs, ref_name, item, counter)
            ref_names.append(refs[ref_name].ref)
        matlab = np.empty(value.shape, dtype=object)
        for i, ref in enumerate(ref_names):
            matlab[np.unravel_index(i, value.shape, order="F")] = ref
        ds = parent.create_dataset(name, data=matlab.T, dtype=h5py.ref_dtype)
        _set_class(ds, "cell")
        return ds
    if isinstance(value, str):
        data = np.array([[ord(c)] for c in value], dtype=np.uint16)  # 1 x n -> (n, 1)
        if data.size == 0:
            ds = parent.create_dataset(name, data=np.array([0, 0], dtype=np.uint64))
            ds.attrs["MATLAB_empty"] = np.uint8(1)
        else:
            ds = parent.create_dataset(name, data=data)
        _set_class(ds, "char")
        ds.attrs["MATLAB_int_decode"] = np.int32(2)
        return ds
    arr = np.atleast_2d(np.asarray(value, dtype=np.float64))
    if arr.size == 0:
        ds = parent.create_dataset(name, data=np.array(arr.shape[::-1], dtype=np.uint64))
        ds.attrs["MATLAB_empty"] = np.uint8(1)
    else:
        ds = parent.create_dataset(name, data=arr.T)
    _set_class(ds, "double")
    return ds


def write_mat73(path: Path, variables: dict[str, Any]) -> Path:
    """Write ``variables`` (str, numeric arrays as MATLAB matrices, Cell, dict) as v7.3."""
    counter = itertools.count()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for name, value in variables.items():
            _write(f, refs, name, value, counter)
    header = _HEADER.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as fh:
        fh.write(header)
    return Path(path)
