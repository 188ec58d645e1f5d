"""napari writers: a video layer's labels as a plain interval CSV or an NWB file.

napari hands a writer the layer's data and attributes; the labels live in the layer's session
(``metadata["prism_session"]``). The export goes through :func:`prism_science.labels.write_labels`
so that it matches the command line's export exactly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prism_science.errors import LabelError
from prism_science.session import SOURCES, LabelingSession

from ._context import SESSION_KEY

__all__ = ["export_session", "write_csv", "write_nwb", "writer_path"]

logger = logging.getLogger(__name__)


def export_session(
    session: LabelingSession,
    path: str | Path,
    format: str | None = None,
    sources: tuple[str, ...] | None = None,
    fully_labeled: bool = False,
) -> Path:
    """Write a session's labels with a format of :mod:`prism_science.labels`.

    Parameters
    ----------
    session : LabelingSession
    path : str or Path
        Output file.
    format : str, optional
        ``csv``, ``boris``, ``nwb`` or ``deepethogram`` (default: from the extension).
    sources : tuple of str, optional
        Label sources to include: ``manual``, ``curated`` and prediction track names
        (default: manual, curated and every prediction).
    fully_labeled : bool
        Declare the whole video labeled (frames without a bout are negatives); otherwise only
        the bouts' frames are declared labeled.

    Returns
    -------
    Path
        The file written.
    """
    from prism_science.labels import write_labels

    if sources is None:
        sources = (*SOURCES, *session.predictions)
    video_id = Path(session.video_path).stem if session.video_path else None
    table = session.to_table(sources, video_id=video_id, fully_labeled=fully_labeled)
    return write_labels(table, path, format)


def _session_of(attributes: dict[str, Any]) -> LabelingSession:
    session = (attributes.get("metadata") or {}).get(SESSION_KEY)
    if not isinstance(session, LabelingSession):
        raise LabelError(
            f"layer {attributes.get('name')!r} has no prism-science labels; select a video "
            "opened with the prism-science reader"
        )
    return session


def writer_path(path: str | Path, extension: str) -> Path:
    """The file a writer writes: ``path`` with ``extension`` (``.csv``, ``.nwb``).

    napari's save dialog proposes the layer's name, the video's file name (``clip.mp4``), and
    keeps it whatever filter is chosen; a name without the writer's extension gets it (a video
    extension is replaced: ``clip.mp4`` -> ``clip.csv``), so that labels never land in a file
    named like a video, let alone over the video itself.
    """
    from prism_science.video import VIDEO_EXTENSIONS

    path = Path(path)
    if path.suffix.lower() != extension:
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            path = path.with_suffix(extension)
        else:
            path = path.with_name(path.name + extension)
    return path


def write_csv(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: the selected video layer's labels as a plain interval CSV (``.csv`` is
    added to a name without it, see :func:`writer_path`)."""
    session = _session_of(attributes)
    return [str(export_session(session, writer_path(path, ".csv"), "csv"))]


def write_nwb(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer: the selected video layer's labels as an NWB file (TimeIntervals;
    ``.nwb`` is added to a name without it)."""
    session = _session_of(attributes)
    return [str(export_session(session, writer_path(path, ".nwb"), "nwb"))]
