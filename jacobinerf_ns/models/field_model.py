"""The model every method here builds on: proposal sampling + :class:`SemanticRadianceField` + rendering + metrics.

Subclasses add their heads and losses through small hooks (:meth:`FieldModel.semantic_classes`,
:meth:`FieldModel.feature_dim`, :meth:`FieldModel.extra_outputs`, :meth:`FieldModel.extra_losses`) and stay thin.
Evaluation reports PSNR and SSIM, LPIPS only when its weights exist on disk (never a fake value), and for semantic
outputs the confusion matrix from which the pipeline computes dataset-level mIoU / accuracy / class accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from nerfstudio.cameras.rays import RayBundle, RaySamples
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.field_components.spatial_distortions import SceneContraction
from nerfstudio.model_components.losses import distortion_loss, interlevel_loss
from nerfstudio.model_components.ray_samplers import (
    ProposalNetworkSampler,
    UniformLinDispPiecewiseSampler,
    UniformSampler,
)
from nerfstudio.model_components.renderers import AccumulationRenderer, DepthRenderer, RGBRenderer, SemanticRenderer
from nerfstudio.model_components.scene_colliders import AABBBoxCollider, NearFarCollider
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor
from torch.nn import Parameter
from torchmetrics.functional import structural_similarity_index_measure

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.fields.backend import Implementation, resolve_implementation
from jacobinerf_ns.fields.semantic_field import (
    DENSITY,
    RGB,
    SEMANTICS,
    HashGridParams,
    ProposalDensityField,
    SemanticRadianceField,
)
from jacobinerf_ns.metrics import confusion_matrix, lpips_if_available, psnr, segmentation_scores
from jacobinerf_ns.render_options import (
    DEFAULT,
    Edit,
    RenderOptions,
    in_viewer_render_thread,
    load_edit,
    rendering,
    thread_options,
)
from jacobinerf_ns.selection import overlay


@dataclass
class FieldModelConfig(ModelConfig):
    """Shared field, sampler and renderer settings (defaults are GPU-sized; see configs.py for the CPU preset)."""

    _target: type = field(default_factory=lambda: FieldModel)
    grid: HashGridParams = field(default_factory=HashGridParams)
    """Hash grid of the main field."""
    geo_feat_dim: int = 15
    """Geometry features passed from the density MLP to the colour and semantic heads."""
    hidden_dim: int = 64
    """Width of the density MLP."""
    num_layers: int = 2
    """Layers of the density MLP."""
    hidden_dim_color: int = 64
    """Width of the colour MLP = K, the size of h (the input of θᴰ)."""
    num_layers_color: int = 3
    """Layers of the colour MLP including θᴰ."""
    use_view_dirs: bool = True
    """Feed view directions (spherical harmonics) to the colour MLP."""
    proposal_grids: tuple[HashGridParams, ...] = field(
        default_factory=lambda: (
            HashGridParams(num_levels=5, log2_hashmap_size=17, max_resolution=128),
            HashGridParams(num_levels=5, log2_hashmap_size=17, max_resolution=256),
        )
    )
    """Hash grids of the proposal density fields (one per proposal iteration)."""
    proposal_hidden_dim: int = 16
    """Width of the proposal density MLPs."""
    num_proposal_samples_per_ray: tuple[int, ...] = (256, 96)
    """Samples per ray for each proposal iteration."""
    num_nerf_samples_per_ray: int = 48
    """Samples per ray for the main field."""
    proposal_update_every: int = 5
    """Update the proposal sampler every n steps after the warm-up."""
    proposal_warmup: int = 5000
    """Steps over which the proposal update interval grows from 1 to ``proposal_update_every``."""
    proposal_weights_anneal_slope: float = 10.0
    """Slope of the proposal-weight annealing (mip-NeRF 360 eq. 18)."""
    proposal_weights_anneal_max_num_iters: int = 1000
    """Steps of proposal-weight annealing."""
    use_single_jitter: bool = True
    """One jitter per ray (not per sample) in the initial sampler."""
    near_plane: float = 0.02
    """Closest sample distance along a ray (scene units; the scene lies in [-1, 1]^3)."""
    scene_contraction: Literal["auto", "off", "on"] = "auto"
    """Contract unbounded space into [-2, 2]^3 as nerfacto does ("on"), or keep the scene box ("off"). "auto": off
    for the dataparsers that scale the whole scene into the box (replica-semantic, scannet-semantic), on for any
    other (nerfstudio-data captures, whose box only holds the cameras)."""
    far_plane: float = 1000.0
    """Farthest sample distance with scene contraction on (scene units)."""
    background_color: Literal["random", "last_sample", "black", "white"] = "last_sample"
    """Background of rays that leave the box (indoor scenes rarely have any)."""
    interlevel_loss_mult: float = 1.0
    """Proposal (interlevel) loss weight."""
    distortion_loss_mult: float = 0.002
    """Distortion loss weight."""
    average_init_density: float = 1.0
    """Initial mean density."""
    edit_file: Path | None = None
    """A saved edit (``jn-query --save-edit``, the viewer's "render edit") applied to every render outside training:
    adds ``rgb_edited`` (and ``accumulation_edited``, ``depth_edited``) for ``ns-render --rendered-output-names``."""
    implementation: Implementation = "auto"
    """tiny-cuda-nn for the hash grids and density MLPs when available ("auto"), or "torch"."""
    eval_num_rays_per_chunk: int = 4096
    """Rays per forward pass when rendering whole images."""


class FieldModel(Model):
    """See the module docstring."""

    config: FieldModelConfig

    # --------------------------------------------------------------------------------------------- hooks
    def semantic_classes(self) -> int:
        """Number of semantic logits the field outputs (0: no semantic head)."""
        return 0

    def feature_dim(self) -> int:
        """Dimension of the distilled feature head (0: none)."""
        return 0

    def extra_outputs(
        self, field_outputs: dict[str, Tensor], weights: Tensor, outputs: dict[str, Tensor], options: RenderOptions
    ) -> None:
        """Add model-specific per-ray outputs (called inside :meth:`get_outputs`); a selection's ``selection_score``
        (r, 1) in [0, 1] is computed here by the models that offer one."""

    def edit_outputs(
        self,
        ray_bundle: RayBundle,
        ray_samples: RaySamples,
        field_outputs: dict[str, Tensor],
        outputs: dict[str, Tensor],
        edit: Edit,
    ) -> None:
        """Add ``rgb_edited`` (and ``accumulation_edited`` / ``depth_edited``) for ``edit``: the models that support
        edits override this."""
        raise ConfigError(f"{type(self).__name__} has no {edit.target} edits (jacobinerf / jacobinerf-features runs)")

    # ------------------------------------------------------------------------------------- render options
    def render_options(self) -> RenderOptions:
        """The options of the current render (see :mod:`jacobinerf_ns.render_options`): this thread's, else the
        viewer panel's inside the viewer's render thread, else the run's saved edit; training always uses none."""
        if self.training:
            return DEFAULT
        local = thread_options(self)
        if local is not None:
            return local
        if self.viewer_options is not None and in_viewer_render_thread():
            return self.viewer_options
        return self.saved_edit_options

    def rendering(self, options: RenderOptions):
        """``with model.rendering(RenderOptions(...)):`` renders of this thread use those options."""
        return rendering(self, options)

    @property
    def saved_edit_options(self) -> RenderOptions:
        if self.config.edit_file is None:
            return DEFAULT
        if self.__dict__.get("_saved_edit") is None:
            self.__dict__["_saved_edit"] = RenderOptions(edit=load_edit(self.config.edit_file))
        return self.__dict__["_saved_edit"]

    def extra_losses(self, outputs: dict[str, Tensor], batch: dict[str, Tensor], loss_dict: dict[str, Tensor]) -> None:
        """Add model-specific losses (called inside :meth:`get_loss_dict`)."""

    # ------------------------------------------------------------------------------------------------ setup
    @property
    def class_names(self) -> list[str]:
        semantics = self.kwargs.get("metadata", {}).get("semantics")
        return list(semantics.classes) if semantics is not None else []

    @property
    def class_colors(self) -> Tensor:
        semantics = self.kwargs.get("metadata", {}).get("semantics")
        if semantics is None:
            return torch.zeros(0, 3)
        return semantics.colors.float()

    @property
    def contracted(self) -> bool:
        """Whether this run contracts unbounded space (see ``scene_contraction``)."""
        mode = self.config.scene_contraction
        if mode == "auto":
            return not self.kwargs.get("metadata", {}).get("scene_bounded", False)
        return mode == "on"

    @property
    def lpips(self):
        """LPIPS when its weights are on disk (kept outside the module tree: checkpoints must not depend on it)."""
        return self.__dict__.get("_lpips_metric")

    def resolved_implementation(self) -> str:
        """``implementation`` resolved for the device this model is built for: tcnn only on CUDA."""
        requested = self.config.implementation
        device = torch.device(self.kwargs.get("device", "cpu"))
        if requested == "auto" and device.type != "cuda":
            return "torch"
        return resolve_implementation(requested)

    def populate_modules(self):
        super().populate_modules()
        cfg = self.config
        aabb = self.scene_box.aabb
        implementation = self.resolved_implementation()
        distortion = SceneContraction(order=float("inf")) if self.contracted else None
        self.field = SemanticRadianceField(
            aabb,
            grid=cfg.grid,
            geo_feat_dim=cfg.geo_feat_dim,
            hidden_dim=cfg.hidden_dim,
            num_layers=cfg.num_layers,
            hidden_dim_color=cfg.hidden_dim_color,
            num_layers_color=cfg.num_layers_color,
            use_view_dirs=cfg.use_view_dirs,
            semantic_classes=self.semantic_classes(),
            feature_dim=self.feature_dim(),
            average_init_density=cfg.average_init_density,
            implementation=implementation,
            spatial_distortion=distortion,
        )
        num_prop = len(cfg.num_proposal_samples_per_ray)
        if len(cfg.proposal_grids) < 1:
            raise ValueError("proposal_grids needs at least one grid")
        self.proposal_networks = torch.nn.ModuleList(
            ProposalDensityField(
                aabb,
                cfg.proposal_grids[min(i, len(cfg.proposal_grids) - 1)],
                hidden_dim=cfg.proposal_hidden_dim,
                average_init_density=cfg.average_init_density,
                implementation=implementation,
                spatial_distortion=distortion,
            )
            for i in range(num_prop)
        )
        self.density_fns = [net.density_fn for net in self.proposal_networks]

        def update_schedule(step):
            return np.clip(
                np.interp(step, [0, cfg.proposal_warmup], [0, cfg.proposal_update_every]), 1, cfg.proposal_update_every
            )

        self.proposal_sampler = ProposalNetworkSampler(
            num_nerf_samples_per_ray=cfg.num_nerf_samples_per_ray,
            num_proposal_samples_per_ray=cfg.num_proposal_samples_per_ray,
            num_proposal_network_iterations=num_prop,
            single_jitter=cfg.use_single_jitter,
            update_sched=update_schedule,
            initial_sampler=(UniformLinDispPiecewiseSampler if self.contracted else UniformSampler)(
                single_jitter=cfg.use_single_jitter
            ),
        )
        if self.contracted:
            self.collider = NearFarCollider(near_plane=cfg.near_plane, far_plane=cfg.far_plane)
        else:
            self.collider = AABBBoxCollider(self.scene_box, near_plane=cfg.near_plane)
        self.renderer_rgb = RGBRenderer(background_color=cfg.background_color)
        self.renderer_accumulation = AccumulationRenderer()
        self.renderer_depth = DepthRenderer(method="expected")
        self.renderer_semantics = SemanticRenderer()
        self.__dict__["_lpips_metric"] = lpips_if_available()
        self.viewer_options: RenderOptions | None = None
        """Set by the viewer panel; read only by nerfstudio's viewer render thread."""
        from jacobinerf_ns.viewer import attach

        attach(self)

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        return {
            "proposal_networks": list(self.proposal_networks.parameters()),
            "fields": list(self.field.parameters()),
        }

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> list[TrainingCallback]:
        cfg = self.config

        def set_anneal(step: int) -> None:
            frac = np.clip(step / cfg.proposal_weights_anneal_max_num_iters, 0, 1)
            b = cfg.proposal_weights_anneal_slope
            self.proposal_sampler.set_anneal(b * frac / ((b - 1) * frac + 1))

        return [
            TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], set_anneal, update_every_num_iters=1),
            TrainingCallback(
                [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                self.proposal_sampler.step_cb,
                update_every_num_iters=1,
            ),
        ]

    # ------------------------------------------------------------------------------------------- rendering
    def get_outputs(self, ray_bundle: RayBundle) -> dict[str, Tensor]:  # type: ignore[override]
        ray_samples, weights_list, ray_samples_list = self.proposal_sampler(ray_bundle, density_fns=self.density_fns)
        field_outputs = self.field(ray_samples)
        weights = ray_samples.get_weights(field_outputs[DENSITY])
        weights_list.append(weights)
        ray_samples_list.append(ray_samples)
        outputs: dict[str, Tensor] = {
            "rgb": self.renderer_rgb(rgb=field_outputs[RGB], weights=weights),
            "accumulation": self.renderer_accumulation(weights=weights),
            "depth": self.renderer_depth(weights=weights, ray_samples=ray_samples),
        }
        if SEMANTICS in field_outputs:
            logits = self.renderer_semantics(field_outputs[SEMANTICS], weights=weights)
            outputs["semantics"] = logits
            if not self.training:
                labels = logits.argmax(dim=-1)
                outputs["semantic_labels"] = labels.float()[..., None]
                outputs["semantics_colormap"] = self.class_colors.to(labels.device)[labels]
        options = self.render_options()
        self.extra_outputs(field_outputs, weights, outputs, options)
        if options.selection is not None and "selection_score" in outputs:
            selected = outputs["selection_score"] >= options.selection.threshold
            outputs["selection"] = selected
            outputs["selection_overlay"] = overlay(outputs["rgb"], selected, options.selection.color)
        if options.edit is not None:
            self.edit_outputs(ray_bundle, ray_samples, field_outputs, outputs, options.edit)
        if self.training:
            outputs["weights_list"] = weights_list  # type: ignore[assignment]
            outputs["ray_samples_list"] = ray_samples_list  # type: ignore[assignment]
        return outputs

    # ---------------------------------------------------------------------------------------------- losses
    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = {"psnr": torch.tensor(psnr(outputs["rgb"].detach(), batch["image"]))}
        if self.training:
            metrics["distortion"] = distortion_loss(outputs["weights_list"], outputs["ray_samples_list"])
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        gt = batch["image"].to(self.device)
        pred, gt = self.renderer_rgb.blend_background_for_loss_computation(
            pred_image=outputs["rgb"], pred_accumulation=outputs["accumulation"], gt_image=gt
        )
        loss_dict = {"rgb_loss": torch.mean((pred - gt) ** 2)}
        if self.training:
            loss_dict["interlevel_loss"] = self.config.interlevel_loss_mult * interlevel_loss(
                outputs["weights_list"], outputs["ray_samples_list"]
            )
            assert metrics_dict is not None and "distortion" in metrics_dict
            loss_dict["distortion_loss"] = self.config.distortion_loss_mult * metrics_dict["distortion"]
        self.extra_losses(outputs, batch, loss_dict)
        return loss_dict

    # -------------------------------------------------------------------------------------------- evaluation
    def semantic_confusion(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor | None:
        """Confusion matrix of one rendered image against its labels (None without a semantic head or labels)."""
        if "semantics" not in outputs or "semantics" not in batch:
            return None
        target = batch["semantics"].to(outputs["semantics"].device)[..., 0]
        pred = outputs["semantics"].argmax(dim=-1)
        return confusion_matrix(pred, target, self.semantic_classes(), ignore_label=IGNORE_LABEL)

    def get_image_metrics_and_images(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        gt_rgb = self.renderer_rgb.blend_background(batch["image"].to(self.device))[..., :3]
        pred_rgb = outputs["rgb"]
        gt_chw, pred_chw = gt_rgb.permute(2, 0, 1)[None], pred_rgb.permute(2, 0, 1)[None].clamp(0, 1)
        metrics: dict[str, float] = {
            "psnr": psnr(pred_rgb, gt_rgb),
            "ssim": float(structural_similarity_index_measure(pred_chw, gt_chw, data_range=1.0)),
        }
        if self.lpips is not None:
            metrics["lpips"] = float(self.lpips.to(pred_chw.device)(pred_chw, gt_chw))
        images = {
            "img": torch.cat([gt_rgb, pred_rgb], dim=1),
            "depth": colormaps.apply_depth_colormap(outputs["depth"], accumulation=outputs["accumulation"]),
            "accumulation": colormaps.apply_colormap(outputs["accumulation"]),
        }
        conf = self.semantic_confusion(outputs, batch)
        if conf is not None:
            scores = segmentation_scores(conf)
            metrics.update({k: float(scores[k]) for k in ("miou", "accuracy", "class_accuracy")})
            target = batch["semantics"][..., 0].to(self.device)
            colors = self.class_colors.to(self.device)
            gt_map = torch.where(
                (target >= 0)[..., None], colors[target.clamp(min=0)], torch.zeros(3, device=self.device)
            )
            images["semantics"] = torch.cat([gt_map, outputs["semantics_colormap"]], dim=1)
        return metrics, images
