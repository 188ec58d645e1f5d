"""sample_data/ ships each clip with its license and a checksum that matches the file."""

from __future__ import annotations

import hashlib

from tests.conftest import REPO_ROOT

SAMPLE_DATA = REPO_ROOT / "sample_data"


def test_every_listed_file_matches_its_checksum():
    lines = (SAMPLE_DATA / "SHA256SUMS").read_text().splitlines()
    assert lines
    for line in lines:
        digest, name = line.split(maxsplit=1)
        data = (SAMPLE_DATA / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest, f"{name} changed: update SHA256SUMS"


def test_every_sample_folder_has_a_license_and_a_source_note():
    folders = [p for p in SAMPLE_DATA.iterdir() if p.is_dir()]
    assert folders
    for folder in folders:
        assert (folder / "LICENSE").is_file(), f"{folder} has no LICENSE"
        assert (folder / "SOURCE.md").is_file(), f"{folder} has no SOURCE.md"
