"""Probe folders survive a kill at every write of a save, and edited probe.json files are refused.

A child process retrains "into" a folder holding a good probe and is killed (``os._exit``)
just before its N-th file-system change, for every N of the save; after each kill the folder
must load as the old probe or the new one (never an error, never a mix), and a rerun of the
save must finish the job.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import ProbeError
from prism_science.probes import LinearProbe, MLPProbe, io, load_probe, save_probe

ROBUSTNESS_TITLE = "Probe saves killed at every write"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| a child retraining into a folder that holds a good probe is killed (`os._exit`) before its
  N-th file-system change, for every N of the save, with the atomic folder exchange (Linux) and
  with the two-rename fallback | after each kill the folder loads as the old probe (before the
  swap) or the new one (after), never an error or a mix; `validation.json` beside it kept; a
  rerun of the save completes; no hidden temporary folders left |
| `save_probe` onto a path that is a file | `ProbeError: ... is a file` |
| `probe.json` edited: `kind` changed to `mlp`/`attention`/`temporal` (a linear probe's `solver`
  left in `params`), an unknown kind, a number; `params` not an object; a bad `classes_dtype`;
  `n_features_in` as text; `training` null; thresholds as text; `format_version` as text;
  `weights_file` `../../etc/passwd`; a JSON list | `ProbeError` naming `probe.json` and the
  field; `probe predict` prints it on one line, exit 2, no traceback |
"""

# Every function through which save_probe changes the file system.
WRITE_POINTS = ("save_file", "_write_file", "_fsync", "_carry_over", "_rename", "_exchange")
KILLED, FINISHED = 17, 3


@pytest.fixture(scope="module")
def probes():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    y = np.zeros((60, 2), np.int64)
    y[:30, 0], y[30:, 1] = 1, 1
    old = LinearProbe(max_epochs=3, random_state=0).fit(X, y, behavior_names=["a", "b"])
    new = MLPProbe(hidden_sizes=(4,), max_epochs=3, random_state=1).fit(
        X, y[:, ::-1], behavior_names=["c", "d"])
    return X, old, new


def _save_until(probe, target, n_kill: int) -> int:
    """Save in a forked child that dies just before its ``n_kill``-th write; the exit code."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        try:
            count = [0]
            for name in WRITE_POINTS:
                original = getattr(io, name)
                if original is None:
                    continue

                def hooked(*args, _original=original, **kwargs):
                    count[0] += 1
                    if count[0] == n_kill:
                        os._exit(KILLED)
                    return _original(*args, **kwargs)

                setattr(io, name, hooked)
            save_probe(probe, target)
            os._exit(FINISHED)
        except BaseException:  # noqa: BLE001 - report as a distinct exit code
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _same(a, b, X) -> bool:
    return a.classes_.tolist() == b.classes_.tolist() and np.allclose(
        a.predict_proba(X), b.predict_proba(X), atol=1e-6)


@pytest.mark.parametrize("exchange", ["atomic", "two renames"])
def test_kill_at_every_write_keeps_a_loadable_probe(tmp_path, probes, monkeypatch, exchange):
    X, old, new = probes
    if exchange == "two renames":  # the path taken where no atomic folder swap exists
        monkeypatch.setattr(io, "_exchange", None)
    elif io._exchange is None:
        pytest.skip("no atomic folder exchange on this system")
    good = save_probe(old, tmp_path / "good")
    (good / "validation.json").write_text('{"f1": 0.5}')  # another file of the probe folder
    outcomes = []
    for n_kill in range(1, 40):
        target = tmp_path / "probe"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(good, target)
        code = _save_until(new, target, n_kill)
        assert code in (KILLED, FINISHED), f"the save crashed (exit {code}) at write {n_kill}"
        loaded = load_probe(target)  # never an error
        is_old, is_new = _same(loaded, old, X), _same(loaded, new, X)
        assert is_old or is_new, f"a mix of two probes after a kill at write {n_kill}"
        assert (target / "validation.json").read_text() == '{"f1": 0.5}'
        outcomes.append("old" if is_old else "new")
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".probe.old")], \
            "load_probe leaves no old copy behind"
        save_probe(new, target)  # the rerun completes
        assert _same(load_probe(target), new, X)
        if code == FINISHED:
            break
    else:
        pytest.fail("the save never finished")
    # the probe stays the old one until the swap, then is the new one
    assert outcomes[0] == "old" and outcomes[-1] == "new"
    assert outcomes == sorted(outcomes, key=["old", "new"].index)
    assert len(outcomes) >= 5
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_save_into_a_file_path_is_refused(tmp_path, probes):
    _, old, _ = probes
    (tmp_path / "p").write_text("not a folder")
    with pytest.raises(ProbeError, match="is a file"):
        save_probe(old, tmp_path / "p")


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    from tests.probes.test_probe_cli import build_store

    path = tmp_path_factory.mktemp("store") / "s.zarr"
    build_store(path, n_videos=1, labeled_videos=1)
    return path


@pytest.mark.parametrize("change, field", [
    ({"kind": "mlp"}, "kind"),  # a linear probe's solver parameter
    ({"kind": "attention"}, "kind"),
    ({"kind": "temporal"}, "kind"),
    ({"kind": "forest"}, "kind"),
    ({"kind": 3}, "kind"),
    ({"params": ["x"]}, "params"),
    ({"classes_dtype": "not-a-dtype"}, "classes"),
    ({"n_features_in": "six"}, "n_features_in"),
    ({"training": None}, "training"),
    ({"thresholds": ["x", "y"]}, "thresholds"),
    ({"format_version": "1"}, "format"),
    ({"weights_file": "../../etc/passwd"}, "weights_file"),
    (None, "JSON object"),
])
def test_edited_probe_json_gives_a_message_naming_the_field(tmp_path, probes, change, field,
                                                            store_path, capsys):
    X, old, _ = probes
    folder = save_probe(old, tmp_path / "p")
    meta_path = folder / "probe.json"
    meta = json.loads(meta_path.read_text())
    meta = [meta] if change is None else {**meta, **change}
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ProbeError, match=field) as info:
        load_probe(folder)
    assert "probe.json" in str(info.value)
    # the CLI says so in one line and exit code 2, without a traceback
    assert main(["probe", "predict", "--probe", str(folder), "--store", str(store_path)]) == 2
    err = capsys.readouterr().err
    assert "probe.json" in err and field in err and "Traceback" not in err
