"""Losses of the generalizable family.

* :func:`weighted_ce`: cross-entropy over labelled pixels with per-class weights (GSNeRF down-weights wall and floor
  to 0.8 on Replica); exactly 0 with a graph when nothing is labelled.
* :func:`cascade_depth_loss`: SmoothL1 of every cascade level's depth against ground truth resized to that level
  (nearest), over pixels with ground truth.
* :func:`photometric_depth_loss`: the self-supervised alternative: every source view's image against its neighbours'
  images warped into it through its estimated depth (0.15 L1 + 0.85 (1 - SSIM) / 2, the per-pixel minimum over the
  neighbours, monodepth2-style), plus edge-aware smoothness of the mean-normalised inverse depth.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.gen.geometry import backproject, invert_pose, project, to_grid


def weighted_ce(logits: Float[Tensor, "n k"], labels: Int[Tensor, " n"], weight: Tensor | None = None) -> Tensor:
    """Cross-entropy over the labelled rows (ignore label -1); 0 when there is none."""
    labels = labels.reshape(-1).long().to(logits.device)
    valid = labels != IGNORE_LABEL
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid], labels[valid], weight=weight)


def cascade_depth_loss(depths: list[Float[Tensor, "v hl wl"]], gt: Float[Tensor, "v h w"]) -> Tensor:
    """Sum over levels of the SmoothL1 depth error on pixels with ground truth (metres)."""
    total = depths[0].sum() * 0.0
    for d in depths:
        g = F.interpolate(gt[:, None], size=d.shape[-2:], mode="nearest")[:, 0]
        ok = g > 0
        if bool(ok.any()):
            total = total + F.smooth_l1_loss(d[ok], g[ok])
    return total


def _ssim_distance(x: Tensor, y: Tensor) -> Tensor:
    """(1 - SSIM) / 2 on 3x3 windows, per pixel (inputs (b, c, h, w))."""
    c1, c2 = 0.01**2, 0.03**2
    pad = lambda t: F.pad(t, (1, 1, 1, 1), mode="reflect")  # noqa: E731
    mu_x, mu_y = F.avg_pool2d(pad(x), 3, 1), F.avg_pool2d(pad(y), 3, 1)
    sx = F.avg_pool2d(pad(x * x), 3, 1) - mu_x**2
    sy = F.avg_pool2d(pad(y * y), 3, 1) - mu_y**2
    sxy = F.avg_pool2d(pad(x * y), 3, 1) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sx + sy + c2))
    return ((1 - ssim) / 2).clamp(0, 1)


def photometric_depth_loss(
    images: Float[Tensor, "v 3 h w"],
    depth: Float[Tensor, "v h w"],
    k: Float[Tensor, "v 3 3"],
    c2w: Float[Tensor, "v 4 4"],
    neighbours: Int[Tensor, "v m"],
    smoothness: float = 1e-3,
) -> Tensor:
    """Self-supervised depth loss (module docstring)."""
    v, _, h, w = images.shape
    w2c = invert_pose(c2w)
    errors = []
    for i in range(v):
        pts = backproject(depth[i], k[i], c2w[i])  # (h, w, 3)
        per_nb = []
        for n in neighbours[i].tolist():
            uv, z = project(pts, k[n], w2c[n])
            grid = to_grid(uv, h, w)[None]
            warped = F.grid_sample(images[n : n + 1], grid, mode="bilinear", padding_mode="border", align_corners=False)
            err = 0.15 * (warped - images[i : i + 1]).abs().mean(1) + 0.85 * _ssim_distance(
                warped, images[i : i + 1]
            ).mean(1)
            outside = (z <= 1e-3) | (uv[..., 0] < 0) | (uv[..., 0] > w) | (uv[..., 1] < 0) | (uv[..., 1] > h)
            per_nb.append(torch.where(outside[None], torch.full_like(err, 1e3), err))
        best = torch.stack(per_nb).min(dim=0).values
        errors.append(best[best < 1e3])
    photo = torch.cat(errors).mean() if sum(len(e) for e in errors) else depth.sum() * 0.0
    inv = 1.0 / depth.clamp(min=1e-3)
    inv = inv / inv.mean(dim=(1, 2), keepdim=True)
    gx_i = (images[..., :, 1:] - images[..., :, :-1]).abs().mean(1)
    gy_i = (images[..., 1:, :] - images[..., :-1, :]).abs().mean(1)
    gx = (inv[..., :, 1:] - inv[..., :, :-1]).abs() * torch.exp(-gx_i)
    gy = (inv[..., 1:, :] - inv[..., :-1, :]).abs() * torch.exp(-gy_i)
    return photo + smoothness * (gx.mean() + gy.mean())
