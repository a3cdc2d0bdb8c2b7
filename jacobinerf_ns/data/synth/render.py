"""Ray casting and shading of the synthetic scenes.

Rays are cast with Embree through ``embreex`` (the backend of trimesh's ``RayMeshIntersector``; we drive the embreex
scene directly, as trimesh does, but skip its per-call float64 copies and normalisation, which cost about twice the
casting itself). Embree only reports *which* triangle is hit; the hit distance is then computed exactly in float64
from that triangle's plane, so depth and hit points are exact to well below a millimetre.

Camera rays are not normalised: the camera-frame direction of pixel (u, v) is ((u - cx)/fx, (v - cy)/fy, 1), so the
ray parameter of a hit *is* its z-depth. Class, instance and depth come from the ray through the pixel centre; colour
averages ``supersample**2`` rays on a regular sub-pixel grid. Shading is view-independent: Lambert with point lights,
hard shadows from shadow rays, a hemispherical ambient term, and self-luminous surfaces (windows, lamp shades).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh
from jaxtyping import Float, Int, UInt8, UInt16

from jacobinerf_ns.data.synth.config import SynthConfig
from jacobinerf_ns.data.synth.scene import Light, Scene
from jacobinerf_ns.data.synth.textures import TEXTURES, surface_coords

SHADOW_OFFSET = 1e-3
"""Shadow rays start this far (metres) off the surface, along its normal."""


# ------------------------------------------------------------------------------------------------ intrinsics
@dataclass(frozen=True)
class Intrinsics:
    """Replica / Semantic-NeRF pinhole: 90 degrees horizontal field of view, principal point at the image centre."""

    width: int
    height: int

    @property
    def fx(self) -> float:
        return self.width / 2.0  # W/2 / tan(45 deg)

    @property
    def fy(self) -> float:
        return self.fx

    @property
    def cx(self) -> float:
        return (self.width - 1) / 2.0

    @property
    def cy(self) -> float:
        return (self.height - 1) / 2.0

    def matrix(self) -> Float[np.ndarray, "3 3"]:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])


def camera_dirs(k: Intrinsics, supersample: int = 1) -> Float[np.ndarray, "h s w t 3"]:
    """Camera-frame ray directions (z = 1) on a ``supersample`` x ``supersample`` grid inside every pixel.

    Shape (H, s, W, s, 3); with ``supersample == 1`` the rays go through the pixel centres (u, v integer).
    """
    s = supersample
    sub = (np.arange(s) + 0.5) / s - 0.5
    u = (np.arange(k.width)[:, None] + sub[None, :] - k.cx) / k.fx
    v = (np.arange(k.height)[:, None] + sub[None, :] - k.cy) / k.fy
    d = np.empty((k.height, s, k.width, s, 3))
    d[..., 0] = u[None, None, :, :]
    d[..., 1] = v[:, :, None, None]
    d[..., 2] = 1.0
    return d


# -------------------------------------------------------------------------------------------------- casting
class RayCaster:
    """First-hit and occlusion queries on a triangle soup (Embree via embreex)."""

    def __init__(self, vertices: Float[np.ndarray, "v 3"], faces: Int[np.ndarray, "f 3"]):
        if not trimesh.ray.has_embree:
            raise RuntimeError("jn-synth needs Embree ray casting: install the 'embreex' package")
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        self._scene = rtcore_scene.EmbreeScene()
        TriangleMesh(scene=self._scene, vertices=vertices.astype(np.float32), indices=faces.astype(np.int32))

    def first_hit(self, origins: Float[np.ndarray, "n 3"], dirs: Float[np.ndarray, "n 3"]) -> Int[np.ndarray, " n"]:
        """Index of the first triangle each ray hits (-1 for a miss)."""
        if len(origins) == 0:
            return np.zeros(0, dtype=np.int64)
        tri = self._scene.run(_f32(origins), _f32(dirs))
        return np.asarray(tri, dtype=np.int64)

    def occluded(
        self, origins: Float[np.ndarray, "n 3"], dirs: Float[np.ndarray, "n 3"], tmax: Float[np.ndarray, " n"]
    ) -> np.ndarray:
        """Whether anything is hit with ray parameter in (0, tmax)."""
        if len(origins) == 0:
            return np.zeros(0, dtype=bool)
        hit = self._scene.run(_f32(origins), _f32(dirs), dists=_f32(tmax), query="OCCLUDED")
        return np.asarray(hit) != -1


def _affine(m: Float[np.ndarray, "3 4"], p: Float[np.ndarray, "n 3"], translate: bool = True) -> np.ndarray:
    """``m[:, :3] @ p + m[:, 3]`` row by row, elementwise (no BLAS: results never depend on the batch size)."""
    out = p[:, :1] * m[:, 0] + p[:, 1:2] * m[:, 1] + p[:, 2:3] * m[:, 2]
    return out + m[:, 3] if translate else out


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


def plane_hit_t(
    scene: Scene, tri: Int[np.ndarray, " n"], origins: Float[np.ndarray, "n 3"], dirs: Float[np.ndarray, "n 3"]
) -> Float[np.ndarray, " n"]:
    """Exact (float64) ray parameter of the hit with the plane of triangle ``tri`` (rays must hit: tri >= 0)."""
    n = scene.face_normals[tri]
    v0 = scene.vertices[scene.faces[tri, 0]]
    return _plane_t(_dot(n, v0), n, origins, dirs)


def _dot(a: Float[np.ndarray, "n 3"], b: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, " n"]:
    return np.einsum("ij,ij->i", a, b)


def _plane_t(
    plane_d: Float[np.ndarray, " n"],
    n: Float[np.ndarray, "n 3"],
    o: Float[np.ndarray, "n 3"],
    d: Float[np.ndarray, "n 3"],
) -> Float[np.ndarray, " n"]:
    den = _dot(n, d)
    den = np.where(np.abs(den) < 1e-12, 1e-12, den)
    return (plane_d - _dot(n, o)) / den


# -------------------------------------------------------------------------------------------------- shading
def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """The sRGB transfer function, inverted (display values in [0, 1] -> linear radiance)."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear radiance -> sRGB display values in [0, 1] (clipped)."""
    c = np.clip(c, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


def tone_map(x: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """Identity below ``knee``, then a smooth exponential shoulder towards 1 (no hard clipping of highlights)."""
    over = np.maximum(x - knee, 0.0)
    return np.where(x < knee, x, knee + (1 - knee) * (1 - np.exp(-over / (1 - knee))))


_SRGB_LUT = srgb_to_linear(np.arange(4097) / 4096).astype(np.float32)


def srgb_to_linear_fast(c: Float[np.ndarray, "n 3"]) -> Float[np.ndarray, "n 3"]:
    """sRGB -> linear through a 4097-entry table (error < 3e-4), float32."""
    return _SRGB_LUT[np.rint(np.clip(c, 0.0, 1.0) * 4096).astype(np.int32)]


class Shader:
    """View-independent shading of hit points: texture albedo x (ambient + shadowed point lights), or emission.

    Works in float32 (colour does not need more); hit distances for depth are computed separately in float64.
    """

    def __init__(self, scene: Scene, cfg: SynthConfig, casters: list[RayCaster]):
        self.scene = scene
        self.cfg = cfg
        self.casters = casters
        v0 = scene.vertices[scene.faces[:, 0]]
        self.normals = scene.face_normals.astype(np.float32)
        self.plane_d = _dot(scene.face_normals, v0).astype(np.float32)
        self.part_material = np.zeros(len(scene.part_tex_affine), dtype=np.int64)
        self.part_material[scene.face_part] = scene.face_material
        self.affine = scene.part_tex_affine.astype(np.float32)
        self.face_emissive = np.array([m.emissive for m in scene.materials], np.float32)[scene.face_material]

    def albedo(
        self, p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"], tri: Int[np.ndarray, " n"]
    ) -> Float[np.ndarray, "n 3"]:
        """sRGB albedo, evaluated part by part in each part's texture frame."""
        out = np.empty((len(tri), 3), np.float32)
        part = self.scene.face_part[tri]
        order = np.argsort(part, kind="stable")
        ids, starts = np.unique(part[order], return_index=True)
        for pid, a, b in zip(ids, starts, [*starts[1:], len(order)], strict=True):
            idx = order[a:b]
            aff = self.affine[pid]
            m = self.scene.materials[int(self.part_material[pid])]
            st = surface_coords(_affine(aff, p[idx]), _affine(aff, n[idx], translate=False), m.mapping)
            out[idx] = TEXTURES[m.kind](st, m)
        return out

    def light(
        self, k: int, p: Float[np.ndarray, "n 3"], n: Float[np.ndarray, "n 3"], active: np.ndarray
    ) -> Float[np.ndarray, " n"]:
        """Irradiance (scalar, before the light's colour) from light ``k``, with hard shadows."""
        light = self.scene.lights[k]
        lp = np.asarray(light.position, np.float32)
        to_l = lp[None] - p
        dist2 = _dot(to_l, to_l)
        ndl = _dot(n, to_l)
        idx = np.nonzero(active & (ndl > 0))[0]
        origin = p[idx] + np.float32(SHADOW_OFFSET) * n[idx]
        blocked = self.casters[k].occluded(origin, lp[None] - origin, np.full(len(idx), 1.0 - 1e-4, np.float32))
        idx = idx[~blocked]
        e = np.zeros(len(p), np.float32)
        d2 = dist2[idx]
        e[idx] = np.float32(light.intensity) * ndl[idx] / (np.sqrt(d2) * (d2 + np.float32(0.1)))
        return e

    def shade(
        self, tri: Int[np.ndarray, " n"], origins: Float[np.ndarray, "n 3"], dirs: Float[np.ndarray, "n 3"]
    ) -> Float[np.ndarray, "n 3"]:
        """Linear radiance of each ray (0 for a miss)."""
        rad = np.zeros((len(tri), 3), np.float32)
        hit = np.nonzero(tri >= 0)[0]
        if len(hit) == len(tri):
            t, o, d = tri, origins.astype(np.float32, copy=False), dirs.astype(np.float32, copy=False)
        else:
            t, o, d = tri[hit], origins[hit].astype(np.float32), dirs[hit].astype(np.float32)
        n = self.normals[t]
        nd = _dot(n, d)
        p = o + ((self.plane_d[t] - _dot(n, o)) / np.where(np.abs(nd) < 1e-12, 1e-12, nd))[:, None] * d
        n *= np.where(nd > 0, -1.0, 1.0).astype(np.float32)[:, None]
        albedo = srgb_to_linear_fast(self.albedo(p, n, t))
        emissive = self.face_emissive[t]
        active = emissive <= 0
        amb = np.float32(self.cfg.ambient) * (np.float32(0.8) + np.float32(0.2) * n[:, 2])
        irr = np.repeat(amb[:, None], 3, axis=1)
        for k, light in enumerate(self.scene.lights):
            irr += self.light(k, p, n, active)[:, None] * np.asarray(light.color, np.float32)[None]
        irr[~active] = emissive[~active, None]
        rad[hit] = albedo * irr * np.float32(self.cfg.exposure)
        return rad


# --------------------------------------------------------------------------------------------------- views
@dataclass
class RenderedView:
    """One frame: colour, z-depth in millimetres, raw class ids, instance ids."""

    rgb: UInt8[np.ndarray, "h w 3"]
    depth_mm: UInt16[np.ndarray, "h w"]
    semantic_class: UInt8[np.ndarray, "h w"]
    semantic_instance: UInt16[np.ndarray, "h w"]


class Renderer:
    """Renders views of one scene (casters are built once)."""

    def __init__(self, scene: Scene, cfg: SynthConfig):
        self.scene = scene
        self.cfg = cfg
        self.k = Intrinsics(cfg.width, cfg.height)
        self.primary = RayCaster(scene.vertices, scene.faces)
        self.shader = Shader(scene, cfg, [self._shadow_caster(light) for light in scene.lights])
        self.dirs_center = camera_dirs(self.k, 1).reshape(-1, 3)
        self.dirs_ss = camera_dirs(self.k, cfg.supersample).reshape(-1, 3).astype(np.float32)

    def _shadow_caster(self, light: Light) -> RayCaster:
        """The scene without the light's own lamp (a lamp shade glows; it does not block its bulb)."""
        keep = self.scene.face_instance != light.owner
        if keep.all():
            return self.primary
        return RayCaster(self.scene.vertices, self.scene.faces[keep])

    def _rays(self, poses: Float[np.ndarray, "b 4 4"], cam: Float[np.ndarray, "r 3"]) -> tuple[np.ndarray, np.ndarray]:
        dirs = np.concatenate([_affine(pose[:3], cam, translate=False) for pose in poses])
        origins = np.repeat(poses[:, :3, 3], len(cam), axis=0)
        return origins, dirs

    def render(self, poses: Float[np.ndarray, "b 4 4"]) -> list[RenderedView]:
        """Render a batch of views (all rays of the batch are cast together)."""
        b, h, w, s = len(poses), self.k.height, self.k.width, self.cfg.supersample
        o, d = self._rays(poses, self.dirs_center)
        tri = self.primary.first_hit(o, d)
        depth, cls, inst = self._labels(tri, o, d)
        if s == 1:
            rad = self.shader.shade(tri, o, d).reshape(b, h, w, 3)
        else:
            o, d = self._rays(poses.astype(np.float32), self.dirs_ss)
            tri_ss = self.primary.first_hit(o, d)
            sub = self.shader.shade(tri_ss, o, d).reshape(b, h, s, w, s, 3)
            rad = sum(sub[:, :, i, :, j] for i in range(s) for j in range(s)) / np.float32(s * s)
        rgb = np.round(linear_to_srgb(tone_map(rad)) * 255).astype(np.uint8)
        shape = (b, h, w)
        depth, cls, inst = depth.reshape(shape), cls.reshape(shape), inst.reshape(shape)
        return [RenderedView(rgb[i], depth[i], cls[i], inst[i]) for i in range(b)]

    def _labels(
        self, tri: Int[np.ndarray, " n"], o: Float[np.ndarray, "n 3"], d: Float[np.ndarray, "n 3"]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hit = tri >= 0
        z = np.zeros(len(tri))
        z[hit] = plane_hit_t(self.scene, tri[hit], o[hit], d[hit])
        depth = np.where(hit, np.clip(np.round(z * 1000.0), 100, 10000), 0).astype(np.uint16)
        cls = np.where(hit, self.scene.face_class[tri], 0).astype(np.uint8)
        inst = np.where(hit, self.scene.face_instance[tri], 0).astype(np.uint16)
        return depth, cls, inst
