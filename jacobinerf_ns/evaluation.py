"""Evaluation helpers: render chosen pixels of a split, and Jacobian alignment by ground-truth relation.

``jacobian_cosine_by_relation`` is what shaping is judged by: the mean |cos(J_i, J_j)| over pixel pairs of the same
instance, of the same class but different instances, and of different classes (void pixels excluded). Shaping must
raise the first two relative to the last.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from jaxtyping import Float, Int
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.model_components.ray_generators import RayGenerator
from torch import Tensor

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.render_options import RenderOptions, rendering


@contextmanager
def eval_mode(model, options: RenderOptions | None = None) -> Iterator[None]:
    """The model in eval mode, rendering with ``options`` in this thread (no model attribute is changed)."""
    was_training = model.training
    model.eval()
    try:
        if options is None:
            yield
        else:
            with rendering(model, options):
                yield
    finally:
        model.train(was_training)


@torch.no_grad()
def render_pixels(
    model,
    cameras: Cameras,
    indices: Int[Tensor, "p 3"],
    outputs: Sequence[str],
    chunk: int = 4096,
    jacobians: bool = False,
) -> dict[str, Tensor]:
    """Render the pixels ``(image, y, x)`` of ``cameras`` in eval mode; return the requested outputs per pixel."""
    collected: dict[str, list] = defaultdict(list)
    with eval_mode(model, RenderOptions(jacobians=True) if jacobians else None):
        # RayGenerator keeps its pixel grid as a buffer made on the CPU: move the module too (CUDA runs).
        generator = RayGenerator(cameras.to(model.device)).to(model.device)
        for start in range(0, len(indices), chunk):
            out = model(generator(indices[start : start + chunk].to(model.device)))
            for name in outputs:
                collected[name].append(out[name].cpu())
    return {name: torch.cat(values) for name, values in collected.items()}


def sample_labelled_pixels(semantics: Int[Tensor, "n h w"], count: int, seed: int = 0) -> Int[Tensor, "p 3"]:
    """``count`` uniformly random non-void pixels (image, y, x) of a split; deterministic per seed."""
    valid = torch.nonzero(semantics != IGNORE_LABEL)
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(valid), generator=generator)[: min(count, len(valid))]
    return valid[pick]


def jacobian_cosine_by_relation(
    jacobians: Float[Tensor, "p m"], classes: Int[Tensor, " p"], instances: Int[Tensor, " p"]
) -> dict[str, float]:
    """Mean |cos| over off-diagonal pixel pairs: same instance, same class (other instance), different class."""
    unit = torch.nn.functional.normalize(jacobians.double(), dim=-1)
    cos = (unit @ unit.T).abs()
    off = ~torch.eye(len(classes), dtype=torch.bool)
    same_class = classes[:, None] == classes[None, :]
    same_inst = (instances[:, None] == instances[None, :]) & (instances[:, None] > 0)
    relations = {
        "cos_same_instance": same_inst & off,
        "cos_same_class": same_class & ~same_inst & off,
        "cos_diff_class": ~same_class,
    }
    return {
        name: float((cos * mask).sum() / mask.sum()) if bool(mask.any()) else float("nan")
        for name, mask in relations.items()
    }
