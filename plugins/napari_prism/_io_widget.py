"""Save, import and export labels (plain CSV, BORIS, NWB, DeepEthogram)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from prism_science.errors import LabelError, PrismError

from ._context import notify_error, notify_info
from ._link import link
from ._tasks import TaskPanel
from ._writer import export_session

if TYPE_CHECKING:
    import napari

__all__ = ["LabelsIOWidget"]

EXPORT_FORMATS = {
    "csv": ("plain interval CSV", ".csv"),
    "boris": ("BORIS project (opens in BORIS)", ".boris"),
    "boris-tabular": ("BORIS tabular events", ".boris.csv"),
    "nwb": ("NWB (TimeIntervals)", ".nwb"),
    "deepethogram": ("DeepEthogram per-frame CSV", ".deg.csv"),
}


class LabelsIOWidget(QWidget):
    """Buttons to save the session now, import label files and export the labels."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        layout = QVBoxLayout(self)
        self.where = QLabel("")
        self.where.setWordWrap(True)
        layout.addWidget(self.where)
        save = QPushButton("save now")
        save.setToolTip("the session also autosaves every second after a change")
        save.clicked.connect(self.save)
        layout.addWidget(save)
        load = QPushButton("import labels...")
        load.setToolTip("BORIS, plain CSV, NWB, DeepEthogram, JAABA, SimBA, CalMS21, ...")
        load.clicked.connect(self._import_dialog)
        layout.addWidget(load)
        row = QHBoxLayout()
        self.format = QComboBox()
        for key, (title, _) in EXPORT_FORMATS.items():
            self.format.addItem(title, key)
        row.addWidget(self.format, 1)
        export = QPushButton("export...")
        export.clicked.connect(self._export_dialog)
        row.addWidget(export)
        layout.addLayout(row)
        row = QHBoxLayout()
        self.include = {}
        for source in ("manual", "curated", "predictions"):
            box = QCheckBox(source)
            box.setChecked(source != "predictions")
            self.include[source] = box
            row.addWidget(box)
        layout.addLayout(row)
        self.fully_labeled = QCheckBox("whole video labeled (frames without a bout are negatives)")
        layout.addWidget(self.fully_labeled)
        self.task = TaskPanel()
        layout.addWidget(self.task)
        layout.addStretch(1)
        self.link.on_session_changed(self._update)
        self._update()

    def _update(self) -> None:
        session = self.link.session
        if session is None:
            self.where.setText("no video")
            return
        target = f"{session.store[0]} ({session.store[1]})" if session.store else session.path
        self.where.setText(f"labels autosave to {target}")

    def save(self) -> Path | None:
        """Save the current session now; returns where."""
        session = self.link.session
        if session is None:
            return None
        try:
            path = session.save()
        except (PrismError, OSError) as exc:
            notify_error(exc, "save")
            return None
        self.where.setText(f"saved {time.strftime('%H:%M:%S')} to {path}")
        return path

    def import_file(self, path: str | Path, format: str | None = None) -> int:
        """Add the labels of a file to the current session; returns the bouts added (0 on error).

        A file with several videos contributes the table named like the video file (stem).
        """
        from prism_science.labels import read_labels

        session = self.link.session
        if session is None:
            notify_error(LabelError("open a video before importing labels"))
            return 0
        try:
            tables = read_labels(path, format, fps=session.fps, n_frames=session.n_frames,
                                 timestamps=session.timestamps)
            if isinstance(tables, dict):
                stem = Path(session.video_path or "").stem
                if stem in tables:
                    table = tables[stem]
                elif len(tables) == 1:
                    table = next(iter(tables.values()))
                else:
                    raise LabelError(f"{path}: holds labels of videos {sorted(tables)[:8]}, none "
                                     f"named {stem!r}; export the labels of this video alone")
            else:
                table = tables
            added = session.add_table(table)
        except (PrismError, OSError) as exc:
            notify_error(exc, f"importing {Path(path).name}")
            return 0
        notify_info(f"imported {added} bouts from {Path(path).name}")
        return added

    def export(
        self, path: str | Path, format: str | None = None, *, background: bool = False,
    ) -> Path | None:
        """Export the current session's labels (the sources ticked below) to ``path``.

        With ``background`` the file is written in a worker (NWB takes seconds) and None is
        returned; the panel below shows when it is done, a failure is a notification.
        """
        session = self.link.session
        if session is None:
            return None
        sources: list[str] = [s for s in ("manual", "curated") if self.include[s].isChecked()]
        if self.include["predictions"].isChecked():
            sources += list(session.predictions)
        args = (session, path, format or self.format.currentData(), tuple(sources),
                self.fully_labeled.isChecked())
        if background:
            self.task.run(_export_task, *args, what=f"exporting {Path(path).name}",
                          on_result=self._exported)
            return None
        try:
            written = export_session(*args)
        except (PrismError, OSError) as exc:
            notify_error(exc, "export")
            return None
        self._exported(written)
        return written

    def _exported(self, written: Path) -> None:
        self.task.status.setText(f"exported {written}")
        notify_info(f"exported labels to {written}")

    def _import_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import labels")
        if path:
            self.import_file(path)

    def _export_dialog(self) -> None:
        session = self.link.session
        if session is None:
            return
        key = self.format.currentData()
        stem = Path(session.video_path or "labels").with_suffix("")
        default = str(stem) + EXPORT_FORMATS[key][1]
        path, _ = QFileDialog.getSaveFileName(self, "Export labels", default)
        if path:
            self.export(path, key, background=True)


def _export_task(session, path, format, sources, fully_labeled, *, cancel_event):  # noqa: ANN001
    """Worker: :func:`export_session` off the GUI thread."""
    yield 0, 1, f"writing {Path(path).name}"
    written = export_session(session, path, format, sources, fully_labeled)
    yield 1, 1, f"wrote {Path(written).name}"
    return written
