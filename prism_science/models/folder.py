"""Weights folders: ``config.json`` + ``model.safetensors`` (+ optional ``tokenizer.model``).

``config.json`` holds ``family``, ``name``, ``config`` (every config field), ``sha256`` (of the
safetensors file), ``format_version`` and, for weights fetched from the Hugging Face Hub,
``source`` (repo id, file name, revision and sha256 of the official checkpoint). Nothing is ever
unpickled: tensors are read with safetensors and JSON only.

Saves are byte-stable: the same tensors give the same file, hence the same sha256 (the
safetensors header holds one metadata key; with two, their order followed the writing process's
hash seed, issue 23). A model's *identity*, ``model.weights_sha256``, is the sha256 of the
tensors file's sha256 together with the canonical config (:func:`weights_identity`), so a
config change with the same tensors is another identity. It is what feature provenance
records.

Where a registered name's weights are looked for (first hit wins): ``prism_science/weights/
<name>/`` (bundled), then :func:`user_weights_dir` ``/<name>/``, where converted official
checkpoints are cached (``$PRISM_SCIENCE_WEIGHTS``, default ``$PRISM_SCIENCE_CACHE/weights``,
default ``~/.cache/prism-science/weights``).
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
    config_from_dict,
)

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.model"
FORMAT_VERSION = 1
DEFAULT_NAME = "default"
BUNDLED_DIR = Path(prism_science.__file__).resolve().parent / "weights"
# The only safetensors metadata written: one key, so the header bytes cannot depend on the
# order in which a hash map yields its keys (the family is in config.json).
SAFETENSORS_METADATA = {"format": "pt"}


def cache_dir() -> Path:
    """The prism-science cache folder: ``$PRISM_SCIENCE_CACHE``, else
    ``$XDG_CACHE_HOME/prism-science``, else ``~/.cache/prism-science``."""
    env = os.environ.get("PRISM_SCIENCE_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "prism-science"


def user_weights_dir() -> Path:
    """Folder of user-installed and downloaded weights: ``$PRISM_SCIENCE_WEIGHTS``, else
    ``cache_dir() / "weights"``."""
    env = os.environ.get("PRISM_SCIENCE_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return cache_dir() / "weights"


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


def sha256_file(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_config(config: Any) -> str:
    """The config as canonical JSON: family and every field, keys sorted, no spaces."""
    return json.dumps({"family": config.family, "config": config.to_dict()}, sort_keys=True,
                      separators=(",", ":"), allow_nan=False)


def weights_identity(tensors_sha256: str, config: Any) -> str:
    """The identity of weights: sha256 of the tensors file's sha256 and the canonical config.

    Parameters
    ----------
    tensors_sha256 : str
        Hex sha256 of the safetensors file (byte-stable, see :func:`save_model`).
    config : VideoEncoderConfig
        The config the tensors are loaded with (overrides included).

    Returns
    -------
    str
        64 hex digits; equal for equal tensors and config, whatever folder or save they come
        from; different when either differs.
    """
    text = json.dumps({"tensors_sha256": tensors_sha256, "model": json.loads(
        canonical_config(config))}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def save_model(model: nn.Module, directory: str | Path, name: str | None = None,
               source: dict[str, Any] | None = None) -> Path:
    """Write ``model`` as a weights folder; the tensors file is byte-stable.

    Parameters
    ----------
    model : torch.nn.Module
        A model built by :func:`build_model` / :func:`load_model` (has ``config`` and ``name``).
    directory : str or Path
        Created if missing; existing files of the same names are replaced.
    name : str, optional
        Name recorded in config.json (default ``model.name``).
    source : dict, optional
        Where the weights came from (recorded as ``source`` in config.json).

    Returns
    -------
    Path
        The folder. ``model.tensors_sha256`` and ``model.weights_sha256`` (the identity) are set.
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
    save_file(tensors, str(tmp), metadata=dict(SAFETENSORS_METADATA))
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
    if source:
        meta["source"] = source
    tmp_config = directory / (CONFIG_FILE + ".tmp")
    tmp_config.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp_config, directory / CONFIG_FILE)
    # safetensors creates its file readable by the owner only; a weights folder is shared (a
    # lab's cluster, a package), so it gets the permissions the umask gives config.json.
    os.chmod(weights_path, (directory / CONFIG_FILE).stat().st_mode & 0o777)
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is not None:
        src = Path(tokenizer.model_path)
        dst = directory / TOKENIZER_FILE
        if src.resolve() != dst.resolve():
            shutil.copyfile(src, dst)
    model.tensors_sha256 = digest
    model.weights_sha256 = weights_identity(digest, config)
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


def read_tensors(path: str | Path, device: str | torch.device = "cpu"
                 ) -> dict[str, torch.Tensor]:
    """Read a safetensors file, memory-mapped (on CPU, pages are read when first touched).

    Any failure becomes a :class:`WeightsError` naming the file.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing; re-create the weights folder")
    try:
        return load_file(str(path), device=str(torch.device(device)))
    except Exception as exc:  # safetensors raises its own error types on corrupt headers
        raise WeightsError(
            f"weights file {path} is corrupt or truncated ({exc}); re-download or re-convert it"
        ) from exc


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], source: str,
               dtype: torch.dtype | None = None) -> None:
    """Put ``tensors`` into ``model``; missing/extra keys and shape mismatches name the key.

    Floating tensors take ``dtype`` when given, else the model's parameter dtype (float32);
    tensors already of that dtype are used as they are (no copy).
    """
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

    def target(key: str, value: torch.Tensor) -> torch.dtype:
        if dtype is not None and value.is_floating_point():
            return dtype
        return expected[key].dtype

    tensors = {k: v if v.dtype == target(k, v) else v.to(target(k, v))
               for k, v in tensors.items()}
    on_meta = any(p.is_meta for p in model.parameters())
    # A model built by build_empty takes the tensors themselves; a built one copies them in.
    model.load_state_dict(tensors, strict=True, assign=on_meta)
    left = [k for k, v in model.state_dict().items() if v.is_meta]
    if left:
        raise WeightsError(f"{source}: no weights for {left[:5]} after loading")


def load_folder(directory: str | Path, verify: bool = True,
                device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                **overrides: Any) -> nn.Module:
    """Load a weights folder, in eval mode.

    Parameters
    ----------
    directory : str or Path
        Holds config.json and model.safetensors (+ tokenizer.model).
    verify : bool
        Check the file's sha256 against config.json (reads the file once; without it the
        recorded sha256 is trusted).
    device : str or torch.device, optional
        Where the tensors are placed (read there directly by safetensors); default CPU,
        memory-mapped.
    dtype : torch.dtype, optional
        Dtype of the floating tensors (default float32).
    **overrides
        Config fields to change.

    Returns
    -------
    torch.nn.Module
        With ``weights_sha256`` (the identity, :func:`weights_identity`) and
        ``tensors_sha256`` (the file's sha256).
    """
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
    recorded = meta.get("sha256")
    if verify or not recorded:
        digest = sha256_file(weights_path)
        if recorded and recorded != digest:
            raise WeightsError(
                f"weights file {weights_path} has sha256 {digest[:16]}... but {CONFIG_FILE} "
                f"records {str(recorded)[:16]}...; the file is corrupt, truncated or was "
                "replaced: re-download or re-convert it"
            )
    else:
        digest = str(recorded)
    tensors = read_tensors(weights_path, device=device or "cpu")
    model = build_empty(config, name=str(meta.get("name") or directory.name))
    load_state(model, tensors, str(weights_path), dtype=dtype)
    model.tensors_sha256 = digest
    model.weights_sha256 = weights_identity(digest, config)
    tokenizer_path = directory / TOKENIZER_FILE
    if tokenizer_path.is_file() and hasattr(model, "tokenizer"):
        model.tokenizer = Tokenizer(tokenizer_path, max_length=config.text_max_length)
    logger.info("loaded %s from %s (identity %s, file sha256 %s)", model.name, directory,
                model.weights_sha256[:12], digest[:12])
    return model.eval()
