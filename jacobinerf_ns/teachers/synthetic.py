"""A synthetic teacher computed from ground truth with controlled degradation, standing in for DINO where no
weights exist (tests, the embedded benchmark). Results from it must be labelled synthetic: its name always says so.

Exact rules (every random draw comes from a generator seeded by ``seed`` and a tag, so the output is a pure function
of the config, the ground truth and the image index):

1. **Class embedding** ``e_c``: a random unit vector of dimension ``dim`` per class id ``c`` (seeded by ``c``);
   void pixels (class -1) get their own random unit vector ``e_void``.
2. **Instance offset**: pixels of instance ``k > 0`` add ``instance_variation · u_k`` to their class embedding,
   with ``u_k`` a random unit vector seeded by ``k`` (instance 0 = void adds nothing). Same instance → same offset in
   every view; other instances of the same class differ by their offsets.
3. **Class confusion**: every class ``c`` has one fixed confusion partner ``π(c) ≠ c``: the classes ``0..K-1`` are
   put in a seeded random order and each class's partner is the next one in that cycle (``K`` = ``num_classes``, or
   the largest class id in the dataset + 1). With ``confusion_unit="patch"``, each patch of each view is confused
   independently with probability ``class_confusion`` (drawn per view and patch): in a confused patch every non-void
   pixel of class ``c`` uses ``e_π(c)`` instead of ``e_c`` (instance offsets kept). With
   ``confusion_unit="instance"``, each instance ``k > 0`` is confused with probability ``class_confusion`` once for
   all views (a view-consistent error, which multi-view fusion cannot average away). ``K = 1`` disables confusion.
4. **Patch feature**: the average of its pixels' embeddings over the patch (adaptive average pooling onto the grid of
   :func:`~jacobinerf_ns.teachers.base.patch_grid_hw`, so boundaries blend like a ViT's), plus **view noise**
   ``N(0, view_noise² / dim · I)`` drawn per view and patch (``view_noise`` is the expected noise norm relative to a
   unit embedding), then L2-normalised.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor

from jacobinerf_ns.errors import ConfigError
from jacobinerf_ns.teachers.base import (
    GroundTruth,
    Teacher,
    TeacherConfig,
    TeacherError,
    TeacherInputs,
    l2_normalize,
    patch_grid_hw,
)


def _generator(seed: int, tag: str, index: int) -> torch.Generator:
    """A CPU generator whose seed mixes (seed, tag, index) through sha256."""
    digest = hashlib.sha256(f"{seed}:{tag}:{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))


def seeded_unit_vector(seed: int, tag: str, index: int, dim: int) -> Float[Tensor, " d"]:
    """A random unit vector that depends only on (seed, tag, index, dim)."""
    return l2_normalize(torch.randn(dim, generator=_generator(seed, tag, index)))


@functools.lru_cache(maxsize=32)
def area_pool_matrix(n_in: int, n_out: int) -> Float[Tensor, "n_out n_in"]:
    """Row ``i`` averages inputs ``[floor(i·n_in/n_out), ceil((i+1)·n_in/n_out))``: adaptive average pooling's
    regions, as a matrix (two small matmuls pool an image ~4x faster than ``F.adaptive_avg_pool2d`` on CPU)."""
    out = torch.zeros(n_out, n_in)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -(-(i + 1) * n_in // n_out)
        out[i, lo:hi] = 1.0 / (hi - lo)
    return out


def area_pool(values: Float[Tensor, "H W d"], grid_hw: tuple[int, int]) -> Float[Tensor, "h w d"]:
    """Average ``values`` over the adaptive-pooling regions of a ``grid_hw`` grid."""
    height, width, dim = values.shape
    pool_y, pool_x = area_pool_matrix(height, grid_hw[0]), area_pool_matrix(width, grid_hw[1])
    rows = (pool_y @ values.reshape(height, width * dim)).reshape(grid_hw[0], width, dim)
    return torch.einsum("jx,ixd->ijd", pool_x, rows)


def seeded_uniform(seed: int, tag: str, index: int, shape: tuple[int, ...]) -> Tensor:
    return torch.rand(shape, generator=_generator(seed, tag, index))


@dataclass
class SyntheticTeacherConfig(TeacherConfig):
    """Teacher features from ground truth with controlled degradation (module docstring gives the exact rules)."""

    _target: type = field(default_factory=lambda: SyntheticTeacher)
    """Teacher class to instantiate."""
    name: str = "synthetic"
    """Label of the teacher in results and cache files ("synthetic-" is prepended unless it says synthetic)."""
    dim: int = 64
    """Feature dimension."""
    stride: int = 8
    """Pixels per patch, like a ViT/8 at the image's own resolution."""
    seed: int = 0
    """Seed of every random draw (embeddings, partners, confusion, noise)."""
    instance_variation: float = 0.5
    """Length of the per-instance offset added to the unit class embedding (0: instances of a class look alike)."""
    view_noise: float = 0.2
    """Expected norm of the per-view, per-patch Gaussian noise relative to a unit embedding (0: none)."""
    class_confusion: float = 0.05
    """Probability that a patch (or instance, see confusion_unit) takes the embedding of its class's partner."""
    confusion_unit: Literal["patch", "instance"] = "patch"
    """Confuse independent patches per view, or whole instances consistently across views."""
    num_classes: int | None = None
    """Number of classes K (fixes the confusion partners); None: largest class id in the dataset + 1."""

    def raw_dim(self) -> int:
        return self.dim

    def check(self) -> None:
        super().check()
        if self.dim < 1 or self.stride < 1:
            raise ConfigError(f"synthetic teacher: dim and stride must be positive, got {self.dim}, {self.stride}")
        if not 0.0 <= self.class_confusion <= 1.0:
            raise ConfigError(f"synthetic teacher: class_confusion must be in [0, 1], got {self.class_confusion}")
        if self.instance_variation < 0 or self.view_noise < 0:
            raise ConfigError("synthetic teacher: instance_variation and view_noise must be non-negative")


class SyntheticTeacher(Teacher):
    """See the module docstring."""

    config: SyntheticTeacherConfig
    is_synthetic = True
    requires_ground_truth = True

    def __init__(self, config: SyntheticTeacherConfig) -> None:
        super().__init__(config)
        self._num_classes = config.num_classes
        self._instance_cache: dict[tuple[str, int], Tensor] = {}
        self._class_table: Tensor | None = None

    @property
    def name(self) -> str:
        label = self.config.name
        return label if "synthetic" in label.lower() else f"synthetic-{label}"

    @property
    def stride(self) -> int:
        return self.config.stride

    def prepare(self, inputs: TeacherInputs) -> None:
        if not inputs.has_ground_truth:
            raise TeacherError(f"teacher '{self.name}' needs ground-truth semantics, but the inputs have none")
        if self.config.num_classes is None:
            top = max(int(torch.as_tensor(inputs.semantics[i]).max()) for i in range(len(inputs)))
            self._num_classes = max(top + 1, 1)

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            raise TeacherError(f"teacher '{self.name}': set num_classes or call prepare(inputs) before extract")
        return self._num_classes

    def class_embeddings(self) -> Float[Tensor, "k+1 d"]:
        """Row 0: the void embedding; row ``c + 1``: class ``c``."""
        cfg = self.config
        if self._class_table is None or self._class_table.shape[0] != self.num_classes + 1:
            rows = [seeded_unit_vector(cfg.seed, "void", 0, cfg.dim)]
            rows += [seeded_unit_vector(cfg.seed, "class", c, cfg.dim) for c in range(self.num_classes)]
            self._class_table = torch.stack(rows)
        return self._class_table

    def partners(self) -> Int[Tensor, " k"]:
        """``partners()[c]`` = π(c): the next class in a seeded random cycle over all classes."""
        k = self.num_classes
        order = torch.randperm(k, generator=_generator(self.config.seed, "partners", k))
        partner = torch.empty(k, dtype=torch.long)
        partner[order] = order.roll(-1)
        return partner

    def _per_instance(self, tag: str, ids: Tensor, make) -> Tensor:
        out = []
        for k in ids.tolist():
            if (tag, k) not in self._instance_cache:
                self._instance_cache[(tag, k)] = make(k)
            out.append(self._instance_cache[(tag, k)])
        return torch.stack(out)

    def _instance_offsets(self, ids: Tensor) -> Tensor:
        cfg = self.config
        offsets = self._per_instance("offset", ids, lambda k: seeded_unit_vector(cfg.seed, "instance", k, cfg.dim))
        return offsets * cfg.instance_variation * (ids > 0).unsqueeze(-1)

    def _instance_confused(self, ids: Tensor) -> Tensor:
        cfg = self.config
        draws = self._per_instance("confusion", ids, lambda k: seeded_uniform(cfg.seed, "instance-confusion", k, ()))
        return (draws < cfg.class_confusion) & (ids > 0)

    def extract(self, image: Float[Tensor, "H W 3"], index: int, gt: GroundTruth | None) -> Float[Tensor, "h w d"]:
        cfg = self.config
        if gt is None:
            raise TeacherError(f"teacher '{self.name}' needs ground-truth semantics for image {index}, but has none")
        sem = gt.semantics.long()
        height, width = sem.shape
        lo, hi = int(sem.min()), int(sem.max())
        if lo < -1 or hi >= self.num_classes:
            raise TeacherError(
                f"teacher '{self.name}', image {index}: class ids span [{lo}, {hi}], expected [-1, {self.num_classes})"
            )
        table = self.class_embeddings()
        row = sem + 1  # void -> row 0
        partner_row = torch.cat([torch.zeros(1, dtype=torch.long), self.partners() + 1])[row]
        confusion_on = cfg.class_confusion > 0 and self.num_classes > 1
        offset = torch.zeros(())
        if gt.instances is not None:
            ids, inverse = torch.unique(gt.instances.long(), return_inverse=True)
            if cfg.instance_variation > 0:
                offset = self._instance_offsets(ids)[inverse]
            if confusion_on and cfg.confusion_unit == "instance":
                row = torch.where(self._instance_confused(ids)[inverse], partner_row, row)
        elif confusion_on and cfg.confusion_unit == "instance":
            raise TeacherError(f"teacher '{self.name}': confusion_unit='instance' needs instance ids (image {index})")

        grid = patch_grid_hw((height, width), cfg.stride)

        def pooled(rows: Tensor) -> Tensor:
            emb = table[rows]
            emb += offset
            return area_pool(emb, grid)

        feats = pooled(row)
        if confusion_on and cfg.confusion_unit == "patch":
            confused = seeded_uniform(cfg.seed, "patch-confusion", index, grid) < cfg.class_confusion
            feats = torch.where(confused.unsqueeze(-1), pooled(partner_row), feats)
        if cfg.view_noise > 0:
            noise = torch.randn((*grid, cfg.dim), generator=_generator(cfg.seed, "view-noise", index))
            feats = feats + noise * (cfg.view_noise / cfg.dim**0.5)
        return l2_normalize(feats)
