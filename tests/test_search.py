"""Text search: per-frame similarity, peaks into frame ranges, stores, refusals and the CLI."""

from __future__ import annotations

import json
import re
import shutil
import threading

import numpy as np
import pytest
import torch

from prism_science import search as S
from prism_science.errors import Cancelled, SearchError
from prism_science.video import content_hash, open_video

WORDS = ("mouse", "grooming", "walking", "resting", "chasing", "the", "a", "on", "in",
         "animal", "two")


def make_lvt_folder(folder):
    """The LvT test model (seeded) with a tiny SentencePiece tokenizer, saved in ``folder``."""
    spm = pytest.importorskip("sentencepiece")
    from prism_science.models import Tokenizer, build_model, save_model

    corpus = folder / "corpus.txt"
    corpus.write_text("\n".join(" ".join(WORDS[(i * 5 + j) % len(WORDS)] for j in range(5))
                                for i in range(200)))
    spm.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(folder / "tiny"), vocab_size=24,
        hard_vocab_limit=False, pad_id=0, unk_id=1, bos_id=-1, eos_id=2, minloglevel=2)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("prism-lvt-test-p8-f4-r32")
    model.tokenizer = Tokenizer(folder / "tiny.model")
    return save_model(model, folder / "model")


@pytest.fixture(scope="module")
def lvt_folder(tmp_path_factory):
    """A weights folder of the LvT test model with a tokenizer."""
    return make_lvt_folder(tmp_path_factory.mktemp("lvt"))


@pytest.fixture(scope="module")
def synth_clip(tmp_path_factory):
    """A 90-frame 64x64 synthetic clip of one animal at 15 fps."""
    from prism_science.synth import SynthConfig, generate_clip, write_clip

    config = SynthConfig(size=(64, 64), fps=15.0, seconds=(6.0, 6.0), n_animals=1)
    return write_clip(generate_clip(3, config), tmp_path_factory.mktemp("clip"), "clip")


@pytest.fixture
def video(synth_clip, tmp_path):
    """A private copy of the clip (tests move it)."""
    target = tmp_path / "videos" / synth_clip.name
    target.parent.mkdir()
    shutil.copy(synth_clip, target)
    return target


def _store_with(tmp_path, videos):
    """A store recording ``videos`` (no features: search needs none)."""
    from prism_science.store import open_store

    path = tmp_path / "features.zarr"
    with open_store(path, mode="a") as store:
        for video in videos:
            with open_video(video) as reader:
                info = reader.info
            store.put_video(video.name, source_path=str(video.resolve()),
                            relative_path=video.name, size_bytes=video.stat().st_size,
                            content_hash=content_hash(video), timestamps=info.timestamps,
                            fps=info.fps, width=info.width, height=info.height)
    return path


# ---------------------------------------------------------------------- peaks and curves
def test_hits_land_on_the_peaks_of_a_constructed_curve():
    frames = np.arange(300)
    curve = 0.05 + 0.45 * np.exp(-0.5 * ((frames - 30) / 3.0) ** 2)
    curve += 0.25 * np.exp(-0.5 * ((frames - 120) / 3.0) ** 2)
    curve[200:216] = 0.4  # a plateau: one range over all of it
    curve[34] = 0.3  # a second bump within a clip of the highest peak: not a peak of its own
    timestamps = frames / 10.0
    hits = S.find_hits(curve, 5, spacing=16, timestamps=timestamps, fps=10.0)
    assert [h.peak_frame for h in hits][:3] == [30, 200, 120]
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    first, plateau, third = hits[:3]
    assert first.start_frame < 30 < first.end_frame and first.end_frame - first.start_frame < 16
    assert (plateau.start_frame, plateau.end_frame) == (200, 215)
    assert third.start_frame <= 120 <= third.end_frame
    assert first.score == pytest.approx(0.5) and third.score == pytest.approx(0.3)  # absolute
    assert plateau.start_s == pytest.approx(20.0) and plateau.end_s == pytest.approx(21.6)
    # peaks are at least a clip apart and no range overlaps another
    peaks = [h.peak_frame for h in hits]
    assert all(abs(a - b) >= 16 for i, a in enumerate(peaks) for b in peaks[i + 1:])
    spans = sorted((h.start_frame, h.end_frame) for h in hits)
    assert all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert S.find_peaks(curve, 2, 16) == [30, 200]


def test_hits_at_the_edges_and_times_after_the_last_frame():
    curve = np.array([0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.7], np.float32)
    hits = S.find_hits(curve, 3, spacing=2, fps=4.0)
    assert [h.peak_frame for h in hits] == [0, 7]
    last = hits[1]
    assert last.end_frame == 7 and last.end_s == pytest.approx(2.0)  # 7/4 + 1/4
    assert S.find_hits(np.zeros(0), 3, 2) == [] and S.find_hits(curve, 0, 2) == []


def test_clip_starts_end_on_the_last_frame():
    assert S.clip_starts(10, 4, 3).tolist() == [0, 3, 6]
    assert S.clip_starts(11, 4, 3).tolist() == [0, 3, 6, 7]
    assert S.clip_starts(3, 4, 2).tolist() == [0]  # shorter than a clip: one padded clip


def test_frame_similarity_is_the_mean_over_covering_clips():
    emb = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], np.float32)
    clips = S.ClipEmbeddings(emb, S.clip_starts(9, 4, 2), 9, 4, 2, "m", "sha")
    assert clips.starts.tolist() == [0, 2, 4, 5]
    curve = S.frame_similarity(clips, np.array([1.0, 0.0], np.float32))
    sims = emb @ np.array([1.0, 0.0])
    expected = [np.mean([sims[w] for w, s in enumerate(clips.starts) if s <= f < s + 4])
                for f in range(9)]
    np.testing.assert_allclose(curve, expected, atol=1e-6)
    both = S.frame_similarity(clips, np.array([[1, 0], [0, 1]], np.float32))
    assert both.shape == (9, 2)
    np.testing.assert_allclose(both[:, 0], curve, atol=1e-6)


def test_format_time():
    assert S.format_time(0) == "00:00:00.000"
    assert S.format_time(75.5) == "00:01:15.500"
    assert S.format_time(3723.0456) == "01:02:03.046"


# ---------------------------------------------------------------------- refusals
def test_models_without_text_tower_or_tokenizer_are_refused_before_loading(
        tmp_path, video, monkeypatch):
    from prism_science.models import build_model, save_model

    def no_loading(*args, **kwargs):
        raise AssertionError("weights were loaded before the refusal")

    monkeypatch.setattr(S, "load_encoder", no_loading)
    monkeypatch.setattr("prism_science.models.weights.load_folder", no_loading)
    no_tokenizer = save_model(build_model("prism-lvt-test-p8-f4-r32"), tmp_path / "lvt")
    cases = {
        "prism-test-p8-f4-r32": "no text tower",
        "prism-lvt-test-p8-f4-r32": "no weights installed",
        str(no_tokenizer): "no tokenizer",
        str(tmp_path / "nothing"): "neither a registered model",
    }
    for name, reason in cases.items():
        with pytest.raises(SearchError, match=reason) as info:
            S.search(video, "a mouse grooming", model=name)
        message = str(info.value)
        assert repr(name) in message and "default" in message  # names it and what works
    with pytest.raises(SearchError, match="has no text tower"):
        S.check_text_model(build_model("prism-test-p8-f4-r32"))
    assert S.text_models()[0] == "default"
    assert "prism-test-p8-f4-r32" not in S.text_models()
    with pytest.raises(SearchError, match="empty query"):
        S.search(video, ["grooming", "  "])


# ---------------------------------------------------------------------- search a video
def _brute_force_curve(folder, video, query, hop):
    """Every clip encoded on its own from get_frames; the per-frame mean by a loop."""
    from prism_science.models import load_model

    model = load_model(folder)
    text = model.encode_texts([query])[0]
    with open_video(video) as reader:
        n = reader.info.n_frames
        total, count = np.zeros(n), np.zeros(n)
        for start in S.clip_starts(n, model.num_frames, hop):
            frames = reader.get_frames(range(start, start + model.num_frames), size=(32, 32))
            clip = torch.from_numpy(frames)[None].float() / 255.0
            with torch.inference_mode():
                sim = float(model.encode_video(clip)[0] @ text)
            total[start:start + model.num_frames] += sim
            count[start:start + model.num_frames] += 1
    return total / count


def test_search_a_video_matches_clip_by_clip_encoding(video, lvt_folder):
    reports = []
    results = S.search(video, ["a mouse grooming", "two animal chasing"], model=lvt_folder,
                       hop=3, top=4, device="cpu", progress=lambda *r: reports.append(r))
    assert [r.query for r in results] == ["a mouse grooming", "two animal chasing"]
    grooming = results[0]
    assert grooming.similarity.shape == (90,) and grooming.similarity.dtype == np.float32
    expected = _brute_force_curve(lvt_folder, video, "a mouse grooming", hop=3)
    np.testing.assert_allclose(grooming.similarity, expected, atol=1e-5)
    assert 1 <= len(grooming.hits) <= 4
    scores = [h.score for h in grooming.hits]
    assert scores == sorted(scores, reverse=True)
    assert grooming.hits[0].score == pytest.approx(float(grooming.similarity.max()))
    assert grooming.clip_frames == 4 and grooming.hop == 3 and grooming.fps == pytest.approx(15)
    # batch: the second query's curve is its own search's curve
    alone = S.search(video, "two animal chasing", model=lvt_folder, hop=3)[0]
    np.testing.assert_allclose(results[1].similarity, alone.similarity, atol=1e-6)
    # progress: model loading, then clips up to all of them
    done = [d for d, t, _ in reports[1:]]
    assert reports[-1][0] == reports[-1][1] == 30 and done == sorted(done)


def test_search_can_be_cancelled_between_batches(video, lvt_folder):
    cancel = threading.Event()
    seen = []

    def progress(done, total, message):
        seen.append(done)
        if done >= 8:
            cancel.set()

    with pytest.raises(Cancelled):
        S.search(video, "grooming", model=lvt_folder, hop=1, batch_size=4, progress=progress,
                 cancel=cancel)
    assert max(seen) == 8  # stopped at the next step, not at the end (87 clips)
    steps = S.iter_search(video, "grooming", model=lvt_folder, hop=1)
    assert next(steps)[2].startswith("loading")
    steps.close()  # a GUI worker stops iterating: nothing else runs


# ---------------------------------------------------------------------- search a store
def test_search_a_store_caches_clip_embeddings_and_needs_the_video_only_once(
        tmp_path, video, lvt_folder):
    from prism_science.store import open_store

    store_path = _store_with(tmp_path, [video])
    from_file = S.search(video, "a mouse grooming", model=lvt_folder, hop=2)[0]
    first = S.search(store_path, "a mouse grooming", model=lvt_folder, hop=2)[0]
    assert first.video == f"{store_path}::{video.name}"
    np.testing.assert_allclose(first.similarity, from_file.similarity, atol=1e-6)
    with open_store(store_path, mode="r") as store:
        cached = store.list_items(video.name, "search/prism-lvt-test-p8-f4-r32")
        attrs = store.read_array_attrs(video.name, "search/prism-lvt-test-p8-f4-r32/hop2")
    assert cached == ["hop2"] and attrs["n_frames"] == 90 and attrs["hop"] == 2
    # the video moves away: the cached clip embeddings answer a new query
    shutil.move(video, tmp_path / "elsewhere.mp4")
    other = S.search(store_path, "resting", model=lvt_folder, hop=2)[0]
    expected = S.search(tmp_path / "elsewhere.mp4", "resting", model=lvt_folder, hop=2)[0]
    np.testing.assert_allclose(other.similarity, expected.similarity, atol=1e-6)
    # another hop is not cached and the video is gone: the error says where it looked
    with pytest.raises(SearchError, match=re.escape(str(video))):
        S.search(store_path, "resting", model=lvt_folder, hop=3)


def test_a_store_of_several_videos_needs_a_video_id(tmp_path, video, synth_clip, lvt_folder):
    second = tmp_path / "second.mp4"
    shutil.copy(synth_clip, second)
    store_path = _store_with(tmp_path, [video, second])
    with pytest.raises(SearchError, match="holds 2 videos.*--video-id"):
        S.search(store_path, "grooming", model=lvt_folder)
    with pytest.raises(SearchError, match="no video 'missing.mp4'"):
        S.search(store_path, "grooming", model=lvt_folder, video_id="missing.mp4")
    result = S.search(store_path, "grooming", model=lvt_folder, video_id="second.mp4",
                      cache=False)[0]
    assert result.video.endswith("::second.mp4") and result.similarity.shape == (90,)


# ---------------------------------------------------------------------- command line
def test_cli_prints_ranges_with_times_and_json(video, lvt_folder, capsys):
    from prism_science.cli.main import main

    args = ["search", str(video), "a mouse grooming", "--model", str(lvt_folder), "--top", "3",
            "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert '"a mouse grooming"' in out and "cosine similarity" in out
    rows = re.findall(r"^\s+(\d)\s+(\d+)-(\d+)\s+(\d\d:\d\d:\d\d\.\d{3})-(\d\d:\d\d:\d\d\.\d{3})"
                      r"\s+(\d+)\s+(-?\d\.\d{3})$", out, flags=re.M)
    assert [int(r[0]) for r in rows] == list(range(1, len(rows) + 1)) and 1 <= len(rows) <= 3
    start, end, start_time = int(rows[0][1]), int(rows[0][2]), rows[0][3]
    assert start <= int(rows[0][5]) <= end
    assert start_time == S.format_time(start / 15.0)

    assert main([*args, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data) == 1 and data[0]["query"] == "a mouse grooming"
    assert data[0]["similarity"] == "cosine" and data[0]["n_frames"] == 90
    assert data[0]["hop"] == 2  # default: half the clip of 4 frames
    hit = data[0]["hits"][0]
    assert (hit["start_frame"], hit["end_frame"]) == (start, end)
    assert hit["start_time"] == start_time and -1.0 <= hit["score"] <= 1.0


def test_cli_refuses_a_model_without_tokenizer(video, capsys):
    from prism_science.cli.main import main

    assert main(["search", str(video), "grooming", "--model", "prism-test-p8-f4-r32",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no text tower" in err and "default" in err


def test_cli_searches_with_the_bundled_default_model(video, capsys):
    from prism_science.cli.main import main

    assert main(["search", str(video), "a mouse grooming", "--json", "--device", "cpu",
                 "--hop", "16", "--no-progress"]) == 0
    data = json.loads(capsys.readouterr().out)[0]
    assert data["model"] == "default" and data["clip_frames"] == 16 and data["hop"] == 16
    assert -1.0 <= data["similarity_min"] <= data["similarity_max"] <= 1.0
    assert data["hits"]
