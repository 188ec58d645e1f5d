"""The models API: build/load/save, forward contracts, tube masking, paddings, bad input."""

from __future__ import annotations

import dataclasses
import json
import logging

import pytest
import torch

import prism_science
from prism_science.errors import PrismError, WeightsError
from prism_science.models import (
    ConfigError,
    VideoEncoder,
    VideoInputError,
    build_model,
    list_models,
    load_model,
    save_model,
)
from prism_science.models import folder as folder_module
from prism_science.models import weights as weights_module

torch.set_num_threads(2)
TEST = "prism-test-p8-f4-r32"
LVT_TEST = "prism-lvt-test-p8-f4-r32"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(TEST)


@pytest.fixture
def video():
    return torch.rand(2, 4, 32, 32, 3, generator=torch.Generator().manual_seed(1))


def test_contract_attributes(model):
    assert isinstance(model, VideoEncoder) and not model.training
    assert model.name == TEST and model.weights_sha256 is None
    assert (model.num_frames, model.image_size, model.patch_size, model.model_dim) == (4, 32, 8, 32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.config.model_dim = 3


def test_forward_shapes_and_layout(model, video):
    with torch.no_grad():
        tokens = model(video)
        out = model.forward_intermediates(video)
    assert tokens.shape == (2, 4 * 16, 32) and tokens.dtype == torch.float32
    torch.testing.assert_close(out["tokens"], tokens)
    assert out["spatial_features"].shape == (2, 64, 32)
    assert [t.shape for t in out["spatial_layers"]] == [(2, 64, 32)] * 2
    assert [t.shape for t in out["temporal_layers"]] == [(2, 64, 32)] * 2
    assert out["grid"] == (4, 4, 4)
    # Time-major layout: changing only frame 2 changes the spatial features of frame 2 only.
    changed = video.clone()
    changed[:, 2] = torch.rand_like(changed[:, 2])
    with torch.no_grad():
        spatial = model.forward_intermediates(changed)["spatial_features"]
    per_frame = (spatial - out["spatial_features"]).abs().reshape(2, 4, 16, 32).amax(dim=(0, 2, 3))
    assert per_frame[2] > 0 and torch.all(per_frame[[0, 1, 3]] == 0)


def test_keep_spatial_is_tube_masking(model, video):
    keep = torch.tensor([[0, 5, 9], [3, 4, 15]])
    with torch.no_grad():
        out = model.forward_intermediates(video, keep_spatial=keep)
        full = model.forward_intermediates(video, keep_spatial=torch.arange(16).repeat(2, 1))
    assert out["tokens"].shape == (2, 4 * 3, 32)
    torch.testing.assert_close(full["tokens"], model(video))
    # Kept tokens depend only on kept patches: changing a dropped patch changes nothing.
    changed = video.clone()
    changed[0, :, 8:16, 8:16] = 0.5  # patch (1, 1) = position 5 is kept for sample 0 ...
    changed[0, :, 0:8, 8:16] = 0.25  # ... position 1 is not
    with torch.no_grad():
        again = model.forward_intermediates(changed, keep_spatial=keep)["tokens"]
    assert not torch.allclose(again[0], out["tokens"][0])
    changed = video.clone()
    changed[0, :, 0:8, 8:16] = 0.25
    with torch.no_grad():
        again = model.forward_intermediates(changed, keep_spatial=keep)["tokens"]
    torch.testing.assert_close(again, out["tokens"])
    with pytest.raises(VideoInputError, match="keep_spatial"):
        model.forward_intermediates(video, keep_spatial=torch.tensor([[0, 16], [1, 2]]))


def test_frame_paddings_hide_padded_frames(model, video):
    paddings = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    with torch.no_grad():
        out = model(video, frame_paddings=paddings)
        changed = video.clone()
        changed[0, 3] = torch.rand_like(changed[0, 3])
        changed[1, 2:] = 0.0
        again = model(changed, frame_paddings=paddings)
    grid = out.reshape(2, 4, 16, 32)
    grid_again = again.reshape(2, 4, 16, 32)
    torch.testing.assert_close(grid_again[0, :3], grid[0, :3])
    torch.testing.assert_close(grid_again[1, :2], grid[1, :2])
    with pytest.raises(VideoInputError, match="frame_paddings"):
        model(video, frame_paddings=torch.zeros(2, 3))


def test_other_frame_count_and_resolution(model):
    with torch.no_grad():
        tokens = model(torch.rand(1, 7, 48, 40, 3))
    assert tokens.shape == (1, 7 * 6 * 5, 32)


@pytest.mark.parametrize(
    "bad,match",
    [
        (torch.rand(4, 32, 32, 3), "5 dims"),
        (torch.rand(1, 4, 32, 32, 1), "3 RGB channels"),
        (torch.rand(1, 4, 3, 32, 32), "3 RGB channels"),
        ((torch.rand(1, 4, 32, 32, 3) * 255).to(torch.uint8), "float"),
        (torch.rand(1, 4, 32, 32, 3) * 255, r"\[0, 1\]"),
        (torch.rand(1, 4, 30, 32, 3), "multiples of the patch size"),
    ],
)
def test_bad_video_raises_clear_errors(model, bad, match):
    with pytest.raises(VideoInputError, match=match):
        model(bad)


def test_bad_video_type(model):
    with pytest.raises(VideoInputError, match="torch.Tensor"):
        model([[0.0]])


def test_overrides_are_checked(model, video):
    capped = build_model(TEST, atten_logit_cap=0.0)
    assert capped.config.atten_logit_cap == 0.0
    with pytest.raises(ConfigError, match="model_dimm"):
        build_model(TEST, model_dimm=3)
    with pytest.raises(ConfigError, match="attention"):
        build_model(TEST, attention="flash9")
    assert isinstance(ConfigError("x"), PrismError)


def test_unknown_name_lists_known_ones(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_model("prism-nope")
    assert TEST in str(info.value) and "prism-nope" in str(info.value)


def test_registered_name_without_weights_is_random_and_logged(caplog):
    with caplog.at_level(logging.WARNING):
        model = load_model(TEST)
    assert model.weights_sha256 is None
    assert "RANDOM" in caplog.text
    assert prism_science.load_model(TEST).config == model.config


def test_save_load_round_trip(tmp_path, model, video):
    folder = save_model(model, tmp_path / "w")
    # as readable as any file the umask allows (safetensors alone writes 0600)
    assert ((folder / "model.safetensors").stat().st_mode & 0o777
            == (folder / "config.json").stat().st_mode & 0o777)
    meta = json.loads((folder / "config.json").read_text())
    assert meta["family"] == "video_encoder" and meta["name"] == TEST
    assert meta["config"]["model_dim"] == 32 and len(meta["sha256"]) == 64
    loaded = load_model(folder)
    assert loaded.tensors_sha256 == meta["sha256"] and loaded.name == TEST
    assert loaded.weights_sha256 == weights_module.weights_identity(meta["sha256"], model.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(video), model(video))
    fast = load_model(folder, attention="fast")
    assert fast.config.attention == "fast"
    with pytest.raises(ConfigError, match="not_a_field"):
        load_model(folder, not_a_field=1)


def test_corrupt_truncated_and_mismatching_weights(tmp_path, model):
    folder = save_model(model, tmp_path / "w")
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="sha256"):
        load_model(folder)
    with pytest.raises(WeightsError, match="corrupt or truncated"):
        weights_module.load_folder(folder, verify=False)
    weights.write_bytes(data)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["mlp_dim"] = 48
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(WeightsError, match="ffn_layer1.*shape"):
        load_model(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(WeightsError, match="not valid JSON"):
        load_model(folder)
    with pytest.raises(WeightsError, match="is a file"):
        load_model(weights)


def test_default_model_listed_when_bundled(tmp_path, monkeypatch, model, video):
    monkeypatch.setattr(folder_module, "BUNDLED_DIR", tmp_path)
    assert "default" not in list_models()
    with pytest.raises(WeightsError, match="not bundled"):
        load_model("default")
    save_model(model, tmp_path / "default", name="prism-default")
    assert list_models()[0] == "default"
    loaded = load_model("default")
    assert loaded.name == "prism-default" and loaded.weights_sha256
    rows = {r["name"]: r for r in weights_module.model_table()}
    assert rows["default"]["weights_present"] and not rows[TEST]["weights_present"]
    assert rows["default"]["weights"] == "bundled" and rows[TEST]["weights"] == "random"


def test_user_weights_folder_is_found(tmp_path, monkeypatch, model):
    monkeypatch.setenv("PRISM_SCIENCE_WEIGHTS", str(tmp_path))
    save_model(model, tmp_path / TEST)
    assert load_model(TEST).weights_sha256 is not None


def test_fast_attention_close_to_exact(model, video):
    fast = build_model(TEST, attention="fast")
    fast.load_state_dict(model.state_dict())
    with torch.no_grad():
        diff = (fast(video) - model(video)).abs().max()
    assert diff < 1e-3


def test_lvt_test_variant(video):
    model = build_model(LVT_TEST)
    with torch.no_grad():
        assert model(video).shape == (2, 64, 32)
        emb = model.encode_video(video)
        frames = model.encode_frames(video)
        text = model.encode_text(torch.tensor([[5, 6, 7, 0]]), torch.tensor([[0, 0, 0, 1.0]]))
    assert emb.shape == (2, 32) and frames.shape == (2, 4, 32) and text.shape == (1, 32)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2))
    assert model.tokenizer is None
    with pytest.raises(ConfigError, match="tokenizer"):
        model.encode_texts(["a mouse grooming"])
    from prism_science.models import TextInputError

    with pytest.raises(TextInputError, match="vocabulary"):
        model.encode_text(torch.tensor([[500]]), torch.tensor([[0.0]]))


def test_bf16_autocast_runs(model, video):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        tokens = model(video)
    assert torch.isfinite(tokens.float()).all()
