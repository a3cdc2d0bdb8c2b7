"""Per-ray Jacobians of the rendered colour w.r.t. θᴰ, the colour head's last layer (DESIGN §2).

With ``C_c(r) = Σ_i w_i σ(z_ic)``, ``z_i = W h_i + b`` and weights ``w_i`` that depend on density only:

    ∂C_c(r) / ∂W_{c',k} = δ_{cc'} Σ_i w_i σ'(z_ic) h_ik

so the per-channel Jacobian ``J̃(r) ∈ R^{3×K}`` (row c: the gradient of channel c w.r.t. row c of W; the other rows
are zero and not stored) is one einsum over the batch, and the official "mean of RGB" Jacobian of
``s(r) = mean_c C_c(r)`` is ``J̃(r) / 3`` flattened to 3K values. Both are ordinary differentiable functions of
``w``, ``z`` and ``h``: a loss on them back-propagates with first-order autograd only — no ``create_graph``, no
double backward, so the hash grid may be tiny-cuda-nn.

With nerfstudio's ``last_sample`` background the rendered colour is ``Σ_i w_i c_i + (1 − Σ_i w_i) c_last``; pass
``background_last_sample=True`` and the last sample's weight is augmented accordingly.

:func:`jacobian_autograd_reference` is the slow, obviously-correct twin: one ``torch.autograd.grad`` per ray and
channel through any colour function of ``W``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor


def effective_weights(
    weights: Float[Tensor, "*bs s 1"], background_last_sample: bool = False
) -> Float[Tensor, "*bs s 1"]:
    """Volume-rendering weights, with the remaining transmittance moved onto the last sample when the renderer
    uses the last sample's colour as background."""
    if not background_last_sample:
        return weights
    remainder = 1.0 - weights.sum(dim=-2, keepdim=True)
    return torch.cat([weights[..., :-1, :], weights[..., -1:, :] + remainder], dim=-2)


def per_channel_jacobian(
    weights: Float[Tensor, "*bs s 1"],
    preact: Float[Tensor, "*bs s 3"],
    hidden: Float[Tensor, "*bs s k"],
    background_last_sample: bool = False,
) -> Float[Tensor, "*bs 3 k"]:
    """``J̃[..., c, k] = Σ_i w_i σ'(z_ic) h_ik`` — the gradient of rendered channel c w.r.t. ``W[c, :]``."""
    w = effective_weights(weights, background_last_sample)
    sig = torch.sigmoid(preact)
    scaled = w * sig * (1.0 - sig)  # (*bs, s, 3)
    return torch.einsum("...sc,...sk->...ck", scaled, hidden)


def mean_rgb_jacobian(per_channel: Float[Tensor, "*bs 3 k"]) -> Float[Tensor, "*bs 3k"]:
    """The official JacobiNeRF Jacobian: gradient of ``mean_c C_c`` w.r.t. the whole ``W``, flattened (c-major)."""
    return (per_channel / 3.0).flatten(start_dim=-2)


def jacobian_autograd_reference(
    color_fn: Callable[[Tensor], Float[Tensor, "r 3"]], weight: Float[Tensor, "3 k"], create_graph: bool = False
) -> Float[Tensor, "r 3 3 k"]:
    """Full Jacobians ``∂C_c(r)/∂W`` by one ``autograd.grad`` per ray and channel (slow; for tests and benchmarks).

    Args:
        color_fn: maps the weight matrix ``W`` to the rendered colours of ``r`` rays.
        weight: the point at which to differentiate (must require grad).
        create_graph: keep the graph so a loss on the result can be differentiated (double backward).

    Returns:
        ``out[r, c]`` is the (3, K) gradient of channel c of ray r w.r.t. ``W`` (only row c is non-zero).
    """
    colors = color_fn(weight)
    rows = []
    for r in range(colors.shape[0]):
        per_c = []
        for c in range(3):
            (g,) = torch.autograd.grad(colors[r, c], weight, retain_graph=True, create_graph=create_graph)
            per_c.append(g)
        rows.append(torch.stack(per_c))
    return torch.stack(rows)


def diagonal_rows(full: Float[Tensor, "r 3 3 k"]) -> Float[Tensor, "r 3 k"]:
    """Row c of ``∂C_c/∂W`` for each channel c — the per-channel Jacobian stored by :func:`per_channel_jacobian`."""
    return torch.stack([full[:, c, c] for c in range(3)], dim=1)
