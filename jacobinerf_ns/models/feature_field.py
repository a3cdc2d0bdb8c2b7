"""Distilled feature field (N3F / DFF, the "DINO-NeRF" baseline): a linear head on the colour MLP's hidden
features ``h``, volume-rendered like colour, L2-normalised, trained with ``λ‖F̂ − F‖²`` against the teacher feature
of each ray (DESIGN §5).

For display, ``features_pca`` maps rendered features to RGB with a 3-component PCA of the teacher's features (fitted
once over the training views by the model at construction and stored in the checkpoint, so ``ns-render`` and
``ns-viewer`` colour every view the same way).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.fields.semantic_field import FEATURES
from jacobinerf_ns.models.jacobinerf import JacobiNeRFModel, JacobiNeRFModelConfig


def feature_distillation_loss(rendered: Tensor, teacher: Tensor) -> Tensor:
    """Mean over rays of ``‖F̂ − F‖²`` (both L2-normalised)."""
    return ((rendered - teacher.to(rendered)) ** 2).sum(dim=-1).mean()


@dataclass
class FeatureFieldModelConfig(JacobiNeRFModelConfig):
    """Feature field: a distilled teacher-feature head (shaping off by default; it can be combined)."""

    _target: type = field(default_factory=lambda: FeatureFieldModel)
    feature_dim: int = 64
    """Dimension of the feature head; must equal the teacher's feature dimension (after PCA)."""
    feature_loss_weight: float = 1e-2
    """λ of the distillation loss (DFF 1e-2; N3F 1e-3)."""
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

    def extra_outputs(self, field_outputs: dict[str, Tensor], weights: Tensor, outputs: dict[str, Tensor]) -> None:
        super().extra_outputs(field_outputs, weights, outputs)
        rendered = F.normalize(torch.sum(weights * field_outputs[FEATURES], dim=-2), dim=-1)
        outputs["features"] = rendered
        if not self.training:
            outputs["features_pca"] = self.features_to_rgb(rendered)

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor], loss_dict: dict[str, Tensor]) -> None:
        super().extra_losses(outputs, batch, loss_dict)
        if "teacher_features" in batch and self.config.feature_loss_weight > 0:
            loss_dict["feature_loss"] = self.config.feature_loss_weight * feature_distillation_loss(
                outputs["features"], batch["teacher_features"]
            )

    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        if "teacher_features" in batch:
            cos = (outputs["features"].detach() * batch["teacher_features"].to(self.device)).sum(dim=-1)
            metrics["feature_cosine"] = cos.mean()
        return metrics
