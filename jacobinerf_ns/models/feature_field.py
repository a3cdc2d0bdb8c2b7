"""Distilled feature field (N3F / DFF, the "DINO-NeRF" baseline) with smoothing, queries and edits (DESIGN §5).

* **Head**: a small view-independent MLP on the hash-grid encoding and geometry features, volume-rendered like
  colour and L2-normalised, trained with ``λ‖F̂ − F‖²`` against the teacher feature of each ray.
* **Smoothing** (``smoothing``) on rendered P×P feature patches that the datamanager mixes into each batch (they
  replace part of the random rays; the RGB rays stay random): ``tv`` (anisotropic TV), ``bilateral`` (neighbour
  differences weighted by RGB similarity and pixel distance, with gradient to the model), ``masks`` (pull features
  towards their 2D mask's mean inside each mask, nothing across mask borders; masks from felzenszwalb / slic / SAM /
  ground-truth instances, see ``pipeline.datamanager.masks``). Kernels in :mod:`jacobinerf_ns.features.smoothing`.
* **Selection and edits** through render options: a feature query vector scores rendered pixels
  (``selection_score``) and, for edits, every sample point (DFF: score = max(0, cos(f(x), q))); ``recolor``,
  ``permute``, ``delete`` (σ = 0 where matched; the proposal sampler sees the deletion too, so what is behind
  appears) and ``extract`` (σ kept only where matched) render ``rgb_edited`` / ``accumulation_edited`` /
  ``depth_edited``.
* ``features_pca``: rendered features mapped to RGB by a 3-component PCA of the teacher (fitted once at
  construction, stored in the checkpoint, so every view is coloured the same way).
* ``ns-eval`` reports ``feature_cos_sim``: mean cosine between rendered and teacher features on the test views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.features.edits import delete_density, extract_density, permute_channels, recolor
from jacobinerf_ns.features.smoothing import bilateral_loss, mask_loss, tv_loss
from jacobinerf_ns.fields.semantic_field import DENSITY, FEATURES, RGB
from jacobinerf_ns.models.jacobinerf import JacobiNeRFModel, JacobiNeRFModelConfig
from jacobinerf_ns.render_options import Edit, RenderOptions, check_vector
from jacobinerf_ns.selection import feature_score
from jacobinerf_ns.viewer.labels import add_feature_labels

Smoothing = Literal["none", "tv", "bilateral", "masks"]


def feature_distillation_loss(rendered: Tensor, teacher: Tensor) -> Tensor:
    """Mean over rays of ``‖F̂ − F‖²`` (both L2-normalised)."""
    return ((rendered - teacher.to(rendered)) ** 2).sum(dim=-1).mean()


@dataclass
class FeatureFieldModelConfig(JacobiNeRFModelConfig):
    """Feature field: a distilled teacher-feature head (shaping off by default; it can be combined)."""

    _target: type = field(default_factory=lambda: FeatureFieldModel)
    feature_dim: int = 64
    """Dimension of the feature head; must equal the teacher's feature dimension (after PCA)."""
    hidden_dim_features: int = 64
    """Width of the feature head's hidden layer."""
    feature_loss_weight: float = 1e-2
    """λ of the distillation loss (DFF 1e-2; N3F 1e-3)."""
    smoothing: Smoothing = "none"
    """Regulariser on rendered feature patches: none, tv, bilateral, masks (module docstring)."""
    smoothing_weight: float = 1e-3
    """Weight of the smoothing loss (relative to the distillation loss, which has weight feature_loss_weight)."""
    bilateral_sigma_rgb: float = 0.1
    """Bilateral: colour scale of the neighbour weights (RGB in [0, 1])."""
    bilateral_sigma_xy: float = 2.0
    """Bilateral: pixel-distance scale of the neighbour weights."""
    bilateral_radius: int = 2
    """Bilateral: neighbours within this many pixels (square window)."""
    mask_min_area: int = 16
    """Masks: parts of a 2D mask smaller than this many pixels inside a patch are ignored."""
    nce_loss_weight: float = 0.0
    """Jacobian shaping is off for the plain feature field."""
    norm_loss_weight: float = 0.0
    """Jacobian-norm loss is off for the plain feature field."""


class FeatureFieldModel(JacobiNeRFModel):
    """See the module docstring."""

    config: FeatureFieldModelConfig

    def feature_dim(self) -> int:
        meta = self.kwargs.get("metadata", {})
        teacher_dim = meta.get("teacher_feature_dim")
        if teacher_dim is not None and int(teacher_dim) != self.config.feature_dim:
            raise ConfigError(
                f"teacher '{meta.get('teacher_name')}' gives {teacher_dim}-dim features but the model's feature head "
                f"has {self.config.feature_dim} (set --pipeline.model.feature-dim {teacher_dim}, or the teacher's "
                "dim / pca_dim)"
            )
        return self.config.feature_dim

    def populate_modules(self):
        super().populate_modules()
        d = self.config.feature_dim
        self.register_buffer("pca_mean", torch.zeros(d))
        self.register_buffer("pca_components", torch.eye(d, 3))
        self.register_buffer("pca_range", torch.tensor([[-1.0] * 3, [1.0] * 3]))
        sample = self.kwargs.get("metadata", {}).get("teacher_feature_sample")
        if sample is not None:
            self.set_display_pca(sample)

    @torch.no_grad()
    def set_display_pca(self, features: Tensor) -> None:
        """Fit the RGB display mapping on teacher features (m, D)."""
        from jacobinerf_ns.teachers import fit_pca

        basis = fit_pca(features.float(), 3)
        proj = basis.project(features.float())
        self.pca_mean.copy_(basis.mean)
        self.pca_components.copy_(basis.components)
        self.pca_range.copy_(torch.stack([proj.quantile(0.01, dim=0), proj.quantile(0.99, dim=0)]))

    def features_to_rgb(self, features: Tensor) -> Tensor:
        proj = (features - self.pca_mean) @ self.pca_components
        lo, hi = self.pca_range
        return ((proj - lo) / (hi - lo).clamp(min=1e-6)).clamp(0, 1)

    # --------------------------------------------------------------------------------------------- outputs
    def extra_outputs(
        self, field_outputs: dict[str, Tensor], weights: Tensor, outputs: dict[str, Tensor], options: RenderOptions
    ) -> None:
        super().extra_outputs(field_outputs, weights, outputs, options)
        rendered = F.normalize(torch.sum(weights * field_outputs[FEATURES], dim=-2), dim=-1)
        outputs["features"] = rendered
        if not self.training:
            outputs["features_pca"] = self.features_to_rgb(rendered)
        selection = options.selection
        if selection is not None and selection.kind == "feature":
            query = check_vector(selection.vector, (self.config.feature_dim,), "the selection's query feature")
            outputs["selection_score"] = feature_score(rendered, query)[..., None]
        add_feature_labels(outputs, options)  # the viewer's live labels (nearest annotated feature)

    def edit_outputs(self, ray_bundle, ray_samples, field_outputs, outputs, edit: Edit) -> None:
        if edit.target != "feature":
            return super().edit_outputs(ray_bundle, ray_samples, field_outputs, outputs, edit)
        query = check_vector(edit.vector, (self.config.feature_dim,), "the edit's query feature").to(outputs["rgb"])
        if edit.kind in ("recolor", "permute"):
            score = feature_score(field_outputs[FEATURES], query)[..., None]
            matched = torch.where(score >= edit.threshold, score, torch.zeros_like(score))
            if edit.kind == "recolor":
                rgb = recolor(field_outputs[RGB], matched, torch.tensor(edit.color).to(matched))
            else:
                rgb = permute_channels(field_outputs[RGB], matched > 0, edit.permutation)
            weights = ray_samples.get_weights(field_outputs[DENSITY])
            outputs["rgb_edited"] = self.renderer_rgb(rgb=rgb, weights=weights)
            outputs["accumulation_edited"] = outputs["accumulation"]
            outputs["depth_edited"] = outputs["depth"]
            return
        keep_matched = edit.kind == "extract"

        def edited(density: Tensor, features: Tensor) -> Tensor:
            match = feature_score(features, query)[..., None] >= edit.threshold
            return extract_density(density, match) if keep_matched else delete_density(density, match)

        def proposal_fn(density_fn):
            def fn(positions: Tensor, times: Tensor | None = None) -> Tensor:
                _, feats = self.field.features_at(positions)
                return edited(density_fn(positions), feats)

            return fn

        samples, _, _ = self.proposal_sampler(ray_bundle, density_fns=[proposal_fn(f) for f in self.density_fns])
        fo = self.field(samples)
        weights = samples.get_weights(edited(fo[DENSITY], fo[FEATURES]))
        outputs["rgb_edited"] = self.renderer_rgb(rgb=fo[RGB], weights=weights)
        outputs["accumulation_edited"] = self.renderer_accumulation(weights=weights)
        outputs["depth_edited"] = self.renderer_depth(weights=weights, ray_samples=samples)

    # ---------------------------------------------------------------------------------------------- losses
    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor], loss_dict: dict[str, Tensor]) -> None:
        super().extra_losses(outputs, batch, loss_dict)
        cfg = self.config
        if "teacher_features" in batch and cfg.feature_loss_weight > 0:
            loss_dict["feature_loss"] = cfg.feature_loss_weight * feature_distillation_loss(
                outputs["features"], batch["teacher_features"]
            )
        if cfg.smoothing != "none" and self.training:
            if "patch_count" not in batch:
                raise ConfigError(
                    f"smoothing '{cfg.smoothing}' needs feature patches in the batch: use a teacher datamanager "
                    "(jacobinerf-features presets) with patches_per_batch > 0"
                )
            n, p = int(batch["patch_count"]), int(batch["patch_size"])
            feats = outputs["features"][-n * p * p :].view(n, p, p, -1)
            if cfg.smoothing == "tv":
                loss = tv_loss(feats)
            elif cfg.smoothing == "bilateral":
                rgb = batch["image"][-n * p * p :].to(feats).view(n, p, p, 3)
                loss = bilateral_loss(feats, rgb, cfg.bilateral_sigma_rgb, cfg.bilateral_sigma_xy, cfg.bilateral_radius)
            else:
                if "patch_masks" not in batch:
                    raise ConfigError("smoothing 'masks' needs 2D masks: the datamanager computes them when asked")
                loss = mask_loss(feats, batch["patch_masks"].to(feats.device).view(n, p, p), cfg.mask_min_area)
            loss_dict["smoothing_loss"] = cfg.smoothing_weight * loss

    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        if "teacher_features" in batch:
            cos = (outputs["features"].detach() * batch["teacher_features"].to(self.device)).sum(dim=-1)
            metrics["feature_cosine"] = cos.mean()
        return metrics

    def get_image_metrics_and_images(self, outputs, batch):
        metrics, images = super().get_image_metrics_and_images(outputs, batch)
        if "teacher_features" in batch:
            teacher = F.normalize(batch["teacher_features"].to(outputs["features"]), dim=-1)
            metrics["feature_cos_sim"] = float((outputs["features"] * teacher).sum(dim=-1).mean())
        images["features_pca"] = outputs["features_pca"]
        return metrics, images
