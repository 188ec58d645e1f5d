"""Weights identity (issue 23): byte-stable saves, identity = sha256 of tensors file + config,
and the identity is what feature provenance records."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest
import torch

from prism_science.extraction.features import feature_provenance
from prism_science.extraction.windows import WindowParams
from prism_science.models import build_model, load_model, save_model, weights_identity
from prism_science.models.folder import read_tensors

torch.set_num_threads(2)
TEST = "prism-test-p8-f4-r32"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(11)
    return build_model(TEST)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_saves_of_the_same_tensors_are_byte_identical(tmp_path, model):
    # Two metadata keys came out in either order (a hash map's), so 6 saves gave 2 sha256.
    digests = {_sha(save_model(model, tmp_path / f"w{i}") / "model.safetensors")
               for i in range(12)}
    assert len(digests) == 1
    data = (tmp_path / "w0" / "model.safetensors").read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    assert header["__metadata__"] == {"format": "pt"}
    identities = {load_model(tmp_path / f"w{i}").weights_sha256 for i in range(3)}
    assert identities == {model.weights_sha256}


def test_resaving_a_loaded_model_keeps_file_and_identity(tmp_path, model):
    first = load_model(save_model(model, tmp_path / "a"))
    second = load_model(save_model(first, tmp_path / "b"))
    assert second.tensors_sha256 == first.tensors_sha256 == _sha(tmp_path / "a" /
                                                                  "model.safetensors")
    assert second.weights_sha256 == first.weights_sha256
    assert first.weights_sha256 == weights_identity(first.tensors_sha256, model.config)


def test_a_config_change_with_the_same_tensors_is_another_identity(tmp_path, model):
    folder = save_model(model, tmp_path / "w")
    original = load_model(folder)
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["norm_policy"] = "post"  # same tensors, other computation
    (folder / "config.json").write_text(json.dumps(meta))
    post = load_model(folder)
    assert post.tensors_sha256 == original.tensors_sha256
    assert post.weights_sha256 != original.weights_sha256
    # A load-time override is a config change too; the recorded file sha256 stays the same.
    fast = load_model(folder, attention="fast")
    assert fast.weights_sha256 not in (post.weights_sha256, original.weights_sha256)
    assert len(fast.weights_sha256) == 64


def test_feature_provenance_records_the_identity(tmp_path, model):
    loaded = load_model(save_model(model, tmp_path / "w"))
    params = WindowParams(hop=4)
    provenance = feature_provenance(loaded, params)
    assert provenance["weights_sha256"] == loaded.weights_sha256
    assert provenance["tensors_sha256"] == loaded.tensors_sha256
    other = load_model(tmp_path / "w", norm_policy="post")
    assert feature_provenance(other, params)["weights_sha256"] != provenance["weights_sha256"]


def test_load_with_dtype_and_device_memory_maps(tmp_path, model):
    folder = save_model(model, tmp_path / "w")
    tensors = read_tensors(folder / "model.safetensors")
    assert all(t.device.type == "cpu" for t in tensors.values())
    half = load_model(folder, dtype=torch.bfloat16, device="cpu")
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert half.weights_sha256 == model.weights_sha256
    video = torch.rand(1, 4, 32, 32, 3, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = half(video.to(torch.bfloat16)).float()
        torch.testing.assert_close(out, model(video), atol=0.1, rtol=0.05)
    random_bf16 = load_model(TEST, dtype=torch.bfloat16)
    assert next(random_bf16.parameters()).dtype == torch.bfloat16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_straight_onto_the_gpu(tmp_path, model):
    folder = save_model(model, tmp_path / "w")
    gpu = load_model(folder, device="cuda", dtype=torch.bfloat16)
    assert {p.device.type for p in gpu.parameters()} == {"cuda"}
    assert gpu.weights_sha256 == model.weights_sha256
