"""The source bank of a scene: the images, depths, labels and cameras a generalizable model reads at render time.

A bank is one scene's *training* split (for an unseen scene: the views it may be rendered from). Poses are OpenCV
camera-to-world matrices in metres (the scene's dataparser frame with its scale undone), depth is metric z-depth,
labels are ids of the run's shared class table (-1 = void or unknown). Everything is validated when the bank is
built: every view must have the same size, and its intrinsics must fit that size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from jacobinerf_ns.data.image_io import read_label, read_rgb
from jacobinerf_ns.errors import DataError


@dataclass
class SourceBank:
    """The source views of one scene (see the module docstring)."""

    name: str
    images: Float[Tensor, "n h w 3"]
    k: Float[Tensor, "n 3 3"]
    c2w: Float[Tensor, "n 4 4"]
    depth: Float[Tensor, "n h w"] | None = None
    semantics: Int[Tensor, "n h w"] | None = None

    def __post_init__(self) -> None:
        n, h, w, _ = self.images.shape
        if self.k.shape != (n, 3, 3) or self.c2w.shape != (n, 4, 4):
            raise DataError(
                f"source bank of {self.name}: {n} images but {len(self.k)} intrinsics / {len(self.c2w)} poses"
            )
        check_intrinsics(self.k, h, w, self.name)
        for label, t in (("depth", self.depth), ("labels", self.semantics)):
            if t is not None and tuple(t.shape) != (n, h, w):
                raise DataError(f"source bank of {self.name}: {label} have shape {tuple(t.shape)}, images {(n, h, w)}")

    @property
    def num_views(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def to(self, device: torch.device | str) -> SourceBank:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return SourceBank(
            self.name, move(self.images), move(self.k), move(self.c2w), move(self.depth), move(self.semantics)
        )


def check_intrinsics(k: Float[Tensor, "n 3 3"], height: int, width: int, where: str) -> None:
    """Every view's focal lengths must be positive and its principal point inside its image."""
    fx, fy, cx, cy = k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]
    bad = ~(
        torch.isfinite(k).flatten(1).all(1) & (fx > 0) & (fy > 0) & (cx > 0) & (cx < width) & (cy > 0) & (cy < height)
    )
    if bool(bad.any()):
        i = int(torch.nonzero(bad)[0])
        raise DataError(
            f"intrinsics of view {i} of {where} do not match its {width}x{height} images (fx {float(fx[i]):.3g}, fy "
            f"{float(fy[i]):.3g}, cx {float(cx[i]):.3g}, cy {float(cy[i]):.3g})"
        )


@dataclass
class BankRecord:
    """Where a bank's files are (kept in dataparser metadata; the bank itself is read lazily)."""

    name: str
    rgb: list[Path]
    semantic: list[Path] | None
    depth: list[Path] | None
    lut: np.ndarray | None
    """Raw class id → shared class id (-1 void / unknown)."""
    depth_to_metres: float
    k: np.ndarray
    c2w: np.ndarray
    hw: tuple[int, int]


def read_semantics(path: Path, lut: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A label image mapped to shared class ids."""
    raw = read_label(path, expected_hw=hw)
    if int(raw.max()) >= len(lut):
        raise DataError(f"class id {int(raw.max())} in {path} is outside the class table")
    return lut[raw]


def load_bank(record: BankRecord) -> SourceBank:
    """Read every file of a bank (errors name the file)."""
    if not record.rgb:
        raise DataError(f"source bank of {record.name} is empty")
    hw = record.hw
    images = np.stack([read_rgb(p, expected_hw=hw) for p in record.rgb]).astype(np.float32) / 255.0
    depth = sem = None
    if record.depth is not None:
        depth = np.stack([read_label(p, expected_hw=hw) for p in record.depth]).astype(np.float32)
        depth = torch.from_numpy(depth * record.depth_to_metres)
    if record.semantic is not None and record.lut is not None:
        sem = torch.from_numpy(np.stack([read_semantics(p, record.lut, hw) for p in record.semantic]).astype(np.int64))
    return SourceBank(
        name=record.name,
        images=torch.from_numpy(images),
        k=torch.from_numpy(record.k).float(),
        c2w=torch.from_numpy(record.c2w).float(),
        depth=depth,
        semantics=sem,
    )
