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


class _AbsCosInfoNCE(torch.autograd.Function):
    """InfoNCE on |cos| of unit vectors with a hand-written backward (a few fused N×N passes each way).

    With ``E_ij = exp((|c_ij| − 1)/τ)`` (``E_ii = 0``), ``den_i = Σ_j E_ij``, ``num_i = Σ_j P_ij E_ij``:
    ``L = mean_{i∈H} (log den_i − log num_i)`` and ``∂L/∂E_ij = (1/|H|)·[i∈H]·(1/den_i − P_ij/num_i)``,
    ``∂L/∂c_ij = ∂L/∂E_ij · E_ij/τ · sign(c_ij)``, ``∂L/∂u = G u + Gᵀ u``. Shifting by 1/τ (|c| ≤ 1) keeps every
    exponential in (0, 1] and cancels in the ratio. The forward keeps ``S = E·sign(c)`` (one N×N tensor) so the
    backward is ``G = S ⊙ (a 1ᵀ − P ⊙ b 1ᵀ)`` with the per-row factors ``a``, ``b`` carrying ``1/τ`` and ``1/|H|``:
    two N×N passes and two matrix products.
    """

    @staticmethod
    def forward(ctx, unit: Tensor, pos: Tensor, has_pos: Tensor, inv_t: float) -> Tensor:  # type: ignore[override]
        cos = unit @ unit.T
        signed = torch.sign(cos)
        scores = cos.abs_().sub_(1.0).mul_(inv_t).exp_()  # reuses cos's storage
        scores.fill_diagonal_(0.0)
        den = scores.sum(dim=1)
        num = torch.einsum("ij,ij->i", scores, pos)
        rows = has_pos.to(unit.dtype)
        n_rows = rows.sum()
        loss = ((den.log() - num.clamp_min(torch.finfo(unit.dtype).tiny).log()) * rows).sum() / n_rows
        signed.mul_(scores)  # S = E · sign(c)
        ctx.save_for_backward(unit, signed, pos, den, num, rows)
        ctx.inv_t = inv_t
        return loss

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        unit, signed, pos, den, num, rows = ctx.saved_tensors
        scale = grad_out * ctx.inv_t / rows.sum()
        a = rows / den * scale
        b = rows / num.clamp_min(torch.finfo(unit.dtype).tiny) * scale
        g = torch.addcmul(a[:, None].expand_as(pos), pos, b[:, None], value=-1.0)
        g.mul_(signed)
        grad_unit = g @ unit + g.T @ unit  # two BLAS calls beat materialising g + gᵀ
        return grad_unit, None, None, None


def info_nce_loss(
    jacobians: Float[Tensor, "n m"], positives: Bool[Tensor, "n n"], temperature: float = 1.0, eps: float = 1e-8
) -> Float[Tensor, ""]:
    """Batched InfoNCE on absolute cosines (rays without positives are skipped; 0 if none has one)."""
    has_pos = positives.any(dim=1)
    if not bool(has_pos.any()):
        return jacobians.sum() * 0.0
    unit = jacobians / jacobians.norm(dim=-1, keepdim=True).clamp(min=eps)
    return _AbsCosInfoNCE.apply(unit, positives.to(unit.dtype), has_pos, 1.0 / temperature)


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
    pos = positives.to(cos.dtype)
    n_off = max(1, n * (n - 1))
    n_pos = float(pos.sum())
    n_neg = n_off - n_pos
    sum_all = float(cos.sum() - torch.diagonal(cos).sum())
    sum_pos = float((cos * pos).sum())
    return ShapingStats(
        positive_fraction=n_pos / n_off,
        cos_positive=sum_pos / n_pos if n_pos > 0 else float("nan"),
        cos_negative=(sum_all - sum_pos) / n_neg if n_neg > 0 else float("nan"),
    )


PositiveRule = Literal["threshold", "knn"]
