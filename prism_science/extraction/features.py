"""One video -> per-frame features, streamed in frame order with bounded memory.

A background thread decodes frames (resized to the model's input size inside PyAV) into a
bounded queue while the calling thread encodes batches of clips; per-frame features come out as
``(frame_start, frame_stop, features)`` blocks as soon as every clip touching them has been
encoded. Memory holds a few decoded chunks, the frames of one batch of clips, and the frames
still being averaged -- never the whole video. See docs/extraction.md.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import platform
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from prism_science import __version__
from prism_science.errors import PrismError, VideoError, WindowError
from prism_science.extraction.windows import (
    FrameAccumulator,
    WindowParams,
    feature_shape,
    plan_windows,
    pool_tokens,
    window_range,
)
from prism_science.video import VideoReader

__all__ = [
    "encoder_of",
    "feature_key",
    "feature_provenance",
    "iter_video_features",
    "load_encoder",
    "model_feature_shape",
    "resolve_device",
]

logger = logging.getLogger(__name__)

# Random initialisations are seeded so that every process (resumed runs, Dask workers) builds
# the same weights for a registered model that has no weights installed.
_RANDOM_INIT_SEED = 0
_DECODE_CHUNK = 16
_QUEUE_CHUNKS = 4


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> ``cuda`` when available, else ``cpu``; other strings as torch reads them."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise PrismError(f"device {device!r} is not a torch device ({exc}); use auto, cpu, "
                         "cuda or cuda:N") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PrismError(
            f"device {device!r}: torch {torch.__version__} sees no CUDA device; use --device "
            "cpu (or auto), or install a CUDA build of torch on a GPU machine"
        )
    return resolved


def load_encoder(name_or_dir: str, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model for feature extraction, in eval mode on ``device``.

    Registered models without installed weights get a seeded random initialisation (the same
    in every process) and ``weights_sha256`` is then the sha256 of their tensors, so provenance
    and resumed runs stay consistent. See :func:`prism_science.load_model` for names.
    """
    from prism_science.models import load_model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_RANDOM_INIT_SEED)
        model = load_model(name_or_dir)
    if getattr(model, "weights_sha256", None) is None:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        model.weights_sha256 = "random-init-" + digest.hexdigest()
        logger.warning("%s has random weights (seed %d): features carry no learned meaning",
                       model.name, _RANDOM_INIT_SEED)
    target = resolve_device(device) if isinstance(device, str) else device
    return model.to(target).eval()


def encoder_of(model: nn.Module) -> nn.Module:
    """The module that maps (B, T, H, W, 3) video to (B, T*h*w, D) tokens.

    The model itself for a video encoder; the vision encoder of a video-text model; the
    encoder of a video classifier.
    """
    for attribute in ("vision_encoder", "encoder"):
        inner = getattr(model, attribute, None)
        if isinstance(inner, nn.Module):
            return inner
    return model


def _grid(model: nn.Module) -> tuple[int, int]:
    side = model.image_size // model.patch_size
    return side, side


def model_feature_shape(model: nn.Module, params: WindowParams) -> tuple[int, ...]:
    """Shape of one frame's feature for this model and token mode.

    Raises
    ------
    WindowError
        Token mode ``frame_emb`` with a model that has no per-frame embedding path (not a
        video-text model).
    """
    if params.tokens == "frame_emb" and not callable(getattr(model, "encode_frames", None)):
        raise WindowError(
            f"token mode 'frame_emb' needs a video-text (LvT) model with encode_frames; model "
            f"{getattr(model, 'name', type(model).__name__)!r} has none: extract with --model "
            "default (or another video-text model), or choose --tokens mean|grid|full"
        )
    return feature_shape(params, _grid(model), model.model_dim)


def feature_key(model: nn.Module, params: WindowParams) -> str:
    """Store key of the feature set: ``"<model name>/<token mode>"``, e.g. ``"x/grid2"``."""
    return f"{model.name}/{params.token_key}"


def feature_provenance(model: nn.Module, params: WindowParams) -> dict[str, Any]:
    """Provenance of features from ``model`` with ``params`` (stored with them).

    The fields named by :data:`prism_science.store.IDENTITY_FIELDS` decide whether two runs'
    features may be mixed; the rest records when, where and with what they were made.
    """
    config = getattr(model, "config", None)
    return {
        "model_name": model.name,
        # The identity of the weights (sha256 of the tensors file's sha256 + canonical config,
        # prism_science.models.weights_identity); the file's own sha256 is kept beside it.
        "weights_sha256": model.weights_sha256,
        "tensors_sha256": getattr(model, "tensors_sha256", None),
        "num_frames": int(model.num_frames),
        "image_size": int(model.image_size),
        "patch_size": int(model.patch_size),
        "model_dim": int(model.model_dim),
        "window": params.to_dict(),
        "feature_shape": list(model_feature_shape(model, params)),
        "model_config": config.to_dict() if hasattr(config, "to_dict") else {},
        "library_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


class _DecodeThread(threading.Thread):
    """Decodes frames ``start .. stop-1`` into a bounded queue; errors travel through it."""

    _END = object()

    def __init__(self, reader: VideoReader, start: int, stop: int, size: int,
                 chunk: int, max_chunks: int,
                 transform: Callable[[int, np.ndarray], np.ndarray] | None = None) -> None:
        super().__init__(name=f"decode-{reader.path.name}", daemon=True)
        self.reader, self.start_frame, self.stop_frame = reader, start, stop
        self.size, self.chunk, self.transform = size, chunk, transform
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max_chunks)
        self.stopping = threading.Event()

    def _put(self, item: Any) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            # A transform (per-subject crops) needs the frames at full size.
            size = None if self.transform is not None else (self.size, self.size)
            for item in self.reader.iter_chunks(self.chunk, self.start_frame, self.stop_frame,
                                                size=size):
                if self.transform is not None:
                    item = (item[0], self.transform(item[0], item[1]))
                if not self._put(item):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
            self._put(exc)
            return
        self._put(self._END)

    def get(self) -> tuple[int, np.ndarray] | None:
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return None if item is self._END else item

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def iter_video_features(
    model: nn.Module,
    reader: VideoReader,
    params: WindowParams,
    *,
    batch_size: int = 8,
    frame_range: tuple[int, int] | None = None,
    decode_chunk: int = _DECODE_CHUNK,
    queue_chunks: int = _QUEUE_CHUNKS,
    frame_transform: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Stream one video's per-frame features in frame order.

    Parameters
    ----------
    model : nn.Module
        From :func:`load_encoder` (or :func:`prism_science.load_model`); its device is used.
    reader : VideoReader
        An open video (:func:`prism_science.video.open_video`).
    params : WindowParams
        Window mode, stride, hop, token mode and padding.
    batch_size : int
        Clips encoded per forward pass.
    frame_range : (int, int), optional
        ``(start, stop)`` frames to produce (stop exclusive); default the whole video. The
        clips are those of the whole video, so a range equals the same frames of a full pass.
    decode_chunk, queue_chunks : int
        Frames per decoded chunk and chunks the decode queue holds (bounds memory).
    frame_transform : callable, optional
        ``(frame_start, frames) -> frames``: maps full-size decoded (N, H, W, 3) uint8 frames
        to (N, S, S, 3) model input (S the model's image size), e.g.
        :meth:`prism_science.extraction.subjects.SubjectCrop.transform`; runs in the decode
        thread. Default: frames resized whole inside PyAV.

    Yields
    ------
    (int, int, np.ndarray)
        ``frame_start``, ``frame_stop`` and features (stop - start, *feature_shape) float32,
        contiguous and in frame order.

    Raises
    ------
    VideoError
        A frame cannot be decoded; the blocks before it have been yielded.
    """
    if batch_size < 1:
        raise PrismError(f"batch_size must be >= 1, found {batch_size}")
    n_frames = reader.info.n_frames
    start, stop = frame_range if frame_range is not None else (0, n_frames)
    num_frames = int(model.num_frames)
    plan = plan_windows(n_frames, num_frames, params)
    shape = model_feature_shape(model, params)
    accumulator = FrameAccumulator(plan, start, stop, shape)
    w0, w1 = window_range(plan, start, stop)
    needed = plan.decode_indices(slice(w0, w1))
    decode_lo, decode_hi = int(needed.min()), int(needed.max()) + 1
    encoder = encoder_of(model)
    device = next(encoder.parameters()).device
    grid = _grid(model)
    decoder = _DecodeThread(reader, decode_lo, decode_hi, int(model.image_size), decode_chunk,
                            queue_chunks, frame_transform)
    decoder.start()
    buffer = np.empty((0, model.image_size, model.image_size, 3), np.uint8)
    buffer_start = decode_lo
    try:
        for w in range(w0, w1, batch_size):
            wb = min(w + batch_size, w1)
            indices = plan.decode_indices(slice(w, wb))  # (B, T) frames, padding clamped
            while buffer_start + buffer.shape[0] <= int(indices.max()):
                item = decoder.get()
                if item is None:
                    raise VideoError(
                        f"{reader.path}: decoding stopped before frame {int(indices.max())} of "
                        f"{n_frames} indexed; the file may be truncated: re-copy or re-encode it"
                    )
                buffer = np.concatenate([buffer, item[1]]) if buffer.size else item[1]
            clips = buffer[indices - buffer_start]  # (B, T, S, S, 3) uint8
            paddings = plan.frame_paddings[w:wb]
            if params.padding == "zeros":
                clips[paddings > 0] = 0
            video = torch.from_numpy(clips).to(device).float().div_(255.0)
            with torch.inference_mode():
                frame_paddings = torch.from_numpy(paddings).to(device)
                if params.tokens == "frame_emb":  # (B, T, D) L2-normalised, the text space
                    pooled = model.encode_frames(video, frame_paddings=frame_paddings)
                else:
                    tokens = encoder(video, frame_paddings=frame_paddings)
                    pooled = pool_tokens(tokens, num_frames, grid, params)
            accumulator.add(w, pooled.float().cpu().numpy())
            yield from accumulator.pop_ready()
            if wb < w1:  # drop frames no later clip needs
                keep_from = int(plan.decode_indices(slice(wb, wb + 1)).min())
                drop = max(0, keep_from - buffer_start)
                if drop:
                    buffer = buffer[drop:]
                    buffer_start += drop
        yield from accumulator.pop_ready()
    finally:
        decoder.stop()
