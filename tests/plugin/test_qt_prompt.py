"""The Train widget's prompt probe kind and its "score these behavior names" action."""

from __future__ import annotations

from napari_prism._context import STORE_KEY, VIDEO_ID_KEY
from napari_prism._link import link
from prism_science.extraction import ExtractOptions, run_extraction
from prism_science.extraction.windows import WindowParams
from prism_science.pipeline import load_predictions
from prism_science.probes import PromptProbe
from prism_science.store import open_store
from tests.test_search import make_lvt_folder


def test_prompt_kind_and_scoring_behavior_names(make_napari_viewer, qtbot, video, tmp_path):
    lvt = make_lvt_folder(tmp_path)
    store = tmp_path / "features.zarr"
    run_extraction([video], store, ExtractOptions(
        model=str(lvt), params=WindowParams(tokens="frame_emb", hop=4)))
    with open_store(store, mode="r") as opened:
        video_id = opened.video_ids()[0]
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    layer = viewer.layers[0]
    layer.metadata[STORE_KEY], layer.metadata[VIDEO_ID_KEY] = str(store), video_id
    session = link(viewer).session
    session.set_features(store, video_id)  # as the Extract widget records it
    _, probe = viewer.window.add_plugin_dock_widget("prism-science", "Train and predict")
    probe.refresh_keys()
    assert probe.key.currentText() == "prism-lvt-test-p8-f4-r32/frame_emb"
    assert "prompt" in [probe.kind.itemText(i) for i in range(probe.kind.count())]

    # zero-shot: no probe, the names typed in the box
    probe.text_model.setText(str(lvt))
    probe.behavior_names.setText("grooming, walking")
    probe.score_names()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=60_000)
    assert probe.task.last_error is None, probe.task.last_error
    track = session.predictions["zero-shot"]
    assert track.classes == ["grooming", "walking"] and track.proba.shape == (90, 2)
    with open_store(store, mode="r") as opened:
        scores, _, attrs = load_predictions(opened, video_id, "zero-shot")
    assert attrs["probe_kind"] == "zero-shot" and scores.shape == (90, 2)

    # a prompt probe trained on labels of the video, then a name it never saw
    for behavior in ("walking", "resting"):
        if behavior not in session.behavior_names():  # scoring may have added it
            session.add_behavior(behavior)
    session.set_range("walking", 0, 40)
    session.set_range("resting", 41, 89)
    probe.kind.setCurrentText("prompt")
    probe.epochs.setValue(3)
    probe.train()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=120_000)
    assert probe.task.last_error is None, probe.task.last_error
    assert isinstance(probe.probe, PromptProbe)
    assert probe.probe.text_model == str(lvt)
    probe.name.setText("prompted")
    probe.behavior_names.setText("walking, chasing")
    probe.score_names()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=60_000)
    assert probe.task.last_error is None, probe.task.last_error
    assert session.predictions["prompted"].classes == ["walking", "chasing"]

    # names the tokenizer cannot encode: an error, nothing written
    probe.behavior_names.setText("zqxj")
    probe.score_names()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=60_000)
    assert "zqxj" in str(probe.task.last_error)
