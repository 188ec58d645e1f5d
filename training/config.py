"""Training configurations: dataclasses, a registry of named configs, checked overrides, paths.

Every config is a dataclass whose docstring gives the command that runs it and the result to
expect. ``get_config(NAME)`` returns a fresh copy; ``apply_overrides(cfg, ["lr=3e-4", ...])``
parses each value by the field's type and refuses unknown fields by name. The resolved config is
written as ``train_config.json`` in the run folder by the engine.

Paths never depend on where the package is installed. A named config stores its paths relative
to a *work directory* (``"default/stage1/final"``); :func:`resolve_config` joins them to the
work directory given (``--workdir``, default ``./runs``), applies overrides, whose relative paths
are taken from the current directory as a shell user expects, and makes every path absolute, so
the saved ``train_config.json`` says exactly which files a run read and wrote.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prism_science.errors import ConfigError

__all__ = [
    "DEFAULT_WORKDIR",
    "SAMPLE_DATA_AUTO",
    "LiTConfig",
    "Stage1Config",
    "Stage2Config",
    "TrainConfig",
    "apply_overrides",
    "find_sample_data",
    "get_config",
    "list_configs",
    "path_fields",
    "register_config",
    "resolve_config",
    "resolve_paths",
    "save_config",
    "train_config_from_dict",
    "train_config_to_dict",
]

logger = logging.getLogger(__name__)

DEFAULT_WORKDIR = "runs"
"""Work directory of ``prism-science pretrain`` when ``--workdir`` is not given (relative to the
current directory)."""

SAMPLE_DATA_AUTO = "auto"
"""``sample_data`` value of the recipe configs: the ``sample_data/`` folder of the repository
clone in the current directory when there is one, else none (with a warning)."""


def _path(default: str = "") -> Any:
    """A path field: a relative value is resolved against the work directory (``resolve_paths``)."""
    return dataclasses.field(default=default, metadata={"path": True})


@dataclass
class TrainConfig:
    """Fields shared by every stage (data, optimisation, checkpointing).

    Not run on its own: see :class:`Stage1Config`, :class:`Stage2Config`, :class:`LiTConfig`.
    """

    name: str = "base"
    stage: str = "base"
    model: str = "prism-lvt-tiny-p16-f16-r128"
    out_dir: str = _path()  # the run folder
    seed: int = 0
    # --- data
    manifest: str = _path()  # CSV/JSONL of path,caption[,start,end]
    video_dir: str = _path()  # folders of videos, separated by commas
    cache_dir: str = _path()  # decoded-clip cache; "" -> out_dir/cache
    # Input of `prism-science pretrain windows`, which cuts the synthetic clips of synth_dir
    # into captioned windows of window_frames frames and writes them to manifest.
    synth_dir: str = _path()
    window_frames: int = 24
    image_size: int = 0  # 0: the model's resolution
    num_frames: int = 0  # 0: the model's frame count
    frame_stride: int = 1
    crop_scale_min: float = 0.6
    crop_ratio_max: float = 1.33
    temporal_jitter: bool = True
    allow_flip: bool = False
    max_bad_fraction: float = 0.1
    num_workers: int = 0
    # >1: batches hold groups of this many windows of one video (see data.StepBatches)
    windows_per_clip: int = 1
    # --- animal-centred crops (prism_training.crops): crop manifests, separated by commas,
    # of videos + tracks (or tracks "auto" + n_animals); decoded clip by clip, never cached.
    crop_manifest: str = _path()
    crop_size: int = 0  # crop side in source pixels; 0: 2.5 body lengths from the tracks
    crop_scale_jitter: float = 1.25  # side x a factor in [1/j, j] (1: off)
    crop_shift: float = 0.1  # centre moves by up to this fraction of the side (0: off)
    crop_rotation: float = 180.0  # largest random rotation in degrees (0: off)
    align_heading: bool = False  # heading up (then crop_rotation is the jitter around it)
    crop_segment_frames: int = 300  # a long video's rows split into items of this many frames
    open_videos: int = 4  # video readers kept open by a crop source
    # --- optimisation
    batch_size: int = 8
    accum_steps: int = 1
    total_steps: int = 1000
    warmup_steps: int = 50
    lr: float = 5e-4
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    beta2: float = 0.98
    grad_clip: float = 1.0
    max_bad_steps: int = 10
    amp: bool = True  # bf16 autocast on CUDA only
    threads: int = 2
    # --- bookkeeping
    log_every: int = 10
    ckpt_every: int = 100
    progress: bool = True
    stop_after_steps: int = 0  # >0: stop (checkpointed) after this step, as if killed
    export_on_stop: bool = False  # also write final/ when stopped early (a budget ran out)


@dataclass
class Stage1Config(TrainConfig):
    """Stage 1, video-text contrastive training of an LvT model on the synthetic world.

    Command (from the directory that holds the work directory ``runs/``)::

        prism-science synth --n-videos 217 --out runs/synth_train --seed 1 --size 160
        prism-science pretrain windows --config stage1_tiny   # runs/default/train_windows.jsonl
        prism-science pretrain stage1 --config stage1_tiny    # run folder runs/default/stage1

    Expected (measured, ``stage1_tiny``, 32 min on the idle 2-core CPU): the symmetric InfoNCE
    loss falls from ln(batch_size) (4.16 for 64) to about 0.36 and the in-batch retrieval
    accuracy (``acc`` in ``log.jsonl``) rises from 0.02 to about 0.8; ``final/`` holds an LvT
    weights folder with ``tokenizer.model``. On held-out clips its encoder beats random weights
    on appearance probes (mAP 0.586 vs 0.513, ``benchmarks/pretrain_ablation.py``).

    ``stage1_video_tiny`` continues that run on 4-frame clips over 1 s, each batch made of 4
    windows of each of 8 videos (``windows_per_clip=4``), so that captions within a video
    differ only by what the animals do; it is the teacher of ``stage2_video_tiny``::

        prism-science pretrain stage1 --config stage1_video_tiny   # runs/default/stage1_video

    Expected (measured, 21 min on the idle 2-core CPU): on same-video batches the loss stays
    near ln 4 = 1.39 (each window is matched to its video, hardly to its moment: in-batch
    accuracy about 0.3); held-out probes gain a little on both sides, appearance 0.600 and
    motion 0.229 mAP (0.586 and 0.216 before; fold sd about 0.03).

    ``stage1_crops`` and ``stage1_crops_video`` are the same two runs on animal-centred crops
    of synthetic clips, one caption per animal (``crop_manifest``, docs/training.md); default
    encoder v2 runs the second from v1's weights (``runs/v1``)::

        prism-science synth --n-videos 217 --out runs/synth_crops --seed 3 --size 320 \\
            --per-animal-crops
        prism-science pretrain stage1 --config stage1_crops_video   # runs/crops/stage1_video

    Expected (measured, 27 min on the 2-core CPU, 3.6 s a step): InfoNCE 5.45 -> 1.97 (mean of
    the first and last 3 logs; ln 32 = 3.47), in-batch accuracy 0.06 -> 0.30.
    """

    name: str = "stage1"
    stage: str = "stage1"
    image_manifest: str = _path()  # optional image-text pairs, joined as one-frame videos
    image_fraction: float = 0.25  # share of steps drawn from image_manifest when given
    init_from: str = _path()  # weights folder (e.g. a converted LvT checkpoint) to start from
    tokenizer: str = _path()  # existing SentencePiece model; "" trains one on the captions
    vocab_size: int = 512
    max_text_len: int = 64
    temperature_init: float = 0.07
    learn_temperature: bool = True


@dataclass
class Stage2Config(TrainConfig):
    """Stage 2, masked video modeling with global-local distillation from a stage-1 teacher.

    Command::

        prism-science pretrain stage2 --config stage2_tiny   # runs/ablation/frames/stage2_full

    Expected (measured, ``stage2_tiny``, the previous default's, 30 min on one core): the
    token distillation loss (1 - cosine to the normalised teacher tokens at all positions)
    falls from about 0.96 to 0.63 and the global loss settles near 0.16; ``final/`` holds an
    LvT weights folder whose encoder is the student, with the teacher's appearance probes kept
    (mAP 0.582).

    ``stage2_video_tiny`` distils from the ``stage1_video_tiny`` teacher on its 4-frame clips
    (``runs/default/stage1_video``): 800 steps, 25 min on one core with
    three runs side by side; token loss 0.97 -> 0.51, global 0.20 -> 0.12; appearance kept
    (0.595), motion not gained over the teacher (0.218 vs 0.229), see the model card.

    ``stage2_motion_tiny``, the bundled default's stage 2, adds our frame-difference target
    (``motion_weight=1``) and switches token shuffling off::

        prism-science pretrain stage2 --config stage2_motion_tiny   # runs/default/stage2

    The recipe configs also train on the real clips of the repository's ``sample_data/``
    (``sample_data="auto"``: found in the current directory; ``--sample-data DIR`` elsewhere).

    Expected (measured, 30 min on one core beside two other runs): token loss 0.98 -> 0.43,
    motion loss 1.00 -> 0.96, global 0.20 -> 0.11; held-out motion probes 0.288 mAP (teacher
    0.229), appearance kept (0.595).

    ``stage2_crops`` is ``stage2_motion_tiny`` on animal-centred crops of the synthetic clips
    and of the real videos listed in ``runs/crops/real.jsonl`` (docs/training.md), from the
    ``stage1_crops_video`` teacher::

        prism-science pretrain stage2 --config stage2_crops   # runs/crops/stage2

    Expected (measured, 17 min on the 2-core CPU, 600 steps): token loss 0.91 -> 0.50, motion
    loss 1.00 -> 0.87, global 0.29 -> 0.11 (mean of the first and last 3 logs).
    """

    name: str = "stage2"
    stage: str = "stage2"
    teacher: str = _path()  # stage-1 weights folder (or run folder holding final/)
    # Real clips trained on beside video_dir: a folder, SAMPLE_DATA_AUTO ("auto": the
    # sample_data/ of the repository clone in the current directory, if any) or "" (none).
    sample_data: str = _path()
    init_student_from_teacher: bool = True
    mask_ratio: float = 0.75
    token_shuffle: bool = True
    token_distill: bool = True
    global_distill: bool = True
    global_weight: float = 1.0
    # Ours, not VideoPrism's: >0 adds a decoder head predicting every token's patch of the
    # absolute frame difference (motion energy), weighted by this (see losses.motion_target_loss).
    motion_weight: float = 0.0
    # Teacher tokens frame by frame (a stage-1 teacher trained on one-frame clips has never
    # seen T > 1 in its temporal layers), and normalised per clip and channel over the token
    # grid before the cosine loss, so the shared component of all tokens cannot satisfy it.
    teacher_per_frame: bool = False
    normalize_targets: bool = True
    decoder_layers: int = 2
    decoder_dim: int = 0  # 0: the encoder width
    decoder_heads: int = 4
    lr: float = 5e-4


@dataclass
class LiTConfig(TrainConfig):
    """Stage 3 (LiT): lock a stage-2 video encoder, train the text tower and pooler against it.

    Command::

        prism-science pretrain lit --config lit_tiny   # runs/default/stage2 -> runs/default/lit

    Expected (measured, ``lit_tiny`` on the ``stage2_motion_tiny`` encoder, 11 min on one core
    beside another run): InfoNCE from 0.48 to about 0.21, in-batch accuracy from 0.79 to 0.91;
    the encoder's weights in ``final/`` are bit-identical to the stage-2 ones, so its token
    features are the stage-2 features, and the model answers text queries (held-out
    text->video top-1 0.097 in groups of 32, ``text_retrieval.py``).
    """

    name: str = "lit"
    stage: str = "lit"
    encoder: str = _path()  # stage-2 weights folder (or run folder holding final/)
    tokenizer: str = _path()  # "" takes the encoder folder's tokenizer.model or trains one
    reset_heads: bool = False  # re-initialise text tower, auxiliary encoder and pooler
    vocab_size: int = 512
    max_text_len: int = 64
    temperature_init: float = 0.07
    learn_temperature: bool = True


_REGISTRY: dict[str, Callable[[], TrainConfig]] = {}


def register_config(name: str) -> Callable[[Callable[[], TrainConfig]], Callable[[], TrainConfig]]:
    """Register a zero-argument factory returning a fresh config under ``name``."""

    def wrap(factory: Callable[[], TrainConfig]) -> Callable[[], TrainConfig]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_configs() -> list[str]:
    """Names accepted by :func:`get_config`."""
    return sorted(_REGISTRY)


def get_config(name: str) -> TrainConfig:
    """Return a fresh copy of the registered config ``name``.

    Raises
    ------
    ConfigError
        ``name`` is not registered (the message lists the registered names).
    """
    if name not in _REGISTRY:
        raise ConfigError(
            f"config {name!r} is not registered; choose one of {', '.join(list_configs())}"
        )
    cfg = _REGISTRY[name]()
    cfg.name = name
    return cfg


def _field_types(cfg: TrainConfig) -> dict[str, Any]:
    hints = typing.get_type_hints(type(cfg))
    return {f.name: hints[f.name] for f in dataclasses.fields(cfg)}


def _parse_value(key: str, text: str, kind: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if text.lower() in ("none", "null", ""):
            return None
        kind = args[0]
    try:
        if kind is bool:
            low = text.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if kind is int:
            return int(float(text)) if "e" in text.lower() else int(text)
        if kind is float:
            return float(text)
        if kind is str:
            return text
    except ValueError:
        raise ConfigError(
            f"override {key}={text!r}: expected a {kind.__name__} value; "
            f"write e.g. {key}={'true' if kind is bool else '1'}"
        ) from None
    raise ConfigError(f"override {key}: fields of type {kind} cannot be set from the command line")


def apply_overrides(cfg: TrainConfig, overrides: Iterable[str]) -> TrainConfig:
    """Return a copy of ``cfg`` with ``key=value`` overrides applied.

    Parameters
    ----------
    cfg : TrainConfig
        The config to start from (not modified).
    overrides : iterable of str
        Each ``field=value``; values are parsed by the field's type (bools: true/false/1/0).

    Raises
    ------
    ConfigError
        An item has no ``=``, names a field the config does not have, or has an unparsable value.
    """
    types_ = _field_types(cfg)
    changes: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form field=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key not in types_:
            raise ConfigError(
                f"override {key!r}: {type(cfg).__name__} has no field {key!r}; "
                f"known fields: {', '.join(sorted(types_))}"
            )
        changes[key] = _parse_value(key, text.strip(), types_[key])
    return dataclasses.replace(cfg, **changes)


def train_config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The training config as a JSON-ready dict, with its class name under ``"_class"``."""
    out = dataclasses.asdict(cfg)
    out["_class"] = type(cfg).__name__
    return out


def train_config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a training config written by :func:`train_config_to_dict`.

    Raises
    ------
    ConfigError
        ``"_class"`` names no training config class, or a field is unknown to it (by name).
    """
    classes = {c.__name__: c for c in (TrainConfig, Stage1Config, Stage2Config, LiTConfig)}
    data = dict(data)
    cls_name = data.pop("_class", "TrainConfig")
    if cls_name not in classes:
        raise ConfigError(f"config class {cls_name!r} is unknown; expected one of {list(classes)}")
    cls = classes[cls_name]
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{cls_name} has no field(s) {unknown}; remove them from the config")
    return cls(**data)


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Write the resolved config as JSON to ``path``."""
    Path(path).write_text(json.dumps(train_config_to_dict(cfg), indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------------------- paths
_LIST_FIELDS = ("video_dir", "crop_manifest")  # several paths, separated by commas


def path_fields(cfg: TrainConfig) -> list[str]:
    """Names of the fields of ``cfg`` that hold paths (``video_dir`` and ``crop_manifest``:
    several, comma-separated)."""
    return [f.name for f in dataclasses.fields(cfg) if f.metadata.get("path")]


def _absolute(path: str, base: Path) -> str:
    # abspath, not resolve(): normalise without replacing a symlinked folder by its target.
    full = Path(path).expanduser()
    return os.path.abspath(full if full.is_absolute() else base / full)


def resolve_paths(cfg: TrainConfig, base: str | os.PathLike[str]) -> TrainConfig:
    """Return a copy of ``cfg`` whose path fields are absolute, relative ones joined to ``base``.

    Parameters
    ----------
    cfg : TrainConfig
        The config (not modified). Empty paths stay empty; ``sample_data="auto"`` is left for
        :func:`find_sample_data`; ``video_dir`` and ``crop_manifest`` are split at commas and
        each path resolved.
    base : str or PathLike
        Folder the relative paths are relative to (itself relative to the current directory).

    Returns
    -------
    TrainConfig
        Absolute paths are unchanged, so resolving twice gives the same config.
    """
    base = Path(base).expanduser()
    changes: dict[str, str] = {}
    for name in path_fields(cfg):
        value = getattr(cfg, name).strip()
        if not value or (name == "sample_data" and value == SAMPLE_DATA_AUTO):
            continue
        parts = value.split(",") if name in _LIST_FIELDS else [value]
        changes[name] = ",".join(_absolute(part.strip(), base) for part in parts if part.strip())
    return dataclasses.replace(cfg, **changes)


def find_sample_data(cfg: TrainConfig, checkout: str | os.PathLike[str] | None = None
                     ) -> TrainConfig:
    """Replace ``sample_data="auto"`` by the repository's ``sample_data/`` folder, or by "".

    Parameters
    ----------
    cfg : TrainConfig
        The config (not modified); other values of ``sample_data`` are kept.
    checkout : str or PathLike, optional
        Where to look for ``sample_data/`` (default: the current directory, i.e. the root of a
        clone of the repository; an installed package has no sample data).

    Returns
    -------
    TrainConfig
        ``sample_data`` is the folder's absolute path when it exists; otherwise "" and a
        warning says how to include the clips.
    """
    if getattr(cfg, "sample_data", "") != SAMPLE_DATA_AUTO:
        return cfg
    folder = Path(checkout if checkout is not None else Path.cwd()) / "sample_data"
    if folder.is_dir():
        return dataclasses.replace(cfg, sample_data=os.path.abspath(folder))
    logger.warning(
        "config %s also trains on the real clips of the repository's sample_data/, but there is "
        "no %s: training on video_dir only. Run from the root of a clone of prism-science, or "
        "pass --sample-data DIR (the clone's sample_data/) to include them.", cfg.name, folder)
    return dataclasses.replace(cfg, sample_data="")


def resolve_config(
    cfg: TrainConfig,
    workdir: str | os.PathLike[str] = DEFAULT_WORKDIR,
    overrides: Iterable[str] = (),
) -> TrainConfig:
    """The config a run uses: every path absolute, the package's location never involved.

    Parameters
    ----------
    cfg : TrainConfig
        A named config (``get_config``) or one built in code; not modified.
    workdir : str or PathLike
        Work directory the config's own relative paths are relative to (default ``runs``,
        relative to the current directory).
    overrides : iterable of str
        ``field=value`` items (:func:`apply_overrides`); relative paths in them are relative to
        the current directory, like any path typed in a shell.

    Returns
    -------
    TrainConfig
        With absolute paths and ``sample_data="auto"`` settled (:func:`find_sample_data`).
        Resolving a resolved config again changes nothing.

    Raises
    ------
    ConfigError
        An override names an unknown field or has an unparsable value.
    """
    cfg = resolve_paths(cfg, workdir)
    cfg = resolve_paths(apply_overrides(cfg, overrides), Path.cwd())
    return find_sample_data(cfg)


# ---------------------------------------------------------------------------- named configs
# Paths are relative to the work directory (see resolve_config). The recipe of the bundled
# default: synth_train/ -> default/train_windows.jsonl -> default/stage1 -> default/stage1_video
# -> default/stage2 -> default/lit.
_SYNTH_TRAIN = "synth_train"
_WINDOWS = "default/train_windows.jsonl"
_CACHE = "cache"


@register_config("stage1_tiny")
def _stage1_tiny() -> TrainConfig:
    return Stage1Config(
        model="prism-lvt-tiny-p16-f16-r128",
        out_dir="default/stage1",
        manifest=_WINDOWS,
        synth_dir=_SYNTH_TRAIN,
        window_frames=24,
        cache_dir=_CACHE,
        # One random frame per window, i.e. image-text pairs as one-frame videos: stage 1
        # learns appearance (what captions name reliably in a frame) at 1/16 of the cost of
        # a clip; motion is stage 2's job. Measured on the 2-core machine: 4-frame clips gave
        # 60 steps in a loaded 15-minute budget and did not move the loss off ln(16) (lr 3e-4),
        # and lr 1e-3 collapsed the embeddings within 3 steps.
        num_frames=1,
        batch_size=64,
        total_steps=1200,
        warmup_steps=60,
        lr=5e-4,
        ckpt_every=50,
        log_every=10,
    )


@register_config("stage1_video_tiny")
def _stage1_video_tiny() -> TrainConfig:
    # Continues stage1_tiny on 4-frame clips over 1 s, and each batch holds 4 windows of each of
    # 8 videos: within a video the captions differ only by what the animals do, so the
    # contrastive loss can no longer be met by appearance alone. This is the video teacher of
    # stage 2 (the paper's stage 1 is trained on video, not frames).
    return dataclasses.replace(
        _stage1_tiny(),
        out_dir="default/stage1_video",
        init_from="default/stage1/final",
        num_frames=4,
        frame_stride=4,
        windows_per_clip=4,
        batch_size=32,
        total_steps=600,
        warmup_steps=30,
        ckpt_every=40,
        log_every=5,
    )


@register_config("stage2_tiny")
def _stage2_tiny() -> TrainConfig:
    return Stage2Config(
        model="prism-lvt-tiny-p16-f16-r128",
        out_dir="ablation/frames/stage2_full",
        # The synthetic clips plus the permissively licensed real clips of sample_data/.
        video_dir=_SYNTH_TRAIN,
        sample_data=SAMPLE_DATA_AUTO,
        cache_dir=_CACHE,
        teacher="default/stage1",
        teacher_per_frame=True,  # stage1_tiny trains on one-frame clips
        batch_size=16,
        total_steps=240,
        warmup_steps=24,
        lr=5e-4,
        decoder_dim=128,
        decoder_heads=4,
        threads=1,
        ckpt_every=10,
        log_every=5,
    )


@register_config("stage2_video_tiny")
def _stage2_video_tiny() -> TrainConfig:
    return dataclasses.replace(
        _stage2_tiny(),
        out_dir="ablation/video/stage2_full",
        teacher="default/stage1_video",
        teacher_per_frame=False,  # stage1_video_tiny trains on 4-frame clips
        # The teacher's clips (4 frames over 1 s): its targets stay in the distribution it was
        # trained on, and a step costs a quarter of a 16-frame one, so 800 steps take the
        # wall-clock time of stage2_tiny's 240 steps of 16 frames.
        num_frames=4,
        frame_stride=4,
        total_steps=800,
        warmup_steps=80,
    )


@register_config("stage2_motion_tiny")
def _stage2_motion_tiny() -> TrainConfig:
    # The bundled default's stage 2: stage2_video_tiny plus our frame-difference target (not in
    # VideoPrism), which asks the student's tokens for motion, and without token shuffling:
    # shuffled, the decoder cannot tell which slot a visible token's motion came from, and the
    # motion loss stayed at 0.99 (held-out motion 0.219 vs 0.288 unshuffled, model card).
    return dataclasses.replace(_stage2_video_tiny(), out_dir="default/stage2", motion_weight=1.0,
                               token_shuffle=False)


@register_config("lit_tiny")
def _lit_tiny() -> TrainConfig:
    return LiTConfig(
        model="prism-lvt-tiny-p16-f16-r128",
        out_dir="default/lit",
        manifest=_WINDOWS,
        synth_dir=_SYNTH_TRAIN,
        window_frames=24,
        cache_dir=_CACHE,
        encoder="default/stage2",
        # Keeps the stage-1 text tower and tokenizer that came with the encoder (stage 2's
        # global distillation kept the pooled embedding close to the teacher's) and tunes it,
        # with the pooler, against the locked encoder; 4 frames over 1 s keep it cheap.
        num_frames=4,
        frame_stride=4,
        batch_size=32,
        total_steps=300,
        warmup_steps=30,
        lr=5e-4,
        threads=1,
        ckpt_every=20,
        log_every=10,
    )


# The recipe in miniature, for tests and for trying the commands (seconds on a CPU), under
# WORKDIR/test/: synth clips in test/synth (`prism-science synth --n-videos 3 --out
# runs/test/synth --size 32 --seconds 2`), windows, stage 1, stage 2, LiT.
_TEST_SYNTH = "test/synth"
_TEST_WINDOWS = "test/windows.jsonl"
_TEST_CACHE = "test/cache"


@register_config("stage1_test")
def _stage1_test() -> TrainConfig:
    return Stage1Config(
        model="prism-lvt-test-p8-f4-r32", out_dir="test/stage1", manifest=_TEST_WINDOWS,
        synth_dir=_TEST_SYNTH, window_frames=8, cache_dir=_TEST_CACHE,
        batch_size=4, total_steps=4, warmup_steps=1,
        vocab_size=64, max_text_len=16, ckpt_every=2, log_every=1, progress=False, threads=1,
    )


@register_config("stage2_test")
def _stage2_test() -> TrainConfig:
    return Stage2Config(
        model="prism-lvt-test-p8-f4-r32", out_dir="test/stage2", video_dir=_TEST_SYNTH,
        cache_dir=_TEST_CACHE, teacher="test/stage1",
        batch_size=4, total_steps=4, warmup_steps=1,
        decoder_layers=1, decoder_heads=2, ckpt_every=2, log_every=1, progress=False, threads=1,
    )


@register_config("lit_test")
def _lit_test() -> TrainConfig:
    return LiTConfig(
        model="prism-lvt-test-p8-f4-r32", out_dir="test/lit", manifest=_TEST_WINDOWS,
        synth_dir=_TEST_SYNTH, window_frames=8, cache_dir=_TEST_CACHE, encoder="test/stage2",
        batch_size=4, total_steps=4, warmup_steps=1,
        vocab_size=64, max_text_len=16, ckpt_every=2, log_every=1, progress=False, threads=1,
    )


# Animal-centred crops (docs/training.md, "Animal-centred crops"): the same recipe, every clip
# a crop that follows one animal. Synthetic clips with exact tracks and one caption per animal
# (`prism-science synth ... --per-animal-crops`) in synth_crops/, real videos with their
# tracks (or the built-in tracker) in crops/real.jsonl.
_SYNTH_CROPS = "synth_crops/crops.jsonl"
_REAL_CROPS = "crops/real.jsonl"


@register_config("stage1_crops")
def _stage1_crops() -> TrainConfig:
    # stage1_tiny on per-animal crops of the synthetic world: one frame per window (appearance
    # first), each caption about the animal in the crop. Real videos have no captions, so
    # stage 1 sees the synthetic crops only.
    return dataclasses.replace(_stage1_tiny(), out_dir="crops/stage1", manifest="",
                               synth_dir="", crop_manifest=_SYNTH_CROPS)


@register_config("stage1_crops_video")
def _stage1_crops_video() -> TrainConfig:
    # stage1_video_tiny on crops: 4 windows of each of 8 animals per batch, so that captions
    # within a batch group differ by what the animal does. Default encoder v2 continues v1
    # (the bundled weights of commit 041b3b8, extracted to runs/v1, docs/training.md): its
    # appearance and words carry over, and 400 steps suffice; `--set
    # init_from=crops/stage1/final` starts from stage1_crops instead.
    return dataclasses.replace(
        _stage1_video_tiny(), out_dir="crops/stage1_video", init_from="v1", manifest="",
        synth_dir="", crop_manifest=_SYNTH_CROPS, total_steps=400, warmup_steps=20,
        ckpt_every=20,
    )


@register_config("stage2_crops")
def _stage2_crops() -> TrainConfig:
    # stage2_motion_tiny (the default's stage 2) on crops of the synthetic clips and of the
    # real videos of crops/real.jsonl, from the stage1_crops_video teacher; 600 steps on both
    # cores (v1's stage 2: 800 steps on one).
    return dataclasses.replace(
        _stage2_motion_tiny(),
        out_dir="crops/stage2",
        teacher="crops/stage1_video",
        video_dir="",
        sample_data="",
        crop_manifest=f"{_SYNTH_CROPS},{_REAL_CROPS}",
        total_steps=600,
        warmup_steps=60,
        threads=2,
        ckpt_every=20,
    )


@register_config("lit_crops")
def _lit_crops() -> TrainConfig:
    # lit_tiny on the synthetic crops and their per-animal captions: the text tower and pooler
    # of the stage1_crops_video teacher, tuned against the locked stage2_crops encoder.
    return dataclasses.replace(
        _lit_tiny(),
        out_dir="crops/lit",
        encoder="crops/stage2",
        manifest="",
        synth_dir="",
        crop_manifest=_SYNTH_CROPS,
        total_steps=150,
        warmup_steps=15,
        threads=2,
    )


@register_config("stage1_crops_test")
def _stage1_crops_test() -> TrainConfig:
    # In seconds, for tests: `prism-science synth --n-videos 2 --out runs/test/synth_crops
    # --size 96 --seconds 2 --fps 8 --n-animals 2 --per-animal-crops --crop-window 8`.
    return Stage1Config(
        model="prism-lvt-test-p8-f4-r32", out_dir="test/crops_stage1",
        crop_manifest="test/synth_crops/crops.jsonl", cache_dir=_TEST_CACHE,
        frame_stride=2, batch_size=4, total_steps=4, warmup_steps=1,
        vocab_size=64, max_text_len=16, ckpt_every=2, log_every=1, progress=False, threads=1,
    )


@register_config("stage2_crops_test")
def _stage2_crops_test() -> TrainConfig:
    return Stage2Config(
        model="prism-lvt-test-p8-f4-r32", out_dir="test/crops_stage2",
        crop_manifest="test/synth_crops/crops.jsonl,test/crops_real.jsonl",
        cache_dir=_TEST_CACHE, teacher="test/crops_stage1", frame_stride=2,
        batch_size=4, total_steps=4, warmup_steps=1, motion_weight=1.0, token_shuffle=False,
        decoder_layers=1, decoder_heads=2, ckpt_every=2, log_every=1, progress=False, threads=1,
    )
