"""Semantic-NeRF (Zhi et al., ICCV 2021) on the shared field: volume-rendered class logits with cross-entropy.

The semantic head reads the geometry features (view-independent). Labels come from the datamanager, which can keep
only a fraction or a fixed number of labelled pixels (``label_fraction`` / ``label_count``); unlabelled pixels carry
the ignore label. This is the first baseline of the label-propagation experiments.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.errors import DataError
from jacobinerf_ns.models.field_model import FieldModel, FieldModelConfig


def semantic_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean cross-entropy over labelled rays; exactly 0 (with a graph) when the batch holds no label."""
    labels = labels.reshape(-1).long().to(logits.device)
    valid = labels != IGNORE_LABEL
    if not bool(valid.any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits[valid], labels[valid])


@dataclass
class SemanticNeRFModelConfig(FieldModelConfig):
    """Semantic-NeRF: semantic logits rendered like colour, trained with cross-entropy on the available labels."""

    _target: type = field(default_factory=lambda: SemanticNeRFModel)
    semantic_loss_weight: float = 0.04
    """Weight of the semantic cross-entropy (Semantic-NeRF: 0.04)."""
    hidden_dim_semantics: int = 64
    """Width of the semantic head."""


class SemanticNeRFModel(FieldModel):
    """See the module docstring."""

    config: SemanticNeRFModelConfig

    def semantic_classes(self) -> int:
        n = len(self.class_names)
        if n == 0:
            data = self.kwargs.get("metadata", {}).get("data_description", "the training data")
            raise DataError(
                f"semantic-nerf needs semantic labels, but {data} has none (use a dataparser that reads labels: "
                "replica-semantic, scannet-semantic)"
            )
        return n

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor], loss_dict: dict[str, Tensor]) -> None:
        if "semantics" in batch:
            loss_dict["semantic_loss"] = self.config.semantic_loss_weight * semantic_loss(
                outputs["semantics"], batch["semantics"]
            )

    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        if "semantics_gt" in batch:
            labels = batch["semantics_gt"].reshape(-1).to(self.device)
            valid = labels != IGNORE_LABEL
            if bool(valid.any()):
                pred = outputs["semantics"].detach().argmax(dim=-1)
                metrics["semantic_accuracy"] = (pred[valid] == labels[valid]).float().mean()
        return metrics
