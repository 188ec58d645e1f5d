"""Ids read from a collaborator's label file never become paths outside the folder or store.

`prism-science labels import FILE --out DIR` writes one file per video (or observation) of the
file; ids such as ``../../x``, absolute paths and characters no file system takes must each
become a plain name inside DIR. Store keys are refused rather than allowed to escape the store.
"""

from __future__ import annotations

import copy
import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import StoreError
from prism_science.labels.formats import label_file_paths
from prism_science.store import confined_path, open_store, safe_name
from tests.labels.test_labels_boris import EVENTS, TABULAR_HEADER, _project, _tabular_row

ROBUSTNESS_TITLE = "Ids that become paths"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| `labels import FILE --out DIR` with video / observation ids `../../x`, an absolute path, `..`,
  `sub/../../../x` and characters like `:*?<>\|`, in a BORIS project (media paths and
  observation ids), a BORIS tabular export and a KABR CSV | every file lands in DIR with a plain
  name (`safe_name`: `../../x` -> `x.labels.csv`); none outside, none hidden; one file per video
  or observation (two ids giving one name get `-2`) |
| a symbolic link inside DIR pointing elsewhere, named like an output file | `StoreError` naming
  the file: the link is not followed |
| store video ids `../x`, `/abs`, `a/b`, `..`, `.`, empty, `zarr.json`, `__x`, `a\b`, a NUL
  byte, 300 bytes (Zarr and HDF5) | `StoreError: invalid video id`; nothing is created outside
  the store, the store stays healthy |
| item paths `../../x`, `labels/../../../x`, `labels/zarr.json`, `a\..\b`, control characters |
  `StoreError: invalid item path` |
| `labels import --store` of a file whose ids are `../../fly_01` or an absolute path | exit 2,
  "no video ... in the store"; no file written anywhere |
"""


def _evil_ids(tmp_path: Path) -> list[str]:
    """Ids that would write outside the output folder if used as paths."""
    return ["../../escape_rel", str(tmp_path / "outside" / "escape_abs"), "we ird:na*me?<>|",
            "..", "sub/../../../escape_mid"]


def _boris_project(path: Path, ids: list[str]) -> Path:
    """A BORIS project: one observation per id playing a media file named after it, and two
    observations (ids with ``../`` and an absolute path) of one more video."""
    pj = _project(EVENTS)
    template = pj["observations"].pop("obs1")
    for i, vid in enumerate([*ids, "fly_02", "fly_02"]):
        media = f"{vid}.mp4"
        obs = copy.deepcopy(template)
        obs["file"]["1"] = [media]
        obs["media_info"] = {"length": {media: 10.0}, "fps": {media: 25.0},
                             "hasVideo": {media: True}, "hasAudio": {media: False},
                             "offset": {"1": 0.0}}
        obs_id = vid if vid != "fly_02" else ["../../obs_rel", "/abs/obs"][i - len(ids)]
        pj["observations"][obs_id] = obs
    path.write_text(json.dumps(pj))
    return path


def _boris_tabular(path: Path, ids: list[str]) -> Path:
    rows = []
    for vid in ids:
        for status, t in (("START", 1.0), ("STOP", 2.0)):
            row = _tabular_row("male", "wing extension", status, t, obs=vid)
            row[5], row[14] = f"player #1:{vid}.mp4", f"{vid}.mp4"
            rows.append(row)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(TABULAR_HEADER)
        writer.writerows(rows)
    return path


def _kabr(path: Path, ids: list[str]) -> Path:
    rows = [["original_vido_id", "video_id", "frame_id", "path", "labels"]]
    for n, vid in enumerate(ids):
        rows += [[vid, str(n + 1), str(i + 1), f"x/{i + 1}.jpg", "1"] for i in range(4)]
    with open(path, "w", newline="") as handle:  # the KABR layout: space-separated
        csv.writer(handle, delimiter=" ").writerows(rows)
    return path


def _files_under(root: Path) -> set[Path]:
    return {Path(d, f) for d, _, files in os.walk(root) for f in files}


@pytest.mark.parametrize("fmt", ["boris", "boris-tabular", "kabr"])
def test_label_import_out_folder_confines_every_id(tmp_path, fmt, monkeypatch):
    ids = _evil_ids(tmp_path)
    if fmt == "kabr":  # KABR ids are one space-separated field: no spaces in them
        ids[2] = "we_ird:na*me?<>|"
    inputs = tmp_path / "in"
    inputs.mkdir()
    writer = {"boris": _boris_project, "boris-tabular": _boris_tabular, "kabr": _kabr}[fmt]
    source = writer(inputs / {"boris": "p.boris", "boris-tabular": "t.csv",
                              "kabr": "k.csv"}[fmt], ids)
    work = tmp_path / "a" / "b"
    out = work / "out"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)  # "../../x" relative to the folder and to the working directory
    before = _files_under(tmp_path)
    fps = "29.97" if fmt == "kabr" else "25"
    assert main(["labels", "import", str(source), "--format", fmt, "--out", "out",
                 "--fps", fps]) == 0
    written = _files_under(tmp_path) - before
    assert written, "nothing was written"
    for path in written:
        assert path.parent == out.resolve() or path.parent == out, path  # never outside DIR
        assert path.name.endswith(".labels.csv")
        assert not path.name.startswith(".")
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in path.name), path
    assert not (tmp_path / "outside").exists()
    n_tables = {"boris": len(ids) + 2, "boris-tabular": len(ids), "kabr": len(ids)}[fmt]
    assert len(written) == n_tables  # no two ids overwrote each other


def test_safe_names_and_collisions(tmp_path):
    assert safe_name("../../x") == "x"
    assert safe_name("/etc/cron.d/a b") == "etc__cron.d__a_b"
    assert safe_name("..") == "video" and safe_name("", "fallback") == "fallback"
    assert safe_name("C:\\data\\..\\v.mp4") == "C___data__v.mp4"
    paths = label_file_paths(["a/b", "a_b", "a__b", "A__B"], tmp_path)
    assert len({p.name.lower() for p in paths.values()}) == 4  # distinct, also on macOS
    assert all(p.parent == tmp_path for p in paths.values())
    # a link inside the folder pointing elsewhere is refused, not followed
    (tmp_path / "outside").mkdir()
    (tmp_path / "out").mkdir()
    os.symlink(tmp_path / "outside" / "x.labels.csv", tmp_path / "out" / "x.labels.csv")
    with pytest.raises(StoreError, match="outside"):
        confined_path(tmp_path / "out", "x", ".labels.csv")


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_store_keys_never_escape_the_store(tmp_path, suffix):
    store_path = tmp_path / "deep" / f"s{suffix}"
    store_path.parent.mkdir()
    bad_ids = ["../x", "/abs", "a/b", "..", ".", "", "zarr.json", "ZARR.JSON", "__x", "a\\b",
               "a\x00b", "x" * 300]
    with open_store(store_path, "a") as store:
        for bad in bad_ids:
            with pytest.raises(StoreError, match="invalid video id"):
                store.put_video(bad, source_path="x", relative_path="x", size_bytes=1,
                                content_hash="h", timestamps=np.arange(3.0), fps=1.0, width=1,
                                height=1)
        store.put_video("ok.mp4", source_path="x", relative_path="x", size_bytes=1,
                        content_hash="h", timestamps=np.arange(3.0), fps=1.0, width=1, height=1)
        for relpath in ["../../x", "labels/../../../x", "labels/zarr.json", "/", "a\\..\\b",
                        "labels/\x01"]:
            with pytest.raises(StoreError, match="invalid item path"):
                store.write_json("ok.mp4", relpath, {"a": 1})
        assert store.video_ids() == ["ok.mp4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep"]
    store_files = [store_path.name] + ([f"{store_path.name}.d"] if suffix == ".h5" else [])
    assert sorted(p.name for p in (tmp_path / "deep").iterdir()) == store_files  # HDF5: + data
    with open_store(store_path, "r") as store:  # still a healthy store
        assert store.video_ids() == ["ok.mp4"]


def test_labels_import_into_store_refuses_ids_not_in_it(tmp_path, capsys):
    store_path = tmp_path / "s.zarr"
    with open_store(store_path, "a") as store:
        store.put_video("fly_01.mp4", source_path="/v/fly_01.mp4", relative_path="fly_01.mp4",
                        size_bytes=1, content_hash="h", timestamps=np.arange(250) / 25.0,
                        fps=25.0, width=8, height=8)
    source = _kabr(tmp_path / "k.csv", ["../../fly_01", str(tmp_path / "abs")])
    before = _files_under(tmp_path)
    assert main(["labels", "import", str(source), "--store", str(store_path)]) == 2
    assert "no video" in capsys.readouterr().err
    assert _files_under(tmp_path) == before
