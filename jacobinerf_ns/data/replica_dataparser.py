"""Dataparser for Semantic-NeRF's Replica renders (and ``jn-synth`` scenes, which use the same layout).

Layout (DESIGN §7)::

    rgb/rgb_N.png                              uint8 RGB
    depth/depth_N.png                          uint16 z-depth in millimetres (optional)
    semantic_class/semantic_class_N.png        uint8 raw class ids, 0 = void
    semantic_instance/semantic_instance_N.png  uint16 instance ids, 0 = void (optional)
    traj_w_c.txt                               one row-major 4x4 camera-to-world per line, OpenCV convention
    info_semantic.json                         optional class table (``classes``: ``{id, name[, color]}``)

Intrinsics: pinhole with horizontal FoV 90° (``fx = fy = W/2 / tan(45°)``, ``cx = (W-1)/2``, ``cy = (H-1)/2`` in
integer pixel coordinates), unless a ``scene_meta.json`` beside the data gives ``fx, fy, cx, cy``. nerfstudio puts pixel
centres at +0.5, so we hand it ``cx + 0.5``.

Split (Semantic-NeRF): train = every 5th frame, test = every 5th frame from offset 2. Poses are rotated so that the
mean camera up is +z, then the scene (its depth points when depth exists, else the camera centres grown by a margin)
is centred and scaled into the box [-1, 1]^3.

This module imports only the nerfstudio data base classes, never method configs or datamanagers (see
ENVIRONMENT.md #6), because nerfstudio loads dataparser entry points while its method configs are half-imported.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs, Semantics
from nerfstudio.data.scene_box import SceneBox

from jacobinerf_ns.data.class_table import ClassTable, check_ids_in_table, load_class_info
from jacobinerf_ns.data.image_io import image_size, read_label
from jacobinerf_ns.data.scene_geometry import (
    depth_points,
    interleaved_split,
    nerfstudio_cameras,
    scene_normalisation,
)
from jacobinerf_ns.errors import DataError

RGB_DIR, DEPTH_DIR, CLASS_DIR, INSTANCE_DIR = "rgb", "depth", "semantic_class", "semantic_instance"


@dataclass
class ReplicaSemanticDataParserConfig(DataParserConfig):
    """Semantic-NeRF's Replica layout (also written by ``jn-synth``)."""

    _target: type = field(default_factory=lambda: ReplicaSemanticDataParser)
    data: Path = Path("data/synth-room")
    """Scene directory (the one holding rgb/, semantic_class/, traj_w_c.txt)."""
    class_info_path: Path | None = None
    """Class table (``info_semantic.json``; for real Replica: the mesh folder's habitat/info_semantic.json). Default:
    ``<data>/info_semantic.json`` when it exists, else numeric class names."""
    train_every: int = 5
    """Take every n-th frame for training (Semantic-NeRF: 5)."""
    test_offset: int = 2
    """Test frames are every ``train_every``-th frame starting at this offset (Semantic-NeRF: 2)."""
    hfov_degrees: float = 90.0
    """Horizontal field of view used when no scene_meta.json gives intrinsics (Replica renders: 90)."""
    depth_scale: float = 1000.0
    """Depth PNG units per metre (Replica: millimetres)."""
    orientation_method: Literal["up", "none"] = "up"
    """Rotate the world so that the mean camera up is +z ("up") or keep the dataset's axes ("none")."""
    scene_bounds: Literal["depth", "poses"] = "depth"
    """What defines the box the scene is scaled into: back-projected depth points, or the camera centres."""
    bounds_margin: float = 0.05
    """Relative margin around the scene inside the [-1, 1] box."""
    poses_bounds_padding: float = 1.0
    """With ``scene_bounds="poses"``: metres added around the camera centres (the room extends beyond them)."""
    max_bounds_frames: int = 40
    """Frames whose depth is read to find the scene bounds (evenly spread)."""
    load_instances: bool = True
    """Read semantic_instance/ when it exists."""
    load_depth: bool = True
    """Read depth/ when it exists (it is never used as supervision unless a model asks for it)."""


def _frame_index(path: Path, prefix: str) -> int | None:
    match = re.fullmatch(rf"{prefix}_(\d+)\.png", path.name)
    return int(match.group(1)) if match else None


def _list_frames(folder: Path, prefix: str) -> dict[int, Path]:
    frames = {}
    for p in folder.iterdir():
        idx = _frame_index(p, prefix)
        if idx is not None:
            frames[idx] = p
    return frames


def read_trajectory(path: Path) -> Float[np.ndarray, "n 4 4"]:
    """Camera-to-world matrices from ``traj_w_c.txt`` (16 numbers per line, row-major)."""
    if not path.is_file():
        raise DataError(f"missing trajectory file: {path}")
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split()]
        except ValueError:
            raise DataError(f"{path}:{line_no}: not a list of numbers") from None
        if len(values) != 16:
            raise DataError(f"{path}:{line_no}: expected 16 numbers (a row-major 4x4 matrix), found {len(values)}")
        rows.append(values)
    poses = np.asarray(rows, dtype=np.float64).reshape(-1, 4, 4)
    if len(poses) and not np.all(np.isfinite(poses)):
        raise DataError(f"{path}: non-finite pose values")
    return poses


class ReplicaSemanticDataParser(DataParser):
    """Reads the Replica layout; see the module docstring."""

    config: ReplicaSemanticDataParserConfig

    # ----------------------------------------------------------------------------------------------- scene scan
    @cached_property
    def _scene(self) -> dict:
        """Validated file lists, poses and image size of the whole sequence (computed once per parser)."""
        root = Path(self.config.data)
        if not root.is_dir():
            raise DataError(f"scene directory not found: {root}")
        rgb_dir, cls_dir = root / RGB_DIR, root / CLASS_DIR
        for folder in (rgb_dir, cls_dir):
            if not folder.is_dir():
                raise DataError(f"missing folder: {folder} (expected Semantic-NeRF's Replica layout)")
        poses = read_trajectory(root / "traj_w_c.txt")
        n = len(poses)
        if n == 0:
            raise DataError(f"empty scene: {root / 'traj_w_c.txt'} has no poses")
        files = {"rgb": self._frames(rgb_dir, "rgb", n), "semantic_class": self._frames(cls_dir, "semantic_class", n)}
        if self.config.load_instances and (root / INSTANCE_DIR).is_dir():
            files["semantic_instance"] = self._frames(root / INSTANCE_DIR, "semantic_instance", n)
        if self.config.load_depth and (root / DEPTH_DIR).is_dir():
            files["depth"] = self._frames(root / DEPTH_DIR, "depth", n)
        width, height = image_size(files["rgb"][0])
        for paths in files.values():
            for p in paths:
                w, h = image_size(p)
                if (w, h) != (width, height):
                    raise DataError(f"image size mismatch: {p} is {w}x{h}, but {files['rgb'][0]} is {width}x{height}")
        return {"root": root, "poses": poses, "files": files, "width": width, "height": height}

    @staticmethod
    def _frames(folder: Path, prefix: str, n: int) -> list[Path]:
        frames = _list_frames(folder, prefix)
        if len(frames) != n or set(frames) != set(range(n)):
            missing = sorted(set(range(n)) - set(frames))
            extra = sorted(set(frames) - set(range(n)))
            detail = f"missing {folder / f'{prefix}_{missing[0]}.png'}" if missing else f"extra index {extra[0]}"
            raise DataError(
                f"frame count mismatch: {folder} has {len(frames)} {prefix}_N.png files, traj_w_c.txt has {n} poses "
                f"({detail})"
            )
        return [frames[i] for i in range(n)]

    @cached_property
    def class_table(self) -> ClassTable:
        """Contiguous classes over the whole sequence (both splits), as Semantic-NeRF remaps them."""
        scene = self._scene
        info_path = self.config.class_info_path
        if info_path is None and (scene["root"] / "info_semantic.json").is_file():
            info_path = scene["root"] / "info_semantic.json"
        info = load_class_info(info_path)
        present: set[int] = set()
        for p in scene["files"]["semantic_class"]:
            ids = np.unique(read_label(p))
            check_ids_in_table(ids, info, p)
            present.update(int(i) for i in ids)
        if not present - {0}:
            raise DataError(f"empty scene: no labelled pixels in {scene['root'] / CLASS_DIR}")
        return ClassTable.from_present_ids(present, info)

    # -------------------------------------------------------------------------------------------- intrinsics
    def _intrinsics(self) -> tuple[float, float, float, float]:
        scene = self._scene
        meta_path = scene["root"] / "scene_meta.json"
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                fx, fy, cx, cy = (float(meta[k]) for k in ("fx", "fy", "cx", "cy"))
                if (int(meta.get("width", scene["width"])), int(meta.get("height", scene["height"]))) == (
                    scene["width"],
                    scene["height"],
                ):
                    return fx, fy, cx, cy
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DataError(f"unreadable scene metadata: {meta_path} ({exc})") from None
        w, h = scene["width"], scene["height"]
        fx = w / 2.0 / math.tan(math.radians(self.config.hfov_degrees) / 2.0)
        return fx, fx, (w - 1) / 2.0, (h - 1) / 2.0

    # ------------------------------------------------------------------------------------------ normalisation
    @cached_property
    def _normalisation(self) -> tuple[Float[np.ndarray, "3 4"], float]:
        """(transform, scale) such that p_scene = scale * (R p_world + t) lies in [-1, 1]^3."""
        scene = self._scene
        points = None
        if self.config.scene_bounds == "depth" and "depth" in scene["files"]:
            cfg = self.config
            points = depth_points(
                scene["poses"], scene["files"]["depth"], cfg.depth_scale, self._intrinsics(), cfg.max_bounds_frames
            )
        return scene_normalisation(
            scene["poses"],
            points,
            self.config.orientation_method,
            self.config.bounds_margin,
            self.config.poses_bounds_padding,
        )

    # ----------------------------------------------------------------------------------------------- outputs
    def split_indices(self, split: str) -> list[int]:
        cfg = self.config
        return interleaved_split(
            len(self._scene["poses"]), cfg.train_every, cfg.test_offset, split, self._scene["root"]
        )

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        scene = self._scene
        indices = self.split_indices(split)
        table = self.class_table
        transform, scale = self._normalisation
        fx, fy, cx, cy = self._intrinsics()
        cameras = nerfstudio_cameras(
            scene["poses"][indices], transform, scale, fx, fy, cx, cy, scene["width"], scene["height"]
        )
        files = scene["files"]
        pick = lambda kind: [files[kind][i] for i in indices] if kind in files else None  # noqa: E731
        colors = torch.from_numpy(table.colors).float() / 255.0
        metadata = {
            "semantics": Semantics(filenames=pick("semantic_class"), classes=list(table.names), colors=colors),
            "semantic_lut": table.lut(),
            "class_raw_ids": list(table.raw_ids),
            "instance_filenames": pick("semantic_instance"),
            "depth_filenames": pick("depth"),
            "depth_unit_scale_factor": 1.0 / self.config.depth_scale,  # metres per unit (nerfstudio convention)
            "frame_indices": indices,
            "strict_sizes": True,
            "scene_bounded": True,  # the whole scene (its depth points) lies in the [-1, 1] box
        }
        return DataparserOutputs(
            image_filenames=pick("rgb"),
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
            metadata=metadata,
            dataparser_transform=torch.from_numpy(transform).float(),
            dataparser_scale=scale,
        )
