"""The ethogram from a file: a BORIS project's behaviors, or a CSV of ``name,key[,type]``.

:func:`read_ethogram` reads the behaviors (name, keyboard key, point or state event, colour and
exclusive group where the file has them); :func:`import_ethogram` gives them to a labeling
session, whose ethogram a project then takes as its own (one ethogram for every video).

CSV layout, one behavior per line, an optional header line ``name,key,type``::

    chasing,c,state
    courtship,o
    bite,b,point

``type`` is ``state`` (default) or ``point`` (BORIS's "State event" / "Point event" are
accepted too). A key is one letter or digit; other keys (BORIS allows any character, the
plugin's own keys play, jump and review) are dropped with a message, and the behavior gets a
free key when it is imported.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from prism_science.errors import LabelError
from prism_science.session._session import _KEY_CANDIDATES, RESERVED_KEYS, LabelingSession
from prism_science.session._types import Behavior

__all__ = ["import_ethogram", "read_ethogram"]

logger = logging.getLogger(__name__)

_POINT = {"point", "point event", "p"}
_STATE = {"state", "state event", "s", ""}


def _key(value: str, where: str, name: str, used: set[str], messages: list[str]) -> str:
    key = value.strip()
    if not key:
        return ""
    if len(key) != 1 or not (key.isascii() and key.isalnum()):
        messages.append(f"{where}: key {key!r} of {name!r} is not one letter or digit; "
                        f"{name!r} gets a free key instead")
        return ""
    key = key.lower()
    if key in used:
        messages.append(f"{where}: key {key!r} of {name!r} is already taken by another "
                        f"behavior of the file; {name!r} gets a free key instead")
        return ""
    used.add(key)
    return key


def _read_boris(path: Path, messages: list[str]) -> list[Behavior]:
    from prism_science.labels.formats import boris

    # The BORIS reader's own parsing of the project's ethogram (behaviors_conf): codes, keys,
    # colours, types and the exclusive groups of its "excluded" lists.
    project = boris._load_project(path)
    behavior_set, types = boris._ethogram(project, path)
    groups = {name: "+".join(group) for group in behavior_set.exclusive_groups
              for name in group}
    used: set[str] = set()
    behaviors = []
    for name in behavior_set.names:
        where = f"{path}, behaviors_conf {name!r}"
        key = _key(behavior_set.keys.get(name, ""), where, name, used, messages)
        point = types.get(name, boris.STATE_EVENT).strip().lower().startswith("point")
        behaviors.append(Behavior(name, key, behavior_set.colors.get(name, ""),
                                  groups.get(name, ""), point))
    return behaviors


def _read_csv(path: Path, messages: list[str]) -> list[Behavior]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise LabelError(f"{path}: cannot read the ethogram CSV ({exc}); expected lines of "
                         "name,key[,type]") from exc
    behaviors: list[Behavior] = []
    used: set[str] = set()
    names: set[str] = set()
    for line, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if line == 1 and cells[0].lower() in ("name", "behavior", "behaviour", "code"):
            continue  # header
        name = cells[0]
        if not name:
            raise LabelError(f"{path}, line {line}: the name field is empty; expected "
                             "name,key[,type]")
        if name in names:
            raise LabelError(f"{path}, line {line}: behavior {name!r} is listed twice; remove "
                             "the duplicate line")
        names.add(name)
        kind = cells[2].lower() if len(cells) > 2 else ""
        if kind not in _POINT | _STATE:
            raise LabelError(f"{path}, line {line}: type {cells[2]!r} of {name!r} is neither "
                             "'state' nor 'point'; write one of them or leave it empty")
        key = _key(cells[1] if len(cells) > 1 else "", f"{path}, line {line}", name, used,
                   messages)
        behaviors.append(Behavior(name, key, "", "", kind in _POINT))
    return behaviors


def read_ethogram(path: str | os.PathLike[str]) -> tuple[list[Behavior], list[str]]:
    """Read the behaviors of a BORIS project (``.boris``, ``.boris.gz``) or an ethogram CSV.

    Parameters
    ----------
    path : str or PathLike
        A BORIS project: its ethogram (``behaviors_conf``) gives each behavior's code, key,
        colour, type (point or state event) and exclusive group. Anything else is read as a
        CSV of ``name,key[,type]`` (see the module docstring).

    Returns
    -------
    behaviors : list of Behavior
        In the file's order.
    messages : list of str
        What was changed on the way (keys that cannot label, taken twice), for the user.

    Raises
    ------
    LabelError
        The file cannot be read, has no behavior, or a line is wrong (the line is named).
    """
    path = Path(path)
    messages: list[str] = []
    if not path.is_file():
        raise LabelError(f"{path}: no such ethogram file; choose a .boris project or a CSV "
                         "of name,key[,type]")
    name = path.name.lower()
    if name.endswith((".boris", ".boris.gz")):
        behaviors = _read_boris(path, messages)
    else:
        behaviors = _read_csv(path, messages)
    if not behaviors:
        raise LabelError(f"{path}: no behavior found; expected a BORIS project with an "
                         "ethogram or a CSV of name,key[,type]")
    for message in messages:
        logger.warning("%s", message)
    return behaviors, messages


def import_ethogram(session: LabelingSession, behaviors: Iterable[Behavior]) -> list[str]:
    """Give imported behaviors to a session: new ones are added, those it has take the file's
    key, type, group (and colour, when the file has one); the others stay, with their labels.

    A key of the file used by another behavior of the session moves to the imported behavior
    (the other is left without a key, and a message says so).

    Parameters
    ----------
    session : LabelingSession
        The current video's session (a project takes its ethogram after the change).
    behaviors : iterable of Behavior
        As returned by :func:`read_ethogram`.

    Returns
    -------
    list of str
        Messages for the user: keys taken from other behaviors.
    """
    behaviors = list(behaviors)
    wanted = {b.key.lower(): b.name for b in behaviors if b.key}
    imported = {b.name: b for b in behaviors}
    messages = []
    # Free the keys the file hands out, and the keys its behaviors had here before.
    for current in list(session.behaviors):
        key = current.key.lower()
        if not key:
            continue
        new = imported.get(current.name)
        if key in wanted and wanted[key] != current.name:
            if new is None:
                messages.append(f"key {key!r} moved from {current.name!r} to {wanted[key]!r}; "
                                f"{current.name!r} has no key now")
            session.update_behavior(current.name, key="")
        elif new is not None and new.key and new.key.lower() != key:
            session.update_behavior(current.name, key="")
    used = {b.key.lower() for b in session.behaviors if b.key} | set(wanted)
    for behavior in behaviors:
        key = behavior.key.lower()
        if behavior.name in session.behavior_names():
            existing = session.behavior(behavior.name)
            session.update_behavior(behavior.name, key=key or existing.key,
                                    color=behavior.color or existing.color,
                                    group=behavior.group, point=behavior.point)
            continue
        if not key:  # a free key now, so that no later behavior of the file loses its own
            key = next((c for c in behavior.name.lower() + _KEY_CANDIDATES
                        if "a" <= c <= "z" and c not in used and c not in RESERVED_KEYS), "")
            used.add(key)
        session.add_behavior(Behavior(behavior.name, key, behavior.color, behavior.group,
                                      behavior.point))
    return messages
