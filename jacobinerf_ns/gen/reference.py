"""Slow, obviously-correct loop twins of the family's batched kernels (tests compare the two on random inputs).

Each function follows its docstring's definition one point / pixel / plane at a time with plain Python loops and
scalar arithmetic, so that it shares no vectorised code with the kernel it checks (only the camera conventions of
:mod:`jacobinerf_ns.gen.geometry`, restated here in scalar form).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _project_point(p: list[float], k: Tensor, w2c: Tensor) -> tuple[float, float, float]:
    cam = [sum(float(w2c[i, j]) * p[j] for j in range(3)) + float(w2c[i, 3]) for i in range(3)]
    z = cam[2]
    zc = max(z, 1e-6)
    u = (float(k[0, 0]) * cam[0] + float(k[0, 1]) * cam[1] + float(k[0, 2]) * z) / zc
    v = (float(k[1, 1]) * cam[1] + float(k[1, 2]) * z) / zc
    return u, v, z


def _backproject_pixel(i: int, j: int, z: float, k: Tensor, c2w: Tensor) -> list[float]:
    x = (j + 0.5 - float(k[0, 2])) / float(k[0, 0]) * z
    y = (i + 0.5 - float(k[1, 2])) / float(k[1, 1]) * z
    return [float(c2w[r, 0]) * x + float(c2w[r, 1]) * y + float(c2w[r, 2]) * z + float(c2w[r, 3]) for r in range(3)]


def _inverse(c2w: Tensor) -> Tensor:
    return torch.linalg.inv(c2w.double())


def bilinear_reference(img: Tensor, u: float, v: float) -> list[float]:
    """``grid_sample(align_corners=False, padding_mode="zeros")`` at one continuous coordinate, by hand."""
    c, h, w = img.shape
    x, y = u - 0.5, v - 0.5
    x0, y0 = math.floor(x), math.floor(y)
    out = [0.0] * c
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                for ch in range(c):
                    out[ch] += wx * wy * float(img[ch, yy, xx])
    return out


# ------------------------------------------------------------------------------------------------- reprojection
def reproject_depth_reference(
    src_depth: Tensor,
    src_k: Tensor,
    src_c2w: Tensor,
    tgt_k: Tensor,
    tgt_c2w: Tensor,
    height: int,
    width: int,
    window: int = 1,
    tolerance: float = 0.1,
    fill_iters: int = 8,
    fill_value: float | None = None,
    blur: bool = True,
    sigma_space: float = 1.0,
    sigma_depth: float = 0.05,
) -> tuple[Tensor, Tensor]:
    """Loop twin of :func:`jacobinerf_ns.gen.reprojection.reproject_depth`."""
    w2c = _inverse(tgt_c2w)
    hits: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
    for s in range(src_depth.shape[0]):
        for i in range(src_depth.shape[1]):
            for j in range(src_depth.shape[2]):
                z0 = float(src_depth[s, i, j])
                if z0 <= 1e-3:
                    continue
                p = _backproject_pixel(i, j, z0, src_k[s].double(), src_c2w[s].double())
                u, v, z = _project_point(p, tgt_k.double(), w2c)
                if z > 1e-3 and 0 <= u < width and 0 <= v < height:
                    px, py = min(int(math.floor(u)), width - 1), min(int(math.floor(v)), height - 1)
                    hits.setdefault((py, px), []).append((z, u - (px + 0.5), v - (py + 0.5)))
    best: dict[tuple[int, int], tuple[float, float, float]] = {}
    for key, pts in hits.items():
        nearest = min(z for z, _, _ in pts)
        near = [p for p in pts if p[0] <= nearest * (1 + tolerance)]
        best[key] = tuple(sum(p[c] for p in near) / len(near) for c in range(3))  # type: ignore[assignment]
    depth = [[0.0] * width for _ in range(height)]
    valid = [[False] * width for _ in range(height)]
    for i in range(height):
        for j in range(width):
            if (i, j) in best:
                depth[i][j] = best[(i, j)][0]
                valid[i][j] = True
                continue
            pts = []
            for dy in range(-window, window + 1):
                for dx in range(-window, window + 1):
                    hit = best.get((i + dy, j + dx))
                    if hit is not None:
                        pts.append((hit[0], math.hypot(dx + hit[1], dy + hit[2])))
            if not pts:
                continue
            nearest = min(z for z, _ in pts)
            num = den = 0.0
            for z, dist in pts:
                if z <= nearest * (1 + tolerance):
                    wgt = 1.0 / max(dist, 1e-2)
                    num += wgt * z
                    den += wgt
            depth[i][j] = num / den
            valid[i][j] = True
    ok = [row[:] for row in valid]
    for _ in range(fill_iters):
        if all(all(row) for row in ok):
            break
        new = [row[:] for row in depth]
        new_ok = [row[:] for row in ok]
        for i in range(height):
            for j in range(width):
                if ok[i][j]:
                    continue
                vals = [
                    depth[i + dy][j + dx]
                    for dy in (-1, 0, 1)
                    for dx in (-1, 0, 1)
                    if 0 <= i + dy < height and 0 <= j + dx < width and ok[i + dy][j + dx]
                ]
                if vals:
                    new[i][j] = max(vals)
                    new_ok[i][j] = True
        depth, ok = new, new_ok
    if fill_value is None:
        vals = [depth[i][j] for i in range(height) for j in range(width) if ok[i][j]]
        fill_value = max(vals) if vals else 1.0
    depth = [[depth[i][j] if ok[i][j] else fill_value for j in range(width)] for i in range(height)]
    if blur:
        out = [[0.0] * width for _ in range(height)]
        for i in range(height):
            for j in range(width):
                num = den = 0.0
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        q = depth[min(max(i + dy, 0), height - 1)][min(max(j + dx, 0), width - 1)]
                        ws = math.exp(-(dx * dx + dy * dy) / (2 * sigma_space**2))
                        rel = (q - depth[i][j]) / max(abs(depth[i][j]), 1e-6)
                        wr = math.exp(-0.5 * (rel / sigma_depth) ** 2)
                        num += ws * wr * q
                        den += ws * wr
                out[i][j] = num / den
        depth = out
    return torch.tensor(depth, dtype=torch.float64), torch.tensor(valid)


# -------------------------------------------------------------------------------------------------- cost volume
def plane_sweep_warp_reference(
    src_feat: Tensor,
    src_k: Tensor,
    src_c2w: Tensor,
    ref_k: Tensor,
    ref_c2w: Tensor,
    depths: Tensor,
    image_hw: tuple[int, int],
) -> tuple[Tensor, Tensor]:
    """Loop twin of :func:`jacobinerf_ns.gen.cost_volume.plane_sweep_warp`."""
    n, c, hs, ws = src_feat.shape
    d, h, w = depths.shape
    warped = torch.zeros(n, c, d, h, w, dtype=torch.float64)
    valid = torch.zeros(n, d, h, w, dtype=torch.bool)
    fh, fw = image_hw
    for s in range(n):
        w2c = _inverse(src_c2w[s])
        for di in range(d):
            for i in range(h):
                for j in range(w):
                    p = _backproject_pixel(i, j, float(depths[di, i, j]), ref_k.double(), ref_c2w.double())
                    u, v, z = _project_point(p, src_k[s].double(), w2c)
                    valid[s, di, i, j] = z > 1e-6 and 0 <= u <= fw and 0 <= v <= fh
                    # the feature map has its own resolution: scale the coordinate into it
                    vals = bilinear_reference(src_feat[s].double(), u * ws / fw, v * hs / fh)
                    for ch in range(c):
                        warped[s, ch, di, i, j] = vals[ch]
    return warped, valid


def group_correlation_reference(ref_feat: Tensor, warped: Tensor, valid: Tensor, groups: int) -> Tensor:
    """Loop twin of :func:`jacobinerf_ns.gen.cost_volume.group_correlation`."""
    c, h, w = ref_feat.shape
    n, _, d = warped.shape[:3]
    per = c // groups
    out = torch.zeros(groups, d, h, w, dtype=torch.float64)
    for g in range(groups):
        for di in range(d):
            for i in range(h):
                for j in range(w):
                    total, count = 0.0, 0
                    for s in range(n):
                        if not bool(valid[s, di, i, j]):
                            continue
                        dot = sum(
                            float(ref_feat[g * per + q, i, j]) * float(warped[s, g * per + q, di, i, j])
                            for q in range(per)
                        )
                        total += dot / per
                        count += 1
                    out[g, di, i, j] = total / count if count else 0.0
    return out


def variance_cost_reference(ref_feat: Tensor, warped: Tensor, valid: Tensor) -> Tensor:
    """Loop twin of :func:`jacobinerf_ns.gen.cost_volume.variance_cost`."""
    c, h, w = ref_feat.shape
    n, _, d = warped.shape[:3]
    out = torch.zeros(c, d, h, w, dtype=torch.float64)
    for ch in range(c):
        for di in range(d):
            for i in range(h):
                for j in range(w):
                    vals = [float(ref_feat[ch, i, j])]
                    vals += [float(warped[s, ch, di, i, j]) for s in range(n) if bool(valid[s, di, i, j])]
                    mean = sum(vals) / len(vals)
                    out[ch, di, i, j] = sum((x - mean) ** 2 for x in vals) / len(vals)
    return out


# ---------------------------------------------------------------------------------------------------- attention
def masked_attention_reference(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Loop twin of :func:`jacobinerf_ns.gen.attention.masked_attention` (differentiable: built from tensor ops on
    single rows, one query at a time)."""
    b, heads, t, d = q.shape
    rows = []
    for bi in range(b):
        allowed = [bool(mask[bi, j]) for j in range(t)]
        if not any(allowed):
            allowed = [True] * t
        per_head = []
        for hh in range(heads):
            outs = []
            for i in range(t):
                scores = [torch.dot(q[bi, hh, i], k[bi, hh, j]) / math.sqrt(d) for j in range(t) if allowed[j]]
                keys = [j for j in range(t) if allowed[j]]
                top = max(float(s.detach()) for s in scores)
                exps = [torch.exp(s - top) for s in scores]
                total = sum(exps)
                outs.append(sum(e / total * v[bi, hh, j] for e, j in zip(exps, keys, strict=True)))
            per_head.append(torch.stack(outs))
        rows.append(torch.stack(per_head))
    return torch.stack(rows)


def sample_maps_reference(maps: Tensor, uv: Tensor, image_hw: tuple[int, int], radius: int = 0) -> Tensor:
    """Loop twin of :func:`jacobinerf_ns.gen.attention.sample_maps` (zero padding)."""
    v, c, hm, wm = maps.shape
    h, w = image_hw
    m = (2 * radius + 1) ** 2
    out = torch.zeros(v, uv.shape[1], m, c, dtype=torch.float64)
    for s in range(v):
        for p in range(uv.shape[1]):
            idx = 0
            for dy in range(-radius, radius + 1):
                for dx in range(-radius, radius + 1):
                    u = (float(uv[s, p, 0]) + dx * w / wm) * wm / w
                    vv = (float(uv[s, p, 1]) + dy * h / hm) * hm / h
                    out[s, p, idx] = torch.tensor(bilinear_reference(maps[s].double(), u, vv))
                    idx += 1
    return out


# ------------------------------------------------------------------------------------------------------ sampler
def guided_samples_reference(
    depth: Tensor, near: float, far: float, n_uniform: int, n_guided: int, sigma: float
) -> Tensor:
    """Loop twin of the *eval* (deterministic) :func:`jacobinerf_ns.gen.sampler.guided_samples`."""
    from statistics import NormalDist

    rows = []
    for r in range(depth.shape[0]):
        zs = [near + (far - near) * (i + 0.5) / n_uniform for i in range(n_uniform)]
        if n_guided:
            centre = min(max(float(depth[r]), near), far)
            zs.append(centre)
            for i in range(n_guided - 1):
                e = NormalDist().inv_cdf((i + 0.5) / (n_guided - 1))
                zs.append(min(max(centre + sigma * e, near), far))
        rows.append(sorted(zs))
    return torch.tensor(rows, dtype=torch.float64)
