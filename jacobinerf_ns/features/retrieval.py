"""N3F's object-retrieval protocol (DESIGN §5), implemented from the paper's text (its code was never released).

A query is a descriptor of an object in one view (e.g. :func:`~jacobinerf_ns.features.queries.region_query` of its
mask, N3F eq. 4). It ranks every pixel of the *other* views by similarity (cosine; for unit features this is the
same order as the paper's ascending distance, ``‖a − b‖² = 2 − 2 cos``); the pixels of the object are the relevant
items; the query scores the average precision of that ranking; mAP is the mean over queries.

Average precision (:func:`average_precision`): ``AP = (1/R) Σ_{i relevant} P(i)`` with ``R`` the number of relevant
items and ``P(i)`` the precision of the ranking cut just after item ``i``. **Ties**: items with equal scores are
retrieved together, so ``P(i) = |{j relevant: s_j ≥ s_i}| / |{j: s_j ≥ s_i}|`` — every tied item sees the whole tie
group as retrieved. The value then does not depend on the order in which tied items happen to lie, and it equals
``sklearn.metrics.average_precision_score`` (which steps through distinct thresholds the same way; tested).

Memory: the scores of one block of queries over all ``m`` target pixels (``block × m`` floats, ``block`` chosen so
that this stays under ``max_scores`` elements) are filled chunk by chunk over the pixels (``chunk_size`` rows of
target features normalised at a time), so no ``m × d`` normalised copy and no ``k × m`` score matrix is ever built.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor

from jacobinerf_ns.errors import ConfigError

DEFAULT_CHUNK_SIZE = 65_536
"""Target pixels whose features are normalised and scored at once."""
DEFAULT_MAX_SCORES = 1 << 25
"""At most this many query × pixel scores are held at once (128 MiB in float32)."""


def _check_scores(scores: Tensor, relevant: Tensor) -> None:
    if scores.ndim != 1 or not scores.is_floating_point():
        raise ConfigError(f"average_precision: scores must be a float (m,) tensor, got {tuple(scores.shape)}")
    if tuple(relevant.shape) != tuple(scores.shape) or relevant.dtype != torch.bool:
        raise ConfigError(
            f"average_precision: relevant must be a boolean tensor of shape {tuple(scores.shape)}, "
            f"got {relevant.dtype} {tuple(relevant.shape)}"
        )
    if bool(torch.isnan(scores).any()):
        raise ConfigError("average_precision: scores contain NaN")


def average_precision(scores: Float[Tensor, " m"], relevant: Bool[Tensor, " m"]) -> Tensor:
    """AP of ranking the items by ``scores`` descending, ties retrieved together (module docstring).

    A float64 scalar on ``scores``' device. No relevant item is a :class:`ConfigError` (AP is undefined)."""
    _check_scores(scores, relevant)
    rel = relevant.to(scores.device)
    total = int(rel.sum())
    if total == 0:
        raise ConfigError("average_precision: no relevant item, AP is undefined")
    order = torch.argsort(scores, descending=True, stable=True)
    s, r = scores[order], rel[order].to(torch.float64)
    _, counts = torch.unique_consecutive(s, return_counts=True)  # tie groups, in rank order
    ends = torch.cumsum(counts, 0) - 1  # last rank of each group
    cum_tp = torch.cumsum(r, 0)[ends]
    group_tp = torch.diff(cum_tp, prepend=cum_tp.new_zeros(1))
    precision = cum_tp / (ends + 1).to(torch.float64)
    return (group_tp * precision).sum() / total


def average_precision_reference(scores: Tensor, relevant: Tensor) -> Tensor:
    """Plain-loop twin of :func:`average_precision`: ``mean_{i relevant} P(i)`` with the tie rule written out."""
    values = [float(v) for v in scores.tolist()]
    rel = [bool(v) for v in relevant.tolist()]
    precisions = []
    for i, si in enumerate(values):
        if not rel[i]:
            continue
        retrieved = [j for j, sj in enumerate(values) if sj >= si]
        precisions.append(sum(rel[j] for j in retrieved) / len(retrieved))
    if not precisions:
        raise ConfigError("average_precision: no relevant item, AP is undefined")
    return torch.tensor(sum(precisions) / len(precisions), dtype=torch.float64)


def _check_retrieval(queries: Tensor, targets: Tensor, relevance: Tensor, ignore: Tensor | None) -> None:
    if queries.ndim != 2 or targets.ndim != 2 or queries.shape[1] != targets.shape[1]:
        raise ConfigError(
            f"retrieval: query descriptors {tuple(queries.shape)} and target features {tuple(targets.shape)} must be "
            "(k, d) and (m, d) with the same d"
        )
    want = (queries.shape[0], targets.shape[0])
    if tuple(relevance.shape) != want or relevance.dtype != torch.bool:
        raise ConfigError(
            f"retrieval: target_relevance must be boolean {want}, got {relevance.dtype} {tuple(relevance.shape)}"
        )
    if ignore is not None and (tuple(ignore.shape) != want or ignore.dtype != torch.bool):
        raise ConfigError(f"retrieval: target_ignore must be boolean {want}, got {ignore.dtype} {tuple(ignore.shape)}")


def query_scores(
    query_descriptors: Float[Tensor, "k d"], target_features: Float[Tensor, "m d"], chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Float[Tensor, "k m"]:
    """Cosine similarity of each query with each target pixel, float32 or better, filled ``chunk_size`` target rows
    at a time (the target features are normalised per chunk, never copied whole)."""
    dtype = torch.promote_types(target_features.dtype, torch.float32)
    q = F.normalize(query_descriptors.to(target_features.device, dtype), dim=-1)
    m = target_features.shape[0]
    out = torch.empty(q.shape[0], m, dtype=dtype, device=target_features.device)
    step = max(1, int(chunk_size))
    for start in range(0, m, step):
        chunk = F.normalize(target_features[start : start + step].to(dtype), dim=-1)
        out[:, start : start + step] = q @ chunk.T
    return out


def retrieval_average_precisions(
    query_descriptors: Float[Tensor, "k d"],
    target_features: Float[Tensor, "m d"],
    target_relevance: Bool[Tensor, "k m"],
    target_ignore: Bool[Tensor, "k m"] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_scores: int = DEFAULT_MAX_SCORES,
) -> Float[Tensor, " k"]:
    """Per query, the AP of ranking all target pixels (not ignored) by cosine similarity; NaN for a query with no
    relevant target pixel. ``target_ignore`` drops pixels from a query's ranking (its own view, void pixels):
    alternatively pass only the other views' pixels as targets."""
    _check_retrieval(query_descriptors, target_features, target_relevance, target_ignore)
    k, m = target_relevance.shape
    out = torch.full((k,), float("nan"), dtype=torch.float64, device=target_features.device)
    block = max(1, int(max_scores) // max(1, m))
    for start in range(0, k, block):
        scores = query_scores(query_descriptors[start : start + block], target_features, chunk_size)
        for row in range(scores.shape[0]):
            i = start + row
            keep = None if target_ignore is None else ~target_ignore[i].to(scores.device)
            s = scores[row] if keep is None else scores[row][keep]
            r = target_relevance[i].to(scores.device)
            r = r if keep is None else r[keep]
            if bool(r.any()):
                out[i] = average_precision(s, r)
    return out


def retrieval_map(
    query_descriptors: Float[Tensor, "k d"],
    target_features: Float[Tensor, "m d"],
    target_relevance: Bool[Tensor, "k m"],
    target_ignore: Bool[Tensor, "k m"] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_scores: int = DEFAULT_MAX_SCORES,
) -> Tensor:
    """N3F retrieval mAP: the mean of :func:`retrieval_average_precisions` over the queries that have at least one
    relevant target pixel (a float64 scalar). No such query is a :class:`ConfigError`."""
    aps = retrieval_average_precisions(
        query_descriptors, target_features, target_relevance, target_ignore, chunk_size, max_scores
    )
    valid = ~torch.isnan(aps)
    if not bool(valid.any()):
        raise ConfigError("retrieval_map: no query has a relevant target pixel")
    return aps[valid].mean()


def relevance_from_labels(
    query_labels: Int[Tensor, " k"],
    query_views: Int[Tensor, " k"],
    target_labels: Int[Tensor, " m"],
    target_views: Int[Tensor, " m"],
    void: int = -1,
) -> tuple[Bool[Tensor, "k m"], Bool[Tensor, "k m"]]:
    """``(target_relevance, target_ignore)`` of the protocol from per-pixel object labels: a target pixel is
    relevant when it carries the query's label; it is ignored when it lies in the query's own view or is void."""
    for name, t in (("query_labels", query_labels), ("query_views", query_views)):
        if t.ndim != 1 or t.shape[0] != query_labels.shape[0]:
            raise ConfigError(f"relevance_from_labels: {name} must be (k,), got {tuple(t.shape)}")
    if target_labels.ndim != 1 or tuple(target_views.shape) != tuple(target_labels.shape):
        raise ConfigError(
            f"relevance_from_labels: target_labels {tuple(target_labels.shape)} and target_views "
            f"{tuple(target_views.shape)} must both be (m,)"
        )
    dev = target_labels.device
    relevant = query_labels.to(dev)[:, None] == target_labels[None, :]
    ignore = (query_views.to(dev)[:, None] == target_views.to(dev)[None, :]) | (target_labels == void)[None, :]
    return relevant & ~ignore, ignore


def retrieval_map_reference(
    query_descriptors: Tensor, target_features: Tensor, target_relevance: Tensor, target_ignore: Tensor | None = None
) -> Tensor:
    """Plain-loop twin of :func:`retrieval_map` (cosine per pixel, :func:`average_precision_reference` per query)."""
    aps = []
    for i in range(query_descriptors.shape[0]):
        q = query_descriptors[i].double()
        scores, rel = [], []
        for j in range(target_features.shape[0]):
            if target_ignore is not None and bool(target_ignore[i, j]):
                continue
            t = target_features[j].double()
            scores.append(float((q * t).sum() / (q.norm().clamp_min(1e-12) * t.norm().clamp_min(1e-12))))
            rel.append(bool(target_relevance[i, j]))
        if any(rel):
            aps.append(float(average_precision_reference(torch.tensor(scores), torch.tensor(rel))))
    if not aps:
        raise ConfigError("retrieval_map: no query has a relevant target pixel")
    return torch.tensor(sum(aps) / len(aps), dtype=torch.float64)
