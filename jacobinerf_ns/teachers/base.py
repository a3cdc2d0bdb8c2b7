"""The teacher interface: what a 2D teacher reads, how it is configured, and what it produces.

Patch-grid convention (every backend, every consumer)
-----------------------------------------------------
An image of ``H × W`` pixels gives a grid of ``h × w`` patches with ``h = max(1, round(H·s / stride))`` (``w``
likewise), where ``s = load_size / min(H, W)`` when the backend first resizes the image so that its shorter side is
``load_size`` and ``s = 1`` otherwise (see :func:`patch_grid_hw`). The grid covers the whole image uniformly: patch
row ``i`` spans pixel rows ``[i·H/h, (i+1)·H/h)`` and its centre lies at ``y = (i + 0.5)·H/h − 0.5`` in pixel
coordinates (pixel centres at integer coordinates); columns likewise. The feature of pixel ``(y, x)`` is the bilinear
interpolation between the four surrounding patch centres, clamped at the border (pixels beyond the outermost centres
take the border row/column), re-normalised to unit length. This equals
``F.interpolate(grid, size=(H, W), mode="bilinear", align_corners=False)`` followed by L2 normalisation.

Patch features are L2-normalised along the feature dimension.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from nerfstudio.configs.base_config import InstantiateConfig
from torch import Tensor

from jacobinerf_ns.errors import ConfigError, JacobiNeRFError
from jacobinerf_ns.teachers.pca import PCABasis


class TeacherError(JacobiNeRFError, ValueError):
    """Teacher features cannot be produced or are invalid (wrong shape, NaN/inf, missing ground truth ...)."""


class TeacherWeightsError(TeacherError):
    """A teacher's weights cannot be found, read or matched to its model."""


def l2_normalize(x: Float[Tensor, "*batch d"], eps: float = 1e-12) -> Float[Tensor, "*batch d"]:
    """Unit length along the last dimension (zero vectors stay zero)."""
    return F.normalize(x, dim=-1, eps=eps)


def patch_grid_hw(image_hw: tuple[int, int], stride: int, load_size: int | None = None) -> tuple[int, int]:
    """The ``(h, w)`` patch grid of an ``image_hw`` image; see the module docstring for the rule."""
    height, width = image_hw
    scale = 1.0 if load_size is None else load_size / min(height, width)
    return max(1, round(height * scale / stride)), max(1, round(width * scale / stride))


def _tensor_digest(tensor: Tensor) -> bytes:
    """sha256 of a tensor's dtype, shape and bytes."""
    t = tensor.detach().to("cpu").contiguous()
    digest = hashlib.sha256(f"{t.dtype}{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


def file_identity(path: str | Path) -> str:
    """Identity of an image file for :class:`TeacherInputs` ``identities``: the sha256 of its bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "file-sha256:" + digest.hexdigest()


@dataclass
class GroundTruth:
    """Ground truth of one image (only the synthetic teacher reads it)."""

    semantics: Int[Tensor, "H W"]
    """Contiguous class ids; -1 = void / ignore."""
    instances: Int[Tensor, "H W"] | None = None
    """Instance ids; 0 = void."""


def _as_label_map(value: Any, what: str, index: int, image_hw: tuple[int, int]) -> Tensor:
    t = torch.as_tensor(value)
    if t.ndim == 3 and t.shape[-1] == 1:
        t = t[..., 0]
    if tuple(t.shape) != tuple(image_hw):
        raise TeacherError(f"{what} of image {index} has shape {tuple(t.shape)}, expected {tuple(image_hw)}")
    if t.is_floating_point():
        raise TeacherError(f"{what} of image {index} must hold integer ids, got {t.dtype}")
    return t.long()


@dataclass
class TeacherInputs:
    """The images of a dataset (all of one size) with, optionally, ground truth and a stable identity per image.

    ``images`` (and the ground-truth lists) may be any indexable sequence with a length, e.g. a lazy loader: on a
    cache hit with ``identities`` given, no image is decoded at all.
    """

    images: Sequence[Any]
    """Per image a ``(H, W, 3)`` tensor (or array): float in [0, 1], or uint8 (divided by 255)."""
    semantics: Sequence[Any] | None = None
    """Per image ``(H, W)`` (or ``(H, W, 1)``) contiguous class ids, -1 = void."""
    instances: Sequence[Any] | None = None
    """Per image ``(H, W)`` (or ``(H, W, 1)``) instance ids, 0 = void."""
    identities: Sequence[bytes | str] | None = None
    """Per image a stable identity that determines its pixels (e.g. :func:`file_identity` of the file when the
    image is used at its stored resolution); None hashes the image tensors themselves."""
    image_size: tuple[int, int] | None = None
    """``(H, W)`` of every image; None reads it from the first image."""

    def __post_init__(self) -> None:
        n = len(self.images)
        if n == 0:
            raise TeacherError("teacher inputs hold no images")
        for what in ("semantics", "instances", "identities"):
            seq = getattr(self, what)
            if seq is not None and len(seq) != n:
                raise TeacherError(f"teacher inputs: {len(seq)} {what} for {n} images")
        if self.instances is not None and self.semantics is None:
            raise TeacherError("teacher inputs: instances given without semantics")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def image_hw(self) -> tuple[int, int]:
        if self.image_size is None:
            shape = tuple(torch.as_tensor(self.images[0]).shape)
            self.image_size = (int(shape[0]), int(shape[1]))
        return self.image_size

    @property
    def has_ground_truth(self) -> bool:
        return self.semantics is not None

    def image(self, index: int) -> Float[Tensor, "H W 3"]:
        """Image ``index`` as float32 in [0, 1], checked against the dataset's size."""
        t = torch.as_tensor(self.images[index])
        if t.ndim != 3 or t.shape[-1] != 3:
            raise TeacherError(f"image {index} has shape {tuple(t.shape)}, expected (H, W, 3)")
        if tuple(t.shape[:2]) != self.image_hw:
            raise TeacherError(
                f"image {index} is {tuple(t.shape[:2])} but image 0 is {self.image_hw}: all images must share a size"
            )
        if t.dtype == torch.uint8:
            return t.float() / 255.0
        return t.float()

    def ground_truth(self, index: int) -> GroundTruth | None:
        if self.semantics is None:
            return None
        sem = _as_label_map(self.semantics[index], "semantics", index, self.image_hw)
        inst = None
        if self.instances is not None:
            inst = _as_label_map(self.instances[index], "instances", index, self.image_hw)
        return GroundTruth(semantics=sem, instances=inst)

    def identity_digest(self, index: int) -> bytes:
        """sha256 identifying image ``index``'s pixels (its given identity, else its tensor bytes)."""
        if self.identities is not None:
            ident = self.identities[index]
            data = ident if isinstance(ident, bytes) else str(ident).encode()
            return hashlib.sha256(b"identity:" + data).digest()
        return _tensor_digest(torch.as_tensor(self.images[index]))

    def ground_truth_digest(self, index: int) -> bytes:
        """sha256 of image ``index``'s ground truth (empty-input digest when there is none)."""
        digest = hashlib.sha256(b"ground-truth:")
        for seq in (self.semantics, self.instances):
            digest.update(b"-" if seq is None else _tensor_digest(torch.as_tensor(seq[index])))
        return digest.digest()


def canonical_config_value(value: Any) -> Any:
    """A JSON-serialisable canonical form of a config value."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [canonical_config_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): canonical_config_value(v) for k, v in sorted(value.items())}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: canonical_config_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


@dataclass
class TeacherConfig(InstantiateConfig):
    """Options shared by every teacher backend."""

    _target: type = field(default_factory=lambda: Teacher)
    """Teacher class to instantiate."""
    name: str = "teacher"
    """Label of the teacher in results and cache file names."""
    pca_dim: int | None = None
    """PCA (one basis fitted over the whole dataset) to this many dims, then re-normalise; None: keep all dims."""
    pca_max_samples: int = 50_000
    """The PCA is fitted on at most this many patches, drawn uniformly at random (seeded) from all images."""
    pca_seed: int = 0
    """Seed of the PCA patch subsample."""
    storage_dtype: Literal["float16", "float32"] = "float16"
    """Precision in which the patch features are kept in memory and in the cache (lookups compute in float32)."""
    show_progress: bool = True
    """Show a progress bar while extracting."""

    non_feature_fields: ClassVar[tuple[str, ...]] = ("show_progress",)
    """Fields that do not change the features (left out of the cache key)."""

    def raw_dim(self) -> int:
        """Dimension of the backend's features before PCA (known without loading any weights)."""
        raise NotImplementedError

    def output_dim(self) -> int:
        """Dimension of the final features (after PCA when configured)."""
        return self.pca_dim if self.pca_dim is not None else self.raw_dim()

    def feature_identity(self) -> dict[str, Any]:
        """Canonical description of everything in this config that changes the features (for the cache key)."""
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
        """Raise :class:`ConfigError` for values that cannot work."""
        raw = self.raw_dim()
        if self.pca_dim is not None and not 0 < self.pca_dim <= raw:
            raise ConfigError(f"teacher '{self.name}': pca_dim {self.pca_dim} must be in [1, {raw}] (its feature dim)")
        if self.pca_max_samples < 2:
            raise ConfigError(f"teacher '{self.name}': pca_max_samples must be at least 2, got {self.pca_max_samples}")


class Teacher:
    """A 2D teacher: turns one image into an L2-normalised patch grid of features (see the module docstring)."""

    is_synthetic: ClassVar[bool] = False
    """True when the features are computed from ground truth rather than a real network."""
    requires_ground_truth: ClassVar[bool] = False
    """True when :meth:`extract` reads the ground truth (it then enters the cache key)."""

    def __init__(self, config: TeacherConfig) -> None:
        config.check()
        self.config = config

    @property
    def name(self) -> str:
        """Label for results and cache files (a synthetic teacher's name always contains "synthetic")."""
        return self.config.name

    @property
    def feature_dim(self) -> int:
        """Dimension of :meth:`extract`'s output (before dataset-level PCA)."""
        return self.config.raw_dim()

    @property
    def stride(self) -> int:
        """Nominal pixels per patch (at the backend's working resolution)."""
        raise NotImplementedError

    @property
    def batch_size(self) -> int:
        """How many images :meth:`extract_many` is given at once."""
        return 1

    def grid_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        """The patch grid of an image of this size."""
        return patch_grid_hw(image_hw, self.stride)

    def prepare(self, inputs: TeacherInputs) -> None:  # noqa: B027 - optional hook, default does nothing
        """Dataset-level set-up before the first :meth:`extract` (e.g. the number of classes)."""

    def extract(self, image: Float[Tensor, "H W 3"], index: int, gt: GroundTruth | None) -> Float[Tensor, "h w d"]:
        """L2-normalised patch features of image ``index`` (on the CPU)."""
        raise NotImplementedError

    def extract_many(
        self, images: list[Tensor], indices: list[int], gts: list[GroundTruth | None]
    ) -> list[Float[Tensor, "h w d"]]:
        """:meth:`extract` for a batch of images (backends that batch override this)."""
        return [self.extract(img, idx, gt) for img, idx, gt in zip(images, indices, gts, strict=True)]


class NetworkTeacher(Teacher):
    """A teacher backed by a network (DINO, CLIP, LSeg): built on first use — so a cache hit needs no weights — on
    ``config.device`` (default: CUDA when available, else CPU), fed ``config.batch_size`` images at a time, on the
    patch grid of ``config.load_size``. Subclasses implement :meth:`_build_model` and :attr:`stride`."""

    def __init__(self, config: TeacherConfig) -> None:
        super().__init__(config)
        self._model: Any = None
        device = getattr(config, "device", None)
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))

    def _build_model(self) -> Any:
        raise NotImplementedError

    @property
    def model(self) -> Any:
        """The network, built (and its weights read) on first use."""
        if self._model is None:
            self._model = self._build_model()
        return self._model

    @property
    def batch_size(self) -> int:
        return int(getattr(self.config, "batch_size", 1))

    def grid_hw(self, image_hw: tuple[int, int]) -> tuple[int, int]:
        return patch_grid_hw(image_hw, self.stride, getattr(self.config, "load_size", None))

    def prepare(self, inputs: TeacherInputs) -> None:
        """Build the network (and fail on missing weights) before the progress bar starts."""
        _ = self.model


def check_patch_features(
    features: Tensor, teacher_name: str, index: int, grid_hw: tuple[int, int], dim: int, what: str = "features"
) -> None:
    """Raise a one-line :class:`TeacherError` naming the teacher and image unless ``features`` is a finite
    ``(h, w, dim)`` tensor on the expected grid."""
    expected = (*grid_hw, dim)
    if tuple(features.shape) != expected:
        raise TeacherError(
            f"teacher '{teacher_name}', image {index}: {what} have shape {tuple(features.shape)}, expected {expected}"
        )
    if not bool(torch.isfinite(features).all()):
        raise TeacherError(f"teacher '{teacher_name}', image {index}: {what} contain NaN or inf")


@dataclass
class TeacherFeatures:
    """Patch-grid features of every image of a dataset, with a vectorised per-pixel lookup."""

    features: Float[Tensor, "n h w d"]
    """Unit-length patch features; float16 by default (``storage_dtype``), float32 or float64 also accepted."""
    stride: int
    """The teacher's nominal pixels per patch (at its working resolution); the grid maps onto the image as in the
    module docstring, i.e. one patch spans ``image_hw / grid_hw`` pixels of the image."""
    image_hw: tuple[int, int]
    """``(H, W)`` of the images, i.e. of the pixel coordinates given to :meth:`lookup`."""
    teacher_name: str
    """Label of the teacher (contains "synthetic" for the synthetic one)."""
    is_synthetic: bool
    """True when computed from ground truth, not by a real network: label results accordingly."""
    pca: PCABasis | None = None
    """The dataset-level PCA that produced ``features`` from the backend's raw features, when one was applied."""
    cache_key: str | None = None
    """Full sha256 cache key of these features (None when computed without a cache)."""

    @property
    def num_images(self) -> int:
        return int(self.features.shape[0])

    @property
    def grid_hw(self) -> tuple[int, int]:
        return int(self.features.shape[1]), int(self.features.shape[2])

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[3])

    def to(self, device: str | torch.device) -> TeacherFeatures:
        """A copy whose features live on ``device`` (where :meth:`lookup` then computes)."""
        return dataclasses.replace(self, features=self.features.to(device))

    def lookup(self, image_idx: Int[Tensor, " r"], y: Int[Tensor, " r"], x: Int[Tensor, " r"]) -> Float[Tensor, "r d"]:
        """Feature at pixel ``(y, x)`` of image ``image_idx`` for each ray: bilinear between patch centres,
        re-normalised (module docstring). Float32 (float64 if stored so), on the features' device. Indices are
        not bounds-checked: out-of-image pixels clamp to the border, an out-of-range image index fails."""
        feats = self.features
        n, h, w, d = feats.shape
        height, width = self.image_hw
        dtype = torch.promote_types(feats.dtype, torch.float32)
        dev = feats.device
        uy = ((y.to(dev, dtype) + 0.5) * (h / height) - 0.5).clamp(0, h - 1)
        ux = ((x.to(dev, dtype) + 0.5) * (w / width) - 0.5).clamp(0, w - 1)
        y0, x0 = uy.floor().long(), ux.floor().long()
        y1, x1 = (y0 + 1).clamp(max=h - 1), (x0 + 1).clamp(max=w - 1)
        wy, wx = (uy - y0).unsqueeze(-1), (ux - x0).unsqueeze(-1)
        flat = feats.reshape(n * h * w, d)
        base = image_idx.to(dev, torch.long) * (h * w)

        def corner(yy: Tensor, xx: Tensor) -> Tensor:
            return flat[base + yy * w + xx].to(dtype)

        top = corner(y0, x0) * (1 - wx) + corner(y0, x1) * wx
        bottom = corner(y1, x0) * (1 - wx) + corner(y1, x1) * wx
        return l2_normalize(top * (1 - wy) + bottom * wy)

    def dense(self, image_idx: int) -> Float[Tensor, "H W d"]:
        """Per-pixel features of one whole image (same convention as :meth:`lookup`)."""
        dtype = torch.promote_types(self.features.dtype, torch.float32)
        grid = self.features[image_idx].to(dtype).permute(2, 0, 1)[None]
        up = F.interpolate(grid, size=self.image_hw, mode="bilinear", align_corners=False)
        return l2_normalize(up[0].permute(1, 2, 0))
