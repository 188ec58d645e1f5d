"""Probe folders and stores that do not fit together: `probe predict` says so.

An `mlp` probe folder holding a linear probe's `solver`, a probe folder without feature
provenance applied to another model's features, and a store where one video's features are
incomplete (whatever its name sorts as).
"""

from __future__ import annotations

import json

import pytest

from prism_science.cli.main import main
from prism_science.errors import ProbeError
from prism_science.probes.io import load_probe
from prism_science.store import open_store
from tests.pipeline.conftest import make_store

ROBUSTNESS_TITLE = "Probe folders that do not fit the store"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| an `mlp` probe folder whose `params` hold a linear probe's `solver` | `ProbeError` naming
  `probe.json`, `params` and `solver`; `probe predict` exit 2, no traceback |
| predicting features of other weights than the probe's | exit 2 naming the video and
  `weights_sha256` |
| a probe folder without `feature_provenance` predicting another model's features | predicts
  (nothing to check against), with a warning naming `probe.json`, the missing field and what it
  means |
| one video's features incomplete, whether it sorts first, middle or last | `probe predict`
  exits 2 "nothing was written", naming it and the `--video-id` of the others; no video gets
  predictions |
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store of 3 videos whose v2 comes from other weights, and a probe trained on v0, v1."""
    folder = tmp_path_factory.mktemp("probe")
    store_path = folder / "s.zarr"
    make_store(store_path, n_videos=3, labeled=2, shas={2: "d" * 64})
    probe = folder / "probe"
    assert main(["probe", "train", "--store", str(store_path), "--labels", "manual", "--out",
                 str(probe), "--video-id", "v0", "v1", "--max-epochs", "20"]) == 0
    return store_path, probe


def _edited(probe, tmp_path, edit):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(probe, copy)
    meta = json.loads((copy / "probe.json").read_text())
    edit(meta)
    (copy / "probe.json").write_text(json.dumps(meta))
    return copy


def test_mlp_folder_with_a_solver_names_the_field(trained, tmp_path, capsys):
    store_path, probe = trained
    folder = _edited(probe, tmp_path, lambda m: (m.__setitem__("kind", "mlp"),
                                                 m["params"].__setitem__("solver", "lbfgs")))
    with pytest.raises(ProbeError, match="solver") as info:
        load_probe(folder)
    assert "probe.json" in str(info.value) and "'params'" in str(info.value)
    capsys.readouterr()
    assert main(["probe", "predict", "--probe", str(folder), "--store", str(store_path),
                 "--video-id", "v0"]) == 2
    err = capsys.readouterr().err
    assert "solver" in err and "Traceback" not in err


def test_another_models_features_are_refused(trained, capsys):
    store_path, probe = trained
    capsys.readouterr()
    assert main(["probe", "predict", "--probe", str(probe), "--store", str(store_path),
                 "--video-id", "v2"]) == 2
    err = capsys.readouterr().err
    assert "weights_sha256" in err and "v2" in err


def test_probe_without_provenance_warns_loudly(trained, tmp_path, capsys, caplog):
    store_path, probe = trained
    folder = _edited(probe, tmp_path, lambda m: m.pop("feature_provenance"))
    capsys.readouterr()
    with caplog.at_level("WARNING"):
        code = main(["probe", "predict", "--probe", str(folder), "--store", str(store_path),
                     "--video-id", "v2", "--name", "unchecked"])
    assert code == 0  # nothing to check against: predicted, but not silently
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("feature_provenance" in w and "probe.json" in w and "another model" in w
               for w in warnings), warnings


@pytest.mark.parametrize("incomplete", [0, 1, 2])
def test_one_incomplete_video_writes_nothing_whatever_its_name(tmp_path, capsys, incomplete):
    store_path = tmp_path / "s.zarr"
    make_store(store_path, n_videos=3, labeled=3, incomplete=(incomplete,))
    probe = tmp_path / "probe"
    others = [f"v{v}" for v in range(3) if v != incomplete]
    assert main(["probe", "train", "--store", str(store_path), "--labels", "manual", "--out",
                 str(probe), "--video-id", *others, "--max-epochs", "10"]) == 0
    capsys.readouterr()
    assert main(["probe", "predict", "--probe", str(probe), "--store", str(store_path)]) == 2
    err = capsys.readouterr().err
    assert f"'v{incomplete}' are incomplete" in err and "nothing was written" in err
    assert f"--video-id {' '.join(others)}" in err
    with open_store(store_path, mode="r") as store:
        assert not any(store.list_items(f"v{v}", "predictions") for v in range(3))
