"""Queries on a trained run — the one implementation behind ``jn-query``, the viewer panel and the benchmarks.

A *query* is a vector that scores pixels and points, built from what the user gives:

* a **click** (one pixel of a view): a feature field takes the rendered feature there (N3F / DFF); a JacobiNeRF run
  takes the clicked pixel's Jacobian direction G = J̃/3 (DESIGN §4, "selection": the resonance of θᴰ);
* a **region** (a box or mask in a view): the mean rendered feature, renormalised (N3F eq. 4), or the mean direction;
* a **text** (feature fields distilled from a language-aligned teacher, ``clip`` or ``lseg``): the teacher's text
  embedding.

:func:`select` renders a view with the query as a :class:`~jacobinerf_ns.render_options.Selection` (score in [0, 1]
and the mask), :func:`render_edit` with an :class:`~jacobinerf_ns.render_options.Edit`, and :func:`selection_points`
turns masked pixels into a coloured 3D point cloud (depth back-projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from nerfstudio.cameras.cameras import Cameras
from torch import Tensor

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.evaluation import eval_mode
from jacobinerf_ns.render_options import Edit, RenderOptions, Selection

QueryKind = Literal["feature", "jacobian"]


@dataclass(frozen=True)
class Query:
    """A query vector and how it scores (``feature``: (D,), ``jacobian``: (3, K))."""

    kind: QueryKind
    vector: Tensor
    reference: float = 1.0
    """For Jacobian queries: the clicked pixel's own first-order response (normaliser of ``response`` scores)."""
    source: str = ""
    """What it was built from (for reports)."""


def query_kinds(model) -> list[QueryKind]:
    """The selections a run offers: feature similarity (feature heads) and/or Jacobian resonance (θᴰ models)."""
    from jacobinerf_ns.models.feature_field import FeatureFieldModel
    from jacobinerf_ns.models.jacobinerf import JacobiNeRFModel

    kinds: list[QueryKind] = []
    if isinstance(model, FeatureFieldModel):
        kinds.append("feature")
    if isinstance(model, JacobiNeRFModel) and not isinstance(model, FeatureFieldModel):
        kinds.append("jacobian")
    return kinds


def default_kind(model, kind: QueryKind | None = None) -> QueryKind:
    kinds = query_kinds(model)
    if not kinds:
        raise ConfigError(
            f"{type(model).__name__} runs have neither a feature head nor colour Jacobians: queries need a "
            "jacobinerf or jacobinerf-features run"
        )
    if kind is None:
        return kinds[0]
    if kind not in kinds:
        raise ConfigError(f"this {type(model).__name__} run offers {', '.join(kinds)} queries, not {kind}")
    return kind


@torch.no_grad()
def render(model, camera: Cameras, options: RenderOptions | None = None) -> dict[str, Tensor]:
    """One whole view in eval mode with per-render ``options``."""
    with eval_mode(model, options):
        return model.get_outputs_for_camera(camera.to(model.device))


def _check_pixel(camera: Cameras, y: int, x: int, where: str) -> None:
    h, w = int(camera.height.flatten()[0]), int(camera.width.flatten()[0])
    if not (0 <= y < h and 0 <= x < w):
        raise ConfigError(f"{where}: pixel (x={x}, y={y}) is outside the {w}x{h} image")


def _check_mask(camera: Cameras, mask: Tensor, where: str) -> None:
    h, w = int(camera.height.flatten()[0]), int(camera.width.flatten()[0])
    if tuple(mask.shape) != (h, w):
        raise ConfigError(f"{where}: region mask is {tuple(mask.shape)}, the image is {h}x{w}")
    if not bool(mask.any()):
        raise ConfigError(f"{where}: the region is empty")


def query_from_pixels(model, camera: Cameras, mask: Bool[Tensor, "h w"], kind: QueryKind | None = None, **kw) -> Query:
    """The query of a set of pixels of one view: mean rendered feature (renormalised) or mean direction."""
    kind = default_kind(model, kind)
    where = kw.get("where", "query")
    _check_mask(camera, mask, where)
    if kind == "feature":
        feats = render(model, camera)["features"].cpu()
        return Query("feature", F.normalize(feats[mask].mean(dim=0), dim=0), source=where)
    jac = render(model, camera, RenderOptions(jacobians=True))["jacobian"].cpu()
    h, w, _ = jac.shape
    jac = jac.view(h, w, 3, -1)
    direction = jac[mask].mean(dim=0) / 3.0
    own = (jac[mask] * direction).sum(dim=-1).abs().mean(dim=-1)  # first-order response of the query's pixels
    return Query("jacobian", direction, reference=float(own.mean()), source=where)


def query_from_click(model, camera: Cameras, y: int, x: int, kind: QueryKind | None = None) -> Query:
    """The query of one clicked pixel (module docstring)."""
    _check_pixel(camera, y, x, "click")
    h, w = int(camera.height.flatten()[0]), int(camera.width.flatten()[0])
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y, x] = True
    return query_from_pixels(model, camera, mask, kind, where=f"click (x={x}, y={y})")


def query_from_box(model, camera: Cameras, box: tuple[int, int, int, int], kind: QueryKind | None = None) -> Query:
    """The query of a box ``(x0, y0, x1, y1)`` (pixel corners, x1/y1 exclusive)."""
    x0, y0, x1, y1 = box
    h, w = int(camera.height.flatten()[0]), int(camera.width.flatten()[0])
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise ConfigError(f"patch ({x0}, {y0})-({x1}, {y1}) is not a non-empty box inside the {w}x{h} image")
    mask = torch.zeros(h, w, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return query_from_pixels(model, camera, mask, kind, where=f"patch ({x0}, {y0})-({x1}, {y1})")


def query_from_text(pipeline, text: str) -> Query:
    """The run's teacher's text embedding of ``text`` (language-aligned teachers only)."""
    default_kind(pipeline.model, "feature")
    dm = pipeline.datamanager
    teacher_config = getattr(dm, "teacher_config", None)
    encode = None
    if teacher_config is not None:
        teacher = teacher_config.setup()
        encode = getattr(teacher, "encode_text", None)
    if encode is None:
        name = dm.train_dataset.metadata.get("teacher_name", "?")
        raise ConfigError(
            f"text query '{text}': the run's teacher '{name}' has no text encoder (text queries need a feature field "
            "distilled from teacher:clip or teacher:lseg)"
        )
    embedding = encode([text])[0].float()
    expected = pipeline.model.config.feature_dim
    if embedding.shape[0] != expected:
        raise ConfigError(
            f"text query '{text}': the text embedding has {embedding.shape[0]} dims but the feature field {expected} "
            "(a teacher with PCA on cannot be queried by text: train with pca_dim None)"
        )
    return Query("feature", F.normalize(embedding, dim=0), source=f"text '{text}'")


def selection_for(query: Query, threshold: float, mode: Literal["cosine", "response"] = "cosine") -> Selection:
    return Selection(kind=query.kind, vector=query.vector, threshold=threshold, mode=mode, reference=query.reference)


def select(
    model, camera: Cameras, query: Query, threshold: float, mode: Literal["cosine", "response"] = "cosine"
) -> dict[str, Tensor]:
    """Render ``camera`` with the query's selection: ``selection_score`` (h, w), ``selection`` (h, w) bool,
    ``selection_overlay`` (h, w, 3), ``rgb``, ``depth``."""
    out = render(model, camera, RenderOptions(selection=selection_for(query, threshold, mode)))
    return {
        "selection_score": out["selection_score"][..., 0].cpu(),
        "selection": out["selection"][..., 0].cpu(),
        "selection_overlay": out["selection_overlay"].cpu(),
        "rgb": out["rgb"].cpu(),
        "depth": out["depth"][..., 0].cpu(),
    }


def make_edit(
    query: Query,
    kind: Literal["recolor", "permute", "delete", "extract"],
    threshold: float = 0.5,
    color: tuple[float, float, float] = (1.0, 0.0, 0.0),
    strength: float = 1.0,
) -> Edit:
    """An edit of what ``query`` matches; JacobiNeRF runs only recolour (the paper's θᴰ edit)."""
    if query.kind == "jacobian" and kind != "recolor":
        raise ConfigError(f"a JacobiNeRF run can recolour but not {kind} (that needs a feature field's 3D queries)")
    return Edit(kind=kind, vector=query.vector, threshold=threshold, color=color, strength=strength, target=query.kind)


def render_edit(model, camera: Cameras, edit: Edit) -> dict[str, Tensor]:
    """Render ``camera`` with ``edit``: ``rgb_edited`` and, for feature edits, ``accumulation_edited``."""
    out = render(model, camera, RenderOptions(edit=edit))
    return {k: v.cpu() for k, v in out.items() if k.endswith("_edited") or k in ("rgb", "accumulation", "depth")}


def selection_points(
    camera: Cameras,
    depth: Float[Tensor, "h w"],
    rgb: Float[Tensor, "h w 3"],
    mask: Bool[Tensor, "h w"],
) -> tuple[np.ndarray, np.ndarray]:
    """Scene-space points (n, 3) and uint8 colours (n, 3) of the masked pixels, from the rendered (expected) depth."""
    rays = camera.generate_rays(camera_indices=0, keep_shape=True)
    origins, dirs = rays.origins.cpu(), rays.directions.cpu()
    points = origins + dirs * depth[..., None]  # nerfstudio's expected depth is the distance along the unit ray
    return points[mask].numpy(), (rgb[mask].clamp(0, 1).numpy() * 255).round().astype(np.uint8)


def scene_to_world(points: np.ndarray, transform: Tensor, scale: float) -> np.ndarray:
    """Undo a dataparser's normalisation: scene coordinates → the capture's own world frame."""
    t = transform.double().numpy()
    return (points / scale - t[:, 3]) @ t[:, :3]


def write_edit_config(config, edit_path: Path, out: Path) -> None:
    """The run's config with ``pipeline.model.edit_file`` set, written atomically to ``out`` (``ns-render
    --load-config out`` replays the edit; jn-query and the viewer's "render edit" write it)."""
    import copy
    import os

    import yaml

    edited = copy.deepcopy(config)
    edited.pipeline.model.edit_file = Path(edit_path).resolve()
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(yaml.dump(edited), "utf8")
    os.replace(tmp, out)
