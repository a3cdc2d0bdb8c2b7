"""Attention over source views, and sampling of per-view maps at projected points.

* :func:`masked_attention`: multi-head scaled dot-product attention where each query attends only to the keys its
  mask allows (views that see the point, plus the always-visible global token). Rows whose mask is all False attend
  to everything (never NaN).
* :class:`ViewAttentionLayer`: one post-norm transformer layer (attention + feed-forward), GeoNeRF-style.
* :func:`sample_maps`: bilinear samples of per-view feature maps at continuous pixel coordinates, optionally with the
  ``(2 r + 1)^2`` neighbourhood (one pixel of the map apart), as GSNeRF samples 3x3 semantic logits.

Loop references: :mod:`jacobinerf_ns.gen.reference`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor, nn

from jacobinerf_ns.gen.geometry import to_grid


def masked_attention(
    q: Float[Tensor, "b h t d"], k: Float[Tensor, "b h t d"], v: Float[Tensor, "b h t d"], mask: Bool[Tensor, "b t"]
) -> Float[Tensor, "b h t d"]:
    """softmax(q k^T / sqrt(d) masked to the allowed keys) v."""
    scores = q @ k.transpose(-1, -2) / (q.shape[-1] ** 0.5)
    allowed = mask | ~mask.any(dim=-1, keepdim=True)  # a set with no allowed key attends to all
    scores = scores.masked_fill(~allowed[:, None, None, :], float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


class ViewAttentionLayer(nn.Module):
    """Masked multi-head self-attention over a set of tokens, then a position-wise feed-forward; post-norm."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} does not split into {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.norm1 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, hidden), nn.ELU(), nn.Linear(hidden, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: Float[Tensor, "b t c"], mask: Bool[Tensor, "b t"]) -> Float[Tensor, "b t c"]:
        b, t, c = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        att = masked_attention(q, k, v, mask).permute(0, 2, 1, 3).reshape(b, t, c)
        x = self.norm1(x + self.out(att))
        return self.norm2(x + self.ff(x))


def neighbourhood_offsets(radius: int, device: torch.device | str = "cpu", dtype=torch.float32) -> Tensor:
    """(dx, dy) offsets of a (2 radius + 1)^2 window in row-major order, the centre in the middle."""
    r = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([dx.reshape(-1), dy.reshape(-1)], dim=-1)


def sample_maps(
    maps: Float[Tensor, "v c hm wm"],
    uv: Float[Tensor, "v p 2"],
    image_hw: tuple[int, int],
    radius: int = 0,
    padding_mode: str = "zeros",
) -> Float[Tensor, "v p m c"]:
    """Bilinear samples of each view's map at that view's continuous coordinates ``uv`` (in the full image of size
    ``image_hw``), for the ``m = (2 radius + 1)^2`` offsets of :func:`neighbourhood_offsets` (map pixels apart)."""
    v, c, hm, wm = maps.shape
    h, w = image_hw
    offsets = neighbourhood_offsets(radius, uv.device, uv.dtype) * torch.tensor(
        [w / wm, h / hm], device=uv.device, dtype=uv.dtype
    )
    pts = uv[:, :, None, :] + offsets  # (v, p, m, 2)
    grid = to_grid(pts, h, w)
    out = F.grid_sample(maps, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.permute(0, 2, 3, 1)  # (v, p, m, c)


def sample_volume(
    volume: Float[Tensor, "v c d hm wm"],
    uv: Float[Tensor, "v p 2"],
    plane_coord: Float[Tensor, "v p"],
    image_hw: tuple[int, int],
) -> Float[Tensor, "v p c"]:
    """Trilinear samples of per-view feature volumes at (u, v) and a plane coordinate in [-1, 1] (first to last plane
    centre, border-clamped): GeoNeRF's cost-volume features at a 3D point."""
    v, c, d = volume.shape[:3]
    h, w = image_hw
    xy = to_grid(uv, h, w)
    # grid_sample(align_corners=False) puts plane centres at (2 i + 1) / d - 1; map [-1, 1] onto those centres
    zc = plane_coord * (d - 1) / d
    grid = torch.cat([xy, zc[..., None]], dim=-1).view(v, 1, 1, -1, 3)
    out = F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.view(v, c, -1).transpose(1, 2)
