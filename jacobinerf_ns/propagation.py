"""Label propagation by "resonance" (DESIGN §4): pure kernels, each with a slow twin for tests.

Notation: ``J̃_p ∈ R^{3×K}`` is pixel p's per-channel Jacobian (row c = ∂C_c(p)/∂W[c]); the official code perturbs
θᴰ along the gradient of the *mean* of RGB, i.e. ``J̃/3``. For each label ℓ (a class or an instance present in the
labelled view) ``G_ℓ = mean_{a: label(a)=ℓ} J̃_a / 3`` (no normalisation, as the official code).

* ``2d-perturb`` (official): ``W ← W + t·G_ℓ``, re-render, ``D_ℓ(p) = mean_c |C'_c(p) − C_c(p)|``; one render per
  label per view.
* ``2d`` (first order): ``ΔC_{p,c} ≈ t Σ_k J̃_p[c,k] G_ℓ[c,k]`` → every label's response from one render of J̃.
* ``3d`` (official): per sample ``|ḡ_ℓ · h_i|`` (ḡ_ℓ = channel mean of G_ℓ), volume-rendered with the weights; one
  render for all labels. (The official response is ``|mean_c(Δz)|`` with Δz = t·G_ℓ h: the same up to the factor t.)
* ``2d-cos`` (ours): label = argmax_ℓ |cos(J̃_p, G_ℓ)| over the 3K values — the quantity the shaping loss trains
  (InfoNCE on |cos| of Jacobians), free of the norms that the official responses multiply in; one render of J̃.
* ``unit_directions`` (ours, optional): rescale each ``G_ℓ`` so that ``‖ḡ_ℓ‖ = 1``. The official 3D response scales
  with ``‖ḡ_ℓ‖``, which carries the clicked pixel's ``σ'(z)`` (how saturated its colour is) rather than what object it
  lies on, so a label clicked on a mid-tone pixel out-shouts the others everywhere. The 2D maps are divided by their
  maximum anyway, so this matters for ``3d`` only.
* 2D post-processing (official, per label map and image): clip at 0.8, 3×3 Gaussian blur (OpenCV's ksize-3 kernel
  [1/4, 1/2, 1/4]²), divide by max + 1e-7, zero the map if std < 0.05 and mean < 0.01; then argmax over labels.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

PropagationMethod = Literal["3d", "2d", "2d-perturb", "2d-cos"]
DEFAULT_PERTURB_T = 1e-3
"""Perturbation size t of ``2d-perturb`` (and the scale of ``2d``'s responses). The official code uses 0.1; on our
runs that is outside the linear regime and gives worse labels (``benchmarks/propagation_agreement.py``: 24.4 vs 31.5
sparse-semantic mIoU on the same 8 views, and 71.5 % vs 99.3 % of pixels labelled as by ``2d``). Pass 0.1 for the
official setting."""
METHODS: tuple[str, ...] = ("3d", "2d", "2d-perturb", "2d-cos")


def label_directions(
    jacobians: Float[Tensor, "a 3 k"], labels: Int[Tensor, " a"], num_labels: int
) -> Float[Tensor, "n 3 k"]:
    """``G_ℓ``: mean of the annotated pixels' mean-RGB Jacobians (``J̃/3``) per label index 0..n-1."""
    counts = torch.bincount(labels, minlength=num_labels)
    if len(counts) > num_labels or bool((counts == 0).any()):
        missing = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f"every label needs at least one annotated pixel (none for label index {missing[:5]})")
    sums = torch.zeros(num_labels, *jacobians.shape[1:], dtype=jacobians.dtype, device=jacobians.device)
    sums.index_add_(0, labels.to(jacobians.device), jacobians)
    return sums / counts.to(jacobians)[:, None, None] / 3.0


def unit_directions(directions: Float[Tensor, "n 3 k"]) -> Float[Tensor, "n 3 k"]:
    """Each ``G_ℓ`` divided by the norm of its channel mean ``ḡ_ℓ`` (see the module docstring)."""
    norms = directions.mean(dim=1).norm(dim=-1)
    if bool((norms == 0).any()):
        raise ValueError(f"label direction(s) {torch.nonzero(norms == 0).flatten().tolist()[:5]} are zero")
    return directions / norms[:, None, None]


def first_order_response(
    jacobians: Float[Tensor, "p 3 k"], directions: Float[Tensor, "n 3 k"], t: float = DEFAULT_PERTURB_T
) -> Float[Tensor, "p n"]:
    """``mean_c |t Σ_k J̃_p[c,k] G_ℓ[c,k]|`` for all pixels and labels (one einsum)."""
    delta = torch.einsum("pck,nck->pnc", jacobians, directions) * t
    return delta.abs().mean(dim=-1)


def first_order_response_reference(
    jacobians: Float[Tensor, "p 3 k"], directions: Float[Tensor, "n 3 k"], t: float = DEFAULT_PERTURB_T
) -> Float[Tensor, "p n"]:
    """Loop twin of :func:`first_order_response`."""
    out = torch.zeros(jacobians.shape[0], directions.shape[0], dtype=jacobians.dtype)
    for p in range(jacobians.shape[0]):
        for n in range(directions.shape[0]):
            out[p, n] = sum(abs(t * float(torch.dot(jacobians[p, c], directions[n, c]))) for c in range(3)) / 3
    return out


def cosine_response(jacobians: Float[Tensor, "p 3 k"], directions: Float[Tensor, "n 3 k"]) -> Float[Tensor, "p n"]:
    """``|cos(J̃_p, G_ℓ)|`` over the flattened 3K values, for all pixels and labels (one matmul)."""
    j = F.normalize(jacobians.flatten(start_dim=1), dim=-1, eps=1e-12)
    g = F.normalize(directions.flatten(start_dim=1).to(j), dim=-1, eps=1e-12)
    return (j @ g.T).abs()


def cosine_response_reference(jacobians: Tensor, directions: Tensor) -> Tensor:
    """Loop twin of :func:`cosine_response`."""
    out = torch.zeros(jacobians.shape[0], directions.shape[0], dtype=jacobians.dtype)
    for p in range(jacobians.shape[0]):
        a = jacobians[p].flatten()
        for n in range(directions.shape[0]):
            b = directions[n].flatten()
            out[p, n] = abs(float(torch.dot(a, b))) / max(float(a.norm() * b.norm()), 1e-12)
    return out


def sample_response_3d(
    hidden: Float[Tensor, "r s k"], weights: Float[Tensor, "r s 1"], directions: Float[Tensor, "n 3 k"]
) -> Float[Tensor, "r n"]:
    """``Σ_i w_i |ḡ_ℓ · h_i|`` with ``ḡ_ℓ`` the channel mean of ``G_ℓ``: every label from one render."""
    gbar = directions.mean(dim=1)  # (n, k)
    return (weights * (hidden @ gbar.T).abs()).sum(dim=-2)


def sample_response_3d_reference(
    hidden: Float[Tensor, "r s k"], weights: Float[Tensor, "r s 1"], directions: Float[Tensor, "n 3 k"]
) -> Float[Tensor, "r n"]:
    """Loop twin of :func:`sample_response_3d`."""
    r, s, _ = hidden.shape
    out = torch.zeros(r, directions.shape[0], dtype=hidden.dtype)
    for n in range(directions.shape[0]):
        g = sum(directions[n, c] for c in range(3)) / 3
        for ray in range(r):
            out[ray, n] = sum(float(weights[ray, i, 0]) * abs(float(torch.dot(g, hidden[ray, i]))) for i in range(s))
    return out


def perturbation_response(perturbed_rgb: Float[Tensor, "*bs 3"], rgb: Float[Tensor, "*bs 3"]) -> Float[Tensor, "*bs"]:
    """``mean_c |C'_c − C_c|`` (the official 2D response)."""
    return (perturbed_rgb - rgb).abs().mean(dim=-1)


def gaussian_kernel_3x3(dtype: torch.dtype = torch.float32) -> Float[Tensor, "3 3"]:
    """The 3×3 kernel of OpenCV's ``GaussianBlur(ksize=(3, 3), sigmaX=0)``: its fixed table ``[1/4, 1/2, 1/4]``
    (OpenCV uses tabulated kernels for ksize ≤ 7 when σ ≤ 0), outer product."""
    g = torch.tensor([0.25, 0.5, 0.25], dtype=torch.float64)
    return torch.outer(g, g).to(dtype)


def postprocess_2d(
    maps: Float[Tensor, "n h w"], clip: float = 0.8, flat_std: float = 0.05, flat_mean: float = 0.01
) -> Float[Tensor, "n h w"]:
    """The official per-map post-processing of 2D responses (see the module docstring); batched over maps.

    The blur pads by reflection without repeating the edge pixel (OpenCV's default ``BORDER_REFLECT_101``).
    """
    x = maps.clamp(max=clip)[:, None]
    x = F.pad(x, (1, 1, 1, 1), mode="reflect")
    x = F.conv2d(x, gaussian_kernel_3x3(dtype=x.dtype).to(x.device)[None, None])[:, 0]
    x = x / (x.amax(dim=(1, 2), keepdim=True) + 1e-7)
    flat = (x.std(dim=(1, 2), unbiased=False) < flat_std) & (x.mean(dim=(1, 2)) < flat_mean)
    return torch.where(flat[:, None, None], torch.zeros_like(x), x)


def normalize_per_image(maps: Float[Tensor, "n h w"]) -> Float[Tensor, "n h w"]:
    """Divide each label's map by its maximum over the image (the official optional 3D normalisation)."""
    return maps / (maps.amax(dim=(1, 2), keepdim=True) + 1e-7)


def labels_from_responses(maps: Float[Tensor, "n h w"]) -> Int[Tensor, "h w"]:
    """Label index of the strongest response (softmax in the official code does not change the argmax)."""
    return maps.argmax(dim=0)


@contextmanager
def perturbed_weight(weight: torch.nn.Parameter, delta: Tensor) -> Iterator[None]:
    """Temporarily ``weight += delta`` (no grad); the original values are restored exactly afterwards."""
    original = weight.detach().clone()
    with torch.no_grad():
        weight.add_(delta.to(weight))
    try:
        yield
    finally:
        with torch.no_grad():
            weight.copy_(original)
