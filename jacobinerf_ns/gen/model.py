"""``jacobinerf-gen``: GSNeRF-style generalizable semantic rendering as a nerfstudio model.

For a target view it picks K source views from the scene's source bank (:mod:`jacobinerf_ns.gen.views`), encodes
them (:mod:`~jacobinerf_ns.gen.encoder`), estimates every source view's depth with the cascade cost volume
(:mod:`~jacobinerf_ns.gen.mvs`), reprojects those depths into the target (:mod:`~jacobinerf_ns.gen.reprojection`),
samples each ray uniformly and around that depth (:mod:`~jacobinerf_ns.gen.sampler`) and renders density and colour
by attention over the views, and semantics at the depth point (:mod:`~jacobinerf_ns.gen.renderer`).

Rays come either from the datamanager (training / eval batches: their metadata names the scene, the target camera
and pixels) or as whole cameras (:meth:`GenModel.get_outputs_for_camera`: ``ns-eval``, ``ns-render``, the viewer;
a camera without scene metadata, like the viewer's, renders the datamanager's first unseen scene).

Outputs: ``rgb``, ``depth`` (rendered), ``target_depth`` (the reprojected estimate that guides the samples),
``accumulation``, ``semantics`` (logits of the configured read-out: ``attention`` = GSNeRF, ``2d-source`` = the
nearest source view's 2D logits warped by the estimated depth, the baseline), ``semantics_gen``, ``semantics_2d``,
and at eval ``semantic_labels`` / ``semantics_colormap``.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colormaps
from torch import Tensor
from torch.nn import Parameter
from torchmetrics.functional import structural_similarity_index_measure

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.errors import ConfigError, DataError
from jacobinerf_ns.gen.bank import SourceBank
from jacobinerf_ns.gen.datamanager import pack_camera, unpack_camera
from jacobinerf_ns.gen.encoder import Encoder, EncoderConfig
from jacobinerf_ns.gen.geometry import camera_rays, invert_pose, pixel_centres
from jacobinerf_ns.gen.losses import cascade_depth_loss, photometric_depth_loss, weighted_ce
from jacobinerf_ns.gen.mvs import CascadeMVS, MVSOutputs, nearest_neighbours
from jacobinerf_ns.gen.renderer import Renderer, SourceContext, composite
from jacobinerf_ns.gen.reprojection import reproject_depth
from jacobinerf_ns.gen.sampler import guided_samples, sample_deltas
from jacobinerf_ns.gen.views import camera_distances, select_eval_sources, select_train_sources
from jacobinerf_ns.metrics import confusion_matrix, lpips_if_available, psnr, segmentation_scores


@dataclass
class GenModelConfig(ModelConfig):
    """GSNeRF-style generalizable semantic model (defaults: the GPU-sized preset; ``-tiny`` shrinks it)."""

    _target: type = field(default_factory=lambda: GenModel)
    enable_collider: bool = False
    """No collider: samples span [near, far] along each ray."""
    num_source_views: int = 8
    """K, the source views read per target view (GSNeRF: 8)."""
    train_view_pool: int = 12
    """Training draws the K views from this many nearest bank views (GSNeRF: 8-16)."""
    include_target_prob: float = 0.05
    """Probability that a training target is among its own source views."""
    near: float = 0.5
    """Nearest depth (metres) of the cost volume and the samples."""
    far: float = 8.0
    """Farthest depth (metres)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """The 2D encoder."""
    cascade_planes: tuple[int, ...] = (48, 32, 8)
    """Depth planes per cascade level (H/4, H/2, H; GSNeRF 48 / 32 / 8)."""
    cascade_interval_ratios: tuple[float, ...] = (1.0, 0.25, 0.125)
    """Plane spacing of each level in units of the coarse level's inverse-depth spacing (level 0 ignores it)."""
    cascade_groups: tuple[int, ...] = (8, 8, 4)
    """Correlation groups per level (GSNeRF: 8)."""
    cost_neighbours: int = 3
    """Each source view's cost volume matches its this-many nearest other source views (GSNeRF: 3)."""
    regularizer_width: int = 8
    """Base width of the 3D U-Net regularisers."""
    volume_channels: int = 8
    """Channels of the level-0 feature volume the renderer samples."""
    attention_dim: int = 32
    """Token width (GSNeRF: 32)."""
    attention_heads: int = 4
    """Attention heads."""
    attention_layers: int = 4
    """View-attention layers for density and colour (GSNeRF: 4)."""
    semantic_layers: int = 4
    """View-attention layers for semantics (GSNeRF: 4)."""
    semantic_radius: int = 1
    """Semantic tokens read the (2r+1)^2 neighbourhood of source logits (GSNeRF: 3x3)."""
    occlusion_tolerance: float = 0.1
    """A point more than this fraction behind a source view's estimated surface is hidden from that view."""
    num_uniform_samples: int = 96
    """Uniform samples per ray when training (GSNeRF: 96)."""
    num_guided_samples: int = 32
    """Samples around the target depth when training (GSNeRF: 32)."""
    eval_num_uniform_samples: int | None = None
    """Uniform samples when rendering cameras (None: as training)."""
    eval_num_guided_samples: int | None = None
    """Guided samples when rendering cameras (None: as training)."""
    guided_sigma: float = 0.5
    """Standard deviation (metres) of the guided samples (GSNeRF: 0.5)."""
    reprojection_window: int = 3
    """Densification window radius of the target-depth reprojection (GSNeRF: 3)."""
    reprojection_tolerance: float = 0.1
    """Relative depth band kept around the nearest point of each window (our windowed z-test)."""
    target_depth_from: Literal["estimated", "gt"] = "estimated"
    """Reproject the cost-volume depths (GSNeRF) or the banks' ground-truth depths (an oracle ablation)."""
    semantic_readout: Literal["attention", "2d-source"] = "attention"
    """What ``semantics`` (and so ns-eval's mIoU) is: GSNeRF's attention read-out or the 2D-source baseline."""
    rgb_loss_weight: float = 1.0
    """Weight of the colour MSE."""
    semantic_loss_weight: float = 0.5
    """Weight of the cross-entropy on the rendered semantics (GSNeRF: 0.5)."""
    source_semantic_loss_weight: float = 0.5
    """Weight of the cross-entropy on the source views' 2D logits (GSNeRF: 0.5)."""
    downweighted_classes: tuple[str, ...] = ("wall", "floor")
    """Classes whose cross-entropy weight is ``downweight`` (GSNeRF on Replica: wall, floor at 0.8)."""
    downweight: float = 0.8
    """See ``downweighted_classes``."""
    depth_supervision: Literal["gt", "self", "none"] = "gt"
    """Depth losses from ground truth (needs depth/ in every training scene), self-supervised (photometric
    reprojection between source views), or none."""
    mvs_depth_loss_weight: float = 1.0
    """Weight of the cascade depth loss (GSNeRF: 1.0)."""
    render_depth_loss_weight: float = 0.1
    """Weight of the rendered-depth loss (GSNeRF: 0.1)."""
    self_supervised_weight: float = 0.1
    """Weight of the photometric depth loss with ``depth_supervision="self"``."""
    render_seed: int = 0
    """Seed of the source-view draws and sample jitter when training."""
    eval_num_rays_per_chunk: int = 4096
    """Rays per chunk when rendering whole cameras."""


class GenModel(Model):
    """See the module docstring."""

    config: GenModelConfig

    # ---------------------------------------------------------------------------------------------- setup
    @property
    def class_names(self) -> list[str]:
        semantics = self.kwargs.get("metadata", {}).get("semantics")
        return list(semantics.classes) if semantics is not None else []

    @property
    def class_colors(self) -> Tensor:
        semantics = self.kwargs.get("metadata", {}).get("semantics")
        return semantics.colors.float() if semantics is not None else torch.zeros(0, 3)

    def populate_modules(self):
        super().populate_modules()
        cfg = self.config
        names = self.class_names
        if not names:
            raise DataError("jacobinerf-gen needs scenes with semantic labels (dataparser metadata 'semantics')")
        n_levels = len(cfg.cascade_planes)
        if n_levels > len(cfg.encoder.fpn_channels):
            raise ConfigError(f"{n_levels} cascade levels but only {len(cfg.encoder.fpn_channels)} FPN levels")
        if cfg.num_source_views < 2:
            raise ConfigError(
                f"num_source_views must be >= 2 (a cost volume needs neighbours), got {cfg.num_source_views}"
            )
        self.encoder = Encoder(cfg.encoder, len(names))
        self.mvs = CascadeMVS(
            cfg.encoder.fpn_channels[:n_levels],
            cfg.cascade_planes,
            cfg.cascade_interval_ratios,
            cfg.cascade_groups,
            cfg.regularizer_width,
            cfg.volume_channels,
            cfg.near,
            cfg.far,
        )
        self.renderer = Renderer(
            cfg.encoder.fpn_channels[-1],
            cfg.volume_channels,
            len(names),
            dim=cfg.attention_dim,
            heads=cfg.attention_heads,
            layers=cfg.attention_layers,
            semantic_layers=cfg.semantic_layers,
            semantic_radius=cfg.semantic_radius,
            occlusion_tolerance=cfg.occlusion_tolerance,
        )
        weights = torch.tensor([cfg.downweight if n in cfg.downweighted_classes else 1.0 for n in names])
        self.register_buffer("class_weights", weights, persistent=False)
        code = zlib.crc32("\n".join(names).encode()) & 0x7FFFFFFF
        self.register_buffer("class_table_hash", torch.tensor([code, len(names)], dtype=torch.long))
        self._generator = torch.Generator().manual_seed(cfg.render_seed)
        self._bank_fn = None
        self._default_scene = 0
        self.lpips = lpips_if_available()

    def attach_banks(self, bank_fn, default_scene: int) -> None:
        """Give the model its data: ``bank_fn(scene) -> SourceBank`` and the scene viewer cameras render."""
        self._bank_fn = bank_fn
        self._default_scene = default_scene

    def check_class_table(self, theirs: Tensor) -> None:
        """A one-line error when a checkpoint's class table (its ``class_table_hash``) is not this run's."""
        if not torch.equal(theirs.cpu(), self.class_table_hash.cpu()):
            raise ConfigError(
                f"the checkpoint was trained with another class table ({int(theirs[1])} classes) than this run's "
                f"({int(self.class_table_hash[1])}: {', '.join(self.class_names)}); when fine-tuning, keep --data at "
                "the pretraining scenes and pass the new scene as --pipeline.datamanager.dataparser.finetune-scene"
            )

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        theirs = state_dict.get("class_table_hash")
        if theirs is not None:
            self.check_class_table(theirs)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def get_param_groups(self) -> dict[str, list[Parameter]]:
        return {"gen": [p for n, p in self.named_parameters() if n != "device_indicator_param"]}

    # ------------------------------------------------------------------------------------------ context
    def bank(self, scene: int) -> SourceBank:
        if self._bank_fn is None:
            raise ConfigError("jacobinerf-gen has no source banks: build it through its pipeline (GenPipeline)")
        bank = self._bank_fn(scene)
        if bank.num_views < self.config.num_source_views:
            raise DataError(
                f"source bank of {bank.name} has {bank.num_views} views, fewer than the {self.config.num_source_views} "
                "source views the model reads (lower --pipeline.model.num-source-views, or give the scene more "
                "training views)"
            )
        return bank

    def build_context(self, scene: int, packed: Tensor, index: int, stochastic: bool) -> tuple[SourceContext, dict]:
        """Encode the chosen source views of one target camera, estimate their depths and the target depth."""
        cfg = self.config
        bank = self.bank(scene)
        k_t, c2w_t, h, w = unpack_camera(packed.to(self.device))
        dist = camera_distances(c2w_t, bank.c2w).cpu()
        if stochastic:
            ids = select_train_sources(
                dist, cfg.num_source_views, cfg.train_view_pool, index, cfg.include_target_prob, self._generator,
                bank.name,
            )  # fmt: skip
        else:
            ids = select_eval_sources(dist, cfg.num_source_views, index, bank.name)
        ids = ids.to(self.device)
        images = bank.images[ids].permute(0, 3, 1, 2).contiguous()
        k, c2w = bank.k[ids], bank.c2w[ids]
        feats, logits = self.encoder(images)
        neighbours = nearest_neighbours(c2w, cfg.cost_neighbours)
        mvs: MVSOutputs = self.mvs(feats[: len(cfg.cascade_planes)], k, c2w, bank.image_hw, neighbours)
        if cfg.target_depth_from == "gt":
            if bank.depth is None:
                raise DataError(f"target_depth_from='gt' but {bank.name} has no depth/")
            src_depth = bank.depth[ids]
        else:
            src_depth = mvs.depth.detach()
        tgt_depth, tgt_valid = reproject_depth(
            src_depth, k, c2w, k_t, c2w_t, h, w, window=cfg.reprojection_window, tolerance=cfg.reprojection_tolerance,
            fill_value=cfg.far,
        )  # fmt: skip
        ctx = SourceContext(
            images=images, k=k, c2w=c2w, w2c=invert_pose(c2w), features=feats[-1], semantic_logits=logits,
            volume=mvs.volume, depth=mvs.depth.detach(), near=cfg.near, far=cfg.far,
        )  # fmt: skip
        aux = {
            "ids": ids, "bank": bank, "mvs": mvs, "neighbours": neighbours, "k_t": k_t, "c2w_t": c2w_t,
            "target_depth": tgt_depth, "target_valid": tgt_valid, "hw": (h, w),
        }  # fmt: skip
        return ctx, aux

    # ----------------------------------------------------------------------------------------- rendering
    def sample_counts(self, stochastic: bool) -> tuple[int, int]:
        cfg = self.config
        if stochastic:
            return cfg.num_uniform_samples, cfg.num_guided_samples
        nu = cfg.num_uniform_samples if cfg.eval_num_uniform_samples is None else cfg.eval_num_uniform_samples
        ng = cfg.num_guided_samples if cfg.eval_num_guided_samples is None else cfg.eval_num_guided_samples
        return nu, ng

    def render_pixels(self, ctx: SourceContext, aux: dict, uv: Tensor, stochastic: bool) -> dict[str, Tensor]:
        """Render pixels (continuous coordinates ``uv``) of the context's target camera."""
        cfg = self.config
        h, w = aux["hw"]
        origins, dirs = camera_rays(uv, aux["k_t"], aux["c2w_t"])
        norm = dirs.norm(dim=-1)
        unit = dirs / norm[:, None]
        px = uv[:, 0].floor().long().clamp(0, w - 1)
        py = uv[:, 1].floor().long().clamp(0, h - 1)
        z_star = aux["target_depth"][py, px]
        nu, ng = self.sample_counts(stochastic)
        gen = self._generator if stochastic else None
        z = guided_samples(z_star, cfg.near, cfg.far, nu, ng, cfg.guided_sigma, train=stochastic, generator=gen)
        points = origins[:, None] + z[..., None] * dirs[:, None]
        sigma, rgb = self.renderer.density_and_colour(ctx, points, unit)
        weights = composite(sigma, z, sample_deltas(z, cfg.far), norm)
        at_depth = origins + z_star[:, None] * dirs
        sem = self.renderer.semantics(ctx, at_depth, unit)
        sem2d = self.renderer.semantics_2d(ctx, at_depth)
        return {
            "rgb": (weights[..., None] * rgb).sum(dim=1),
            "depth": (weights * z).sum(dim=1, keepdim=True),
            "accumulation": weights.sum(dim=1, keepdim=True),
            "target_depth": z_star[:, None],
            "semantics_gen": sem,
            "semantics_2d": sem2d,
            "semantics": sem2d if cfg.semantic_readout == "2d-source" else sem,
        }

    def get_outputs(self, ray_bundle: RayBundle) -> dict:  # type: ignore[override]
        meta = ray_bundle.metadata or {}
        if "gen_camera" not in meta:
            raise ConfigError(
                "jacobinerf-gen renders ray batches from its own datamanager (their metadata names the scene and "
                "target camera) or whole cameras (get_outputs_for_camera)"
            )
        packed = meta["gen_camera"].reshape(-1, meta["gen_camera"].shape[-1])
        if not bool((packed == packed[0]).all()):
            raise ConfigError("a jacobinerf-gen ray batch must come from one target view")
        scene = int(meta["gen_scene"].reshape(-1)[0])
        index = int(meta["gen_index"].reshape(-1)[0])
        stochastic = self.training
        ctx, aux = self.build_context(scene, packed[0], index, stochastic)
        outputs = self.render_pixels(ctx, aux, meta["gen_uv"].reshape(-1, 2).to(self.device), stochastic)
        outputs["gen_aux"] = {**aux, "ctx": ctx}  # type: ignore[assignment]
        return outputs

    @torch.no_grad()
    def get_outputs_for_camera(self, camera: Cameras, obb_box=None) -> dict[str, Tensor]:  # type: ignore[override]
        """Render a whole camera: sources = the K nearest bank views (deterministic), all pixels in chunks."""
        camera = camera.to(self.device)
        packed = pack_camera(camera)[0]
        meta = camera.metadata or {}
        scene = int(meta["gen_scene"].reshape(-1)[0]) if "gen_scene" in meta else self._default_scene
        index = int(meta["gen_index"].reshape(-1)[0]) if "gen_index" in meta else -1
        ctx, aux = self.build_context(scene, packed, index, stochastic=False)
        h, w = aux["hw"]
        uv = pixel_centres(h, w, self.device).reshape(-1, 2)
        chunks: dict[str, list[Tensor]] = defaultdict(list)
        step = self.config.eval_num_rays_per_chunk
        for start in range(0, len(uv), step):
            for key, value in self.render_pixels(ctx, aux, uv[start : start + step], stochastic=False).items():
                chunks[key].append(value)
        outputs = {key: torch.cat(v).view(h, w, -1) for key, v in chunks.items()}
        labels = outputs["semantics"].argmax(dim=-1)
        outputs["semantic_labels"] = labels.float()[..., None]
        outputs["semantics_colormap"] = self.class_colors.to(labels.device)[labels]
        outputs["rgb"] = outputs["rgb"].clamp(0, 1)
        return outputs

    # -------------------------------------------------------------------------------------------- losses
    def get_metrics_dict(self, outputs, batch) -> dict[str, Tensor]:
        metrics = {"psnr": torch.tensor(psnr(outputs["rgb"].detach(), batch["image"].to(self.device)))}
        if "semantics" in batch:
            labels = batch["semantics"].reshape(-1).to(self.device)
            valid = labels != IGNORE_LABEL
            if bool(valid.any()):
                for key, name in (("semantics_gen", "semantic_accuracy"), ("semantics_2d", "semantic_accuracy_2d")):
                    pred = outputs[key].detach().argmax(dim=-1)
                    metrics[name] = (pred[valid] == labels[valid]).float().mean()
        if "depth" in batch:
            gt = batch["depth"].reshape(-1).to(self.device)
            ok = gt > 0
            if bool(ok.any()):
                est = outputs["target_depth"].detach().reshape(-1)
                metrics["target_depth_abs_rel"] = ((est[ok] - gt[ok]).abs() / gt[ok]).mean()
        aux = outputs.get("gen_aux")
        if aux is not None and aux["bank"].depth is not None:
            gt = aux["bank"].depth[aux["ids"]]
            ok = gt > 0
            metrics["source_depth_abs_rel"] = ((aux["mvs"].depth.detach()[ok] - gt[ok]).abs() / gt[ok]).mean()
        return metrics

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> dict[str, Tensor]:
        cfg = self.config
        losses = {"rgb_loss": cfg.rgb_loss_weight * F.mse_loss(outputs["rgb"], batch["image"].to(self.device))}
        weight = self.class_weights
        if "semantics" in batch:
            losses["semantic_loss"] = cfg.semantic_loss_weight * weighted_ce(
                outputs["semantics_gen"], batch["semantics"], weight
            )
        aux = outputs["gen_aux"]
        bank, ids, mvs = aux["bank"], aux["ids"], aux["mvs"]
        if bank.semantics is not None:
            logits = aux["ctx"].semantic_logits.permute(0, 2, 3, 1).reshape(-1, len(weight))
            losses["source_semantic_loss"] = cfg.source_semantic_loss_weight * weighted_ce(
                logits, bank.semantics[ids].reshape(-1), weight
            )
        if cfg.depth_supervision == "gt":
            if bank.depth is None:
                raise DataError(
                    f"depth supervision is on but {bank.name} has no depth/ "
                    "(use --pipeline.model.depth-supervision self, or none)"
                )
            losses["mvs_depth_loss"] = cfg.mvs_depth_loss_weight * cascade_depth_loss(mvs.depths, bank.depth[ids])
            if "depth" in batch:
                gt = batch["depth"].reshape(-1).to(self.device)
                ok = gt > 0
                if bool(ok.any()):
                    losses["render_depth_loss"] = cfg.render_depth_loss_weight * F.smooth_l1_loss(
                        outputs["depth"].reshape(-1)[ok], gt[ok]
                    )
        elif cfg.depth_supervision == "self":
            ctx = aux["ctx"]
            losses["photometric_depth_loss"] = cfg.self_supervised_weight * photometric_depth_loss(
                ctx.images, mvs.depth, ctx.k, ctx.c2w, aux["neighbours"]
            )
            losses["render_depth_loss"] = (
                0.5
                * cfg.render_depth_loss_weight
                * F.smooth_l1_loss(outputs["depth"], outputs["target_depth"].detach())
            )
        return losses

    # ------------------------------------------------------------------------------------------ evaluation
    def semantic_confusion(self, outputs: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor | None:
        """Confusion matrix of one rendered image against its labels (shared class table)."""
        if "semantics" not in batch:
            return None
        target = batch["semantics"].to(outputs["semantics"].device)[..., 0]
        pred = outputs["semantics"].argmax(dim=-1)
        return confusion_matrix(pred, target, len(self.class_names), ignore_label=IGNORE_LABEL)

    def get_image_metrics_and_images(
        self, outputs: dict[str, Tensor], batch: dict[str, Tensor]
    ) -> tuple[dict[str, float], dict[str, Tensor]]:
        gt = batch["image"].to(self.device)[..., :3]
        pred = outputs["rgb"]
        gt_chw, pred_chw = gt.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None].clamp(0, 1)
        metrics: dict[str, float] = {
            "psnr": psnr(pred, gt),
            "ssim": float(structural_similarity_index_measure(pred_chw, gt_chw, data_range=1.0)),
        }
        if self.lpips is not None:
            metrics["lpips"] = float(self.lpips(pred_chw, gt_chw))
        images = {
            "img": torch.cat([gt, pred], dim=1),
            "depth": colormaps.apply_depth_colormap(outputs["depth"]),
            "target_depth": colormaps.apply_depth_colormap(outputs["target_depth"]),
        }
        # always the same keys (the pipeline averages each key over all images): NaN without ground-truth depth
        metrics["target_depth_abs_rel"] = float("nan")
        if "depth" in batch:
            gt_d = batch["depth"].to(self.device)
            ok = gt_d > 0
            if bool(ok.any()):
                metrics["target_depth_abs_rel"] = float(
                    ((outputs["target_depth"][ok] - gt_d[ok]).abs() / gt_d[ok]).mean()
                )
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
