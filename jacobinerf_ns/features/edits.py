"""Per-sample edit kernels (DESIGN §5): what the renderer applies between the field's outputs and the compositing
weights, so an edit changes the 3D scene (every view, consistently), not one image.

Each takes a per-sample match, either a boolean (hard: e.g. :func:`~jacobinerf_ns.features.queries.threshold_mask`
of a similarity; DFF deletes where the score is ≥ 0.5) or a float score ``s ∈ [0, 1]`` (soft: e.g. a relevancy).
Shapes follow nerfstudio's field outputs: density ``(*bs, 1)`` (or ``(*bs)``), colour ``(*bs, 3)``; the match may be
``(*bs)`` or ``(*bs, 1)``. Outputs have the shape of the density / colour given. Pure functions (no in-place
writes, so they can sit inside an autograd graph), each with a plain-loop ``*_reference`` twin.

* :func:`extract_density` — keep the density where the query matches: ``σ · s`` (boolean: ``σ`` or 0);
* :func:`delete_density` — remove it there: ``σ · (1 − s)`` (boolean: 0 or ``σ``);
* :func:`recolor` — DFF's blend ``c (1 − s) + target · s``;
* :func:`permute_channels` — the same blend towards the sample's own colour with its channels permuted.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from jacobinerf_ns.errors import ConfigError

Match = Bool[Tensor, "*bs"] | Float[Tensor, "*bs"]


def _match_like(match: Tensor, target: Tensor, channels: bool, what: str) -> Tensor:
    """``match`` as a tensor broadcastable against ``target`` (trailing singleton added), on its device.

    ``channels``: the target's last dim is a channel dim (colour; density ``(*bs, 1)``) that the match lacks or has
    as 1. Float scores must lie in [0, 1] (NaN rejected)."""
    lead = tuple(target.shape[:-1]) if channels else tuple(target.shape)
    m = match.to(target.device)
    if tuple(m.shape) == lead + (1,) and channels:
        m = m[..., 0]
    if tuple(m.shape) != lead:
        raise ConfigError(f"{what}: match has shape {tuple(match.shape)}, expected {lead} or {lead + (1,)}")
    if m.dtype != torch.bool:
        if not m.is_floating_point():
            raise ConfigError(f"{what}: match must be boolean or a float score in [0, 1], got {m.dtype}")
        if m.numel() and not bool(((m >= 0) & (m <= 1)).all()):
            raise ConfigError(f"{what}: scores must lie in [0, 1] (got values in [{float(m.min())}, {float(m.max())}])")
        m = m.to(target.dtype)
    return m[..., None] if channels else m


def _density_channels(density: Tensor) -> bool:
    return density.ndim >= 1 and density.shape[-1] == 1


def extract_density(density: Float[Tensor, "*bs 1"], match: Match) -> Float[Tensor, "*bs 1"]:
    """Keep the density where the query matches, 0 elsewhere (soft: ``σ · s``)."""
    m = _match_like(match, density, _density_channels(density), "extract_density")
    if m.dtype == torch.bool:
        return torch.where(m, density, torch.zeros_like(density))
    return density * m


def delete_density(density: Float[Tensor, "*bs 1"], match: Match) -> Float[Tensor, "*bs 1"]:
    """``σ = 0`` where the query matches, unchanged elsewhere (soft: ``σ · (1 − s)``)."""
    m = _match_like(match, density, _density_channels(density), "delete_density")
    if m.dtype == torch.bool:
        return torch.where(m, torch.zeros_like(density), density)
    return density * (1 - m)


def _check_rgb(rgb: Tensor, what: str) -> None:
    if rgb.ndim < 1 or rgb.shape[-1] != 3 or not rgb.is_floating_point():
        raise ConfigError(f"{what}: colours must be a float (..., 3) tensor, got shape {tuple(rgb.shape)}")


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    try:
        return torch.broadcast_shapes(shape, target) == target
    except RuntimeError:
        return False


def recolor(
    rgb: Float[Tensor, "*bs 3"], score: Match, target_rgb: Float[Tensor, "3"] | Float[Tensor, "*bs 3"]
) -> Float[Tensor, "*bs 3"]:
    """DFF's colour edit ``c (1 − s) + target · s`` (boolean: ``target`` where it matches, ``c`` elsewhere).
    ``target_rgb`` is one colour ``(3,)`` or one per sample ``(*bs, 3)``."""
    _check_rgb(rgb, "recolor")
    target = torch.as_tensor(target_rgb, dtype=rgb.dtype, device=rgb.device)
    if target.shape[-1:] != (3,) or not _broadcasts_to(target.shape, rgb.shape):
        raise ConfigError(f"recolor: target_rgb has shape {tuple(target.shape)}, expected (3,) or {tuple(rgb.shape)}")
    s = _match_like(score, rgb, True, "recolor")
    if s.dtype == torch.bool:
        return torch.where(s, target.expand_as(rgb), rgb)
    return rgb * (1 - s) + target * s


def _check_perm(perm: tuple[int, int, int] | list[int]) -> list[int]:
    out = [int(v) for v in perm]
    if sorted(out) != [0, 1, 2]:
        raise ConfigError(f"permute_channels: perm must be a permutation of (0, 1, 2), got {tuple(perm)}")
    return out


def permute_channels(
    rgb: Float[Tensor, "*bs 3"], score: Match, perm: tuple[int, int, int] = (2, 0, 1)
) -> Float[Tensor, "*bs 3"]:
    """Blend each sample towards its own colour with channels permuted: ``c (1 − s) + c[perm] · s``, where
    ``c[perm]`` is ``(c[perm[0]], c[perm[1]], c[perm[2]])`` (default: RGB → BRG)."""
    _check_rgb(rgb, "permute_channels")
    order = _check_perm(perm)
    permuted = rgb[..., order]
    s = _match_like(score, rgb, True, "permute_channels")
    if s.dtype == torch.bool:
        return torch.where(s, permuted, rgb)
    return rgb * (1 - s) + permuted * s


# ------------------------------------------------------------------------------------------------------------ twins


def _flat_scores(match: Tensor, count: int) -> list[float]:
    values = match.reshape(-1).tolist()
    if len(values) != count:
        raise ConfigError(f"reference edit: {len(values)} scores for {count} samples")
    return [float(v) for v in values]


def extract_density_reference(density: Tensor, match: Tensor) -> Tensor:
    """Plain-loop twin of :func:`extract_density`."""
    flat = density.reshape(-1).clone()
    scores = _flat_scores(match, flat.numel())
    for i, s in enumerate(scores):
        flat[i] = flat[i] * s
    return flat.reshape(density.shape)


def delete_density_reference(density: Tensor, match: Tensor) -> Tensor:
    """Plain-loop twin of :func:`delete_density`."""
    flat = density.reshape(-1).clone()
    scores = _flat_scores(match, flat.numel())
    for i, s in enumerate(scores):
        flat[i] = flat[i] * (1.0 - s)
    return flat.reshape(density.shape)


def recolor_reference(rgb: Tensor, score: Tensor, target_rgb: Tensor) -> Tensor:
    """Plain-loop twin of :func:`recolor`."""
    flat = rgb.reshape(-1, 3).clone()
    target = torch.as_tensor(target_rgb, dtype=rgb.dtype).expand_as(rgb).reshape(-1, 3)
    scores = _flat_scores(score, flat.shape[0])
    for i, s in enumerate(scores):
        for c in range(3):
            flat[i, c] = rgb.reshape(-1, 3)[i, c] * (1.0 - s) + target[i, c] * s
    return flat.reshape(rgb.shape)


def permute_channels_reference(rgb: Tensor, score: Tensor, perm: tuple[int, int, int] = (2, 0, 1)) -> Tensor:
    """Plain-loop twin of :func:`permute_channels`."""
    src = rgb.reshape(-1, 3)
    flat = src.clone()
    scores = _flat_scores(score, flat.shape[0])
    for i, s in enumerate(scores):
        for c in range(3):
            flat[i, c] = src[i, c] * (1.0 - s) + src[i, perm[c]] * s
    return flat.reshape(rgb.shape)
