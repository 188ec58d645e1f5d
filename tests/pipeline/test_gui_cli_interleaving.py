"""The plugin and the CLI on one store, in either order: one training path, one layout.

The plugin's worker functions (``napari_prism._probe_widget.train_task`` / ``predict_task``)
are plain generators; they run here without a display. The widget itself is exercised in
tests/plugin/test_qt_workflow.py.
"""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from prism_science.cli.main import main
from prism_science.errors import ProbeError
from prism_science.pipeline import load_predictions, load_trained_probe, save_trained_probe
from prism_science.session import LabelingSession
from prism_science.store import open_store

from .conftest import BEHAVIORS, MODEL, N_FRAMES, make_store

pytest.importorskip("qtpy")
probe_widget = pytest.importorskip("napari_prism._probe_widget")

PARAMS = {"max_epochs": 30}
POST = {"min_bout": 2, "max_gap": 1}


def run_task(task, *args):
    """Drive a worker generator to its end, as napari's thread worker does; its result."""
    steps = task(*args, cancel_event=threading.Event())
    try:
        while True:
            next(steps)
    except StopIteration as stop:
        return stop.value


def session_tables(store_path, video_ids, fully_labeled=True):
    """What the widget passes: each video's session as a label table."""
    return {v: LabelingSession.from_store(store_path, v).to_table(
        ("manual", "curated"), fully_labeled=fully_labeled, video_id=v) for v in video_ids}


def gui_train(store_path, video_ids, kind="linear", key=f"{MODEL}/mean"):
    return run_task(probe_widget.train_task, store_path, session_tables(store_path, video_ids),
                    key, kind, PARAMS, POST)


def test_gui_training_then_cli_prediction(tmp_path, capsys):
    store_path = tmp_path / "s.zarr"
    make_store(store_path)
    result = gui_train(store_path, ["v0", "v1", "v2"])
    assert "validation" in probe_widget.format_metrics(result)
    # "predict store" in the GUI writes predictions/probe; the session of a video opened from
    # the store autosaves its own predictions there too.
    gui = run_task(probe_widget.predict_task, result.probe, store_path,
                   ["v0", "v1", "v2", "v3"], f"{MODEL}/mean", "probe", True)
    session = LabelingSession.from_store(store_path, "v3")
    found = gui[(str(store_path), "v3")]
    session.set_predictions("probe", found.behaviors, found.scores, found.thresholds,
                            found.postprocess)
    session.save()
    folder = save_trained_probe(result.probe, tmp_path / "probe")  # the widget's "save probe"

    rc = main(["probe", "predict", "--probe", str(folder), "--store", str(store_path)])
    assert rc == 0, capsys.readouterr().err
    with open_store(store_path, mode="r") as store:
        for video_id in ("v0", "v1", "v2", "v3"):
            scores, binary, attrs = load_predictions(store, video_id, "probe")
            np.testing.assert_allclose(scores, gui[(str(store_path), video_id)].scores,
                                       atol=1e-6)
            np.testing.assert_array_equal(binary, gui[(str(store_path), video_id)].binary)
            assert attrs["behaviors"] == BEHAVIORS and attrs["postprocess"] == POST
            assert attrs["probe_dir"] == str(folder)
    assert main(["probe", "evaluate", "--store", str(store_path), "--labels", "manual",
                 "--predictions", "probe", "--out", str(tmp_path / "report")]) == 0


def test_cli_training_then_gui_prediction_and_session(tmp_path, capsys):
    store_path = tmp_path / "s.zarr"
    make_store(store_path)
    folder = tmp_path / "probe"
    assert main(["probe", "train", "--store", str(store_path), "--labels", "manual", "--out",
                 str(folder), "--max-epochs", "30", "--min-bout", "2", "--max-gap", "1"]) == 0
    assert main(["probe", "predict", "--probe", str(folder), "--store", str(store_path)]) == 0
    with open_store(store_path, mode="r") as store:
        cli_binary = store.read_array("v1", "predictions/probe/binary")

    probe = load_trained_probe(folder)  # the widget's "load probe"
    gui = run_task(probe_widget.predict_task, probe, store_path, ["v0", "v1", "v2", "v3"],
                   None, "probe", True)
    np.testing.assert_array_equal(gui[(str(store_path), "v1")].binary, cli_binary)
    # A video opened from the store shows the saved bouts; editing and saving it keeps the
    # layout, so the CLI can still write over it and the session still reads it.
    session = LabelingSession.from_store(store_path, "v1")
    np.testing.assert_array_equal(session.predictions["probe"].binary(), cli_binary)
    session.set_predictions("probe", BEHAVIORS, np.full((N_FRAMES, 3), 0.9, np.float32),
                            0.5, POST)
    session.set_range("walk", 130, 140)
    session.save()
    assert main(["probe", "predict", "--probe", str(folder), "--store", str(store_path),
                 "--video-id", "v1"]) == 0, capsys.readouterr().err
    again = LabelingSession.from_store(store_path, "v1")
    np.testing.assert_array_equal(again.predictions["probe"].binary(), cli_binary)
    assert (130, 140) in [(b.start_frame, b.end_frame) for b in again.bouts("manual")]


def test_old_single_array_predictions_are_read_then_replaced(tmp_path, capsys):
    store_path = tmp_path / "s.zarr"
    make_store(store_path, n_videos=2, labeled=2)
    proba = np.linspace(0, 1, N_FRAMES * 3, dtype=np.float32).reshape(N_FRAMES, 3)
    with open_store(store_path, mode="a") as store:  # what the plugin wrote before
        store.write_array("v0", "predictions/probe", proba,
                          {"classes": BEHAVIORS, "thresholds": [0.5, 0.6, 0.7],
                           "postprocess": POST, "key": f"{MODEL}/mean"})
        scores, binary, attrs = load_predictions(store, "v0", "probe")
    np.testing.assert_array_equal(scores, proba)
    assert attrs["behaviors"] == BEHAVIORS and binary[-1].tolist() == [1, 1, 1]
    session = LabelingSession.from_store(store_path, "v0")
    np.testing.assert_array_equal(session.predictions["probe"].binary(), binary)
    assert main(["probe", "evaluate", "--store", str(store_path), "--labels", "manual",
                 "--predictions", "probe", "--out", str(tmp_path / "r")]) == 0

    result = gui_train(store_path, ["v0", "v1"])
    folder = save_trained_probe(result.probe, tmp_path / "probe")
    assert main(["probe", "predict", "--probe", str(folder), "--store", str(store_path)]) == 0
    with open_store(store_path, mode="r") as store:
        assert store.read_array("v0", "predictions/probe/scores").shape == (N_FRAMES, 3)


def test_grid_tokens_train_a_linear_probe_through_the_gui_path(tmp_path):
    store_path = tmp_path / "s.zarr"
    make_store(store_path, tokens="grid", labeled_frames=None)
    key = f"{MODEL}/grid2"
    result = gui_train(store_path, ["v0", "v1", "v2"], key=key)
    assert result.data.X.shape[1:] == (8,)  # token grid averaged for the linear probe
    assert result.probe.n_features_in_ == 8
    # Held-out AP far above chance (each behavior is on in at most a sixth of the frames).
    assert all(m["AP"] > 0.6 for m in result.metrics.values()), result.format()
    gui = run_task(probe_widget.predict_task, result.probe, store_path, ["v3"], key, "probe",
                   False)
    assert gui[(str(store_path), "v3")].scores.shape == (N_FRAMES, 3)
    # The attention probe gets the tokens themselves.
    attention = gui_train(store_path, ["v0", "v1", "v2"], kind="attention", key=key)
    assert attention.data.X.shape[1:] == (2, 2, 8)


@pytest.mark.parametrize("n_videos", [3, 1])
def test_same_labels_same_split_and_thresholds_from_cli_and_gui(tmp_path, capsys, n_videos):
    store_path = tmp_path / "s.zarr"
    # Labels over whole videos: exactly what a session's table with "frames without a bout are
    # negatives" holds, so both entry points get the same frames x behaviors matrix.
    make_store(store_path, n_videos=n_videos, labeled=n_videos, labeled_frames=None)
    folder = tmp_path / "probe"
    assert main(["probe", "train", "--store", str(store_path), "--labels", "manual", "--out",
                 str(folder), "--max-epochs", "30", "--min-bout", "2", "--max-gap", "1"]) == 0
    cli = json.loads((folder / "validation.json").read_text())
    cli_thresholds = json.loads((folder / "probe.json").read_text())["thresholds"]

    gui = gui_train(store_path, [f"v{i}" for i in range(n_videos)])
    assert gui.split.unit == ("video" if n_videos > 1 else "time block")
    assert gui.split.to_dict() == {k: v for k, v in cli["validation"].items()
                                   if k != "description"}
    np.testing.assert_allclose(gui.probe.thresholds_, cli_thresholds)
    for name in BEHAVIORS:
        for figure in ("AP", "F1", "positives", "threshold_source"):
            mine, theirs = gui.metrics[name][figure], cli["per_behavior"][name][figure]
            if isinstance(mine, float) and np.isnan(mine):
                assert theirs is None
            else:
                assert mine == pytest.approx(theirs)


def test_predict_checks_every_video_before_writing(tmp_path, capsys):
    store_path = tmp_path / "s.zarr"
    make_store(store_path, n_videos=3, labeled=2, incomplete=(2,))
    folder = tmp_path / "probe"
    assert main(["probe", "train", "--store", str(store_path), "--labels", "manual", "--out",
                 str(folder), "--video-id", "v0", "v1", "--max-epochs", "30"]) == 0
    capsys.readouterr()
    rc = main(["probe", "predict", "--probe", str(folder), "--store", str(store_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "cannot predict 1 of 3 video(s); nothing was written" in err
    assert "'v2' are incomplete" in err and "--video-id v0 v1" in err
    with open_store(store_path, mode="r") as store:  # v0 and v1 sort before v2: not written
        assert not any(store.list_items(v, "predictions") for v in ("v0", "v1"))
    # The GUI's "predict store" path refuses the same way.
    with pytest.raises(ProbeError, match="'v2' are incomplete"):
        run_task(probe_widget.predict_task, load_trained_probe(folder), store_path,
                 ["v0", "v1", "v2"], None, "probe", True)
    assert main(["probe", "predict", "--probe", str(folder), "--store", str(store_path),
                 "--video-id", "v0", "v1"]) == 0
