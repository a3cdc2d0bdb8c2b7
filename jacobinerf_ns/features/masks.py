"""2D mask sources for mask-guided smoothing (DESIGN §5): one integer label map per image, cached on disk.

A *label map* is an ``(H, W)`` int32 tensor: ``-1`` = no mask, otherwise mask ids ``0 .. K-1`` (contiguous, per
image: the same id in two images means nothing). Every source ends with :func:`finalize_labels`, which drops masks
of fewer than ``min_area`` pixels (they become ``-1``) and renumbers the rest in the order of their raw ids.

Sources (one config class each, so tyro can offer them as subcommands):

* ``felzenszwalb`` (:class:`FelzenszwalbMaskConfig`) and ``slic`` (:class:`SlicMaskConfig`): scikit-image
  superpixels, no weights — the offline default. Deterministic.
* ``ground-truth`` (:class:`GroundTruthMaskConfig`): the dataset's instance (or class) ids — an oracle for controlled
  studies; its name always contains "ground-truth" and :attr:`MaskSet.is_ground_truth` is set, so results say so.
* ``sam`` (:class:`SamMaskConfig`): segment-anything's automatic mask generator (``pip install
  segment-anything==1.0``) from a local checkpoint (``model_type`` vit_b / vit_l / vit_h, ``checkpoint``: the official
  ``Sam`` state dict, e.g. ``sam_vit_h_4b8939.pth``; nothing is ever downloaded). Overlapping masks become one label
  map by :func:`merge_masks`: masks under ``min_area`` pixels dropped, the rest painted largest first so smaller ones
  overwrite larger ones.

Cache (:func:`compute_masks`): one file per dataset and source, ``<cache_dir>/masks-<source name>-<key[:16]>.pt``,
keyed by sha256 over, in order: a canonical JSON header (:data:`MASK_CACHE_FORMAT_VERSION`, the source name, the
config class and every field that changes the masks — a checkpoint path replaced by the sha256 of the file — the
number of images and their size), each image's identity (:meth:`TeacherInputs.identity_digest`: a given identity
such as :func:`~jacobinerf_ns.teachers.file_identity`, else the pixels), and for the ground-truth source each image's
ground truth. Written atomically. A stale (other key / source / shape), truncated or malformed file gives one
:class:`MaskCacheWarning` and is recomputed and overwritten.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Int
from nerfstudio.configs.base_config import InstantiateConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import Tensor

from jacobinerf_ns.errors import ConfigError, JacobiNeRFError
from jacobinerf_ns.teachers.base import GroundTruth, TeacherInputs, canonical_config_value
from jacobinerf_ns.teachers.cache import cache_path, content_key, save_atomic
from jacobinerf_ns.teachers.dino import file_sha256, first_line

MASK_CACHE_FORMAT_VERSION = 1
"""Bump when the cache file layout or the meaning of cached label maps changes (old files then never match)."""

SAM_REQUIREMENT = "segment-anything==1.0"
"""The pip requirement of the SAM source (PyPI's only release; it has no weights)."""


class MaskSourceError(JacobiNeRFError, ValueError):
    """Masks cannot be produced (missing ground truth, a missing package, an invalid label map ...)."""


class MaskWeightsError(MaskSourceError):
    """A mask model's weights cannot be found, read or matched to its architecture."""


class MaskCacheWarning(UserWarning):
    """A mask cache file was stale, unreadable or corrupt and is being recomputed."""


# ------------------------------------------------------------------------------------------- label-map kernels


def finalize_labels(raw: Int[Tensor, "H W"], min_area: int = 0) -> Int[Tensor, "H W"]:
    """Canonical label map from raw ids (any integers, negative = no mask): segments with fewer than ``min_area``
    pixels become ``-1``; the others are renumbered ``0 .. K-1`` in increasing order of their raw id. int32."""
    if raw.ndim != 2 or raw.is_floating_point() or raw.dtype == torch.bool:
        raise MaskSourceError(f"a raw label map must be an integer (H, W) tensor, got {raw.dtype} {tuple(raw.shape)}")
    ids = raw.to(torch.long)
    out = torch.full(ids.shape, -1, dtype=torch.int32, device=ids.device)
    valid = ids >= 0
    if not bool(valid.any()):
        return out
    _, inverse, counts = torch.unique(ids[valid], return_inverse=True, return_counts=True)
    keep = counts >= max(1, int(min_area))
    new_id = torch.cumsum(keep.to(torch.long), 0) - 1
    new_id[~keep] = -1
    out[valid] = new_id[inverse].to(torch.int32)
    return out


def finalize_labels_reference(raw: Tensor, min_area: int = 0) -> Tensor:
    """Plain-loop twin of :func:`finalize_labels`."""
    height, width = raw.shape
    values = [[int(raw[i, j]) for j in range(width)] for i in range(height)]
    counts: dict[int, int] = {}
    for row in values:
        for v in row:
            if v >= 0:
                counts[v] = counts.get(v, 0) + 1
    kept = sorted(v for v, c in counts.items() if c >= max(1, min_area))
    rename = {v: k for k, v in enumerate(kept)}
    return torch.tensor([[rename.get(v, -1) for v in row] for row in values], dtype=torch.int32)


def merge_masks(masks: Bool[Tensor, "k H W"], min_area: int = 0) -> Int[Tensor, "H W"]:
    """One label map from overlapping binary masks: masks of fewer than ``min_area`` pixels are dropped; the rest
    are painted in order of decreasing area (ties: in the given order), so a smaller mask overwrites a larger one;
    pixels no mask covers are ``-1``; then :func:`finalize_labels` (a mask left with fewer than ``min_area`` visible
    pixels is dropped too). Ids follow the painting order: the largest mask that survives is 0."""
    if masks.ndim != 3 or masks.dtype != torch.bool:
        raise MaskSourceError(f"merge_masks needs a boolean (k, H, W) tensor, got {masks.dtype} {tuple(masks.shape)}")
    labels = torch.full(masks.shape[1:], -1, dtype=torch.long, device=masks.device)
    if masks.shape[0] == 0:
        return labels.to(torch.int32)
    area = masks.sum(dim=(1, 2))
    order = torch.argsort(-area, stable=True)
    for rank, k in enumerate(order.tolist()):
        if int(area[k]) >= max(1, int(min_area)):
            labels[masks[k]] = rank
    return finalize_labels(labels, min_area)


def merge_masks_reference(masks: Tensor, min_area: int = 0) -> Tensor:
    """Plain-loop twin of :func:`merge_masks` (per pixel: the smallest kept mask covering it)."""
    k, height, width = masks.shape
    area = [int(masks[i].sum()) for i in range(k)]
    # painting order = sorted by decreasing area, stable; the last painted (latest rank) wins
    order = sorted(range(k), key=lambda i: (-area[i], i))
    rank = {i: r for r, i in enumerate(order)}
    raw = torch.full((height, width), -1, dtype=torch.long)
    for y in range(height):
        for x in range(width):
            covering = [i for i in range(k) if bool(masks[i, y, x]) and area[i] >= max(1, min_area)]
            if covering:
                raw[y, x] = max(rank[i] for i in covering)
    return finalize_labels_reference(raw, min_area)


# ---------------------------------------------------------------------------------------------------- configs


@dataclass
class MaskSourceConfig(InstantiateConfig):
    """Options shared by every mask source."""

    _target: type = field(default_factory=lambda: MaskSource)
    """Mask source class to instantiate."""
    name: str = "masks"
    """Label of the source in results and cache file names."""
    min_area: int = 0
    """Masks with fewer pixels than this become -1 (no mask); 0 keeps every mask."""
    show_progress: bool = True
    """Show a progress bar while computing masks."""

    non_feature_fields: ClassVar[tuple[str, ...]] = ("show_progress",)
    """Fields that do not change the masks (left out of the cache key)."""

    def feature_identity(self) -> dict[str, Any]:
        """Canonical description of everything in this config that changes the masks (for the cache key)."""
        skip = set(self.non_feature_fields) | {"_target"}
        return {
            f.name: canonical_config_value(getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in skip
        }

    def feature_identity_json(self) -> str:
        cls = type(self)
        ident = {"config_class": f"{cls.__module__}.{cls.__qualname__}", "fields": self.feature_identity()}
        return json.dumps(ident, sort_keys=True, separators=(",", ":"))

    def check(self) -> None:
        """Raise :class:`ConfigError` (or :class:`MaskWeightsError`) for values that cannot work."""
        if int(self.min_area) != self.min_area or self.min_area < 0:
            raise ConfigError(f"mask source '{self.name}': min_area must be an integer >= 0, got {self.min_area}")


class MaskSource:
    """Turns one image into a raw label map (see the module docstring); :meth:`label_map` finalises it."""

    requires_ground_truth: ClassVar[bool] = False
    """True when :meth:`segment` reads the ground truth (it then enters the cache key)."""
    is_ground_truth: ClassVar[bool] = False
    """True when the masks are the dataset's ground truth (an oracle): label results accordingly."""

    def __init__(self, config: MaskSourceConfig) -> None:
        config.check()
        self.config = config

    @property
    def name(self) -> str:
        """Label for results and cache files."""
        return self.config.name

    def prepare(self, inputs: TeacherInputs) -> None:  # noqa: B027 - optional hook, default does nothing
        """Dataset-level set-up before the first :meth:`segment` (e.g. loading a network)."""

    def segment(self, image: Tensor, index: int, gt: GroundTruth | None) -> Int[Tensor, "H W"]:
        """Raw mask ids of image ``index`` (``(H, W, 3)`` float in [0, 1]); negative = no mask."""
        raise NotImplementedError

    def label_map(self, image: Tensor, index: int, gt: GroundTruth | None) -> Int[Tensor, "H W"]:
        """The finalised int32 label map of image ``index`` (:func:`finalize_labels` with ``min_area``)."""
        return finalize_labels(torch.as_tensor(self.segment(image, index, gt)).cpu(), self.config.min_area)


def _as_numpy_image(image: Tensor) -> np.ndarray:
    return image.detach().to("cpu", torch.float64).clamp(0.0, 1.0).numpy()


@dataclass
class FelzenszwalbMaskConfig(MaskSourceConfig):
    """Felzenszwalb–Huttenlocher graph segmentation (scikit-image; no weights, deterministic)."""

    _target: type = field(default_factory=lambda: FelzenszwalbMaskSource)
    """Mask source class to instantiate."""
    name: str = "felzenszwalb"
    """Label of the source in results and cache file names."""
    scale: float = 100.0
    """Observation scale (colours in [0, 1]): larger gives larger segments."""
    sigma: float = 0.8
    """Width of the Gaussian pre-smoothing, in pixels."""
    min_size: int = 50
    """Segments smaller than this are merged into a neighbour (scikit-image's post-processing)."""

    def check(self) -> None:
        super().check()
        if not (self.scale > 0 and self.sigma >= 0 and self.min_size >= 0):
            raise ConfigError(
                f"felzenszwalb masks: need scale > 0, sigma >= 0, min_size >= 0 (got {self.scale}, {self.sigma}, "
                f"{self.min_size})"
            )


class FelzenszwalbMaskSource(MaskSource):
    """See :class:`FelzenszwalbMaskConfig`."""

    config: FelzenszwalbMaskConfig

    def segment(self, image: Tensor, index: int, gt: GroundTruth | None) -> Int[Tensor, "H W"]:
        from skimage.segmentation import felzenszwalb

        cfg = self.config
        out = felzenszwalb(
            _as_numpy_image(image), scale=cfg.scale, sigma=cfg.sigma, min_size=cfg.min_size, channel_axis=-1
        )
        return torch.from_numpy(np.ascontiguousarray(out).astype(np.int64))


@dataclass
class SlicMaskConfig(MaskSourceConfig):
    """SLIC superpixels (scikit-image, k-means in CIELAB + position; no weights, deterministic)."""

    _target: type = field(default_factory=lambda: SlicMaskSource)
    """Mask source class to instantiate."""
    name: str = "slic"
    """Label of the source in results and cache file names."""
    n_segments: int = 100
    """Approximate number of superpixels per image."""
    compactness: float = 10.0
    """Colour vs space trade-off: larger gives more square superpixels."""
    sigma: float = 1.0
    """Width of the Gaussian pre-smoothing, in pixels."""
    max_num_iter: int = 10
    """k-means iterations."""
    enforce_connectivity: bool = True
    """Make every superpixel one connected region."""

    def check(self) -> None:
        super().check()
        if not (self.n_segments >= 1 and self.compactness > 0 and self.sigma >= 0 and self.max_num_iter >= 1):
            raise ConfigError(
                "slic masks: need n_segments >= 1, compactness > 0, sigma >= 0, max_num_iter >= 1 "
                f"(got {self.n_segments}, {self.compactness}, {self.sigma}, {self.max_num_iter})"
            )


class SlicMaskSource(MaskSource):
    """See :class:`SlicMaskConfig`."""

    config: SlicMaskConfig

    def segment(self, image: Tensor, index: int, gt: GroundTruth | None) -> Int[Tensor, "H W"]:
        from skimage.segmentation import slic

        cfg = self.config
        out = slic(
            _as_numpy_image(image),
            n_segments=cfg.n_segments,
            compactness=cfg.compactness,
            max_num_iter=cfg.max_num_iter,
            sigma=cfg.sigma,
            enforce_connectivity=cfg.enforce_connectivity,
            start_label=0,
            channel_axis=-1,
        )
        return torch.from_numpy(np.ascontiguousarray(out).astype(np.int64))


@dataclass
class GroundTruthMaskConfig(MaskSourceConfig):
    """Masks from the dataset's ground truth: an oracle for controlled studies (results must say so)."""

    _target: type = field(default_factory=lambda: GroundTruthMaskSource)
    """Mask source class to instantiate."""
    name: str = "ground-truth"
    """Label of the source (it always contains "ground-truth"; the target is appended)."""
    target: Literal["instance", "semantic"] = "instance"
    """One mask per instance id (0 = void → no mask), or per class id (-1 = void → no mask)."""


class GroundTruthMaskSource(MaskSource):
    """See :class:`GroundTruthMaskConfig`."""

    config: GroundTruthMaskConfig
    requires_ground_truth = True
    is_ground_truth = True

    @property
    def name(self) -> str:
        label = self.config.name if "ground-truth" in self.config.name.lower() else f"ground-truth-{self.config.name}"
        return f"{label}-{self.config.target}"

    def segment(self, image: Tensor, index: int, gt: GroundTruth | None) -> Int[Tensor, "H W"]:
        if gt is None:
            raise MaskSourceError(f"mask source '{self.name}' needs ground truth for image {index}, but has none")
        if self.config.target == "semantic":
            return gt.semantics
        if gt.instances is None:
            raise MaskSourceError(f"mask source '{self.name}' needs instance ids for image {index}, but has none")
        return torch.where(gt.instances > 0, gt.instances, torch.full_like(gt.instances, -1))


# -------------------------------------------------------------------------------------------------------------- SAM


class SamArchitecture(NamedTuple):
    """Image-encoder size of a SAM model (the prompt encoder and mask decoder are the same for all)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    checkpoint_name: str
    """File name of the official release (for hints only; never downloaded)."""


SAM_ARCHITECTURES: dict[str, SamArchitecture] = {
    "vit_b": SamArchitecture(768, 12, 12, (2, 5, 8, 11), "sam_vit_b_01ec64.pth"),
    "vit_l": SamArchitecture(1024, 24, 16, (5, 11, 17, 23), "sam_vit_l_0b3195.pth"),
    "vit_h": SamArchitecture(1280, 32, 16, (7, 15, 23, 31), "sam_vit_h_4b8939.pth"),
}
"""segment-anything's ``sam_model_registry`` sizes (``build_sam.py``)."""

SAM_TEST_TINY = SamArchitecture(32, 2, 2, (1,), "")
"""A test-only size with the official key layout (2 encoder blocks, 32 wide: 19 MB instead of vit_b's 375 MB).
Not registered; tests add it to :data:`SAM_ARCHITECTURES` under a name of their own."""

SAM_RELEASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


def _import_segment_anything() -> Any:
    try:
        import segment_anything
    except ImportError as exc:
        raise MaskSourceError(
            f"the SAM mask source needs the segment-anything package: pip install '{SAM_REQUIREMENT}'"
        ) from exc
    return segment_anything


def build_sam_model(model_type: str, device: str | torch.device = "cpu") -> torch.nn.Module:
    """An (uninitialised-weights) ``Sam`` of ``model_type`` from segment-anything's own builder. With
    ``device="meta"`` nothing is allocated (used to check a checkpoint's keys and shapes)."""
    _import_segment_anything()
    from segment_anything.build_sam import _build_sam

    if model_type not in SAM_ARCHITECTURES:
        raise ConfigError(f"unknown SAM model_type {model_type!r}; choose one of {sorted(SAM_ARCHITECTURES)}")
    arch = SAM_ARCHITECTURES[model_type]
    with torch.device(device):
        return _build_sam(
            encoder_embed_dim=arch.embed_dim,
            encoder_depth=arch.depth,
            encoder_num_heads=arch.num_heads,
            encoder_global_attn_indexes=list(arch.global_attn_indexes),
        )


def _sam_hint(model_type: str) -> str:
    arch = SAM_ARCHITECTURES.get(model_type)
    name = arch.checkpoint_name if arch is not None and arch.checkpoint_name else f"the {model_type} checkpoint"
    return f"download {SAM_RELEASE_URL}{name} on a machine with internet and pass it with the SAM source's checkpoint"


def load_sam(model_type: str, checkpoint: Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """The ``Sam`` network of ``model_type`` with the weights of ``checkpoint`` (a ``Sam`` state dict, read with
    ``weights_only=True``), in eval mode on ``device``. The keys and shapes are checked against the architecture
    built on the meta device first (so a wrong file fails in a second, with one line), then the weights are
    assigned without a random initialisation."""
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise MaskWeightsError(f"SAM checkpoint not found: {path} ({_sam_hint(model_type)})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / corrupt files raise many types
        raise MaskWeightsError(f"cannot read SAM checkpoint {path} ({first_line(exc)})") from exc
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise MaskWeightsError(f"SAM checkpoint {path} is not a state dict of tensors")
    model = build_sam_model(model_type, "meta")
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise MaskWeightsError(
            f"SAM checkpoint {path} does not fit {model_type}: missing keys {missing[:3]}"
            f"{'...' if len(missing) > 3 else ''}, unexpected keys {unexpected[:3]}"
            f"{'...' if len(unexpected) > 3 else ''}"
        )
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise MaskWeightsError(
                f"SAM checkpoint {path} does not fit {model_type}: {key} has shape {tuple(state[key].shape)}, "
                f"expected {tuple(value.shape)} (a checkpoint of another model size?)"
            )
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a tensor the state dict does not hold (segment-anything's non-persistent buffers are CPU ones)
        raise MaskWeightsError(f"SAM {model_type}: {leftover[0]} was not in the checkpoint {path}")
    return model.to(device).eval().requires_grad_(False)


@dataclass
class SamMaskConfig(MaskSourceConfig):
    """segment-anything's automatic mask generator from a local checkpoint (module docstring)."""

    _target: type = field(default_factory=lambda: SamMaskSource)
    """Mask source class to instantiate."""
    name: str = "sam"
    """Label of the source in results and cache file names (the model type is appended)."""
    model_type: Literal["vit_b", "vit_l", "vit_h"] = "vit_h"
    """SAM image-encoder size; must match the checkpoint."""
    checkpoint: Path | None = None
    """Local ``Sam`` state dict (e.g. sam_vit_h_4b8939.pth); required, never downloaded."""
    min_area: int = 100
    """Masks with fewer pixels are dropped, before and after merging."""
    points_per_side: int = 32
    """Point prompts per image side (points_per_side² prompts per image)."""
    points_per_batch: int = 64
    """Prompts run through the mask decoder at once (memory only)."""
    pred_iou_thresh: float = 0.88
    """Keep masks whose predicted IoU is at least this."""
    stability_score_thresh: float = 0.95
    """Keep masks whose stability score is at least this."""
    stability_score_offset: float = 1.0
    """Logit offset of the stability score."""
    box_nms_thresh: float = 0.7
    """Box IoU of the non-maximum suppression between masks."""
    crop_n_layers: int = 0
    """Also run on image crops in this many layers (0: the whole image only)."""
    crop_n_points_downscale_factor: int = 1
    """Points per side are divided by this factor per crop layer."""
    min_mask_region_area: int = 0
    """SAM's own post-processing: remove holes and islands smaller than this (OpenCV); 0 = off."""
    device: str | None = None
    """Torch device of the network; None: CUDA when available, else CPU."""

    non_feature_fields = ("show_progress", "points_per_batch", "device")

    def feature_identity(self) -> dict[str, Any]:
        ident = super().feature_identity()
        ident.pop("checkpoint", None)
        digest = file_sha256(self._checked_checkpoint(), "SAM checkpoint")
        ident["weights"] = f"checkpoint-sha256:{digest}"
        return ident

    def _checked_checkpoint(self) -> Path:
        if self.checkpoint is None:
            raise MaskWeightsError(f"SAM mask source needs a local checkpoint ({_sam_hint(self.model_type)})")
        path = Path(self.checkpoint).expanduser()
        if not path.is_file():
            raise MaskWeightsError(f"SAM checkpoint not found: {path} ({_sam_hint(self.model_type)})")
        return path

    def check(self) -> None:
        super().check()
        if self.model_type not in SAM_ARCHITECTURES:
            raise ConfigError(f"unknown SAM model_type {self.model_type!r}; choose one of {sorted(SAM_ARCHITECTURES)}")
        self._checked_checkpoint()
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ConfigError("SAM masks: points_per_side and points_per_batch must be at least 1")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"SAM masks: {name} must lie in [0, 1], got {getattr(self, name)}")


class SamMaskSource(MaskSource):
    """See :class:`SamMaskConfig`. The network is loaded on first use, so a cache hit needs no weights."""

    config: SamMaskConfig

    def __init__(self, config: SamMaskConfig) -> None:
        super().__init__(config)
        self._generator: Any = None
        if config.device is not None:
            self.device = torch.device(config.device)
        else:
            self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def name(self) -> str:
        return f"{self.config.name}-{self.config.model_type}"

    def prepare(self, inputs: TeacherInputs) -> None:
        """Load the network (and fail on a bad checkpoint) before the progress bar starts."""
        _ = self.generator

    @property
    def generator(self) -> Any:
        if self._generator is None:
            cfg = self.config
            segment_anything = _import_segment_anything()
            sam = load_sam(cfg.model_type, cfg._checked_checkpoint(), self.device)
            self._generator = segment_anything.SamAutomaticMaskGenerator(
                sam,
                points_per_side=cfg.points_per_side,
                points_per_batch=cfg.points_per_batch,
                pred_iou_thresh=cfg.pred_iou_thresh,
                stability_score_thresh=cfg.stability_score_thresh,
                stability_score_offset=cfg.stability_score_offset,
                box_nms_thresh=cfg.box_nms_thresh,
                crop_n_layers=cfg.crop_n_layers,
                crop_n_points_downscale_factor=cfg.crop_n_points_downscale_factor,
                min_mask_region_area=cfg.min_mask_region_area,
                output_mode="binary_mask",
            )
        return self._generator

    def binary_masks(self, image: Tensor) -> Bool[Tensor, "k H W"]:
        """SAM's raw (overlapping) masks of one ``(H, W, 3)`` image in [0, 1]."""
        pixels = (image.detach().to("cpu", torch.float32).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        records = self.generator.generate(np.ascontiguousarray(pixels))
        if not records:
            return torch.zeros((0, *pixels.shape[:2]), dtype=torch.bool)
        return torch.from_numpy(np.stack([np.asarray(r["segmentation"], dtype=bool) for r in records]))

    def segment(self, image: Tensor, index: int, gt: GroundTruth | None) -> Int[Tensor, "H W"]:
        return merge_masks(self.binary_masks(image), self.config.min_area)


# ------------------------------------------------------------------------------------------------------------ cache


@dataclass
class MaskSet:
    """The label maps of every image of a dataset."""

    labels: Int[Tensor, "n H W"]
    """int32 mask ids per pixel, ``-1`` = no mask (ids are per image)."""
    source_name: str
    """Label of the source (contains "ground-truth" for the oracle)."""
    is_ground_truth: bool
    """True when the masks are the dataset's ground truth: label results accordingly."""
    cache_key: str | None = None
    """Full sha256 cache key (None when computed without a cache)."""

    @property
    def num_images(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.labels.shape[1]), int(self.labels.shape[2])

    def to(self, device: str | torch.device) -> MaskSet:
        return dataclasses.replace(self, labels=self.labels.to(device))

    def lookup(self, image_idx: Int[Tensor, " r"], y: Int[Tensor, " r"], x: Int[Tensor, " r"]) -> Int[Tensor, " r"]:
        """Mask id at pixel ``(y, x)`` of image ``image_idx`` for each ray (e.g. the rays of sampled patches)."""
        dev = self.labels.device
        return self.labels[image_idx.to(dev, torch.long), y.to(dev, torch.long), x.to(dev, torch.long)]


def mask_cache_key(source: MaskSource, inputs: TeacherInputs) -> str:
    """The full sha256 key of ``source``'s label maps for ``inputs`` (module docstring)."""
    header = {
        "format": MASK_CACHE_FORMAT_VERSION,
        "source": source.name,
        "config": json.loads(source.config.feature_identity_json()),
        "num_images": len(inputs),
        "image_hw": list(inputs.image_hw),
    }
    return content_key(header, inputs, source.requires_ground_truth)


def mask_cache_path(cache_dir: Path, source_name: str, key: str) -> Path:
    """``<cache_dir>/masks-<source name>-<key[:16]>.pt``."""
    return cache_path(Path(cache_dir), f"masks-{source_name}", key)


def save_masks(path: Path, masks: MaskSet) -> None:
    """Write ``masks`` to ``path`` atomically (a plain dict, readable with ``weights_only=True``)."""
    save_atomic(
        Path(path),
        {
            "format": MASK_CACHE_FORMAT_VERSION,
            "key": masks.cache_key,
            "source_name": masks.source_name,
            "is_ground_truth": masks.is_ground_truth,
            "labels": masks.labels.detach().cpu().contiguous(),
        },
    )


def _warn(message: str) -> None:
    warnings.warn(message, MaskCacheWarning, stacklevel=3)


def _mismatch(data: Any, key: str, expected: MaskSet, shape: tuple[int, int, int]) -> str | None:
    if not isinstance(data, dict):
        return f"holds a {type(data).__name__}, not a dict"
    checks = {
        "format": MASK_CACHE_FORMAT_VERSION,
        "key": key,
        "source_name": expected.source_name,
        "is_ground_truth": expected.is_ground_truth,
    }
    for name, want in checks.items():
        if data.get(name) != want:
            return f"{name} is {str(data.get(name))[:40]!r}, expected {str(want)[:40]!r}"
    labels = data.get("labels")
    if not isinstance(labels, Tensor):
        return "has no label tensor"
    if tuple(labels.shape) != shape or labels.dtype != torch.int32:
        return f"labels are {tuple(labels.shape)} {labels.dtype}, expected {shape} torch.int32"
    if labels.numel() and int(labels.min()) < -1:
        return f"labels hold ids below -1 ({int(labels.min())})"
    return None


def load_masks(path: Path, key: str, expected: MaskSet, shape: tuple[int, int, int]) -> MaskSet | None:
    """The cached label maps at ``path`` if the file is valid for ``key`` and ``shape`` (``expected`` gives the
    source's metadata); else None, with one :class:`MaskCacheWarning` unless the file does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated / corrupt files raise many types
        _warn(f"mask cache file {path} is unreadable ({first_line(exc)[:160]}); recomputing")
        return None
    reason = _mismatch(data, key, expected, shape)
    if reason is not None:
        _warn(f"mask cache file {path} is stale ({reason}); recomputing")
        return None
    return dataclasses.replace(expected, labels=data["labels"], cache_key=key)


def _check_label_map(labels: Tensor, source: str, index: int, image_hw: tuple[int, int]) -> None:
    if tuple(labels.shape) != tuple(image_hw) or labels.dtype != torch.int32:
        raise MaskSourceError(
            f"mask source '{source}', image {index}: label map is {labels.dtype} {tuple(labels.shape)}, "
            f"expected torch.int32 {tuple(image_hw)}"
        )
    if labels.numel() and int(labels.min()) < -1:
        raise MaskSourceError(f"mask source '{source}', image {index}: label map holds ids below -1")


def compute_masks(config: MaskSourceConfig, inputs: TeacherInputs, cache_dir: Path | None = None) -> MaskSet:
    """Label maps of every image of ``inputs`` by the source ``config`` describes: from the cache in ``cache_dir``
    when a valid file exists, else computed (progress bar), validated and cached. Bad input or options raise a
    one-line :class:`MaskSourceError` / :class:`ConfigError`."""
    source: MaskSource = config.setup()
    if source.requires_ground_truth and not inputs.has_ground_truth:
        raise MaskSourceError(f"mask source '{source.name}' needs ground truth, but the inputs have none")
    height, width = inputs.image_hw
    shape = (len(inputs), height, width)
    expected = MaskSet(
        labels=torch.empty(0, dtype=torch.int32), source_name=source.name, is_ground_truth=source.is_ground_truth
    )
    key = path = None
    if cache_dir is not None:
        key = mask_cache_key(source, inputs)
        path = mask_cache_path(Path(cache_dir), source.name, key)
        cached = load_masks(path, key, expected, shape)
        if cached is not None:
            return cached

    source.prepare(inputs)
    labels = torch.empty(shape, dtype=torch.int32)
    progress = Progress(
        TextColumn(f"[bold]masks {source.name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        disable=not config.show_progress,
    )
    with progress:
        task = progress.add_task("segment", total=len(inputs))
        for i in range(len(inputs)):
            gt = inputs.ground_truth(i) if source.requires_ground_truth else None
            out = source.label_map(inputs.image(i), i, gt)
            _check_label_map(out, source.name, i, (height, width))
            labels[i] = out
            progress.advance(task)
    result = dataclasses.replace(expected, labels=labels, cache_key=key)
    if path is not None:
        try:
            save_masks(path, result)
        except OSError as exc:
            _warn(f"could not write mask cache file {path} ({exc}); continuing without caching")
    return result
