"""Checkpoint conversion: inferred architectures of any size, and errors that name the key."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_science.cli.main import main
from prism_science.errors import WeightsError
from prism_science.models import (
    VideoClassifierConfig,
    VideoEncoderConfig,
    VideoTextConfig,
    build_model,
    load_model,
)
from prism_science.models.convert import convert_checkpoint, infer_config, to_official

from ._golden import GOLDEN

torch.set_num_threads(2)


def _write(path, arrays):
    np.savez(path, **{k: (v.numpy() if isinstance(v, torch.Tensor) else v)
                      for k, v in arrays.items()})
    return path


@pytest.mark.parametrize(
    "config",
    [
        VideoEncoderConfig(patch_size=4, num_frames=3, image_size=20, model_dim=24,
                           num_spatial_layers=3, num_temporal_layers=1, num_heads=2, mlp_dim=40),
        VideoClassifierConfig(patch_size=4, num_frames=2, image_size=16, model_dim=16,
                              num_spatial_layers=1, num_temporal_layers=1, num_heads=4,
                              mlp_dim=32, num_classes=7),
        VideoTextConfig(patch_size=4, num_frames=2, image_size=16, model_dim=16,
                        num_spatial_layers=1, num_temporal_layers=2, num_heads=2, mlp_dim=24,
                        num_auxiliary_layers=0, vocabulary_size=50, num_unimodal_layers=3,
                        text_norm_policy="primer_hybrid"),
    ],
    ids=["encoder", "classifier", "lvt-primer"],
)
@pytest.mark.parametrize("stacked", [True, False], ids=["repeated", "per-layer"])
def test_unregistered_sizes_round_trip(tmp_path, config, stacked):
    torch.manual_seed(0)
    model = build_model(config)
    path = _write(tmp_path / "ckpt.npz", to_official(model, stacked=stacked))
    arrays = dict(np.load(path))
    assert infer_config(arrays) == config
    loaded = load_model(convert_checkpoint(path, tmp_path / "w"))
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, msg=key)


def test_missing_extra_and_mismatching_keys_are_named(tmp_path):
    arrays = dict(np.load(GOLDEN / "video_encoder_params.npz"))
    missing = dict(arrays)
    del missing["params/temporal_ln/scale"]
    with pytest.raises(WeightsError, match="params/temporal_ln/scale"):
        convert_checkpoint(_write(tmp_path / "a.npz", missing), tmp_path / "a")
    extra = dict(arrays, **{"params/mystery/kernel": np.zeros(3, np.float32)})
    with pytest.raises(WeightsError, match="params/mystery/kernel"):
        convert_checkpoint(_write(tmp_path / "b.npz", extra), tmp_path / "b")
    with pytest.raises(WeightsError, match="params/patch_projection/linear/kernel.*shape"):
        convert_checkpoint(GOLDEN / "video_encoder_params.npz", tmp_path / "c",
                           variant="prism-test-p8-f4-r32")
    with pytest.raises(WeightsError, match="family"):
        convert_checkpoint(_write(tmp_path / "d.npz", {"params/foo/bar": np.zeros(2)}),
                           tmp_path / "d")


def test_variant_of_another_family_is_refused(tmp_path):
    with pytest.raises(WeightsError, match="unknown or extra key"):
        convert_checkpoint(GOLDEN / "lvt_params.npz", tmp_path / "w",
                           variant="prism-test-p8-f4-r32")


def test_corrupt_and_pickled_checkpoints(tmp_path):
    data = (GOLDEN / "video_encoder_params.npz").read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(WeightsError, match="truncated.npz"):
        convert_checkpoint(truncated, tmp_path / "a")
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(WeightsError, match="pickled.npz"):
        convert_checkpoint(pickled, tmp_path / "b")
    with pytest.raises(WeightsError, match="does not exist"):
        convert_checkpoint(tmp_path / "nope.npz", tmp_path / "c")


def test_cli_convert_weights(tmp_path, capsys):
    out = tmp_path / "w"
    assert main(["convert-weights", str(GOLDEN / "classifier_params.npz"), "--out", str(out),
                 "--name", "golden-classifier"]) == 0
    assert "video_classifier" in capsys.readouterr().out
    assert load_model(out).name == "golden-classifier"
    assert main(["convert-weights", str(GOLDEN / "classifier_params.npz"), "--out",
                 str(tmp_path / "x"), "--variant", "prism-test-p8-f4-r32"]) == 1
    assert "error:" in capsys.readouterr().err
