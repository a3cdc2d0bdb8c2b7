"""The cascade cost-volume network: a depth map (and a feature volume) for every source view.

Each source view is a reference view for its ``neighbours`` nearest other source views. Level 0 (the coarsest FPN
level, H/4) sweeps ``planes[0]`` depths uniform in inverse depth over [near, far]; level l > 0 sweeps ``planes[l]``
per-pixel depths centred on the upsampled level l-1 estimate, spaced ``interval_ratios[l]`` coarse intervals apart.
Per level: group-wise correlation (:func:`~jacobinerf_ns.gen.cost_volume.group_correlation`, averaged over the
neighbours that see the point), a small 3D U-Net regulariser, soft-argmin depth. The level-0 regulariser also
outputs the feature volume the renderer samples at 3D points (GeoNeRF's ``feats_vol``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.gen.cost_volume import (
    group_correlation,
    inverse_depth_planes,
    plane_sweep_warp,
    refine_planes,
    soft_argmin,
)
from jacobinerf_ns.gen.geometry import scale_intrinsics


def conv3d_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    groups = max(1, min(4, cout // 4))
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.GroupNorm(groups, cout), nn.ReLU()
    )


class CostRegularizer(nn.Module):
    """A two-scale 3D U-Net over (planes, h, w): cost → plane logits (and optionally a feature volume)."""

    def __init__(self, cin: int, base: int, feature_channels: int = 0):
        super().__init__()
        self.inp = conv3d_block(cin, base)
        self.down = conv3d_block(base, 2 * base, stride=2)
        self.mid = conv3d_block(2 * base, 2 * base)
        self.up = conv3d_block(2 * base, base)
        self.out = conv3d_block(2 * base, base)
        self.logits = nn.Conv3d(base, 1, 3, padding=1)
        self.features = nn.Conv3d(base, feature_channels, 1) if feature_channels else None

    def forward(self, cost: Float[Tensor, "v g d h w"]) -> tuple[Tensor, Tensor | None]:
        x0 = self.inp(cost)
        x1 = self.mid(self.down(x0))
        up = F.interpolate(self.up(x1), size=x0.shape[-3:], mode="trilinear", align_corners=False)
        x = self.out(torch.cat([x0, up], dim=1))
        feats = self.features(x) if self.features is not None else None
        return self.logits(x)[:, 0], feats


@dataclass
class MVSOutputs:
    """Per source view: the depth of every level (coarse to fine), the final full-resolution depth, and the
    level-0 feature volume with its (view-independent) planes."""

    depths: list[Float[Tensor, "v hl wl"]]
    depth: Float[Tensor, "v h w"]
    volume: Float[Tensor, "v c d h4 w4"]
    volume_planes: Float[Tensor, " d"]


class CascadeMVS(nn.Module):
    """See the module docstring. ``feature_channels`` are the FPN widths of the levels used (coarse to fine)."""

    def __init__(
        self,
        feature_channels: tuple[int, ...],
        planes: tuple[int, ...],
        interval_ratios: tuple[float, ...],
        groups: tuple[int, ...],
        regularizer_width: int,
        volume_channels: int,
        near: float,
        far: float,
    ):
        super().__init__()
        n = len(planes)
        if not (len(feature_channels) >= n and len(interval_ratios) == n and len(groups) == n):
            raise ConfigError(
                f"cascade: {n} levels need as many interval ratios and groups, and FPN levels (got "
                f"{len(interval_ratios)}, {len(groups)}, {len(feature_channels)})"
            )
        for c, g in zip(feature_channels, groups, strict=False):
            if c % g:
                raise ConfigError(f"cascade: {c} feature channels do not split into {g} correlation groups")
        self.planes, self.interval_ratios, self.groups = planes, interval_ratios, groups
        self.near, self.far = near, far
        self.regularizers = nn.ModuleList(
            CostRegularizer(groups[i], regularizer_width, volume_channels if i == 0 else 0) for i in range(n)
        )

    def forward(
        self,
        features: list[Float[Tensor, "v c hl wl"]],
        k: Float[Tensor, "v 3 3"],
        c2w: Float[Tensor, "v 4 4"],
        image_hw: tuple[int, int],
        neighbours: Int[Tensor, "v m"],
    ) -> MVSOutputs:
        """``features[l]`` are the FPN maps of level l (coarse to fine); ``neighbours[i]`` the source views that
        view i is matched against."""
        h, w = image_hw
        v = k.shape[0]
        coarse = inverse_depth_planes(self.near, self.far, self.planes[0], k.device, k.dtype)
        inv_step = (1.0 / self.near - 1.0 / self.far) / (self.planes[0] - 1)
        depths: list[Tensor] = []
        volume = None
        prev = None
        for level, (num, reg) in enumerate(zip(self.planes, self.regularizers, strict=True)):
            feat = features[level]
            hl, wl = feat.shape[-2:]
            k_level = scale_intrinsics(k, wl / w)
            if prev is None:
                hyp = coarse.view(1, -1, 1, 1).expand(v, -1, hl, wl)
            else:
                up = F.interpolate(prev[:, None], size=(hl, wl), mode="bilinear", align_corners=False)[:, 0]
                hyp = refine_planes(up.detach(), num, inv_step * self.interval_ratios[level], self.near, self.far)
            costs = []
            for i in range(v):
                nb = neighbours[i]
                warped, valid = plane_sweep_warp(feat[nb], k[nb], c2w[nb], k_level[i], c2w[i], hyp[i], (h, w))
                costs.append(group_correlation(feat[i], warped, valid, self.groups[level]))
            logits, feats = reg(torch.stack(costs))
            depth, _ = soft_argmin(logits, hyp)
            if level == 0:
                volume = feats
            depths.append(depth)
            prev = depth
        final = F.interpolate(prev[:, None], size=(h, w), mode="bilinear", align_corners=False)[:, 0]
        assert volume is not None
        return MVSOutputs(depths=depths, depth=final, volume=volume, volume_planes=coarse)


def volume_plane_coord(z: Tensor, near: float, far: float) -> Tensor:
    """The coordinate in [-1, 1] (first to last plane) of z-depths on the level-0 planes (uniform in 1/z)."""
    inv = 1.0 / z.clamp(min=1e-6)
    return 2.0 * (1.0 / near - inv) / (1.0 / near - 1.0 / far) - 1.0


def nearest_neighbours(c2w: Float[Tensor, "v 4 4"], m: int) -> Int[Tensor, "v m"]:
    """For every view, its ``m`` nearest other views by camera-centre distance (ties by index)."""
    v = c2w.shape[0]
    if v < 2:
        raise ConfigError("a cost volume needs at least 2 source views")
    m = min(m, v - 1)
    centres = c2w[:, :3, 3]
    dist = torch.cdist(centres, centres)
    dist = dist + torch.eye(v, device=dist.device, dtype=dist.dtype) * 1e9
    return torch.sort(dist, dim=1, stable=True).indices[:, :m]
