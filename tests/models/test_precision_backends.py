"""Inference precision (fp32 / bf16 / auto), the oneDNN matmul path and the thread default."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prism_science.errors import ConfigError, PrismError
from prism_science.extraction import features as features_module
from prism_science.extraction.features import (
    default_threads,
    feature_provenance,
    load_encoder,
)
from prism_science.extraction.windows import WindowParams
from prism_science.models import build_model, load_model
from prism_science.models import weights as weights_module
from prism_science.models.layers import (
    choose_matmul_backend,
    onednn_available,
    set_matmul_backend,
)
from prism_science.models.weights import precision_context, resolve_precision

TEST_MODEL = "prism-test-p8-f4-r32"
LVT_TEST_MODEL = "prism-lvt-test-p8-f4-r32"
needs_onednn = pytest.mark.skipif(not onednn_available(), reason="torch built without oneDNN")


def _clips(model: torch.nn.Module, batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = (batch, model.num_frames, model.image_size, model.image_size, 3)
    return torch.rand(size, generator=generator)


@needs_onednn
@pytest.mark.parametrize("name", [TEST_MODEL, LVT_TEST_MODEL, "default"])
def test_onednn_path_matches_the_default_path(name):
    torch.manual_seed(0)
    model = load_model(name) if name == "default" else build_model(name)
    encoder = getattr(model, "vision_encoder", model)
    video = _clips(encoder)
    paddings = torch.zeros(2, encoder.num_frames)
    paddings[1, -1] = 1.0  # a padded frame exercises the masked paths too
    with torch.inference_mode():
        reference = encoder(video, frame_paddings=paddings)
        assert set_matmul_backend(model, "onednn") == "onednn"
        assert model.matmul_backend == "onednn"
        fast = encoder(video, frame_paddings=paddings)
    # The weights were really packed for oneDNN (the path ran).
    assert any("_onednn_cache" in m.__dict__ for m in encoder.modules())
    # fp32 sums in another order: 1e-5 of the largest token value (the default's reach 3.4)
    scale = float(reference.abs().max())
    torch.testing.assert_close(fast, reference, atol=1e-5 * max(1.0, scale), rtol=1e-5)
    set_matmul_backend(model, "default")
    assert not any(getattr(m, "onednn", False) for m in model.modules())


@needs_onednn
def test_onednn_repacks_after_a_weight_change_and_leaves_autograd_alone():
    model = build_model(TEST_MODEL)
    set_matmul_backend(model, "onednn")
    video = _clips(model, batch=1)
    with torch.inference_mode():
        before = model(video)
    with torch.no_grad():
        model.spatial_encoder.transformers_stack.x_layers[0].ff_layer.ffn_layer1.linear.weight \
            .mul_(2.0)
    with torch.inference_mode():
        after = model(video)
    set_matmul_backend(model, "default")
    with torch.inference_mode():
        reference = model(video)
    assert not torch.allclose(before, after)  # not a stale packed weight
    torch.testing.assert_close(after, reference, atol=1e-5, rtol=1e-5)
    # With autograd on, the default path runs and gradients flow.
    set_matmul_backend(model, "onednn")
    model(video).sum().backward()
    assert model.patch_projection.linear.weight.grad is not None


def test_choose_matmul_backend_measures_both():
    model = build_model(TEST_MODEL)
    choice, seconds = choose_matmul_backend(model, rows=256, rounds=2)
    assert choice in ("default", "onednn")
    if onednn_available():
        assert set(seconds) == {"default", "onednn"} and all(s >= 0 for s in seconds.values())
        # margin -1 means oneDNN "wins" whatever the timings: the decision follows the margin.
        assert choose_matmul_backend(model, rows=64, rounds=1, margin=-1.0)[0] == "onednn"
    # The probe leaves the model as it found it.
    assert not any(getattr(m, "onednn", False) for m in model.modules())
    with pytest.raises(ConfigError, match="auto"):
        set_matmul_backend(model, "auto")


def test_resolve_precision(monkeypatch):
    monkeypatch.setattr(weights_module, "native_bf16", lambda device="cpu": False)
    assert resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(weights_module, "native_bf16", lambda device="cpu": True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ConfigError, match="fp16.*auto, fp32 or bf16"):
        resolve_precision("fp16")


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert weights_module.native_bf16("cpu") is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert weights_module.native_bf16("cpu") is True


def test_bf16_autocast_is_close_to_fp32():
    model = build_model(TEST_MODEL)
    video = _clips(model)
    with torch.inference_mode():
        reference = model(video)
        with precision_context("bf16", "cpu"):
            half = model(video)
        with precision_context("fp32", "cpu"):
            full = model(video)
    assert half.dtype == torch.bfloat16 and full.dtype == torch.float32
    torch.testing.assert_close(full, reference, atol=0, rtol=0)
    deviation = (half.float() - reference).norm() / reference.norm()
    assert 0 < float(deviation) < 0.05


def test_load_encoder_records_precision_and_backend():
    params = WindowParams(hop=2)
    fp32 = load_encoder(TEST_MODEL, precision="fp32", matmul="default")
    assert fp32.inference_precision == "fp32" and fp32.matmul_backend == "default"
    prov = feature_provenance(fp32, params)
    assert prov["precision"] == "fp32" and prov["matmul_backend"] == "default"
    bf16 = load_encoder(TEST_MODEL, precision="bf16")
    # bf16 runs under autocast: the oneDNN float32 path is not used.
    assert bf16.inference_precision == "bf16" and bf16.matmul_backend == "default"
    assert feature_provenance(bf16, params)["precision"] == "bf16"
    with pytest.raises(PrismError, match="matmul backend"):
        load_encoder(TEST_MODEL, matmul="blas")


@pytest.mark.parametrize(("cores", "load", "threads"),
                         [(1, 0.0, 1), (1, 5.0, 1), (2, 0.3, 2), (2, 1.0, 1), (2, 11.0, 1),
                          (8, 0.5, 8), (8, 4.0, 7)])
def test_default_threads_leave_a_core_to_decoding_on_a_busy_machine(monkeypatch, cores, load,
                                                                     threads):
    monkeypatch.setattr(features_module, "usable_cores", lambda: cores)
    assert default_threads(load) == threads
    monkeypatch.setattr(features_module.os, "getloadavg", lambda: (load, 0.0, 0.0))
    assert default_threads() == threads


def test_usable_cores_follows_the_affinity_mask(monkeypatch):
    monkeypatch.setattr(features_module.os, "sched_getaffinity", lambda pid: {0, 3, 5},
                        raising=False)
    assert 1 <= features_module.usable_cores() <= 3


def test_extract_precision_flag_end_to_end(tmp_path, capsys):
    from prism_science.cli.main import main
    from prism_science.store import open_store
    from tests.store.conftest import write_video

    write_video(tmp_path / "a.mp4", 12)
    out = tmp_path / "f.zarr"
    base = ["extract", str(tmp_path / "a.mp4"), "--out", str(out), "--model", TEST_MODEL,
            "--hop", "2", "--no-progress", "--threads", "1"]
    assert main([*base, "--precision", "fp32"]) == 0
    with open_store(out, "r") as store:
        fp32 = store.read_features("a.mp4", f"{TEST_MODEL}/mean")
    assert fp32.provenance["precision"] == "fp32"
    # Precision is not an identity field: a bf16 rerun resumes the same feature set.
    capsys.readouterr()
    assert main([*base, "--precision", "bf16"]) == 0
    assert "1 already complete" in capsys.readouterr().out
    assert main([*base, "--precision", "bf16", "--overwrite"]) == 0
    with open_store(out, "r") as store:
        bf16 = store.read_features("a.mp4", f"{TEST_MODEL}/mean")
    assert bf16.provenance["precision"] == "bf16"
    assert bf16.values.dtype == np.float32
    deviation = np.linalg.norm(bf16.values - fp32.values) / np.linalg.norm(fp32.values)
    assert 0 < deviation < 0.05
    with pytest.raises(SystemExit):
        main([*base, "--precision", "fp16"])


@needs_onednn
def test_extract_matmul_flag_is_fixed_unless_asked(tmp_path):
    """The backend is torch's default unless --matmul says otherwise (a measured choice could
    differ between a run and its resume); --matmul onednn gives the same features within 1e-5."""
    from prism_science.cli.main import main
    from prism_science.store import open_store
    from tests.store.conftest import write_video

    write_video(tmp_path / "a.mp4", 12)
    runs = {}
    for flag in (None, "onednn"):
        out = tmp_path / f"{flag}.zarr"
        args = ["extract", str(tmp_path / "a.mp4"), "--out", str(out), "--model", TEST_MODEL,
                "--hop", "2", "--no-progress", "--threads", "1", "--precision", "fp32"]
        assert main(args + ([] if flag is None else ["--matmul", flag])) == 0
        with open_store(out, "r") as store:
            runs[flag] = store.read_features("a.mp4", f"{TEST_MODEL}/mean")
    assert runs[None].provenance["matmul_backend"] == "default"
    assert runs["onednn"].provenance["matmul_backend"] == "onednn"
    np.testing.assert_allclose(runs["onednn"].values, runs[None].values, atol=1e-5)


def test_search_precision_flag(tmp_path, capsys):
    import json

    from prism_science.cli.main import main
    from tests.store.conftest import write_video
    from tests.test_search import make_lvt_folder

    video = write_video(tmp_path / "v.mp4", 12, 32, 32)
    (tmp_path / "lvt").mkdir()
    model = make_lvt_folder(tmp_path / "lvt")  # the LvT test model with a tokenizer
    base = ["search", str(video), "a mouse grooming", "--json", "--device", "cpu", "--hop", "2",
            "--model", str(model), "--no-progress"]
    results = {}
    for precision in ("fp32", "bf16"):
        assert main([*base, "--precision", precision]) == 0
        results[precision] = json.loads(capsys.readouterr().out)[0]
    fp32, bf16 = results["fp32"], results["bf16"]
    assert fp32["similarity_max"] != bf16["similarity_max"]  # bf16 really ran
    assert abs(fp32["similarity_max"] - bf16["similarity_max"]) < 0.05


def test_load_model_takes_a_precision_name_as_dtype(monkeypatch):
    model = load_model(TEST_MODEL, dtype="bf16")
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    monkeypatch.setattr(weights_module, "native_bf16", lambda device="cpu": False)
    assert {p.dtype for p in load_model(TEST_MODEL, dtype="auto").parameters()} == {
        torch.float32}
    with pytest.raises(ConfigError, match="precision 'half'"):
        load_model(TEST_MODEL, dtype="half")
