"""Rendering of the synthetic behavior world (:mod:`prism_science.synth`): pixels from state.

Animals are built from anti-aliased, shaded ellipses (body, head, ears, eyes, nose, limbs, tail
and a soft shadow) blended into a float canvas; the background is a textured floor inside a round
or square arena wall; lighting, blur and camera noise are applied to each frame, and the frames
are compressed to h264. Everything is numpy (and x264) and deterministic given the generators
passed in. The simulation that moves the animals lives in :mod:`prism_science.synth.world`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import numpy as np
from scipy.ndimage import gaussian_filter, zoom


class _Animal(Protocol):
    """What drawing needs of an animal of the simulation (:mod:`prism_science.synth.world`)."""

    length: float
    x: float
    y: float
    heading: float
    phase: float
    head_yaw: float
    behavior: str


class _World(Protocol):
    """What drawing needs of the simulated arena."""

    h: int
    w: int
    cx: float
    cy: float
    radius: float
    round_arena: bool

__all__ = ["encode_h264", "render_background", "render_frame", "render_lighting"]


def render_frame(
    background: np.ndarray,
    animals: Sequence[_Animal],
    colours: Sequence[np.ndarray],
    stripes: Sequence[bool],
    t: float,
    *,
    light: np.ndarray,
    blur: float,
    noise: float,
    noise_rng: np.random.Generator,
) -> np.ndarray:
    """Rasterise one frame: animals on the background, then lighting, blur and camera noise.

    Parameters
    ----------
    background : np.ndarray
        (H, W, 3) float32 from :func:`render_background`; not modified.
    animals : sequence of _Animal
        The world's animals in their current state (position, heading, gait, behavior).
    colours : sequence of np.ndarray
        (3,) float32 RGB body colour per animal.
    stripes : sequence of bool
        Whether each animal is striped.
    t : float
        Seconds since the start of the clip (drives breathing).
    light : np.ndarray
        (H, W, 1) float32 from :func:`render_lighting`.
    blur : float
        Gaussian blur sigma in pixels (none at or below 0.05).
    noise : float
        Camera noise standard deviation in 0-255 units (none at 0).
    noise_rng : np.random.Generator
        Generator of the camera noise; one draw of (H, W, 3) per frame when ``noise > 0``.

    Returns
    -------
    np.ndarray
        (H, W, 3) uint8 RGB.
    """
    canvas = background.copy()
    # mounting animals are drawn last: they are on top
    for k in sorted(range(len(animals)), key=lambda k: animals[k].behavior == "mount"):
        _draw_animal(canvas, animals[k], colours[k], stripes[k], t)
    canvas *= light
    if blur > 0.05:
        canvas = gaussian_filter(canvas, sigma=(blur, blur, 0.0), mode="nearest")
    if noise > 0:
        canvas += noise * noise_rng.standard_normal(canvas.shape, dtype=np.float32)
    np.clip(canvas, 0.0, 255.0, out=canvas)
    return (canvas + 0.5).astype(np.uint8)


def _draw_ellipse(
    canvas: np.ndarray,
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle: float,
    colour: np.ndarray,
    *,
    shade: float = 0.0,
    stripes: float = 0.0,
    period: float = 1.0,
    opacity: float = 1.0,
    soft: float = 1.0,
) -> None:
    """Blend an anti-aliased, optionally shaded and striped ellipse into ``canvas`` in place."""
    h, w = canvas.shape[:2]
    r = max(a, b) + soft + 1.0
    x0, x1 = max(0, int(cx - r)), min(w, int(cx + r) + 2)
    y0, y1 = max(0, int(cy - r)), min(h, int(cy + r) + 2)
    if x0 >= x1 or y0 >= y1:
        return
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + (0.5 - cx)  # (1, w)
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + (0.5 - cy)  # (h, 1)
    c, s = math.cos(angle), math.sin(angle)
    u = dx * c + dy * s  # along the major axis, (h, w)
    v = dy * c - dx * s  # across
    rr = np.sqrt((u / a) ** 2 + (v / b) ** 2)
    alpha = np.clip((1.0 - rr) * (min(a, b) / soft) + 0.5, 0.0, 1.0)
    if opacity != 1.0:
        alpha *= opacity
    region = canvas[y0:y1, x0:x1]
    if shade or stripes:
        factor = np.ones_like(u)
        if shade:
            factor -= shade * np.minimum((v / b) ** 2, 1.0)
        if stripes:
            factor *= 1.0 - stripes * (0.5 + 0.5 * np.sin(u * (2 * math.pi / period)))
        region += alpha[..., None] * (factor[..., None] * colour - region)
    else:
        region += alpha[..., None] * (colour - region)


def _draw_animal(
    canvas: np.ndarray, animal: _Animal, colour: np.ndarray, stripes: bool, t: float
) -> None:
    L = animal.length
    h = animal.heading
    d = np.array([math.cos(h), math.sin(h)])
    p = np.array([-d[1], d[0]])
    centre = np.array([animal.x, animal.y])
    breathe = 1.0 + 0.04 * math.sin(2 * math.pi * 1.3 * t) if animal.behavior == "rest" else 1.0
    dark = colour * 0.55
    pink = 0.5 * colour + 0.5 * np.array([230.0, 150.0, 150.0])
    # shadow
    _draw_ellipse(canvas, centre[0] + 0.08 * L, centre[1] + 0.1 * L, 0.42 * L, 0.27 * L, h,
                  np.zeros(3), opacity=0.3, soft=0.15 * L)
    # tail: a swaying chain of shrinking discs
    base = centre - d * 0.33 * L
    sway = animal.phase * 0.5
    for k in range(1, 8):
        off = 0.1 * L * math.sin(sway + 0.7 * k) * k / 7
        q = base - d * (0.085 * L * k) + p * off
        rad = 0.04 * L * (1.0 - 0.08 * k)
        _draw_ellipse(canvas, q[0], q[1], rad, rad, 0.0, pink * 0.8)
    # limbs: diagonal pairs in anti-phase
    for along, side, ph in ((0.2, 1, 0.0), (0.2, -1, math.pi), (-0.2, 1, math.pi), (-0.2, -1, 0)):
        q = centre + d * (along * L + 0.08 * L * math.sin(animal.phase + ph)) + p * side * 0.21 * L
        _draw_ellipse(canvas, q[0], q[1], 0.07 * L, 0.04 * L, h, dark)
    # body
    _draw_ellipse(canvas, centre[0], centre[1], 0.34 * L, 0.22 * L * breathe, h, colour,
                  shade=0.35, stripes=0.35 if stripes else 0.0, period=0.13 * L)
    # head, turned by head_yaw around the neck
    hh = h + animal.head_yaw
    hd = np.array([math.cos(hh), math.sin(hh)])
    hp = np.array([-hd[1], hd[0]])
    neck = centre + d * 0.27 * L
    head = neck + hd * 0.13 * L
    for side in (1, -1):
        ear = neck + hd * 0.04 * L + hp * side * 0.1 * L
        _draw_ellipse(canvas, ear[0], ear[1], 0.055 * L, 0.05 * L, hh, pink)
    _draw_ellipse(canvas, head[0], head[1], 0.16 * L, 0.115 * L, hh, colour * 0.95, shade=0.3)
    nose = neck + hd * 0.28 * L
    _draw_ellipse(canvas, nose[0], nose[1], 0.03 * L, 0.03 * L, 0.0, pink)
    for side in (1, -1):
        eye = head + hd * 0.04 * L + hp * side * 0.065 * L
        _draw_ellipse(canvas, eye[0], eye[1], 0.025 * L, 0.025 * L, 0.0, np.full(3, 15.0))


def render_background(
    rng: np.random.Generator, world: _World, colour: np.ndarray
) -> np.ndarray:
    """The clip's static floor and arena wall: textured floor inside, darker wall outside.

    Parameters
    ----------
    rng : np.random.Generator
        The clip's generator (texture, speckle and wall shade are drawn from it).
    world : _World
        Frame size and arena (centre, radius, round or square).
    colour : np.ndarray
        (3,) float32 RGB floor colour in 0-255 units.

    Returns
    -------
    np.ndarray
        (H, W, 3) float32 in 0-255 units.
    """
    h, w = world.h, world.w
    coarse = rng.normal(0.0, 1.0, size=(6, 6))
    texture = zoom(coarse, (h / 6, w / 6), order=3)[:h, :w] * rng.uniform(4.0, 14.0)
    speckle = rng.normal(0.0, rng.uniform(0.0, 6.0), size=(h, w))
    floor = colour[None, None, :] + (texture + speckle)[..., None]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    if world.round_arena:
        dist = np.hypot(xs - world.cx, ys - world.cy) - world.radius
    else:
        dist = np.maximum(np.abs(xs - world.cx), np.abs(ys - world.cy)) - world.radius
    inside = np.clip(0.5 - dist / 1.5, 0.0, 1.0)[..., None]
    wall = colour * rng.uniform(0.35, 0.6)
    return (inside * floor + (1.0 - inside) * wall).astype(np.float32)


def render_lighting(rng: np.random.Generator, world: _World) -> np.ndarray:
    """The clip's lighting: overall brightness times a linear gradient times vignetting.

    Parameters
    ----------
    rng : np.random.Generator
        The clip's generator.
    world : _World
        Frame size and arena.

    Returns
    -------
    np.ndarray
        (H, W, 1) float32 multiplicative factor.
    """
    h, w = world.h, world.w
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    phi = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(0.0, 0.35)
    gradient = 1.0 + slope * ((xs - world.cx) * math.cos(phi) + (ys - world.cy) * math.sin(phi)) / w
    vignette = 1.0 - rng.uniform(0.0, 0.3) * ((xs - world.cx) ** 2 + (ys - world.cy) ** 2) / (
        world.radius**2 * 2)
    return (rng.uniform(0.8, 1.15) * gradient * vignette)[..., None].astype(np.float32)


def encode_h264(path: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    """Compress frames to an h264 mp4 (yuv420p), written to ``path`` atomically.

    Parameters
    ----------
    path : Path
        The mp4 file; written as ``path.part`` first, then renamed.
    frames : np.ndarray
        (T, H, W, 3) uint8 RGB, H and W even.
    fps : float
        Frame rate (as a fraction with a denominator up to 1001).
    crf : int
        x264 constant rate factor, 0-51 (lower is better quality).
    """
    tmp = path.with_name(path.name + ".part")
    with av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "fast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)
