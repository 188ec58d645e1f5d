"""The ``gui`` command: open napari with the prism-science workbench docked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
examples:
  prism-science gui                          an empty viewer with the workbench
  prism-science gui myproject/               a project folder (made one if it is not yet)
  prism-science gui myproject/ a.mp4 b.mp4   add videos to a project and open it
  prism-science gui a.mp4 b.mp4              videos without a project folder (sessions beside them)
  prism-science gui features.zarr            every video of a store with its labels and predictions

A project folder holds prism-project.json (the ethogram and the videos kept elsewhere), videos/,
features.zarr, sessions/ and probes/. One video is on the canvas at a time: PageUp / PageDown
or the Videos section switch. Keys: each behavior's key starts/stops a bout at the current
frame, Shift+key toggles the frame, Esc drops open bouts, Ctrl+Z undoes, Space plays at the
video's frame rate, + / - change the speed, Ctrl+Left / Ctrl+Right jump 10 frames, . / Enter /
Delete review (next, accept, reject). Labels autosave every second. Needs the napari extra:
pip install "prism-science[napari]".
"""

WIDGETS = ("Workbench", "Videos", "Ethogram", "Save and export labels", "Extract features",
           "Train and predict", "Review predictions", "Suggest frames", "Search by text")
"""Display names of the plugin's widgets (npe2 manifest); the workbench holds all the others."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``gui`` sub-command."""
    parser = subparsers.add_parser(
        "gui",
        help="label, train, predict and review in napari",
        description="Open napari with the prism-science workbench docked beside the video and "
        "the timeline under it: videos of the project, ethogram, extract features, train a "
        "probe, predict, review, search, save and export. Opens a project folder, videos or a "
        "feature store when given.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", nargs="*",
                        help="a project folder (then videos to add to it), video files, a "
                        "folder of videos, or a feature store (.zarr / .h5)")
    parser.add_argument("--widgets", default="Workbench",
                        help="comma-separated widget names to dock (default: Workbench, which "
                        "holds every other one), or 'all' for separate docks")
    parser.set_defaults(func=run)


def configure_napari() -> None:
    """Settings of napari for video work, made before the viewer exists.

    prism-science becomes napari's reader for video files (napari's builtin reader loads a
    whole video into memory; extensions the user mapped to another reader are left alone), and
    napari slices layers in a background thread (its ``experimental.async_`` setting), so a
    frame is decoded off the GUI thread while scrubbing and the window never stalls.
    """
    from napari.settings import get_settings

    from prism_science.video import VIDEO_EXTENSIONS

    settings = get_settings()
    mapping = dict(settings.plugins.extension2reader)
    wanted = {f"*{ext}": "prism-science" for ext in sorted(VIDEO_EXTENSIONS)}
    if any(pattern not in mapping for pattern in wanted):
        settings.plugins.extension2reader = {**wanted, **mapping}
    settings.experimental.async_ = True


def run(args: argparse.Namespace) -> int:
    """Start napari (imported here: the library never imports Qt); returns the exit code."""
    try:
        import napari
    except ImportError as exc:
        print(f"napari is not installed ({exc}); install the GUI with "
              "pip install 'prism-science[napari]'", file=sys.stderr)
        return 2
    from prism_science.errors import PrismError
    from prism_science.store import is_store

    raw = args.path if isinstance(args.path, list) else [args.path] if args.path else []
    paths = [Path(p) for p in raw]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"{missing[0]}: no such file or folder; give a project folder, videos or a "
              "feature store", file=sys.stderr)
        return 2
    wanted = WIDGETS if args.widgets == "all" else tuple(
        w.strip() for w in args.widgets.split(",") if w.strip())
    unknown = [w for w in wanted if w not in WIDGETS]
    if unknown:
        print(f"unknown widget(s) {unknown}; choose among {list(WIDGETS)}", file=sys.stderr)
        return 2
    if args.widgets == "all":
        wanted = WIDGETS[1:]
    configure_napari()
    viewer = napari.Viewer(title="prism-science")
    first = None
    for name in wanted:
        dock, _ = viewer.window.add_plugin_dock_widget("prism-science", name)
        if first is None:
            first = dock
        else:
            viewer.window._qt_window.tabifyDockWidget(first, dock)
    if first is not None:
        first.raise_()
    if "Workbench" in wanted:
        from napari_prism._workbench import video_first_layout

        video_first_layout(viewer)
    try:
        if len(paths) == 1 and is_store(paths[0]):
            viewer.open(str(paths[0]), plugin="prism-science")
        elif paths:
            from napari_prism._project import open_paths

            open_paths(viewer, paths)
    except (PrismError, OSError, ValueError) as exc:
        print(f"cannot open {' '.join(map(str, paths))}: {exc}", file=sys.stderr)
    napari.run()
    return 0
