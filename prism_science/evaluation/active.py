"""Active learning: which frames (or bouts) to label next.

Frames are ranked by the current probe's *uncertainty* (entropy or margin of its probabilities)
and spread out by *diversity* in feature space (k-center greedy over the most uncertain
candidates, measured against the frames already labeled), so that one labeling session covers
both the decision boundary and the regions of feature space no label has reached (often the
rare behaviors). :func:`simulate_active_learning` replays a labeling session on data with known
labels, to compare strategies.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from prism_science.errors import PrismError
from prism_science.evaluation.metrics import mean_average_precision
from prism_science.probes.postprocess import group_runs

logger = logging.getLogger(__name__)

UNCERTAINTY_METHODS = ("entropy", "margin")


def uncertainty(proba: np.ndarray, method: str = "entropy", multilabel: bool | None = None
                ) -> np.ndarray:
    """Per-frame uncertainty of probabilities (higher = less sure).

    Parameters
    ----------
    proba : np.ndarray
        ``(N, K)`` probabilities: softmax rows (multi-class) or independent sigmoids
        (multi-label).
    method : str
        ``"entropy"``: Shannon entropy (multi-class), or the sum of each behavior's binary
        entropy (multi-label). ``"margin"``: 1 - (top1 - top2) (multi-class), or the largest
        ``1 - |2p - 1|`` over behaviors (multi-label).
    multilabel : bool, optional
        Default: multi-label unless every row sums to 1.

    Returns
    -------
    np.ndarray
        ``(N,)`` float64.
    """
    proba = np.nan_to_num(np.asarray(proba, np.float64), nan=0.0)
    proba = proba.reshape(len(proba), -1)
    if method not in UNCERTAINTY_METHODS:
        raise PrismError(f"uncertainty method must be one of {UNCERTAINTY_METHODS}, "
                         f"found {method!r}.")
    if multilabel is None:
        multilabel = proba.shape[1] == 1 or not np.allclose(proba.sum(1), 1.0, atol=1e-4)
    p = np.clip(proba, 1e-12, 1 - 1e-12)
    if multilabel:
        if method == "entropy":
            return -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum(1)
        return (1 - np.abs(2 * proba - 1)).max(1)
    if method == "entropy":
        return -(p * np.log(p)).sum(1)
    top = np.sort(proba, axis=1)[:, ::-1]
    second = top[:, 1] if proba.shape[1] > 1 else 1 - top[:, 0]
    return 1 - (top[:, 0] - second)


def k_center_greedy(
    features: np.ndarray,
    n: int,
    candidates: np.ndarray | None = None,
    selected: np.ndarray | None = None,
    max_reference: int = 5000,
    random_state: int | None = 0,
) -> np.ndarray:
    """Pick ``n`` candidates, each the farthest (Euclidean) from everything picked or selected.

    Parameters
    ----------
    features : np.ndarray
        ``(N, D)`` float features (other shapes are flattened per row).
    n : int
        Number to pick.
    candidates : np.ndarray, optional
        Row indices allowed (default all).
    selected : np.ndarray, optional
        Rows already labeled (the initial centers); subsampled to ``max_reference``.
    max_reference : int
        Cap on the initial centers used for distances (speed).
    random_state : int, optional
        Seeds the subsampling and the first pick when nothing is selected.

    Returns
    -------
    np.ndarray
        ``(min(n, len(candidates)),)`` int64 row indices in pick order.
    """
    feats = np.asarray(features, np.float32).reshape(len(features), -1)
    rng = np.random.default_rng(random_state)
    cand = np.arange(len(feats)) if candidates is None else np.asarray(candidates, np.int64)
    n = min(int(n), len(cand))
    if n <= 0:
        return np.zeros(0, np.int64)
    cand_feats = feats[cand]
    min_dist = np.full(len(cand), np.inf, np.float64)
    if selected is not None and len(selected):
        ref = np.asarray(selected, np.int64)
        if len(ref) > max_reference:
            ref = rng.choice(ref, max_reference, replace=False)
        for start in range(0, len(ref), 1024):
            block = feats[ref[start : start + 1024]]
            d = _sq_dist(cand_feats, block).min(1)
            min_dist = np.minimum(min_dist, d)
    picks = []
    for _ in range(n):
        nothing_yet = np.isinf(min_dist).all()
        i = int(rng.integers(len(cand))) if nothing_yet else int(np.argmax(min_dist))
        picks.append(i)
        min_dist = np.minimum(min_dist, _sq_dist(cand_feats, cand_feats[i : i + 1])[:, 0])
        min_dist[i] = -1.0
    return cand[np.asarray(picks, np.int64)]


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(len(a), len(b))`` squared Euclidean distances."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def suggest_frames(
    proba: np.ndarray,
    n: int,
    features: np.ndarray | None = None,
    labeled: np.ndarray | None = None,
    method: str = "entropy",
    diversity: bool = True,
    pool_factor: int = 10,
    random_state: int | None = 0,
) -> np.ndarray:
    """Frames to label next, most useful first.

    Parameters
    ----------
    proba : np.ndarray
        ``(N, K)`` current probabilities of every frame.
    n : int
        How many frames to suggest.
    features : np.ndarray, optional
        ``(N, ...)`` features for the diversity step (skipped when None).
    labeled : np.ndarray, optional
        ``(N,)`` bool, or ``(N, K)`` int label matrix (a frame counts as labeled when any of its
        cells is >= 0); labeled frames are never suggested and anchor the diversity step.
    method : str
        Uncertainty measure (:func:`uncertainty`).
    diversity : bool
        Choose, among the ``pool_factor * n`` most uncertain frames, a spread-out subset
        (k-center greedy); otherwise take the most uncertain frames in order.
    pool_factor : int
        Size of the uncertain pool relative to ``n``.
    random_state : int, optional

    Returns
    -------
    np.ndarray
        ``(min(n, n_unlabeled),)`` int64 frame (row) indices in suggested order.
    """
    scores = uncertainty(proba, method)
    is_labeled = _labeled_rows(labeled, len(scores))
    unlabeled = np.flatnonzero(~is_labeled)
    if len(unlabeled) == 0 or n <= 0:
        return np.zeros(0, np.int64)
    order = unlabeled[np.argsort(-scores[unlabeled], kind="stable")]
    if not diversity or features is None:
        return order[:n].astype(np.int64)
    pool = order[: max(n, int(pool_factor) * n)]
    return k_center_greedy(features, n, candidates=pool, selected=np.flatnonzero(is_labeled),
                           random_state=random_state)


def suggest_bouts(
    proba: np.ndarray,
    n: int,
    length: int = 30,
    labeled: np.ndarray | None = None,
    groups: np.ndarray | None = None,
    method: str = "entropy",
) -> list[tuple[int, int, float]]:
    """Non-overlapping stretches of ``length`` frames with the highest mean uncertainty.

    Parameters
    ----------
    proba : np.ndarray
        ``(N, K)`` probabilities.
    n : int
        How many stretches.
    length : int
        Frames per stretch (shorter at the end of a video).
    labeled : np.ndarray, optional
        As in :func:`suggest_frames`; labeled frames count 0 towards a stretch's score.
    groups : np.ndarray, optional
        ``(N,)`` video id per row (rows of a video contiguous); stretches stay inside a video.
    method : str
        Uncertainty measure.

    Returns
    -------
    list of (start, end, score)
        Row indices, ``end`` inclusive, best first.
    """
    scores = uncertainty(proba, method)
    scores = np.where(_labeled_rows(labeled, len(scores)), 0.0, scores)
    length = max(1, int(length))
    chosen: list[tuple[int, int, float]] = []
    taken = np.zeros(len(scores), bool)
    means, starts, ends = [], [], []
    for lo, hi in group_runs(groups, len(scores)):
        csum = np.r_[0.0, np.cumsum(scores[lo:hi])]
        start = np.arange(hi - lo)
        stop = np.minimum(start + length, hi - lo)
        means.append((csum[stop] - csum[start]) / length)
        starts.append(lo + start)
        ends.append(lo + stop - 1)
    means_all, starts_all, ends_all = (np.concatenate(a) for a in (means, starts, ends))
    order = np.argsort(-means_all, kind="stable")
    candidates = zip(means_all[order], starts_all[order], ends_all[order], strict=True)
    for score, start, end in candidates:
        if len(chosen) >= n:
            break
        if score <= 0 or taken[start : end + 1].any():
            continue
        taken[start : end + 1] = True
        chosen.append((int(start), int(end), float(score)))
    return chosen


def _labeled_rows(labeled: np.ndarray | None, n_rows: int) -> np.ndarray:
    if labeled is None:
        return np.zeros(n_rows, bool)
    labeled = np.asarray(labeled)
    if labeled.dtype != bool:
        labeled = (labeled >= 0) if labeled.ndim == 1 else (labeled >= 0).any(1)
    elif labeled.ndim == 2:
        labeled = labeled.any(1)
    if labeled.shape != (n_rows,):
        raise PrismError(f"labeled has shape {labeled.shape}, expected ({n_rows},) or "
                         f"({n_rows}, K) like the probabilities.")
    return labeled


def simulate_active_learning(
    make_probe: Callable[[], Any],
    X: np.ndarray,
    y: np.ndarray,
    X_eval: np.ndarray,
    y_eval: np.ndarray,
    strategy: str = "active",
    initial: int = 20,
    batch: int = 20,
    max_labels: int = 400,
    target_map: float | None = None,
    random_state: int = 0,
    **suggest_kwargs: Any,
) -> list[tuple[int, float]]:
    """Replay a labeling session: label a batch, retrain, evaluate, repeat.

    Parameters
    ----------
    make_probe : callable
        Returns a new unfitted probe.
    X : np.ndarray
        ``(N, D)`` features of the pool to label from.
    y : np.ndarray
        ``(N, K)`` their true labels (0/1; revealed as frames are "labeled").
    X_eval, y_eval : np.ndarray
        Held-out features and labels for mAP.
    strategy : str
        ``"active"`` (:func:`suggest_frames`) or ``"random"``.
    initial : int
        Random frames labeled first.
    batch : int
        Frames labeled per round.
    max_labels : int
        Stop after this many labels.
    target_map : float, optional
        Stop once the held-out mAP reaches it.
    random_state : int
    **suggest_kwargs
        Passed to :func:`suggest_frames`.

    Returns
    -------
    list of (n_labels, mAP)
        The learning curve.
    """
    if strategy not in ("active", "random"):
        raise PrismError(f"strategy must be 'active' or 'random', found {strategy!r}.")
    rng = np.random.default_rng(random_state)
    y = np.asarray(y)
    labeled = np.zeros(len(X), bool)
    labeled[rng.choice(len(X), min(initial, len(X)), replace=False)] = True
    curve: list[tuple[int, float]] = []
    while True:
        with warnings.catch_warnings():  # early rounds often lack a behavior's positives
            warnings.simplefilter("ignore", UserWarning)
            probe = make_probe().fit(X[labeled], y[labeled])
        score = mean_average_precision(y_eval, probe.predict_proba(X_eval))
        curve.append((int(labeled.sum()), float(score)))
        logger.debug("%s: %d labels -> mAP %.3f", strategy, labeled.sum(), score)
        done = target_map is not None and score >= target_map
        if done or labeled.sum() >= min(max_labels, len(X)):
            return curve
        n_new = int(min(batch, max_labels - labeled.sum(), (~labeled).sum()))
        if strategy == "active":
            picks = suggest_frames(probe.predict_proba(X), n_new, features=X, labeled=labeled,
                                   random_state=int(rng.integers(2**31)), **suggest_kwargs)
        else:
            picks = rng.choice(np.flatnonzero(~labeled), n_new, replace=False)
        labeled[picks] = True


def labels_to_reach(curve: Sequence[tuple[int, float]], target_map: float) -> int | None:
    """Labels at the first point of a learning curve with mAP >= ``target_map`` (None if never)."""
    for n_labels, score in curve:
        if score >= target_map:
            return n_labels
    return None
