"""Loading models by name or folder: :func:`load_model`, and the table of variants.

Weights folders themselves (save, read, identity) are in :mod:`prism_science.models.folder`
(re-exported here); official checkpoints are fetched by :mod:`prism_science.models.hub`.

Where :func:`load_model` finds the weights of a registered name (first hit wins):
``prism_science/weights/<name>/`` (bundled), then ``user_weights_dir()/<name>/`` (installed or
cached: ``$PRISM_SCIENCE_WEIGHTS``, default ``$PRISM_SCIENCE_CACHE/weights``, default
``~/.cache/prism-science/weights``). An official variant not found there is downloaded from the
Hugging Face Hub and converted into the cache first. ``"default"`` is
``prism_science/weights/default/``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prism_science.errors import ConfigError, WeightsError
from prism_science.models import folder as _folder
from prism_science.models.folder import (
    BUNDLED_DIR,
    CONFIG_FILE,
    DEFAULT_NAME,
    FORMAT_VERSION,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    cache_dir,
    canonical_config,
    find_weights,
    list_models,
    load_folder,
    load_state,
    read_config,
    read_tensors,
    save_model,
    sha256_file,
    user_weights_dir,
    weights_identity,
)
from prism_science.models.hub import fetch_official, is_official
from prism_science.models.registry import (
    OFFICIAL_WEIGHTS,
    REGISTRY,
    build_model,
    get_config,
    resolve_name,
)

__all__ = [
    "BUNDLED_DIR",
    "CONFIG_FILE",
    "DEFAULT_NAME",
    "FORMAT_VERSION",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "cache_dir",
    "canonical_config",
    "find_weights",
    "list_models",
    "load_folder",
    "load_model",
    "load_state",
    "model_table",
    "PRECISIONS",
    "native_bf16",
    "precision_context",
    "resolve_precision",
    "read_config",
    "read_tensors",
    "save_model",
    "sha256_file",
    "user_weights_dir",
    "weights_identity",
    "weights_status",
]

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""Inference precisions: ``fp32``; ``bf16`` (autocast: matmuls in bfloat16, softmax, layer norm
and the stored features in float32); ``auto``: :func:`resolve_precision`."""


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 matmuls natively.

    CPU: the AVX512_BF16 or AMX instructions (Intel Cooper Lake / Sapphire Rapids and later,
    AMD Zen 4 and later); without them oneDNN emulates bf16 and the gain is not worth the
    deviation. CUDA: ``torch.cuda.is_bf16_supported()`` (Ampere and later).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_precision(precision: str, device: str | torch.device = "cpu") -> str:
    """The precision ``"fp32"`` or ``"bf16"`` that ``precision`` means on ``device``.

    Parameters
    ----------
    precision : {"auto", "fp32", "bf16"}
        ``auto``: bf16 where the device has native bf16 (:func:`native_bf16`), else fp32.
    device : str or torch.device
        Where the model runs.

    Returns
    -------
    str
        ``"fp32"`` or ``"bf16"``.

    Raises
    ------
    ConfigError
        ``precision`` is not one of :data:`PRECISIONS`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}; "
                          "use --precision auto, fp32 or bf16")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def precision_context(precision: str, device: str | torch.device = "cpu"
                      ) -> contextlib.AbstractContextManager[Any]:
    """A context that runs a model's forward in ``precision`` (``"fp32"``/``"bf16"``) on
    ``device``: bf16 autocast, or nothing for fp32. ``"auto"`` is resolved first."""
    device = torch.device(device)
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def weights_status(name: str) -> str:
    """Where the weights of a listed name come from: ``"bundled"``, ``"cached"`` (installed or
    downloaded into :func:`user_weights_dir`), ``"download"`` (official, fetched on first load)
    or ``"random"`` (none: random initialisation)."""
    folder = find_weights(resolve_name(name))
    if folder is not None:
        return "bundled" if folder.parent == _folder.BUNDLED_DIR else "cached"
    return "download" if is_official(name) else "random"


def model_table() -> list[dict[str, Any]]:
    """One row per name of :func:`list_models`: name, family, num_params, num_frames,
    image_size, patch_size, model_dim, weights (:func:`weights_status`), weights_present,
    source (Hub repository of the official variants, else None)."""
    from prism_science.models.registry import count_params

    rows = []
    for name in list_models():
        if name == DEFAULT_NAME:
            family, config = read_config(find_weights(DEFAULT_NAME))[:2]
        else:
            config = get_config(name)
            family = config.family
        status = weights_status(name)
        official = OFFICIAL_WEIGHTS.get(name)
        rows.append({
            "name": name,
            "family": family,
            "num_params": count_params(config),
            "num_frames": config.num_frames,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
            "model_dim": config.model_dim,
            "weights": status,
            "weights_present": status in ("bundled", "cached"),
            "source": official.checkpoint.repo_id if official else None,
        })
    return rows


def load_model(name_or_dir: str | Path, *, device: str | torch.device | None = None,
               dtype: torch.dtype | str | None = None, **overrides: Any) -> nn.Module:
    """Load a model by registered name, alias, "default", or weights folder, in eval mode.

    Parameters
    ----------
    name_or_dir : str or Path
        A registered name or alias (weights from the bundled or user weights folder; an
        official variant not there yet, e.g. ``"videoprism-v1-base"``, is downloaded from the
        Hugging Face Hub and converted into the cache once; other variants without weights get
        a random initialisation, which is logged), ``"default"`` (the bundled default encoder),
        or the path of a weights folder.
    device : str or torch.device, optional
        Where the weights are placed (read there directly); default CPU, memory-mapped.
    dtype : torch.dtype or str, optional
        Dtype of the floating-point weights (default float32), e.g. ``torch.bfloat16``; also
        ``"fp32"``, ``"bf16"`` or ``"auto"`` (bf16 where ``device`` has native bf16, see
        :func:`resolve_precision`). For inference with float32 softmax and layer norms prefer
        float32 weights under :func:`precision_context` (what ``--precision`` does).
    **overrides
        Config fields to change, e.g. ``atten_logit_cap=0.0`` or ``attention="fast"``; unknown
        fields raise :class:`~prism_science.errors.ConfigError`.

    Returns
    -------
    torch.nn.Module
        With ``config``, ``name``, ``weights_sha256`` (the identity: sha256 of the tensors
        file's sha256 and the canonical config; None for random init), ``tensors_sha256``,
        ``num_frames``, ``image_size``, ``patch_size``, ``model_dim``.

    Raises
    ------
    WeightsError
        Corrupt or mismatching weights, or an official download that failed (the message
        names the file to fetch and the ``convert-weights`` command to run).
    """
    if isinstance(dtype, str):
        dtype = _DTYPES[resolve_precision(dtype, device or "cpu")]
    path = Path(name_or_dir)
    key = str(name_or_dir)
    loading = {"device": device, "dtype": dtype}
    if key == DEFAULT_NAME:
        folder = find_weights(DEFAULT_NAME)
        if folder is None:
            raise WeightsError(
                f"the default encoder is not bundled ({_folder.BUNDLED_DIR / DEFAULT_NAME} has no "
                f"{CONFIG_FILE}); use a registered name ({', '.join(REGISTRY)}) or a weights "
                "folder"
            )
        return load_folder(folder, **loading, **overrides)
    registered = resolve_name(key)
    if registered in REGISTRY:
        folder = find_weights(registered)
        if folder is None and is_official(registered):
            folder = fetch_official(registered)
        if folder is not None:
            return load_folder(folder, **loading, **overrides)
        logger.warning(
            "no weights installed for %s (looked in %s and %s): using RANDOM initialisation",
            registered, _folder.BUNDLED_DIR / registered, user_weights_dir() / registered,
        )
        model = build_model(registered, **overrides)
        return model.to(device=device, dtype=dtype) if (device or dtype) else model
    if path.is_dir():
        return load_folder(path, **loading, **overrides)
    if path.exists():
        raise WeightsError(
            f"{path} is a file; load_model needs a weights folder holding {CONFIG_FILE} and "
            f"{WEIGHTS_FILE} (convert official .npz checkpoints with prism-science "
            "convert-weights)"
        )
    raise ConfigError(
        f"unknown model name {key!r}: not a registered model and no such weights folder; "
        f"registered models: {', '.join(list_models())}"
    )
