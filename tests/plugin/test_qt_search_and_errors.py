"""Text search with a tiny video-text model, the gui command, and bad input in the viewer."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import sentencepiece as spm

from napari_prism._link import link
from prism_science.errors import PrismError

WORDS = ("mouse", "grooming", "walking", "resting", "chasing", "the", "a", "on", "in",
         "animal", "two")


@pytest.fixture(scope="module")
def lvt_folder(tmp_path_factory):
    """The LvT test model with a tiny SentencePiece tokenizer, saved as a weights folder."""
    from prism_science.models import Tokenizer, build_model, save_model

    folder = tmp_path_factory.mktemp("lvt")
    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(5))
                                for i in range(200)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tiny"), vocab_size=24,
        hard_vocab_limit=False, pad_id=0, unk_id=1, bos_id=-1, eos_id=2, minloglevel=2)
    model = build_model("prism-lvt-test-p8-f4-r32")
    model.tokenizer = Tokenizer(folder / "tiny.model")
    return save_model(model, folder / "model")


def test_search_by_text_draws_a_curve_and_lists_peaks(make_napari_viewer, qtbot, video,
                                                      lvt_folder):
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    _, search = viewer.window.add_plugin_dock_widget("prism-science", "Search by text")
    search.model.setCurrentText(str(lvt_folder))
    search.device.setCurrentText("cpu")
    search.peaks.setValue(3)
    search.query.setText("a mouse grooming")
    search.search()
    qtbot.waitUntil(lambda: not search.task.running, timeout=120_000)
    assert search.task.last_error is None, search.task.last_error
    curve = link(viewer).timeline.similarity
    assert curve is not None and curve.shape == (90,) and np.isfinite(curve).all()
    assert search.list.count() == 3
    peak = int(search.list.item(0).data(256))
    assert curve[peak] == curve.max()


def test_search_with_a_model_without_text_tower_notifies(make_napari_viewer, qtbot, video):
    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    _, search = viewer.window.add_plugin_dock_widget("prism-science", "Search by text")
    search.model.setCurrentText("prism-test-p8-f4-r32")
    search.device.setCurrentText("cpu")
    search.query.setText("grooming")
    search.search()
    qtbot.waitUntil(lambda: not search.task.running, timeout=60_000)
    assert isinstance(search.task.last_error, PrismError)
    assert "text tower" in str(search.task.last_error)


def test_bad_video_and_unreadable_session(make_napari_viewer, video, tmp_path):
    viewer = make_napari_viewer()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    with pytest.raises(Exception, match="broken.mp4"):
        viewer.open(str(broken), plugin="prism-science")
    assert len(viewer.layers) == 0
    # a damaged session file is kept aside, never overwritten, and a new session starts
    session_file = video.with_name(video.name + ".prism-session.json")
    session_file.write_text("{damaged")
    viewer.open(str(video), plugin="prism-science")
    assert link(viewer).session is not None
    kept = [p for p in video.parent.iterdir() if ".unreadable-" in p.name]
    assert len(kept) == 1 and kept[0].read_text() == "{damaged"


def test_predict_without_features_notifies(make_napari_viewer, qtbot, video, tmp_path):
    from prism_science.probes import LinearProbe, save_probe

    viewer = make_napari_viewer()
    viewer.open(str(video), plugin="prism-science")
    _, probe_widget = viewer.window.add_plugin_dock_widget("prism-science", "Train and predict")
    rng = np.random.default_rng(0)
    other = LinearProbe(max_epochs=2).fit(rng.normal(size=(40, 7)).astype(np.float32),
                                          np.repeat([[1, 0], [0, 1]], 20, axis=0),
                                          behavior_names=["a", "b"])
    probe_widget.load(save_probe(other, tmp_path / "probe"))
    assert probe_widget.probe is not None
    probe_widget.predict_current()  # no features for this video: a notification, no crash
    assert not probe_widget.task.running and link(viewer).session.predictions == {}


def test_gui_command_opens_the_video_with_the_plugin_docked(make_napari_viewer, video,
                                                            monkeypatch):
    import napari

    from prism_science.cli import gui

    opened = {}

    def fake_run() -> None:
        viewer = napari.current_viewer()
        opened["layers"] = [layer.name for layer in viewer.layers]
        opened["docks"] = sorted(viewer.window.dock_widgets)
        viewer.close()

    monkeypatch.setattr(napari, "run", fake_run)
    args = argparse.Namespace(path=str(video), widgets="Ethogram,Train and predict")
    assert gui.run(args) == 0
    assert opened["layers"] == ["clip.mp4"]
    assert any("Ethogram" in name for name in opened["docks"])
    assert any("prism timeline" in name for name in opened["docks"])
    assert gui.run(argparse.Namespace(path=str(video) + ".missing", widgets="all")) == 2
