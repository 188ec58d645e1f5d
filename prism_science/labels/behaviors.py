"""The behavior vocabulary of a project: ordered names, mutually exclusive groups, keys and colours.

A :class:`BehaviorSet` fixes the column order of every per-frame matrix (probes, metrics and the
GUI all index behaviors through it) and says which behaviors cannot co-occur for one subject.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prism_science.errors import LabelError

# matplotlib's tab20 palette, spelled out so that importing labels never imports matplotlib.
_PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
    "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
)
_DEFAULT_KEYS = "1234567890qwertyuiopasdfghjklzxcvbnm"


@dataclass(frozen=True)
class BehaviorSet:
    """Ordered behavior names with their exclusive groups, keyboard keys and colours.

    Parameters
    ----------
    names : sequence of str
        Behavior names in column order; unique, non-empty.
    exclusive_groups : sequence of sequence of str
        Groups of behaviors of which at most one can be present per subject and frame (e.g. the
        one-label-per-frame vocabularies of CalMS21 or KABR). A behavior belongs to at most one
        group; behaviors outside every group are independent (multi-label).
    keys : mapping str -> str, optional
        Keyboard shortcut per behavior (the GUI uses them); missing ones get defaults.
    colors : mapping str -> str, optional
        ``#rrggbb`` colour per behavior; missing ones come from the tab20 palette.
    """

    names: tuple[str, ...]
    exclusive_groups: tuple[tuple[str, ...], ...] = ()
    keys: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)
    colors: Mapping[str, str] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.names)
        groups = tuple(tuple(str(n) for n in g) for g in self.exclusive_groups if len(g) > 0)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "exclusive_groups", groups)
        seen: set[str] = set()
        for name in names:
            if not name.strip():
                raise LabelError(
                    f"behavior set: field 'names' holds an empty name in {list(names)}; "
                    "expected non-empty behavior names. Remove or rename it."
                )
            if name in seen:
                raise LabelError(
                    f"behavior set: behavior {name!r} is listed twice in 'names'; expected "
                    "unique names. Remove the duplicate."
                )
            seen.add(name)
        grouped: dict[str, int] = {}
        for gi, group in enumerate(groups):
            for name in group:
                if name not in seen:
                    raise LabelError(
                        f"behavior set: exclusive group {list(group)} names {name!r}, which is "
                        f"not among the behaviors {list(names)}. Add it to the names or drop "
                        "it from the group."
                    )
                if name in grouped:
                    raise LabelError(
                        f"behavior set: behavior {name!r} is in two exclusive groups "
                        f"({list(groups[grouped[name]])} and {list(group)}); expected at most "
                        "one group per behavior. Merge the groups."
                    )
                grouped[name] = gi
        keys = dict(self.keys)
        free = [k for k in _DEFAULT_KEYS if k not in keys.values()]
        for name in names:
            if name not in keys and free:
                keys[name] = free.pop(0)
        colors = dict(self.colors)
        for i, name in enumerate(names):
            colors.setdefault(name, _PALETTE[i % len(_PALETTE)])
        object.__setattr__(self, "keys", {n: keys[n] for n in names if n in keys})
        object.__setattr__(self, "colors", {n: colors[n] for n in names})

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_names(cls, names: Iterable[str], exclusive: bool = False) -> BehaviorSet:
        """A set of ``names``; ``exclusive=True`` puts them all in one exclusive group."""
        names = tuple(names)
        return cls(names, (names,) if exclusive and len(names) > 1 else ())

    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> BehaviorSet:
        """Inverse of :meth:`to_dict` (JSON-safe dict)."""
        try:
            return cls(
                tuple(obj["names"]),
                tuple(tuple(g) for g in obj.get("exclusive_groups", ())),
                dict(obj.get("keys", {})),
                dict(obj.get("colors", {})),
            )
        except (KeyError, TypeError) as exc:
            raise LabelError(
                f"behavior set: expected a dict with 'names' (list of str) and optional "
                f"'exclusive_groups', 'keys', 'colors'; found {obj!r} ({exc}). "
                "Rewrite it with BehaviorSet.to_dict()."
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict (names, exclusive_groups, keys, colors)."""
        return {
            "names": list(self.names),
            "exclusive_groups": [list(g) for g in self.exclusive_groups],
            "keys": dict(self.keys),
            "colors": dict(self.colors),
        }

    def union(self, other: BehaviorSet | Sequence[str]) -> BehaviorSet:
        """This set plus the behaviors of ``other`` not already in it (appended in order).

        Exclusive groups of ``other`` are added when none of their members is grouped here.
        """
        other_set = other if isinstance(other, BehaviorSet) else BehaviorSet(tuple(other))
        names = self.names + tuple(n for n in other_set.names if n not in self.names)
        grouped = {n for g in self.exclusive_groups for n in g}
        groups = self.exclusive_groups + tuple(
            g for g in other_set.exclusive_groups if not grouped.intersection(g)
        )
        keys = {**other_set.keys, **self.keys}
        colors = {**{n: c for n, c in other_set.colors.items() if n not in self.names},
                  **self.colors}
        # Keys may clash after merging; keep this set's and re-assign the others.
        used: set[str] = set()
        clean_keys = {}
        for n in names:
            k = keys.get(n)
            if k is not None and k not in used:
                clean_keys[n] = k
                used.add(k)
        return BehaviorSet(names, groups, clean_keys, colors)

    # ---------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def index(self, name: str) -> int:
        """Column index of ``name``; LabelError naming the known behaviors when absent."""
        try:
            return self.names.index(name)
        except ValueError:
            raise LabelError(
                f"behavior {name!r} is not in the behavior set {list(self.names)}; add it to "
                "the set or rename the label."
            ) from None

    def group_of(self, name: str) -> tuple[str, ...] | None:
        """The exclusive group holding ``name``, or None when it is independent."""
        for group in self.exclusive_groups:
            if name in group:
                return group
        return None
