"""Score behaviors named in words on stored frame embeddings, written like a trained probe's.

Two ways to turn names into per-frame scores, both on features extracted with ``--tokens
frame_emb`` (a video-text model's per-frame contrastive embeddings):

- **zero-shot** (no label at all): every name is put in hand-made templates (``"a video of
  {}."``; several templates are a prompt ensemble: their text embeddings are averaged), encoded
  by the model's frozen text tower, and compared with every frame by cosine similarity; a frame's
  scores are the softmax of similarity / ``temperature`` over the named behaviors (and any
  ``background`` descriptions, which take part in the softmax but are not written). A behavior
  is on where its score reaches ``threshold``.
- **a trained prompt probe** (:class:`~prism_science.probes.PromptProbe`): its learned prompts
  score any names, those it was trained on and new ones
  (:meth:`~prism_science.probes.PromptProbe.predict_behaviors`), with its thresholds (the median
  of its tuned ones for new names) and bout post-processing.

Either way every video is checked first (frame-embedding features, complete, of the model whose
text tower is used), then each video's ``predictions/<name>/{scores,binary}`` and label set
``predicted/<name>`` are written by :func:`~prism_science.pipeline.write_predictions`, the
layout of ``prism-science probe predict``: evaluation, review and the plugin read them alike.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from prism_science.errors import ProbeError
from prism_science.pipeline.predict import VideoPrediction, write_predictions
from prism_science.probes.base import summarize_provenance
from prism_science.probes.postprocess import postprocess_settings
from prism_science.probes.prompt import (
    DEFAULT_TEMPLATES,
    PromptProbe,
    check_frame_embeddings,
    template_class_vectors,
)
from prism_science.search import check_text_model, load_text_model

__all__ = [
    "DEFAULT_TEMPLATES",
    "DEFAULT_ZERO_SHOT_NAME",
    "FRAME_EMB",
    "frame_embedding_keys",
    "parse_behaviors",
    "zero_shot_scores",
    "zero_shot_to_store",
]

logger = logging.getLogger(__name__)

FRAME_EMB = "frame_emb"
"""The token mode (and feature-key suffix) of per-frame embeddings."""
DEFAULT_ZERO_SHOT_NAME = "zero-shot"
"""Prediction set name of zero-shot scores when none is given."""
DEFAULT_TEMPERATURE = 0.07
"""Softmax temperature of zero-shot scores (the LvT training's initial temperature)."""


def parse_behaviors(behaviors: str | Sequence[str]) -> list[str]:
    """Behavior names from ``"chasing, grooming"`` or a list: stripped, in order, no repeats.

    Raises
    ------
    ProbeError
        No name, or the same name twice.
    """
    names = behaviors.split(",") if isinstance(behaviors, str) else list(behaviors)
    names = [str(n).strip() for n in names]
    names = [n for n in names if n]
    if not names:
        raise ProbeError(f"no behavior named in {behaviors!r}: give comma-separated names, e.g. "
                         "--behaviors 'chasing,grooming'")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ProbeError(f"behaviors {repeated} are named twice; name each once")
    return names


def frame_embedding_keys(store: Any, video_ids: Sequence[str],
                         feature_key: str | None = None) -> dict[str, str]:
    """Each video's complete frame-embedding feature set, checked before anything is written.

    Parameters
    ----------
    store : FeatureStore
    video_ids : sequence of str
    feature_key : str, optional
        Default: the video's only ``<model>/frame_emb`` set.

    Returns
    -------
    dict
        video id -> feature key.

    Raises
    ------
    ProbeError
        Listing every video without complete frame embeddings and how to extract them.
    """
    how = (f"extract them with `prism-science extract VIDEOS --out {store.path} --model default "
           f"--tokens {FRAME_EMB}` (any video-text model with a tokenizer)")
    keys, problems = {}, []
    for video_id in video_ids:
        if not store.has_video(video_id):
            problems.append(f"video {video_id!r} is not in the store")
            continue
        available = store.feature_keys(video_id)
        if feature_key is not None:
            candidates = [feature_key] if feature_key in available else []
        else:
            candidates = [k for k in available if k.endswith(f"/{FRAME_EMB}")]
        if not candidates:
            problems.append(f"video {video_id!r} has no frame-embedding features "
                            f"({feature_key or '<model>/' + FRAME_EMB}; it has "
                            f"{available or 'none'})")
            continue
        if len(candidates) > 1:
            problems.append(f"video {video_id!r} has several frame-embedding feature sets "
                            f"{candidates}; choose one with --features")
            continue
        key = candidates[0]
        provenance = store.feature_provenance(video_id, key)
        try:
            check_frame_embeddings(provenance)
        except ProbeError as exc:
            problems.append(f"video {video_id!r}: {exc}")
            continue
        status = store.feature_status(video_id, key)
        if status != "complete":
            problems.append(f"features {key!r} of video {video_id!r} are {status} (rerun "
                            "`prism-science extract` to complete them)")
            continue
        keys[video_id] = key
    if problems:
        raise ProbeError(f"{store.path}: cannot score {len(problems)} of {len(video_ids)} "
                         "video(s); nothing was written:\n  " + "\n  ".join(problems)
                         + f"\nTo score behaviors by name, {how}.")
    return keys


def _rows(values: np.ndarray) -> np.ndarray:
    """Stored frame embeddings (T, D) -> L2-normalised float32 rows (averaging overlapping
    clips at extraction leaves them a little shorter than 1)."""
    values = np.asarray(values, np.float32).reshape(len(values), -1)
    return values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)


def zero_shot_scores(frames: np.ndarray, class_vectors: np.ndarray, n_behaviors: int,
                     temperature: float = DEFAULT_TEMPERATURE) -> np.ndarray:
    """Per-frame zero-shot scores: softmax of cosine / temperature over the class vectors.

    Parameters
    ----------
    frames : np.ndarray
        (T, D) frame embeddings.
    class_vectors : np.ndarray
        (K + B, D) L2-normalised: the behaviors, then background descriptions.
    n_behaviors : int
        K: the first K columns are returned.
    temperature : float

    Returns
    -------
    np.ndarray
        (T, K) float32 in [0, 1].
    """
    if temperature <= 0:
        raise ProbeError(f"temperature must be > 0, found {temperature}")
    logits = _rows(frames) @ np.asarray(class_vectors, np.float32).T / float(temperature)
    logits -= logits.max(1, keepdims=True)
    proba = np.exp(logits)
    proba /= proba.sum(1, keepdims=True)
    return proba[:, :n_behaviors].astype(np.float32)


def _text_model(model: str | os.PathLike[str] | nn.Module | None, provenance: dict[str, Any],
                device: str) -> nn.Module:
    """The video-text model that made the features, loaded (refused before loading when it
    has no text tower or tokenizer)."""
    source = model if model is not None else provenance.get("model_name")
    check_text_model(source)  # SearchError naming the model, before any weights are read
    loaded = load_text_model(source, device)
    expected = provenance.get("weights_sha256")
    if expected and getattr(loaded, "weights_sha256", None) != expected:
        raise ProbeError(
            f"model {loaded.name!r} has weights sha256 {str(loaded.weights_sha256)[:12]}, the "
            f"frame embeddings of the store were made by {provenance.get('model_name')!r} "
            f"(sha {str(expected)[:12]}): text and frame embeddings must come from one model; "
            "pass its weights folder with --model"
        )
    return loaded


def zero_shot_to_store(
    store: Any,
    behaviors: str | Sequence[str],
    *,
    name: str | None = None,
    model: str | os.PathLike[str] | nn.Module | None = None,
    templates: Sequence[str] = DEFAULT_TEMPLATES,
    background: Sequence[str] = (),
    probe: PromptProbe | None = None,
    video_ids: Sequence[str] | None = None,
    feature_key: str | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    threshold: float = 0.5,
    min_bout: int | None = None,
    max_gap: int | None = None,
    device: str = "cpu",
    save_label_table: bool = True,
) -> dict[str, VideoPrediction]:
    """Score named behaviors on every frame and write them like a trained probe's predictions.

    Parameters
    ----------
    store : FeatureStore
        Opened writable, with frame-embedding features (``--tokens frame_emb``).
    behaviors : str or sequence of str
        ``"chasing,grooming"`` or a list of names.
    name : str, optional
        Prediction set name (default ``"zero-shot"``).
    model : str, path or nn.Module, optional
        The video-text model (with tokenizer) that extracted the features; default the model
        named in their provenance (works for ``default`` and installed registered models).
    templates : sequence of str
        Zero-shot prompt ensemble, each with one ``{}``.
    background : sequence of str
        Descriptions of "none of these" (e.g. ``"a mouse rests."``) that join the softmax and
        are not written; needed when a single behavior is named.
    probe : PromptProbe, optional
        A trained prompt probe: its learned prompts replace the templates.
    video_ids : sequence of str, optional
        Default every video of the store.
    feature_key : str, optional
        Default each video's only ``<model>/frame_emb`` feature set.
    temperature : float
        Zero-shot softmax temperature.
    threshold : float
        Zero-shot: score at which a behavior is on.
    min_bout, max_gap : int, optional
        Bout post-processing (default: the probe's, else 1 and 0).
    device : str
        Torch device of the text tower.
    save_label_table : bool
        Also write label set ``predicted/<name>``.

    Returns
    -------
    dict
        video id -> :class:`~prism_science.pipeline.VideoPrediction`.

    Raises
    ------
    SearchError
        The model has no text tower or tokenizer (before any weights are read).
    ProbeError
        Videos without complete frame embeddings (listed, with how to extract them), names the
        tokenizer cannot encode, a single behavior without background, a model other than the
        features'.
    """
    names = parse_behaviors(behaviors)
    background = [str(b).strip() for b in background if str(b).strip()]
    if probe is None and len(names) + len(background) < 2:
        raise ProbeError(
            f"zero-shot scores are a softmax over the named behaviors, and {names} is one: "
            "name at least two behaviors, or describe what else happens with --background "
            "(e.g. --background 'a mouse rests.')")
    if probe is not None and not isinstance(probe, PromptProbe):
        raise ProbeError(f"a {type(probe).__name__} cannot score behaviors by name; train a "
                         "prompt probe (`prism-science probe train --kind prompt`)")
    ids = list(video_ids) if video_ids is not None else store.video_ids()
    if not ids:
        raise ProbeError(f"{store.path}: the store has no video; run `prism-science extract`.")
    keys = frame_embedding_keys(store, ids, feature_key)
    provenance = dict(store.feature_provenance(ids[0], keys[ids[0]]))
    for video_id in ids:
        if probe is not None:
            probe.check_features(store.feature_provenance(video_id, keys[video_id]),
                                 f"features {keys[video_id]!r} of video {video_id!r}")
    if probe is None:
        text_model = _text_model(model, provenance, device)
        vectors = template_class_vectors(text_model, names + background, templates)
        thresholds = np.full(len(names), float(threshold))
        post = postprocess_settings({"min_bout": 1 if min_bout is None else int(min_bout),
                                     "max_gap": 0 if max_gap is None else int(max_gap)})
        attrs: dict[str, Any] = {"probe_kind": "zero-shot", "templates": list(templates),
                                 "background": background, "temperature": float(temperature),
                                 "text_model": str(text_model.name)}
    else:
        text_model = _text_model(model, provenance, device) if model is not None else None
        thresholds = probe.behavior_thresholds(names)
        own = postprocess_settings(getattr(probe, "postprocess_", None))
        post = postprocess_settings({
            "min_bout": own["min_bout"] if min_bout is None else int(min_bout),
            "max_gap": own["max_gap"] if max_gap is None else int(max_gap)})
        attrs = {"probe_kind": type(probe).__name__, "trained_behaviors":
                 [str(c) for c in probe.classes_.tolist()]}
    name = name or DEFAULT_ZERO_SHOT_NAME
    results = {}
    for video_id in ids:
        key = keys[video_id]
        values = store.read_features(video_id, key).values
        if probe is None:
            scores = zero_shot_scores(values, vectors, len(names), temperature)
        else:
            scores = probe.predict_behaviors(_rows(values), names,
                                             groups=np.zeros(len(values), np.int64),
                                             text_model=text_model).astype(np.float32)
        meta = {**attrs, "feature_key": key, "provenance": summarize_provenance(
            store.feature_provenance(video_id, key), key)}
        binary = write_predictions(store, video_id, name, scores, names, thresholds, post,
                                   meta, save_label_table)
        results[video_id] = VideoPrediction(scores, binary, names,
                                             [float(t) for t in thresholds], post, key)
        logger.info("video %s: %d frames scored for %s into predictions/%s", video_id,
                    len(scores), names, name)
    return results

