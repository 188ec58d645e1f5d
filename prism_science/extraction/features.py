"""One video -> per-frame features, streamed in frame order with bounded memory.

Three stages overlap: a decode thread (PyAV decodes and resizes frames into a bounded queue), a
batch thread (gathers the frames of the next batches of clips into uint8 arrays -- page-locked
on CUDA -- bounded by ``prefetch``), and the calling thread, which copies a batch to the device
(``non_blocking``), converts it to float there, encodes it, starts the copy of the result back
and only then finishes the previous batch -- so neither decoding nor the host side waits for the
device, and the device does not wait for decoding while the queues are full. Per-frame features
come out as ``(frame_start, frame_stop, features)`` blocks as soon as every clip touching them
has been encoded. Memory holds a few decoded chunks, ``prefetch`` + 2 batches of clips, and the
frames still being averaged -- never the whole video. See docs/extraction.md and docs/models.md
("GPU path").
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import platform
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
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
from prism_science.models.weights import precision_context
from prism_science.video import VideoReader

__all__ = [
    "default_threads",
    "encoder_of",
    "feature_key",
    "feature_provenance",
    "iter_video_features",
    "load_encoder",
    "model_feature_shape",
    "resolve_device",
    "usable_cores",
]

logger = logging.getLogger(__name__)

# Random initialisations are seeded so that every process (resumed runs, Dask workers) builds
# the same weights for a registered model that has no weights installed.
_RANDOM_INIT_SEED = 0
_DECODE_CHUNK = 16
_QUEUE_CHUNKS = 4
_PREFETCH_BATCHES = 2


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


def usable_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:  # cgroup v2 "max 100000" or "200000 100000" (a container limited to 2 CPUs)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def default_threads(load: float | None = None) -> int:
    """Torch threads extraction uses on CPU unless told (``--threads``).

    Every usable core while the machine is otherwise idle (1-minute load average below 1),
    else usable cores - 1, at least 1: then the decode thread (PyAV decoding and resizing) keeps
    a core of its own. Measured on a 2-core machine, end to end with the default model at hop 8
    (``benchmarks/extract_throughput.py --threads-sweep``, docs/extraction.md): idle, 2 torch
    threads ran at 1.53x of 1; under other jobs the second thread gave 1.16x in one session and
    0.52x in another (issue 22), so a busy machine keeps the conservative count.

    Parameters
    ----------
    load : float, optional
        The load average to judge by; default ``os.getloadavg()[0]`` (0 where unavailable).
    """
    cores = usable_cores()
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return cores if load < 1.0 else max(1, cores - 1)


def load_encoder(name_or_dir: str, device: str | torch.device = "cpu", *,
                 precision: str = "fp32", matmul: str = "default",
                 batch_size: int = 8) -> nn.Module:
    """Load a model for feature extraction, in eval mode on ``device``.

    Registered models without installed weights get a seeded random initialisation (the same
    in every process) and ``weights_sha256`` is then the sha256 of their tensors, so provenance
    and resumed runs stay consistent. See :func:`prism_science.load_model` for names.

    Parameters
    ----------
    name_or_dir : str
        Registered name, alias, ``"default"`` or weights folder.
    device : str or torch.device
        Where the model runs (``"auto"``: CUDA when available).
    precision : {"fp32", "bf16", "auto"}
        Inference precision (:func:`prism_science.models.weights.resolve_precision`); the
        resolved value is ``model.inference_precision``, which :func:`iter_video_features`
        applies.
    matmul : {"auto", "default", "onednn"}
        CPU float32 matmul backend (:func:`prism_science.models.layers.set_matmul_backend`);
        ``auto`` measures both on the model's own layers (a fraction of a second). The default
        is torch's own, fixed: a measured choice can differ between runs and machines (by up
        to about 5e-6), and a resumed or distributed feature set must be computed one way.
    batch_size : int
        Clips per forward pass, the size the ``auto`` measurement uses.
    """
    from prism_science.models import load_model
    from prism_science.models.layers import (
        MATMUL_BACKENDS,
        choose_matmul_backend,
        set_attention,
        set_matmul_backend,
    )
    from prism_science.models.weights import resolve_precision

    if matmul not in MATMUL_BACKENDS:
        raise PrismError(f"matmul backend {matmul!r} is not one of {', '.join(MATMUL_BACKENDS)}")

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
    model = model.to(target).eval()
    model.inference_precision = resolve_precision(precision, target)
    backend = "default"
    if target.type == "cpu" and model.inference_precision == "fp32":
        backend = matmul
        if matmul == "auto":
            patches = (int(model.image_size) // int(model.patch_size)) ** 2
            rows = batch_size * int(model.num_frames) * patches
            backend = choose_matmul_backend(model, rows)[0]
    set_matmul_backend(model, backend)
    if target.type == "cuda":
        # The exact semantics in fused kernels: FlexAttention for capped layers, SDPA for
        # uncapped ones (layers.choose_attention); a config's deliberate "fast" is kept.
        counts = set_attention(model, "auto", target)
        logger.info("attention on %s: %s", target, counts)
    return model


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
        # How the numbers were computed; not identity fields (docs/extraction.md, Precision).
        "precision": getattr(model, "inference_precision", "fp32"),
        "matmul_backend": getattr(model, "matmul_backend", "default"),
        "library_version": __version__,
        "torch_version": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }


class _Producer(threading.Thread):
    """A daemon thread filling a bounded queue until the consumer calls :meth:`stop`."""

    _END = object()

    def __init__(self, name: str, max_items: int) -> None:
        super().__init__(name=name, daemon=True)
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, max_items))
        self.stopping = threading.Event()

    def _put(self, item: Any) -> bool:
        while not self.stopping.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


class _DecodeThread(_Producer):
    """Decodes frames ``start .. stop-1`` into a bounded queue; errors travel through it."""

    def __init__(self, reader: VideoReader, start: int, stop: int, size: int,
                 chunk: int, max_chunks: int,
                 transform: Callable[[int, np.ndarray], np.ndarray] | None = None) -> None:
        super().__init__(f"decode-{reader.path.name}", max_chunks)
        self.reader, self.start_frame, self.stop_frame = reader, start, stop
        self.size, self.chunk, self.transform = size, chunk, transform

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

    def get(self, cancelled: threading.Event | None = None) -> tuple[int, np.ndarray] | None:
        """The next decoded chunk, None at the end; raises :class:`_Cancelled` once ``stop``
        (or ``cancelled``) is set, so a consumer thread never blocks on a stopped decoder."""
        while True:
            if self.stopping.is_set() or (cancelled is not None and cancelled.is_set()):
                raise _Cancelled
            try:
                item = self.queue.get(timeout=0.1)
                break
            except queue.Empty:
                continue
        if isinstance(item, BaseException):
            raise item
        return None if item is self._END else item



class _Cancelled(Exception):
    """The consumer stopped (generator closed, error): a producer thread should end quietly."""


class _Batch:
    """One batch of clips on its way to the device: windows ``w .. w + valid - 1``.

    ``clips`` (B, T, S, S, 3) uint8 (page-locked when bound for CUDA) and ``paddings`` (B, T)
    float32; B is ``valid``, or the full batch size when the last batch is padded with copies of
    its last clip (static shapes for compiled kernels; the copies' outputs are dropped).
    """

    __slots__ = ("clips", "paddings", "valid", "w")

    def __init__(self, w: int, valid: int, clips: torch.Tensor, paddings: torch.Tensor) -> None:
        self.w, self.valid, self.clips, self.paddings = w, valid, clips, paddings


def _assemble_batches(decoder: _DecodeThread, plan: Any, w0: int, w1: int, batch_size: int,
                      params: WindowParams, size: int, pin: bool, pad_last: bool,
                      cancelled: threading.Event | None = None) -> Iterator[_Batch]:
    """Gather the decoded frames of each batch of clips, in window order."""
    buffer = np.empty((0, size, size, 3), np.uint8)
    buffer_start = decoder.start_frame
    reader_path = decoder.reader.path
    n_frames = decoder.reader.info.n_frames
    for w in range(w0, w1, batch_size):
        wb = min(w + batch_size, w1)
        indices = plan.decode_indices(slice(w, wb))  # (B, T) frames, padding clamped
        paddings = plan.frame_paddings[w:wb]
        valid = wb - w
        if pad_last and valid < batch_size:
            extra = batch_size - valid
            indices = np.concatenate([indices, np.repeat(indices[-1:], extra, axis=0)])
            paddings = np.concatenate([paddings, np.repeat(paddings[-1:], extra, axis=0)])
        while buffer_start + buffer.shape[0] <= int(indices.max()):
            item = decoder.get(cancelled)
            if item is None:
                raise VideoError(
                    f"{reader_path}: decoding stopped before frame {int(indices.max())} of "
                    f"{n_frames} indexed; the file may be truncated: re-copy or re-encode it"
                )
            buffer = np.concatenate([buffer, item[1]]) if buffer.size else item[1]
        clips = torch.empty((*indices.shape, size, size, 3), dtype=torch.uint8, pin_memory=pin)
        # Gathered straight into the (page-locked) batch: (B*T, S, S, 3) frames.
        np.take(buffer, (indices - buffer_start).reshape(-1), axis=0,
                out=clips.numpy().reshape(-1, size, size, 3))
        if params.padding == "zeros":
            clips.numpy()[paddings > 0] = 0
        paddings_t = torch.from_numpy(np.ascontiguousarray(paddings, dtype=np.float32))
        yield _Batch(w, valid, clips, paddings_t.pin_memory() if pin else paddings_t)
        if wb < w1:  # drop frames no later clip needs
            keep_from = int(plan.decode_indices(slice(wb, wb + 1)).min())
            drop = max(0, keep_from - buffer_start)
            if drop:
                buffer = buffer[drop:]
                buffer_start += drop


class _Prefetch(_Producer):
    """Runs a generator in a thread, ``depth`` items ahead, into a bounded queue."""

    def __init__(self, make: Callable[[threading.Event], Iterator[Any]], depth: int,
                 name: str) -> None:
        super().__init__(name, depth)
        self.make = make

    def run(self) -> None:
        try:
            for item in self.make(self.stopping):
                if not self._put(item):
                    return
        except _Cancelled:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises
            self._put(exc)
            return
        self._put(self._END)

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item



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
    prefetch: int = _PREFETCH_BATCHES,
    pin_memory: bool | None = None,
    static_batches: bool | None = None,
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
    prefetch : int
        Batches of clips gathered ahead in a separate thread (0: gathered in the calling thread,
        between forward passes).
    pin_memory : bool, optional
        Gather batches into page-locked memory and copy them (and the results back) without
        blocking; default: on CUDA only (page-locked memory needs a CUDA runtime).
    static_batches : bool, optional
        Pad a short last batch to ``batch_size`` with copies of its last clip (outputs dropped),
        so compiled kernels (FlexAttention, cuDNN autotuning) see one shape; default: on CUDA.

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
    if prefetch < 0:
        raise PrismError(f"prefetch must be >= 0 batches, found {prefetch}")
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
    cuda = device.type == "cuda"
    pin = cuda if pin_memory is None else bool(pin_memory)
    pad_last = cuda if static_batches is None else bool(static_batches)
    precision = getattr(model, "inference_precision", "fp32")
    grid = _grid(model)
    size = int(model.image_size)
    decoder = _DecodeThread(reader, decode_lo, decode_hi, size, decode_chunk,
                            queue_chunks, frame_transform)

    def batches(cancelled: threading.Event | None = None) -> Iterator[_Batch]:
        return _assemble_batches(decoder, plan, w0, w1, batch_size, params, size, pin,
                                 pad_last, cancelled)

    prefetcher = _Prefetch(batches, prefetch, f"batches-{reader.path.name}") if prefetch else None
    # The batch whose result is being copied back while the next one computes:
    # (first window, valid clips, host tensor, CUDA event or None).
    pending: tuple[int, int, torch.Tensor, Any] | None = None

    def finish(item: tuple[int, int, torch.Tensor, Any]) -> None:
        w, valid, host, event = item
        if event is not None:
            event.synchronize()
        accumulator.add(w, host[:valid].numpy())

    decoder.start()
    if prefetcher is not None:
        prefetcher.start()
    source = iter(prefetcher if prefetcher is not None else batches())
    try:
        while True:
            try:
                batch = next(source)
            except StopIteration:
                break
            except Exception:
                # A decode error: the batches computed before it still reach the caller, which
                # stores them (nothing already encoded is lost), then the error goes on.
                if pending is not None:
                    finish(pending)
                    pending = None
                    yield from accumulator.pop_ready()
                raise
            # uint8 travels (4x fewer bytes than float); from page-locked memory the copy is
            # asynchronous and overlaps the previous batch's compute.
            clips = batch.clips.to(device, non_blocking=pin)
            paddings = batch.paddings.to(device, non_blocking=pin)
            with torch.inference_mode(), precision_context(precision, device):
                video = clips.float().div_(255.0)  # (B, T, S, S, 3) in [0, 1]
                if params.tokens == "frame_emb":  # (B, T, D) L2-normalised, the text space
                    pooled = model.encode_frames(video, frame_paddings=paddings)
                else:
                    tokens = encoder(video, frame_paddings=paddings)
                    pooled = pool_tokens(tokens, num_frames, grid, params)
                pooled = pooled.float()
            if cuda:
                host = torch.empty(pooled.shape, dtype=pooled.dtype, pin_memory=pin)
                host.copy_(pooled, non_blocking=pin)
                event = torch.cuda.Event()
                event.record()
            else:
                host, event = pooled.cpu(), None
            if pending is not None:
                finish(pending)
                yield from accumulator.pop_ready()
            pending = (batch.w, batch.valid, host, event)
        if pending is not None:
            finish(pending)
            pending = None
        yield from accumulator.pop_ready()
    finally:
        if prefetcher is not None:
            prefetcher.stop()
        decoder.stop()
