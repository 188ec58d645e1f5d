"""A synthetic behavior world: procedural top-view videos of 1-3 animals with exact labels.

Each clip is simulated frame by frame: every animal follows bouts of behaviors (see
:data:`BEHAVIORS`) whose only differences are in motion -- a resting and a grooming animal hold the
same place, grooming wobbles the head and forelimbs; walking and chasing differ in speed and in
following another animal -- so telling them apart needs video, not a single frame. Appearance
varies per clip (body colours, sizes, stripes, background, lighting, camera noise, blur,
compression) and animals in one clip have distinct identities. A templated caption describes who
does what. Everything is drawn with numpy (:mod:`prism_science.synth.render`) and is
deterministic by seed. See docs/synth.md.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prism_science.errors import SynthError
from prism_science.synth.render import encode_h264, render_background, render_frame, render_lighting

__all__ = [
    "BEHAVIORS",
    "COLOURS",
    "SIZES",
    "AnimalAttributes",
    "SynthClip",
    "SynthConfig",
    "animal_clause",
    "generate_clip",
    "generate_dataset",
    "intervals_from_frames",
    "make_caption",
    "write_clip",
]

logger = logging.getLogger(__name__)

BEHAVIORS: tuple[str, ...] = (
    "rest",         # still body, slow breathing
    "groom",        # still body, fast head wobble and forelimb strokes
    "walk",         # moderate speed along a wandering path
    "approach",     # slow, heading straight to another animal
    "investigate",  # nose at another animal, slow circling, sniffing wobble
    "chase",        # fast pursuit of a fleeing animal
    "flee",         # fast run away from a chaser
    "attack",       # lunges at another animal with body shaking
    "defend",       # attacked: turns to face the attacker, jitters in place
    "mount",        # on top of another animal, rhythmic thrusts
)
"""Behavior vocabulary; a clip's per-frame behavior ids index this tuple."""

_ID = {name: i for i, name in enumerate(BEHAVIORS)}

COLOURS: dict[str, tuple[int, int, int]] = {
    "brown": (120, 78, 45),
    "grey": (128, 128, 132),
    "white": (235, 232, 225),
    "black": (35, 33, 36),
    "golden": (205, 160, 80),
    "red": (170, 60, 40),
    "cream": (220, 200, 160),
}
"""Body colours (RGB) by name; each animal of a clip gets a different one."""

SIZES: dict[str, float] = {"small": 0.11, "medium": 0.14, "large": 0.17}
"""Body length as a fraction of the frame's shorter side, by size name."""

_BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "sand": (200, 185, 150),
    "grey": (150, 150, 150),
    "white": (225, 225, 220),
    "blue": (70, 90, 120),
    "dark": (50, 50, 55),
    "green": (110, 140, 100),
}

# Passive behavior given to the partner of each social behavior, for the bout's duration.
_PASSIVE = {"chase": "flee", "attack": "defend", "mount": "rest"}
_VERBS = {
    "rest": "rests", "groom": "grooms", "walk": "walks", "approach": "approaches",
    "investigate": "investigates", "chase": "chases", "flee": "flees", "attack": "attacks",
    "defend": "defends itself", "mount": "mounts",
}
_SOCIAL = ("approach", "investigate", "chase", "attack", "mount")


@dataclass(frozen=True)
class SynthConfig:
    """How clips are generated.

    Attributes
    ----------
    size : (int, int)
        (height, width) in pixels; both even (h264 yuv420p).
    fps : float
        Frames per second.
    seconds : (float, float)
        Clip length range in seconds; each clip draws its length uniformly from it.
    n_animals : int or None
        Animals per clip (1-3); None draws 1, 2 or 3 per clip (social clips are favoured).
    crf : (int, int)
        h264 constant-rate-factor range (compression quality variation; lower is better).
    noise : (float, float)
        Camera noise standard deviation range, in 0-255 units.
    blur : (float, float)
        Gaussian blur sigma range in pixels.
    species : str
        Noun used in captions.
    """

    size: tuple[int, int] = (192, 192)
    fps: float = 15.0
    seconds: tuple[float, float] = (8.0, 12.0)
    n_animals: int | None = None
    crf: tuple[int, int] = (18, 32)
    noise: tuple[float, float] = (0.0, 6.0)
    blur: tuple[float, float] = (0.0, 1.0)
    species: str = "mouse"

    def __post_init__(self) -> None:
        h, w = self.size
        if h < 32 or w < 32 or h % 2 or w % 2:
            raise SynthError(f"size must be (height, width), even and >= 32, found {self.size}")
        if not self.fps > 0:
            raise SynthError(f"fps must be positive, found {self.fps}")
        lo, hi = self.seconds
        if not 0 < lo <= hi:
            raise SynthError(f"seconds must be a range 0 < min <= max, found {self.seconds}")
        if self.n_animals is not None and not 1 <= self.n_animals <= 3:
            raise SynthError(f"n_animals must be 1, 2 or 3 (or None), found {self.n_animals}")
        if not 0 <= self.crf[0] <= self.crf[1] <= 51:
            raise SynthError(f"crf must be a range within 0..51, found {self.crf}")


@dataclass(frozen=True)
class AnimalAttributes:
    """Appearance of one animal: its identity within a clip."""

    id: str
    colour: str
    size: str
    stripes: bool
    body_length_px: float

    def describe(self, species: str) -> str:
        """Noun phrase like ``"large brown striped mouse"``."""
        return f"{self.size} {self.colour} {'striped ' if self.stripes else ''}{species}"


@dataclass
class SynthClip:
    """One generated clip, in memory.

    Attributes
    ----------
    frames : np.ndarray
        (T, H, W, 3) uint8 RGB, before compression.
    behaviors : np.ndarray
        (T, n_animals) int64 ids into :data:`BEHAVIORS`; one behavior per animal per frame.
    targets : np.ndarray
        (T, n_animals) int64 index of the partner animal of a social behavior, -1 otherwise.
    tracks : np.ndarray
        (T, n_animals, 3) float32 centre x, y (pixels) and heading (radians).
    animals : list of AnimalAttributes
    caption : str
    fps : float
    seed : int
    appearance : dict
        Clip-level appearance: background, arena, lighting, noise, blur, crf.
    """

    frames: np.ndarray
    behaviors: np.ndarray
    targets: np.ndarray
    tracks: np.ndarray
    animals: list[AnimalAttributes]
    caption: str
    fps: float
    seed: int
    appearance: dict[str, object] = field(default_factory=dict)
    species: str = "mouse"

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])


# ---------------------------------------------------------------------------------- simulation
@dataclass
class _Animal:
    length: float
    x: float
    y: float
    heading: float
    speed: float = 0.0
    phase: float = 0.0        # gait phase (radians)
    head_yaw: float = 0.0     # head angle relative to body (radians)
    turn: float = 0.0         # angular velocity of wandering (rad/s)
    behavior: str = "rest"
    target: int = -1
    t: float = 0.0            # seconds into the current bout
    end: float = 0.0          # bout length in seconds
    locked_by: int = -1       # partner whose social bout dictates this animal's bout
    queue: list[tuple[str, int, float]] = field(default_factory=list)
    orbit: float = 0.0        # investigate: angle around the partner
    params: dict[str, float] = field(default_factory=dict)


class _World:
    def __init__(self, rng: np.random.Generator, cfg: SynthConfig, lengths: list[float]) -> None:
        self.rng = rng
        self.cfg = cfg
        h, w = cfg.size
        self.h, self.w = h, w
        self.dt = 1.0 / cfg.fps
        self.round_arena = bool(rng.random() < 0.5)
        self.cx, self.cy = w / 2.0, h / 2.0
        self.radius = 0.46 * min(h, w)
        self.animals: list[_Animal] = []
        for length in lengths:
            for _ in range(50):
                r = self.radius * 0.7 * math.sqrt(rng.random())
                a = rng.uniform(0, 2 * math.pi)
                x, y = self.cx + r * math.cos(a), self.cy + r * math.sin(a)
                if all(math.hypot(x - o.x, y - o.y) > 0.9 * (length + o.length)
                       for o in self.animals):
                    break
            self.animals.append(_Animal(length, x, y, rng.uniform(-math.pi, math.pi)))
        for i, animal in enumerate(self.animals):
            if animal.locked_by < 0:
                self._choose(i)

    # bouts --------------------------------------------------------------------------------
    def _duration(self, behavior: str) -> float:
        lo, hi = {
            "rest": (1.0, 3.5), "groom": (1.0, 3.0), "walk": (1.0, 3.5), "approach": (4.0, 4.0),
            "investigate": (1.0, 2.5), "chase": (1.0, 2.5), "attack": (0.8, 2.0),
            "mount": (1.2, 3.0),
        }[behavior]
        return float(self.rng.uniform(lo, hi))

    def _free_partners(self, i: int) -> list[int]:
        return [
            j for j, other in enumerate(self.animals)
            if j != i and other.locked_by < 0 and other.behavior not in _SOCIAL
        ]

    def _choose(self, i: int) -> None:
        animal = self.animals[i]
        if animal.queue:
            behavior, target, duration = animal.queue.pop(0)
            if target < 0 or self.animals[target].locked_by in (-1, i):
                self._start(i, behavior, target, duration)
                return
            animal.queue.clear()
        partners = self._free_partners(i)
        if partners and self.rng.random() < 0.55:
            target = int(self.rng.choice(partners))
            kind = str(self.rng.choice(["investigate", "chase", "attack", "mount"],
                                       p=[0.3, 0.25, 0.25, 0.2]))
            if kind != "chase" and self._distance(i, target) > self._contact(i, target) * 1.3:
                animal.queue = [(kind, target, self._duration(kind))]
                kind = "approach"
            self._start(i, kind, target, self._duration(kind))
            return
        kind = str(self.rng.choice(["rest", "groom", "walk"], p=[0.3, 0.3, 0.4]))
        self._start(i, kind, -1, self._duration(kind))

    def _start(self, i: int, behavior: str, target: int, duration: float) -> None:
        animal = self.animals[i]
        animal.behavior, animal.target, animal.t, animal.end = behavior, target, 0.0, duration
        animal.params = {
            "speed": float(self.rng.uniform(0.8, 1.2)),
            "freq": float(self.rng.uniform(0.85, 1.15)),
        }
        if behavior == "investigate":
            partner = self.animals[target]
            animal.orbit = math.atan2(animal.y - partner.y, animal.x - partner.x)
        if target >= 0:
            partner = self.animals[target]
            passive = _PASSIVE.get(behavior)
            if passive is None:  # approached or investigated: the partner stays still
                still = partner.behavior in ("rest", "groom")
                passive = partner.behavior if still else str(self.rng.choice(["rest", "groom"]))
            partner.queue.clear()
            partner.behavior, partner.target, partner.t = passive, -1, 0.0
            partner.end = duration
            partner.locked_by = i
            if passive == "flee":
                partner.target = i

    def _release(self, i: int) -> None:
        for other in self.animals:
            if other.locked_by == i:
                other.locked_by = -1
                other.end = other.t  # its passive bout ends with the actor's

    def _distance(self, i: int, j: int) -> float:
        a, b = self.animals[i], self.animals[j]
        return math.hypot(a.x - b.x, a.y - b.y)

    def _contact(self, i: int, j: int) -> float:
        return 0.5 * (self.animals[i].length + self.animals[j].length) * 1.05

    # motion -------------------------------------------------------------------------------
    def step(self) -> None:
        dt = self.dt
        order = sorted(range(len(self.animals)), key=lambda k: self.animals[k].locked_by >= 0)
        for i in order:
            self._move(i, dt)
        for i, animal in enumerate(self.animals):
            animal.t += dt
            if animal.behavior == "approach" and animal.target >= 0 and \
                    self._distance(i, animal.target) <= self._contact(i, animal.target) * 1.3:
                animal.end = animal.t
            if animal.t >= animal.end and animal.locked_by < 0:
                self._release(i)
                if animal.behavior == "approach" and animal.t >= 4.0:
                    animal.queue.clear()  # the partner was never reached
                self._choose(i)
        for i, animal in enumerate(self.animals):  # released partners pick new bouts
            if animal.locked_by < 0 and animal.t >= animal.end:
                self._choose(i)
        self._separate()

    def _steer(self, animal: _Animal, desired: float, rate: float, dt: float) -> None:
        diff = (desired - animal.heading + math.pi) % (2 * math.pi) - math.pi
        animal.heading += float(np.clip(diff, -rate * dt, rate * dt))

    def _inside(self, animal: _Animal) -> None:
        """Keep the animal inside the arena; at the wall, turn along it."""
        margin = 0.45 * animal.length
        dx, dy = animal.x - self.cx, animal.y - self.cy
        if self.round_arena:
            r = math.hypot(dx, dy)
            limit = self.radius - margin
            if r > limit:
                animal.x = self.cx + dx / r * limit
                animal.y = self.cy + dy / r * limit
        else:
            limit = self.radius - margin
            animal.x = float(np.clip(animal.x, self.cx - limit, self.cx + limit))
            animal.y = float(np.clip(animal.y, self.cy - limit, self.cy + limit))

    def _wall_turn(self, animal: _Animal, lookahead: float) -> float | None:
        """Heading toward the centre when the point ``lookahead`` ahead is outside the arena."""
        nx = animal.x + math.cos(animal.heading) * lookahead - self.cx
        ny = animal.y + math.sin(animal.heading) * lookahead - self.cy
        limit = self.radius - 0.6 * animal.length
        outside = math.hypot(nx, ny) > limit if self.round_arena else max(abs(nx), abs(ny)) > limit
        if outside:
            return math.atan2(self.cy - animal.y, self.cx - animal.x)
        return None

    def _advance(self, animal: _Animal, speed: float, dt: float) -> None:
        animal.speed = speed
        animal.x += math.cos(animal.heading) * speed * dt
        animal.y += math.sin(animal.heading) * speed * dt
        animal.phase += 2 * math.pi * 1.6 * (speed / animal.length) * dt
        self._inside(animal)

    def _move(self, i: int, dt: float) -> None:
        a = self.animals[i]
        rng = self.rng
        b = a.behavior
        L = a.length
        t = a.t
        f = a.params.get("freq", 1.0)
        s = a.params.get("speed", 1.0)
        if b == "rest":
            a.head_yaw *= 0.8
            self._advance(a, 0.0, dt)
        elif b == "groom":
            a.head_yaw = 0.45 * math.sin(2 * math.pi * 4.5 * f * t)
            a.heading += 0.7 * math.sin(2 * math.pi * 2.0 * f * t) * dt  # body sway
            a.phase += 2 * math.pi * 5.0 * f * dt  # forelimb strokes
            a.speed = 0.0
        elif b == "walk":
            a.turn += (-a.turn * 1.5 + rng.normal(0, 3.0)) * dt
            a.heading += a.turn * dt
            wall = self._wall_turn(a, 1.5 * L)
            if wall is not None:
                self._steer(a, wall, 4.0, dt)
            a.head_yaw = 0.8 * a.head_yaw + 0.2 * float(np.clip(a.turn * 0.2, -0.3, 0.3))
            self._advance(a, 1.7 * s * L, dt)
        elif b == "approach":
            p = self.animals[a.target]
            self._steer(a, math.atan2(p.y - a.y, p.x - a.x), 3.0, dt)
            a.head_yaw *= 0.8
            self._advance(a, 0.9 * s * L, dt)
        elif b == "investigate":
            p = self.animals[a.target]
            a.orbit += 0.35 * f * dt * (1 if i % 2 == 0 else -1)
            reach = self._contact(i, a.target) * 0.95
            gx, gy = p.x + reach * math.cos(a.orbit), p.y + reach * math.sin(a.orbit)
            a.x += (gx - a.x) * min(1.0, 2.5 * dt)
            a.y += (gy - a.y) * min(1.0, 2.5 * dt)
            self._steer(a, math.atan2(p.y - a.y, p.x - a.x), 4.0, dt)
            a.head_yaw = 0.18 * math.sin(2 * math.pi * 7.0 * f * t)
            a.speed = 0.3 * L
            self._inside(a)
        elif b == "chase":
            p = self.animals[a.target]
            self._steer(a, math.atan2(p.y - a.y, p.x - a.x), 8.0, dt)
            dist = self._distance(i, a.target)
            speed = 3.8 * s * L if dist > self._contact(i, a.target) * 1.2 else p.speed
            a.head_yaw *= 0.7
            self._advance(a, speed, dt)
        elif b == "flee":
            chaser = self.animals[a.target] if a.target >= 0 else None
            if chaser is not None:
                away = math.atan2(a.y - chaser.y, a.x - chaser.x)
                self._steer(a, away, 5.0, dt)
            wall = self._wall_turn(a, 1.2 * L)
            if wall is not None:
                tangent = wall + (math.pi / 2 if i % 2 else -math.pi / 2)
                self._steer(a, tangent, 9.0, dt)
            self._advance(a, 3.2 * s * L, dt)
        elif b == "attack":
            p = self.animals[a.target]
            bearing = math.atan2(p.y - a.y, p.x - a.x)
            a.heading = bearing + 0.4 * math.sin(2 * math.pi * 8.0 * f * t)
            lunge = abs(math.sin(2 * math.pi * 1.8 * f * t))
            dist = self._contact(i, a.target) * (0.75 + 0.6 * (1.0 - lunge))
            tx, ty = p.x - math.cos(bearing) * dist, p.y - math.sin(bearing) * dist
            nx = a.x + (tx - a.x) * min(1.0, 8.0 * dt) + rng.normal(0, 0.04 * L)
            ny = a.y + (ty - a.y) * min(1.0, 8.0 * dt) + rng.normal(0, 0.04 * L)
            a.speed = math.hypot(nx - a.x, ny - a.y) / dt
            a.x, a.y = nx, ny
            a.phase += 2 * math.pi * 6.0 * dt
            a.head_yaw = 0.3 * math.sin(2 * math.pi * 9.0 * f * t)
            self._inside(a)
        elif b == "defend":
            attacker = self.animals[a.locked_by] if a.locked_by >= 0 else None
            if attacker is not None:
                self._steer(a, math.atan2(attacker.y - a.y, attacker.x - a.x), 6.0, dt)
            a.heading += rng.normal(0, 0.12)
            a.x += rng.normal(0, 0.025 * L)
            a.y += rng.normal(0, 0.025 * L)
            a.head_yaw = 0.2 * math.sin(2 * math.pi * 6.0 * t)
            a.speed = 0.0
            self._inside(a)
        elif b == "mount":
            p = self.animals[a.target]
            thrust = 0.08 * L * math.sin(2 * math.pi * 3.0 * f * t)
            back = 0.18 * p.length - thrust
            tx = p.x - math.cos(p.heading) * back
            ty = p.y - math.sin(p.heading) * back
            k = min(1.0, 5.0 * dt) if t < 0.5 else 1.0
            a.x += (tx - a.x) * k
            a.y += (ty - a.y) * k
            self._steer(a, p.heading, 6.0, dt)
            a.head_yaw *= 0.8
            a.speed = 0.0
            a.phase += 2 * math.pi * 3.0 * f * dt
        else:  # pragma: no cover - every behavior is handled above
            raise AssertionError(b)

    def _separate(self) -> None:
        """Push apart animals that overlap without being in contact behaviors."""
        contact = {"investigate", "attack", "mount", "defend", "approach"}
        n = len(self.animals)
        for i in range(n):
            for j in range(i + 1, n):
                a, b = self.animals[i], self.animals[j]
                if a.behavior in contact or b.behavior in contact:
                    continue
                d = self._distance(i, j)
                need = 0.5 * (a.length + b.length) * 0.8
                if 0 < d < need:
                    # a still animal (rest, groom) is not shoved: the moving one steps aside
                    still_a, still_b = (x.behavior in ("rest", "groom") for x in (a, b))
                    share_a = 0.5 if still_a == still_b else (0.0 if still_a else 1.0)
                    ux, uy = (a.x - b.x) / d, (a.y - b.y) / d
                    a.x += ux * (need - d) * share_a
                    a.y += uy * (need - d) * share_a
                    b.x -= ux * (need - d) * (1.0 - share_a)
                    b.y -= uy * (need - d) * (1.0 - share_a)
                    self._inside(a)
                    self._inside(b)


# ---------------------------------------------------------------------------------- captions
def _join(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return ", ".join(phrases[:-1]) + ", then " + phrases[-1]


def make_caption(
    behaviors: np.ndarray,
    targets: np.ndarray,
    animals: Sequence[AnimalAttributes],
    species: str = "mouse",
) -> str:
    """The caption template: one clause per animal, its behaviors in order of first occurrence.

    Parameters
    ----------
    behaviors : np.ndarray
        (T, n_animals) int ids into :data:`BEHAVIORS` (a whole clip or any segment of it).
    targets : np.ndarray
        (T, n_animals) int partner animal index, -1 for none.
    animals : sequence of AnimalAttributes
    species : str
        Noun for the animals.

    Returns
    -------
    str
        E.g. ``"a large brown mouse chases a small grey mouse, then grooms; the grey mouse
        flees."``
    """
    mentioned: set[int] = set()

    def name(k: int) -> str:
        if k in mentioned:
            return f"the {animals[k].colour} {species}"
        mentioned.add(k)
        return f"a {animals[k].describe(species)}"

    sentences = [f"{name(i)} {animal_clause(behaviors[:, i], targets[:, i], name)}"
                 for i in range(len(animals))]
    return "; ".join(sentences) + "."


def animal_clause(behaviors: np.ndarray, targets: np.ndarray, name: Callable[[int], str]) -> str:
    """What one animal does: its verbs in order of first occurrence (no subject).

    Parameters
    ----------
    behaviors : np.ndarray
        (T,) int ids into :data:`BEHAVIORS` of this animal.
    targets : np.ndarray
        (T,) int partner animal index, -1 for none.
    name : callable
        ``name(k)`` -> the noun phrase of partner ``k`` (e.g. ``"a small grey mouse"``).

    Returns
    -------
    str
        E.g. ``"chases a small grey mouse, then grooms"``.
    """
    seen: list[tuple[int, int]] = []
    for b, tgt in zip(np.asarray(behaviors).tolist(), np.asarray(targets).tolist(), strict=True):
        if (b, tgt) not in seen:
            seen.append((b, tgt))
    phrases: list[str] = []
    k = 0
    while k < len(seen):
        b, tgt = seen[k]
        if tgt < 0 or BEHAVIORS[b] not in _SOCIAL:  # passive roles: the partner is implied
            phrases.append(_VERBS[BEHAVIORS[b]])
            k += 1
            continue
        # consecutive social acts on one partner share its name: "approaches and attacks X"
        verbs = [_VERBS[BEHAVIORS[b]]]
        while k + 1 < len(seen) and seen[k + 1][1] == tgt and BEHAVIORS[seen[k + 1][0]] \
                in _SOCIAL:
            k += 1
            verbs.append(_VERBS[BEHAVIORS[seen[k][0]]])
        verb = verbs[0] if len(verbs) == 1 else ", ".join(verbs[:-1]) + " and " + verbs[-1]
        phrases.append(f"{verb} {name(tgt)}")
        k += 1
    return _join(phrases)


# ---------------------------------------------------------------------------------- clips
def generate_clip(seed: int, config: SynthConfig | None = None) -> SynthClip:
    """Simulate and render one clip.

    Parameters
    ----------
    seed : int
        Seed; the same seed and config give identical frames, labels and caption.
    config : SynthConfig, optional
        Size, fps, length, animals and appearance ranges (defaults: 192x192, 15 fps, 8-12 s).

    Returns
    -------
    SynthClip
        Frames (T, H, W, 3) uint8, behaviors (T, n_animals) int64, tracks, caption, attributes.
    """
    cfg = config or SynthConfig()
    rng = np.random.default_rng(seed)
    n_animals = cfg.n_animals or int(rng.choice([1, 2, 3], p=[0.2, 0.4, 0.4]))
    colour_names = [str(c) for c in rng.choice(list(COLOURS), size=n_animals, replace=False)]
    size_names = [str(s) for s in rng.choice(list(SIZES), size=n_animals)]
    short = min(cfg.size)
    animals = [
        AnimalAttributes(
            id=f"animal{k}", colour=colour_names[k], size=size_names[k],
            stripes=bool(rng.random() < 0.3),
            body_length_px=round(SIZES[size_names[k]] * short * float(rng.uniform(0.93, 1.07)), 2),
        )
        for k in range(n_animals)
    ]
    colours = [np.array(COLOURS[a.colour], dtype=np.float32) * float(rng.uniform(0.9, 1.1))
               for a in animals]
    # A floor that contrasts with every animal, so that animals stay visible.
    contrast = [
        name for name, rgb in _BACKGROUNDS.items()
        if min(float(np.abs(np.array(rgb) - c).sum()) for c in colours) > 120
    ] or list(_BACKGROUNDS)
    background_name = str(rng.choice(contrast))
    n_frames = max(2, round(float(rng.uniform(*cfg.seconds)) * cfg.fps))
    world = _World(rng, cfg, [a.body_length_px for a in animals])
    background = render_background(
        rng, world, np.array(_BACKGROUNDS[background_name], np.float32) * rng.uniform(0.9, 1.1))
    light = render_lighting(rng, world)
    noise = float(rng.uniform(*cfg.noise))
    blur = float(rng.uniform(*cfg.blur))
    crf = int(round(rng.uniform(*cfg.crf)))

    h, w = cfg.size
    frames = np.empty((n_frames, h, w, 3), dtype=np.uint8)
    behaviors = np.empty((n_frames, n_animals), dtype=np.int64)
    targets = np.full((n_frames, n_animals), -1, dtype=np.int64)
    tracks = np.empty((n_frames, n_animals, 3), dtype=np.float32)
    noise_rng = np.random.default_rng([seed, 1])
    stripes = [a.stripes for a in animals]
    for t in range(n_frames):
        for k, a in enumerate(world.animals):
            behaviors[t, k] = _ID[a.behavior]
            if a.target >= 0:
                targets[t, k] = a.target
            elif a.behavior in ("flee", "defend"):
                targets[t, k] = a.locked_by
            tracks[t, k] = (a.x, a.y, (a.heading + math.pi) % (2 * math.pi) - math.pi)
        frames[t] = render_frame(background, world.animals, colours, stripes, t / cfg.fps,
                                 light=light, blur=blur, noise=noise, noise_rng=noise_rng)
        world.step()
    caption = make_caption(behaviors, targets, animals, cfg.species)
    appearance: dict[str, object] = {
        "background": background_name,
        "arena": "round" if world.round_arena else "square",
        "noise_sigma": round(noise, 3),
        "blur_sigma": round(blur, 3),
        "crf": crf,
    }
    return SynthClip(
        frames=frames, behaviors=behaviors, targets=targets, tracks=tracks, animals=animals,
        caption=caption, fps=float(cfg.fps), seed=int(seed), appearance=appearance,
        species=cfg.species,
    )


def intervals_from_frames(ids: np.ndarray) -> list[tuple[int, int, int]]:
    """Runs of equal values: (value, start_frame, end_frame inclusive).

    Parameters
    ----------
    ids : np.ndarray
        (T,) integer per-frame labels.

    Returns
    -------
    list of (int, int, int)
    """
    ids = np.asarray(ids)
    if ids.size == 0:
        return []
    change = np.flatnonzero(np.diff(ids)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change - 1, [len(ids) - 1]])
    return [(int(ids[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True)]


def write_clip(clip: SynthClip, out_dir: str | os.PathLike[str], name: str) -> Path:
    """Write ``NAME.mp4`` (h264), ``NAME.labels.csv`` and ``NAME.json`` (written last).

    Parameters
    ----------
    clip : SynthClip
    out_dir : str or PathLike
        Existing or new folder.
    name : str
        File stem.

    Returns
    -------
    Path
        The video file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = out / f"{name}.mp4"
    encode_h264(video, clip.frames, clip.fps, int(clip.appearance.get("crf", 23)))
    with open(out / f"{name}.labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["behavior", "subject", "start_frame", "end_frame", "start_s", "end_s",
                         "annotator", "source", "confidence"])
        for k, animal in enumerate(clip.animals):
            for b, start, end in intervals_from_frames(clip.behaviors[:, k]):
                writer.writerow([BEHAVIORS[b], animal.id, start, end,
                                 f"{start / clip.fps:.6f}", f"{(end + 1) / clip.fps:.6f}",
                                 "synth", "manual", ""])
    ids = list(enumerate(clip.animals))
    meta = {
        "name": name,
        "video": video.name,
        "caption": clip.caption,
        "seed": clip.seed,
        "fps": clip.fps,
        "width": int(clip.frames.shape[2]),
        "height": int(clip.frames.shape[1]),
        "n_frames": clip.n_frames,
        "behaviors": list(BEHAVIORS),
        "species": clip.species,
        "animals": [dict(vars(a)) for a in clip.animals],
        "appearance": clip.appearance,
        "frame_behaviors": {a.id: clip.behaviors[:, k].tolist() for k, a in ids},
        "frame_targets": {a.id: clip.targets[:, k].tolist() for k, a in ids},
        "tracks": {a.id: np.round(clip.tracks[:, k], 2).tolist() for k, a in ids},
    }
    tmp = out / f"{name}.json.part"
    tmp.write_text(json.dumps(meta))
    os.replace(tmp, out / f"{name}.json")
    return video


def _clip_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def generate_dataset(
    out_dir: str | os.PathLike[str],
    n_videos: int,
    seed: int = 0,
    config: SynthConfig | None = None,
    *,
    prefix: str = "synth",
    overwrite: bool = False,
    workers: int = 1,
) -> list[Path]:
    """Generate ``n_videos`` clips into ``out_dir`` plus ``manifest.jsonl``.

    Clip ``i`` is named ``{prefix}_{i:05d}`` and seeded from (seed, i), so a dataset can be grown
    or regenerated piecewise, and the result does not depend on ``workers``. A clip whose
    ``.json`` (written last) exists with the same seed and size is kept unless ``overwrite``: an
    interrupted run resumes where it stopped.

    Parameters
    ----------
    out_dir : str or PathLike
    n_videos : int
    seed : int
    config : SynthConfig, optional
    prefix : str
    overwrite : bool
    workers : int
        Processes generating clips in parallel (1: in this process).

    Returns
    -------
    list of Path
        The video files, in order.
    """
    cfg = config or SynthConfig()
    if n_videos < 0:
        raise SynthError(f"n_videos must be >= 0, found {n_videos}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out, f"{prefix}_{i:05d}", _clip_seed(seed, i), cfg, overwrite)
            for i in range(n_videos)]
    if workers > 1 and n_videos > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = list(pool.map(_make_clip, jobs))
    else:
        done = [_make_clip(job) for job in jobs]
    entries = [{"path": f"{name}.mp4", "caption": caption, "n_frames": n_frames,
                "labels": f"{name}.labels.csv"} for name, caption, n_frames in done]
    tmp = out / "manifest.jsonl.part"
    tmp.write_text("".join(json.dumps(e) + "\n" for e in entries))
    os.replace(tmp, out / "manifest.jsonl")
    return [out / f"{name}.mp4" for name, _, _ in done]


def _make_clip(job: tuple[Path, str, int, SynthConfig, bool]) -> tuple[str, str, int]:
    """Generate and write one clip unless it exists: (name, caption, n_frames)."""
    out, name, clip_seed, cfg, overwrite = job
    meta = None if overwrite else _existing(out / f"{name}.json", clip_seed, cfg)
    if meta is not None:
        logger.debug("%s exists, kept", name)
        return name, str(meta["caption"]), int(meta["n_frames"])
    clip = generate_clip(clip_seed, cfg)
    write_clip(clip, out, name)
    logger.info("%s: %d frames, %s", name, clip.n_frames, clip.caption)
    return name, clip.caption, clip.n_frames


def _existing(meta_path: Path, clip_seed: int, cfg: SynthConfig) -> dict[str, object] | None:
    video = meta_path.with_name(meta_path.name[: -len(".json")] + ".mp4")
    if not (meta_path.is_file() and video.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    same = (meta.get("seed") == clip_seed and meta.get("fps") == cfg.fps
            and [meta.get("height"), meta.get("width")] == list(cfg.size))
    return meta if same else None
