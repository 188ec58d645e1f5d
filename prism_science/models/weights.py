"""Weights folders: ``config.json`` + ``model.safetensors`` (+ optional ``tokenizer.model``).

``config.json`` holds ``family``, ``name``, ``config`` (every config field), ``sha256`` (of the
safetensors file) and ``format_version``. Nothing is ever unpickled: tensors are read with
safetensors and JSON only.

Where :func:`load_model` looks for the weights of a registered name (first hit wins):
``prism_science/weights/<name>/`` (bundled), then ``$PRISM_SCIENCE_WEIGHTS/<name>/`` (default
``~/.cache/prism-science/weights/<name>/``). ``"default"`` is ``prism_science/weights/default/``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

import prism_science
from prism_science.errors import ConfigError, WeightsError
from prism_science.models.registry import (
    FAMILIES,
    REGISTRY,
    build_empty,
    build_model,
    config_from_dict,
    get_config,
)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.model"
FORMAT_VERSION = 1
DEFAULT_NAME = "default"
BUNDLED_DIR = Path(prism_science.__file__).resolve().parent / "weights"


def user_weights_dir() -> Path:
    """Folder of user-installed weights: ``$PRISM_SCIENCE_WEIGHTS`` or the user cache."""
    env = os.environ.get("PRISM_SCIENCE_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "prism-science" / "weights"


def find_weights(name: str) -> Path | None:
    """The weights folder of a registered name or "default", or None when none is installed."""
    candidates = [BUNDLED_DIR / name]
    if name != DEFAULT_NAME:
        candidates.append(user_weights_dir() / name)
    for folder in candidates:
        if (folder / CONFIG_FILE).is_file():
            return folder
    return None


def list_models() -> list[str]:
    """Registered model names, plus "default" when the bundled default encoder is present."""
    names = list(REGISTRY)
    if find_weights(DEFAULT_NAME) is not None:
        names.insert(0, DEFAULT_NAME)
    return names


def model_table() -> list[dict[str, Any]]:
    """One row per name of :func:`list_models`: name, family, num_params, num_frames,
    image_size, patch_size, model_dim, weights_present."""
    from prism_science.models.registry import count_params

    rows = []
    for name in list_models():
        if name == DEFAULT_NAME:
            family, config = read_config(find_weights(DEFAULT_NAME))[:2]
        else:
            config = get_config(name)
            family = config.family
        rows.append({
            "name": name,
            "family": family,
            "num_params": count_params(config),
            "num_frames": config.num_frames,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
            "model_dim": config.model_dim,
            "weights_present": find_weights(name) is not None,
        })
    return rows


def sha256_file(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_model(model: nn.Module, directory: str | Path, name: str | None = None) -> Path:
    """Write ``model`` as a weights folder.

    Parameters
    ----------
    model : torch.nn.Module
        A model built by :func:`build_model` / :func:`load_model` (has ``config`` and ``name``).
    directory : str or Path
        Created if missing; existing files of the same names are replaced.
    name : str, optional
        Name recorded in config.json (default ``model.name``).

    Returns
    -------
    Path
        The folder.
    """
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if config is None or getattr(config, "family", None) not in FAMILIES:
        raise WeightsError(
            f"save_model needs a prism_science model with a config, found "
            f"{type(model).__name__}; build it with prism_science.models.build_model"
        )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights_path = directory / WEIGHTS_FILE
    tmp = weights_path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"format": "pt", "family": config.family})
    os.replace(tmp, weights_path)
    digest = sha256_file(weights_path)
    meta = {
        "format_version": FORMAT_VERSION,
        "family": config.family,
        "name": name or getattr(model, "name", "custom"),
        "config": config.to_dict(),
        "sha256": digest,
        "prism_science_version": prism_science.__version__,
    }
    (directory / CONFIG_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        src = Path(tokenizer.model_path)
        dst = directory / TOKENIZER_FILE
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    model.weights_sha256 = digest
    logger.info("saved %s (%s) to %s", meta["name"], config.family, directory)
    return directory


def read_config(directory: str | Path) -> tuple[str, Any, dict[str, Any]]:
    """Read a weights folder's config.json -> (family, config, raw dict)."""
    path = Path(directory) / CONFIG_FILE
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(
            f"{path} is missing: a weights folder holds {CONFIG_FILE} and {WEIGHTS_FILE}; "
            "create one with prism-science convert-weights or save_model"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path} is not valid JSON ({exc}); re-create the folder") from exc
    if not isinstance(meta, dict) or "family" not in meta or "config" not in meta:
        raise WeightsError(
            f"{path} must hold a JSON object with 'family' and 'config', found keys "
            f"{sorted(meta) if isinstance(meta, dict) else type(meta).__name__}"
        )
    try:
        config = config_from_dict(meta["family"], meta["config"])
    except ConfigError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    return meta["family"], config, meta


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning any failure into a :class:`WeightsError`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing; re-create the weights folder")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types on corrupt headers
        raise WeightsError(
            f"weights file {path} is corrupt or truncated ({exc}); re-download or re-convert it"
        ) from exc


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``tensors`` into ``model``; missing/extra keys and shape mismatches name the key."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        raise WeightsError(
            f"{source} does not match the model config: missing keys {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} ({len(missing)}), unexpected keys "
            f"{extra[:5]}{' ...' if len(extra) > 5 else ''} ({len(extra)}); the config.json "
            "beside it may describe another architecture"
        )
    for key, value in expected.items():
        if tuple(tensors[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{source}: tensor {key!r} has shape {tuple(tensors[key].shape)} but the config "
                f"expects {tuple(value.shape)}; the config.json (or an override) does not match "
                "the weights"
            )
    # Parameters keep the model's dtype (float32) whatever the file stores.
    tensors = {k: v if v.dtype == expected[k].dtype else v.to(expected[k].dtype)
               for k, v in tensors.items()}
    on_meta = any(p.is_meta for p in model.parameters())
    # A model built by build_empty takes the tensors themselves; a built one copies them in.
    model.load_state_dict(tensors, strict=True, assign=on_meta)
    left = [k for k, v in model.state_dict().items() if v.is_meta]
    if left:
        raise WeightsError(f"{source}: no weights for {left[:5]} after loading")


def load_folder(directory: str | Path, verify: bool = True, **overrides: Any) -> nn.Module:
    """Load a weights folder (see :func:`load_model`)."""
    from prism_science.models.text import Tokenizer

    directory = Path(directory)
    _, config, meta = read_config(directory)
    if overrides:
        config = config.replace(**overrides)
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise WeightsError(
            f"weights file {weights_path} is missing; re-create the folder with "
            "prism-science convert-weights or save_model"
        )
    digest = sha256_file(weights_path)
    recorded = meta.get("sha256")
    if verify and recorded and recorded != digest:
        raise WeightsError(
            f"weights file {weights_path} has sha256 {digest[:16]}... but {CONFIG_FILE} records "
            f"{str(recorded)[:16]}...; the file is corrupt, truncated or was replaced: "
            "re-download or re-convert it"
        )
    tensors = read_tensors(weights_path)
    model = build_empty(config, name=str(meta.get("name") or directory.name))
    load_state(model, tensors, str(weights_path))
    model.weights_sha256 = digest
    tokenizer_path = directory / TOKENIZER_FILE
    if tokenizer_path.is_file() and hasattr(model, "tokenizer"):
        model.tokenizer = Tokenizer(tokenizer_path, max_length=config.text_max_length)
    logger.info("loaded %s from %s (sha256 %s)", model.name, directory, digest[:12])
    return model.eval()


def load_model(name_or_dir: str | Path, **overrides: Any) -> nn.Module:
    """Load a model by registered name, "default", or weights folder, in eval mode.

    Parameters
    ----------
    name_or_dir : str or Path
        A registered name (weights from the bundled or user weights folder when installed,
        random initialisation otherwise, which is logged), ``"default"`` (the bundled default
        encoder), or the path of a weights folder.
    **overrides
        Config fields to change, e.g. ``atten_logit_cap=0.0`` or ``attention="fast"``; unknown
        fields raise :class:`~prism_science.models.encoder.ConfigError`.

    Returns
    -------
    torch.nn.Module
        With ``config``, ``name``, ``weights_sha256`` (None for random init), ``num_frames``,
        ``image_size``, ``patch_size``, ``model_dim``.
    """
    path = Path(name_or_dir)
    key = str(name_or_dir)
    if key == DEFAULT_NAME:
        folder = find_weights(DEFAULT_NAME)
        if folder is None:
            raise WeightsError(
                f"the default encoder is not bundled ({BUNDLED_DIR / DEFAULT_NAME} has no "
                f"{CONFIG_FILE}); use a registered name ({', '.join(REGISTRY)}) or a weights "
                "folder"
            )
        return load_folder(folder, **overrides)
    if key in REGISTRY:
        folder = find_weights(key)
        if folder is not None:
            return load_folder(folder, **overrides)
        logger.warning(
            "no weights installed for %s (looked in %s and %s): using RANDOM initialisation",
            key, BUNDLED_DIR / key, user_weights_dir() / key,
        )
        return build_model(key, **overrides)
    if path.is_dir():
        return load_folder(path, **overrides)
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
