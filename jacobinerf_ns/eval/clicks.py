"""Seeded clicks on ground-truth instances and the IoU of the selections they give (query / selection benchmarks).

A click is a pixel ``(view, y, x)`` drawn uniformly from the pixels of instances of at least ``min_area`` pixels in
that view (void excluded), seeded; its targets are the clicked pixel's instance mask and class mask in that view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Bool, Int
from torch import Tensor


@dataclass(frozen=True)
class Click:
    view: int
    y: int
    x: int
    instance: int
    semantic: int


def seeded_clicks(
    instances: Int[Tensor, "n h w"],
    semantics: Int[Tensor, "n h w"],
    count: int,
    seed: int = 0,
    min_area: int = 30,
) -> list[Click]:
    """``count`` clicks over the views (round-robin), each on an instance of ≥ ``min_area`` pixels in its view."""
    gen = torch.Generator().manual_seed(seed)
    clicks: list[Click] = []
    n = instances.shape[0]
    attempts = 0
    while len(clicks) < count and attempts < 20 * count:
        view = attempts % n
        attempts += 1
        inst = instances[view]
        ids, areas = inst.unique(return_counts=True)
        keep = ids[(ids > 0) & (areas >= min_area)]
        if len(keep) == 0:
            continue
        pixels = torch.nonzero(torch.isin(inst, keep))
        y, x = pixels[int(torch.randint(0, len(pixels), (1,), generator=gen))].tolist()
        clicks.append(Click(view, y, x, int(inst[y, x]), int(semantics[view, y, x])))
    return clicks


def mask_iou(pred: Bool[Tensor, "h w"], target: Bool[Tensor, "h w"]) -> float:
    """|pred ∩ target| / |pred ∪ target| (1 when both are empty)."""
    union = int((pred | target).sum())
    return 1.0 if union == 0 else int((pred & target).sum()) / union
