"""Sample data: a synthetic behavior clip, and the real fly courtship clip with its labels.

Both open as a video layer with a labeling session whose manual labels are the clip's labels.
Their sessions autosave under ``~/.cache/prism-science/samples`` (never into the repository).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np

from prism_science.errors import LabelError, PrismError, VideoError

from ._context import SESSION_KEY, video_layer_data

__all__ = ["fly_clip_path", "make_fly_clip", "make_synthetic_clip", "sample_dir", "synthetic_clip"]

logger = logging.getLogger(__name__)


def sample_dir() -> Path:
    """Folder where sample clips and their sessions are written."""
    return Path.home() / ".cache" / "prism-science" / "samples"


def synthetic_clip(out_dir: str | Path | None = None, seed: int = 7) -> Path:
    """Write (once) a short synthetic clip of two animals; returns its ``.mp4``.

    Also writes ``synthetic.labels.csv`` (plain interval CSV), ``synthetic.json`` and the
    animals' exact tracks ``synthetic.mp4.tracks.csv`` (drawn over the clip when it opens)
    beside it.
    """
    import json

    from prism_science.synth import SynthConfig, clip_tracks, generate_clip, write_clip
    from prism_science.tracks import write_tracks_csv

    out = Path(out_dir) if out_dir is not None else sample_dir()
    video = out / "synthetic.mp4"
    meta = out / "synthetic.json"
    if not (video.is_file() and meta.is_file()):
        config = SynthConfig(size=(192, 192), fps=15.0, seconds=(12.0, 12.0), n_animals=2)
        write_clip(generate_clip(seed, config), out, "synthetic")
    tracks_file = video.with_name(video.name + ".tracks.csv")
    if not tracks_file.is_file():
        try:
            tracks = clip_tracks(json.loads(meta.read_text()), str(meta))
            write_tracks_csv(tracks, tracks_file, video=str(video))
        except (PrismError, OSError, ValueError) as exc:  # a clip cached by an old version
            logger.warning("%s: no tracks written (%s)", tracks_file, exc)
    return video


def _read_plain_rows(path: Path) -> list[dict[str, Any]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def make_synthetic_clip() -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 sample data: the synthetic clip with its exact behavior labels."""
    video = synthetic_clip()
    layer = video_layer_data(video, session_path=sample_dir() / "synthetic.prism-session.json")
    session = layer[1]["metadata"][SESSION_KEY]
    if not session.bouts("manual"):
        session.add_records(_read_plain_rows(video.with_name("synthetic.labels.csv")))
        session.set_subject(session.subjects()[-1])
        session.clear_history()
    layer[1]["name"] = "synthetic clip"
    return [layer]


def fly_clip_path() -> Path:
    """The fly courtship clip of ``sample_data/`` (a source checkout only)."""
    import prism_science

    root = Path(prism_science.__file__).resolve().parents[1]
    return root / "sample_data" / "fly_courtship" / "clip.mp4"


def fly_wing_extension(csv_path: Path, n_frames: int) -> np.ndarray:
    """(n_frames,) bool male wing extension per frame from ``clip_heuristic_labels.csv``.

    Raises
    ------
    LabelError
        The file lacks the ``frame`` or ``male_wing_extension`` column, or has frames beyond
        the video.
    """
    mask = np.zeros(n_frames, dtype=bool)
    for line, row in enumerate(_read_plain_rows(csv_path), start=2):
        try:
            frame, value = int(row["frame"]), int(float(row["male_wing_extension"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise LabelError(f"{csv_path}, line {line}: expected integer 'frame' and "
                             f"'male_wing_extension' columns ({exc!r})") from exc
        if not 0 <= frame < n_frames:
            raise LabelError(f"{csv_path}, line {line}: frame {frame} is outside the clip "
                             f"(0..{n_frames - 1})")
        mask[frame] = bool(value)
    return mask


def make_fly_clip() -> list[tuple[Any, dict[str, Any], str]]:
    """npe2 sample data: real fly courtship (SLEAP, BSD) with wing-extension labels."""
    from prism_science.session import Behavior, mask_to_runs

    video = fly_clip_path()
    if not video.is_file():
        raise VideoError(
            f"{video}: the fly sample clip is only in a source checkout of prism-science "
            "(sample_data/ is not installed with the wheel); clone the repository to use it"
        )
    layer = video_layer_data(video, session_path=sample_dir() / "fly_courtship.prism-session.json")
    session = layer[1]["metadata"][SESSION_KEY]
    if not session.bouts("manual"):
        mask = fly_wing_extension(video.with_name("clip_heuristic_labels.csv"), session.n_frames)
        if "wing_extension" not in session.behavior_names():
            session.add_behavior(Behavior("wing_extension", "w"))
        session.add_records(
            {"behavior": "wing_extension", "subject": "", "start_frame": a, "end_frame": b}
            for a, b in mask_to_runs(mask)
        )
        session.clear_history()
    layer[1]["name"] = "fly courtship"
    return [layer]
