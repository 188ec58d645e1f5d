"""Stored features + label tables -> the rows a probe trains on.

Labels come either as the name of a label set saved in the store (``labels/<name>``, what the
CLI and the demo use) or as one :class:`~prism_science.labels.LabelTable` per video (what the
plugin passes: ``session.to_table(...)``); both go through :func:`load_store_data`.

Before any feature value is read, :func:`check_feature_sets` checks every video: its features
exist, are complete, and were made by the same model, weights and window as the other videos'
(:data:`prism_science.store.IDENTITY_FIELDS`), so one bad video stops the run with a message
that names it instead of training on a mixture.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from prism_science.errors import ProbeError
from prism_science.labels import LabelTable
from prism_science.probes.attention import AttentionProbe
from prism_science.probes.base import BaseProbe
from prism_science.probes.io import PROBE_KINDS
from prism_science.store import IDENTITY_FIELDS

logger = logging.getLogger(__name__)

LabelInput = str | Mapping[str, LabelTable]
"""A label-set name in the store, or video id -> LabelTable."""


@dataclass
class StoreData:
    """Features and labels of several videos, stacked along frames.

    Attributes
    ----------
    X : np.ndarray
        ``(N, *feature_shape)`` float32, videos one after another in time order; token grids
        are already averaged for every probe but the attention probe (see :func:`pool_features`).
    y : np.ndarray or None
        ``(N, K)`` int8 in {-1, 0, 1}, or None when no labels were asked for.
    groups : np.ndarray
        ``(N,)`` int64 index into ``video_ids`` of each row.
    frames : np.ndarray
        ``(N,)`` int64 frame index of each row within its video.
    video_ids : list of str
    behaviors : list of str
        Column names of ``y``.
    feature_key : str
    provenance : dict
        The features' provenance as stored (the same for every video, see
        :func:`check_feature_sets`).
    fps : float or None
        Frame rate of the first video.
    labels : str
        Where the labels came from, for messages (``"label set 'manual'"``).
    """

    X: np.ndarray
    y: np.ndarray | None
    groups: np.ndarray
    frames: np.ndarray
    video_ids: list[str]
    behaviors: list[str]
    feature_key: str
    provenance: dict[str, Any]
    fps: float | None = None
    labels: str = ""

    def rows(self, video_id: str) -> slice:
        """Rows of one video (contiguous)."""
        index = self.video_ids.index(video_id)
        rows = np.flatnonzero(self.groups == index)
        return slice(int(rows[0]), int(rows[-1]) + 1) if len(rows) else slice(0, 0)


def probe_kind(probe_or_kind: BaseProbe | str) -> str:
    """The kind name (``linear``, ``mlp``, ``attention``, ``temporal``) of a probe or kind."""
    if isinstance(probe_or_kind, str):
        if probe_or_kind not in PROBE_KINDS:
            raise ProbeError(f"unknown probe kind {probe_or_kind!r}; expected one of "
                             f"{sorted(PROBE_KINDS)}.")
        return probe_or_kind
    for kind, cls in PROBE_KINDS.items():
        if type(probe_or_kind) is cls:
            return kind
    if isinstance(probe_or_kind, AttentionProbe):
        return "attention"
    raise ProbeError(f"{type(probe_or_kind).__name__} is not a probe of kind "
                     f"{sorted(PROBE_KINDS)}.")


def pool_features(values: np.ndarray, probe_or_kind: BaseProbe | str) -> np.ndarray:
    """Features as the probe takes them: token axes averaged for every probe but attention.

    Parameters
    ----------
    values : np.ndarray
        ``(T, D)``, ``(T, g, g, D)`` or ``(T, h, w, D)`` float32 stored features.
    probe_or_kind : BaseProbe or str
        The probe (or its kind); the attention probe pools tokens itself.

    Returns
    -------
    np.ndarray
        ``(T, D)`` float32, or ``values`` unchanged for the attention probe.
    """
    if values.ndim > 2 and probe_kind(probe_or_kind) not in ("attention", "map"):
        return values.reshape(len(values), -1, values.shape[-1]).mean(1)
    return values


def resolve_feature_key(store: Any, video_id: str, feature_key: str | None) -> str:
    """The feature set to use for a video: ``feature_key`` if it has it, else its only one.

    Per-subject feature sets (``<model>/<tokens>@<subject>``) do not count when the video has
    exactly one whole-frame set.

    Raises
    ------
    ProbeError
        The video lacks ``feature_key``, or has several feature sets and none was chosen.
    """
    keys = store.feature_keys(video_id)
    if feature_key is not None:
        if feature_key not in keys:
            raise ProbeError(
                f"{store.path}: video {video_id!r} has no features {feature_key!r} (has "
                f"{keys or 'none'}); extract them with `prism-science extract` or pick --features."
            )
        return feature_key
    whole = [k for k in keys if "@" not in k]  # "<model>/<tokens>@<subject>": per subject
    if len(whole) == 1:
        return whole[0]
    if len(keys) != 1:
        per_subject = " (per-subject features train with --per-subject)" if len(whole) < \
            len(keys) else ""
        raise ProbeError(
            f"{store.path}: video {video_id!r} has {len(keys)} feature sets ({keys or 'none'}); "
            f"choose one with --features KEY{per_subject}."
        )
    return keys[0]


def provenance_differences(first: Mapping[str, Any], other: Mapping[str, Any]) -> list[str]:
    """The identity fields on which two feature provenances differ, as ``"field: a vs b"``.

    Window parameters are compared one by one (``"window.hop: 8 vs 16"``).
    """
    out = []
    for name in IDENTITY_FIELDS:
        a, b = first.get(name), other.get(name)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    out.append(f"{name}.{key}: {a.get(key)!r} vs {b.get(key)!r}")
        elif a != b:
            if name == "weights_sha256":
                a, b = str(a)[:12], str(b)[:12]
            out.append(f"{name}: {a!r} vs {b!r}")
    return out


def check_feature_sets(
    store: Any, video_ids: Sequence[str], feature_key: str | None = None
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Check, before reading any value, that the videos' features can train one probe.

    Every video must have the feature set (``feature_key``, or its only one, the same for all),
    complete, and made with the same model, weights and window parameters
    (:data:`prism_science.store.IDENTITY_FIELDS`) as the first video's.

    Returns
    -------
    (str, dict)
        The feature key and video id -> stored provenance.

    Raises
    ------
    ProbeError
        Listing every video that fails, and for mixed parameters the two videos and the fields
        that differ.
    """
    problems: list[str] = []
    key = feature_key
    provenances: dict[str, dict[str, Any]] = {}
    first: str | None = None
    for video_id in video_ids:
        if not store.has_video(video_id):
            problems.append(f"video {video_id!r} is not in the store")
            continue
        try:
            video_key = resolve_feature_key(store, video_id, key)
        except ProbeError as exc:
            problems.append(str(exc).removeprefix(f"{store.path}: "))
            continue
        if key is None:
            key = video_key
        status = store.feature_status(video_id, video_key)
        if status != "complete":
            problems.append(f"features {video_key!r} of video {video_id!r} are {status} (rerun "
                            "`prism-science extract` to complete them)")
            continue
        provenance = dict(store.feature_provenance(video_id, video_key))
        if first is None:
            first = video_id
        else:
            differences = provenance_differences(provenances[first], provenance)
            if differences:
                problems.append(
                    f"videos {first!r} and {video_id!r} have features {video_key!r} made with "
                    f"different parameters ({'; '.join(differences)}); a probe trains on "
                    "features of one model, weights and window: re-extract one of them with the "
                    "other's settings, or leave one out (--video-id)"
                )
                continue
        provenances[video_id] = provenance
    if problems:
        raise ProbeError(f"{store.path}: cannot train on these features:\n  "
                         + "\n  ".join(problems))
    if key is None:
        raise ProbeError(f"{store.path}: no video to train on; run `prism-science extract`.")
    return key, provenances


def _tables_from_store(store: Any, label_name: str, ids: list[str],
                       explicit: bool) -> dict[str, LabelTable]:
    from prism_science.labels import load_labels
    from prism_science.labels.store_io import list_labels

    tables = {}
    for video_id in ids:
        if label_name in list_labels(store, video_id):
            tables[video_id] = load_labels(store, video_id, label_name)
        elif explicit:
            raise ProbeError(
                f"{store.path}: video {video_id!r} has no label set {label_name!r}; import "
                "labels with `prism-science labels import` or leave the video out."
            )
    if not tables:
        raise ProbeError(
            f"{store.path}: no video has the label set {label_name!r}; import labels first "
            "(`prism-science labels import FILE --store STORE --name NAME`)."
        )
    return tables


def default_behaviors(tables: Mapping[str, LabelTable]) -> list[str]:
    """Every behavior of the tables (declared or with bouts), in order of appearance."""
    seen: dict[str, None] = {}
    for table in tables.values():
        seen.update(dict.fromkeys(str(b) for b in table.behaviors().names))
    return list(seen)


def load_store_data(
    store: Any,
    labels: LabelInput | None,
    feature_key: str | None = None,
    video_ids: Sequence[str] | None = None,
    behaviors: Sequence[str] | None = None,
    pool_for: BaseProbe | str = "attention",
) -> StoreData:
    """Stack the features (and label matrices) of the store's videos.

    Parameters
    ----------
    store : FeatureStore
        Open store (:func:`prism_science.store.open_store`).
    labels : str, mapping of str to LabelTable, or None
        A label set name (read with :func:`prism_science.labels.load_labels`; videos without it
        are skipped unless named in ``video_ids``), or video id -> LabelTable (the plugin's
        sessions, ``session.to_table(...)``). None: features only.
    feature_key : str, optional
        Feature set; default the only one of each video.
    video_ids : sequence of str, optional
        Default every video that has labels (every video of the store when ``labels`` is None).
    behaviors : sequence of str, optional
        Column order of ``y``; default every behavior of the tables, in order of appearance.
    pool_for : BaseProbe or str
        Token features are averaged over tokens unless this is the attention probe (or kind).

    Returns
    -------
    StoreData

    Raises
    ------
    ProbeError
        No labeled video, missing or incomplete features, features made with different
        parameters (see :func:`check_feature_sets`), or labels that do not fit the features.
    """
    from prism_science.labels import to_frame_matrix

    tables: dict[str, LabelTable] = {}
    if isinstance(labels, str):
        ids = list(video_ids) if video_ids is not None else store.video_ids()
        tables = _tables_from_store(store, labels, ids, explicit=video_ids is not None)
        ids = [v for v in ids if v in tables]
        source = f"label set {labels!r}"
    elif labels is not None:
        tables = dict(labels)
        ids = list(video_ids) if video_ids is not None else list(tables)
        missing = [v for v in ids if v not in tables]
        if missing:
            raise ProbeError(f"{store.path}: no label table given for videos {missing}; pass "
                             "one per video or leave them out.")
        if not ids:
            raise ProbeError("no labeled video: label some bouts first.")
        source = "the given label tables"
    else:
        ids = list(video_ids) if video_ids is not None else store.video_ids()
        source = "no labels"
    if not ids:
        raise ProbeError(f"{store.path}: the store has no video; run `prism-science extract`.")
    behaviors = [str(b) for b in (behaviors if behaviors is not None
                                  else default_behaviors(tables))]
    if tables and not behaviors:
        raise ProbeError(f"{store.path}: {source} name no behavior; label some bouts first.")
    key, provenances = check_feature_sets(store, ids, feature_key)
    xs, ys, groups, frames = [], [], [], []
    for index, video_id in enumerate(ids):
        values = pool_features(store.read_features(video_id, key).values, pool_for)
        n_frames = store.video_info(video_id).n_frames
        if len(values) != n_frames:
            raise ProbeError(
                f"{store.path}: features {key!r} of video {video_id!r} have {len(values)} rows, "
                f"the video has {n_frames} frames; re-extract them with `prism-science extract`."
            )
        if video_id in tables:
            table = tables[video_id]
            if table.n_frames is not None and table.n_frames != len(values):
                raise ProbeError(
                    f"{store.path}: the labels of video {video_id!r} ({source}) cover "
                    f"{table.n_frames} frames, its features {key!r} {len(values)}; the labels "
                    "belong to another video or another decoding of it."
                )
            ys.append(to_frame_matrix(table, behaviors, n_frames=len(values)))
        xs.append(values)
        groups.append(np.full(len(values), index, np.int64))
        frames.append(np.arange(len(values), dtype=np.int64))
    fps = float(store.video_info(ids[0]).fps) or None
    return StoreData(np.concatenate(xs), np.concatenate(ys) if ys else None,
                     np.concatenate(groups), np.concatenate(frames), ids, behaviors, key,
                     provenances[ids[0]], fps, source)


def select_rows(data: StoreData, kind: str) -> StoreData:
    """The rows a probe of ``kind`` trains on.

    Videos without a labeled frame are left out; frame-wise probes keep only labeled frames,
    the temporal and prompt probes keep every frame of the labeled videos (unlabeled frames
    give them context and carry no loss). ``video_ids`` and ``groups`` are renumbered.

    Raises
    ------
    ProbeError
        No frame is labeled.
    """
    if data.y is None:
        raise ProbeError("select_rows needs labels; load the data with a label set.")
    labeled = (data.y >= 0).any(1)
    if not labeled.any():
        raise ProbeError(
            f"{data.labels} labels no frame of videos {data.video_ids}; label some bouts first."
        )
    kept_videos = [i for i in range(len(data.video_ids)) if labeled[data.groups == i].any()]
    keep = np.isin(data.groups, kept_videos)
    if probe_kind(kind) not in ("temporal", "prompt"):  # these two see unlabeled context
        keep &= labeled
    renumber = np.full(len(data.video_ids), -1, np.int64)
    renumber[kept_videos] = np.arange(len(kept_videos))
    return replace(data, X=data.X[keep], y=data.y[keep], groups=renumber[data.groups[keep]],
                   frames=data.frames[keep], video_ids=[data.video_ids[i] for i in kept_videos])
