"""Generate the README's screenshots of the napari plugin at work (docs/images/*.png).

Opens napari with the plugin docked on the synthetic sample clip (two animals, exact labels),
extracts features, trains a linear probe on the clip's labels, predicts, and grabs:

- ``plugin_overview.png``: the viewer with the Ethogram dock and the timeline under the canvas
  (manual labels, prediction shading);
- ``timeline.png``: the timeline alone, zoomed on a stretch of the clip;
- ``review.png``: the Review widget on the next uncertain or disagreeing bout;
- ``train.png``: the Train and predict widget with its validation metrics.

Run under a display (Xvfb is fine)::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py [--model NAME]

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
    from prism_science.pipeline import predict_video, train_probe
    from prism_science.store import open_store

    torch.set_num_threads(2)
    model = _pick_model(args.model)
    viewer = napari.Viewer(title="prism-science")
    viewer.window._qt_window.resize(1500, 950)
    viewer.open_sample("prism-science", "synthetic")
    docks = {}
    for name in ("Ethogram", "Train and predict", "Review predictions"):
        docks[name] = viewer.window.add_plugin_dock_widget("prism-science", name)
    first = docks["Ethogram"][0]
    for name in ("Train and predict", "Review predictions"):
        viewer.window._qt_window.tabifyDockWidget(first, docks[name][0])
    lk = link(viewer)
    session, layer = lk.session, lk.layer

    store = Path(os.environ["HOME"]) / "features.zarr"
    print(f"extracting features with {model} ...")
    result = _drain(extract_task([Path(session.video_path)], store, model, "cpu", 4,
                                 cancel_event=threading.Event()))
    video_id = next(iter(result["videos"].values()))
    layer.metadata[STORE_KEY], layer.metadata[VIDEO_ID_KEY] = str(store), video_id
    print("training a linear probe ...")
    tables = {video_id: session.to_table(("manual", "curated"), fully_labeled=True,
                                         video_id=video_id)}
    with open_store(store, mode="r") as opened:
        trained = train_probe(opened, tables, "linear", feature_key=result["key"],
                              params={"max_epochs": 60})
        found = predict_video(trained.probe, opened, video_id, result["key"])
    session.set_predictions("linear", found.behaviors, found.scores, found.thresholds,
                            found.postprocess)
    probe_widget = docks["Train and predict"][1]
    probe_widget.refresh_keys()
    probe_widget.probe = trained.probe
    probe_widget.metrics.setText(format_metrics(trained))

    go_to_frame(viewer, session.n_frames // 3)
    docks["Ethogram"][0].raise_()
    for _ in range(5):
        QApplication.processEvents()
    viewer.window._qt_window.grab().save(str(args.out / "plugin_overview.png"))
    lk.timeline.set_view(session.n_frames // 4, session.n_frames // 2)
    QApplication.processEvents()
    lk.timeline.grab().save(str(args.out / "timeline.png"))
    docks["Train and predict"][0].raise_()
    QApplication.processEvents()
    docks["Train and predict"][0].grab().save(str(args.out / "train.png"))
    docks["Review predictions"][0].raise_()
    go_to_frame(viewer, 0)
    docks["Review predictions"][1].next_item()
    for _ in range(5):
        QApplication.processEvents()
    viewer.window._qt_window.grab().save(str(args.out / "review.png"))
    viewer.close()
    for name in ("plugin_overview", "timeline", "train", "review"):
        print(args.out / f"{name}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
