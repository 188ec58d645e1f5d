"""A labeling session: the Qt-free logic behind the napari plugin.

A :class:`LabelingSession` holds, for one video, the behaviors being labeled (name, key, colour,
exclusive group, point or state event; :func:`read_ethogram` reads them from a BORIS project or a
CSV), the frames labeled by hand (``manual``), the frames a person approved while
reviewing predictions (``curated``), the classifier's per-frame probabilities (``predicted``)
and the review decisions, all kept apart so that none overwrites another. Edits are undoable and
the session autosaves itself with atomic writes, so a crash loses at most the last few seconds.

Labels are stored per frame (one boolean mask per behavior and subject): edits, exclusive groups,
undo and drawing are then simple array operations; intervals (``end_frame`` inclusive, as in the
plain interval CSV) are derived from the masks when saving or exporting.

The session file is JSON (a format name, a version, behaviors, intervals, review decisions);
predictions, which may be large, go to an ``.npz`` beside it, read back with
``allow_pickle=False``.
"""

from prism_science.session._persist import (
    DAMAGED_SUFFIX,
    SESSION_FORMAT,
    SESSION_VERSION,
    STORE_SESSION_KEY,
    atomic_write_bytes,
    default_session_path,
    move_aside,
    set_aside_in_store,
)
from prism_science.session._session import RESERVED_KEYS, LabelingSession
from prism_science.session._types import (
    SOURCES,
    Behavior,
    Bout,
    PredictionTrack,
    ReviewItem,
    mask_to_runs,
)
from prism_science.session.ethogram import import_ethogram, read_ethogram
from prism_science.session.project import PROJECT_FILE, Project, is_project

__all__ = [
    "DAMAGED_SUFFIX",
    "PROJECT_FILE",
    "RESERVED_KEYS",
    "SESSION_FORMAT",
    "SESSION_VERSION",
    "SOURCES",
    "STORE_SESSION_KEY",
    "Behavior",
    "Bout",
    "LabelingSession",
    "PredictionTrack",
    "Project",
    "ReviewItem",
    "atomic_write_bytes",
    "default_session_path",
    "import_ethogram",
    "is_project",
    "mask_to_runs",
    "move_aside",
    "read_ethogram",
    "set_aside_in_store",
]
