"""Apply label propagation to trained runs and score every method by one protocol.

A *labeller* predicts a label-index map for target view i. :class:`JacobiLabeller` implements J-NeRF propagation
(:mod:`jacobinerf_ns.propagation`); :class:`NearestNeighbourLabeller` the teacher-2D and feature-field
nearest-neighbour baselines; :class:`SemanticHeadLabeller` reads a Semantic-NeRF head trained on the same
annotations. :func:`evaluate_labeller` pools one confusion matrix over the target views (labels absent from the
labelled view and void are ignored, as in the official evaluation) and times each view.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from nerfstudio.cameras.cameras import Cameras
from PIL import Image
from rich.progress import track
from torch import Tensor

from jacobinerf_ns.aggregator import train_aggregator
from jacobinerf_ns.annotations import Annotation
from jacobinerf_ns.data.class_table import IGNORE_LABEL, palette
from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.evaluation import eval_mode, render_pixels
from jacobinerf_ns.metrics import confusion_matrix, segmentation_scores
from jacobinerf_ns.propagation import (
    DEFAULT_PERTURB_T,
    METHODS,
    cosine_response,
    first_order_response,
    label_directions,
    labels_from_responses,
    normalize_per_image,
    perturbation_response,
    postprocess_2d,
    unit_directions,
)
from jacobinerf_ns.render_options import RenderOptions


@dataclass
class ViewSet:
    """Target views: cameras and raw ground-truth labels (class ids, -1 void; or instance ids, 0 void)."""

    cameras: Cameras
    gt: Int[Tensor, "n h w"]

    def __post_init__(self) -> None:
        self.gt = self.gt.long()  # scenes store labels compactly (int16 / int32)

    def __len__(self) -> int:
        return len(self.gt)

    def camera(self, i: int) -> Cameras:
        return self.cameras[i : i + 1]


def require_jacobian_head(model, where: str = "the run") -> None:
    """Propagation needs a JacobiNeRF model (explicit θᴰ and Jacobian outputs)."""
    from jacobinerf_ns.models.jacobinerf import JacobiNeRFModel

    if not isinstance(model, JacobiNeRFModel):
        raise ConfigError(
            f"{where} ({type(model).__name__}) has no colour Jacobian head: label propagation needs a jacobinerf run "
            "(ns-train jacobinerf / jacobinerf-tiny)"
        )


@torch.no_grad()
def render_view(model, camera: Cameras, options: RenderOptions | None = None) -> dict[str, Tensor]:
    """``get_outputs_for_camera`` in eval mode with per-render ``options`` (e.g. Jacobian outputs)."""
    with eval_mode(model, options):
        return model.get_outputs_for_camera(camera.to(model.device))


class JacobiLabeller:
    """J-NeRF propagation (``3d`` / ``2d`` / ``2d-perturb`` / ``2d-cos``) from an annotation; ``dense`` adds the
    aggregator."""

    def __init__(
        self,
        model,
        annotation: Annotation,
        train_cameras: Cameras,
        method: str,
        targets: ViewSet,
        perturb_t: float = DEFAULT_PERTURB_T,
        normalize_3d: bool = False,
        aggregator_steps: int = 1000,
        normalize_directions: bool = False,
    ) -> None:
        require_jacobian_head(model)
        if method not in METHODS:
            raise ConfigError(f"unknown propagation method '{method}' (choose from {', '.join(METHODS)})")
        self.model, self.annotation, self.method, self.targets = model, annotation, method, targets
        self.t, self.normalize_3d = perturb_t, normalize_3d
        idx = torch.cat([torch.full((len(annotation.pixels), 1), annotation.view), annotation.pixels], dim=1)
        jac = render_pixels(model, train_cameras, idx, ["jacobian"], jacobians=True)["jacobian"]
        self.directions = label_directions(jac.view(len(idx), 3, -1), annotation.labels, annotation.num_labels)
        if normalize_directions:
            self.directions = unit_directions(self.directions)
        self.aggregator = None
        if annotation.setting == "dense":
            maps = self.responses(train_cameras[annotation.view : annotation.view + 1])
            labels = torch.full(maps.shape[1:], IGNORE_LABEL, dtype=torch.long)
            labels[annotation.pixels[:, 0], annotation.pixels[:, 1]] = annotation.labels
            self.aggregator = train_aggregator(maps.flatten(1).T, labels.flatten(), steps=aggregator_steps)

    def responses(self, camera: Cameras) -> Float[Tensor, "n h w"]:
        """Per-label response maps of one view (the view's rendered colour is kept in ``last_rgb``)."""
        model, G = self.model, self.directions.to(self.model.device)
        if self.method == "3d":
            out = render_view(model, camera, RenderOptions(directions=G))
            self.last_rgb = out["rgb"].cpu()
            maps = out["response_3d"].permute(2, 0, 1).cpu()
            return normalize_per_image(maps) if self.normalize_3d else maps
        if self.method in ("2d", "2d-cos"):
            out = render_view(model, camera, RenderOptions(jacobians=True))
            self.last_rgb = out["rgb"].cpu()
            jac = out["jacobian"]
            h, w, _ = jac.shape
            if self.method == "2d-cos":
                return cosine_response(jac.view(h * w, 3, -1), G).T.reshape(-1, h, w).cpu()
            resp = first_order_response(jac.view(h * w, 3, -1), G, self.t)
            return postprocess_2d(resp.T.reshape(-1, h, w).cpu())
        base = render_view(model, camera)["rgb"]
        self.last_rgb = base.cpu()
        maps = []
        for g in G:  # θᴰ + t·G_ℓ in the render only (the parameters are never touched)
            perturbed = render_view(model, camera, RenderOptions(weight_delta=self.t * g))["rgb_perturbed"]
            maps.append(perturbation_response(perturbed, base))
        return postprocess_2d(torch.stack(maps).cpu())

    def predict(self, view: int) -> Int[Tensor, "h w"]:
        maps = self.responses(self.targets.camera(view))
        if self.aggregator is None:
            return labels_from_responses(maps)
        n, h, w = maps.shape
        with torch.no_grad():
            return self.aggregator(maps.flatten(1).T).argmax(dim=-1).view(h, w)


class NearestNeighbourLabeller:
    """Each pixel takes the label of the most similar annotated feature (cosine), e.g. teacher-2D or rendered."""

    def __init__(
        self,
        annotation_features: Float[Tensor, "a d"],
        annotation_labels: Int[Tensor, " a"],
        target_features: Callable[[int], Float[Tensor, "h w d"]],
        chunk: int = 4096,
    ) -> None:
        self.keys = F.normalize(annotation_features.float(), dim=-1)
        self.labels = annotation_labels
        self.target_features = target_features
        self.chunk = chunk

    def predict(self, view: int) -> Int[Tensor, "h w"]:
        feats = self.target_features(view)
        h, w, d = feats.shape
        # keys and targets may come from different devices (teacher features vs renders on CUDA): use the keys'
        flat = F.normalize(feats.reshape(-1, d).float().to(self.keys.device), dim=-1)
        best = torch.cat(
            [(flat[s : s + self.chunk] @ self.keys.T).argmax(dim=1) for s in range(0, len(flat), self.chunk)]
        )
        return self.labels.to(best.device)[best].view(h, w).cpu()


class SemanticHeadLabeller:
    """The argmax of a semantic head trained on the annotation's label space (Semantic-NeRF baseline)."""

    def __init__(self, model, targets: ViewSet) -> None:
        self.model, self.targets = model, targets

    def predict(self, view: int) -> Int[Tensor, "h w"]:
        return render_view(self.model, self.targets.camera(view))["semantics"].argmax(dim=-1).cpu()


def evaluate_labeller(
    labeller,
    targets: ViewSet,
    annotation: Annotation,
    max_views: int | None = None,
    save_dir: Path | None = None,
    keep_predictions: bool = False,
    colors: np.ndarray | None = None,
    progress: bool = True,
) -> dict:
    """Pool one confusion matrix over the target views; scores, per-label IoU, seconds per view (and the predicted
    label-index maps under ``predictions`` when asked).

    With ``save_dir``, per target view: ``labels_NNNN.png`` (uint16 label ids: class ids or instance ids),
    ``labels_color_NNNN.png`` (each label in ``colors``, default a fixed palette) and, when the labeller keeps the
    view's render (``last_rgb``), ``labels_overlay_NNNN.png`` (the colours blended onto the rendered RGB)."""
    n = annotation.num_labels
    conf = torch.zeros(n, n, dtype=torch.long)
    seconds, predictions = [], []
    colors = palette(n) if colors is None else np.asarray(colors, dtype=np.uint8)
    views = range(len(targets) if max_views is None else min(max_views, len(targets)))
    what = f"propagating {annotation.num_labels} {annotation.target} labels ({type(labeller).__name__})"
    for i in track(views, description=what, transient=True, disable=not progress):
        start = time.perf_counter()
        pred = labeller.predict(i).cpu()
        seconds.append(time.perf_counter() - start)
        conf += confusion_matrix(pred, annotation.to_index(targets.gt[i]), n)
        if keep_predictions:
            predictions.append(pred)
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            ids = np.asarray(annotation.label_ids, dtype=np.int64)[pred.numpy()]
            Image.fromarray(ids.astype(np.uint16)).save(save_dir / f"labels_{i:04d}.png")
            color_map = colors[pred.numpy()]
            Image.fromarray(color_map).save(save_dir / f"labels_color_{i:04d}.png")
            rgb = getattr(labeller, "last_rgb", None)
            if rgb is not None and tuple(rgb.shape[:2]) == color_map.shape[:2]:
                base = rgb.clamp(0, 1).numpy() * 255
                blended = (0.5 * base + 0.5 * color_map).round().astype(np.uint8)
                Image.fromarray(blended).save(save_dir / f"labels_overlay_{i:04d}.png")
    scores = segmentation_scores(conf)
    extra = {"predictions": predictions} if keep_predictions else {}
    return extra | {
        "miou": scores["miou"],
        "accuracy": scores["accuracy"],
        "class_accuracy": scores["class_accuracy"],
        "per_class_iou": dict(zip(annotation.label_names, scores["per_class_iou"], strict=True)),
        "num_classes": n,
        "num_classes_evaluated": scores["num_classes_present"],
        "views": len(seconds),
        "s_per_view": float(np.mean(seconds)) if seconds else float("nan"),
        "view_seconds": [round(s, 4) for s in seconds],
    }
