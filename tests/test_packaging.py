"""The wheel ships exactly three import names and every package folder of the repository."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PACKAGE_ROOTS = {
    "prism_science": REPO_ROOT / "prism_science",
    "prism_training": REPO_ROOT / "training",
    "napari_prism": REPO_ROOT / "plugins" / "napari_prism",
}


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory) -> list[str]:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = out.glob("prism_science-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def test_wheel_has_exactly_three_import_names(wheel_names):
    top_level = {name.split("/")[0] for name in wheel_names if ".dist-info" not in name}
    assert top_level == set(PACKAGE_ROOTS)


def test_wheel_contains_every_package_folder(wheel_names):
    shipped = {str(Path(name).parent) for name in wheel_names if name.endswith("__init__.py")}
    for import_name, root in PACKAGE_ROOTS.items():
        for init in root.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            relative = init.parent.relative_to(root)
            expected = str(Path(import_name) / relative) if str(relative) != "." else import_name
            assert expected in shipped, f"{expected} missing from the wheel: list it in pyproject"


def test_wheel_ships_napari_manifest_and_console_script(wheel_names):
    assert "napari_prism/napari.yaml" in wheel_names
    entry_points = next(n for n in wheel_names if n.endswith("entry_points.txt"))
    assert entry_points


def test_napari_manifest_name_is_the_distribution_name():
    import yaml

    manifest = yaml.safe_load((PACKAGE_ROOTS["napari_prism"] / "napari.yaml").read_text())
    assert manifest["name"] == "prism-science"
