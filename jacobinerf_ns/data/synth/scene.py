"""Room layout and object meshes with exact per-face class, instance and material.

World frame: metres, z up, the floor is z = 0, the room spans x in [-Lx/2, Lx/2], y in [-Ly/2, Ly/2], z in [0, Lz].
Every object is built from parts in its own frame (origin at the centre of its footprint on its base, +y = its front)
and placed by a pose (rotation about z, translation). Placement rejects overlaps of world bounding boxes, so objects
never interpenetrate except where one stands on another.

Walls are numbered 0..3: 0 at y = -Ly/2, 1 at x = +Lx/2, 2 at y = +Ly/2, 3 at x = -Lx/2. An object against wall w has
yaw ``w * 90 degrees`` (its front faces the room).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import trimesh
from jaxtyping import Float, Int

from jacobinerf_ns.data.synth.classes import VOID_ID, class_id
from jacobinerf_ns.data.synth.config import SynthConfig
from jacobinerf_ns.data.synth.textures import STATIONARY_TEXTURES, Material, Rgb

Mat4 = Float[np.ndarray, "4 4"]


# ------------------------------------------------------------------------------------------------ transforms
def rot_z(angle: float) -> Mat4:
    """Rotation about z by ``angle`` radians (homogeneous)."""
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    return m


def rot_x(angle: float) -> Mat4:
    """Rotation about x by ``angle`` radians (homogeneous)."""
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(4)
    m[1:3, 1:3] = [[c, -s], [s, c]]
    return m


def rot_y(angle: float) -> Mat4:
    """Rotation about y by ``angle`` radians (homogeneous)."""
    c, s = math.cos(angle), math.sin(angle)
    m = np.eye(4)
    m[0, 0], m[0, 2], m[2, 0], m[2, 2] = c, s, -s, c
    return m


def translate(x: float, y: float, z: float) -> Mat4:
    """Translation (homogeneous)."""
    m = np.eye(4)
    m[:3, 3] = (x, y, z)
    return m


def _apply(m: Mat4, p: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
    return p @ m[:3, :3].T + m[:3, 3]


# ---------------------------------------------------------------------------------------------------- meshes
def box(size: tuple[float, float, float], center: tuple[float, float, float]) -> trimesh.Trimesh:
    """Axis-aligned box of ``size`` centred at ``center``."""
    m = trimesh.creation.box(extents=size)
    m.apply_translation(center)
    return m


def box_lo(size: tuple[float, float, float], x: float, y: float, z0: float) -> trimesh.Trimesh:
    """Box of ``size`` centred at (x, y) horizontally whose bottom is at z0."""
    return box(size, (x, y, z0 + size[2] / 2))


def cylinder(radius: float, height: float, x: float, y: float, z0: float, sections: int = 20) -> trimesh.Trimesh:
    """Vertical cylinder standing on z0."""
    m = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    m.apply_translation((x, y, z0 + height / 2))
    return m


def revolve(profile: list[tuple[float, float]], sections: int = 24) -> trimesh.Trimesh:
    """Solid of revolution about z from a (radius, z) profile that starts and ends on the axis; outward normals."""
    m = trimesh.creation.revolve(np.asarray(profile, dtype=np.float64), sections=sections)
    m.merge_vertices()
    m.update_faces(m.nondegenerate_faces())
    m.remove_unreferenced_vertices()
    if m.volume < 0:
        m.invert()
    return m


def blob(
    radii: tuple[float, float, float],
    center: tuple[float, float, float],
    rng: np.random.Generator,
    bumpiness: float = 0.12,
) -> trimesh.Trimesh:
    """A lumpy ellipsoid (foliage, cushions, bags)."""
    m = trimesh.creation.icosphere(subdivisions=2)
    v = m.vertices * (1.0 + bumpiness * (rng.random((len(m.vertices), 1)) - 0.5))
    m.vertices = v * np.asarray(radii) + np.asarray(center)
    return m


# ------------------------------------------------------------------------------------------------ structures
@dataclass
class Part:
    """A mesh in its object's frame with one material and a texture frame (object frame → texture frame)."""

    mesh: trimesh.Trimesh
    material: Material
    tex: Mat4 = field(default_factory=lambda: np.eye(4))


@dataclass
class SceneObject:
    """One placed object: an instance (0 for void clutter) of a class."""

    instance_id: int
    class_id: int
    class_name: str
    label: str
    parts: list[Part]
    pose: Mat4
    bounds: Float[np.ndarray, "2 3"]


@dataclass(frozen=True)
class Light:
    """A point light; the geometry of instance ``owner`` (its lamp) does not shadow it."""

    name: str
    position: tuple[float, float, float]
    color: tuple[float, float, float]
    intensity: float
    owner: int


@dataclass
class Scene:
    """The assembled scene: one triangle soup with per-face ids, plus materials, objects and lights."""

    room_size: tuple[float, float, float]
    vertices: Float[np.ndarray, "v 3"]
    faces: Int[np.ndarray, "f 3"]
    face_normals: Float[np.ndarray, "f 3"]
    face_instance: Int[np.ndarray, " f"]
    face_class: Int[np.ndarray, " f"]
    face_material: Int[np.ndarray, " f"]
    face_part: Int[np.ndarray, " f"]
    part_tex_affine: Float[np.ndarray, "p 3 4"]
    """Per part: world point -> texture-frame point (rigid), so texture coordinates are exact at any hit."""
    materials: list[Material]
    objects: list[SceneObject]
    lights: list[Light]
    obstacles: Float[np.ndarray, "k 2 3"]

    def mesh(self) -> trimesh.Trimesh:
        """The scene as a trimesh (no vertex merging; face order = the per-face arrays)."""
        return trimesh.Trimesh(self.vertices, self.faces, process=False)

    def instance_mesh(self, instance_id: int) -> trimesh.Trimesh:
        """The faces of one instance (instance 0 = all void clutter)."""
        sel = self.face_instance == instance_id
        return trimesh.Trimesh(self.vertices, self.faces[sel], process=False)

    @property
    def num_instances(self) -> int:
        return int(self.face_instance.max())


# ------------------------------------------------------------------------------------------------- palette
WOODS: dict[str, tuple[Rgb, Rgb]] = {
    "oak": ((0.80, 0.64, 0.44), (0.60, 0.44, 0.28)),
    "walnut": ((0.45, 0.30, 0.20), (0.28, 0.18, 0.11)),
    "cherry": ((0.66, 0.38, 0.25), (0.48, 0.25, 0.15)),
    "ash": ((0.84, 0.78, 0.68), (0.68, 0.61, 0.51)),
    "teak": ((0.62, 0.44, 0.26), (0.45, 0.30, 0.16)),
}
# fmt: off
WALL_PAINTS: tuple[Rgb, ...] = (
    (0.93, 0.92, 0.88), (0.90, 0.88, 0.83), (0.87, 0.89, 0.88), (0.92, 0.89, 0.86), (0.88, 0.88, 0.90),
)
ACCENTS: tuple[Rgb, ...] = (
    (0.55, 0.63, 0.55), (0.45, 0.55, 0.66), (0.76, 0.52, 0.42), (0.60, 0.60, 0.63), (0.86, 0.76, 0.56),
)
FABRICS: tuple[Rgb, ...] = (
    (0.55, 0.55, 0.57), (0.32, 0.33, 0.36), (0.78, 0.72, 0.62), (0.22, 0.28, 0.42), (0.78, 0.58, 0.22),
    (0.20, 0.45, 0.45), (0.68, 0.36, 0.27), (0.45, 0.48, 0.30), (0.85, 0.65, 0.65), (0.50, 0.35, 0.50),
)
PAINTS: tuple[Rgb, ...] = (
    (0.12, 0.12, 0.13), (0.22, 0.28, 0.42), (0.55, 0.63, 0.55), (0.80, 0.62, 0.25), (0.65, 0.22, 0.20),
    (0.60, 0.60, 0.62),
)
CERAMICS: tuple[Rgb, ...] = (
    (0.92, 0.91, 0.88), (0.72, 0.42, 0.30), (0.25, 0.40, 0.65), (0.35, 0.55, 0.40), (0.15, 0.15, 0.16),
    (0.90, 0.75, 0.35),
)
BOOKS: tuple[Rgb, ...] = (
    (0.62, 0.15, 0.15), (0.15, 0.25, 0.50), (0.20, 0.42, 0.25), (0.90, 0.86, 0.75), (0.10, 0.10, 0.12),
    (0.85, 0.50, 0.15), (0.45, 0.25, 0.45), (0.30, 0.55, 0.65), (0.75, 0.70, 0.30),
)
# fmt: on


class Palette:
    """The materials of one scene, with deliberate sharing across classes."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        wall = _jit(rng, WALL_PAINTS[rng.integers(len(WALL_PAINTS))], 0.015)
        self.wall = Material("wall-paint", "solid", (wall,), scale=0.8, seed=self._seed())
        self.accent = None
        if rng.random() < 0.5:
            acc = _jit(rng, ACCENTS[rng.integers(len(ACCENTS))], 0.02)
            self.accent = Material("accent-paint", "solid", (acc,), scale=0.8, seed=self._seed())
        self.ceiling = Material("ceiling-paint", "solid", ((0.95, 0.95, 0.94),), scale=1.0, seed=self._seed())
        self.trim = Material("trim-white", "solid", ((0.96, 0.96, 0.95),), scale=1.0, seed=self._seed())
        names = list(WOODS)
        order = rng.permutation(len(names))
        self.woods = [self._wood(names[i]) for i in order[:3]]
        self.floor = self._floor(names[order[3]])
        fab = rng.permutation(len(FABRICS))
        self.fabrics = [
            Material(f"fabric-{k}", "fabric", (_jit(rng, FABRICS[i], 0.02),), rng.uniform(0.06, 0.09), self._seed())
            for k, i in enumerate(fab[:5])
        ]
        self.metal_black = Material("metal-black", "solid", ((0.10, 0.10, 0.11),), 1.0, self._seed())
        self.brass = Material("brass", "solid", ((0.72, 0.56, 0.30),), 1.0, self._seed())
        self.steel = Material("steel", "solid", ((0.62, 0.63, 0.65),), 1.0, self._seed())
        self.lamp_glow = Material("lamp-glow", "solid", ((1.0, 0.92, 0.78),), 1.0, self._seed(), emissive=1.6)
        self.shade_glow = Material(
            "shade-glow", "fabric", ((0.98, 0.93, 0.82),), 0.08, self._seed(), "cyl", emissive=1.1
        )
        self.dark = Material("soil", "blotch", ((0.22, 0.16, 0.11), (0.12, 0.09, 0.06)), 0.04, self._seed())
        self.screen = Material("screen", "screen", ((0.05, 0.06, 0.07),), scale=1.2, seed=self._seed())

    def _seed(self) -> int:
        return int(self.rng.integers(1 << 30))

    def _wood(self, name: str) -> Material:
        light, dark = WOODS[name]
        return Material(f"wood-{name}", "wood", (light, dark), self.rng.uniform(0.08, 0.13), self._seed())

    def _floor(self, wood_name: str) -> Material:
        rng = self.rng
        if rng.random() < 0.65:
            light, dark = WOODS[wood_name]
            return Material(f"floor-{wood_name}", "planks", (light, dark), rng.uniform(0.14, 0.2), self._seed())
        a = _jit(rng, ((0.82, 0.80, 0.76), (0.62, 0.62, 0.63), (0.78, 0.70, 0.60))[rng.integers(3)], 0.02)
        cols: tuple[Rgb, ...] = (a, tuple(0.75 * c for c in a))  # type: ignore[assignment]
        if rng.random() < 0.3:
            cols = (*cols, tuple(0.55 * c for c in a))  # type: ignore[assignment]
        return Material("floor-tiles", "tiles", cols, rng.uniform(0.3, 0.6), self._seed())

    def paint(self) -> Material:
        """A painted-furniture colour (not the wall's)."""
        c = PAINTS[self.rng.integers(len(PAINTS))]
        return Material(f"paint-{c[0]:.2f}-{c[1]:.2f}", "solid", (c,), 0.8, self._seed())

    def pattern(self, base: Material, other: Material) -> Material:
        """A patterned textile (plaid / stripes / blotch) from two fabric colours and cream."""
        kind = ("plaid", "stripes", "blotch")[self.rng.integers(3)]
        cream = (0.9, 0.87, 0.8)
        scale = {"plaid": 0.14, "stripes": 0.07, "blotch": 0.12}[kind] * self.rng.uniform(0.8, 1.4)
        cols = (base.colors[0], other.colors[0], cream)
        return Material(f"{kind}-{base.name}-{other.name}", kind, cols, scale, self._seed())

    def ceramic(self) -> Material:
        rng = self.rng
        c = CERAMICS[rng.integers(len(CERAMICS))]
        if rng.random() < 0.4:
            c2 = CERAMICS[rng.integers(len(CERAMICS))]
            return Material("ceramic-striped", "stripes", (c, c2), rng.uniform(0.03, 0.06), self._seed(), "cyl")
        return Material(f"ceramic-{c[0]:.2f}", "solid", (c,), 0.3, self._seed(), "cyl")

    def painting(self) -> Material:
        rng = self.rng
        n = int(rng.integers(3, 6))
        cols = tuple(tuple(float(v) for v in rng.uniform(0.1, 0.95, 3)) for _ in range(n))
        return Material("painting", "painting", cols, rng.uniform(0.2, 0.45), self._seed())

    def book(self) -> Material:
        rng = self.rng
        c = _jit(rng, BOOKS[rng.integers(len(BOOKS))], 0.03)
        band = ((0.85, 0.72, 0.35), (0.92, 0.9, 0.85), (0.1, 0.1, 0.1))[rng.integers(3)]
        return Material("book", "book", (c, band), 0.5, self._seed())

    def leaves(self) -> Material:
        rng = self.rng
        g1 = _jit(rng, (0.22, 0.45, 0.18), 0.04)
        g2 = _jit(rng, (0.40, 0.58, 0.22), 0.04)
        return Material("leaves", "leaves", (g1, g2), rng.uniform(0.08, 0.12), self._seed())

    def outside(self) -> Material:
        rng = self.rng
        cols = ((0.55, 0.72, 0.92), (0.88, 0.92, 0.95), _jit(rng, (0.25, 0.42, 0.2), 0.04), (0.38, 0.52, 0.25))
        return Material("outside", "outside", cols, 1.0, self._seed(), emissive=1.25)

    def clutter(self) -> Material:
        rng = self.rng
        c = tuple(float(v) for v in rng.uniform(0.15, 0.9, 3))
        return Material("clutter", "solid", (c,), 0.3, self._seed())


def _jit(rng: np.random.Generator, c: Rgb, amount: float) -> Rgb:
    v = np.clip(np.asarray(c) + rng.uniform(-amount, amount, 3), 0.0, 1.0)
    return (float(v[0]), float(v[1]), float(v[2]))


# ------------------------------------------------------------------------------------------ object builders
def _legs(w: float, d: float, h: float, inset: float, thick: float, mat: Material, round_legs: bool) -> list[Part]:
    parts = []
    for sx in (-1, 1):
        for sy in (-1, 1):
            x, y = sx * (w / 2 - inset), sy * (d / 2 - inset)
            if round_legs:
                m = cylinder(thick / 2, h, x, y, 0.0, sections=10)
            else:
                m = box_lo((thick, thick, h), x, y, 0.0)
            parts.append(Part(m, mat, rot_y(math.pi / 2)))
    return parts


def make_table(w: float, d: float, h: float, top: Material, legs: Material, rng: np.random.Generator) -> list[Part]:
    """A table: a top slab on four legs (optionally a lower shelf)."""
    t = 0.035 if h > 0.6 else 0.045
    parts = [Part(box_lo((w, d, t), 0, 0, h - t), top)]
    parts += _legs(w, d, h - t, 0.06, 0.05, legs, bool(rng.random() < 0.4))
    if h < 0.6 and rng.random() < 0.5:
        parts.append(Part(box_lo((w - 0.14, d - 0.14, 0.02), 0, 0, 0.12), top))
    return parts


def make_chair(body: Material, seat: Material | None, rng: np.random.Generator) -> list[Part]:
    """A dining chair facing +y: four legs, a seat, two back posts and a back panel."""
    w, d, sh = rng.uniform(0.42, 0.48), rng.uniform(0.42, 0.48), rng.uniform(0.44, 0.47)
    bh = rng.uniform(0.86, 0.95)
    parts = _legs(w, d, sh - 0.04, 0.03, 0.035, body, False)
    parts.append(Part(box_lo((w, d, 0.04), 0, 0, sh - 0.04), body))
    if seat is not None:
        parts.append(Part(box_lo((w - 0.04, d - 0.06, 0.035), 0, 0.01, sh), seat))
    for sx in (-1, 1):
        parts.append(
            Part(box_lo((0.035, 0.035, bh - sh), sx * (w / 2 - 0.03), -d / 2 + 0.03, sh), body, rot_y(math.pi / 2))
        )
    ph = rng.uniform(0.16, 0.3)
    parts.append(Part(box_lo((w - 0.02, 0.025, ph), 0, -d / 2 + 0.03, bh - ph), body))
    return parts


def make_sofa(w: float, d: float, fabric: Material, legs: Material, rng: np.random.Generator) -> list[Part]:
    """A sofa facing +y: legs, base, seat cushions, back, arms."""
    arm = rng.uniform(0.14, 0.22)
    back_h = rng.uniform(0.78, 0.86)
    arm_h = rng.uniform(0.55, 0.64)
    parts = _legs(w - 0.1, d - 0.1, 0.1, 0.0, 0.05, legs, True)
    parts.append(Part(box_lo((w, d, 0.26), 0, 0, 0.1), fabric))
    parts.append(Part(box_lo((w, 0.2, back_h - 0.36), 0, -d / 2 + 0.1, 0.36), fabric))
    for sx in (-1, 1):
        parts.append(Part(box_lo((arm, d, arm_h - 0.36), sx * (w / 2 - arm / 2), 0, 0.36), fabric))
    inner = w - 2 * arm
    n = 1 if inner < 0.9 else (2 if inner < 1.7 else 3)
    cw = inner / n
    for k in range(n):
        x = -inner / 2 + cw * (k + 0.5)
        parts.append(Part(box_lo((cw - 0.012, d - 0.22, 0.11), x, 0.1, 0.36), fabric))
    return parts


def make_cabinet(w: float, d: float, h: float, body: Material, handle: Material, n_doors: int) -> list[Part]:
    """A cabinet facing +y: plinth, body with door joints (panel texture), handles."""
    leaf = w / n_doors
    front = Material(body.name, "panel", body.colors, leaf, body.seed, body.mapping, body.emissive)
    parts = [
        Part(box_lo((w - 0.04, d - 0.04, 0.06), 0, 0, 0.0), Material("plinth", "solid", ((0.1, 0.1, 0.1),))),
        Part(box_lo((w, d, h - 0.06), 0, 0, 0.06), front, translate(w / 2, 0, 0)),
    ]
    hz = h - 0.15 if h < 1.1 else 0.95
    for k in range(n_doors):
        x = -w / 2 + leaf * (k + 0.5) + (leaf / 2 - 0.07) * (1 if k % 2 == 0 else -1)
        parts.append(Part(box((0.02, 0.025, 0.1), (x, d / 2 + 0.0125, hz)), handle))
    return parts


def make_bookcase(w: float, d: float, h: float, n_levels: int, mat: Material) -> tuple[list[Part], list[float]]:
    """An open bookcase facing +y; returns the parts and the z of the top of each shelf board (inside)."""
    t = 0.022
    parts = [
        Part(box_lo((t, d, h - t), -w / 2 + t / 2, 0, 0), mat, rot_y(math.pi / 2)),
        Part(box_lo((t, d, h - t), w / 2 - t / 2, 0, 0), mat, rot_y(math.pi / 2)),
        Part(box_lo((w - 2 * t, 0.012, h - 2 * t), 0, -d / 2 + 0.006, t), mat),
        Part(box_lo((w, d, t), 0, 0, h - t), mat),
    ]
    base = 0.06
    parts.append(Part(box_lo((w - 2 * t, d, base), 0, 0, 0), mat))
    step = (h - t - base) / n_levels
    levels = [base]
    for k in range(1, n_levels):
        z = base + k * step
        parts.append(Part(box_lo((w - 2 * t, d - 0.01, t), 0, 0.005, z - t), mat))
        levels.append(z)
    return parts, levels


def make_book(thick: float, height: float, depth: float, mat: Material) -> list[Part]:
    """A book standing upright, spine towards +y; texture origin at its top edge (for the spine bands)."""
    return [Part(box_lo((thick, depth, height), 0, 0, 0), mat, translate(0, 0, -height))]


def make_vase(rng: np.random.Generator, mat: Material) -> tuple[list[Part], float]:
    """A vase from a random profile; returns parts and height."""
    h = rng.uniform(0.18, 0.42)
    rb = rng.uniform(0.04, 0.07)
    belly = rb * rng.uniform(1.1, 1.8)
    neck = rb * rng.uniform(0.45, 0.9)
    lip = neck * rng.uniform(1.0, 1.4)
    prof = [(0, 0), (rb, 0), (belly, h * rng.uniform(0.3, 0.5)), (neck, h * 0.85), (lip, h), (0, h)]
    return [Part(revolve(prof), mat)], h


def make_lamp_floor(h: float, shade: Material, metal: Material) -> tuple[list[Part], float]:
    """A floor lamp; returns parts and the height of the shade centre (where its light sits)."""
    r_bot, r_top, sh = 0.22, 0.16, 0.3
    parts = [
        Part(cylinder(0.15, 0.03, 0, 0, 0), metal),
        Part(cylinder(0.012, h - sh, 0, 0, 0.03, sections=8), metal),
        Part(revolve([(0, h - sh), (r_bot, h - sh), (r_top, h), (0, h)], sections=28), shade),
    ]
    return parts, h - sh / 2


def make_lamp_table(base_mat: Material, shade: Material, rng: np.random.Generator) -> tuple[list[Part], float]:
    """A table lamp (ceramic base, conical shade); returns parts and the shade centre height."""
    bh = rng.uniform(0.22, 0.3)
    base = revolve([(0, 0), (0.06, 0), (0.08, bh * 0.5), (0.025, bh), (0, bh)])
    sh = 0.2
    shade_m = revolve([(0, bh - 0.02), (0.16, bh - 0.02), (0.11, bh - 0.02 + sh), (0, bh - 0.02 + sh)], sections=28)
    return [Part(base, base_mat), Part(shade_m, shade)], bh - 0.02 + sh / 2


def make_ceiling_lamp(drop: float, shell: Material, glow: Material) -> tuple[list[Part], float]:
    """A pendant hanging ``drop`` below the ceiling (local z = 0 is the ceiling, geometry below); light z."""
    r, h = 0.24, 0.16
    parts = [
        Part(cylinder(0.08, 0.03, 0, 0, -0.03), shell),
        Part(cylinder(0.006, drop - h, 0, 0, -drop + h, sections=6), shell),
        Part(revolve([(0, -drop), (r, -drop), (r * 0.7, -drop + h), (0, -drop + h)], sections=28), shell),
        Part(cylinder(r * 0.97, 0.01, 0, 0, -drop - 0.01, sections=28), glow),
    ]
    return parts, -drop - 0.06


def make_plant(rng: np.random.Generator, pot: Material, leaves: Material, soil: Material) -> list[Part]:
    """A potted plant: tapered pot, soil, lumpy foliage."""
    pr = rng.uniform(0.13, 0.2)
    ph = rng.uniform(0.25, 0.42)
    parts = [
        Part(revolve([(0, 0), (pr * 0.75, 0), (pr, ph), (0, ph)]), pot),
        Part(cylinder(pr * 0.92, 0.01, 0, 0, ph, sections=20), soil),
    ]
    tall = rng.random() < 0.5
    top = ph + (rng.uniform(0.8, 1.2) if tall else rng.uniform(0.35, 0.6))
    if tall:
        stem = Material("stem", "solid", ((0.35, 0.25, 0.15),))
        parts.append(Part(cylinder(0.015, top - ph - 0.2, 0, 0, ph, sections=6), stem))
    n = int(rng.integers(3, 6))
    for _ in range(n):
        rr = rng.uniform(0.14, 0.24) * (1.0 if tall else 0.9)
        z = rng.uniform(ph + 0.15, top - rr * 0.6) if tall else rng.uniform(ph + 0.1, top - 0.1)
        c = (rng.uniform(-0.12, 0.12), rng.uniform(-0.12, 0.12), z)
        parts.append(Part(blob((rr, rr, rr * 0.85), c, rng, 0.25), leaves))
    return parts


def make_tv(w: float, h: float, bezel: Material, screen: Material) -> list[Part]:
    """A flat TV on a foot, facing +y; local z = 0 at the bottom of the foot."""
    lift = 0.09
    return [
        Part(box_lo((0.32, 0.2, 0.02), 0, 0, 0), bezel),
        Part(box_lo((0.06, 0.03, lift), 0, -0.02, 0.02), bezel),
        Part(box_lo((w, 0.045, h), 0, 0, lift), bezel),
        Part(box_lo((w - 0.03, 0.004, h - 0.03), 0, 0.0245, lift + 0.015), screen, translate(w / 2, 0, -lift)),
    ]


def make_picture(w: float, h: float, frame: Material, canvas: Material) -> list[Part]:
    """A framed picture against a wall (back at local y = -depth/2); local z = 0 at its bottom edge."""
    fw, fd = 0.035, 0.035
    parts = [Part(box_lo((w - 2 * fw, 0.012, h - 2 * fw), 0, -fd / 2 + 0.006, fw), canvas, translate(0, 0, -h / 2))]
    parts.append(Part(box_lo((w, fd, fw), 0, 0, 0), frame))
    parts.append(Part(box_lo((w, fd, fw), 0, 0, h - fw), frame))
    for sx in (-1, 1):
        parts.append(Part(box_lo((fw, fd, h - 2 * fw), sx * (w / 2 - fw / 2), 0, fw), frame, rot_y(math.pi / 2)))
    return parts


def make_window(w: float, h: float, frame: Material, view: Material, rng: np.random.Generator) -> list[Part]:
    """A window on a wall (local y = 0 is the wall surface): pane with the outside view, frame, mullions, sill."""
    fw, fd = 0.06, 0.05
    parts = [Part(box_lo((w - 0.02, 0.004, h - 0.02), 0, 0.002, 0.01), view, translate(0, 0, -h / 2))]
    parts.append(Part(box_lo((w + 0.1, 0.14, 0.04), 0, 0.07, -0.04), frame))
    parts.append(Part(box_lo((w, fd, fw), 0, fd / 2, h - fw), frame))
    parts.append(Part(box_lo((w, fd, fw), 0, fd / 2, 0), frame))
    for sx in (-1, 1):
        parts.append(Part(box_lo((fw, fd, h - 2 * fw), sx * (w / 2 - fw / 2), fd / 2, fw), frame))
    n_cols = 2 if w < 1.2 else 3
    for k in range(1, n_cols):
        parts.append(Part(box_lo((0.04, fd * 0.8, h - 2 * fw), -w / 2 + k * w / n_cols, fd * 0.4, fw), frame))
    if rng.random() < 0.6:
        zc = h * rng.uniform(0.55, 0.7)
        parts.append(Part(box_lo((w - 2 * fw, fd * 0.8, 0.04), 0, fd * 0.4, zc), frame))
    return parts


def make_door(w: float, h: float, leaf: Material, casing: Material, knob: Material) -> list[Part]:
    """A door on a wall (local y = 0 is the wall surface): leaf, casing, knob."""
    leaf_m = Material(leaf.name, "door", leaf.colors, leaf.scale, leaf.seed, "box", 0.0, (w, h))
    parts = [Part(box_lo((w, 0.04, h), 0, 0.02, 0), leaf_m)]
    cw = 0.07
    parts.append(Part(box_lo((w + 2 * cw, 0.03, cw), 0, 0.015, h), casing))
    for sx in (-1, 1):
        parts.append(Part(box_lo((cw, 0.03, h), sx * (w / 2 + cw / 2), 0.015, 0), casing))
    knob_m = trimesh.creation.cylinder(radius=0.028, height=0.07, sections=12)
    knob_m.apply_transform(translate(w / 2 - 0.08, 0.055, 1.0) @ rot_x(math.pi / 2))
    parts.append(Part(knob_m, knob))
    return parts


def make_bin(rng: np.random.Generator, mat: Material) -> list[Part]:
    """A waste bin (tapered, closed)."""
    r = rng.uniform(0.11, 0.15)
    h = rng.uniform(0.28, 0.4)
    return [Part(revolve([(0, 0), (r * 0.8, 0), (r, h), (0, h)]), mat)]


def make_rug(w: float, d: float, mat: Material, thick: float = 0.012) -> list[Part]:
    """A flat rug (rugs that may overlap get different thicknesses, so their tops are never coplanar)."""
    return [Part(box_lo((w, d, thick), 0, 0, 0), mat)]


def make_pillow(rng: np.random.Generator, mat: Material) -> list[Part]:
    """A cushion leaning back (lumpy flattened ellipsoid)."""
    rx, rz = rng.uniform(0.18, 0.24), rng.uniform(0.16, 0.21)
    m = blob((rx, 0.065, rz), (0, 0, 0), rng, 0.08)
    m.apply_transform(rot_x(-0.3))
    m.apply_translation((0, 0, rz))
    return [Part(m, mat)]


def make_clutter(rng: np.random.Generator, mat: Material, small: bool) -> list[Part]:
    """An unlabelled small thing: a box, a cup or a bag."""
    kind = rng.integers(3)
    if kind == 0:
        s = rng.uniform(0.08, 0.16, 3) if small else rng.uniform(0.2, 0.4, 3) * (1, 1, 0.6)
        return [Part(box_lo(tuple(s), 0, 0, 0), mat)]  # type: ignore[arg-type]
    if kind == 1:
        r, h = (0.04, 0.1) if small else (0.14, 0.3)
        return [Part(revolve([(0, 0), (r * 0.8, 0), (r, h), (0, h)], sections=14), mat)]
    r = 0.07 if small else 0.2
    return [Part(blob((r, r * 0.7, r * 0.8), (0, 0, r * 0.75), rng, 0.2), mat)]


# --------------------------------------------------------------------------------------------------- builder
@dataclass
class _Support:
    """A horizontal surface objects can stand on: world pose of its frame, half extents, items placed on it."""

    pose: Mat4
    half: tuple[float, float]
    z: float
    taken: list[tuple[float, float, float, float]] = field(default_factory=list)


class _Builder:
    def __init__(self, cfg: SynthConfig, rng: np.random.Generator):
        self.cfg = cfg
        self.rng = rng
        self.lx = float(rng.uniform(*cfg.room_length_range))
        self.ly = float(rng.uniform(*cfg.room_width_range))
        self.lz = float(rng.uniform(*cfg.room_height_range))
        self.pal = Palette(rng)
        self.objects: list[SceneObject] = []
        self.blocked: list[Float[np.ndarray, "2 3"]] = []
        self.supports: list[_Support] = []
        self.lights: list[Light] = []
        self.lamp_bulbs: list[tuple[SceneObject, tuple[float, float, float]]] = []
        self.next_id = 1

    # -------------------------------------------------------------------------------------------- basics
    def wall_length(self, wall: int) -> float:
        return self.lx if wall % 2 == 0 else self.ly

    def wall_pose(self, wall: int, along: float, offset: float, z: float = 0.0) -> Mat4:
        """Pose of an object against ``wall``: ``along`` the wall (its local +x), ``offset`` from the surface."""
        yaw = wall * math.pi / 2
        n = np.array([-math.sin(yaw), math.cos(yaw)])
        tdir = np.array([math.cos(yaw), math.sin(yaw)])
        surface = -n * (self.ly / 2 if wall % 2 == 0 else self.lx / 2)
        p = surface + n * offset + tdir * along
        return translate(p[0], p[1], z) @ rot_z(yaw)

    def bounds_of(self, parts: list[Part], pose: Mat4) -> Float[np.ndarray, "2 3"]:
        pts = np.concatenate([_apply(pose, p.mesh.vertices) for p in parts])
        return np.stack([pts.min(0), pts.max(0)])

    def free(self, b: Float[np.ndarray, "2 3"], gap: float = 0.02) -> bool:
        lo, hi = b[0] - gap, b[1] + gap
        inside = (
            b[0, 0] > -self.lx / 2 - 1e-6
            and b[1, 0] < self.lx / 2 + 1e-6
            and b[0, 1] > -self.ly / 2 - 1e-6
            and b[1, 1] < self.ly / 2 + 1e-6
            and b[1, 2] < self.lz - 0.02
        )
        if not inside:
            return False
        return all(not (np.all(lo < o[1]) and np.all(o[0] < hi)) for o in self.blocked)

    def add(
        self, cname: str, label: str, parts: list[Part], pose: Mat4, *, check: bool = True, block: bool = True
    ) -> SceneObject | None:
        """Place an object unless it collides (``check``); ``block`` reserves its box for later placements."""
        b = self.bounds_of(parts, pose)
        if check and not self.free(b):
            return None
        cid = class_id(cname)
        iid = 0 if cid == VOID_ID else self.next_id
        self.next_id += cid != VOID_ID
        shift = self.rng.uniform(-3, 3, 3)
        parts = [Part(p.mesh, p.material, _texture_shift(p.material, shift) @ p.tex) for p in parts]
        obj = SceneObject(iid, cid, cname, label, parts, pose, b)
        self.objects.append(obj)
        if block:
            self.blocked.append(b)
        return obj

    def on_wall(
        self,
        cname: str,
        label: str,
        parts: list[Part],
        walls: list[int],
        offset: float,
        z: float = 0.0,
        tries: int = 60,
        target: tuple[int, float] | None = None,
    ) -> SceneObject | None:
        """Try positions along the given walls (first near ``target`` = (wall, along) if given)."""
        lo, hi = _extent_x(parts)
        for k in range(tries):
            if target is not None and k < 12:
                wall = target[0]
                along = target[1] + (0.0 if k == 0 else self.rng.normal(0, 0.15 * k))
            else:
                wall = walls[int(self.rng.integers(len(walls)))]
                half = self.wall_length(wall) / 2
                if hi - lo > 2 * half - 0.1:
                    continue
                along = self.rng.uniform(-half - lo + 0.03, half - hi - 0.03)
            obj = self.add(cname, label, parts, self.wall_pose(wall, along, offset, z))
            if obj is not None:
                return obj
        return None

    def support(self, obj: SceneObject, half: tuple[float, float], z: float, local: Mat4 | None = None) -> None:
        pose = obj.pose if local is None else obj.pose @ local
        self.supports.append(_Support(pose, half, z))

    def on_support(self, cname: str, label: str, parts: list[Part], sup: _Support, tries: int = 20) -> bool:
        lo, hi = _extent_x(parts)
        ylo, yhi = _extent_y(parts)
        r = max(hi - lo, yhi - ylo) / 2 + 0.02
        if r > min(sup.half) - 0.02:
            return False
        for _ in range(tries):
            x = self.rng.uniform(-sup.half[0] + r, sup.half[0] - r)
            y = self.rng.uniform(-sup.half[1] + r, sup.half[1] - r)
            if any(abs(x - a) < r + ar and abs(y - b) < r + ar for a, b, ar, _ in sup.taken):
                continue
            pose = sup.pose @ translate(x, y, sup.z) @ rot_z(self.rng.uniform(0, 2 * math.pi))
            self.add(cname, label, parts, pose, check=False)
            sup.taken.append((x, y, r, 0.0))
            return True
        return False


def _texture_shift(m: Material, shift: Float[np.ndarray, " 3"]) -> Mat4:
    """A per-instance offset of the texture frame, so that objects sharing a material do not look identical.

    Only for patterns that look the same anywhere; patterns laid out on the object (door panels, cabinet joints,
    book bands, screens, window views) keep their frame, and cylindrical mappings are only shifted along their axis.
    """
    if m.kind not in STATIONARY_TEXTURES:
        return np.eye(4)
    if m.mapping == "cyl":
        return translate(0.0, 0.0, float(shift[2]))
    return translate(*(float(v) for v in shift))


def _extent_x(parts: list[Part]) -> tuple[float, float]:
    v = np.concatenate([p.mesh.vertices[:, 0] for p in parts])
    return float(v.min()), float(v.max())


def _extent_y(parts: list[Part]) -> tuple[float, float]:
    v = np.concatenate([p.mesh.vertices[:, 1] for p in parts])
    return float(v.min()), float(v.max())


# ------------------------------------------------------------------------------------------------ the room
def _room_shell(b: _Builder) -> None:
    lx, ly, lz, t = b.lx, b.ly, b.lz, 0.1
    pal = b.pal
    floor_tex = rot_z(math.pi / 2) if b.rng.random() < 0.5 else np.eye(4)
    b.add(
        "floor",
        "floor",
        [Part(box((lx + 2 * t, ly + 2 * t, t), (0, 0, -t / 2)), pal.floor, floor_tex)],
        np.eye(4),
        check=False,
        block=False,
    )
    b.add(
        "ceiling",
        "ceiling",
        [Part(box((lx + 2 * t, ly + 2 * t, t), (0, 0, lz + t / 2)), pal.ceiling)],
        np.eye(4),
        check=False,
        block=False,
    )
    accent_wall = int(b.rng.integers(4)) if pal.accent is not None else -1
    for w in range(4):
        length = b.wall_length(w) + 2 * t
        mat = pal.accent if w == accent_wall and pal.accent is not None else pal.wall
        parts = [
            Part(box((length, t, lz + 2 * t), (0, -t / 2, lz / 2)), mat),
            Part(box((b.wall_length(w) - 0.032, 0.015, 0.08), (0, 0.0075, 0.04)), pal.trim),
        ]
        b.add("wall", f"wall_{w}", parts, b.wall_pose(w, 0.0, 0.0), check=False, block=False)


def _doors_windows(b: _Builder) -> None:
    rng, pal = b.rng, b.pal
    leaf = pal.wall if rng.random() < 0.5 else pal.woods[0]
    w, h = rng.uniform(0.82, 0.95), rng.uniform(2.0, 2.1)
    door = b.on_wall("door", "door", make_door(w, h, leaf, pal.trim, pal.steel), [0, 1, 2, 3], 0.0)
    if door is not None:  # keep the floor in front of the door free
        corners = _apply(door.pose, np.array([[-0.6, 0.0, 0.0], [0.6, 1.0, 2.0]]))
        b.blocked.append(np.stack([corners.min(0), corners.max(0)]))
    frame = pal.trim if rng.random() < 0.6 else pal.woods[1]
    view = pal.outside()
    for k in range(int(rng.integers(1, 3))):
        ww, wh = rng.uniform(0.9, 1.6), rng.uniform(1.1, 1.4)
        sill = rng.uniform(0.92, 1.0)
        walls = [1, 3] if k == 0 else [0, 1, 2, 3]
        b.on_wall("window", f"window_{k}", make_window(ww, wh, frame, view, rng), walls, 0.0, sill)


def _living(b: _Builder, side: float) -> SceneObject | None:
    """Sofa against a long wall, coffee table and rug in front, armchair, lamps, TV opposite."""
    rng, pal = b.rng, b.pal
    wall = int(rng.choice([0, 2]))
    tdir = 1.0 if wall == 0 else -1.0
    sw, sd = rng.uniform(1.8, 2.3), rng.uniform(0.85, 0.95)
    x_target = side * b.lx / 4 + rng.normal(0, 0.15)
    fab_a, fab_b = pal.fabrics[0], pal.fabrics[1]
    sofa = b.on_wall(
        "sofa",
        "sofa",
        make_sofa(sw, sd, fab_a, pal.woods[0], rng),
        [wall],
        sd / 2 + 0.03,
        target=(wall, x_target * tdir),
    )
    if sofa is None:
        sofa = b.on_wall("sofa", "sofa", make_sofa(sw, sd, fab_a, pal.woods[0], rng), [0, 1, 2, 3], sd / 2 + 0.03)
    if sofa is None:
        return None
    _pillows(b, sofa, sw, sd, [fab_b, pal.pattern(fab_a, fab_b), pal.fabrics[2]])
    cw, cd = rng.uniform(0.9, 1.3), rng.uniform(0.5, 0.7)
    ct_front = sd / 2 + rng.uniform(0.4, 0.5) + cd / 2
    rug_local = translate(0, ct_front - 0.1, 0)
    rug_mat = pal.pattern(pal.fabrics[3], fab_b)
    b.add(
        "rug",
        "rug",
        make_rug(sw + rng.uniform(0.2, 0.6), rng.uniform(1.5, 1.9), rug_mat),
        sofa.pose @ rug_local,
        check=False,
        block=False,
    )
    top = (
        pal.woods[1]
        if rng.random() < 0.7
        else Material("stone", "blotch", ((0.85, 0.84, 0.8), (0.6, 0.6, 0.6)), 0.1, int(rng.integers(1 << 30)))
    )
    ct = b.add(
        "table",
        "coffee_table",
        make_table(cw, cd, rng.uniform(0.38, 0.46), top, pal.woods[1], rng),
        sofa.pose @ translate(0, ct_front, 0),
    )
    if ct is not None:
        b.support(ct, (cw / 2, cd / 2), ct.bounds[1, 2] - ct.pose[2, 3])
    _armchair(b, sofa, sw, fab_b, fab_a)
    _sofa_lamps(b, sofa, sw, sd)
    _tv(b, sofa, wall)
    return sofa


def _pillows(b: _Builder, sofa: SceneObject, sw: float, sd: float, mats: list[Material]) -> None:
    n = int(b.rng.integers(2, 4))
    xs = np.linspace(-sw / 2 + 0.45, sw / 2 - 0.45, n)
    for k, x in enumerate(xs):
        local = translate(float(x) + b.rng.normal(0, 0.04), -sd / 2 + 0.29, 0.47) @ rot_z(b.rng.normal(0, 0.12))
        b.add("pillow", f"pillow_{k}", make_pillow(b.rng, mats[k % len(mats)]), sofa.pose @ local, check=False)


def _armchair(b: _Builder, sofa: SceneObject, sw: float, fabric: Material, pillow: Material) -> None:
    rng = b.rng
    w = rng.uniform(0.85, 1.0)
    parts = make_sofa(w, 0.85, fabric, b.pal.woods[0], rng)
    for side in rng.permutation([-1, 1]):
        local = translate(side * (sw / 2 + 0.75), 1.15, 0) @ rot_z(-side * (math.pi / 2 - rng.uniform(0.3, 0.6)))
        chair = b.add("sofa", "armchair", parts, sofa.pose @ local)
        if chair is not None:
            p = translate(0, -0.425 + 0.29, 0.47)
            b.add("pillow", "pillow_armchair", make_pillow(rng, pillow), chair.pose @ p, check=False)
            return


def _sofa_lamps(b: _Builder, sofa: SceneObject, sw: float, sd: float) -> None:
    """A side table with a table lamp at one end of the sofa, a floor lamp at the other (or elsewhere)."""
    rng, pal = b.rng, b.pal
    sides = [int(v) for v in rng.permutation([-1, 1])]
    st = make_table(0.45, 0.45, rng.uniform(0.5, 0.6), pal.woods[2], pal.woods[2], rng)
    table = None
    for side in sides:
        table = b.add("table", "side_table", st, sofa.pose @ translate(side * (sw / 2 + 0.3), -sd / 2 + 0.26, 0))
        if table is not None:
            sides.remove(side)
            break
    if table is not None:
        z = table.bounds[1, 2] - table.pose[2, 3]
        parts, lz = make_lamp_table(pal.ceramic(), pal.shade_glow, rng)
        lamp = b.add("lamp", "table_lamp", parts, table.pose @ translate(0, 0.03, z), check=False)
        b.lamp_bulbs.append((lamp, (0.0, 0.0, lz)))
    parts, lz = make_lamp_floor(rng.uniform(1.45, 1.65), pal.shade_glow, pal.metal_black)
    lamp = None
    for side in sides:
        lamp = b.add("lamp", "floor_lamp", parts, sofa.pose @ translate(side * (sw / 2 + 0.3), -sd / 2 + 0.25, 0))
        if lamp is not None:
            break
    if lamp is None:
        lamp = b.on_wall("lamp", "floor_lamp", parts, [0, 1, 2, 3], 0.3)
    if lamp is not None:
        b.lamp_bulbs.insert(int(rng.integers(len(b.lamp_bulbs) + 1)), (lamp, (0.0, 0.0, lz)))


def _lamp_light(b: _Builder) -> None:
    """Make one lamp (the first placed of the candidates) a warm point light."""
    if not b.cfg.lamp_light or not b.lamp_bulbs:
        return
    lamp, local = b.lamp_bulbs[0]
    p = _apply(lamp.pose, np.asarray([local]))[0]
    name = lamp.label.replace("_", "-")
    pos = (float(p[0]), float(p[1]), float(p[2]))
    b.lights.append(Light(name, pos, (1.0, 0.82, 0.6), b.cfg.light_intensity * 0.3, lamp.instance_id))


def _tv(b: _Builder, sofa: SceneObject, sofa_wall: int) -> None:
    rng, pal = b.rng, b.pal
    wall = (sofa_wall + 2) % 4
    along = -(sofa.pose[0, 3]) if wall == 2 else sofa.pose[0, 3]
    w, d, h = rng.uniform(1.3, 1.8), 0.42, rng.uniform(0.48, 0.58)
    mat = pal.woods[int(rng.integers(3))] if rng.random() < 0.6 else pal.paint()
    cab = b.on_wall(
        "cabinet",
        "tv_cabinet",
        make_cabinet(w, d, h, mat, pal.metal_black, int(rng.integers(2, 4))),
        [0, 1, 2, 3],
        d / 2 + 0.03,
        target=(wall, along),
    )
    if cab is None:
        return
    tw = min(w - 0.1, rng.uniform(1.0, 1.3))
    tv = make_tv(tw, tw * 0.58, pal.metal_black, pal.screen)
    b.add("tv-screen", "tv", tv, cab.pose @ translate(0, -0.04, h), check=False)
    b.support(cab, (w / 2, d / 2), h, translate(0, 0, 0))
    b.supports[-1].taken.append((0.0, -0.04, tw / 2 + 0.05, 0.0))


def _dining(b: _Builder, side: float) -> None:
    rng, pal = b.rng, b.pal
    tw, td = rng.uniform(1.3, 1.7), rng.uniform(0.8, 0.95)
    wood = pal.woods[2] if rng.random() < 0.5 else pal.woods[0]
    yaw = 0.0 if rng.random() < 0.5 else math.pi / 2
    for _ in range(20):
        x = side * b.lx / 4 + rng.normal(0, 0.2)
        y = rng.normal(0, 0.2)
        pose = translate(x, y, 0) @ rot_z(yaw)
        table = b.add("table", "dining_table", make_table(tw, td, rng.uniform(0.73, 0.77), wood, wood, rng), pose)
        if table is not None:
            break
    else:
        return
    b.support(table, (tw / 2, td / 2), table.bounds[1, 2] - table.pose[2, 3])
    seat = pal.fabrics[int(rng.integers(5))] if rng.random() < 0.5 else None
    slots = [(sx * tw / 4, sy * (td / 2 + 0.1), sy) for sx in (-1, 1) for sy in (-1, 1)]
    if rng.random() < 0.5:
        slots += [(sx * (tw / 2 + 0.1), 0.0, 2 * sx) for sx in (-1, 1)]
    chair_parts = make_chair(wood, seat, rng)
    for k, (cx, cy, facing) in enumerate(slots):
        face = {-1: 0.0, 1: math.pi, -2: -math.pi / 2, 2: math.pi / 2}[int(facing)]
        out = 0.22 * np.array([math.sin(face), -math.cos(face)])
        local = translate(cx + out[0], cy + out[1], 0) @ rot_z(face + rng.normal(0, 0.08))
        b.add("chair", f"chair_{k}", chair_parts, table.pose @ local)
    if rng.random() < 0.5:
        rug = pal.pattern(pal.fabrics[4], pal.fabrics[0])
        b.add("rug", "dining_rug", make_rug(tw + 1.3, td + 1.3, rug, thick=0.009), table.pose, check=False, block=False)


def _storage(b: _Builder) -> None:
    """Bookcases with books, a sideboard (wall paint), a tall cabinet, a floating shelf."""
    rng, pal = b.rng, b.pal
    for k in range(int(rng.integers(1, 3))):
        w, d, h = rng.uniform(0.8, 1.2), rng.uniform(0.3, 0.36), rng.uniform(1.7, 2.05)
        mat = pal.woods[k % 3] if k > 0 or rng.random() < 0.6 else pal.wall
        parts, levels = make_bookcase(w, d, h, int(rng.integers(4, 6)), mat)
        shelf = b.on_wall("shelf", f"bookcase_{k}", parts, [0, 1, 2, 3], d / 2 + 0.02)
        if shelf is not None:
            _fill_shelf(b, shelf, w - 0.05, d, levels)
            b.support(shelf, (w / 2, d / 2), h)
    cabinets = [("sideboard", rng.uniform(1.2, 1.8), 0.45, rng.uniform(0.75, 0.85), pal.wall)]
    if rng.random() < 0.7:
        cabinets.append(("tall_cabinet", rng.uniform(0.6, 0.9), 0.5, rng.uniform(1.6, 1.9), pal.paint()))
    if rng.random() < 0.6:
        cabinets.append(("small_cabinet", rng.uniform(0.45, 0.6), 0.4, rng.uniform(0.5, 0.65), pal.woods[1]))
    for label, w, d, h, mat in cabinets:
        n_doors = max(1, int(round(w / 0.45)))
        cab = b.on_wall("cabinet", label, make_cabinet(w, d, h, mat, pal.brass, n_doors), [0, 1, 2, 3], d / 2 + 0.02)
        if cab is not None:
            b.support(cab, (w / 2, d / 2), h)
    if rng.random() < 0.7:
        w = rng.uniform(0.8, 1.2)
        wood = pal.woods[int(rng.integers(3))]
        parts = [Part(box_lo((w, 0.24, 0.03), 0, 0, 0), wood)]
        fs = b.on_wall("shelf", "wall_shelf", parts, [0, 1, 2, 3], 0.12, rng.uniform(1.35, 1.55))
        if fs is not None:
            _fill_shelf(b, fs, w * rng.uniform(0.4, 0.7), 0.24, [0.03], leave_room=False)


def _fill_shelf(
    b: _Builder, shelf: SceneObject, width: float, depth: float, levels: list[float], leave_room: bool = True
) -> None:
    rng = b.rng
    gaps = [*np.diff(levels).tolist(), 0.35]
    for li, z in enumerate(levels):
        room = gaps[li] - 0.03
        if room < 0.17:
            continue
        x = -width / 2 + rng.uniform(0.0, 0.15)
        end = width / 2 - (rng.uniform(0.1, 0.4) if leave_room else 0.0)
        while x < end - 0.03:
            if rng.random() < 0.12:
                x += rng.uniform(0.08, 0.2)
                continue
            t, h = rng.uniform(0.022, 0.05), rng.uniform(0.16, min(0.3, room))
            dd = rng.uniform(0.13, min(0.22, depth - 0.04))
            if x + t > end:
                break
            local = translate(x + t / 2, depth / 2 - 0.03 - dd / 2, z)
            b.add("book", "book", make_book(t, h, dd, b.pal.book()), shelf.pose @ local, check=False)
            x += t + 0.002


def _decor(b: _Builder) -> None:
    """Plants, bins, pictures, a ceiling lamp, vases on surfaces."""
    rng, pal = b.rng, b.pal
    for k in range(int(rng.integers(2, 5))):
        b.on_wall(
            "indoor-plant", f"plant_{k}", make_plant(rng, pal.ceramic(), pal.leaves(), pal.dark), [0, 1, 2, 3], 0.3
        )
    for k in range(int(rng.integers(1, 3))):
        mat = pal.paint() if rng.random() < 0.5 else pal.steel
        b.on_wall(
            "bin",
            f"bin_{k}",
            make_bin(rng, Material(mat.name, mat.kind, mat.colors, 0.3, mat.seed, "cyl")),
            [0, 1, 2, 3],
            0.18,
        )
    frames = [pal.metal_black, pal.woods[0], pal.trim]
    for k in range(int(rng.integers(3, 7))):
        w, h = rng.uniform(0.4, 1.0), rng.uniform(0.35, 0.8)
        parts = make_picture(w, h, frames[k % 3], pal.painting())
        b.on_wall("picture", f"picture_{k}", parts, [0, 1, 2, 3], 0.02, rng.uniform(1.55, 1.75) - h / 2)
    for k in range(int(rng.integers(3, 5))):
        if not b.supports:
            break
        parts, _ = make_vase(rng, pal.ceramic())
        sup = b.supports[int(rng.integers(len(b.supports)))]
        b.on_support("vase", f"vase_{k}", parts, sup)


def _desk(b: _Builder) -> None:
    """A desk against a wall with its own chair, a lamp (not a light source) and a few books lying on it."""
    rng, pal = b.rng, b.pal
    w, d, h = rng.uniform(1.0, 1.4), rng.uniform(0.55, 0.65), rng.uniform(0.72, 0.76)
    top = pal.paint() if rng.random() < 0.5 else pal.woods[int(rng.integers(3))]
    desk = b.on_wall("table", "desk", make_table(w, d, h, top, top, rng), [0, 1, 2, 3], d / 2 + 0.02)
    if desk is None:
        return
    seat = pal.fabrics[int(rng.integers(5))]
    b.add(
        "chair",
        "desk_chair",
        make_chair(pal.paint(), seat, rng),
        desk.pose @ translate(0, d / 2 + 0.3, 0) @ rot_z(math.pi + rng.normal(0, 0.15)),
    )
    z = desk.bounds[1, 2] - desk.pose[2, 3]
    parts, lz = make_lamp_table(pal.ceramic(), pal.shade_glow, rng)
    side = 1 if rng.random() < 0.5 else -1
    lamp = b.add("lamp", "desk_lamp", parts, desk.pose @ translate(side * (w / 2 - 0.2), -d / 2 + 0.2, z), check=False)
    b.lamp_bulbs.append((lamp, (0.0, 0.0, lz)))
    x, zz = -side * (w / 2 - 0.25), z
    for k in range(int(rng.integers(1, 4))):
        bw, bd, bt = rng.uniform(0.15, 0.22), rng.uniform(0.21, 0.28), rng.uniform(0.02, 0.05)
        book = [Part(box_lo((bw, bd, bt), 0, 0, 0), pal.book(), translate(0, 0, -bt))]
        local = translate(x + rng.normal(0, 0.01), -0.05 + rng.normal(0, 0.01), zz) @ rot_z(rng.normal(0, 0.2))
        b.add("book", f"desk_book_{k}", book, desk.pose @ local, check=False)
        zz += bt
    b.support(desk, (w / 2 - 0.35, d / 2), z)


def _ceiling_lamps(b: _Builder, over: list[tuple[float, float]]) -> None:
    pal = b.pal
    shell = pal.trim if b.rng.random() < 0.5 else pal.metal_black
    for k, (x, y) in enumerate(over):
        parts, lz = make_ceiling_lamp(b.rng.uniform(0.3, 0.4), shell, pal.lamp_glow)
        lamp = b.add("lamp", f"ceiling_lamp_{k}", parts, translate(x, y, b.lz), check=False)
        if k == 0 and lamp is not None:
            b.lights.insert(
                0, Light("ceiling", (x, y, b.lz + lz), (1.0, 0.97, 0.92), b.cfg.light_intensity, lamp.instance_id)
            )


def _clutter(b: _Builder) -> None:
    rng, pal = b.rng, b.pal
    for k in range(b.cfg.num_clutter):
        small = k % 2 == 0 and bool(b.supports)
        parts = make_clutter(rng, pal.clutter(), small)
        if small:
            sup = b.supports[int(rng.integers(len(b.supports)))]
            b.on_support("void", f"clutter_{k}", parts, sup)
        else:
            b.on_wall("void", f"clutter_{k}", parts, [0, 1, 2, 3], 0.25)


# ------------------------------------------------------------------------------------------------- assembly
def build_scene(cfg: SynthConfig) -> Scene:
    """Lay out and mesh the room for ``cfg.seed`` (independent of image size and number of views)."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 1]))
    b = _Builder(cfg, rng)
    _room_shell(b)
    side = 1.0 if rng.random() < 0.5 else -1.0
    _ceiling_lamps(b, [(0.0, 0.0)])
    _doors_windows(b)
    _living(b, side)
    _dining(b, -side)
    dining = [o for o in b.objects if o.label == "dining_table"]
    if dining:
        c = dining[0].pose[:2, 3]
        _ceiling_lamps_extra(b, (float(c[0]), float(c[1])))
    _storage(b)
    _desk(b)
    _decor(b)
    _clutter(b)
    _lamp_light(b)
    return _assemble(b)


def _ceiling_lamps_extra(b: _Builder, xy: tuple[float, float]) -> None:
    pal = b.pal
    parts, _ = make_ceiling_lamp(b.rng.uniform(0.3, 0.4), pal.brass, pal.lamp_glow)
    b.add("lamp", "pendant", parts, translate(xy[0], xy[1], b.lz), check=False)


def _assemble(b: _Builder) -> Scene:
    verts, faces, normals, affines = [], [], [], []
    f_inst, f_cls, f_mat, f_part = [], [], [], []
    mat_index: dict[Material, int] = {}
    offset = 0
    for obj in b.objects:
        for part in obj.parts:
            m = part.mesh
            verts.append(_apply(obj.pose, m.vertices))
            faces.append(m.faces + offset)
            normals.append(m.face_normals @ obj.pose[:3, :3].T)
            affines.append((part.tex @ np.linalg.inv(obj.pose))[:3])
            mi = mat_index.setdefault(part.material, len(mat_index))
            nf = len(m.faces)
            f_inst.append(np.full(nf, obj.instance_id))
            f_cls.append(np.full(nf, obj.class_id))
            f_mat.append(np.full(nf, mi))
            f_part.append(np.full(nf, len(affines) - 1))
            offset += len(m.vertices)
    obstacles = [o.bounds for o in b.objects if o.class_name not in ("wall", "floor", "ceiling", "rug")]
    return Scene(
        room_size=(b.lx, b.ly, b.lz),
        vertices=np.concatenate(verts),
        faces=np.concatenate(faces).astype(np.int64),
        face_normals=np.concatenate(normals),
        face_instance=np.concatenate(f_inst).astype(np.int64),
        face_class=np.concatenate(f_cls).astype(np.int64),
        face_material=np.concatenate(f_mat).astype(np.int64),
        face_part=np.concatenate(f_part).astype(np.int64),
        part_tex_affine=np.stack(affines),
        materials=list(mat_index),
        objects=b.objects,
        lights=b.lights,
        obstacles=np.stack(obstacles),
    )
