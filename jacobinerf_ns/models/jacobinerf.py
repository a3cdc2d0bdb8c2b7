"""JacobiNeRF (Xu, Yang et al., CVPR 2023): a radiance field whose colour Jacobians are shaped by a 2D teacher.

After ``shaping_start_step`` steps of plain reconstruction, every training step adds (DESIGN §3)

    nce_loss_weight · InfoNCE(|cos(J_i, J_j)| / τ over the batch's positive pairs) + norm_loss_weight · (‖J_i‖ − 1)²

on the closed-form "mean of RGB" Jacobians of the batch's shaping rays (:mod:`jacobinerf_ns.jacobian`): first-order
autograd only, so the hash grid may be tiny-cuda-nn. The positives come from the datamanager
(:mod:`jacobinerf_ns.data.teacher_datamanager`). Logged: positive fraction, τ_pos, and mean |cos| over positive and
over negative pairs (the gap shaping must open). With both weights 0 it is a plain reconstruction model (the
"no resonance" control).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from jacobinerf_ns.fields.semantic_field import COLOR_HIDDEN, DENSITY, RGB_PREACT
from jacobinerf_ns.jacobian import mean_rgb_jacobian, per_channel_jacobian
from jacobinerf_ns.models.field_model import FieldModel, FieldModelConfig
from jacobinerf_ns.propagation import cosine_response, sample_response_3d
from jacobinerf_ns.render_options import Edit, RenderOptions, check_vector
from jacobinerf_ns.selection import perturbed_colors, recolor_delta, resonance_score
from jacobinerf_ns.shaping import info_nce_loss, norm_loss, shaping_stats


@dataclass
class JacobiNeRFModelConfig(FieldModelConfig):
    """JacobiNeRF: reconstruction plus Jacobian shaping on θᴰ = ``field.color_out``."""

    _target: type = field(default_factory=lambda: JacobiNeRFModel)
    shaping_start_step: int = 0
    """Plain reconstruction before this step (official: shape a pre-trained NeRF)."""
    nce_loss_weight: float = 1e-2
    """Weight of the InfoNCE loss on Jacobians (official 1e-2; 0 disables shaping)."""
    norm_loss_weight: float = 1e-2
    """Weight of the Jacobian-norm loss (official 1e-2)."""
    nce_temperature: float = 1.0
    """InfoNCE temperature τ (official 1.0)."""
    shaping_stats_every: int = 10
    """Compute the logged shaping statistics every n steps (nerfstudio logs metrics every 10 steps)."""


class JacobiNeRFModel(FieldModel):
    """See the module docstring."""

    config: JacobiNeRFModelConfig

    def populate_modules(self):
        super().populate_modules()
        self.step = 0

    def get_training_callbacks(self, training_callback_attributes):
        from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackLocation

        def set_step(step: int) -> None:
            self.step = step

        return [
            *super().get_training_callbacks(training_callback_attributes),
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_step, update_every_num_iters=1),
        ]

    @property
    def shaping_active(self) -> bool:
        cfg = self.config
        return (
            self.training
            and (cfg.nce_loss_weight > 0 or cfg.norm_loss_weight > 0)
            and (self.step >= cfg.shaping_start_step)
        )

    def extra_outputs(
        self, field_outputs: dict[str, Tensor], weights: Tensor, outputs: dict[str, Tensor], options: RenderOptions
    ) -> None:
        """Outputs of the render options (see :class:`~jacobinerf_ns.render_options.RenderOptions`): ``jacobian``,
        ``response_3d`` or ``response_cos`` / ``labels``, ``rgb_perturbed``, and a Jacobian selection's
        ``selection_score``."""
        hidden, preact = field_outputs[COLOR_HIDDEN], field_outputs[RGB_PREACT]
        k = self.field.color_dim
        last_sample = self.config.background_color == "last_sample"
        selection = options.selection
        if selection is not None and selection.kind != "jacobian":
            selection = None
        cos_labels = options.directions is not None and options.label_readout == "2d-cos"
        # every ray's Jacobian, computed once for whichever of these outputs asks for it
        jac = None
        if options.jacobians or selection is not None or cos_labels:
            jac = per_channel_jacobian(weights, preact, hidden, background_last_sample=last_sample)
        if options.directions is not None:
            directions = check_vector(options.directions, (options.directions.shape[0], 3, k), "label directions")
            if jac is not None and cos_labels:
                response = cosine_response(jac, directions.to(jac))
                outputs["response_cos"] = response
            else:
                response = sample_response_3d(hidden, weights, directions.to(weights))
                outputs["response_3d"] = response
            if options.label_colors is not None:
                outputs["labels"] = options.label_colors.to(response)[response.argmax(dim=-1)]
        if options.weight_delta is not None:
            delta = check_vector(options.weight_delta, (3, k), "weight delta")
            outputs["rgb_perturbed"] = self.renderer_rgb(rgb=perturbed_colors(preact, hidden, delta), weights=weights)
        if jac is not None and (options.jacobians or selection is not None):
            outputs["jacobian"] = jac
            if selection is not None:
                direction = check_vector(selection.vector, (3, k), "the clicked direction")
                score = resonance_score(jac, direction, selection.mode, selection.reference)
                outputs["selection_score"] = score[..., None]
        elif self.shaping_active:
            # training: only the batch's leading shaping rays enter the loss, so only their Jacobians are computed
            m = int(self.kwargs.get("metadata", {}).get("shaping_rays_per_batch", weights.shape[0]))
            m = min(m, weights.shape[0]) if m > 0 else weights.shape[0]
            subset = per_channel_jacobian(weights[:m], preact[:m], hidden[:m], last_sample) if jac is None else jac[:m]
            outputs["jacobian"] = subset

    def edit_outputs(self, ray_bundle, ray_samples, field_outputs, outputs, edit: Edit) -> None:
        """The paper's recolour edit ``W += diag(color) · G · strength`` on θᴰ, in this render only."""
        if edit.target != "jacobian" or edit.kind != "recolor":
            return super().edit_outputs(ray_bundle, ray_samples, field_outputs, outputs, edit)
        direction = check_vector(edit.vector, (3, self.field.color_dim), "the edit's direction")
        delta = recolor_delta(direction.to(outputs["rgb"]), edit.color, edit.strength)
        weights = ray_samples.get_weights(field_outputs[DENSITY])
        rgb = perturbed_colors(field_outputs[RGB_PREACT], field_outputs[COLOR_HIDDEN], delta)
        outputs["rgb_edited"] = self.renderer_rgb(rgb=rgb, weights=weights)

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor], loss_dict: dict[str, Tensor]) -> None:
        if "jacobian" not in outputs or "positives" not in batch:
            return
        positives = batch["positives"].to(self.device)
        jac = mean_rgb_jacobian(outputs["jacobian"][: positives.shape[0]])
        cfg = self.config
        if cfg.nce_loss_weight > 0:
            loss_dict["jacobian_nce_loss"] = cfg.nce_loss_weight * info_nce_loss(jac, positives, cfg.nce_temperature)
        if cfg.norm_loss_weight > 0:
            loss_dict["jacobian_norm_loss"] = cfg.norm_loss_weight * norm_loss(jac)

    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = super().get_metrics_dict(outputs, batch)
        log_step = self.step % max(1, self.config.shaping_stats_every) == 0
        if "jacobian" in outputs and "positives" in batch and (log_step or not self.training):
            positives = batch["positives"].to(self.device)
            jac = mean_rgb_jacobian(outputs["jacobian"][: positives.shape[0]].detach())
            stats = shaping_stats(jac, positives)
            metrics.update({k: torch.tensor(v) for k, v in stats.as_dict().items()})
            metrics["shaping/tau_pos"] = batch["tau_pos"]
            metrics["shaping/jacobian_norm"] = jac.norm(dim=-1).mean()
        return metrics
