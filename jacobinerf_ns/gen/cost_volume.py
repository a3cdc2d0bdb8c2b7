"""Plane-sweep cost volumes: depth hypotheses, warping of neighbour features, matching costs, soft-argmin.

For a reference (source) view with features ``f_r`` at some pyramid level and its neighbour views' features
``f_n``, every reference pixel p and depth hypothesis d gives a world point; projecting it into neighbour n and
sampling ``f_n`` there gives the warped feature ``f_n(p, d)``. Costs:

* **group-wise correlation** (GwcNet / GeoNeRF, G groups): ``c_g(p, d) = mean_{c in group g} f_r(p)_c f_n(p, d)_c``,
  averaged over the neighbours **that see the point** (the official code divides by a fixed, wrong view count);
* **variance** (MVSNet): the per-channel variance of ``{f_r} ∪ {f_n : n sees the point}``.

Depth hypotheses are uniform in inverse depth over [near, far] at the coarsest level; finer levels take a few planes
centred (in inverse depth) on the upsampled coarser estimate. ``soft_argmin`` turns regularised logits over the
planes into a probability and its expected depth. Loop references: :mod:`jacobinerf_ns.gen.reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.gen.geometry import backproject, inside_image, invert_pose, project, to_grid


def inverse_depth_planes(
    near: float, far: float, num: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Float[Tensor, " num"]:
    """``num`` depths from near to far, evenly spaced in inverse depth."""
    if not 0 < near < far or num < 2:
        raise ConfigError(f"depth planes need 0 < near < far and at least 2 planes (got {near}, {far}, {num})")
    inv = torch.linspace(1.0 / near, 1.0 / far, num, device=device, dtype=dtype)
    return 1.0 / inv


def refine_planes(
    depth: Float[Tensor, "*bs h w"], num: int, inv_interval: float, near: float, far: float
) -> Float[Tensor, "*bs num h w"]:
    """``num`` per-pixel hypotheses centred on ``depth`` in inverse depth, spaced by ``inv_interval`` (1/m), kept
    inside [near, far] by shifting the whole set (not clipping planes onto each other)."""
    inv = 1.0 / depth.clamp(min=near, max=far)
    half = (num - 1) / 2.0
    lo = torch.clamp(inv - half * inv_interval, min=1.0 / far)
    lo = torch.minimum(lo, torch.full_like(lo, 1.0 / near) - (num - 1) * inv_interval)
    lo = lo.clamp(min=1.0 / far)
    steps = torch.arange(num, device=depth.device, dtype=depth.dtype) * inv_interval
    inv_planes = lo.unsqueeze(-3) + steps.view(num, 1, 1)
    return 1.0 / inv_planes.flip(-3)


def plane_sweep_warp(
    src_feat: Float[Tensor, "n c hs ws"],
    src_k: Float[Tensor, "n 3 3"],
    src_c2w: Float[Tensor, "n 4 4"],
    ref_k: Float[Tensor, "3 3"],
    ref_c2w: Float[Tensor, "4 4"],
    depths: Float[Tensor, "d h w"],
    image_hw: tuple[int, int],
) -> tuple[Float[Tensor, "n c d h w"], Bool[Tensor, "n d h w"]]:
    """Neighbour features warped onto the reference view's depth hypotheses.

    ``ref_k`` is the intrinsics of the reference *at the volume's resolution* (h, w); ``src_k`` are the neighbours'
    full-image intrinsics and ``image_hw`` the full image size they refer to (features of any resolution are sampled
    with resolution-independent ``grid_sample`` coordinates). Bilinear, zero outside; ``valid`` marks points in front
    of the neighbour camera and inside its image.
    """
    n = src_feat.shape[0]
    d, h, w = depths.shape
    if src_k.shape != (n, 3, 3) or src_c2w.shape != (n, 4, 4):
        raise ConfigError(
            f"plane_sweep_warp: {n} neighbour feature maps but intrinsics {tuple(src_k.shape)} and poses "
            f"{tuple(src_c2w.shape)}"
        )
    points = backproject(depths, ref_k.expand(d, 3, 3), ref_c2w.expand(d, 4, 4))  # (d, h, w, 3)
    w2c = invert_pose(src_c2w)
    uvs, valids = [], []
    for i in range(n):
        uv, z = project(points, src_k[i], w2c[i])
        uvs.append(uv)
        valids.append((z > 1e-6) & inside_image(uv, *image_hw))
    uv = torch.stack(uvs)  # (n, d, h, w, 2)
    valid = torch.stack(valids)
    grid = to_grid(uv, *image_hw).reshape(n, d, h * w, 2)
    warped = F.grid_sample(src_feat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped.view(n, -1, d, h, w), valid


def group_correlation(
    ref_feat: Float[Tensor, "c h w"],
    warped: Float[Tensor, "n c d h w"],
    valid: Bool[Tensor, "n d h w"],
    groups: int,
) -> Float[Tensor, "g d h w"]:
    """Group-wise correlation averaged over the neighbours that see each point (0 where none does)."""
    c, h, w = ref_feat.shape
    n, _, d = warped.shape[:3]
    if c % groups:
        raise ConfigError(f"group_correlation: {c} channels do not split into {groups} groups")
    ref = ref_feat.view(1, groups, c // groups, 1, h, w)
    war = warped.view(n, groups, c // groups, d, h, w)
    corr = (ref * war).mean(dim=2)  # (n, g, d, h, w)
    weight = valid.to(corr.dtype).unsqueeze(1)
    count = weight.sum(dim=0).clamp(min=1.0)
    return (corr * weight).sum(dim=0) / count


def variance_cost(
    ref_feat: Float[Tensor, "c h w"], warped: Float[Tensor, "n c d h w"], valid: Bool[Tensor, "n d h w"]
) -> Float[Tensor, "c d h w"]:
    """Per-channel variance of the reference feature and the warped features of the neighbours that see the point."""
    d = warped.shape[2]
    weight = valid.to(warped.dtype).unsqueeze(1)  # (n, 1, d, h, w)
    count = 1.0 + weight.sum(dim=0)
    ref = ref_feat.unsqueeze(1).expand(-1, d, -1, -1)
    mean = (ref + (warped * weight).sum(dim=0)) / count
    sq = (ref * ref + (warped * warped * weight).sum(dim=0)) / count
    return (sq - mean * mean).clamp(min=0.0)


def soft_argmin(
    logits: Float[Tensor, "*bs d h w"], depths: Float[Tensor, "*bs d h w"]
) -> tuple[Float[Tensor, "*bs h w"], Float[Tensor, "*bs d h w"]]:
    """Expected depth under ``softmax(logits)`` over the planes, and that probability."""
    prob = torch.softmax(logits, dim=-3)
    return (prob * depths).sum(dim=-3), prob
