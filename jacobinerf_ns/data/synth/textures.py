"""Procedural textures: pure numpy functions of 2D surface coordinates (metres) and a :class:`Material`.

Every texture returns sRGB albedo in [0, 1]. Feature sizes are kept at several centimetres or more, so that the
default 160x120 renders show patterns a few pixels wide (a small NeRF can fit them; there is no per-pixel noise).
Noise is a hashed value-noise lattice, so a texture is a deterministic function of (coordinates, material seed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from jaxtyping import Float

Rgb = tuple[float, float, float]


@dataclass(frozen=True)
class Material:
    """Appearance of a surface: a texture kind with its colours and scale; optionally self-luminous."""

    name: str
    """Human-readable name (materials with the same name share colours across objects and classes)."""
    kind: str
    """Texture kind, a key of :data:`TEXTURES`."""
    colors: tuple[Rgb, ...]
    """sRGB colours in [0, 1] the texture mixes (the first is the base colour)."""
    scale: float = 0.1
    """Main feature size of the pattern (metres)."""
    seed: int = 0
    """Seed of the noise lattice."""
    mapping: str = "box"
    """How 3D texture coordinates become 2D: ``box`` (drop the dominant normal axis) or ``cyl`` (angle, height)."""
    emissive: float = 0.0
    """If > 0 the surface is self-luminous: radiance = albedo * emissive, no shading."""
    extra: tuple[float, ...] = field(default_factory=tuple)
    """Kind-specific parameters (e.g. the size of a door leaf)."""


# --------------------------------------------------------------------------------------------------------- noise
_TABLE = 256


@lru_cache(maxsize=1024)
def _lattice(seed: int) -> Float[np.ndarray, "256 256"]:
    """Random lattice values in [0, 1) for a seed (period 256 cells in both directions)."""
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, 7])).random((_TABLE, _TABLE))


def _hash2(ix: Float[np.ndarray, " n"], iy: Float[np.ndarray, " n"], seed: int) -> Float[np.ndarray, " n"]:
    """Deterministic pseudo-random values in [0, 1) for integer lattice points."""
    return _lattice(seed)[ix.astype(np.int64) & (_TABLE - 1), iy.astype(np.int64) & (_TABLE - 1)]


def value_noise(x: Float[np.ndarray, " n"], y: Float[np.ndarray, " n"], seed: int) -> Float[np.ndarray, " n"]:
    """Smooth value noise in [0, 1] with unit lattice spacing."""
    fx0, fy0 = np.floor(x), np.floor(y)
    fx, fy = x - fx0, y - fy0
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    m = _TABLE - 1
    ix, iy = fx0.astype(np.int64) & m, fy0.astype(np.int64) & m
    jx, jy = (ix + 1) & m, (iy + 1) & m
    tab = _lattice(seed)
    a = tab[ix, iy] + (tab[jx, iy] - tab[ix, iy]) * sx
    b = tab[ix, jy] + (tab[jx, jy] - tab[ix, jy]) * sx
    return a + (b - a) * sy


def fbm(x: Float[np.ndarray, " n"], y: Float[np.ndarray, " n"], seed: int, octaves: int = 2) -> Float[np.ndarray, " n"]:
    """Fractal sum of value noise (octaves halve in size and amplitude), normalised to [0, 1]."""
    total, amp, norm = np.zeros_like(x), 1.0, 0.0
    for k in range(octaves):
        f = 2.0**k
        total += amp * value_noise(x * f, y * f, seed + 101 * k)
        norm += amp
        amp *= 0.5
    return total / norm


def cell_random(ix: Float[np.ndarray, " n"], iy: Float[np.ndarray, " n"], seed: int) -> Float[np.ndarray, " n"]:
    """One random value in [0, 1) per integer cell (for per-plank / per-tile variation)."""
    return _hash2(ix, iy, seed + 7919)


def _smoothstep(e0: float, e1: float, x: Float[np.ndarray, " n"]) -> Float[np.ndarray, " n"]:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _mix(
    a: Float[np.ndarray, "n 3"], b: Float[np.ndarray, "n 3"], w: Float[np.ndarray, " n"]
) -> Float[np.ndarray, "n 3"]:
    return a + (b - a) * w[:, None]


def _color(c: Rgb, n: int) -> Float[np.ndarray, "n 3"]:
    return np.broadcast_to(np.asarray(c, dtype=np.float64), (n, 3))


def _c(m: Material, k: int) -> Rgb:
    return m.colors[min(k, len(m.colors) - 1)]


# ------------------------------------------------------------------------------------------------------ textures
def solid(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Flat colour with faint large blotches (paint, plaster, plastic)."""
    n = value_noise(st[:, 0] / max(m.scale, 0.3), st[:, 1] / max(m.scale, 0.3), m.seed)
    return _color(_c(m, 0), len(st)) * (0.95 + 0.1 * n)[:, None]


def wood(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Wood grain: wavy dark stripes running along s, spaced ``scale`` apart across t."""
    s, t = st[:, 0], st[:, 1]
    warp = fbm(s * 1.2, t * 5.0, m.seed)
    u = t / m.scale + 1.6 * warp
    stripe = (0.5 + 0.5 * np.cos(2 * np.pi * u)) ** 2
    base = _mix(_color(_c(m, 0), len(st)), _color(_c(m, 1), len(st)), 0.55 * stripe)
    return base * (0.94 + 0.12 * value_noise(s * 3.0, t * 8.0, m.seed + 3))[:, None]


def planks(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Floor boards ``scale`` wide and 1.2 m long, staggered, each with its own tint and grain; dark joints."""
    s, t = st[:, 0], st[:, 1]
    length = 1.2
    row = np.floor(t / m.scale)
    shift = cell_random(row, row * 0 + 3, m.seed) * length
    col = np.floor((s + shift) / length)
    tint = 0.86 + 0.28 * cell_random(col, row, m.seed)
    u = (t + 0.37 * row) / (m.scale * 0.6) + 1.2 * value_noise((s + 5.0 * col) * 1.5, t * 6.0, m.seed)
    stripe = (0.5 + 0.5 * np.cos(2 * np.pi * u)) ** 2
    grain = _mix(_color(_c(m, 0), len(st)), _color(_c(m, 1), len(st)), 0.5 * stripe)
    du = np.minimum(t / m.scale - row, 1 - (t / m.scale - row)) * m.scale
    dv = np.minimum((s + shift) / length - col, 1 - ((s + shift) / length - col)) * length
    joint = np.minimum(du, dv) < 0.005
    return grain * np.where(joint, 0.6, tint)[:, None]


def tiles(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Square tiles of side ``scale`` (optionally checkered with colour 2) with grout lines of colour 1."""
    s, t = st[:, 0] / m.scale, st[:, 1] / m.scale
    i, j = np.floor(s), np.floor(t)
    base = _color(_c(m, 0), len(st))
    if len(m.colors) > 2:
        base = np.where(((i + j) % 2 == 1)[:, None], _color(_c(m, 2), len(st)), base)
    tint = 0.93 + 0.14 * cell_random(i, j, m.seed)
    mottled = 0.95 + 0.1 * fbm(st[:, 0] * 6, st[:, 1] * 6, m.seed)
    grout_w = 0.008 / m.scale
    fs, ft = s - i, t - j
    grout = (np.minimum(fs, 1 - fs) < grout_w) | (np.minimum(ft, 1 - ft) < grout_w)
    out = base * (tint * mottled)[:, None]
    return np.where(grout[:, None], _color(_c(m, 1), len(st)), out)


def fabric(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Upholstery: a soft weave of period ``scale`` with slow colour variation."""
    s, t = st[:, 0], st[:, 1]
    weave = 0.5 + 0.25 * (np.sin(2 * np.pi * s / m.scale) + np.sin(2 * np.pi * t / m.scale))
    slow = fbm(s * 2.5, t * 2.5, m.seed)
    return _color(_c(m, 0), len(st)) * (0.88 + 0.12 * weave + 0.12 * (slow - 0.5))[:, None]


def plaid(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Tartan: bands of colour 1 along both directions every ``scale``, crossings in colour 2."""
    fs = (st[:, 0] / m.scale) % 1.0
    ft = (st[:, 1] / m.scale) % 1.0
    a = (fs < 0.28).astype(np.float64)
    b = (ft < 0.28).astype(np.float64)
    out = _color(_c(m, 0), len(st))
    out = _mix(out, _color(_c(m, 1), len(st)), np.maximum(a, b) * 0.85)
    out = _mix(out, _color(_c(m, 2), len(st)), a * b)
    weave = np.sin(2 * np.pi * st[:, 0] / 0.1) * np.sin(2 * np.pi * st[:, 1] / 0.1)
    return out * (0.96 + 0.04 * weave)[:, None]


def stripes(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Bands ``scale`` wide across t, cycling through the material's colours."""
    k = np.floor(st[:, 1] / m.scale).astype(np.int64) % len(m.colors)
    cols = np.asarray(m.colors, dtype=np.float64)[k]
    return cols * (0.95 + 0.1 * fbm(st[:, 0] * 3, st[:, 1] * 3, m.seed))[:, None]


def blotch(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Two-colour stone / terrazzo-like blotches of size ``scale``."""
    n = fbm(st[:, 0] / m.scale, st[:, 1] / m.scale, m.seed, octaves=3)
    return _mix(_color(_c(m, 0), len(st)), _color(_c(m, 1), len(st)), _smoothstep(0.4, 0.6, n))


def leaves(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Foliage: clumps of two greens with dark gaps, clump size ``scale``."""
    s, t = st[:, 0] / m.scale, st[:, 1] / m.scale
    n1 = fbm(s, t, m.seed)
    n2 = value_noise(s * 2.0 + 5.3, t * 2.0 + 1.7, m.seed + 1)
    out = _mix(_color(_c(m, 0), len(st)), _color(_c(m, 1), len(st)), _smoothstep(0.35, 0.65, n1))
    return out * (0.55 + 0.45 * _smoothstep(0.2, 0.5, n2))[:, None]


def painting(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Abstract canvas: smooth regions of the material's colours arranged by two noise fields."""
    s, t = st[:, 0] / m.scale, st[:, 1] / m.scale
    n1 = fbm(s, t, m.seed)
    n2 = fbm(s + 17.3, t - 4.1, m.seed + 1)
    cols = np.asarray(m.colors, dtype=np.float64)
    anchors = np.stack([np.linspace(0.25, 0.75, len(cols)), (np.arange(len(cols)) * 0.618) % 0.6 + 0.2], axis=1)
    d2 = (n1[:, None] - anchors[None, :, 0]) ** 2 + (n2[:, None] - anchors[None, :, 1]) ** 2
    w = np.exp(-d2 / 0.006)
    w /= w.sum(axis=1, keepdims=True) + 1e-12
    return w @ cols


def panel(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Cabinet front: flat colour with dark vertical joints every ``scale`` (door leaves)."""
    f = (st[:, 0] / m.scale) % 1.0
    joint = np.minimum(f, 1 - f) * m.scale < 0.006
    base = solid(st, m)
    return base * np.where(joint, 0.55, 1.0)[:, None]


def door(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Door leaf of size ``extra = (width, height)`` (s centred, t from the floor) with two inset panel outlines."""
    w, h = m.extra if len(m.extra) == 2 else (0.9, 2.05)
    s, t = np.abs(st[:, 0]), st[:, 1]
    inset = 0.13
    inner_w = w / 2 - inset
    split = 0.45 * h
    in_x = np.abs(s - inner_w) < 0.012
    lower = (t > inset) & (t < split - inset / 2)
    upper = (t > split + inset / 2) & (t < h - inset)
    edge_x = in_x & (lower | upper)
    edge_t = (s < inner_w) & (
        (np.abs(t - inset) < 0.012)
        | (np.abs(t - (split - inset / 2)) < 0.012)
        | (np.abs(t - (split + inset / 2)) < 0.012)
        | (np.abs(t - (h - inset)) < 0.012)
    )
    base = solid(st, m)
    return base * np.where(edge_x | edge_t, 0.7, 1.0)[:, None]


def screen(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """A switched-off screen: near black with a broad diagonal sheen."""
    d = (st[:, 0] + 0.8 * st[:, 1]) / max(m.scale, 1e-3)
    sheen = _smoothstep(0.0, 0.5, d) * _smoothstep(1.2, 0.6, d)
    return _color(_c(m, 0), len(st)) + 0.1 * sheen[:, None]


def outside(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """The view through a window (pane-centred coordinates): sky gradient over a band of trees."""
    s, t = st[:, 0], st[:, 1]
    horizon = -0.15 + 0.25 * fbm(s * 2.0, s * 0.0, m.seed)
    sky = _mix(_color(_c(m, 1), len(st)), _color(_c(m, 0), len(st)), _smoothstep(-0.2, 0.6, t))
    trees = leaves(st, Material("trees", "leaves", (_c(m, 2), _c(m, 3)), scale=0.12, seed=m.seed + 5))
    return _mix(sky, trees, (t < horizon).astype(np.float64))


def book(st: Float[np.ndarray, "n 2"], m: Material) -> Float[np.ndarray, "n 3"]:
    """Book spine (t = 0 at the top edge, negative downwards): base colour with a band of colour 1 near the top."""
    t = st[:, 1]
    band = ((t < -0.03) & (t > -0.06)) | ((t < -0.14) & (t > -0.155))
    return np.where(band[:, None], _color(_c(m, 1), len(st)), solid(st, m))


TEXTURES: dict[str, Callable[[np.ndarray, Material], np.ndarray]] = {
    "solid": solid,
    "wood": wood,
    "planks": planks,
    "tiles": tiles,
    "fabric": fabric,
    "plaid": plaid,
    "stripes": stripes,
    "blotch": blotch,
    "leaves": leaves,
    "painting": painting,
    "panel": panel,
    "door": door,
    "screen": screen,
    "outside": outside,
    "book": book,
}
"""Texture kind → function ``(st, material) -> sRGB``."""

STATIONARY_TEXTURES = frozenset({"solid", "wood", "planks", "tiles", "fabric", "plaid", "stripes", "blotch", "leaves"})
"""Kinds whose pattern looks alike under any shift of the coordinates (the others are laid out on their object)."""


def surface_coords(p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"], mapping: str) -> Float[np.ndarray, "n 2"]:
    """2D texture coordinates from 3D texture-frame points ``p`` and normals ``n``.

    ``box``: drop the axis the normal points along (x → (y, z), y → (x, z), z → (x, y)).
    ``cyl``: (arc length at 0.15 m radius, z) on the sides, (x, y) on the caps.
    """
    axis = np.argmax(np.abs(n), axis=1)
    s = np.where(axis == 0, p[:, 1], p[:, 0])
    t = np.where(axis == 2, p[:, 1], p[:, 2])
    if mapping == "cyl":
        side = np.abs(n[:, 2]) < 0.7
        s = np.where(side, np.arctan2(p[:, 1], p[:, 0]) * 0.15, s)
        t = np.where(side, p[:, 2], t)
    return np.stack([s, t], axis=1)


def shade_albedo(m: Material, p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
    """sRGB albedo of material ``m`` at texture-frame points ``p`` with texture-frame normals ``n``."""
    st = surface_coords(p, n, m.mapping)
    return np.clip(TEXTURES[m.kind](st, m), 0.0, 1.0)
