"""Behaviors named in words on a real extraction: the frame_emb token mode, zero-shot scores
written like a probe's, a prompt probe trained through the pipeline scoring unseen names, the
CLI, and the refusals (model without tokenizer / text tower, names, token mode)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from prism_science.cli.main import main
from prism_science.errors import ProbeError, SearchError, WindowError
from prism_science.extraction import ExtractOptions, run_extraction
from prism_science.extraction.windows import WindowParams
from prism_science.labels import Interval, LabelTable, Segment, save_labels
from prism_science.pipeline import (
    load_predictions,
    load_trained_probe,
    save_trained_probe,
    train_probe,
)
from prism_science.pipeline.zero_shot import (
    parse_behaviors,
    zero_shot_scores,
    zero_shot_to_store,
)
from prism_science.probes import prompt as P
from prism_science.store import open_store
from prism_science.video import open_video
from tests.test_search import make_lvt_folder

N_FRAMES = 48


@pytest.fixture(scope="module")
def lvt_folder(tmp_path_factory):
    return make_lvt_folder(tmp_path_factory.mktemp("lvt"))


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory):
    """A 48-frame 32x32 video as a folder of PNGs: a bright square that moves, then stops."""
    folder = tmp_path_factory.mktemp("video") / "clip"
    folder.mkdir()
    for i in range(N_FRAMES):
        image = np.full((32, 32, 3), 30, np.uint8)
        x = min(i, 24)
        image[10:18, x:x + 8] = (220, 180, 40)
        Image.fromarray(image).save(folder / f"{i:04d}.png")
    return folder


@pytest.fixture(scope="module")
def emb_store(tmp_path_factory, lvt_folder, frames_folder):
    """A store with the clip's frame embeddings from the tiny LvT model (with tokenizer)."""
    path = tmp_path_factory.mktemp("store") / "s.zarr"
    options = ExtractOptions(model=str(lvt_folder), params=WindowParams(tokens="frame_emb",
                                                                        hop=2))
    run_extraction([frames_folder], path, options)
    return path


def _video_id(store_path):
    with open_store(store_path, mode="r") as store:
        return store.video_ids()[0]


def test_frame_emb_features_are_the_models_frame_embeddings(tmp_path, lvt_folder, frames_folder):
    """On a clip of exactly T frames one window covers everything: the stored features are
    ``encode_frames`` of that clip."""
    short = tmp_path / "short"
    short.mkdir()
    for path in sorted(frames_folder.iterdir())[:4]:
        (short / path.name).write_bytes(path.read_bytes())
    store_path = tmp_path / "s.zarr"
    run_extraction([short], store_path, ExtractOptions(
        model=str(lvt_folder), params=WindowParams(tokens="frame_emb", hop=4)))
    model = P.resolve_text_model(str(lvt_folder))
    with open_video(short) as reader:
        video = torch.from_numpy(reader.get_frames(range(4))).float()[None] / 255.0
    with torch.no_grad():
        expected = model.encode_frames(video)[0].numpy()
    with open_store(store_path, mode="r") as store:
        video_id = store.video_ids()[0]
        assert store.feature_keys(video_id) == ["prism-lvt-test-p8-f4-r32/frame_emb"]
        features = store.read_features(video_id)
    assert features.values.shape == (4, 32)
    np.testing.assert_allclose(features.values, expected, atol=1e-5)
    assert features.provenance["window"]["tokens"] == "frame_emb"


def test_frame_emb_needs_a_video_text_model(tmp_path, frames_folder):
    with pytest.raises(WindowError, match="'prism-test-p8-f4-r32' has none.*--model default"):
        run_extraction([frames_folder], tmp_path / "s.zarr", ExtractOptions(
            model="prism-test-p8-f4-r32", params=WindowParams(tokens="frame_emb", hop=4)))


def test_zero_shot_writes_scores_binary_and_labels_like_a_probe(emb_store, lvt_folder):
    names = ["grooming", "walking", "resting"]
    templates = ["a video of {}.", "a mouse {}."]
    with open_store(emb_store, mode="r+") as store:
        results = zero_shot_to_store(store, "grooming, walking,resting", model=str(lvt_folder),
                                     templates=templates, threshold=0.34)
        video_id = store.video_ids()[0]
        scores, binary, attrs = load_predictions(store, video_id, "zero-shot")
        values = store.read_features(video_id).values
        labels = store.list_items(video_id, "labels/predicted")
    assert list(results) == [video_id]
    assert scores.shape == binary.shape == (N_FRAMES, 3)
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=1e-5)  # softmax over the three names
    assert attrs["behaviors"] == names and attrs["templates"] == templates
    assert attrs["probe_kind"] == "zero-shot" and attrs["thresholds"] == [0.34] * 3
    np.testing.assert_array_equal(binary, (scores >= 0.34).astype(np.int8))
    assert "zero-shot" in labels
    # The scores are the prompt ensemble's: the mean of the templates' text vectors.
    model = P.resolve_text_model(str(lvt_folder))
    with torch.no_grad():
        vectors = torch.stack([model.encode_texts([t.format(n) for n in names])
                               for t in templates]).mean(0)
    vectors = torch.nn.functional.normalize(vectors, dim=-1).numpy()
    np.testing.assert_allclose(scores, zero_shot_scores(values, vectors, 3), atol=1e-5)
    single = zero_shot_scores(values, vectors[:1], 1)
    np.testing.assert_allclose(single, 1.0)  # why one name alone needs a background


def test_zero_shot_cli_and_its_refusals(emb_store, lvt_folder, tmp_path, capsys):
    argv = ["probe", "zero-shot", "--store", str(emb_store), "--model", str(lvt_folder)]
    assert main([*argv, "--behaviors", "grooming,chasing", "--name", "zs",
                 "--template", "a video of {}."]) == 0
    out = capsys.readouterr().out
    assert "predictions/zs" in out and "grooming=" in out and "chasing=" in out
    with open_store(emb_store, mode="r") as store:
        _, _, attrs = load_predictions(store, _video_id(emb_store), "zs")
    assert attrs["templates"] == ["a video of {}."]

    assert main([*argv, "--behaviors", "grooming,zqxj"]) == 2
    assert "cannot encode these behavior names: 'zqxj'" in capsys.readouterr().err
    assert main([*argv, "--behaviors", "grooming"]) == 2
    assert "--background" in capsys.readouterr().err
    assert main([*argv, "--behaviors", "grooming", "--background", "a mouse resting."]) == 0
    capsys.readouterr()
    for model, problem in (("prism-lvt-test-p8-f4-r32", "has no weights installed"),
                           ("prism-test-p8-f4-r32", "has no text tower")):
        assert main(["probe", "zero-shot", "--store", str(emb_store), "--model", model,
                     "--behaviors", "grooming,walking"]) == 2
        err = capsys.readouterr().err
        assert f"model '{model}' {problem}" in err, err


def test_features_without_frame_embeddings_say_how_to_extract_them(tmp_path, lvt_folder,
                                                                     frames_folder):
    store_path = tmp_path / "mean.zarr"
    run_extraction([frames_folder], store_path, ExtractOptions(
        model=str(lvt_folder), params=WindowParams(tokens="mean", hop=4)))
    with open_store(store_path, mode="r+") as store, pytest.raises(ProbeError) as info:
        zero_shot_to_store(store, "grooming,walking", model=str(lvt_folder))
    message = str(info.value)
    assert "has no frame-embedding features" in message and "nothing was written" in message
    assert "--tokens frame_emb" in message
    with open_store(store_path, mode="r") as store:
        assert not store.has_item(store.video_ids()[0], "predictions/zero-shot/scores")


def test_model_without_tokenizer_refused_before_loading(emb_store, monkeypatch):
    import prism_science.search as S

    monkeypatch.setattr(S, "load_encoder", lambda *a, **k: pytest.fail("weights were loaded"))
    with open_store(emb_store, mode="r+") as store, pytest.raises(SearchError,
                                                                 match="has no text tower"):
        zero_shot_to_store(store, "grooming,walking", model="prism-test-p8-f4-r32")


def test_other_weights_than_the_features_are_refused(emb_store, tmp_path):
    other = make_lvt_folder(tmp_path)  # the same seeded weights as the features'
    from prism_science.models import load_model, save_model

    model = load_model(other)
    with torch.no_grad():
        model.text_encoder.cls_emb.add_(1.0)
    folder = save_model(model, tmp_path / "changed")
    (folder / "tokenizer.model").write_bytes((other / "tokenizer.model").read_bytes())
    with open_store(emb_store, mode="r+") as store, pytest.raises(ProbeError,
                                                                 match="must come from one"):
        zero_shot_to_store(store, "grooming,walking", model=str(folder))


def test_parse_behaviors():
    assert parse_behaviors(" chasing, grooming ,") == ["chasing", "grooming"]
    with pytest.raises(ProbeError, match="no behavior named"):
        parse_behaviors(" , ")
    with pytest.raises(ProbeError, match=r"\['chasing'\] are named twice"):
        parse_behaviors("chasing,chasing")


def test_prompt_probe_through_the_pipeline_scores_unseen_names(emb_store, lvt_folder, tmp_path,
                                                                capsys):
    """Train --kind prompt on labeled frames (CLI), then score a trained and a new name."""
    video_id = _video_id(emb_store)
    table = LabelTable(intervals=[Interval("walking", 0, 23), Interval("resting", 24, 47)],
                       segments=[Segment(0, N_FRAMES - 1)], n_frames=N_FRAMES, fps=30.0)
    with open_store(emb_store, mode="r+") as store:
        save_labels(store, video_id, table, "manual")
        result = train_probe(store, "manual", "prompt", validation_fraction=0.0,
                             params={"text_model": str(lvt_folder), "window": 8,
                                     "max_epochs": 5})
    assert isinstance(result.probe, P.PromptProbe)
    assert result.probe.classes_.tolist() == ["walking", "resting"]
    assert len(result.data.X) == N_FRAMES  # every frame of the video is kept as context
    save_trained_probe(result.probe, tmp_path / "prompt_probe")
    probe_dir = tmp_path / "prompt_probe"
    assert load_trained_probe(probe_dir).text_model == str(lvt_folder)
    assert main(["probe", "zero-shot", "--store", str(emb_store), "--probe", str(probe_dir),
                 "--behaviors", "walking,chasing"]) == 0
    assert "predictions/prompt_probe" in capsys.readouterr().out
    with open_store(emb_store, mode="r") as store:
        scores, binary, attrs = load_predictions(store, video_id, "prompt_probe")
    assert attrs["behaviors"] == ["walking", "chasing"]
    assert attrs["trained_behaviors"] == ["walking", "resting"]
    trained = load_trained_probe(probe_dir).predict_proba(_features(emb_store),
                                                          groups=np.zeros(N_FRAMES))
    np.testing.assert_allclose(scores[:, 0], trained[:, 0], atol=1e-5)
    assert scores.shape == (N_FRAMES, 2) and np.all((scores >= 0) & (scores <= 1))
    # The CLI trains it too, and refuses --text-model for other kinds.
    argv = ["probe", "train", "--store", str(emb_store), "--labels", "manual", "--out",
            str(tmp_path / "cli_probe"), "--val-fraction", "0", "--max-epochs", "2"]
    assert main([*argv, "--kind", "prompt", "--text-model", str(lvt_folder)]) == 0
    assert (tmp_path / "cli_probe" / "probe.json").is_file()
    assert main([*argv, "--kind", "linear", "--text-model", str(lvt_folder)]) == 2


def _features(store_path):
    with open_store(store_path, mode="r") as store:
        return store.read_features(store.video_ids()[0]).values


def test_prompt_probe_of_a_folder_model_asks_for_the_folder(emb_store):
    """The provenance records the model's name; a folder model is not found by it."""
    video_id = _video_id(emb_store)
    table = LabelTable(intervals=[Interval("walking", 0, 23)], segments=[Segment(0, 47)],
                       n_frames=N_FRAMES, fps=30.0)
    with open_store(emb_store, mode="r+") as store:
        save_labels(store, video_id, table, "folder_test")
        with pytest.raises(ProbeError, match="--text-model FOLDER"):
            train_probe(store, "folder_test", "prompt", validation_fraction=0.0,
                        params={"max_epochs": 1})
