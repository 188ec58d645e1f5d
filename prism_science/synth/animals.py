"""Per-animal views of the synthetic world: who does what, one animal at a time.

A clip's caption describes every animal ("a large brown mouse chases a small grey mouse; the
grey mouse flees"); an animal-centred crop shows one of them. :func:`animal_caption` captions
one animal of a segment ("a large brown mouse chases a small grey mouse, then grooms."), and
:func:`write_animal_windows` turns a folder of synthetic clips into a *crop manifest*: the exact
tracks of every clip as ``NAME.tracks.csv`` (the plain tracks CSV of
:func:`prism_science.tracks.write_tracks_csv`) and one JSONL row per animal and window
(``path``, ``tracks``, ``subject``, ``caption``, ``start_frame``, ``end_frame``), which the
crop data source of ``prism_training`` reads (docs/training.md, "Animal-centred crops"). The
crops themselves are cut at training time by the one crop function of the library
(``prism_science.extraction.subjects.crop_frames``), with the augmentations of the run.
See docs/synth.md.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import SynthError
from prism_science.synth.world import BEHAVIORS, AnimalAttributes, animal_clause
from prism_science.tracks import Tracks, write_tracks_csv
from prism_science.video.index import natural_sort_key

__all__ = [
    "CROP_MANIFEST",
    "animal_caption",
    "clip_tracks",
    "write_animal_windows",
]

logger = logging.getLogger(__name__)

CROP_MANIFEST = "crops.jsonl"
"""File name of the per-animal crop manifest written into a synthetic dataset's folder."""


def animal_caption(
    behaviors: np.ndarray,
    targets: np.ndarray,
    animals: Sequence[AnimalAttributes],
    index: int,
    species: str = "mouse",
) -> str:
    """The caption of one animal of a clip or segment, for a crop centred on it.

    Parameters
    ----------
    behaviors : np.ndarray
        (T, n_animals) int ids into :data:`~prism_science.synth.BEHAVIORS`.
    targets : np.ndarray
        (T, n_animals) int partner animal index, -1 for none.
    animals : sequence of AnimalAttributes
        The clip's animals.
    index : int
        Which animal the caption is about.
    species : str
        Noun for the animals.

    Returns
    -------
    str
        The animal introduced by its appearance, then its behaviors in order of first
        occurrence, partners by their appearance: ``"a large brown mouse chases a small grey
        mouse, then grooms."`` (the clip caption's clause of this animal, on its own).
    """
    if not 0 <= index < len(animals):
        raise SynthError(f"animal index {index} out of range: the clip has {len(animals)} "
                         "animals")

    def name(k: int) -> str:
        return f"a {animals[k].describe(species)}"

    behaviors = np.asarray(behaviors)
    targets = np.asarray(targets)
    clause = animal_clause(behaviors[:, index], targets[:, index], name)
    return f"{name(index)} {clause}."


def clip_tracks(meta: dict[str, Any], source: str = "") -> Tracks:
    """The exact tracks of a synthetic clip from its ``NAME.json`` metadata.

    Parameters
    ----------
    meta : dict
        The parsed ``NAME.json`` of :func:`~prism_science.synth.write_clip`.
    source : str
        Where the metadata came from, for messages.

    Returns
    -------
    Tracks
        (T, n_animals) centroids, heading (radians) and body length (the animal's
        ``body_length_px``) of every frame; subjects ``animal0``...; frame size, frame count
        and fps of the clip.

    Raises
    ------
    SynthError
        The metadata has no tracks (written by an old version) or they do not cover the clip.
    """
    animals = meta.get("animals") or []
    tracks = meta.get("tracks") or {}
    ids = [a["id"] for a in animals]
    n_frames = int(meta.get("n_frames", 0))
    if not ids or any(i not in tracks for i in ids):
        raise SynthError(f"{source or 'the clip metadata'} has no per-animal tracks; regenerate "
                         "the clip with this version: prism-science synth ... --overwrite")
    values = np.array([tracks[i] for i in ids], dtype=np.float32).transpose(1, 0, 2)  # (T, n, 3)
    if values.shape[0] != n_frames or values.shape[2] != 3:
        raise SynthError(f"{source}: tracks of shape {values.shape} do not cover the clip's "
                         f"{n_frames} frames; regenerate it with --overwrite")
    lengths = np.array([a["body_length_px"] for a in animals], dtype=np.float32)
    return Tracks(
        centroids=values[..., :2], subjects=ids, heading=values[..., 2],
        body_length=np.broadcast_to(lengths, values.shape[:2]).copy(),
        source=source, format="synth", frame_size=(int(meta["height"]), int(meta["width"])),
        n_frames_known=True, fps=float(meta["fps"]))


def write_animal_windows(
    synth_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str] | None = None,
    window: int = 24,
) -> Path:
    """Write the tracks of every synthetic clip and a per-animal crop manifest of windows.

    Parameters
    ----------
    synth_dir : str or PathLike
        Folder of ``prism-science synth`` (NAME.mp4 + NAME.json per clip).
    out_path : str or PathLike, optional
        The JSONL manifest to write (default ``synth_dir/crops.jsonl``). Its rows:
        ``path`` (the video), ``tracks`` (``NAME.tracks.csv``, written beside the video when
        missing), ``subject`` (``animal0``...), ``caption`` (:func:`animal_caption` of the
        window), ``start_frame``, ``end_frame`` (inclusive); paths relative to the manifest's
        folder, so the folders can move together.
    window : int
        Window length in frames (windows do not overlap; a shorter tail is dropped).

    Returns
    -------
    Path
        The manifest.

    Raises
    ------
    SynthError
        The folder holds no clip metadata, a clip's vocabulary differs from this version's,
        or ``window`` < 1.
    """
    if window < 1:
        raise SynthError(f"window must be >= 1 frame, found {window}")
    synth_dir = Path(synth_dir)
    metas = sorted(synth_dir.glob("*.json"), key=lambda p: natural_sort_key(p.name))
    if not metas:
        raise SynthError(f"{synth_dir} holds no NAME.json clip metadata of synthetic clips; "
                         f"write them first: prism-science synth --n-videos N --out {synth_dir}")
    out_path = Path(out_path) if out_path is not None else synth_dir / CROP_MANIFEST
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(synth_dir, out_path.parent))
    rows = []
    for meta_path in metas:
        meta = json.loads(meta_path.read_text())
        if list(meta.get("behaviors", [])) != list(BEHAVIORS):
            raise SynthError(f"{meta_path}: behavior vocabulary differs from this version's; "
                             "regenerate the clips with --overwrite")
        stem = meta_path.name[: -len(".json")]
        tracks_file = synth_dir / f"{stem}.tracks.csv"
        if not tracks_file.is_file():
            write_tracks_csv(clip_tracks(meta, str(meta_path)), tracks_file, video=meta["video"])
        animals = [AnimalAttributes(**a) for a in meta["animals"]]
        ids = [a.id for a in animals]
        behaviors = np.array([meta["frame_behaviors"][i] for i in ids]).T  # (T, n_animals)
        targets = np.array([meta["frame_targets"][i] for i in ids]).T
        species = str(meta.get("species", "mouse"))
        for start in range(0, behaviors.shape[0] - window + 1, window):
            seg = slice(start, start + window)
            for k, animal in enumerate(animals):
                rows.append({
                    "path": str(rel / meta["video"]), "tracks": str(rel / tracks_file.name),
                    "subject": animal.id,
                    "caption": animal_caption(behaviors[seg], targets[seg], animals, k, species),
                    "start_frame": start, "end_frame": start + window - 1})
    tmp = out_path.with_name(out_path.name + ".part")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    os.replace(tmp, out_path)
    logger.info("wrote %d per-animal windows of %d frames from %d clips to %s", len(rows),
                window, len(metas), out_path)
    return out_path
