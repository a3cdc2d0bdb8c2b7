"""Target-view depth from source-view depths (the seed's Algorithm 1, with a z-buffer and hole filling).

1. Back-project every valid source pixel to a world point; project all points into the target camera.
2. **Z-buffer**: each target pixel keeps the points that land in it within ``tolerance`` (relative) of the *nearest*
   one, and takes their mean depth and mean position. The official code keeps whichever point was written last, so
   a far surface seen by one source view can overwrite a near one seen by another; averaging the near points
   (instead of keeping only the nearest) removes the near bias of a plain z-buffer on slanted surfaces.
3. **Densify**: a pixel without points takes the inverse-distance-weighted mean depth of the neighbouring pixels'
   points in a ``(2 window + 1)^2`` window (distance from its centre to each point's position), using only those
   within ``tolerance`` of the window's nearest — a windowed z-test, so that background points showing through
   gaps of a foreground surface do not blur into it. (The official code applies the weighted mean to every pixel,
   which blurs depth edges and slanted floors: measured on jn-synth views with ground-truth source depths, 84 % of
   the pixels within 5 % of the truth against 95 % here.)
4. **Hole filling**: pixels with no point in their window take the largest valid depth among their 3x3 neighbours,
   repeated ``fill_iters`` times (disocclusions are usually background); what remains gets ``fill_value``.
5. A light 3x3 **bilateral blur** (spatial sigma in pixels, range sigma relative to the centre depth).

Everything is batched tensor code (no loops over points or pixels); :func:`jacobinerf_ns.gen.reference.
reproject_depth_reference` is the loop twin it is tested against. Depth is z-depth in metres; the output is detached
by nature (integer pixel assignment), as the model uses it only to place samples.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.gen.geometry import backproject, invert_pose, project


def _check(src_depth: Tensor, src_k: Tensor, src_c2w: Tensor, tgt_k: Tensor, tgt_c2w: Tensor) -> None:
    v = src_depth.shape[0]
    if src_depth.ndim != 3 or src_k.shape != (v, 3, 3) or src_c2w.shape != (v, 4, 4):
        raise ConfigError(
            f"reproject_depth: expected source depth (V, H, W), intrinsics (V, 3, 3), poses (V, 4, 4); got "
            f"{tuple(src_depth.shape)}, {tuple(src_k.shape)}, {tuple(src_c2w.shape)}"
        )
    if tgt_k.shape != (3, 3) or tgt_c2w.shape != (4, 4):
        raise ConfigError(
            f"reproject_depth: target intrinsics must be (3, 3) and pose (4, 4); got {tuple(tgt_k.shape)}, "
            f"{tuple(tgt_c2w.shape)}"
        )


def splat(
    src_depth: Float[Tensor, "v hs ws"],
    src_k: Float[Tensor, "v 3 3"],
    src_c2w: Float[Tensor, "v 4 4"],
    tgt_k: Float[Tensor, "3 3"],
    tgt_c2w: Float[Tensor, "4 4"],
    height: int,
    width: int,
    tolerance: float = 0.1,
    min_depth: float = 1e-3,
) -> tuple[Float[Tensor, "h w"], Float[Tensor, "h w 2"]]:
    """Z-buffered splat (module docstring, steps 1-2): per target pixel the mean z and mean sub-pixel offset (from
    the pixel centre) of the points landing in it within ``tolerance`` of the nearest one; ``inf`` / 0 where none."""
    _check(src_depth, src_k, src_c2w, tgt_k, tgt_c2w)
    points = backproject(src_depth, src_k, src_c2w)[src_depth > min_depth]
    uv, z = project(points, tgt_k, invert_pose(tgt_c2w))
    keep = (z > min_depth) & (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    uv, z = uv[keep], z[keep]
    px, py = uv[:, 0].floor().long().clamp(0, width - 1), uv[:, 1].floor().long().clamp(0, height - 1)
    pix = py * width + px
    n = height * width
    zmin = torch.full((n,), float("inf"), dtype=z.dtype, device=z.device)
    zmin = zmin.scatter_reduce(0, pix, z, reduce="amin", include_self=True)
    near = (z <= zmin[pix] * (1.0 + tolerance)).to(z.dtype)
    count = torch.zeros(n, dtype=z.dtype, device=z.device).scatter_add(0, pix, near)
    total = torch.zeros(n, dtype=z.dtype, device=z.device).scatter_add(0, pix, near * z)
    centre = torch.stack([px, py], dim=-1).to(z.dtype) + 0.5
    offset = torch.zeros(n, 2, dtype=z.dtype, device=z.device).index_add(0, pix, near[:, None] * (uv - centre))
    has = count > 0
    depth = torch.where(has, total / count.clamp(min=1.0), torch.full_like(total, float("inf")))
    offset = offset / count.clamp(min=1.0)[:, None]
    return depth.view(height, width), offset.view(height, width, 2)


def densify(
    zbuf: Float[Tensor, "h w"], offsets: Float[Tensor, "h w 2"], window: int = 1, tolerance: float = 0.1
) -> tuple[Float[Tensor, "h w"], Bool[Tensor, "h w"]]:
    """Step 3 of the module docstring: pixels with points keep their z-buffered depth; the others take the
    inverse-distance-weighted mean over the window's pixels with points (distance from the pixel centre to each
    one's mean point position), keeping only those within ``tolerance`` of the window's nearest. Returns the depth
    (0 where still undefined) and where it is defined."""
    h, w = zbuf.shape
    g = window
    size = 2 * g + 1
    own = torch.isfinite(zbuf)
    zp = F.pad(zbuf[None, None], (g, g, g, g), value=float("inf"))[0, 0]
    op = F.pad(offsets.permute(2, 0, 1)[None], (g, g, g, g), value=0.0)[0]
    zs, dists = [], []
    for dy in range(size):
        for dx in range(size):
            ox = op[0, dy : dy + h, dx : dx + w] + (dx - g)
            oy = op[1, dy : dy + h, dx : dx + w] + (dy - g)
            zs.append(zp[dy : dy + h, dx : dx + w])
            dists.append(torch.sqrt(ox * ox + oy * oy))
    z = torch.stack(zs)
    dist = torch.stack(dists)
    has = torch.isfinite(z)
    nearest = z.amin(dim=0)
    keep = has & (z <= nearest * (1.0 + tolerance))
    weight = torch.where(keep, 1.0 / dist.clamp(min=1e-2), torch.zeros_like(dist))
    total = weight.sum(dim=0)
    idw = torch.where(keep, z, torch.zeros_like(z)).mul(weight).sum(dim=0) / total.clamp(min=1e-12)
    valid = own | (total > 0)
    depth = torch.where(own, zbuf, torch.where(total > 0, idw, torch.zeros_like(idw)))
    return depth, valid


def fill_holes(
    depth: Float[Tensor, "h w"], valid: Bool[Tensor, "h w"], iters: int, fill_value: float | None = None
) -> Float[Tensor, "h w"]:
    """Grow valid depth into holes (largest valid 3x3 neighbour, ``iters`` times); the rest gets ``fill_value``
    (default: the largest valid depth, or 1 when nothing is valid)."""
    d, ok = depth.clone(), valid.clone()
    for _ in range(iters):
        if bool(ok.all()):
            break
        masked = torch.where(ok, d, torch.full_like(d, -float("inf")))
        grown = F.max_pool2d(masked[None, None], 3, stride=1, padding=1)[0, 0]
        new = ~ok & torch.isfinite(grown)
        d = torch.where(new, grown, d)
        ok = ok | new
    if fill_value is None:
        fill_value = float(d[ok].max()) if bool(ok.any()) else 1.0
    return torch.where(ok, d, torch.full_like(d, fill_value))


def bilateral_blur(
    depth: Float[Tensor, "h w"], sigma_space: float = 1.0, sigma_depth: float = 0.05
) -> Float[Tensor, "h w"]:
    """3x3 bilateral filter: spatial Gaussian (pixels) times a range Gaussian on the relative depth difference."""
    h, w = depth.shape
    dp = F.pad(depth[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    num = torch.zeros_like(depth)
    den = torch.zeros_like(depth)
    for dy in range(3):
        for dx in range(3):
            dq = dp[dy : dy + h, dx : dx + w]
            ws = math.exp(-((dx - 1) ** 2 + (dy - 1) ** 2) / (2 * sigma_space**2))
            rel = (dq - depth) / depth.abs().clamp(min=1e-6)
            wr = torch.exp(-0.5 * (rel / sigma_depth) ** 2)
            num = num + ws * wr * dq
            den = den + ws * wr
    return num / den


@torch.no_grad()
def reproject_depth(
    src_depth: Float[Tensor, "v hs ws"],
    src_k: Float[Tensor, "v 3 3"],
    src_c2w: Float[Tensor, "v 4 4"],
    tgt_k: Float[Tensor, "3 3"],
    tgt_c2w: Float[Tensor, "4 4"],
    height: int,
    width: int,
    window: int = 1,
    tolerance: float = 0.1,
    fill_iters: int = 8,
    fill_value: float | None = None,
    blur: bool = True,
    sigma_space: float = 1.0,
    sigma_depth: float = 0.05,
) -> tuple[Float[Tensor, "h w"], Bool[Tensor, "h w"]]:
    """The target view's z-depth map from the source views' z-depth maps (module docstring). Returns the depth and
    the mask of pixels that had a reprojected point within their window (before hole filling)."""
    zbuf, offsets = splat(src_depth, src_k, src_c2w, tgt_k, tgt_c2w, height, width, tolerance)
    depth, valid = densify(zbuf, offsets, window, tolerance)
    depth = fill_holes(depth, valid, fill_iters, fill_value)
    if blur:
        depth = bilateral_blur(depth, sigma_space, sigma_depth)
    return depth, valid
