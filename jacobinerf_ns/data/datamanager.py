"""DataManager for semantic radiance fields: whole scenes held in memory, rays sampled without worker processes.

It is a :class:`~nerfstudio.data.datamanagers.base_datamanager.VanillaDataManager` (so ``ns-eval``, ``ns-render``
and ``ns-viewer`` find the attributes they expect) that reads any nerfstudio dataparser (``replica-semantic`` by
default, ``scannet-semantic``, ``nerfstudio-data``, ``blender-data``, ...), loads every image of a split once and
samples rays with a seeded torch generator, which on CPU is much faster than nerfstudio's cache dataloader.

Memory: colour is stored as uint8, labels as int16/int32 and depth as float16 on ``storage_device`` (the CPU by
default, as nerfstudio keeps its images); each batch is gathered there and only the batch moves to the training
device, as float32 / int64. A 300-frame full-HD capture needs ~1.9 GB for its colour (``benchmarks/memory.py``).

Each train batch holds ``image``, ``indices`` and, when the scene has them, ``semantics`` (training labels, -1 where
unlabelled), ``semantics_gt`` (all labels), ``instance`` and ``depth``. Pixels outside a dataparser's masks (nerfstudio
``mask_filenames``) are never sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

import numpy as np
import torch
from jaxtyping import Bool, Float, Int, UInt8
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.configs.dataparser_configs import AnnotatedDataParserUnion
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.model_components.ray_generators import RayGenerator
from nerfstudio.utils.rich_utils import CONSOLE
from rich.progress import track
from torch import Tensor

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.data.ray_sampling import PixelPool, sample_uniform, select_labelled_pixels, unflatten_pixels
from jacobinerf_ns.data.replica_dataparser import ReplicaSemanticDataParserConfig
from jacobinerf_ns.data.replica_dataset import ReplicaSemanticDataset
from jacobinerf_ns.errors import DataError


@dataclass
class SceneTensors:
    """All images of one split, stacked compactly (see the module docstring)."""

    images: UInt8[Tensor, "n h w 3"]
    semantics: Int[Tensor, "n h w"] | None = None
    """int16 class ids, -1 = void."""
    instance: Int[Tensor, "n h w"] | None = None
    """int32 instance ids, 0 = void."""
    depth: Float[Tensor, "n h w"] | None = None
    """float16 z-depth in scene units."""
    mask: Bool[Tensor, "n h w"] | None = None
    """Pixels that may be sampled (None: all)."""

    @property
    def shape(self) -> tuple[int, int, int]:
        n, h, w, _ = self.images.shape
        return n, h, w

    def to(self, device: Union[torch.device, str]) -> SceneTensors:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return SceneTensors(*(move(getattr(self, k)) for k in ("images", "semantics", "instance", "depth", "mask")))

    def gather(self, indices: Int[Tensor, "r 3"]) -> dict[str, Tensor]:
        """Per-ray values at (image, y, x): colour as float32 in [0, 1], labels as int64, depth as float32."""
        c, y, x = indices.unbind(-1)
        out = {"image": self.images[c, y, x].float() / 255.0}
        if self.semantics is not None:
            out["semantics_gt"] = self.semantics[c, y, x].long()
        if self.instance is not None:
            out["instance"] = self.instance[c, y, x].long()
        if self.depth is not None:
            out["depth"] = self.depth[c, y, x, None].float()
        return out

    def image_float(self, i: int) -> Float[Tensor, "h w 3"]:
        return self.images[i].float() / 255.0


def _allocate(n: int, hw: tuple[int, int], first: dict, with_mask: bool) -> SceneTensors:
    """Empty compact tensors for ``n`` images shaped like the first one (and its label / depth keys)."""
    h, w = hw

    def empty(key: str, dtype: torch.dtype) -> Tensor | None:
        return torch.empty(n, h, w, dtype=dtype) if key in first else None

    return SceneTensors(
        images=torch.empty(n, h, w, 3, dtype=torch.uint8),
        semantics=empty("semantics", torch.int16),
        instance=empty("instance", torch.int32),
        depth=empty("depth", torch.float16),
        mask=torch.empty(n, h, w, dtype=torch.bool) if with_mask else None,
    )


def load_scene_tensors(dataset: ReplicaSemanticDataset, description: str) -> SceneTensors:
    """Read every image of ``dataset`` (with a progress bar) into compact preallocated tensors; sizes must agree."""
    n = len(dataset)
    if n == 0:
        raise DataError("the split has no images")
    scene: SceneTensors | None = None
    for i in track(range(n), description=description, transient=True):
        image = dataset.get_numpy_image(i)
        extra = dataset.get_metadata({"image_idx": i})
        mask = None
        if dataset._dataparser_outputs.mask_filenames is not None:
            from nerfstudio.data.utils.data_utils import get_image_mask_tensor_from_path

            path = dataset._dataparser_outputs.mask_filenames[i]
            mask = get_image_mask_tensor_from_path(filepath=path, scale_factor=dataset.scale_factor)[..., 0]
        if scene is None:
            scene = _allocate(n, image.shape[:2], extra, with_mask=mask is not None)
        if image.shape[:2] != scene.images.shape[1:3]:
            raise DataError(
                f"image size mismatch: {dataset.image_filenames[i]} is {image.shape[1]}x{image.shape[0]}, the "
                f"split's first image is {scene.images.shape[2]}x{scene.images.shape[1]}"
            )
        scene.images[i] = torch.from_numpy(np.ascontiguousarray(image[..., :3]))
        for key in ("semantics", "instance", "depth"):
            target = getattr(scene, key)
            if target is not None:
                target[i] = extra[key][..., 0].to(target.dtype)
        if scene.mask is not None and mask is not None:
            scene.mask[i] = mask.bool()
    assert scene is not None
    return scene


def describe_data(dataparser_config, path: Path) -> str:
    """``<path> (<dataparser subcommand>)`` for messages about the data a run reads."""
    from nerfstudio.configs.dataparser_configs import all_dataparsers

    names = [name for name, cfg in all_dataparsers.items() if type(cfg) is type(dataparser_config)]
    return f"{path} ({names[0] if names else type(dataparser_config).__name__})"


@dataclass
class SemanticDataManagerConfig(VanillaDataManagerConfig):
    """Replica-layout scenes held in memory; uniform ray sampling plus optional sparse-label control."""

    _target: type = field(default_factory=lambda: SemanticDataManager)
    dataparser: AnnotatedDataParserUnion = field(default_factory=ReplicaSemanticDataParserConfig)
    """The scene reader: ``replica-semantic`` (default; also jn-synth scenes), ``scannet-semantic``, or any
    nerfstudio dataparser (``nerfstudio-data`` for ns-process-data captures, ``blender-data``, ...)."""
    train_num_rays_per_batch: int = 4096
    """Rays per training batch."""
    eval_num_rays_per_batch: int = 4096
    """Rays per evaluation batch."""
    label_fraction: float = 1.0
    """Fraction of the valid training labels a model may use (Semantic-NeRF's sparse-label setting)."""
    label_count: int | None = None
    """If set: exactly this many labelled pixels over the whole training set (overrides ``label_fraction``)."""
    label_seed: int = 0
    """Seed of the labelled-pixel choice."""
    labelled_rays_per_batch: int = 0
    """Extra rays per batch drawn from the labelled pixels only (so very sparse labels are seen every step)."""
    annotations: Path | None = None
    """Train the semantic head on these propagation annotations only (``jn-propagate``'s JSON: clicks or a dense
    view, semantic classes or instances); the label space becomes the annotation's labels, for training and eval."""
    sampling_seed: int = 0
    """Seed of the ray sampler."""
    images_on_gpu: bool = False
    """Keep the stacked scene tensors on the training device (fast for small scenes on a GPU with room); False keeps
    them on the CPU, as nerfstudio does, and moves only each batch."""


class SemanticDataManager(VanillaDataManager[ReplicaSemanticDataset]):
    """See the module docstring."""

    config: SemanticDataManagerConfig
    train_scene: SceneTensors
    eval_scene: SceneTensors

    def __init__(
        self,
        config: SemanticDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        self._generator = torch.Generator().manual_seed(config.sampling_seed)
        super().__init__(config, device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank)

    def _data_path(self) -> Path:
        return Path(self.config.data if self.config.data is not None else self.config.dataparser.data)

    @property
    def storage_device(self) -> Union[torch.device, str]:
        """Where the stacked scene tensors live."""
        return self.device if self.config.images_on_gpu else "cpu"

    # ------------------------------------------------------------------------------------------------- setup
    def setup_train(self):
        self.train_scene = load_scene_tensors(self.train_dataset, "Loading training images").to(self.storage_device)
        try:
            self.train_pool = PixelPool(*self.train_scene.shape, mask=self.train_scene.mask)
        except ValueError as exc:
            raise DataError(f"training split of {self._data_path()}: {exc}") from None
        self.train_label_mask = None
        self.train_labelled_flat = None
        if self.config.annotations is not None:
            self._apply_annotations()
        elif self.train_scene.semantics is not None:
            mask = select_labelled_pixels(
                self.train_scene.semantics, self.config.label_fraction, self.config.label_count, self.config.label_seed
            )
            self.train_label_mask = mask.to(self.storage_device)
            self.train_labelled_flat = torch.nonzero(mask.flatten()).squeeze(1)
            n_valid = int((self.train_scene.semantics != IGNORE_LABEL).sum())
            if self.config.label_fraction < 1.0 or self.config.label_count is not None:
                CONSOLE.print(f"Semantic labels: keeping {len(self.train_labelled_flat)} of {n_valid} labelled pixels")
        self.train_ray_generator = RayGenerator(self.train_dataset.cameras.to(self.device))

    # ------------------------------------------------------------------------------------ annotation mode
    def _annotation(self):
        """The propagation annotation this datamanager trains on (read once), or None."""
        if self.config.annotations is None:
            return None
        if getattr(self, "_annotation_cache", None) is None:
            from jacobinerf_ns.annotations import load_annotation

            cams = self.train_dataparser_outputs.cameras
            hw = (int(cams.height[0]), int(cams.width[0]))
            self._annotation_cache = load_annotation(Path(self.config.annotations), hw)
        return self._annotation_cache

    def _annotated(self, dataset: ReplicaSemanticDataset) -> ReplicaSemanticDataset:
        """Switch a dataset's ``semantics`` to the annotation's label space (in every mode, inference included, so
        the model is built with the annotation's number of labels)."""
        ann = self._annotation()
        if ann is not None:
            from nerfstudio.data.dataparsers.base_dataparser import Semantics

            from jacobinerf_ns.data.class_table import palette

            dataset.label_override = (ann.target, ann.to_index)
            colors = torch.from_numpy(palette(ann.num_labels)).float() / 255.0
            dataset.metadata["semantics"] = Semantics(filenames=[], classes=list(ann.label_names), colors=colors)
        return dataset

    def create_train_dataset(self) -> ReplicaSemanticDataset:
        dataset = self._annotated(super().create_train_dataset())
        dataset.metadata["data_description"] = describe_data(self.config.dataparser, self._data_path())
        return dataset

    def create_eval_dataset(self) -> ReplicaSemanticDataset:
        return self._annotated(super().create_eval_dataset())

    def _apply_annotations(self) -> None:
        """Supervise only the annotated pixels, with the annotation's labels (not the ground truth)."""
        ann = self._annotation()
        n, h, w = self.train_scene.shape
        if not 0 <= ann.view < n:
            raise DataError(f"{self.config.annotations}: labelled view {ann.view} is not a training view (0..{n - 1})")
        labels = self.train_scene.semantics.cpu().clone()  # already in the annotation's label space
        mask = torch.zeros(n, h, w, dtype=torch.bool)
        ys, xs = ann.pixels.unbind(-1)
        mask[ann.view, ys, xs] = True
        labels[ann.view, ys, xs] = ann.labels.to(labels.dtype)
        self.train_scene.semantics = labels.to(self.storage_device)
        self.train_label_mask = mask.to(self.storage_device)
        self.train_labelled_flat = torch.nonzero(mask.flatten()).squeeze(1)
        CONSOLE.print(
            f"Annotations {self.config.annotations}: {len(ann.pixels)} labelled pixels, {ann.num_labels} "
            f"{ann.target} labels"
        )

    def setup_eval(self):
        self.eval_scene = load_scene_tensors(self.eval_dataset, "Loading evaluation images").to(self.storage_device)
        self.eval_ray_generator = RayGenerator(self.eval_dataset.cameras.to(self.device))
        from nerfstudio.data.utils.dataloaders import FixedIndicesEvalDataloader, RandIndicesEvalDataloader

        self.fixed_indices_eval_dataloader = FixedIndicesEvalDataloader(
            input_dataset=self.eval_dataset, device=self.device
        )
        self.eval_dataloader = RandIndicesEvalDataloader(input_dataset=self.eval_dataset, device=self.device)

    # ----------------------------------------------------------------------------------------------- batches
    def sample_train_indices(self, step: int) -> Int[Tensor, "r 3"]:
        """(image, y, x) of the next training batch. Subclasses change the sampling here."""
        n, h, w = self.train_scene.shape
        indices = self.train_pool.sample(self.config.train_num_rays_per_batch, self._generator)
        extra = self.config.labelled_rays_per_batch
        if extra > 0 and self.train_labelled_flat is not None and len(self.train_labelled_flat) > 0:
            pick = torch.randint(0, len(self.train_labelled_flat), (extra,), generator=self._generator)
            indices = torch.cat([indices, unflatten_pixels(self.train_labelled_flat[pick], h, w)])
        return indices

    def make_batch(self, scene: SceneTensors, indices: Int[Tensor, "r 3"], label_mask=None) -> dict[str, Tensor]:
        """Per-ray targets; ``semantics`` hides the labels outside ``label_mask`` (sparse supervision)."""
        indices = indices.to(self.storage_device)
        batch = scene.gather(indices)
        if "semantics_gt" in batch:
            labels = batch["semantics_gt"]
            if label_mask is not None:
                c, y, x = indices.unbind(-1)
                labels = torch.where(label_mask[c, y, x], labels, torch.full_like(labels, IGNORE_LABEL))
            batch["semantics"] = labels
        batch["indices"] = indices
        return {k: v.to(self.device) for k, v in batch.items()}

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        self.train_count += 1
        indices = self.sample_train_indices(step)
        batch = self.make_batch(self.train_scene, indices, self.train_label_mask)
        ray_bundle = self.train_ray_generator(indices.to(self.device))
        return ray_bundle, batch

    def next_eval(self, step: int) -> tuple[RayBundle, dict]:
        self.eval_count += 1
        n, h, w = self.eval_scene.shape
        indices = sample_uniform(self.config.eval_num_rays_per_batch, n, h, w, self._generator)
        batch = self.make_batch(self.eval_scene, indices)
        ray_bundle = self.eval_ray_generator(indices.to(self.device))
        return ray_bundle, batch
