"""Per-ray kernels behind click selection, label colours and the JacobiNeRF recolour edit (each with a loop twin).

* :func:`resonance_score`: how strongly pixel q resonates with a clicked direction G (DESIGN §4, "selection"):
  ``cosine`` — |cos(J̃_q, G)| over the 3K values (scale-free); ``response`` — the first-order response
  mean_c |J̃_q[c]·G[c]| divided by a reference (the clicked pixel's own), clipped to [0, 1].
* :func:`feature_score`: max(0, cos(F̂_q, query)) for feature fields.
* :func:`perturbed_colors`: per-sample colours with θᴰ = W + ΔW, i.e. σ(z + ΔW h), without touching the parameters
  (the official 2D perturbation and the recolour edit ``ΔW = diag(c)·G·t``).
* :func:`overlay`: a highlight blended onto rgb where selected.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor


def resonance_score(
    jacobians: Float[Tensor, "*bs 3 k"],
    direction: Float[Tensor, "3 k"],
    mode: Literal["cosine", "response"] = "cosine",
    reference: float = 1.0,
) -> Float[Tensor, "*bs"]:
    """See the module docstring; in [0, 1]."""
    g = direction.to(jacobians)
    if mode == "cosine":
        flat = jacobians.flatten(start_dim=-2)
        return F.cosine_similarity(flat, g.flatten()[None].expand_as(flat), dim=-1, eps=1e-12).abs()
    response = (jacobians * g).sum(dim=-1).abs().mean(dim=-1)
    return (response / max(float(reference), 1e-12)).clamp(0.0, 1.0)


def resonance_score_reference(
    jacobians: Float[Tensor, "r 3 k"], direction: Float[Tensor, "3 k"], mode: str = "cosine", reference: float = 1.0
) -> Float[Tensor, " r"]:
    """Loop twin of :func:`resonance_score`."""
    out = torch.zeros(jacobians.shape[0], dtype=jacobians.dtype)
    g = direction.flatten().tolist()
    for r in range(jacobians.shape[0]):
        j = jacobians[r].flatten().tolist()
        if mode == "cosine":
            dot = sum(a * b for a, b in zip(j, g, strict=True))
            nj = sum(a * a for a in j) ** 0.5
            ng = sum(b * b for b in g) ** 0.5
            out[r] = abs(dot) / max(nj * ng, 1e-12)
        else:
            per_c = [abs(float(torch.dot(jacobians[r, c], direction[c]))) for c in range(3)]
            out[r] = min(max(sum(per_c) / 3 / max(reference, 1e-12), 0.0), 1.0)
    return out


def feature_score(features: Float[Tensor, "*bs d"], query: Float[Tensor, " d"]) -> Float[Tensor, "*bs"]:
    """max(0, cos(features, query))."""
    q = query.to(features)
    return F.cosine_similarity(features, q.expand_as(features), dim=-1, eps=1e-12).clamp(min=0.0)


def perturbed_colors(
    preact: Float[Tensor, "*bs 3"], hidden: Float[Tensor, "*bs k"], delta: Float[Tensor, "3 k"]
) -> Float[Tensor, "*bs 3"]:
    """σ(z + ΔW h): the colour the field would give with θᴰ = W + ΔW (same bias, same h)."""
    return torch.sigmoid(preact + hidden @ delta.to(hidden).T)


def perturbed_colors_reference(preact: Tensor, hidden: Tensor, delta: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """Twin of :func:`perturbed_colors` from the weights themselves: σ((W + ΔW) h + b); ``preact`` is unused (it is
    W h + b by construction) and kept for the same signature."""
    del preact
    return torch.sigmoid(hidden @ (weight + delta).T + bias)


def recolor_delta(direction: Float[Tensor, "3 k"], color: tuple[float, float, float], strength: float) -> Tensor:
    """The paper's recolour edit on θᴰ: ΔW = diag(color) · G · strength."""
    return torch.tensor(color, dtype=direction.dtype, device=direction.device)[:, None] * direction * strength


def overlay(
    rgb: Float[Tensor, "*bs 3"], mask: Bool[Tensor, "*bs 1"], color: tuple[float, float, float], alpha: float = 0.6
) -> Float[Tensor, "*bs 3"]:
    """``rgb`` with ``color`` blended in (weight ``alpha``) where ``mask``."""
    tint = torch.tensor(color, dtype=rgb.dtype, device=rgb.device)
    return torch.where(mask, rgb * (1 - alpha) + tint * alpha, rgb).clamp(0, 1)
