"""Prompt-learned behavior classifiers on a video-text model (Efficient-Prompt, Ju et al. 2022).

The video-text (LvT) model stays frozen, text tower included. Each behavior name is tokenized
and wrapped in learnable context vectors shared by every behavior (``[a1..ak] chasing
[b1..bk]``: ``context_position`` front, back or both); the frozen text tower turns each wrapped
name into a class vector. A light temporal transformer with learnable temporal position
embeddings runs over windows of the model's frozen per-frame embeddings (the ``frame_emb``
token mode of extraction), added back to them as a residual; a frame's (or, with
``pooling="mean"``, a clip's mean-pooled) embedding is compared with the class vectors by
cosine similarity over a temperature ``tau``. Training moves only the context vectors, the
temporal module and a shared logit bias.

Losses: softmax cross-entropy over the class vectors (NCE, multi-class ``y``) or, for the
frames x behaviors matrices of the pipeline, a sigmoid per behavior (``cos / tau + bias``,
one bias shared by all behaviors so that it carries over to names never trained on).

Because the prompts are shared, a trained probe scores behaviors named only at prediction time
(:meth:`PromptProbe.predict_behaviors`), the paper's zero-shot split. With no training at all,
:func:`template_class_vectors` builds class vectors from hand-made templates (``"a video of
{}."``, averaged over a prompt ensemble) -- the zero-shot scoring of
:mod:`prism_science.pipeline.zero_shot`.

Saved like every probe (``probe.safetensors`` + ``probe.json``): the weights hold the trained
context vectors, the temporal module and the **class vectors of the trained behaviors**, so
predicting them needs no text tower. Scoring new names needs the text tower again: it is
reloaded from the ``text_model`` parameter (a registered name, ``"default"`` or a weights
folder; default the model named in the features' provenance) and must have the weights sha256
recorded with the features the probe was trained on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_array, check_is_fitted
from torch import nn

from prism_science.errors import ProbeError
from prism_science.models.layers import l2_normalize
from prism_science.models.text import canonicalize_text, sinusoidal_positions
from prism_science.probes.base import BaseProbe, TrainingUnits
from prism_science.probes.temporal import TemporalProbe, _is_sequence_list

__all__ = [
    "CONTEXT_POSITIONS",
    "DEFAULT_TEMPLATES",
    "PromptProbe",
    "behavior_token_ids",
    "check_frame_embeddings",
    "check_text_tower",
    "encode_embedded_text",
    "resolve_text_model",
    "template_class_vectors",
]

logger = logging.getLogger(__name__)

CONTEXT_POSITIONS = ("front", "back", "both")
DEFAULT_TEMPLATES = ("a video of {}.", "a mouse {}.", "an animal {}.")
"""The hand-made prompt ensemble of zero-shot scoring (class vectors averaged over them)."""

_TEXT_MODELS: dict[str, nn.Module] = {}  # source -> loaded text model (probes share one copy)


# ---------------------------------------------------------------------- the text side
def _model_name(model: Any) -> str:
    return str(getattr(model, "name", type(model).__name__))


def check_text_tower(model: nn.Module) -> None:
    """Raise :class:`ProbeError` unless ``model`` is a video-text model with a tokenizer.

    The pipeline refuses such models before loading any weights
    (:func:`prism_science.search.check_text_model`); this guards probes used directly.
    """
    if not callable(getattr(model, "encode_text", None)) or not hasattr(model, "text_encoder"):
        raise ProbeError(f"model {_model_name(model)!r} has no text tower: a prompt probe needs a "
                         "video-text (LvT) model, such as the bundled 'default'")
    if getattr(model, "tokenizer", None) is None:
        raise ProbeError(f"model {_model_name(model)!r} has no tokenizer: put its SentencePiece "
                         "file as tokenizer.model in its weights folder, or use a video-text "
                         "model that has one (the bundled 'default')")


def resolve_text_model(source: str | Path | nn.Module, weights_sha256: str | None = None
                       ) -> nn.Module:
    """A video-text model with a tokenizer, frozen, in eval mode (loaded once per source).

    Parameters
    ----------
    source : str, Path or nn.Module
        A registered name, ``"default"``, a weights folder, or a loaded model.
    weights_sha256 : str, optional
        The sha256 the model must have (that of the model which made the frame embeddings).

    Raises
    ------
    ProbeError
        No text tower or tokenizer, or other weights than ``weights_sha256``.
    """
    from prism_science.models import load_model

    if isinstance(source, nn.Module):
        model = source
    else:
        key = str(source)
        model = _TEXT_MODELS.get(key)
        if model is None:
            try:
                model = load_model(key)
            except (ValueError, OSError) as exc:
                raise ProbeError(f"cannot load the text model {key!r} ({exc}); pass the weights "
                                 "folder of the video-text model that extracted the features "
                                 "(text_model=... / --text-model)") from exc
            _TEXT_MODELS.clear()  # keep one: text towers of real models are large
            _TEXT_MODELS[key] = model
    check_text_tower(model)
    found = getattr(model, "weights_sha256", None)
    if weights_sha256 and found != weights_sha256:
        raise ProbeError(
            f"text model {_model_name(model)!r} has weights sha256 {str(found)[:12]}, the frame "
            f"embeddings were made by weights {str(weights_sha256)[:12]}: text and frame "
            "embeddings must come from the same video-text model; pass its weights folder "
            "(text_model=... / --text-model) or re-extract with --tokens frame_emb"
        )
    model.eval()
    for parameter in model.text_encoder.parameters():
        parameter.requires_grad_(False)  # frozen: gradients reach only the prompt vectors
    return model


def behavior_token_ids(model: nn.Module, names: Sequence[str], max_tokens: int | None = None
                       ) -> list[list[int]]:
    """Token ids of each behavior name (canonicalised as captions are, without the final ".").

    Parameters
    ----------
    model : VideoTextModel
        With ``tokenizer`` and a text tower.
    names : sequence of str
        Behavior names, e.g. ``["chasing", "grooming"]``.
    max_tokens : int, optional
        Most tokens a name may take (the text length left beside the context vectors).

    Returns
    -------
    list of list of int

    Raises
    ------
    ProbeError
        Naming every behavior the tokenizer cannot encode: nothing left after canonicalisation,
        words it maps to the unknown piece, ids outside the model's vocabulary, too long.
    """
    check_text_tower(model)
    tokenizer = model.tokenizer
    sp = getattr(tokenizer, "_sp", None)
    unk = int(sp.unk_id()) if sp is not None else None
    vocabulary = int(model.text_encoder.vocabulary_size)
    problems, out = [], []
    for name in names:
        text = canonicalize_text(str(name)).removesuffix(".")
        ids = tokenizer.encode(text, canonicalize=False) if text else []
        if not ids:
            problems.append(f"{name!r} has no letter or digit to encode")
        elif unk is not None and unk in ids:
            words = [w for w in text.split() if unk in tokenizer.encode(w, canonicalize=False)]
            problems.append(f"{name!r}: the tokenizer does not know {words or [text]}")
        elif max(ids) >= vocabulary:
            problems.append(f"{name!r} gets token ids up to {max(ids)}, beyond the model's "
                            f"vocabulary of {vocabulary} (a tokenizer of another model?)")
        elif max_tokens is not None and len(ids) > max_tokens:
            problems.append(f"{name!r} takes {len(ids)} tokens, at most {max_tokens} fit")
        out.append(list(ids))
    if problems:
        raise ProbeError(
            f"the tokenizer of model {_model_name(model)!r} cannot encode these behavior names: "
            + "; ".join(problems) + ". Rename them with words the model was trained on "
            "(plain lower-case English words, e.g. 'groom', 'chase')."
        )
    return out


def encode_embedded_text(text_encoder: nn.Module, embedded: torch.Tensor,
                         paddings: torch.Tensor) -> torch.Tensor:
    """The frozen text tower on token *embeddings* instead of ids (so prompts can be learned).

    Exactly :meth:`prism_science.models.text.TextEncoder.forward` after its token lookup (a
    test checks the two agree on real tokens).

    Parameters
    ----------
    text_encoder : TextEncoder
    embedded : torch.Tensor
        (B, L, D) float, rows of ``token_emb.emb_var`` (before the sqrt(D) scale) or learned
        vectors in the same space.
    paddings : torch.Tensor
        (B, L) float, 1.0 = padding.

    Returns
    -------
    torch.Tensor
        (B, D) L2-normalised text embeddings (the output at the appended class token).
    """
    b, length, dim = embedded.shape
    scale = dim**0.5
    x = embedded * scale + sinusoidal_positions(length, dim, embedded.device).to(embedded.dtype)
    cls = text_encoder.cls_emb.expand(b, -1, -1) * scale
    x = torch.cat([x, cls.to(x.dtype)], dim=1)
    paddings = torch.cat([paddings.to(x.dtype), x.new_zeros(b, 1)], dim=1)
    x, _ = text_encoder.unimodal_transformer(x, paddings)
    return l2_normalize(text_encoder.unimodal_ln(x)[:, -1])


def template_class_vectors(model: nn.Module, names: Sequence[str],
                           templates: Sequence[str] = DEFAULT_TEMPLATES) -> np.ndarray:
    """Zero-shot class vectors: each name in every template, encoded, averaged, normalised.

    Parameters
    ----------
    model : VideoTextModel
        With a tokenizer.
    names : sequence of str
    templates : sequence of str
        Each with one ``{}`` for the name (CLIP's prompt ensemble: vectors averaged).

    Returns
    -------
    np.ndarray
        (K, D) float32, L2-normalised.

    Raises
    ------
    ProbeError
        A template without ``{}``, or names the tokenizer cannot encode.
    """
    templates = list(templates)
    bad = [t for t in templates if t.count("{}") != 1]
    if not templates or bad:
        raise ProbeError(f"prompt templates must each hold one '{{}}' for the behavior name, "
                         f"found {bad or templates}; e.g. 'a video of {{}}.'")
    behavior_token_ids(model, names)
    with torch.inference_mode():
        vectors = torch.stack([
            model.encode_texts([t.format(name) for name in names]) for t in templates
        ]).mean(0)
        return l2_normalize(vectors).float().cpu().numpy()


# ---------------------------------------------------------------------- the module
class _PromptModule(nn.Module):
    """Prompt contexts + temporal transformer; the text tower is attached, never registered.

    Input ``(B, W, D + 1)``: frame embeddings plus a last channel, 1 on real frames and 0 on
    padding. Output logits ``(B, W, K)`` (``pooling="frame"``) or ``(B, K)`` (``"mean"``).
    """

    def __init__(self, dim: int, n_outputs: int, n_front: int, n_back: int, window: int,
                 n_layers: int, n_heads: int, dropout: float, temperature: float,
                 pooling: str, multilabel: bool) -> None:
        super().__init__()
        # Efficient-Prompt initialises the prompt vectors with N(0, 0.02).
        self.front_context = nn.Parameter(torch.randn(n_front, dim) * 0.02)
        self.back_context = nn.Parameter(torch.randn(n_back, dim) * 0.02)
        self.temporal_position = nn.Parameter(torch.randn(window, dim) * 0.02)
        self.temporal = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(dim, n_heads, 4 * dim, dropout, activation="gelu",
                                       batch_first=True, norm_first=True),
            n_layers, enable_nested_tensor=False,
        ) if n_layers > 0 else None
        # Zero-initialised residual: an untrained probe scores the frozen frame embeddings.
        self.temporal_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.temporal_out.weight)
        nn.init.zeros_(self.temporal_out.bias)
        self.logit_bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("class_embeddings", torch.zeros(n_outputs, dim))
        self.temperature = float(temperature)
        self.pooling = pooling
        self.multilabel = multilabel
        self._text: nn.Module | None = None  # the frozen text tower, when attached
        self._name_ids: list[list[int]] = []

    def attach_text(self, text_encoder: nn.Module, name_ids: list[list[int]]) -> None:
        """Compute class vectors through ``text_encoder`` (frozen) for these names."""
        object.__setattr__(self, "_text", text_encoder)  # not a submodule: not saved/trained
        self._name_ids = name_ids

    def detach_text(self) -> None:
        """Back to the saved ``class_embeddings``."""
        object.__setattr__(self, "_text", None)
        self._name_ids = []

    def prompt_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, L, D) context + name + context embeddings and (K, L) paddings."""
        encoder = self._text
        table = encoder.token_emb.emb_var
        rows = []
        for ids in self._name_ids:
            name = table[torch.as_tensor(ids, device=table.device)]
            rows.append(torch.cat([self.front_context.to(table.dtype), name,
                                   self.back_context.to(table.dtype)]))
        length = max(len(r) for r in rows)
        embedded = table.new_zeros(len(rows), length, table.shape[1])
        paddings = table.new_ones(len(rows), length)
        for k, row in enumerate(rows):
            embedded[k, : len(row)] = row
            paddings[k, : len(row)] = 0.0
        return embedded, paddings

    def class_vectors(self) -> torch.Tensor:
        """(K, D) L2-normalised class vectors."""
        if self._text is None:
            return self.class_embeddings
        embedded, paddings = self.prompt_embeddings()
        return encode_embedded_text(self._text, embedded, paddings)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Frame (or pooled clip) embeddings after the temporal module, L2-normalised."""
        valid = x[..., -1] > 0  # (B, W)
        frames = l2_normalize(x[..., :-1]) * valid[..., None]
        width = frames.shape[1]
        if width > self.temporal_position.shape[0]:
            raise ProbeError(f"a window of {width} frames is longer than the probe's "
                             f"{self.temporal_position.shape[0]} temporal positions")
        h = frames + self.temporal_position[:width]
        if self.temporal is not None:
            h = self.temporal(h, src_key_padding_mask=~valid)
        out = l2_normalize(frames + self.temporal_out(h))
        if self.pooling == "mean":
            total = (out * valid[..., None]).sum(1)
            return l2_normalize(total / valid.sum(1, keepdim=True).clamp_min(1))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        emb = self.embed(x)
        logits = emb @ self.class_vectors().to(emb.dtype).T / self.temperature
        return logits + self.logit_bias if self.multilabel else logits


# ---------------------------------------------------------------------- the probe
class PromptProbe(BaseProbe):
    """Behaviors named in words: learned prompts through a frozen text tower, a temporal
    transformer over frozen per-frame embeddings (see the module docstring).

    Input ``X``: per-frame embeddings of a video-text model (features extracted with
    ``--tokens frame_emb``). With ``pooling="frame"`` (dense per-frame labels), as for
    :class:`~prism_science.probes.TemporalProbe`: a list of ``(T_i, D)`` arrays, one per video,
    or ``(N, D)`` rows with ``groups`` (video id per row, rows of a video in time order);
    videos are cut into windows of ``window`` frames (half-overlapping; a frame's logits are
    averaged over its windows). With ``pooling="mean"`` (clip labels): ``(N, W, D)`` clips,
    ``W <= window``, one label per clip.

    ``classes_`` are the behavior names (``behavior_names`` of a multi-label ``y``, or the
    labels of a 1-D ``y``): they are tokenized, so they must be words.

    Parameters
    ----------
    text_model : str, optional
        The video-text model whose text tower makes the class vectors: a registered name,
        ``"default"`` or a weights folder. Default: the model named in the features'
        provenance. It must be the model that made the frame embeddings (same weights sha256).
    n_context : int
        Learnable context vectors on each side used (``front``, ``back``, or both).
    context_position : str
        ``"front"``, ``"back"`` or ``"both"``.
    window : int
        Frames per temporal window (learnable temporal positions).
    n_layers : int
        Temporal transformer layers (0: frame embeddings as they are).
    n_heads : int
        Attention heads; must divide the embedding width.
    dropout : float
        Dropout in the temporal transformer (training only).
    temperature : float
        tau: logits are cosine similarity / tau.
    pooling : str
        ``"frame"`` (per-frame outputs) or ``"mean"`` (mean-pooled clip output).
    class_weight, focal_gamma, learning_rate, weight_decay, batch_size, max_epochs,
    early_stopping, validation_fraction, n_iter_no_change, tol, tune_thresholds, random_state
        As in :class:`~prism_science.probes.LinearProbe`.
    """

    _input_ndim = None

    def __init__(
        self,
        *,
        text_model: str | None = None,
        n_context: int = 4,
        context_position: str = "both",
        window: int = 16,
        n_layers: int = 1,
        n_heads: int = 4,
        dropout: float = 0.0,
        temperature: float = 0.07,
        pooling: str = "frame",
        class_weight: Any = None,
        focal_gamma: float = 0.0,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-4,
        batch_size: int = 16,
        max_epochs: int = 40,
        early_stopping: bool = True,
        validation_fraction: float = 0.2,
        n_iter_no_change: int = 5,
        tol: float = 1e-4,
        tune_thresholds: bool = True,
        random_state: Any = None,
    ) -> None:
        self.text_model = text_model
        self.n_context = n_context
        self.context_position = context_position
        self.window = window
        self.n_layers = n_layers
        self.n_heads = n_heads
        self.dropout = dropout
        self.temperature = temperature
        self.pooling = pooling
        self.class_weight = class_weight
        self.focal_gamma = focal_gamma
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.tune_thresholds = tune_thresholds
        self.random_state = random_state

    # ------------------------------------------------------------------ structure
    def _context_counts(self) -> tuple[int, int]:
        if self.context_position not in CONTEXT_POSITIONS:
            raise ProbeError(f"context_position must be one of {CONTEXT_POSITIONS}, found "
                             f"{self.context_position!r}")
        k = int(self.n_context)
        if k < 0:
            raise ProbeError(f"n_context must be >= 0, found {self.n_context}")
        front = k if self.context_position in ("front", "both") else 0
        back = k if self.context_position in ("back", "both") else 0
        return front, back

    def _build_module(self, n_features: int, n_outputs: int) -> nn.Module:
        if self.pooling not in ("frame", "mean"):
            raise ProbeError(f"pooling must be 'frame' or 'mean', found {self.pooling!r}")
        if int(self.window) < 1:
            raise ProbeError(f"window must be >= 1 frame, found {self.window}")
        if int(self.n_layers) > 0 and n_features % int(self.n_heads):
            raise ProbeError(f"n_heads {self.n_heads} does not divide the embedding width "
                             f"{n_features}; choose a divisor of {n_features}")
        if float(self.temperature) <= 0:
            raise ProbeError(f"temperature must be > 0, found {self.temperature}")
        front, back = self._context_counts()
        return _PromptModule(n_features, n_outputs, front, back, int(self.window),
                             int(self.n_layers), int(self.n_heads), float(self.dropout),
                             float(self.temperature), self.pooling,
                             bool(getattr(self, "multilabel_", True)))

    # ------------------------------------------------------------------ inputs
    def _check_X(self, X: Any, groups: Any, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        if self.pooling == "mean":
            X = check_array(X, dtype=(np.float32, np.float64), allow_nd=True,
                            ensure_all_finite=True, input_name="X")
            if X.ndim != 3:
                raise ProbeError(f"pooling='mean' takes clips (N, W, D), found shape {X.shape}; "
                                 "use pooling='frame' for per-frame rows")
            self._check_n_features(X.shape[-1], reset)
            return np.ascontiguousarray(X, np.float32), self._check_groups(groups, len(X))
        if _is_sequence_list(X):
            if groups is not None:
                raise ProbeError("groups must be None when X is a list of per-video arrays "
                                 "(each array is one video).")
            groups = np.repeat(np.arange(len(X)), [len(x) for x in X])
            X = np.concatenate([np.asarray(x, np.float32) for x in X])
        if np.ndim(X) != 2:
            raise ProbeError(
                f"PromptProbe takes per-frame embeddings (N, D), found shape {np.shape(X)}: "
                "features of token mode 'frame_emb' (extract them with `prism-science extract "
                "... --model default --tokens frame_emb`)")
        X, groups = BaseProbe._check_X(self, X, groups, reset)
        return X, (np.zeros(len(X), np.int64) if groups is None else groups)

    _sequences = staticmethod(TemporalProbe._sequences)

    def _windows(self, n_rows: int) -> list[tuple[int, int]]:
        """Half-overlapping windows over ``n_rows`` frames, the last ending on the last row."""
        width = int(self.window)
        if n_rows <= width:
            return [(0, n_rows)]
        hop = max(1, width // 2)
        starts = list(range(0, n_rows - width + 1, hop))
        if starts[-1] != n_rows - width:
            starts.append(n_rows - width)
        return [(s, s + width) for s in starts]

    def _pack(self, X: np.ndarray, groups: np.ndarray
              ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Windows ``(U, window, D + 1)`` (padded, validity channel) and their rows."""
        width = int(self.window)
        units, rows_of = [], []
        for rows in self._sequences(groups):
            for start, stop in self._windows(len(rows)):
                unit = np.zeros((width, X.shape[1] + 1), np.float32)
                unit[: stop - start, :-1] = X[rows[start:stop]]
                unit[: stop - start, -1] = 1.0
                units.append(unit)
                rows_of.append(rows[start:stop])
        return np.stack(units), rows_of

    def _with_valid(self, X: np.ndarray) -> np.ndarray:
        """Clips (N, W, D) -> (N, W, D + 1) with the validity channel."""
        return np.concatenate([X, np.ones(X.shape[:2] + (1,), np.float32)], axis=-1)

    # ------------------------------------------------------------------ training
    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None,
            behavior_names: Any = None, feature_provenance: dict | None = None,
            text_model: nn.Module | None = None) -> PromptProbe:
        """Train the prompt vectors and the temporal module; see :meth:`BaseProbe.fit`.

        Parameters
        ----------
        text_model : nn.Module, optional
            The video-text model, already loaded (else loaded from the ``text_model``
            parameter or the features' provenance). Its text tower is frozen.

        Raises
        ------
        ProbeError
            No usable text model (no text tower, no tokenizer, other weights than the
            features'), names the tokenizer cannot encode, features that are not per-frame
            embeddings.
        """
        self._fit_text_model = text_model
        if feature_provenance is not None and self.pooling == "frame":
            check_frame_embeddings(feature_provenance)
        if isinstance(X, (list, tuple)) and _is_sequence_list(X):
            if isinstance(y, (list, tuple)):
                y = np.concatenate([np.asarray(part) for part in y])
            if isinstance(sample_weight, (list, tuple)):
                sample_weight = np.concatenate([np.asarray(p) for p in sample_weight])
        try:
            super().fit(X, y, groups, sample_weight, behavior_names, feature_provenance)
        finally:
            self._fit_text_model = None
        return self

    def _load_text(self, given: nn.Module | None = None) -> nn.Module:
        provenance = getattr(self, "feature_provenance_", None) or {}
        source = given if given is not None else (self.text_model or provenance.get("model_name"))
        if source is None:
            raise ProbeError("a prompt probe needs its video-text model: pass text_model=NAME or "
                             "FOLDER, or features with provenance (from a store)")
        try:
            return resolve_text_model(source, provenance.get("weights_sha256"))
        except ProbeError as exc:
            if given is not None or self.text_model:
                raise
            raise ProbeError(
                f"{exc} (the model was looked up by the name the features' provenance records, "
                f"{source!r}; when the features were extracted with a weights folder, pass it: "
                "text_model=FOLDER, --text-model FOLDER)") from exc

    def _attach(self, module: _PromptModule, names: Sequence[str],
                model: nn.Module | None = None) -> None:
        model = self._load_text(model)
        front, back = self._context_counts()
        room = int(getattr(model.config, "text_max_length", 64)) - front - back
        ids = behavior_token_ids(model, [str(n) for n in names], max_tokens=room)
        module.attach_text(model.text_encoder, ids)

    def _training_units(self, X: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                        groups: np.ndarray | None) -> TrainingUnits:
        if self.pooling == "mean":
            unit_groups = np.arange(len(X)) if groups is None else np.asarray(groups)
            return TrainingUnits(torch.from_numpy(self._with_valid(X)),
                                 torch.from_numpy(targets), torch.from_numpy(weights),
                                 unit_groups)
        units, rows_of = self._pack(X, groups)
        width = int(self.window)
        unit_targets = np.zeros((len(units), width) + targets.shape[1:], targets.dtype)
        unit_weights = np.zeros((len(units), width) + weights.shape[1:], np.float32)
        unit_groups = np.empty(len(units), dtype=np.asarray(groups).dtype)
        # Overlapping windows see a frame twice; halve its weight there so each frame counts once.
        coverage = np.zeros(len(X), np.float32)
        for rows in rows_of:
            coverage[rows] += 1
        for u, rows in enumerate(rows_of):
            unit_targets[u, : len(rows)] = targets[rows]
            w = weights[rows]
            unit_weights[u, : len(rows)] = w / coverage[rows].reshape((-1,) + (1,) * (w.ndim - 1))
            unit_groups[u] = groups[rows[0]]
        return TrainingUnits(torch.from_numpy(units), torch.from_numpy(unit_targets),
                             torch.from_numpy(unit_weights), unit_groups)

    def _train(self, module: nn.Module, units: TrainingUnits, train_idx: np.ndarray,
               val_idx: np.ndarray, generator: torch.Generator) -> None:
        module.multilabel = bool(self.multilabel_)
        self._attach(module, self.classes_.tolist(), self._fit_text_model)
        try:
            super()._train(module, units, train_idx, val_idx, generator)
            with torch.no_grad():
                module.class_embeddings.copy_(module.class_vectors())
        finally:
            module.detach_text()

    def _train_lbfgs(self, module: nn.Module, units: TrainingUnits,
                     train_idx: np.ndarray) -> None:  # pragma: no cover - adam only
        raise ProbeError("PromptProbe trains with Adam only")

    # ------------------------------------------------------------------ prediction
    def _predict_logits(self, X: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        n_out = int(self.module_.class_vectors().shape[0])
        if self.pooling == "mean":
            with torch.no_grad():
                return self.module_(torch.from_numpy(self._with_valid(X))).float().numpy()
        if groups is None:
            groups = np.zeros(len(X), np.int64)
        units, rows_of = self._pack(X, groups)
        sums = np.zeros((len(X), n_out), np.float64)
        counts = np.zeros(len(X), np.float64)
        with torch.no_grad():
            for start in range(0, len(units), 256):
                logits = self.module_(torch.from_numpy(units[start:start + 256])).numpy()
                for u, rows in enumerate(rows_of[start:start + 256]):
                    sums[rows] += logits[u, : len(rows)]
                    counts[rows] += 1
        return (sums / counts[:, None]).astype(np.float32)

    def predict_behaviors(self, X: Any, behaviors: Sequence[str], groups: Any = None,
                          text_model: str | Path | nn.Module | None = None) -> np.ndarray:
        """Probabilities of behaviors named now, trained on or not (the prompts are shared).

        Parameters
        ----------
        X, groups
            As for :meth:`predict_proba`.
        behaviors : sequence of str
            Behavior names; those in ``classes_`` use their saved class vectors unchanged.
        text_model : str, Path or nn.Module, optional
            The video-text model for new names (default: the ``text_model`` parameter, else
            the model named in the features' provenance; its weights must be those that made
            the features).

        Returns
        -------
        np.ndarray
            ``(N, len(behaviors))`` float: multi-label probes a sigmoid per behavior,
            multi-class probes a softmax over ``behaviors``.

        Raises
        ------
        ProbeError
            No usable text model for new names, or names the tokenizer cannot encode.
        """
        check_is_fitted(self, "module_")
        names = [str(b) for b in behaviors]
        if not names:
            raise ProbeError("name at least one behavior to score")
        X, groups = self._check_X(X, groups, reset=False)
        module: _PromptModule = self.module_
        known = {str(c): k for k, c in enumerate(self.classes_.tolist())}
        saved = module.class_embeddings.clone()
        new = [n for n in names if n not in known]
        vectors = torch.zeros(len(names), saved.shape[1])
        if new:
            self._attach(module, new, text_model if isinstance(text_model, nn.Module) else (
                resolve_text_model(text_model) if text_model is not None else None))
            with torch.no_grad():
                fresh = module.class_vectors()
            module.detach_text()
            for name, vector in zip(new, fresh, strict=True):
                vectors[names.index(name)] = vector
        for i, name in enumerate(names):
            if name in known:
                vectors[i] = saved[known[name]]
        module.class_embeddings = vectors
        try:
            module.eval()
            logits = torch.from_numpy(np.ascontiguousarray(self._predict_logits(X, groups)))
        finally:
            module.class_embeddings = saved
        if self.multilabel_:
            return torch.sigmoid(logits.double()).numpy()
        return torch.softmax(logits.double(), dim=-1).numpy()

    def behavior_thresholds(self, behaviors: Sequence[str]) -> np.ndarray:
        """Thresholds for :meth:`predict_behaviors`: a trained behavior's own, else the median
        of the trained ones (0.5 for a multi-class probe)."""
        check_is_fitted(self, "module_")
        if not self.multilabel_ or self.thresholds_ is None:
            return np.full(len(behaviors), 0.5)
        trained = np.asarray(self.thresholds_, float)
        known = {str(c): k for k, c in enumerate(self.classes_.tolist())}
        fallback = float(np.median(trained)) if len(trained) else 0.5
        return np.array([trained[known[str(b)]] if str(b) in known else fallback
                         for b in behaviors])


def check_frame_embeddings(provenance: dict[str, Any]) -> None:
    """Raise :class:`ProbeError` unless features are a video-text model's per-frame embeddings
    (token mode ``frame_emb``); the message says how to extract them."""
    window = dict(provenance.get("window") or {})
    mode = provenance.get("token_mode") or window.get("tokens")
    if mode is not None and mode != "frame_emb":
        raise ProbeError(
            f"features of model {provenance.get('model_name')!r} were extracted with token mode "
            f"{mode!r}; a prompt probe needs the model's per-frame embeddings: extract them with "
            "`prism-science extract VIDEOS --out STORE --model default --tokens frame_emb` (any "
            "video-text model with a tokenizer) and train on that feature set (--features "
            "MODEL/frame_emb)"
        )
