"""The workbench: every section of the plugin in one narrow dock, one section open at a time,
so the video stays big (1280x800 and up) with the timeline under it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QScrollArea, QSizePolicy, QToolBox, QVBoxLayout, QWidget

from ._link import link

if TYPE_CHECKING:
    import napari

__all__ = ["SECTIONS", "WorkbenchWidget", "video_first_layout"]

SECTIONS = ("Videos", "Ethogram", "Extract features", "Train and predict", "Review",
            "Suggest frames", "Search by text", "Save and export")
"""Titles of the sections, in order."""

WIDTH = 360
"""Width of the dock in pixels at first: 28% of a 1280 px wide window."""


class WorkbenchWidget(QWidget):
    """The plugin's widgets as the sections of one dock (see :data:`SECTIONS`)."""

    def __init__(self, napari_viewer: napari.Viewer, parent: QWidget | None = None) -> None:
        from ._ethogram import EthogramWidget
        from ._extract_widget import ExtractWidget
        from ._io_widget import LabelsIOWidget
        from ._probe_widget import ProbeWidget
        from ._project import VideoListWidget
        from ._review_widget import ReviewWidget
        from ._search_widget import SearchWidget
        from ._suggest_widget import SuggestWidget

        super().__init__(parent)
        self.viewer = napari_viewer
        self.link = link(napari_viewer)
        kinds = (VideoListWidget, EthogramWidget, ExtractWidget, ProbeWidget, ReviewWidget,
                 SuggestWidget, SearchWidget, LabelsIOWidget)
        self.sections: dict[str, QWidget] = {}
        self.toolbox = QToolBox()
        for title, kind in zip(SECTIONS, kinds, strict=True):
            widget = kind(napari_viewer)
            scroll = QScrollArea()
            scroll.setWidgetResizable(True)
            scroll.setWidget(widget)
            scroll.setFrameShape(QScrollArea.NoFrame)
            self.toolbox.addItem(scroll, title)
            self.sections[title] = widget
        self.toolbox.setCurrentIndex(SECTIONS.index("Ethogram"))
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.toolbox)
        self.setMinimumWidth(WIDTH - 60)
        self.setMaximumWidth(2 * WIDTH)  # drag the dock's edge for wide tables
        self.setSizePolicy(QSizePolicy.Preferred, QSizePolicy.Expanding)
        self.link.keep_keyboard(self)

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt API
        """:data:`WIDTH` wide: the dock opens narrow, whatever its sections would like."""
        return QSize(WIDTH, super().sizeHint().height())

    def open_section(self, title: str) -> QWidget:
        """Open the section called ``title`` and return its widget."""
        self.toolbox.setCurrentIndex(SECTIONS.index(title))
        return self.sections[title]


def video_first_layout(viewer: napari.Viewer) -> None:
    """Room for the video: napari's layer controls and layer list are hidden (*Window* menu
    brings them back), so the canvas, the workbench and the timeline share the window; the
    workbench takes the window's whole height, the timeline the width under the canvas."""
    qt_viewer = viewer.window._qt_viewer
    for dock in (qt_viewer.dockLayerControls, qt_viewer.dockLayerList):
        dock.setVisible(False)
    window = viewer.window._qt_window
    window.setCorner(Qt.BottomRightCorner, Qt.RightDockWidgetArea)
    window.setCorner(Qt.TopRightCorner, Qt.RightDockWidgetArea)
