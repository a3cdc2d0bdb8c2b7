"""Smoothness regularisers on *rendered* feature patches (DESIGN §5), each with a plain-loop reference twin.

All three take rendered features as ``(n, p, q, d)`` patches (``n`` patches of ``p × q`` pixels, ``d`` channels; what
nerfstudio's ``PatchPixelSampler`` gives after reshaping the ray outputs) and return a scalar that carries gradient
to ``feats`` (and only to ``feats``: the RGB guide and the masks are data). This is the point of the module: the
reference poster's bilateral variant filtered *detached* features, so nothing reached the model; here every term is
a differentiable function of the rendered features. Each loss is 0, with a graph, when it has nothing to measure
(a 1×1 patch, no valid mask), so a training step can add it unconditionally.

Normalisations (chosen so that the value does not depend on the patch size or count):

* :func:`tv_loss` — per direction, the channel-summed absolute difference averaged over the neighbour pairs of that
  direction; the vertical and horizontal means are added; then the mean over patches (all patches share a size, so
  this equals the mean over all pairs of the batch, per direction). A direction without pairs (``p == 1`` or
  ``q == 1``) contributes 0.
* :func:`bilateral_loss` — a weighted mean over every neighbour pair of the batch: ``Σ w‖ΔF‖² / Σ w`` with the sums
  over all patches and pairs together (not per patch, so a strongly textured patch whose weights are all tiny is not
  blown up by a small denominator; pairs count by their weight wherever they lie).
* :func:`mask_loss` — the mean, over every pixel that lies in a valid mask, of its squared distance to its mask's
  mean feature (large masks weigh by their area).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float, Int
from torch import Tensor

from jacobinerf_ns.errors import ConfigError

DEFAULT_MIN_MASK_AREA = 64
"""Default :func:`mask_loss` ``min_area``: an 8×8 block (the poster used masks over 500 px of whole images)."""


def _check_feats(feats: Tensor, what: str) -> tuple[int, int, int, int]:
    if feats.ndim != 4 or not feats.is_floating_point():
        raise ConfigError(f"{what}: rendered features must be a float (n, p, q, d) tensor, got {tuple(feats.shape)}")
    n, p, q, d = feats.shape
    return int(n), int(p), int(q), int(d)


def _zero(feats: Tensor) -> Tensor:
    """A scalar 0 that is part of ``feats``' graph (so ``backward`` works and gives zero gradients)."""
    return feats.sum() * 0.0


# ---------------------------------------------------------------------------------------------------- total variation


def tv_loss(feats: Float[Tensor, "n p q d"]) -> Tensor:
    """Anisotropic total variation ``mean_y Σ_c |F[i+1, j] − F[i, j]| + mean_x Σ_c |F[i, j+1] − F[i, j]|``.

    Channels are summed, each direction is averaged over its neighbour pairs and over the patches (module
    docstring). 0 on a constant patch; for i.i.d. noise of standard deviation σ per channel it grows like
    ``2 · d · σ · 2/√π``. L1, so its gradient is the sign of each difference (0 where two neighbours are equal).
    """
    _, p, q, _ = _check_feats(feats, "tv_loss")
    total = _zero(feats)
    if p > 1:
        total = total + (feats[:, 1:] - feats[:, :-1]).abs().sum(dim=-1).mean()
    if q > 1:
        total = total + (feats[:, :, 1:] - feats[:, :, :-1]).abs().sum(dim=-1).mean()
    return total


def tv_loss_reference(feats: Float[Tensor, "n p q d"]) -> Tensor:
    """Plain-loop twin of :func:`tv_loss`."""
    n, p, q, d = feats.shape
    total = _zero(feats)
    for direction in ((1, 0), (0, 1)):
        dy, dx = direction
        per_patch = []
        for k in range(n):
            pairs = []
            for i in range(p - dy):
                for j in range(q - dx):
                    pairs.append(sum((feats[k, i + dy, j + dx, c] - feats[k, i, j, c]).abs() for c in range(d)))
            if pairs:
                per_patch.append(sum(pairs) / len(pairs))
        if per_patch:
            total = total + sum(per_patch) / len(per_patch)
    return total


# ---------------------------------------------------------------------------------------------------------- bilateral


def _check_bilateral(feats: Tensor, rgb: Tensor, sigma_rgb: float, sigma_xy: float, radius: int) -> None:
    n, p, q, _ = _check_feats(feats, "bilateral_loss")
    if tuple(rgb.shape) != (n, p, q, 3):
        raise ConfigError(f"bilateral_loss: rgb patch has shape {tuple(rgb.shape)}, expected {(n, p, q, 3)}")
    if not (sigma_rgb > 0 and sigma_xy > 0 and math.isfinite(sigma_rgb) and math.isfinite(sigma_xy)):
        raise ConfigError(f"bilateral_loss: sigma_rgb ({sigma_rgb}) and sigma_xy ({sigma_xy}) must be positive")
    if int(radius) != radius or radius < 1:
        raise ConfigError(f"bilateral_loss: radius must be a positive integer, got {radius}")


def bilateral_offsets(radius: int) -> list[tuple[int, int]]:
    """The neighbour offsets ``(dy, dx)`` of one unordered pair each: the ``(2r+1)² − 1`` square window around a
    pixel (Chebyshev distance ≤ ``radius``), halved (``dy > 0``, or ``dy == 0`` and ``dx > 0``)."""
    return [(dy, dx) for dy in range(radius + 1) for dx in range(-radius, radius + 1) if dy > 0 or dx > 0]


def bilateral_loss(
    feats: Float[Tensor, "n p q d"],
    rgb: Float[Tensor, "n p q 3"],
    sigma_rgb: float = 0.1,
    sigma_xy: float = 2.0,
    radius: int = 2,
) -> Tensor:
    """Edge-aware smoothness ``Σ_{(a,b)} w_ab ‖F_a − F_b‖² / Σ_{(a,b)} w_ab`` over the pixel pairs of each patch
    within a ``(2·radius + 1)²`` square window (each unordered pair once), summed over all patches together.

    ``w_ab = exp(−‖I_a − I_b‖² / 2σ_rgb² − ‖a − b‖² / 2σ_xy²)`` from the ground-truth RGB patch ``rgb`` (colours in
    [0, 1]; no gradient flows to it) and the pixel offset. Squared L2 on the features, because the minimiser of this
    energy for fixed weights is the bilateral filter of the features (one Jacobi step is one bilateral filtering), its
    gradient ``2 w (F_a − F_b)`` is smooth, and for unit features ``‖ΔF‖² = 2 − 2cos``. Inside a flat-colour region the
    weights are ~``exp(−‖a−b‖²/2σ_xy²)`` and a feature jump is penalised; across a colour edge of contrast ``Δ``
    the weight drops by ``exp(−Δ²/2σ_rgb²)`` and the jump is nearly free.
    """
    _check_bilateral(feats, rgb, sigma_rgb, sigma_xy, radius)
    _, p, q, _ = feats.shape
    guide = rgb.detach().to(device=feats.device, dtype=feats.dtype)
    num = _zero(feats)
    den = feats.new_zeros(())
    for dy, dx in bilateral_offsets(int(radius)):
        if dy >= p or abs(dx) >= q:
            continue
        j0, j1 = max(0, -dx), q - max(0, dx)  # columns j with j + dx inside the patch
        fa, fb = feats[:, : p - dy, j0:j1], feats[:, dy:, j0 + dx : j1 + dx]
        ia, ib = guide[:, : p - dy, j0:j1], guide[:, dy:, j0 + dx : j1 + dx]
        log_w = -((ia - ib) ** 2).sum(dim=-1) / (2 * sigma_rgb**2) - (dy * dy + dx * dx) / (2 * sigma_xy**2)
        w = torch.exp(log_w)
        num = num + (w * ((fa - fb) ** 2).sum(dim=-1)).sum()
        den = den + w.sum()
    # The numerator is at most max‖ΔF‖² · den, so where den underflows to 0 so does the numerator: 0, not NaN.
    return num / den.clamp_min(torch.finfo(den.dtype).tiny)


def bilateral_loss_reference(
    feats: Float[Tensor, "n p q d"],
    rgb: Float[Tensor, "n p q 3"],
    sigma_rgb: float = 0.1,
    sigma_xy: float = 2.0,
    radius: int = 2,
) -> Tensor:
    """Plain-loop twin of :func:`bilateral_loss`: every ordered pair within the window, halved."""
    _check_bilateral(feats, rgb, sigma_rgb, sigma_xy, radius)
    n, p, q, _ = feats.shape
    guide = rgb.detach().to(feats)
    num, den = _zero(feats), 0.0
    for k in range(n):
        for ya in range(p):
            for xa in range(q):
                for yb in range(p):
                    for xb in range(q):
                        if (ya, xa) == (yb, xb) or max(abs(ya - yb), abs(xa - xb)) > radius:
                            continue
                        colour = float(((guide[k, ya, xa] - guide[k, yb, xb]) ** 2).sum())
                        space = (ya - yb) ** 2 + (xa - xb) ** 2
                        w = math.exp(-colour / (2 * sigma_rgb**2) - space / (2 * sigma_xy**2))
                        num = num + 0.5 * w * ((feats[k, ya, xa] - feats[k, yb, xb]) ** 2).sum()
                        den += 0.5 * w
    return num / den if den > 0 else num * 0.0


# --------------------------------------------------------------------------------------------------------- mask-guided


def _check_masks(feats: Tensor, masks: Tensor, min_area: int) -> None:
    n, p, q, _ = _check_feats(feats, "mask_loss")
    if tuple(masks.shape) != (n, p, q):
        raise ConfigError(f"mask_loss: masks have shape {tuple(masks.shape)}, expected {(n, p, q)}")
    if masks.is_floating_point() or masks.dtype == torch.bool:
        raise ConfigError(f"mask_loss: masks must hold integer mask ids (-1 = no mask), got {masks.dtype}")
    if int(min_area) != min_area or min_area < 1:
        raise ConfigError(f"mask_loss: min_area must be a positive integer, got {min_area}")


def mask_loss(
    feats: Float[Tensor, "n p q d"], masks: Int[Tensor, "n p q"], min_area: int = DEFAULT_MIN_MASK_AREA
) -> Tensor:
    """Within-mask feature variance: the mean over masked pixels of ``‖F_a − μ_m‖²``, ``μ_m`` the mean rendered
    feature of the pixels of mask ``m`` *in the same patch*.

    ``masks`` holds a mask id per pixel (the same id in two patches are two masks); ``−1`` (any negative id) is no
    mask. A mask with fewer than ``min_area`` pixels in the patch is ignored (its mean is noise). Pixels of different
    masks never interact, so nothing is smoothed across a mask border. 0 (with a graph) when no mask is valid.

    The mean is *not* detached, and it does not have to be: for the arithmetic mean of squared distances the
    gradient through ``μ_m`` is ``−(2/N) Σ_{a∈m}(F_a − μ_m) = 0``, so both choices give exactly
    ``∂L/∂F_a = 2 (F_a − μ_m) / N`` (``N`` = masked pixels; tested). This loss is then exactly the variance each mask
    should shrink, with no stop-gradient asymmetry to explain. The target is the plain mean, not the re-normalised
    one: for unit features, minimising ``Σ‖F_a − μ‖²`` = maximising ``‖μ‖``, i.e. aligning the mask's features.
    """
    _check_masks(feats, masks, min_area)
    n, p, q, d = feats.shape
    flat = feats.reshape(n * p * q, d)
    ids = masks.to(device=feats.device, dtype=torch.long).reshape(n, p * q)
    valid = ids >= 0
    if not bool(valid.any()):
        return _zero(feats)
    patch = torch.arange(n, device=feats.device)[:, None].expand(n, p * q)
    key = (patch * (int(ids.max()) + 1) + ids)[valid]  # one key per (patch, mask)
    _, segment = torch.unique(key, return_inverse=True)
    counts = torch.bincount(segment)
    keep = (counts >= min_area)[segment]
    if not bool(keep.any()):
        return _zero(feats)
    chosen = flat[valid.reshape(-1)]
    sums = torch.zeros(len(counts), d, dtype=feats.dtype, device=feats.device).index_add(0, segment, chosen)
    means = sums / counts[:, None].to(feats.dtype)
    dev = ((chosen - means[segment]) ** 2).sum(dim=-1)
    return dev[keep].sum() / keep.sum().to(feats.dtype)


def mask_loss_reference(
    feats: Float[Tensor, "n p q d"], masks: Int[Tensor, "n p q"], min_area: int = DEFAULT_MIN_MASK_AREA
) -> Tensor:
    """Plain-loop twin of :func:`mask_loss`."""
    _check_masks(feats, masks, min_area)
    n, p, q, _ = feats.shape
    total, count = _zero(feats), 0
    for k in range(n):
        for m in sorted({int(v) for v in masks[k].reshape(-1).tolist()}):
            if m < 0:
                continue
            pixels = [(i, j) for i in range(p) for j in range(q) if int(masks[k, i, j]) == m]
            if len(pixels) < min_area:
                continue
            mean = sum(feats[k, i, j] for i, j in pixels) / len(pixels)
            for i, j in pixels:
                total = total + ((feats[k, i, j] - mean) ** 2).sum()
            count += len(pixels)
    return total / count if count else total
