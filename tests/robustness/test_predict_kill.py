"""`probe predict` into a Zarr store killed at every write.

The store holds three videos with features and labels, and an earlier prediction set
``first`` of v0 and v1; the run predicts v0. A child process runs ``prism-science probe
predict`` and dies
(``os._exit``) just before its N-th file-system change inside the store, for every N: once
writing a new set ``second``, once writing ``first`` again with another probe. After each kill
the store opens; the features, the labels and every prediction set the run does not write equal
the reference; each video's set being written reads as the old one whole, the new one whole, or
is refused by :func:`load_predictions` as interrupted (never scores of one run with the binary of
another); and a rerun exits 0 with every set equal to the uninterrupted run.
"""

from __future__ import annotations

import shutil

import pytest

from prism_science.cli.main import main
from prism_science.errors import ProbeError
from prism_science.pipeline.predict import WRITE_ID, load_predictions
from prism_science.store import open_store
from tests.pipeline.conftest import make_store
from tests.robustness.killpoints import FINISHED, KILLED, count_changes, kill_points

ROBUSTNESS_TITLE = "Predictions killed at every write"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| `probe predict` of one video into a Zarr store whose videos hold an earlier prediction set
  (slow), killed
  (`os._exit`) before its N-th file-system change, for every N: writing a new set `second`, and
  writing the set `first` again with another probe | the store opens; features, labels and the
  sets not written equal the reference; each video's set reads as the old one whole or the new
  one whole, or `load_predictions` refuses it as interrupted (naming the video and the set; it
  used to return new scores with the old binary); the rerun exits 0 and every set equals the
  uninterrupted run |
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict_kill")
    store = folder / "template.zarr"
    make_store(store, n_videos=4, labeled=3)
    probes = {}
    for name, kind in (("linear", "linear"), ("mlp", "mlp")):
        probes[name] = folder / name
        assert main(["probe", "train", "--store", str(store), "--labels", "manual", "--out",
                     str(probes[name]), "--kind", kind, "--video-id", "v0", "v1", "v2",
                     "--max-epochs", "5"]) == 0
    assert main(["probe", "predict", "--probe", str(probes["linear"]), "--store", str(store),
                 "--name", "first", "--video-id", "v0", "v1"]) == 0
    return store, probes


def _sets(path) -> dict:
    """(video, set) -> (scores, binary, attrs without the write id) or "interrupted"."""
    out = {}
    with open_store(path, "r") as store:
        for video_id in store.video_ids():
            for name in store.list_items(video_id, "predictions"):
                try:
                    scores, binary, attrs = load_predictions(store, video_id, name)
                except ProbeError as exc:  # refused: interrupted, or not begun (no scores)
                    assert video_id in str(exc) and name in str(exc), exc
                    assert "interrupted" in str(exc) or "has no predictions" in str(exc), exc
                    out[(video_id, name)] = "interrupted"
                    continue
                attrs = {k: v for k, v in attrs.items() if k != WRITE_ID}
                out[(video_id, name)] = (scores.tolist(), binary.tolist(), attrs)
    return out


def _others(path) -> dict:
    """Features and label sets (other than predicted/) of every video."""
    out = {}
    with open_store(path, "r") as store:
        for video_id in store.video_ids():
            for key in store.feature_keys(video_id):
                out[(video_id, key)] = (store.feature_status(video_id, key),
                                        store.read_features(video_id, key).values.tolist())
            if store.has_item(video_id, "labels/manual"):
                out[(video_id, "manual")] = store.read_json(video_id, "labels/manual")
    return out


@pytest.mark.slow
@pytest.mark.parametrize("case", ["new set", "same set"])
def test_probe_predict_killed_at_every_write(setup, tmp_path, case, record_property):
    source, probes = setup
    probe, name = (probes["mlp"], "second") if case == "new set" else (probes["mlp"], "first")
    args = ["probe", "predict", "--probe", str(probe), "--name", name, "--video-id", "v0",
            "--store"]
    before, others = _sets(source), _others(source)
    reference = tmp_path / "reference.zarr"
    shutil.copytree(source, reference)
    n_changes = count_changes(lambda: main([*args, str(reference)]), reference)
    expected = _sets(reference)
    assert n_changes >= 8 and expected != before
    record_property("faults", n_changes)
    target = tmp_path / "s.zarr"

    def prepare():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)

    codes, outcomes = [], set()
    for n, code in kill_points(lambda: main([*args, str(target)]), target, prepare=prepare):
        codes.append(code)
        after = _sets(target)  # the store opens, every set reads or is refused as interrupted
        assert _others(target) == others, f"change {n}"
        for key, value in after.items():
            if key[1] != name:
                assert value == before[key], f"change {n}: {key} changed"
            elif value != "interrupted":
                whole = [label for label, run in (("old", before), ("new", expected))
                         if run.get(key) == value]
                assert whole, f"change {n}: {key} is a mix of two runs"
                outcomes.add(whole[-1])
            else:
                outcomes.add(value)
        assert main([*args, str(target)]) == 0, f"rerun after change {n}"
        assert _sets(target) == expected, f"rerun after change {n}"
    assert codes.count(KILLED) == n_changes and codes[-1] == FINISHED
    assert {"new", "interrupted"} <= outcomes
