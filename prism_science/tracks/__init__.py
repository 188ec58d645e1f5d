"""Animal tracks: one in-memory form, the ecosystem's files, and a built-in tracker.

>>> from prism_science.tracks import read_tracks, track_video, write_tracks_csv
>>> tracks = read_tracks("clip.slp")                  # SLEAP, DLC, CSV, KABR, ChimpACT, ...
>>> tracks = tracks.check_video(n_frames, (height, width), video="clip.mp4")
>>> result = track_video("clip.mp4", n_animals=2)     # fixed camera, median background
>>> write_tracks_csv(result.tracks, "clip.tracks.csv")

See docs/tracks.md.
"""

from __future__ import annotations

from prism_science.tracks.compare import TrackComparison, compare_tracks
from prism_science.tracks.core import (
    Tracks,
    from_boxes,
    from_keypoints,
    interpolate_gaps,
    missing_runs,
)
from prism_science.tracks.readers import (
    DEFAULT_MAX_GAP,
    TRACKS_FORMATS,
    detect_tracks_format,
    read_tracks,
    write_tracks_csv,
)
from prism_science.tracks.tracker import TrackerConfig, TrackingResult, track_video

__all__ = [
    "DEFAULT_MAX_GAP",
    "TRACKS_FORMATS",
    "TrackComparison",
    "TrackerConfig",
    "TrackingResult",
    "Tracks",
    "compare_tracks",
    "detect_tracks_format",
    "from_boxes",
    "from_keypoints",
    "interpolate_gaps",
    "missing_runs",
    "read_tracks",
    "write_tracks_csv",
    "track_video",
]
