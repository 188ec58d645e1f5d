"""A damaged GUI session never stops a video from opening.

For each kind of damage (truncated, garbage, wrong types, another video's, a newer version...)
the plugin's session opener must move the damaged file aside as ``NAME.damaged-<time>``
(bytes kept), show a notification naming it, and open the video with an empty session; for a
feature store, the damaged document is moved aside inside the store and the session is built
from the label sets.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prism_science.labels import Interval, LabelTable, Segment, save_labels
from prism_science.session import LabelingSession, default_session_path
from prism_science.store import open_store
from tests.robustness.conftest import write_video

context = pytest.importorskip("napari_prism._context")
from napari_prism._lazy_video import LazyVideo  # noqa: E402 - after the skip

ROBUSTNESS_TITLE = "Damaged GUI sessions"
ROBUSTNESS_TABLE = r"""
| fault or bad input | expected outcome |
| --- | --- |
| session file beside the video (20 kinds): truncated JSON, binary garbage, empty, invalid
  UTF-8, a JSON list, `null`, another format, a newer version, version as text, `video` not an
  object, behaviors / labels / review / features / predictions of the wrong type, labels not a
  list, labels beyond the video, another video's session (frame count), open bouts of the wrong
  type or outside the video | the video opens with an empty session; the file is renamed
  `NAME.damaged-<time>` with its bytes unchanged; one warning notification names both files; the
  next save writes a fresh session file |
| a good session file | opens with its labels, no notification |
| the predictions `.npz` beside a good session: cut short, empty, not a zip | the labels load;
  the `.npz` is moved aside as `.damaged-<time>` and named in a notification; no predictions |
| the `gui/session` document of a video in a store (11 kinds: truncated, garbage, empty, a list,
  another format, newer version, wrong types, another video's, invalid UTF-8) | the video opens
  with the session built from its `labels/manual` set; the document is moved to
  `gui/session.damaged-<time>` in the store (bytes kept), named in a notification; the next save
  writes a fresh document |
| a damaged `labels/manual` set in a store | the video opens with an empty session; the set is
  moved to `labels/manual.damaged-<time>` |
"""

N_FRAMES = 24


@pytest.fixture
def notices(monkeypatch):
    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(context, "_show", lambda level, message: shown.append((level, message)))
    return shown


@pytest.fixture
def video(tmp_path) -> Path:
    return write_video(tmp_path / "clip.mp4", N_FRAMES, width=32, height=32)


def _good_document(video: Path) -> dict:
    session = LabelingSession(N_FRAMES, 30.0, video_path=video)
    session.add_behavior("walk")
    session.set_range("walk", 2, 9)
    return session.to_dict()


def _variants(doc: dict) -> dict[str, bytes]:
    text = json.dumps(doc)

    def edit(**changes) -> bytes:
        return json.dumps({**doc, **changes}).encode()

    return {
        "truncated JSON": text[: len(text) // 2].encode(),
        "binary garbage": bytes(range(256)) * 4,
        "empty file": b"",
        "invalid UTF-8": b"\xff\xfe\xfa" + text.encode(),
        "a JSON list": b"[1, 2, 3]",
        "JSON null": b"null",
        "another format": edit(format="something.else"),
        "a newer version": edit(version=99),
        "version as text": edit(version="two"),
        "video not an object": edit(video="clip.mp4"),
        "behaviors of wrong type": edit(behaviors=[1, 2]),
        "labels of wrong type": edit(labels=[{"behavior": "walk", "start_frame": "x",
                                              "end_frame": 3}]),
        "labels not a list": edit(labels=5),
        "labels beyond the video": edit(labels=[{"behavior": "walk", "start_frame": 0,
                                                 "end_frame": 10**6}]),
        "another video's session": edit(video={**doc["video"], "n_frames": 12345}),
        "open bouts of wrong type": edit(open_bouts={"walk": "soon"}),
        "open bout outside the video": edit(open_bouts={"walk": 10**6}),
        "review of wrong type": edit(review=[1, 2]),
        "features of wrong type": edit(features={"store": 5, "video_id": ["x"]}),
        "predictions of wrong type": edit(predictions=[1]),
    }


KINDS = list(_variants({"video": {}}))


@pytest.mark.parametrize("kind", KINDS)
def test_damaged_session_file_is_moved_aside_and_the_video_opens(video, notices, kind):
    assert len(KINDS) >= 11
    session_file = default_session_path(video)
    damaged = _variants(_good_document(video))[kind]
    session_file.write_bytes(damaged)
    session = context.open_session(LazyVideo(video))
    assert session.n_frames == N_FRAMES and session.bouts() == []  # opened, empty
    assert not session_file.exists()  # the next save writes a fresh file there
    assert session.path == session_file
    kept = [p for p in video.parent.iterdir() if ".damaged-" in p.name]
    assert len(kept) == 1 and kept[0].name.startswith(session_file.name + ".damaged-")
    assert kept[0].read_bytes() == damaged  # nothing lost
    assert [level for level, _ in notices] == ["warning"]
    assert kept[0].name in notices[0][1] and str(session_file) in notices[0][1]
    session.set_range("walk", 0, 3) if "walk" in session.behavior_names() else \
        session.add_behavior("walk")
    session.save()
    assert LabelingSession.load(session_file, n_frames=N_FRAMES).n_frames == N_FRAMES


def test_good_session_file_opens_without_notice(video, notices):
    session_file = default_session_path(video)
    session_file.write_text(json.dumps(_good_document(video)))
    session = context.open_session(LazyVideo(video))
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts()] == [("walk", 2, 9)]
    assert notices == [] and session_file.exists()


@pytest.mark.parametrize("damage", [b"PK\x03\x04 cut", b"", b"not a zip at all"])
def test_damaged_predictions_file_keeps_the_labels(video, notices, damage):
    session = LabelingSession(N_FRAMES, 30.0, video_path=video, path=default_session_path(video))
    session.add_behavior("walk")
    session.set_range("walk", 2, 9)
    session.set_predictions("probe", ["walk"], np.full((N_FRAMES, 1), 0.7))
    session.save()
    pred_path = session.predictions_path()
    pred_path.write_bytes(damage)
    opened = context.open_session(LazyVideo(video))
    assert [(b.behavior, b.start_frame, b.end_frame) for b in opened.bouts()] == [("walk", 2, 9)]
    assert opened.predictions == {}
    kept = [p for p in video.parent.iterdir() if ".predictions.npz.damaged-" in p.name]
    assert len(kept) == 1 and kept[0].read_bytes() == damage
    assert len(notices) == 1 and kept[0].name in notices[0][1]


def _store_with_labels(tmp_path: Path, video: Path) -> Path:
    store_path = tmp_path / "s.zarr"
    with open_store(store_path, "a") as store:
        store.put_video("clip.mp4", source_path=str(video), relative_path="clip.mp4",
                        size_bytes=1, content_hash="h", timestamps=np.arange(N_FRAMES) / 30.0,
                        fps=30.0, width=32, height=32)
        save_labels(store, "clip.mp4", LabelTable([Interval("groom", 4, 7)], [Segment(0, 23)],
                                                  n_frames=N_FRAMES, fps=30.0))
    return store_path


def _write_raw_document(store_path: Path, relpath: str, data: bytes) -> None:
    with open_store(store_path, "a") as store:
        store.write_array("clip.mp4", relpath, np.frombuffer(data, np.uint8) if data else
                          np.zeros(0, np.uint8))
        store._b.set_attrs(f"videos/clip.mp4/{relpath}", {"kind": "json"})


STORE_KINDS = ["truncated JSON", "binary garbage", "empty file", "a JSON list", "another format",
               "a newer version", "behaviors of wrong type", "labels of wrong type",
               "another video's session", "review of wrong type", "invalid UTF-8"]


@pytest.mark.parametrize("kind", STORE_KINDS)
def test_damaged_store_session_document_is_moved_aside(tmp_path, video, notices, kind):
    store_path = _store_with_labels(tmp_path, video)
    damaged = _variants(_good_document(video))[kind]
    _write_raw_document(store_path, "gui/session", damaged)
    session = context.open_store_session(store_path, "clip.mp4")
    # opened from the label set
    assert [(b.behavior, b.start_frame, b.end_frame) for b in session.bouts()] == [("groom", 4, 7)]
    with open_store(store_path, "r") as store:
        assert not store.has_item("clip.mp4", "gui/session")
        aside = [n for n in store.list_items("clip.mp4", "gui") if ".damaged-" in n]
        assert len(aside) == 1
        assert store.read_array("clip.mp4", f"gui/{aside[0]}").tobytes() == damaged
    assert len(notices) == 1 and aside[0] in notices[0][1] and "gui/session" in notices[0][1]
    session.set_range("groom", 10, 12)  # the next save writes a fresh document
    session.save()
    again = LabelingSession.from_store(store_path, "clip.mp4")
    assert ("groom", 10, 12) in [(b.behavior, b.start_frame, b.end_frame) for b in again.bouts()]


def test_damaged_label_set_in_store_opens_empty(tmp_path, video, notices):
    store_path = _store_with_labels(tmp_path, video)
    _write_raw_document(store_path, "labels/manual", b'{"schema": "prism')
    session = context.open_store_session(store_path, "clip.mp4")
    assert session.bouts() == []
    with open_store(store_path, "r") as store:
        names = store.list_items("clip.mp4", "labels")
    assert "manual" not in names and any(n.startswith("manual.damaged-") for n in names)
    assert len(notices) == 1 and "labels/manual" in notices[0][1]
