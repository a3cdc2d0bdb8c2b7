"""DataManager that adds 2D-teacher features and positive pairs to every training batch (JacobiNeRF, feature fields).

At start-up the teacher (DINO, or the synthetic one built from ground truth) runs once over the training images
(through the content-keyed cache) and keeps its patch grids; features are looked up per ray from the grid, never
stored per pixel. Each training batch is::

    [ shaping rays (M): drawn from a few neighbouring views | the rest: uniform over all views ]

* ``teacher_features`` (R, D): the teacher feature at each ray's pixel (all rays; feature fields use them all);
* ``positives`` (M, M) bool: teacher similarity above the adapted τ_pos (``threshold`` rule, the official schedule
  keeps 5–15 % of the pairs positive) or the k most similar rays (``knn``), diagonal excluded;
* ``tau_pos``, ``positive_fraction``: for logging.

τ_pos is state of the run: it is kept in a buffer of this module (``tau_pos_state``), so it is saved in every
checkpoint and restored by ``--load-dir`` (a resumed run continues with the adapted threshold, not ``tau_pos_init``).

The shaping rays come from ``shaping_views_per_batch`` views chosen as one random anchor plus its nearest cameras, so
the same objects appear in several views and positive pairs cross views (multi-view consistency is the point).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Union

import torch
import tyro
from jaxtyping import Float, Int
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from jacobinerf_ns.data.datamanager import SemanticDataManager, SemanticDataManagerConfig
from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.features.masks import (
    FelzenszwalbMaskConfig,
    GroundTruthMaskConfig,
    MaskSet,
    SamMaskConfig,
    SlicMaskConfig,
    compute_masks,
)
from jacobinerf_ns.shaping import adapt_threshold, positive_mask_knn, positive_mask_threshold
from jacobinerf_ns.teachers import (
    AppearanceTeacherConfig,
    AutoTeacherConfig,
    ClipTeacherConfig,
    DinoTeacherConfig,
    LSegTeacherConfig,
    SyntheticTeacherConfig,
    TeacherFeatures,
    TeacherInputs,
    compute_teacher_features,
    file_identity,
)

MaskChoice = Union[
    Annotated[FelzenszwalbMaskConfig, tyro.conf.subcommand(name="felzenszwalb")],
    Annotated[SlicMaskConfig, tyro.conf.subcommand(name="slic")],
    Annotated[SamMaskConfig, tyro.conf.subcommand(name="sam")],
    Annotated[GroundTruthMaskConfig, tyro.conf.subcommand(name="ground-truth")],
]

TeacherChoice = Union[
    Annotated[AutoTeacherConfig, tyro.conf.subcommand(name="auto")],
    Annotated[AppearanceTeacherConfig, tyro.conf.subcommand(name="appearance")],
    Annotated[DinoTeacherConfig, tyro.conf.subcommand(name="dino")],
    Annotated[ClipTeacherConfig, tyro.conf.subcommand(name="clip")],
    Annotated[LSegTeacherConfig, tyro.conf.subcommand(name="lseg")],
    Annotated[SyntheticTeacherConfig, tyro.conf.subcommand(name="synthetic")],
]


@dataclass
class TeacherDataManagerConfig(SemanticDataManagerConfig):
    """Rays with teacher features and positive/negative pairs."""

    _target: type = field(default_factory=lambda: TeacherDataManager)
    teacher: TeacherChoice = field(default_factory=AutoTeacherConfig)
    """The 2D teacher: ``auto`` (synthetic where the data has ground-truth semantics, else appearance),
    ``appearance`` (from pixels alone, no weights), ``dino`` / ``clip`` / ``lseg`` (networks: weights from a local
    checkpoint), or ``synthetic`` (computed from ground truth: controlled studies only)."""
    teacher_cache_dir: Path | None = None
    """Where teacher features are cached (default: ``<data>/.teacher_cache``)."""
    shaping_rays_per_batch: int = 1024
    """Rays at the start of each batch that carry the positive structure (0: none)."""
    shaping_views_per_batch: int = 4
    """Views the shaping rays are drawn from (an anchor and its nearest cameras)."""
    shaping_neighbour_pool: int = 8
    """The other views are drawn from the anchor's this-many nearest cameras."""
    positive_rule: Literal["threshold", "knn"] = "threshold"
    """``threshold``: similarity above an adapted τ_pos (official); ``knn``: the k most similar rays."""
    tau_pos_init: float = 0.8
    """Starting τ_pos (official 0.8)."""
    tau_pos_bounds: tuple[float, float] = (0.5, 0.9)
    """τ_pos stays within these bounds (official)."""
    tau_pos_step: float = 1e-3
    """τ_pos changes by this much per step (official)."""
    positive_fraction_target: tuple[float, float] = (0.05, 0.15)
    """τ_pos moves so that this fraction of the pairs is positive (official 5–15 %)."""
    knn_k: int = 16
    """k of the ``knn`` rule."""
    patches_per_batch: int = 0
    """P×P pixel patches added after the random rays of each batch (the feature-smoothing regularisers need them; a
    feature model with smoothing on sets 2 when this is 0). They add rays: the random rays stay as many as without
    (replacing half of them with patches cost 1.5 dB test PSNR in ``benchmarks/feature_smoothing.py``)."""
    patch_size: int = 16
    """P, the side of each patch."""
    patch_masks: bool = False
    """Attach 2D mask ids to the patches (set when the model's smoothing is ``masks``)."""
    masks: MaskChoice = field(default_factory=FelzenszwalbMaskConfig)
    """Where 2D masks come from: felzenszwalb / slic (scikit-image, no weights: the offline default), sam (a local
    segment-anything checkpoint), ground-truth (instances: controlled studies only). Cached like teacher features."""


class TeacherDataManager(SemanticDataManager):
    """See the module docstring."""

    config: TeacherDataManagerConfig
    teacher_features: TeacherFeatures

    def setup_train(self):
        super().setup_train()
        self.register_buffer("tau_pos_state", torch.tensor(float(self.config.tau_pos_init), dtype=torch.float64))
        self.teacher_features = self.compute_teacher_features_for(
            self.train_scene, self.train_dataset.image_filenames
        ).to(self.storage_device)
        meta = self.train_dataset.metadata
        meta["teacher_feature_dim"] = self.teacher_features.feature_dim
        meta["shaping_rays_per_batch"] = self.config.shaping_rays_per_batch
        meta["teacher_name"] = self.teacher_features.teacher_name
        meta["teacher_is_synthetic"] = self.teacher_features.is_synthetic
        flat = self.teacher_features.features.reshape(-1, self.teacher_features.feature_dim)
        pick = torch.randperm(len(flat), generator=torch.Generator().manual_seed(0))[:20000]
        meta["teacher_feature_sample"] = flat[pick.to(flat.device)].float().cpu()
        self._neighbours = self._camera_neighbours()
        self.train_masks: MaskSet | None = None
        if self.config.patch_masks:
            self.train_masks = self.compute_masks_for(self.train_scene, self.train_dataset.image_filenames)
            meta["mask_source"] = self.train_masks.source_name

    def compute_masks_for(self, scene, image_filenames: list[Path]) -> MaskSet:
        """The configured 2D masks of ``scene``'s images, through the on-disk cache (next to the teacher's)."""
        n = scene.shape[0]
        inputs = TeacherInputs(
            images=[scene.images[i].cpu() for i in range(n)],
            semantics=None if scene.semantics is None else [scene.semantics[i].cpu() for i in range(n)],
            instances=None if scene.instance is None else [scene.instance[i].cpu() for i in range(n)],
            identities=self._identities(image_filenames),
            image_size=(scene.shape[1], scene.shape[2]),
        )
        cache_dir = self.config.teacher_cache_dir or self._data_path() / ".teacher_cache"
        masks = compute_masks(self.config.masks, inputs, cache_dir=cache_dir)
        label = " (ground truth: controlled study)" if masks.is_ground_truth else ""
        CONSOLE.print(f"Masks {masks.source_name}{label}: {n} views")
        return masks

    def _identities(self, image_filenames: list[Path]) -> list[str] | None:
        """Per-image cache identities: the file bytes, unless images are resized in memory (then the pixels)."""
        if self.config.camera_res_scale_factor != 1.0:
            return None
        return [file_identity(p) for p in image_filenames]

    @property
    def teacher_config(self):
        """The configured teacher, with ``auto`` resolved for this data (synthetic only where labels exist)."""
        teacher = self.config.teacher
        if isinstance(teacher, AutoTeacherConfig):
            teacher = teacher.resolve(has_ground_truth=self.train_scene.semantics is not None)
        return teacher

    def eval_teacher_features(self) -> TeacherFeatures:
        """The teacher's features of the evaluation split (computed once), projected with the training split's PCA
        basis (one basis per dataset and teacher, so training keys and test features are comparable)."""
        if self.__dict__.get("_eval_teacher") is None:
            self.__dict__["_eval_teacher"] = self.compute_teacher_features_for(
                self.eval_scene, self.eval_dataset.image_filenames, pca=self.teacher_features.pca
            )
        return self.__dict__["_eval_teacher"]

    def compute_teacher_features_for(self, scene, image_filenames: list[Path], pca=None) -> TeacherFeatures:
        """The configured teacher's features of ``scene``'s images (any split), through the on-disk cache;
        ``pca``: the basis to project with (default: fitted on these images)."""
        n = scene.shape[0]
        cache_dir = self.config.teacher_cache_dir or self._data_path() / ".teacher_cache"
        identities = self._identities(image_filenames)
        inputs = TeacherInputs(
            images=[scene.images[i].cpu() for i in range(n)],  # uint8: the teacher divides by 255
            semantics=None if scene.semantics is None else [scene.semantics[i].cpu() for i in range(n)],
            instances=None if scene.instance is None else [scene.instance[i].cpu() for i in range(n)],
            identities=identities,
            image_size=(scene.shape[1], scene.shape[2]),
        )
        feats = compute_teacher_features(self.teacher_config, inputs, cache_dir=cache_dir, pca=pca)
        label = " (synthetic teacher computed from ground truth)" if feats.is_synthetic else ""
        CONSOLE.print(
            f"Teacher {feats.teacher_name}{label}: {n} views, grid {feats.grid_hw}, {feats.feature_dim}-dim features"
        )
        return feats

    @property
    def tau_pos(self) -> float:
        """The current positive threshold (adapted every step with the ``threshold`` rule)."""
        return float(self.tau_pos_state)

    @tau_pos.setter
    def tau_pos(self, value: float) -> None:
        self.tau_pos_state.fill_(float(value))

    def _camera_neighbours(self) -> Int[Tensor, "n k"]:
        """For each training view, the others ordered by camera distance plus viewing-direction difference."""
        c2w = self.train_dataset.cameras.camera_to_worlds.float()
        centres, forward = c2w[:, :3, 3], -c2w[:, :3, 2]
        dist = torch.cdist(centres, centres) + (1.0 - forward @ forward.T)
        dist.fill_diagonal_(float("inf"))
        k = max(0, min(self.config.shaping_neighbour_pool, len(c2w) - 1))
        return dist.topk(k, largest=False).indices if k > 0 else torch.zeros(len(c2w), 0, dtype=torch.long)

    # ------------------------------------------------------------------------------------------------ batches
    def shaping_views(self) -> Int[Tensor, " v"]:
        n = self.train_scene.shape[0]
        anchor = int(torch.randint(0, n, (1,), generator=self._generator))
        pool = self._neighbours[anchor]
        extra = min(self.config.shaping_views_per_batch - 1, len(pool))
        pick = pool[torch.randperm(len(pool), generator=self._generator)[:extra]]
        return torch.cat([torch.tensor([anchor]), pick])

    def sample_train_indices(self, step: int) -> Int[Tensor, "r 3"]:
        """[shaping rays | random rays | patches]: the shaping rays replace random rays, the patches are added after
        them, so the batch has ``train_num_rays_per_batch`` (+ labelled) + ``patches_per_batch · P²`` rays."""
        indices = super().sample_train_indices(step)
        m = self.config.shaping_rays_per_batch
        if m > 0:
            local = self.train_pool.sample(m, self._generator, views=self.shaping_views())
            indices = torch.cat([local, indices[m:]]) if len(indices) > m else local
        patches = self.sample_patches()
        if patches is not None:
            indices = torch.cat([indices, patches])
        return indices

    def sample_patches(self) -> Int[Tensor, "r 3"] | None:
        """``patches_per_batch`` random P×P patches (row-major pixels, patch after patch), or None."""
        count, size = self.config.patches_per_batch, self.config.patch_size
        if count <= 0:
            return None
        n, h, w = self.train_scene.shape
        if size > min(h, w):
            raise ConfigError(f"patch_size {size} is larger than the {w}x{h} images")
        view = torch.randint(0, n, (count,), generator=self._generator)
        y0 = torch.randint(0, h - size + 1, (count,), generator=self._generator)
        x0 = torch.randint(0, w - size + 1, (count,), generator=self._generator)
        dy, dx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        ys = (y0[:, None, None] + dy).reshape(-1)
        xs = (x0[:, None, None] + dx).reshape(-1)
        return torch.stack([view.repeat_interleave(size * size), ys, xs], dim=-1)

    def positives(self, features: Float[Tensor, "m d"]) -> Tensor:
        cfg = self.config
        if cfg.positive_rule == "knn":
            return positive_mask_knn(features, cfg.knn_k)
        mask = positive_mask_threshold(features, self.tau_pos)
        return mask

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        ray_bundle, batch = super().next_train(step)
        indices = batch["indices"].to(self.storage_device)
        feats = self.teacher_features.lookup(indices[:, 0], indices[:, 1], indices[:, 2])
        batch["teacher_features"] = feats.to(self.device)
        if self.config.patches_per_batch > 0:
            batch["patch_count"] = torch.tensor(self.config.patches_per_batch)
            batch["patch_size"] = torch.tensor(self.config.patch_size)
            if self.train_masks is not None:
                tail = indices[-self.config.patches_per_batch * self.config.patch_size**2 :].to(self.storage_device)
                batch["patch_masks"] = self.train_masks.lookup(tail[:, 0], tail[:, 1], tail[:, 2]).to(self.device)
        m = min(self.config.shaping_rays_per_batch, len(indices))
        if m > 1:
            f = feats[:m].float()
            mask = self.positives(f)
            n_pairs = m * (m - 1)
            frac = float(mask.sum()) / n_pairs
            batch["positives"] = mask.to(self.device)
            batch["positive_fraction"] = torch.tensor(frac)
            batch["tau_pos"] = torch.tensor(self.tau_pos)
            if self.config.positive_rule == "threshold":
                lo, hi = self.config.positive_fraction_target
                self.tau_pos = adapt_threshold(
                    self.tau_pos, frac, (lo, hi), self.config.tau_pos_step, self.config.tau_pos_bounds
                )
        return ray_bundle, batch
