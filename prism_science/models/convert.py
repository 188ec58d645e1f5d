"""Convert official VideoPrism Flax checkpoints (flat ``.npz``) into our weights folders.

Official keys are '/'-joined Flax paths, ``params/<module>/.../<leaf>``. Transformer layers are
either stacked on a leading axis under ``x_layers`` (``*_repeated.npz``, ``scan=True``) or stored
one per layer as ``x_layers_<i>``. Our module names are the official ones, so the mapping is:

* ``x_layers`` (stacked, index i) or ``x_layers_<i>``  ->  ``x_layers.<i>``
* ``.../linear/kernel`` (in, out)                       ->  ``.../linear.weight`` (out, in)
* attention ``query|key|value/w`` (D, N, H)   ->  ``weight`` (N*H, D); ``b`` (N, H) -> (N*H,)
* attention ``post/w`` (D, N, H)                        ->  ``weight`` (D, N*H); ``b`` -> ``bias``
* everything else (LayerNorm ``scale``/``bias`` stored gain-1, ``emb_var``, ``per_dim_scale``,
  ``cls_emb``, ``pooling_attention_query``) keeps its name and layout.

With no variant named, the architecture is inferred from the keys and shapes, so any checkpoint in
the official layout converts. The npz is read with ``allow_pickle=False``.
"""

from __future__ import annotations

import logging
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from prism_science.errors import ConfigError, WeightsError
from prism_science.models.encoder import VideoEncoderConfig
from prism_science.models.lvt import VideoTextConfig
from prism_science.models.pooler import VideoClassifierConfig
from prism_science.models.registry import build_empty, get_config

logger = logging.getLogger(__name__)

_PROJECTIONS = ("query", "key", "value", "post")
_LAYER_RE = re.compile(r"^x_layers_(\d+)$")


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read a flat official checkpoint; never unpickles. Errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} does not exist; give the path of an official .npz")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: np.asarray(data[key]) for key in data.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise WeightsError(
            f"checkpoint {path} cannot be read as an .npz of arrays ({exc}); the file is corrupt, "
            "truncated or not an official VideoPrism checkpoint"
        ) from exc
    if not arrays:
        raise WeightsError(f"checkpoint {path} holds no arrays")
    for key, value in arrays.items():
        if value.dtype.kind not in "fiu":
            raise WeightsError(
                f"checkpoint {path}: key {key!r} has dtype {value.dtype}, expected a float array"
            )
    # Keys with and without the leading 'params/' are accepted.
    return {(k if k.startswith("params/") else f"params/{k}"): v for k, v in arrays.items()}


def _split_layers(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Expand stacked ``x_layers`` and rename ``x_layers_<i>`` to per-layer ``x_layers/<i>``."""
    out: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        parts = key.split("/")
        if "x_layers" in parts:
            at = parts.index("x_layers")
            for i in range(value.shape[0]):
                out["/".join(parts[:at + 1] + [str(i)] + parts[at + 1:])] = value[i]
            continue
        for j, part in enumerate(parts):
            match = _LAYER_RE.match(part)
            if match:
                parts = parts[:j] + ["x_layers", match.group(1)] + parts[j + 1:]
                break
        out["/".join(parts)] = value
    return out


def _to_torch(key: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    """Map one per-layer official key (``params/`` stripped) and array to ours."""
    parts = key.split("/")
    leaf, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
    if parent == "linear" and leaf == "kernel":
        return ".".join(parts[:-1] + ["weight"]), value.T
    if parent in _PROJECTIONS and leaf in ("w", "b"):
        name = ".".join(parts[:-1] + ["weight" if leaf == "w" else "bias"])
        if leaf == "b":
            return name, value.reshape(-1)
        dim = value.shape[0]
        flat = value.reshape(dim, -1)  # (D, N*H)
        return name, flat if parent == "post" else flat.T
    return ".".join(parts), value


def official_to_state_dict(arrays: dict[str, np.ndarray]) -> tuple[dict[str, torch.Tensor],
                                                                      dict[str, str]]:
    """Map official keys to our state-dict keys.

    Returns
    -------
    state : dict
        Our key -> float32 tensor.
    origin : dict
        Our key -> the official key it came from (for error messages).
    """
    state: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, value in _split_layers(arrays).items():
        ours, mapped = _to_torch(key[len("params/"):], value)
        state[ours] = torch.from_numpy(np.ascontiguousarray(mapped, dtype=np.float32))
        origin[ours] = re.sub(r"/x_layers/\d+/", "/x_layers/", key) if "/x_layers/" in key else key
    return state, origin


def to_official(model: nn.Module, stacked: bool = True) -> dict[str, torch.Tensor]:
    """Map a model's parameters back to official Flax keys and layouts (the inverse of
    :func:`official_to_state_dict`); works on the 'meta' device too.

    Parameters
    ----------
    model : torch.nn.Module
        A model of this package.
    stacked : bool
        Stack layers under ``x_layers`` (``*_repeated.npz``) or name them ``x_layers_<i>``.

    Returns
    -------
    dict
        Official key (``params/...``) -> tensor.
    """
    from prism_science.models.layers import DotProductAttention

    heads = {
        name: (module.num_heads, module.dim_per_head)
        for name, module in model.named_modules()
        if isinstance(module, DotProductAttention)
    }
    per_layer: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        value = value.detach()
        parts = key.split(".")
        leaf, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
        if parent == "linear" and leaf == "weight":
            parts[-1], value = "kernel", value.t()
        elif parent in _PROJECTIONS and leaf in ("weight", "bias"):
            n, h = heads[".".join(parts[:-2])]
            if leaf == "bias":
                parts[-1] = "b"
                value = value if parent == "post" else value.reshape(n, h)
            else:
                parts[-1] = "w"
                flat = value if parent == "post" else value.t()  # (D, N*H)
                value = flat.reshape(flat.shape[0], n, h)
        per_layer["/".join(parts)] = value
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, dict[int, torch.Tensor]] = {}
    for key, value in per_layer.items():
        match = re.search(r"/x_layers/(\d+)/", key)
        if not match:
            out[f"params/{key}"] = value
        elif stacked:
            stacked_key = key.replace(match.group(0), "/x_layers/")
            groups.setdefault(stacked_key, {})[int(match.group(1))] = value
        else:
            out["params/" + key.replace(match.group(0), f"/x_layers_{match.group(1)}/")] = value
    for key, layers in groups.items():
        out[f"params/{key}"] = torch.stack([layers[i] for i in sorted(layers)])
    return out


def official_name(torch_key: str) -> str:
    """The official (stacked-layout) key a torch state-dict key comes from."""
    parts = torch_key.split(".")
    leaf, parent = parts[-1], parts[-2] if len(parts) > 1 else ""
    if parent == "linear" and leaf == "weight":
        parts[-1] = "kernel"
    elif parent in _PROJECTIONS:
        parts[-1] = {"weight": "w", "bias": "b"}.get(leaf, leaf)
    return "params/" + re.sub(r"/x_layers/\d+/", "/x_layers/", "/".join(parts))


# -- architecture inference ------------------------------------------------------------------
def _shape(arrays: dict[str, np.ndarray], key: str) -> tuple[int, ...]:
    if key not in arrays:
        raise WeightsError(
            f"checkpoint has no key {key!r}, which the official layout needs to infer the "
            "architecture; name the variant with --variant or check that the file is a "
            "VideoPrism checkpoint"
        )
    return tuple(arrays[key].shape)


def _count_layers(arrays: dict[str, np.ndarray], prefix: str) -> int:
    stacked = f"{prefix}/x_layers/layer_norm/bias"
    if stacked in arrays:
        return int(arrays[stacked].shape[0])
    stacked_primer = f"{prefix}/x_layers/pre_layer_norm/bias"
    if stacked_primer in arrays:
        return int(arrays[stacked_primer].shape[0])
    indices = {
        int(m.group(1))
        for key in arrays
        if key.startswith(prefix + "/")
        for m in [re.match(r"x_layers_(\d+)/", key[len(prefix) + 1:])]
        if m
    }
    return max(indices) + 1 if indices else 0


def _policy(arrays: dict[str, np.ndarray], prefix: str) -> str:
    return "primer_hybrid" if any(
        k.startswith(prefix) and "/pre_layer_norm/" in k for k in arrays
    ) else "pre"


def _first(arrays: dict[str, np.ndarray], prefix: str, suffix: str) -> tuple[int, ...]:
    for key, value in arrays.items():
        if key.startswith(prefix) and key.endswith(suffix):
            shape = tuple(value.shape)
            return shape[1:] if "/x_layers/" in key else shape
    raise WeightsError(
        f"checkpoint has no key '{prefix}.../{suffix}' to infer the architecture from; "
        "name the variant with --variant"
    )


def _encoder_fields(arrays: dict[str, np.ndarray], prefix: str) -> dict[str, Any]:
    in_dim, dim = _shape(arrays, f"{prefix}patch_projection/linear/kernel")
    patch = int(round((in_dim / 3) ** 0.5))
    if patch * patch * 3 != in_dim:
        raise WeightsError(
            f"{prefix}patch_projection/linear/kernel has {in_dim} inputs, expected 3 * patch**2"
        )
    n_spatial = _shape(arrays, f"{prefix}spatial_pos_emb/emb_var")[0]
    grid = int(round(n_spatial**0.5))
    if grid * grid != n_spatial:
        raise WeightsError(
            f"{prefix}spatial_pos_emb/emb_var has {n_spatial} rows, expected a square grid"
        )
    num_frames = _shape(arrays, f"{prefix}temporal_pos_emb/emb_var")[0]
    heads = _first(arrays, f"{prefix}spatial_encoder/", "self_attention/query/w")[1]
    mlp = _first(arrays, f"{prefix}spatial_encoder/", "ffn_layer1/linear/kernel")[1]
    return {
        "patch_size": patch,
        "num_frames": num_frames,
        "image_size": grid * patch,
        "model_dim": dim,
        "num_spatial_layers": _count_layers(arrays, f"{prefix}spatial_encoder/transformers_stack"),
        "num_temporal_layers": _count_layers(arrays,
                                             f"{prefix}temporal_encoder/transformers_stack"),
        "num_heads": heads,
        "mlp_dim": mlp,
        "norm_policy": _policy(arrays, f"{prefix}spatial_encoder/"),
    }


def infer_config(arrays: dict[str, np.ndarray], atten_logit_cap: float = 50.0
                 ) -> VideoEncoderConfig:
    """Infer the family and config of an official checkpoint from its keys and shapes.

    The logit cap cannot be read from the weights; every released model uses 50.
    """
    keys = set(arrays)
    if "params/patch_projection/linear/kernel" in keys:
        fields = _encoder_fields(arrays, "params/")
        return VideoEncoderConfig(**fields, atten_logit_cap=atten_logit_cap)
    if "params/encoder/patch_projection/linear/kernel" in keys:
        fields = _encoder_fields(arrays, "params/encoder/")
        classes = _shape(arrays, "params/projection/linear/kernel")[1]
        return VideoClassifierConfig(**fields, num_classes=classes,
                                     atten_logit_cap=atten_logit_cap)
    if "params/vision_encoder/patch_projection/linear/kernel" in keys:
        fields = _encoder_fields(arrays, "params/vision_encoder/")
        vocab = _shape(arrays, "params/text_encoder/token_emb/emb_var")[0]
        return VideoTextConfig(
            **fields,
            atten_logit_cap=atten_logit_cap,
            num_auxiliary_layers=_count_layers(arrays,
                                               "params/auxiliary_encoder/transformers_stack"),
            vocabulary_size=vocab,
            num_unimodal_layers=_count_layers(arrays, "params/text_encoder/unimodal_transformer"),
            text_norm_policy=_policy(arrays, "params/text_encoder/"),
        )
    raise WeightsError(
        "cannot tell the model family of this checkpoint: none of "
        "'params/patch_projection/...' (encoder), 'params/encoder/...' (classifier) or "
        "'params/vision_encoder/...' (LvT) is present; first keys: "
        f"{sorted(keys)[:5]}"
    )


def load_official(
    arrays: dict[str, np.ndarray],
    config: VideoEncoderConfig,
    name: str = "custom",
    source: str = "checkpoint",
) -> nn.Module:
    """Build a model for ``config`` and fill it from official ``arrays``.

    Unknown, missing or extra keys and shape mismatches raise :class:`WeightsError` naming the
    official key.
    """
    state, origin = official_to_state_dict(arrays)
    model = build_empty(config, name=name)
    expected = model.state_dict()
    extra = sorted(k for k in state if k not in expected)
    if extra:
        raise WeightsError(
            f"{source}: unknown or extra key(s) for a {config.family} model: "
            f"{[origin[k] for k in extra[:5]]}{' ...' if len(extra) > 5 else ''} ({len(extra)} in "
            "all); the checkpoint is of another family or size than --variant says"
        )
    missing = sorted({official_name(k) for k in expected if k not in state})
    if missing:
        raise WeightsError(
            f"{source}: missing key(s) for a {config.family} model: {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''} ({len(missing)} in all); the checkpoint is "
            "incomplete or of another architecture"
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{source}: key {origin[key]!r} maps to a tensor of shape "
                f"{tuple(state[key].shape)} but the config expects {tuple(value.shape)} "
                f"(torch key {key!r}); the checkpoint does not match the variant"
            )
    state = {k: v.to(expected[k].dtype).contiguous() for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def convert_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    variant: str | None = None,
    name: str | None = None,
    source: dict[str, Any] | None = None,
    **overrides: Any,
) -> Path:
    """Convert an official ``.npz`` checkpoint into a weights folder.

    Parameters
    ----------
    checkpoint : str or Path
        Official flat ``.npz`` (stacked ``_repeated`` or per-layer), encoder, classifier or LvT.
    out_dir : str or Path
        Weights folder to write (config.json + model.safetensors).
    variant : str, optional
        Registered name whose config the checkpoint must match; inferred when None.
    name : str, optional
        ``model.name`` to record; default the variant or the output folder's name.
    source : dict, optional
        Where the checkpoint came from, recorded as ``source`` in config.json.
    **overrides
        Config fields to set (e.g. ``atten_logit_cap``).

    Returns
    -------
    Path
        The written folder.
    """
    from prism_science.models.folder import save_model

    checkpoint = Path(checkpoint)
    arrays = read_npz(checkpoint)
    if variant is not None:
        config = get_config(variant)
    else:
        config = infer_config(arrays)
        logger.info("inferred %s config: %s", config.family, config.to_dict())
    if overrides:
        try:
            config = config.replace(**overrides)
        except ConfigError as exc:
            raise WeightsError(str(exc)) from exc
    model = load_official(arrays, config, name=name or variant or Path(out_dir).name,
                          source=str(checkpoint))
    return save_model(model, out_dir, source=source)
