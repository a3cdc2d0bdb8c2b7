"""Rendering from source views: tokens per (sample, view), attention over views, density, colour and semantics.

For a 3D sample x and each source view v, x is projected into v (pixel ``uv``, depth ``z_v``) and a token is built
from v's full-resolution FPN features, its level-0 cost-volume features at (uv, z_v), its colour at uv and an
in-image flag. A global token (mean and variance over the views that see x) joins them; masked self-attention runs
over the V + 1 tokens, where a view is masked out when x projects outside it or lies behind its estimated surface
(``z_v > (1 + occlusion_tolerance) * depth_v(uv)``; if that leaves no view, the in-image views, then all).

* **Density**: the global token's output, mixed along each ray by a 1D convolution over its sorted samples, then an
  MLP and softplus; ``alpha = 1 - exp(-sigma * delta)`` with metric interval lengths (so renders with 4 or 128
  samples are comparable).
* **Colour**: per view, an MLP on its token output and the angle between the target ray and the source camera's ray
  through x gives a blending logit; the colour is the softmax-weighted mean of the source colours (GeoNeRF/GSNeRF).
* **Semantics**, only at the point on the target depth: tokens from the views' ``(2 r + 1)^2`` neighbourhood of
  semantic logits, the in-image and visibility flags and the ray-angle difference, a global mean/variance token,
  masked attention, then an MLP on the global output and the mean of the visible views' outputs (so any number of
  views works, unlike GSNeRF's concatenation of a fixed number). The MLP is a residual on the *vote*, the mean of
  the visible views' centre logits, and starts at zero: an untrained head already aggregates the views (a CPU-sized
  schedule cannot afford to learn that from scratch), and training learns the corrections.
* **2D-source baseline** (:meth:`Renderer.semantics_2d`): the logits of the nearest source view into whose image
  the point projects.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from jacobinerf_ns.gen.attention import ViewAttentionLayer, sample_maps, sample_volume
from jacobinerf_ns.gen.geometry import inside_image, project
from jacobinerf_ns.gen.mvs import volume_plane_coord


@dataclass
class SourceContext:
    """Everything the renderer reads from the K source views of one target view (views ordered nearest first)."""

    images: Float[Tensor, "v 3 h w"]
    k: Float[Tensor, "v 3 3"]
    c2w: Float[Tensor, "v 4 4"]
    w2c: Float[Tensor, "v 4 4"]
    features: Float[Tensor, "v c h w"]
    semantic_logits: Float[Tensor, "v k h w"]
    volume: Float[Tensor, "v cv d h4 w4"]
    depth: Float[Tensor, "v h w"]
    near: float
    far: float

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[-2]), int(self.images.shape[-1])

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])


@dataclass
class Projection:
    uv: Float[Tensor, "v p 2"]
    z: Float[Tensor, "v p"]
    inside: Bool[Tensor, "v p"]
    visible: Bool[Tensor, "v p"]


def mlp(cin: int, hidden: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(cin, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, cout))


def _fallback(mask: Tensor, inside: Tensor) -> Tensor:
    """Per point (columns): the mask, or the in-image views where the mask is empty, or all views."""
    mask = torch.where(mask.any(dim=0, keepdim=True), mask, inside)
    return torch.where(mask.any(dim=0, keepdim=True), mask, torch.ones_like(mask))


def _masked_stats(x: Float[Tensor, "v p c"], weight: Float[Tensor, "v p"]) -> Float[Tensor, "p 2c"]:
    w = weight[..., None]
    count = w.sum(dim=0).clamp(min=1.0)
    mean = (x * w).sum(dim=0) / count
    var = ((x - mean) ** 2 * w).sum(dim=0) / count
    return torch.cat([mean, var], dim=-1)


class Renderer(nn.Module):
    """See the module docstring."""

    def __init__(
        self,
        feature_channels: int,
        volume_channels: int,
        num_classes: int,
        dim: int = 32,
        heads: int = 4,
        layers: int = 4,
        semantic_layers: int = 4,
        semantic_radius: int = 1,
        occlusion_tolerance: float = 0.1,
    ):
        super().__init__()
        self.semantic_radius = semantic_radius
        self.occlusion_tolerance = occlusion_tolerance
        point_in = feature_channels + volume_channels
        self.token = nn.Sequential(nn.Linear(point_in + 4, dim), nn.ELU())
        self.global_token = nn.Sequential(nn.Linear(2 * point_in, dim), nn.ELU(), nn.Linear(dim, dim), nn.ELU())
        self.layers = nn.ModuleList(ViewAttentionLayer(dim, heads, dim) for _ in range(layers))
        self.ray_mix = nn.Sequential(nn.Conv1d(dim, dim, 3, padding=1), nn.ELU(), nn.Conv1d(dim, dim, 3, padding=1))
        self.sigma = mlp(dim, dim, 1)
        self.blend = mlp(dim + 4, dim, 1)
        m = (2 * semantic_radius + 1) ** 2
        sem_in = m * num_classes
        self.semantic_token = nn.Sequential(nn.Linear(sem_in + 6, dim), nn.ELU())
        self.semantic_global = nn.Sequential(nn.Linear(2 * sem_in, dim), nn.ELU(), nn.Linear(dim, dim), nn.ELU())
        self.semantic_layers = nn.ModuleList(ViewAttentionLayer(dim, heads, dim) for _ in range(semantic_layers))
        self.semantic_head = mlp(2 * dim, dim, num_classes)
        nn.init.zeros_(self.semantic_head[-1].weight)  # starts as the plain multi-view vote
        nn.init.zeros_(self.semantic_head[-1].bias)
        self.num_classes = num_classes

    # -------------------------------------------------------------------------------------------- projection
    def project(self, ctx: SourceContext, points: Float[Tensor, "p 3"]) -> Projection:
        h, w = ctx.image_hw
        uvs, zs = [], []
        for i in range(ctx.num_views):
            uv, z = project(points, ctx.k[i], ctx.w2c[i])
            uvs.append(uv)
            zs.append(z)
        uv, z = torch.stack(uvs), torch.stack(zs)
        inside = (z > 1e-3) & inside_image(uv, h, w)
        surface = sample_maps(ctx.depth[:, None], uv, (h, w), padding_mode="border")[:, :, 0, 0]
        visible = inside & (z <= surface * (1.0 + self.occlusion_tolerance))
        return Projection(uv, z, inside, visible)

    # -------------------------------------------------------------------------------------- density, colour
    def density_and_colour(
        self, ctx: SourceContext, points: Float[Tensor, "r n 3"], ray_dirs: Float[Tensor, "r 3"]
    ) -> tuple[Float[Tensor, "r n"], Float[Tensor, "r n 3"]]:
        """Density and blended colour at every sample (``ray_dirs`` unit target ray directions)."""
        r, n, _ = points.shape
        flat = points.reshape(-1, 3)
        proj = self.project(ctx, flat)
        hw = ctx.image_hw
        colours = sample_maps(ctx.images, proj.uv, hw, padding_mode="border")[:, :, 0]  # (v, p, 3)
        feats = sample_maps(ctx.features, proj.uv, hw)[:, :, 0]
        vol = sample_volume(ctx.volume, proj.uv, volume_plane_coord(proj.z, ctx.near, ctx.far), hw)
        point_feats = torch.cat([feats, vol], dim=-1)
        inside = proj.inside.to(points.dtype)
        tokens = self.token(torch.cat([point_feats, colours, inside[..., None]], dim=-1))  # (v, p, dim)
        glob = self.global_token(_masked_stats(point_feats, inside))  # (p, dim)
        x = torch.cat([tokens.transpose(0, 1), glob[:, None]], dim=1)  # (p, v + 1, dim)
        mask = _fallback(proj.visible, proj.inside)
        mask = torch.cat([mask.transpose(0, 1), torch.ones_like(mask[:1]).transpose(0, 1)], dim=1)
        for layer in self.layers:
            x = layer(x, mask)
        g = x[:, -1].reshape(r, n, -1).transpose(1, 2)  # (r, dim, n)
        g = (g + self.ray_mix(g)).transpose(1, 2)
        sigma = F.softplus(self.sigma(g)[..., 0] - 1.0)
        # colour: blending weights over the views from their tokens and the ray-angle difference
        angle = self._angle(ctx, flat, ray_dirs[:, None].expand(r, n, 3).reshape(-1, 3))
        logit = self.blend(torch.cat([x[:, :-1].transpose(0, 1), angle], dim=-1))[..., 0]  # (v, p)
        blend_mask = _fallback(proj.inside, proj.inside)
        weight = torch.softmax(logit.masked_fill(~blend_mask, float("-inf")), dim=0)
        rgb = (weight[..., None] * colours).sum(dim=0)
        return sigma, rgb.reshape(r, n, 3)

    # --------------------------------------------------------------------------------------------- semantics
    def semantics(
        self, ctx: SourceContext, points: Float[Tensor, "r 3"], ray_dirs: Float[Tensor, "r 3"]
    ) -> Float[Tensor, "r k"]:
        """Class logits at the depth points, from attention over the views' semantic logits (``ray_dirs``: unit
        target ray directions)."""
        proj = self.project(ctx, points)
        sem = sample_maps(ctx.semantic_logits, proj.uv, ctx.image_hw, self.semantic_radius)  # (v, r, m, k)
        sem = sem.flatten(2)
        mask = _fallback(proj.visible, proj.inside)
        geo = torch.cat([proj.inside[..., None], proj.visible[..., None]], dim=-1).to(points.dtype)
        tokens = self.semantic_token(torch.cat([sem, geo, self._angle(ctx, points, ray_dirs)], dim=-1))
        glob = self.semantic_global(_masked_stats(sem, mask.to(points.dtype)))
        x = torch.cat([tokens.transpose(0, 1), glob[:, None]], dim=1)
        full = torch.cat([mask.transpose(0, 1), torch.ones_like(mask[:1]).transpose(0, 1)], dim=1)
        for layer in self.semantic_layers:
            x = layer(x, full)
        w = mask.transpose(0, 1).to(x.dtype)[..., None]
        views = (x[:, :-1] * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        centre = sem.view(*sem.shape[:2], -1, self.num_classes)[:, :, sem_centre(self.semantic_radius)]  # (v, r, k)
        vote = (centre.transpose(0, 1) * w).sum(dim=1) / w.sum(dim=1).clamp(min=1.0)
        return vote + self.semantic_head(torch.cat([x[:, -1], views], dim=-1))

    def semantics_2d(self, ctx: SourceContext, points: Float[Tensor, "r 3"]) -> Float[Tensor, "r k"]:
        """The 2D-source baseline: the encoder's logits of the nearest source view (views are ordered nearest
        first) into which the point projects (else the nearest view), at its projection."""
        proj = self.project(ctx, points)
        inside = _fallback(proj.inside, proj.inside)
        first = torch.argmax(inside.to(torch.int8), dim=0)  # the first view that sees the point's pixel
        logits = sample_maps(ctx.semantic_logits, proj.uv, ctx.image_hw, padding_mode="border")[:, :, 0]
        return logits[first, torch.arange(points.shape[0], device=points.device)]

    @staticmethod
    def _angle(ctx: SourceContext, points: Float[Tensor, "p 3"], ray_dirs: Float[Tensor, "p 3"]) -> Tensor:
        """Per view and point: target ray direction minus the source camera's ray direction, and their dot."""
        to_src = F.normalize(points[None] - ctx.c2w[:, None, :3, 3], dim=-1)  # (v, p, 3)
        tgt = ray_dirs[None]
        return torch.cat([tgt - to_src, (tgt * to_src).sum(-1, keepdim=True)], dim=-1)


def sem_centre(radius: int) -> int:
    """Index of the window centre among the (2 r + 1)^2 neighbourhood samples."""
    return (2 * radius + 1) * radius + radius


def composite(
    sigma: Float[Tensor, "r n"], z: Float[Tensor, "r n"], deltas: Float[Tensor, "r n"], ray_norm: Float[Tensor, " r"]
) -> Float[Tensor, "r n"]:
    """Volume-rendering weights ``w_i = T_i (1 - exp(-sigma_i delta_i |d|))`` (z intervals made metric)."""
    alpha = 1.0 - torch.exp(-sigma * deltas * ray_norm[:, None])
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1.0 - alpha[:, :-1] + 1e-10], dim=1), dim=1)
    return alpha * trans
