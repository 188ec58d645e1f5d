"""End to end in napari: open a video, label with keys, extract, train, predict, save, reopen."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from napari_prism._context import STORE_KEY, VIDEO_ID_KEY, go_to_frame
from napari_prism._link import link

MODEL = "prism-test-p8-f4-r32"


def press(viewer, qtbot, key: str, frame: int, shift: bool = False) -> None:
    go_to_frame(viewer, frame)
    modifier = Qt.ShiftModifier if shift else Qt.NoModifier
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, key, modifier)


def test_label_train_predict_save_reopen(make_napari_viewer, qtbot, video, tmp_path):
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    _, ethogram = viewer.window.add_plugin_dock_widget("prism-science", "Ethogram")
    session = link(viewer).session
    assert session is not None and session.n_frames == 90
    for name in ("walk", "rest"):
        ethogram.new_name.setText(name)
        ethogram._add()
    assert [(b.name, b.key) for b in session.behaviors] == [("walk", "w"), ("rest", "r")]

    # keyboard labeling: start/stop bouts at the current frame, Shift toggles one frame
    press(viewer, qtbot, "w", 5)
    press(viewer, qtbot, "w", 30)
    press(viewer, qtbot, "r", 40)
    press(viewer, qtbot, "r", 70)
    press(viewer, qtbot, "w", 80, shift=True)
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts()] == [
        ("walk", 5, 30), ("rest", 40, 70), ("walk", 80, 80)]
    assert link(viewer).timeline.current_frame == 80  # timeline follows the slider

    # extract features of the open video into a store
    _, extract = viewer.window.add_plugin_dock_widget("prism-science", "Extract features")
    store = tmp_path / "features.zarr"
    extract.store.setText(str(store))
    extract.model.setCurrentText(MODEL)
    extract.device.setCurrentText("cpu")
    extract.hop.setValue(4)
    extract.extract()
    qtbot.waitUntil(lambda: not extract.task.running, timeout=120_000)
    assert extract.task.last_error is None, extract.task.last_error
    layer = viewer.layers[0]
    assert layer.metadata[STORE_KEY] == str(store) and layer.metadata[VIDEO_ID_KEY]

    # train with validation metrics, then predict: predictions land in the session
    _, probe = viewer.window.add_plugin_dock_widget("prism-science", "Train and predict")
    probe.refresh_keys()
    assert probe.key.currentText() == f"{MODEL}/mean"
    probe.epochs.setValue(15)
    probe.train()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=120_000)
    assert probe.task.last_error is None, probe.task.last_error
    assert probe.probe is not None and "validation" in probe.metrics.text()
    # the widget shows each behavior's threshold, as `probe train` prints it
    for name, figures in probe.result.metrics.items():
        assert f"{name:<20} {figures['threshold']:>8.3f}" in probe.metrics.text()
    probe.predict_current()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=60_000)
    track = session.predictions["probe"]
    assert track.proba.shape == (90, 2) and track.classes == ["walk", "rest"]

    # a probe trained on other features is refused with a message; predictions stay
    from prism_science.errors import ProbeError
    from prism_science.probes import LinearProbe, save_probe

    other = LinearProbe(max_epochs=2).fit(np.random.default_rng(0).normal(size=(40, 7)),
                                          np.repeat([[1, 0], [0, 1]], 20, axis=0),
                                          behavior_names=["a", "b"])
    trained = probe.probe
    probe.load(save_probe(other, tmp_path / "other_probe"))
    assert probe.name.text() == "other_probe"  # named after the folder, as the CLI does
    probe.predict_current()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=60_000)
    assert isinstance(probe.task.last_error, ProbeError)
    assert list(session.predictions) == ["probe"]
    probe.probe, probe.probe_key = trained, f"{MODEL}/mean"
    probe.name.setText("probe")

    # save, export, and reopen the video: labels and predictions are identical
    _, io = viewer.window.add_plugin_dock_widget("prism-science", "Save and export labels")
    saved = io.save()
    assert saved is not None and saved.exists()
    exported = io.export(tmp_path / "labels.csv", "csv")
    assert exported is not None and "walk" in exported.read_text()
    masks = {b: session.mask(b).copy() for b in session.behavior_names()}
    proba = track.proba.copy()
    viewer.layers.clear()
    assert link(viewer).session is None
    viewer.open(str(video), plugin="prism-science")
    again = link(viewer).session
    assert again is not session
    assert again.behavior_names() == ["walk", "rest"]
    for name, mask in masks.items():
        np.testing.assert_array_equal(again.mask(name), mask)
    np.testing.assert_array_equal(again.predictions["probe"].proba, proba)
    assert again.bouts("probe") == session.bouts("probe")

    # the reopened video remembers its features: predict the whole store into the store
    assert viewer.layers[0].metadata[STORE_KEY] == str(store)
    probe.predict_store()
    qtbot.waitUntil(lambda: not probe.task.running, timeout=60_000)
    assert probe.task.last_error is None, probe.task.last_error

    # the command line predicts over the GUI's predictions with the probe the widget saved
    from prism_science.cli.main import main

    folder = probe.save(tmp_path / "probe")
    assert (folder / "validation.json").is_file()
    assert main(["probe", "predict", "--probe", str(folder), "--store", str(store)]) == 0

    # open the store: the video comes with the predictions; edits autosave into the store
    viewer.layers.clear()
    viewer.open(str(store), plugin="prism-science")
    from_store = link(viewer).session
    assert from_store.store is not None and from_store.store[0] == store
    np.testing.assert_allclose(from_store.predictions["probe"].proba, proba, atol=1e-6)
    assert from_store.bouts("probe") == session.bouts("probe")
    from_store.set_range("walk", 3, 9)
    link(viewer).autosave()
    viewer.layers.clear()
    viewer.open(str(store), plugin="prism-science")
    assert [(b.start_frame, b.end_frame) for b in link(viewer).session.bouts()] == [(3, 9)]
