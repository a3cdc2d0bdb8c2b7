"""A Replica-like camera path: one smooth closed loop through the free space of the room at human heights.

1. A top-down free-space map marks where a camera centre keeps ``min_clearance`` (+ a margin) from every object's
   bounding box and the room's surfaces: *walkable* (free at low camera heights too), *raised* (free only higher up,
   i.e. above low furniture) or blocked.
2. The loop is star-shaped around a centre (the room centre or a point shifted along an axis): one radius per 5
   degrees, chosen by dynamic programming to stay walkable, near a target radius (a fraction of the distance to the
   walls, so the loop goes around the room) and to change slowly; smoothed and joined by a periodic Catmull-Rom spline.
3. Heights vary smoothly in ``camera_height_range`` and rise where the loop must pass over low furniture.
4. The look direction points across the room (at the loop centre) with a smooth left-right swing, a varying downward
   pitch and a little roll, so consecutive frames overlap strongly and every wall is seen from the other side.

Frames are spaced evenly in arc length along the fixed loop, so the path does not depend on the number of views.
Poses are camera-to-world 4x4 matrices in the OpenCV convention (x right, y down, z forward), world z up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from jaxtyping import Float, Int

from jacobinerf_ns.data.synth.config import SynthConfig
from jacobinerf_ns.data.synth.scene import Scene
from jacobinerf_ns.errors import ConfigError

DENSE = 1440
"""Samples of the dense loop (validation and arc-length resampling)."""
HEIGHT_STEP = 0.04
"""Resolution (metres) of the candidate camera heights."""


class PathError(ConfigError):
    """No collision-free camera loop was found for this room."""


def box_distance(points: Float[np.ndarray, "n 3"], boxes: Float[np.ndarray, "k 2 3"]) -> Float[np.ndarray, "n k"]:
    """Euclidean distance from each point to each axis-aligned box (0 inside)."""
    lo, hi = boxes[None, :, 0], boxes[None, :, 1]
    p = points[:, None, :]
    d = np.maximum(np.maximum(lo - p, p - hi), 0.0)
    return np.sqrt((d * d).sum(-1))


def clearance(points: Float[np.ndarray, "n 3"], scene: Scene) -> Float[np.ndarray, " n"]:
    """Distance from each point to the nearest obstacle box or room surface."""
    lx, ly, lz = scene.room_size
    walls = np.stack(
        [points[:, 0] + lx / 2, lx / 2 - points[:, 0], points[:, 1] + ly / 2, ly / 2 - points[:, 1], points[:, 2],
         lz - points[:, 2]], axis=1,
    )  # fmt: skip
    return np.minimum(walls.min(1), box_distance(points, scene.obstacles).min(1))


def _heights(cfg: SynthConfig) -> Float[np.ndarray, " h"]:
    lo, hi = cfg.camera_height_range
    return np.arange(lo, hi + 1e-9, HEIGHT_STEP)


def _feasible(xy: Float[np.ndarray, "n 2"], scene: Scene, cfg: SynthConfig, margin: float) -> np.ndarray:
    """(n, h) bool: is the point at (xy, height h) at least min_clearance + margin from everything."""
    hs = _heights(cfg)
    pts = np.concatenate([np.repeat(xy, len(hs), 0), np.tile(hs, len(xy))[:, None]], axis=1)
    return (clearance(pts, scene) >= cfg.min_clearance + margin).reshape(len(xy), len(hs))


def catmull_rom_loop(points: Float[np.ndarray, "k d"], samples: int) -> Float[np.ndarray, "m d"]:
    """Closed uniform Catmull-Rom spline through ``points`` (passes through each), ``samples`` points in total."""
    k = len(points)
    u = np.arange(samples) * k / samples
    i = np.floor(u).astype(int)
    t = (u - i)[:, None]
    p0, p1, p2, p3 = (points[(i + o) % k] for o in (-1, 0, 1, 2))
    return 0.5 * (
        2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
    )


ANGLES = 72
"""Angular resolution of the loop planner (one radius per 5 degrees)."""
GRID_STEP = 0.05
"""Resolution (metres) of the free-space map and of the loop radii."""
WALKABLE, RAISED, BLOCKED = 0, 1, 2
"""Free-space states: free at low camera heights too / free only higher up (above furniture) / no height is free."""


@dataclass
class FreeSpace:
    """A top-down map of where a camera centre may go."""

    origin: tuple[float, float]
    step: float
    state: Int[np.ndarray, "nx ny"]

    def lookup(self, xy: Float[np.ndarray, "n 2"]) -> Int[np.ndarray, " n"]:
        ij = np.rint((xy - np.asarray(self.origin)) / self.step).astype(np.int64)
        ok = (ij >= 0).all(1) & (ij[:, 0] < self.state.shape[0]) & (ij[:, 1] < self.state.shape[1])
        out = np.full(len(xy), BLOCKED, dtype=np.int64)
        out[ok] = self.state[ij[ok, 0], ij[ok, 1]]
        return out


def free_space(scene: Scene, cfg: SynthConfig) -> FreeSpace:
    """Free-space map at ``GRID_STEP`` (with 0.1 m of margin on ``min_clearance``), box by box on grid blocks."""
    lx, ly, lz = scene.room_size
    reach = cfg.min_clearance + 0.1
    xs = np.arange(-lx / 2, lx / 2 + 1e-9, GRID_STEP)
    ys = np.arange(-ly / 2, ly / 2 + 1e-9, GRID_STEP)
    hs = _heights(cfg)
    feas = np.ones((len(xs), len(ys), len(hs)), dtype=bool)
    feas[(np.abs(xs) > lx / 2 - reach)] = False
    feas[:, (np.abs(ys) > ly / 2 - reach)] = False
    feas[:, :, (hs < reach) | (hs > lz - reach)] = False
    for lo, hi in scene.obstacles:
        i0, i1 = np.searchsorted(xs, lo[0] - reach), np.searchsorted(xs, hi[0] + reach)
        j0, j1 = np.searchsorted(ys, lo[1] - reach), np.searchsorted(ys, hi[1] + reach)
        if i0 >= i1 or j0 >= j1:
            continue
        dx = np.maximum(np.maximum(lo[0] - xs[i0:i1], xs[i0:i1] - hi[0]), 0.0)
        dy = np.maximum(np.maximum(lo[1] - ys[j0:j1], ys[j0:j1] - hi[1]), 0.0)
        dz = np.maximum(np.maximum(lo[2] - hs, hs - hi[2]), 0.0)
        d2 = dx[:, None, None] ** 2 + dy[None, :, None] ** 2 + dz[None, None, :] ** 2
        feas[i0:i1, j0:j1] &= d2 >= reach**2
    low = max(1, len(hs) // 3)
    state = np.where(feas[..., :low].all(-1), WALKABLE, np.where(feas.any(-1), RAISED, BLOCKED))
    return FreeSpace((float(xs[0]), float(ys[0])), GRID_STEP, state)


def _wall_range(scene: Scene, cfg: SynthConfig, centre: np.ndarray, th: np.ndarray) -> Float[np.ndarray, " j"]:
    """Distance from ``centre`` along each angle to the walls less the clearance."""
    lx, ly, _ = scene.room_size
    c, s = np.cos(th), np.sin(th)
    hx, hy = lx / 2 - cfg.min_clearance, ly / 2 - cfg.min_clearance
    rx = np.where(c > 0, (hx - centre[0]) / np.maximum(c, 1e-9), (-hx - centre[0]) / np.minimum(c, -1e-9))
    ry = np.where(s > 0, (hy - centre[1]) / np.maximum(s, 1e-9), (-hy - centre[1]) / np.minimum(s, -1e-9))
    return np.minimum(rx, ry)


def _radius_profile(
    state: Int[np.ndarray, "j r"], radii: Float[np.ndarray, " r"], target: Float[np.ndarray, " j"]
) -> tuple[Float[np.ndarray, " j"], float]:
    """Radius per angle by dynamic programming: stay walkable, near ``target``, change slowly. Returns (r, cost)."""
    unary = ((radii[None] - target[:, None]) / 0.6) ** 2 + np.choose(state, [0.0, 25.0, np.inf])
    dr = radii[:, None] - radii[None, :]
    pair = np.where(np.abs(dr) <= 0.25 + 1e-9, (dr / 0.1) ** 2, np.inf)
    j = len(target)
    n = 2 * j  # two laps; the second one does not depend on the arbitrary start
    cost = unary[0].copy()
    back = np.zeros((n, len(radii)), dtype=np.int64)
    for step in range(1, n):
        total = cost[:, None] + pair
        back[step] = np.argmin(total, axis=0)
        cost = total[back[step], np.arange(len(radii))] + unary[step % j]
    idx = np.empty(n, dtype=np.int64)
    idx[-1] = int(np.argmin(cost))
    for step in range(n - 1, 0, -1):
        idx[step - 1] = back[step, idx[step]]
    lap = idx[j:]
    lap_cost = float(unary[np.arange(j), lap].sum() + pair[lap, np.roll(lap, -1)].sum())
    return _smooth_loop(radii[lap], 1.5), lap_cost


def _best_loop(
    scene: Scene, cfg: SynthConfig, fs: FreeSpace, rng: np.random.Generator
) -> tuple[Float[np.ndarray, "j 2"], np.ndarray] | None:
    """The cheapest star-shaped loop over a few candidate centres (room centre and offsets along both axes)."""
    lx, ly, _ = scene.room_size
    th = np.arange(ANGLES) * 2 * math.pi / ANGLES
    radii = np.arange(0.4, math.hypot(lx, ly) / 2, GRID_STEP)
    frac = rng.uniform(0.5, 0.65) + 0.08 * np.sin(2 * th + rng.uniform(0, 2 * math.pi))
    best = None
    for fx, fy in ((0, 0), (-0.12, 0), (0.12, 0), (0, -0.1), (0, 0.1), (-0.22, 0), (0.22, 0)):
        centre = np.array([fx * lx, fy * ly])
        if fs.lookup(centre[None])[0] == BLOCKED:
            continue
        d = np.stack([np.cos(th), np.sin(th)], 1)
        pts = centre[None, None] + d[:, None, :] * radii[None, :, None]
        state = fs.lookup(pts.reshape(-1, 2)).reshape(ANGLES, len(radii))
        r, cost = _radius_profile(state, radii, frac * _wall_range(scene, cfg, centre, th))
        cost += 5.0 * (abs(fx) + abs(fy)) / 0.1
        if np.isfinite(cost) and (best is None or cost < best[0]):
            best = (cost, centre[None] + d * r[:, None], centre)
    return None if best is None else (best[1], best[2])


def _smooth_loop(x: Float[np.ndarray, " m"], width: float) -> Float[np.ndarray, " m"]:
    """Circular Gaussian smoothing (``width`` in samples)."""
    m = len(x)
    k = np.arange(-int(3 * width), int(3 * width) + 1)
    w = np.exp(-0.5 * (k / width) ** 2)
    w /= w.sum()
    idx = (np.arange(m)[:, None] + k[None]) % m
    return (x[idx] * w).sum(1)


def _dilate_loop(x: Float[np.ndarray, " m"], half: int) -> Float[np.ndarray, " m"]:
    m = len(x)
    idx = (np.arange(m)[:, None] + np.arange(-half, half + 1)[None]) % m
    return x[idx].max(1)


def _height_profile(
    xy: Float[np.ndarray, "m 2"], scene: Scene, cfg: SynthConfig, rng: np.random.Generator
) -> Float[np.ndarray, " m"] | None:
    """Smooth heights along the loop that keep clearance; None if some point has no feasible height."""
    lo, hi = cfg.camera_height_range
    u = np.arange(len(xy)) / len(xy)
    mid, amp = (lo + hi) / 2, (hi - lo) / 2
    base = mid + amp * (0.45 * np.sin(2 * math.pi * 2 * u + rng.uniform(0, 6.3)) + 0.25 * np.sin(2 * math.pi * 3 * u))
    feas = _feasible(xy, scene, cfg, 0.05)
    if not feas.any(1).all():
        return None
    hs = _heights(cfg)
    lowest = hs[np.argmax(feas, axis=1)]
    # rise smoothly to pass over low furniture: dilate the requirement, then smooth (result stays above it)
    need = _smooth_loop(_dilate_loop(lowest, 40), 12.0)
    return np.clip(np.maximum(base, need), lo, hi)


def plan_loop(
    scene: Scene, cfg: SynthConfig, rng: np.random.Generator, tries: int = 20
) -> tuple[Float[np.ndarray, "m 3"], Float[np.ndarray, " 2"]]:
    """A dense closed loop of camera centres (uniform in arc length) and the point it goes around."""
    fs = free_space(scene, cfg)
    for _ in range(tries):
        found = _best_loop(scene, cfg, fs, rng)
        if found is None:
            break
        xy = catmull_rom_loop(found[0], DENSE)
        z = _height_profile(xy, scene, cfg, rng)
        if z is None:
            continue
        loop = np.concatenate([xy, z[:, None]], axis=1)
        if clearance(loop, scene).min() >= cfg.min_clearance:
            return _resample_loop(loop, DENSE), found[1]
    raise PathError(f"no collision-free camera loop found for seed {cfg.seed} (try another seed or min_clearance)")


def _resample_loop(loop: Float[np.ndarray, "m 3"], n: int) -> Float[np.ndarray, "n 3"]:
    """``n`` points evenly spaced in arc length along a closed polyline, starting at its first point."""
    closed = np.concatenate([loop, loop[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    target = np.arange(n) / n * s[-1]
    return np.stack([np.interp(target, s, closed[:, d]) for d in range(3)], axis=1)


def look_rotation(
    yaw: Float[np.ndarray, " n"], pitch: Float[np.ndarray, " n"], roll: Float[np.ndarray, " n"]
) -> Float[np.ndarray, "n 3 3"]:
    """Camera-to-world rotations (OpenCV axes as columns: right, down, forward) for z-up yaw/pitch/roll."""
    f = np.stack([np.cos(pitch) * np.cos(yaw), np.cos(pitch) * np.sin(yaw), np.sin(pitch)], axis=1)
    r = np.cross(f, np.array([0.0, 0.0, 1.0]))
    r /= np.linalg.norm(r, axis=1, keepdims=True)
    d = np.cross(f, r)
    c, s = np.cos(roll)[:, None], np.sin(roll)[:, None]
    r2, d2 = c * r + s * d, -s * r + c * d
    return np.stack([r2, d2, f], axis=2)


def camera_poses(scene: Scene, cfg: SynthConfig) -> Float[np.ndarray, "n 4 4"]:
    """The ``cfg.num_views`` camera-to-world poses (OpenCV convention, world z up) for ``cfg.seed``."""
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, 2]))
    loop, centre = plan_loop(scene, cfg, rng)
    phases = rng.uniform(0, 2 * math.pi, 5)
    n = cfg.num_views
    pos = _resample_loop(loop, n)
    u = np.arange(n) / n
    to_c = centre[None] - pos[:, :2]
    a = math.radians(cfg.look_swing_deg)
    yaw = np.arctan2(to_c[:, 1], to_c[:, 0])
    yaw = yaw + a * np.sin(2 * math.pi * 2 * u + phases[0]) + 0.3 * a * np.sin(2 * math.pi * u + phases[1])
    pitch = math.radians(cfg.pitch_deg) + math.radians(7.0) * np.sin(2 * math.pi * 3 * u + phases[2])
    roll = math.radians(1.5) * np.sin(2 * math.pi * 2 * u + phases[3])
    poses = np.tile(np.eye(4), (n, 1, 1))
    poses[:, :3, :3] = look_rotation(yaw, pitch, roll)
    poses[:, :3, 3] = pos
    return poses
