"""Queries on distilled features (DESIGN §5): build a query vector, score features against it, threshold.

Features are rendered, L2-normalised feature images ``(H, W, d)`` or, for the 3D edits, per-sample point features
``(*bs, d)`` taken straight from the field (any leading shape: rays × samples, a point cloud, ...). Every scoring
function works on any leading shape and is one matmul; each has a plain-loop ``*_reference`` twin.

Building a query:

* :func:`click_query` — the (re-normalised) feature of one pixel;
* :func:`region_query` — N3F eq. 4: the mean feature over a region (a boolean mask), re-normalised;
  :func:`box_query` — the same over a box;
* a text query is an embedding computed elsewhere (LSeg / CLIP text encoder) and passed as a ``(d,)`` tensor.

Scoring: :func:`similarity_map` (cosine; DFF thresholds it at 0.4 for a single text), :func:`threshold_mask`, and
:func:`relevancy` against negative embeddings, either as LERF (``mode="pairwise-min"``) or as DFF's softmax over
several texts (``mode="softmax"``). Bad input (a click outside the image, an empty region, mismatched dimensions)
is a one-line :class:`~jacobinerf_ns.errors.ConfigError`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor

from jacobinerf_ns.errors import ConfigError

LERF_TEMPERATURE = 0.1
"""LERF's relevancy temperature (it multiplies cosine similarities by 10 before the pairwise softmax)."""
DFF_THRESHOLD = 0.4
"""DFF's cosine threshold for a single text query."""

RelevancyMode = Literal["pairwise-min", "softmax"]


def _unit(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1, eps=1e-12)


def _check_image(features: Tensor, what: str) -> tuple[int, int]:
    if features.ndim != 3 or not features.is_floating_point():
        raise ConfigError(f"{what}: features must be a float (H, W, d) image, got shape {tuple(features.shape)}")
    return int(features.shape[0]), int(features.shape[1])


def _check_query(features: Tensor, query: Tensor, what: str, name: str = "query") -> None:
    if not features.is_floating_point() or features.ndim < 1:
        raise ConfigError(f"{what}: features must be a float (..., d) tensor, got {features.dtype}")
    if query.ndim not in (1, 2) or query.shape[-1] != features.shape[-1]:
        raise ConfigError(
            f"{what}: {name} has shape {tuple(query.shape)}, expected ({features.shape[-1]},) or "
            f"(k, {features.shape[-1]}) to match the {features.shape[-1]}-dim features"
        )


# ------------------------------------------------------------------------------------------------------ query vectors


def click_query(features: Float[Tensor, "H W d"], y: int, x: int) -> Float[Tensor, " d"]:
    """The unit feature of pixel ``(y, x)`` (row, column; integer pixel indices)."""
    height, width = _check_image(features, "click_query")
    if int(y) != y or int(x) != x:
        raise ConfigError(f"click_query: click (y={y}, x={x}) must be integer pixel indices")
    if not (0 <= int(y) < height and 0 <= int(x) < width):
        raise ConfigError(f"click_query: click (y={y}, x={x}) is outside the {height}x{width} image")
    return _unit(features[int(y), int(x)])


def region_query(features: Float[Tensor, "*bs d"], mask: Bool[Tensor, "*bs"]) -> Float[Tensor, " d"]:
    """N3F eq. 4: the mean of the features where ``mask`` is true, re-normalised to unit length."""
    if not features.is_floating_point() or tuple(mask.shape) != tuple(features.shape[:-1]):
        raise ConfigError(
            f"region_query: mask has shape {tuple(mask.shape)}, expected {tuple(features.shape[:-1])} "
            f"(the features' shape {tuple(features.shape)} without the last dim)"
        )
    if mask.dtype != torch.bool:
        raise ConfigError(f"region_query: mask must be boolean, got {mask.dtype}")
    chosen = features[mask.to(features.device)]
    if chosen.shape[0] == 0:
        raise ConfigError("region_query: the region is empty (no pixel selected)")
    mean = chosen.mean(dim=0)
    if float(mean.norm()) == 0.0:
        raise ConfigError("region_query: the region's mean feature is zero; it has no direction")
    return _unit(mean)


def box_mask(image_hw: tuple[int, int], box: tuple[int, int, int, int]) -> Bool[Tensor, "H W"]:
    """Boolean mask of the half-open box ``(y0, x0, y1, x1)``: rows ``y0 ≤ y < y1``, columns ``x0 ≤ x < x1``."""
    height, width = image_hw
    y0, x0, y1, x1 = (int(v) for v in box)
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise ConfigError(
            f"box (y0={y0}, x0={x0}, y1={y1}, x1={x1}) is empty or outside the {height}x{width} image "
            "(need 0 <= y0 < y1 <= H and 0 <= x0 < x1 <= W)"
        )
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def box_query(features: Float[Tensor, "H W d"], box: tuple[int, int, int, int]) -> Float[Tensor, " d"]:
    """:func:`region_query` over the half-open box ``(y0, x0, y1, x1)`` (see :func:`box_mask`)."""
    height, width = _check_image(features, "box_query")
    return region_query(features, box_mask((height, width), box).to(features.device))


def region_query_reference(features: Tensor, mask: Tensor) -> Tensor:
    """Plain-loop twin of :func:`region_query`."""
    flat_f = features.reshape(-1, features.shape[-1])
    flat_m = mask.reshape(-1).tolist()
    chosen = [flat_f[i] for i, m in enumerate(flat_m) if m]
    if not chosen:
        raise ConfigError("region_query: the region is empty (no pixel selected)")
    mean = sum(chosen) / len(chosen)
    return mean / mean.norm()


# ------------------------------------------------------------------------------------------------------------ scoring


def similarity_map(
    features: Float[Tensor, "*bs d"], query: Float[Tensor, " d"] | Float[Tensor, "k d"]
) -> Float[Tensor, "*bs"] | Float[Tensor, "*bs k"]:
    """Cosine similarity of every feature with ``query`` (``(d,)`` → ``(*bs)``; ``(k, d)`` → ``(*bs, k)``). Both
    sides are normalised here (a zero feature scores 0), so raw text embeddings can be passed as they are."""
    _check_query(features, query, "similarity_map")
    q = _unit(query.to(features))
    return _unit(features) @ q.T if q.ndim == 2 else _unit(features) @ q


def similarity_map_reference(features: Tensor, query: Tensor) -> Tensor:
    """Plain-loop twin of :func:`similarity_map`."""
    flat = features.reshape(-1, features.shape[-1])
    queries = query.reshape(-1, query.shape[-1])
    out = torch.zeros(flat.shape[0], queries.shape[0], dtype=features.dtype, device=features.device)
    for i in range(flat.shape[0]):
        for j in range(queries.shape[0]):
            a, b = flat[i], queries[j].to(features)
            denom = max(float(a.norm()), 1e-12) * max(float(b.norm()), 1e-12)
            out[i, j] = (a * b).sum() / denom
    shape = tuple(features.shape[:-1]) + ((queries.shape[0],) if query.ndim == 2 else ())
    return out.reshape(shape)


def threshold_mask(similarity: Float[Tensor, "*bs"], tau: float) -> Bool[Tensor, "*bs"]:
    """``similarity ≥ tau`` (DFF: ``tau`` = :data:`DFF_THRESHOLD` for one text; NaN never matches)."""
    return similarity >= tau


def relevancy(
    features: Float[Tensor, "*bs d"],
    query: Float[Tensor, " d"],
    negatives: Float[Tensor, "m d"],
    temperature: float = LERF_TEMPERATURE,
    mode: RelevancyMode = "pairwise-min",
) -> Float[Tensor, "*bs"]:
    """Relevancy of each feature to ``query`` against ``negatives``, in [0, 1]; ``s = cos / temperature``.

    * ``"pairwise-min"`` (LERF): for each negative ``j`` the two-way softmax
      ``exp(s_q) / (exp(s_q) + exp(s_j)) = sigmoid(s_q − s_j)``, then the minimum over ``j`` (the hardest negative;
      LERF's canonical negatives are "object", "things", "stuff", "texture" at temperature 0.1).
    * ``"softmax"`` (DFF, several texts): the query's probability in one softmax over ``[query, negatives...]``.
    """
    _check_query(features, query, "relevancy")
    if query.ndim != 1:
        raise ConfigError(f"relevancy: query must be one (d,) embedding, got shape {tuple(query.shape)}")
    _check_query(features, negatives, "relevancy", "negatives")
    if negatives.ndim != 2 or negatives.shape[0] == 0:
        raise ConfigError(f"relevancy: need at least one negative (m, d) embedding, got shape {negatives.shape}")
    if not temperature > 0:
        raise ConfigError(f"relevancy: temperature must be positive, got {temperature}")
    texts = torch.cat([query[None], negatives]).to(features)
    logits = similarity_map(features, texts) / temperature  # (*bs, 1 + m)
    if mode == "pairwise-min":
        return torch.sigmoid(logits[..., :1] - logits[..., 1:]).amin(dim=-1)
    if mode == "softmax":
        return torch.softmax(logits, dim=-1)[..., 0]
    raise ConfigError(f"relevancy: unknown mode {mode!r}; choose 'pairwise-min' (LERF) or 'softmax' (DFF)")


def relevancy_reference(
    features: Tensor,
    query: Tensor,
    negatives: Tensor,
    temperature: float = LERF_TEMPERATURE,
    mode: RelevancyMode = "pairwise-min",
) -> Tensor:
    """Plain-loop twin of :func:`relevancy` (explicit exponentials, per pixel)."""
    flat = features.reshape(-1, features.shape[-1])
    out = torch.zeros(flat.shape[0], dtype=features.dtype, device=features.device)

    def cos(a: Tensor, b: Tensor) -> Tensor:
        return (a * b).sum() / (a.norm().clamp_min(1e-12) * b.norm().clamp_min(1e-12))

    for i in range(flat.shape[0]):
        s_q = cos(flat[i], query.to(features)) / temperature
        s_n = [cos(flat[i], negatives[j].to(features)) / temperature for j in range(negatives.shape[0])]
        if mode == "pairwise-min":
            out[i] = min(torch.exp(s_q) / (torch.exp(s_q) + torch.exp(s)) for s in s_n)
        else:
            out[i] = torch.exp(s_q) / (torch.exp(s_q) + sum(torch.exp(s) for s in s_n))
    return out.reshape(features.shape[:-1])
