"""Generate the README's screenshots of the napari plugin at work (docs/images/*.png).

Opens napari as ``prism-science gui`` does (the workbench dock, the timeline under the canvas)
on the synthetic sample clip (two animals, exact labels), extracts features, trains a linear
probe on the clip's labels, predicts, rejects one predicted bout in review, and grabs:

- ``plugin_overview.png``: the whole window at 1280x800 (Ethogram section open);
- ``plugin_1080p.png``: the whole window at 1920x1080;
- ``timeline.png``: the timeline alone, zoomed on a stretch of the clip;
- ``review.png``: the window with the Review section on the next bout to review;
- ``train.png``: the workbench's Train section with its validation figures;
- ``subjects.png``: per animal (1920x1200): the clip's tracks drawn over it (the labeling
  target highlighted), per-subject features and a per-subject linear probe, and the timeline
  with one group of rows per animal, each with its labels and its own predictions.

It prints the canvas size at each window size. Run under a display (Xvfb is fine)::

    xvfb-run -a -s "-screen 0 1920x1200x24" python docs/make_screenshots.py [--model NAME]
    xvfb-run -a -s "-screen 0 1920x1200x24" python docs/make_screenshots.py --only subjects

Without trained weights installed, the model is randomly initialised: the pictures show the
plugin, not a result.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
from pathlib import Path

OUT = Path(__file__).resolve().parent / "images"


def _pick_model(requested: str | None) -> str:
    from prism_science.models import list_models

    if requested:
        return requested
    names = list_models()
    return "default" if "default" in names else "prism-tiny-p16-f16-r128"


def _drain(generator):
    """Run a worker generator to the end on this thread; returns its return value."""
    while True:
        try:
            next(generator)
        except StopIteration as stop:
            return stop.value


def main() -> int:
    parser = argparse.ArgumentParser(description="Generate docs/images/*.png of the plugin.")
    parser.add_argument("--model", help="encoder for the features (default: the bundled one)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--only", choices=("all", "subjects"), default="all",
                        help="subjects: only subjects.png (the per-animal plugin)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ["HOME"] = tempfile.mkdtemp(prefix="prism-shots-")  # samples go to a scratch cache

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    from napari_prism._context import STORE_KEY, VIDEO_ID_KEY, go_to_frame
    from napari_prism._extract_widget import extract_task
    from napari_prism._link import link
    from napari_prism._probe_widget import format_metrics
    from napari_prism._workbench import video_first_layout
    from prism_science.pipeline import predict_video, train_probe
    from prism_science.store import open_store

    torch.set_num_threads(2)
    model = _pick_model(args.model)
    if args.only == "subjects":
        return _subjects_shot(args.out, model)
    viewer = napari.Viewer(title="prism-science")
    window = viewer.window._qt_window
    window.resize(1280, 800)
    _, workbench = viewer.window.add_plugin_dock_widget("prism-science", "Workbench")
    video_first_layout(viewer)  # as `prism-science gui` does
    viewer.open_sample("prism-science", "synthetic")
    lk = link(viewer)
    session, layer = lk.session, lk.layer

    store = Path(os.environ["HOME"]) / "features.zarr"
    print(f"extracting features with {model} ...")
    result = _drain(extract_task([Path(session.video_path)], store, model, "cpu", 4,
                                 cancel_event=threading.Event()))
    video_id = next(iter(result["videos"].values()))
    layer.metadata[STORE_KEY], layer.metadata[VIDEO_ID_KEY] = str(store), video_id
    session.set_features(store, video_id)
    print("training a linear probe ...")
    tables = {video_id: session.to_table(("manual", "curated"), fully_labeled=True,
                                         video_id=video_id)}
    with open_store(store, mode="r") as opened:
        trained = train_probe(opened, tables, "linear", feature_key=result["key"],
                              params={"max_epochs": 60})
        found = predict_video(trained.probe, opened, video_id, result["key"])
    session.set_predictions("linear", found.behaviors, found.scores, found.thresholds,
                            found.postprocess)
    probe_widget = workbench.sections["Train and predict"]
    probe_widget.refresh_keys()
    probe_widget.probe, probe_widget.result = trained.probe, trained
    probe_widget.metrics.setText(format_metrics(trained))
    review = workbench.sections["Review"]
    review.margin.setValue(0.5)
    go_to_frame(viewer, 0)
    if review.next_item() is not None:
        review.reject()  # crossed out on the timeline

    def settle() -> None:
        for _ in range(10):
            QApplication.processEvents()

    go_to_frame(viewer, session.n_frames // 3)
    workbench.open_section("Ethogram")
    for size, name in (((1280, 800), "plugin_overview"), ((1920, 1080), "plugin_1080p")):
        window.resize(*size)
        settle()
        canvas = viewer.window._qt_viewer.canvas.native
        print(f"window {window.width()}x{window.height()}: canvas "
              f"{canvas.width()}x{canvas.height()}, timeline {lk.timeline.height()} px high")
        window.grab().save(str(args.out / f"{name}.png"))
    window.resize(1280, 800)
    lk.timeline.set_view(session.n_frames // 4, session.n_frames // 2)
    settle()
    lk.timeline.grab().save(str(args.out / "timeline.png"))
    window.resize(1920, 1080)
    workbench.setMinimumWidth(640)  # as a user widens the dock to read the table
    workbench.open_section("Train and predict")
    settle()
    workbench.grab().save(str(args.out / "train.png"))
    workbench.setMinimumWidth(300)
    window.resize(1280, 800)
    workbench.open_section("Review")
    review.next_item()
    settle()
    window.grab().save(str(args.out / "review.png"))
    viewer.close()
    for name in ("plugin_overview", "plugin_1080p", "timeline", "train", "review"):
        print(args.out / f"{name}.png")
    return _subjects_shot(args.out, model)


def _subjects_shot(out: Path, model: str) -> int:
    """``subjects.png``: the synthetic clip's two animals, their tracks over the video, their
    per-subject features, probe and predictions, one timeline group per animal."""
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication, QDockWidget

    from napari_prism._context import STORE_KEY, VIDEO_ID_KEY, go_to_frame
    from napari_prism._extract_widget import extract_task
    from napari_prism._link import link
    from napari_prism._tracks import tracks_view
    from napari_prism._workbench import video_first_layout
    from prism_science.pipeline import train_probe
    from prism_science.pipeline.subjects import (
        predict_subjects_to_store,
        subject_prediction_name,
    )
    from prism_science.store import open_store

    os.environ["HOME"] = tempfile.mkdtemp(prefix="prism-shots-")  # a sample without predictions
    viewer = napari.Viewer(title="prism-science")
    window = viewer.window._qt_window
    window.resize(1920, 1200)
    _, workbench = viewer.window.add_plugin_dock_widget("prism-science", "Workbench")
    video_first_layout(viewer)
    viewer.open_sample("prism-science", "synthetic")  # its exact tracks are drawn at once
    lk = link(viewer)
    session, layer, view = lk.session, lk.layer, tracks_view(viewer)
    assert view.tracks is not None, "the synthetic sample's tracks were not loaded"
    store = Path(os.environ["HOME"]) / "subjects.zarr"
    print(f"extracting per-subject features with {model} ...")
    result = _drain(extract_task([Path(session.video_path)], store, model, "cpu", 4,
                                 subjects={"tracks": view.path, "crop_size": None,
                                           "align_heading": False},
                                 cancel_event=threading.Event()))
    video_id = next(iter(result["videos"].values()))
    layer.metadata[STORE_KEY], layer.metadata[VIDEO_ID_KEY] = str(store), video_id
    session.set_features(store, video_id)
    base = result["key"].split(", ")[0].split("@")[0]
    print("training a linear probe per subject ...")
    tables = {video_id: session.to_table(("manual", "curated"), fully_labeled=True,
                                         video_id=video_id)}
    with open_store(store, mode="a") as opened:
        trained = train_probe(opened, tables, "linear", feature_key=base,
                              params={"max_epochs": 60}, per_subject=True)
        found = predict_subjects_to_store(trained.probe, opened, "linear", [video_id], base)
    for unit, prediction in found.items():
        subject = unit.removeprefix(f"{video_id}@")
        session.set_predictions(subject_prediction_name("linear", subject), prediction.behaviors,
                                prediction.scores, prediction.thresholds, prediction.postprocess)
    lk.timeline.prediction = "linear"
    workbench.open_section("Ethogram")
    lk.set_subject(view.tracks.subjects[1])  # as Tab does: the second animal is labeled
    go_to_frame(viewer, session.n_frames // 3)
    dock = lk.timeline
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parentWidget()
    window.resizeDocks([dock], [620], Qt.Vertical)  # every row of both animals
    for _ in range(20):
        QApplication.processEvents()
    path = out / "subjects.png"
    viewer.screenshot(str(path), canvas_only=False)
    canvas = viewer.window._qt_viewer.canvas.native
    print(f"window {window.width()}x{window.height()}: canvas {canvas.width()}x"
          f"{canvas.height()}, timeline {lk.timeline.height()} px high")
    viewer.close()
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
