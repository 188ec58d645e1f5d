"""File > Save Selected Layers writes a video layer's labels with the plugin's writers, with the
dialog's default filter and default name too, and never over the video."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from qtpy.QtWidgets import QFileDialog

from napari_prism._link import link


@pytest.fixture
def labeled(make_napari_viewer, video):
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    session = link(viewer).session
    session.add_behavior("walk")
    session.set_range("walk", 3, 9)
    return viewer, session


def save_selected(viewer, monkeypatch, folder: Path, name: str | None = None,
                  filter_index: int = 0) -> list[str]:
    """File > Save Selected Layers... as a user who accepts the dialog: the proposed name (or
    ``name``) in ``folder``, the default (first) filter or another one."""
    seen = {}

    def dialog(self, parent, caption, directory, filter, options):
        seen["filters"] = filter.split(";;")
        return str(folder / (name or Path(directory).name)), seen["filters"][filter_index]

    monkeypatch.setattr(QFileDialog, "getSaveFileName", dialog)
    viewer.window._qt_viewer._save_layers_dialog(selected=True)
    return seen["filters"]


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_default_filter_and_name_write_a_csv_beside_never_over_the_video(
        labeled, monkeypatch, video):
    viewer, session = labeled
    before = video.read_bytes()
    filters = save_selected(viewer, monkeypatch, video.parent)  # proposed name: "clip.mp4"
    assert filters[0].startswith("prism-science behavior labels (plain interval CSV)")
    assert video.read_bytes() == before  # the video is untouched
    written = video.with_suffix(".csv")
    assert [(r["behavior"], r["start_frame"], r["end_frame"]) for r in rows(written)] == [
        ("walk", "3", "9")]


def test_typed_names_get_the_writers_extension(labeled, monkeypatch, tmp_path):
    viewer, _ = labeled
    out = tmp_path / "out"
    out.mkdir()
    save_selected(viewer, monkeypatch, out, "labels")
    save_selected(viewer, monkeypatch, out, "mine.csv")
    save_selected(viewer, monkeypatch, out, "session", filter_index=1)  # the NWB filter
    assert sorted(p.name for p in out.iterdir()) == ["labels.csv", "mine.csv", "session.nwb"]
    assert rows(out / "mine.csv")[0]["behavior"] == "walk"
    assert (out / "session.nwb").read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"
