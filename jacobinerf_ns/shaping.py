"""JacobiNeRF's shaping loss on per-ray Jacobians (DESIGN §3), batched, with a loop twin for tests.

For rays i with Jacobians ``J_i`` and L2-normalised teacher features ``f_i``:

* positives ``P_i``: ``{j ≠ i : f_i·f_j > τ_pos}`` (``threshold`` rule, τ_pos adapted so that 5–15 % of the pairs are
  positive, as the official code) or the ``k`` most similar rays (``knn`` rule);
* ``L_NCE = mean_i −log( Σ_{p∈P_i} exp(|cos(J_i,J_p)|/τ) / Σ_{j≠i} exp(|cos(J_i,J_j)|/τ) )`` over the rays that
  have at least one positive (official τ = 1, absolute cosine);
* ``L_norm = mean_i (‖J_i‖ − 1)²``.

The O(N²) similarities are one matrix product, so thousands of rays per batch are cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor


def positive_mask_threshold(features: Float[Tensor, "n d"], tau_pos: float) -> Bool[Tensor, "n n"]:
    """``mask[i, j]``: teacher similarity above ``tau_pos`` (diagonal excluded)."""
    sim = features @ features.T
    mask = sim > tau_pos
    mask.fill_diagonal_(False)
    return mask


def positive_mask_knn(features: Float[Tensor, "n d"], k: int) -> Bool[Tensor, "n n"]:
    """``mask[i, j]``: j among the ``k`` rays most similar to i (diagonal excluded)."""
    sim = features @ features.T
    sim.fill_diagonal_(float("-inf"))
    k = max(1, min(k, features.shape[0] - 1))
    idx = sim.topk(k, dim=1).indices
    mask = torch.zeros_like(sim, dtype=torch.bool)
    mask.scatter_(1, idx, True)
    return mask


def adapt_threshold(
    tau_pos: float,
    positive_fraction: float,
    target: tuple[float, float] = (0.05, 0.15),
    step: float = 1e-3,
    bounds: tuple[float, float] = (0.5, 0.9),
) -> float:
    """The official schedule: nudge τ_pos by ``step`` towards a positive fraction inside ``target``."""
    if positive_fraction < target[0]:
        tau_pos -= step
    elif positive_fraction > target[1]:
        tau_pos += step
    return float(min(max(tau_pos, bounds[0]), bounds[1]))


def abs_cosine_matrix(jacobians: Float[Tensor, "n m"], eps: float = 1e-8) -> Float[Tensor, "n n"]:
    """``|cos(J_i, J_j)|`` for all pairs."""
    unit = jacobians / jacobians.norm(dim=-1, keepdim=True).clamp(min=eps)
    return (unit @ unit.T).abs()


def info_nce_loss(
    jacobians: Float[Tensor, "n m"], positives: Bool[Tensor, "n n"], temperature: float = 1.0
) -> Float[Tensor, ""]:
    """Batched InfoNCE on absolute cosines (rays without positives are skipped; 0 if none has one)."""
    n = jacobians.shape[0]
    logits = abs_cosine_matrix(jacobians) / temperature
    eye = torch.eye(n, dtype=torch.bool, device=jacobians.device)
    neg_inf = torch.finfo(logits.dtype).min
    log_den = torch.logsumexp(logits.masked_fill(eye, neg_inf), dim=1)
    log_num = torch.logsumexp(logits.masked_fill(~positives, neg_inf), dim=1)
    has_pos = positives.any(dim=1)
    if not bool(has_pos.any()):
        return jacobians.sum() * 0.0
    return (log_den - log_num)[has_pos].mean()


def info_nce_loss_reference(
    jacobians: Float[Tensor, "n m"], positives: Bool[Tensor, "n n"], temperature: float = 1.0
) -> Float[Tensor, ""]:
    """Loop twin of :func:`info_nce_loss` (slow, for tests)."""
    terms = []
    n = jacobians.shape[0]
    for i in range(n):
        pos = [j for j in range(n) if j != i and bool(positives[i, j])]
        if not pos:
            continue
        cos = [
            torch.abs(torch.dot(jacobians[i], jacobians[j]) / (jacobians[i].norm() * jacobians[j].norm()))
            for j in range(n)
        ]
        num = sum(torch.exp(cos[j] / temperature) for j in pos)
        den = sum(torch.exp(cos[j] / temperature) for j in range(n) if j != i)
        terms.append(-torch.log(num / den))
    if not terms:
        return jacobians.sum() * 0.0
    return torch.stack(terms).mean()


def norm_loss(jacobians: Float[Tensor, "n m"]) -> Float[Tensor, ""]:
    """``mean_i (‖J_i‖ − 1)²``."""
    return ((jacobians.norm(dim=-1) - 1.0) ** 2).mean()


@dataclass
class ShapingStats:
    """What shaping logs: the fraction of positive pairs and the |cos| gap it must open."""

    positive_fraction: float
    cos_positive: float
    cos_negative: float

    def as_dict(self, prefix: str = "shaping/") -> dict[str, float]:
        return {f"{prefix}{k}": v for k, v in self.__dict__.items()}


@torch.no_grad()
def shaping_stats(jacobians: Float[Tensor, "n m"], positives: Bool[Tensor, "n n"]) -> ShapingStats:
    """Mean |cos| over positive and over negative pairs, and the positive fraction (off-diagonal pairs)."""
    n = jacobians.shape[0]
    cos = abs_cosine_matrix(jacobians.float())
    off = ~torch.eye(n, dtype=torch.bool, device=jacobians.device)
    neg = off & ~positives
    frac = float(positives.sum()) / max(1, int(off.sum()))
    cos_pos = float(cos[positives].mean()) if bool(positives.any()) else float("nan")
    cos_neg = float(cos[neg].mean()) if bool(neg.any()) else float("nan")
    return ShapingStats(positive_fraction=frac, cos_positive=cos_pos, cos_negative=cos_neg)


PositiveRule = Literal["threshold", "knn"]
