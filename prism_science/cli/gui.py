"""The ``gui`` command: open napari with the prism-science plugin docked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  prism-science gui                      an empty viewer with the plugin's widgets
  prism-science gui session1.mp4         a video, its labels (autosaved beside it) and timeline
  prism-science gui features.zarr        every video of a store with its labels and predictions

Keys: each behavior's key starts/stops a bout at the current frame, Shift+key toggles the
frame, Esc drops open bouts, Ctrl+Z undoes. Labels autosave every second. Needs the napari
extra: pip install "prism-science[napari]".
"""

WIDGETS = ("Ethogram", "Save and export labels", "Extract features", "Train and predict",
           "Review predictions", "Suggest frames", "Search by text")
"""Display names of the plugin's widgets (npe2 manifest), in docking order."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gui`` sub-command."""
    parser = subparsers.add_parser(
        "gui",
        help="label, train, predict and review in napari",
        description="Open napari with the prism-science plugin docked: the ethogram and its "
        "timeline under the video, and widgets to extract features, train a probe, predict, "
        "review and search. Opens a video file or a feature store when given.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", nargs="?", help="a video file or a feature store (.zarr / .h5)")
    parser.add_argument("--widgets", default="all",
                        help="comma-separated widget names to dock, or 'all' (default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Start napari (imported here: the library never imports Qt); returns the exit code."""
    try:
        import napari
    except ImportError as exc:
        print(f"napari is not installed ({exc}); install the GUI with "
              "pip install 'prism-science[napari]'", file=sys.stderr)
        return 2
    from prism_science.errors import PrismError

    path = Path(args.path) if args.path else None
    if path is not None and not path.exists():
        print(f"{path}: no such file or folder; give a video file or a feature store",
              file=sys.stderr)
        return 2
    viewer = napari.Viewer(title="prism-science")
    wanted = WIDGETS if args.widgets == "all" else tuple(
        w.strip() for w in args.widgets.split(",") if w.strip())
    unknown = [w for w in wanted if w not in WIDGETS]
    if unknown:
        print(f"unknown widget(s) {unknown}; choose among {list(WIDGETS)}", file=sys.stderr)
        return 2
    first = None
    for name in wanted:
        dock, _ = viewer.window.add_plugin_dock_widget("prism-science", name)
        if first is None:
            first = dock
        else:
            viewer.window._qt_window.tabifyDockWidget(first, dock)
    if first is not None:
        first.raise_()
    if path is not None:
        try:
            viewer.open(str(path), plugin="prism-science")
        except (PrismError, OSError, ValueError) as exc:
            print(f"cannot open {path}: {exc}", file=sys.stderr)
    napari.run()
    return 0
