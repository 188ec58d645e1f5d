"""Installed from a wheel, away from the repository, training writes under the working directory.

The wheel is built from a clean copy of the repository's files (what git tracks, plus new files
it does not ignore) and installed into a fresh virtual environment outside the repository. The
project's environment lends only the dependencies: its site-packages folder is added by a
``.pth`` path line, which does not run the editable install's import hook, so neither the
checkout nor the editable install can be imported by accident (checked).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _copy_sources(dest: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        src = REPO_ROOT / name
        if src.is_file():  # a file deleted in the working tree stays listed until committed
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A fresh venv holding the wheel; returns its folder and the environment to run it in."""
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("needs a git checkout of the repository to build the wheel from")
    root = tmp_path_factory.mktemp("wheel_install")
    source, dist, venv = root / "source", root / "dist", root / "venv"
    _copy_sources(source)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
          "-w", str(dist), str(source)], root, env)
    (wheel,) = dist.glob("prism_science-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], root, env)
    python = venv / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                         "['purelib'])"], root, env).strip())
    (purelib / "project_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], root, env)
    return venv, env


def test_wheel_trains_stage1_test_in_the_working_directory(installed, tmp_path: Path) -> None:
    venv, env = installed
    work = tmp_path / "work"
    work.mkdir()
    where = _run([str(venv / "bin" / "python"), "-c",
                  "import prism_science, prism_training; "
                  "print(prism_science.__file__); print(prism_training.__file__)"], work, env)
    for module_file in where.split():
        assert Path(module_file).is_relative_to(venv), where  # not the checkout, not editable
        assert not Path(module_file).is_relative_to(REPO_ROOT), where
    before = _files(venv)
    cli = str(venv / "bin" / "prism-science")
    _run([cli, "synth", "--n-videos", "3", "--out", "runs/test/synth", "--size", "32",
          "--seconds", "2"], work, env)
    _run([cli, "pretrain", "windows", "--config", "stage1_test"], work, env)
    out = _run([cli, "pretrain", "stage1", "--config", "stage1_test"], work, env)

    run = work / "runs" / "test" / "stage1"
    assert f"stage1 finished at step 4 in {run}" in out
    for name in ("train_config.json", "checkpoint.pt", "log.jsonl", "tokenizer.model",
                 "final/model.safetensors", "final/config.json"):
        assert (run / name).is_file(), name
    saved = json.loads((run / "train_config.json").read_text())
    assert saved["out_dir"] == str(run)
    assert saved["manifest"] == str(work / "runs" / "test" / "windows.jsonl")
    assert saved["cache_dir"] == str(work / "runs" / "test" / "cache")
    assert sorted(p.name for p in work.iterdir()) == ["runs"]
    assert _files(venv) == before, "the run wrote into the install location"
