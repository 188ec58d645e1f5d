"""The GPU path, checked for correctness on CPU: batched, prefetched, pinned-style, delayed
read-back extraction equals the plain path; the convolution patch embedding equals the matmul;
the analytic FLOP count equals torch's counter; decode and compute overlap; attention per device.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from prism_science.errors import VideoError
from prism_science.extraction import features as features_module
from prism_science.extraction.features import iter_video_features, load_encoder
from prism_science.extraction.windows import WindowParams
from prism_science.models import build_model
from prism_science.models import layers as layers_module
from prism_science.models.encoder import encoder_flops
from prism_science.models.layers import DotProductAttention, choose_attention, set_attention
from prism_science.video import open_video
from tests.store.conftest import TEST_MODEL, write_video

TOL = 1e-5


@pytest.fixture(scope="module")
def model():
    return load_encoder(TEST_MODEL, device="cpu")


def _features(model, reader, params, **kwargs):
    blocks = list(iter_video_features(model, reader, params, **kwargs))
    starts = [b[0] for b in blocks]
    assert starts == sorted(starts)
    return blocks[0][0], blocks[-1][1], np.concatenate([b[2] for b in blocks])


@pytest.mark.parametrize("params", [
    WindowParams(hop=2),
    WindowParams(stride=2, hop=3, tokens="grid", grid=2),
    WindowParams(mode="center", padding="zeros", tokens="full"),
])
def test_batched_prefetched_path_equals_plain_path(model, tmp_path, params):
    path = write_video(tmp_path / "v.mp4", 29, seed=3)
    with open_video(path) as reader:
        plain = _features(model, reader, params, batch_size=1, prefetch=0,
                          static_batches=False, pin_memory=False)
        # 5 clips a batch, 3 batches gathered ahead in a thread, the short last batch padded
        # to 5 (static shapes), results finished one batch late, as on CUDA.
        fast = _features(model, reader, params, batch_size=5, prefetch=3, static_batches=True,
                         decode_chunk=4, queue_chunks=2)
        ranged = _features(model, reader, params, batch_size=4, prefetch=2,
                           static_batches=True, frame_range=(7, 20))
    assert plain[:2] == fast[:2] == (0, 29)
    assert float(np.abs(fast[2] - plain[2]).max()) <= TOL
    assert ranged[:2] == (7, 20)
    assert float(np.abs(ranged[2] - plain[2][7:20]).max()) <= TOL


def test_conv_patch_embedding_equals_matmul():
    torch.manual_seed(0)
    encoder = build_model(TEST_MODEL, attention="exact").eval()
    video = torch.rand(2, 4, 32, 32, 3)
    other_size = torch.rand(1, 3, 48, 40, 3)  # resized position embeddings, non-square
    paddings = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    with torch.inference_mode():
        encoder.conv_patch_embedding = False
        assert not encoder.use_conv_patch_embedding(video)  # CPU default: the matmul
        reference = encoder(video, paddings), encoder(other_size)
        encoder.conv_patch_embedding = True
        conv = encoder(video, paddings), encoder(other_size)
    for found, expected in zip(conv, reference, strict=True):
        assert found.shape == expected.shape
        assert float((found - expected).abs().max()) <= TOL
    encoder.conv_patch_embedding = None
    fake_cuda = SimpleNamespace(device=torch.device("cuda"))
    with torch.inference_mode():
        assert encoder.use_conv_patch_embedding(fake_cuda)


@pytest.mark.parametrize(("name", "frames", "size"), [
    (TEST_MODEL, None, None),
    ("prism-lvt-test-p8-f4-r32", 6, 48),
])
def test_analytic_flops_equal_torch_flop_counter(name, frames, size):
    model = build_model(name, attention="exact").eval()
    encoder = getattr(model, "vision_encoder", model)
    config = encoder.config
    t, s = frames or config.num_frames, size or config.image_size
    video = torch.rand(2, t, s, s, 3)
    for conv in (False, True):
        encoder.conv_patch_embedding = conv
        counter = FlopCounterMode(display=False)
        with torch.inference_mode(), counter:
            encoder(video)
        assert counter.get_total_flops() == 2 * encoder_flops(config, frames, size), conv


def test_official_base_flops_per_frame():
    from prism_science.models import get_config

    per_frame = encoder_flops(get_config("videoprism-v1-base-p18-f16-r288")) / 16
    assert 55e9 < per_frame < 65e9  # the "about 58 GFLOPs per frame"


class _SlowReader:
    """A video reader whose decoding sleeps ``delay`` seconds per chunk (GIL released)."""

    def __init__(self, frames: np.ndarray, delay: float) -> None:
        self.frames, self.delay = frames, delay
        self.path = Path("slow.mp4")
        self.info = SimpleNamespace(n_frames=len(frames))
        self.decode_seconds = 0.0
        self.fail_at: int | None = None

    def iter_chunks(self, chunk, start=0, stop=None, size=None):
        stop = len(self.frames) if stop is None else stop
        for first in range(start, stop, chunk):
            if self.fail_at is not None and first >= self.fail_at:
                return  # a truncated file: decoding ends early
            time.sleep(self.delay)
            self.decode_seconds += self.delay
            yield first, self.frames[first:min(first + chunk, stop)]


def test_decode_and_compute_overlap(model):
    frames = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    params = WindowParams(hop=4)  # 16 clips of 4 frames; 8 batches of 2
    compute = {"seconds": 0.0, "started": 0.0}

    def before_forward(module, args):
        compute["started"] = time.perf_counter()
        time.sleep(0.2)  # a slow device: GIL released, like a CUDA kernel

    def after_forward(module, args, output):
        compute["seconds"] += time.perf_counter() - compute["started"]

    handles = [model.register_forward_pre_hook(before_forward),
               model.register_forward_hook(after_forward)]
    try:
        reader = _SlowReader(frames, delay=0.2)  # 8 chunks of 8 frames: a slow decoder
        t0 = time.perf_counter()
        overlapped = _features(model, reader, params, batch_size=2, decode_chunk=8,
                               queue_chunks=2, prefetch=2)
        total = time.perf_counter() - t0
    finally:
        for handle in handles:
            handle.remove()
    serial = reader.decode_seconds + compute["seconds"]  # at least 1.6 + 1.6 s
    assert reader.decode_seconds >= 1.59 and compute["seconds"] >= 1.59
    # One after the other would take decode + compute; overlapped about the larger of the
    # two plus the first chunk's decode.
    assert total < 0.85 * serial, (total, serial)
    plain = _features(model, _SlowReader(frames, 0.0), params, batch_size=1, prefetch=0)
    assert float(np.abs(overlapped[2] - plain[2]).max()) <= TOL


def test_truncated_video_error_travels_through_the_batch_thread(model):
    frames = np.random.default_rng(1).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    reader = _SlowReader(frames, 0.0)
    reader.fail_at = 24
    blocks = []
    with pytest.raises(VideoError, match="slow.mp4: decoding stopped before frame"):
        for block in iter_video_features(model, reader, WindowParams(hop=4), batch_size=2,
                                         decode_chunk=8, prefetch=2):
            blocks.append(block)
    assert blocks and blocks[-1][1] <= 24  # the frames before the break came out first


def test_closing_early_stops_the_worker_threads(model):
    frames = np.random.default_rng(2).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    before = set(threading.enumerate())
    stream = iter_video_features(model, _SlowReader(frames, 0.01), WindowParams(hop=4),
                                 batch_size=1, decode_chunk=4, queue_chunks=1, prefetch=1)
    next(stream)
    stream.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and set(threading.enumerate()) - before:
        time.sleep(0.05)
    assert not (set(threading.enumerate()) - before)


def test_prefetch_and_batch_size_are_checked(model):
    reader = _SlowReader(np.zeros((8, 32, 32, 3), np.uint8), 0.0)
    with pytest.raises(features_module.PrismError, match="prefetch must be >= 0"):
        next(iter_video_features(model, reader, WindowParams(), prefetch=-1))


def test_attention_choice_per_device(monkeypatch):
    assert choose_attention(50.0, "cpu", "exact") == "exact"
    assert choose_attention(0.0, "cuda", "exact") == "fast"  # SDPA is exact without a cap
    assert choose_attention(50.0, "cuda", "fast") == "fast"  # a deliberate choice is kept
    monkeypatch.setattr(layers_module, "flex_available", lambda device: True)
    assert choose_attention(50.0, "cuda", "exact") == "flex"
    monkeypatch.setattr(layers_module, "flex_available", lambda device: False)
    assert choose_attention(50.0, "cuda", "exact") == "exact"


def test_auto_flex_falls_back_to_exact_once(monkeypatch):
    torch.manual_seed(0)
    exact = build_model(TEST_MODEL, attention="exact", atten_logit_cap=0.5).eval()
    auto = build_model(TEST_MODEL, attention="exact", atten_logit_cap=0.5).eval()
    auto.load_state_dict(exact.state_dict())
    monkeypatch.setattr(layers_module, "flex_available", lambda device: True)
    assert set_attention(auto, "auto", device="cuda") == {"flex": 4}
    calls = []

    def failing_flex(self, *args):
        calls.append(self)
        raise RuntimeError("no Triton for this GPU")

    monkeypatch.setattr(DotProductAttention, "_flex", failing_flex)
    video = torch.rand(2, 4, 32, 32, 3)
    paddings = torch.tensor([[0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    with torch.inference_mode():
        found, expected = auto(video, paddings), exact(video, paddings)
        auto(video, paddings)  # every layer now exact: no second attempt
    assert len(calls) == 4
    assert float((found - expected).abs().max()) <= TOL
    assert set_attention(auto, "exact") == {"exact": 4}
    with pytest.raises(layers_module.ConfigError, match="attention 'sdpa'"):
        set_attention(auto, "sdpa")
