"""Pixel sampling for training batches: pure functions over (image, y, x) index triples."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Int
from torch import Tensor

from jacobinerf_ns.data.class_table import IGNORE_LABEL


def sample_uniform(
    num_rays: int, num_images: int, height: int, width: int, generator: torch.Generator
) -> Int[Tensor, "num_rays 3"]:
    """Uniformly random (image, y, x) triples over all pixels of all images."""
    flat = torch.randint(0, num_images * height * width, (num_rays,), generator=generator)
    return unflatten_pixels(flat, height, width)


def unflatten_pixels(flat: Int[Tensor, " n"], height: int, width: int) -> Int[Tensor, "n 3"]:
    """Flat pixel ids (image-major, then row, then column) → (image, y, x)."""
    img = flat // (height * width)
    rem = flat % (height * width)
    return torch.stack([img, rem // width, rem % width], dim=-1)


def flatten_pixels(indices: Int[Tensor, "n 3"], height: int, width: int) -> Int[Tensor, " n"]:
    """(image, y, x) → flat pixel ids; inverse of :func:`unflatten_pixels`."""
    return (indices[:, 0] * height + indices[:, 1]) * width + indices[:, 2]


def select_labelled_pixels(
    semantics: Int[Tensor, "n h w"], fraction: float = 1.0, count: int | None = None, seed: int = 0
) -> Bool[Tensor, "n h w"]:
    """The pixels whose labels a sparsely supervised model may use.

    Among pixels with a valid label (not :data:`IGNORE_LABEL`), keep a uniformly random ``count`` of them (over the
    whole training set) when ``count`` is given, else a random ``fraction``. Deterministic per ``seed``.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"label fraction must lie in [0, 1], got {fraction}")
    valid = semantics != IGNORE_LABEL
    candidates = torch.nonzero(valid.flatten()).squeeze(1)
    keep_n = len(candidates) if count is None and fraction >= 1.0 else None
    if keep_n is None:
        keep_n = min(int(count), len(candidates)) if count is not None else int(round(fraction * len(candidates)))
    if keep_n == len(candidates):
        return valid
    generator = torch.Generator().manual_seed(seed)
    chosen = candidates[torch.randperm(len(candidates), generator=generator)[:keep_n]]
    mask = torch.zeros(valid.numel(), dtype=torch.bool)
    mask[chosen] = True
    return mask.view_as(valid)


class PixelPool:
    """The pixels training rays are drawn from: every pixel of ``n`` images of ``h x w``, or only those inside a
    dataparser's masks. Draws are uniform over the pool, or over the pool's pixels of some chosen views."""

    def __init__(self, n: int, h: int, w: int, mask: Bool[Tensor, "n h w"] | None = None) -> None:
        self.n, self.h, self.w = n, h, w
        self.flat: Tensor | None = None
        if mask is not None:
            self.flat = torch.nonzero(mask.reshape(-1).cpu()).squeeze(1)
            counts = mask.reshape(n, -1).sum(dim=1).cpu()
            if bool((counts == 0).any()):
                empty = torch.nonzero(counts == 0).flatten().tolist()
                raise ValueError(f"the masks of image(s) {empty[:5]} exclude every pixel")
            self.counts = counts
            self.offsets = torch.cumsum(counts, 0) - counts

    def sample(
        self, num: int, generator: torch.Generator, views: Int[Tensor, " v"] | None = None
    ) -> Int[Tensor, "num 3"]:
        """``num`` (image, y, x) triples: uniform over the pool, or over its pixels in ``views`` (a view drawn
        uniformly per ray, then a pixel of it)."""
        if views is None:
            if self.flat is None:
                return sample_uniform(num, self.n, self.h, self.w, generator)
            pick = torch.randint(0, len(self.flat), (num,), generator=generator)
            return unflatten_pixels(self.flat[pick], self.h, self.w)
        view = views[torch.randint(0, len(views), (num,), generator=generator)]
        if self.flat is None:
            local = sample_uniform(num, 1, self.h, self.w, generator)
            local[:, 0] = view
            return local
        u = torch.rand(num, generator=generator, dtype=torch.float64)
        within = (u * self.counts[view]).long().clamp(max=self.counts[view] - 1)
        return unflatten_pixels(self.flat[self.offsets[view] + within], self.h, self.w)
