"""The headless library never imports Qt or napari (STYLE.md), whatever module is imported."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import prism_science


def test_importing_every_library_module_loads_no_qt_or_napari():
    names = [m.name for m in pkgutil.walk_packages(prism_science.__path__, "prism_science.")
             if not m.name.endswith("__main__")]  # running it would start the CLI
    code = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari_prism'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"library modules pulled in GUI packages: {out.stdout}"
    assert len(names) > 20
