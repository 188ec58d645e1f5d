"""The Train section shows per-epoch progress with an ETA, and cancel stops the epochs."""

from __future__ import annotations

from napari_prism._probe_widget import train_task
from prism_science.labels import load_labels
from prism_science.store import open_store
from tests.pipeline.conftest import MODEL, make_store


def tables_of(store_path, video_ids):
    with open_store(store_path, mode="r") as store:
        return {v: load_labels(store, v, "manual") for v in video_ids}


def record_status(panel) -> list[str]:
    seen: list[str] = []
    original = panel._progress

    def progress(report) -> None:
        original(report)
        seen.append(panel.status.text())

    panel._progress = progress  # connected to the worker when the task starts
    return seen


def test_train_section_reports_epochs_with_an_eta(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, probe = viewer.window.add_plugin_dock_widget("prism-science", "Train and predict")
    store = tmp_path / "s.zarr"
    make_store(store)
    seen = record_status(probe.task)
    probe.task.run(train_task, store, tables_of(store, ["v0", "v1", "v2"]), f"{MODEL}/mean",
                   "mlp", {"max_epochs": 8, "early_stopping": False},
                   {"min_bout": 1, "max_gap": 0}, what="training mlp probe",
                   on_result=lambda result: probe._trained(result, f"{MODEL}/mean"))
    assert probe.task.wait(120)
    assert probe.task.last_error is None, probe.task.last_error
    assert probe.probe is not None and probe.probe.n_epochs_ == 8
    epochs = [s for s in seen if "epoch" in s]
    # both fits (validation, then all rows) on one scale of 16 epochs, each one shown
    assert any(s.startswith("training mlp probe: epoch 1 of 16") for s in epochs)
    assert any(s.startswith("training mlp probe: epoch 16 of 16") for s in epochs)
    assert any("left" in s for s in epochs), epochs  # an ETA from the pace of the epochs
    assert probe.task.bar.maximum() == 1 and probe.task.bar.value() == 1


def test_cancel_stops_training_at_the_next_epoch(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    _, probe = viewer.window.add_plugin_dock_widget("prism-science", "Train and predict")
    store = tmp_path / "s.zarr"
    make_store(store)
    seen = record_status(probe.task)
    probe.task.run(train_task, store, tables_of(store, ["v0", "v1"]), f"{MODEL}/mean", "mlp",
                   {"max_epochs": 100_000, "early_stopping": False},
                   {"min_bout": 1, "max_gap": 0}, what="training mlp probe")
    qtbot.waitUntil(lambda: any("epoch 2 " in s for s in seen), timeout=60_000)
    probe.task.cancel()
    assert probe.task.wait(20)  # long before 100000 epochs
    assert probe.task.last_error is None and probe.probe is None
    assert probe.task.status.text().endswith("cancelled")


def test_a_training_failure_in_the_helper_thread_is_a_notification(make_napari_viewer, qtbot,
                                                                   tmp_path):
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    _, probe = viewer.window.add_plugin_dock_widget("prism-science", "Train and predict")
    store = tmp_path / "s.zarr"
    make_store(store)
    before = len(notification_manager.records)
    probe.task.run(train_task, store, tables_of(store, ["v0", "v1"]), "no-such-model/mean",
                   "mlp", {"max_epochs": 3}, {"min_bout": 1, "max_gap": 0},
                   what="training mlp probe")
    assert probe.task.wait(60)
    assert probe.task.last_error is not None and probe.probe is None
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any(m.startswith("training mlp probe failed:") and "no-such-model" in m
               for m in messages), messages
