"""Which source views a target view reads (GSNeRF / GeoNeRF rules, by camera-centre distance).

* **Evaluation**: the K nearest views of the source bank (nearest first). A target that is itself in the bank (a
  training view being rendered) is excluded, so no view is ever predicted from itself.
* **Training**: K views drawn at random without replacement from the ``pool`` nearest other views (GSNeRF: from the
  8-16 nearest), returned nearest first; with probability ``include_target_prob`` one of the K is the target itself
  (the official code sometimes keeps it; it is usually excluded).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from jacobinerf_ns.errors import DataError


def camera_distances(target_c2w: Float[Tensor, "4 4"], bank_c2w: Float[Tensor, "n 4 4"]) -> Float[Tensor, " n"]:
    """Distance from the target camera centre to every bank camera centre."""
    return torch.linalg.vector_norm(bank_c2w[:, :3, 3] - target_c2w[:3, 3], dim=-1)


def _order(distances: Tensor) -> Tensor:
    return torch.sort(distances, stable=True).indices


def _check_enough(available: int, k: int, where: str) -> None:
    if available < k:
        raise DataError(
            f"source bank of {where} has {available} usable views, fewer than the {k} source views the model reads "
            "(lower --pipeline.model.num-source-views, or give the scene more training views)"
        )


def select_eval_sources(
    distances: Float[Tensor, " n"], k: int, exclude: int | None = None, where: str = "the scene"
) -> Int[Tensor, " k"]:
    """The ``k`` nearest bank views (nearest first), never ``exclude``."""
    order = _order(distances)
    if exclude is not None and exclude >= 0:
        order = order[order != exclude]
    _check_enough(len(order), k, where)
    return order[:k]


def select_train_sources(
    distances: Float[Tensor, " n"],
    k: int,
    pool: int,
    target: int,
    include_target_prob: float,
    generator: torch.Generator,
    where: str = "the scene",
) -> Int[Tensor, " k"]:
    """``k`` random views among the ``pool`` nearest non-target views (nearest first); sometimes the target."""
    order = _order(distances)
    others = order[order != target] if target >= 0 else order
    _check_enough(len(others), k, where)
    candidates = others[: max(pool, k)]
    keep_target = target >= 0 and float(torch.rand((), generator=generator)) < include_target_prob
    n_draw = k - 1 if keep_target else k
    pick = candidates[torch.randperm(len(candidates), generator=generator)[:n_draw]]
    if keep_target:
        pick = torch.cat([pick, torch.tensor([target], dtype=pick.dtype)])
    return pick[_order(distances.cpu()[pick])]
