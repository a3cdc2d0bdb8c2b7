"""Dataparser for ScanNet exports as the JacobiNeRF and GSNeRF papers use them (ScanNet's SensReader output plus
the 2D label archives), with semantic classes and instances.

Layout of one scene folder (``scene0000_00/``)::

    color/N.jpg                     colour (1296x968 in ScanNet v2)
    depth/N.png                     uint16 z-depth in millimetres (640x480), optional
    pose/N.txt                      4x4 camera-to-world, OpenCV convention; frames with -inf / NaN poses are skipped
    intrinsic/intrinsic_color.txt   4x4 (or 3x3) colour intrinsics; intrinsic_depth.txt for depth, optional
    label-filt/N.png                uint16 ScanNet raw label ids (0 = unannotated), optional
    instance-filt/N.png             instance ids (0 = unannotated), optional
    scannetv2-labels.combined.tsv   raw id -> NYU40 table (here or in the parent folder; needed for label_space nyu40)

Colour, depth and labels have different resolutions: every frame is resampled to ``image_size`` (default: the label
resolution when labels exist, else the depth resolution, else the colour's) — colour by area averaging, depth and
labels by nearest neighbour — and the colour intrinsics are scaled to it. Classes are NYU40 (``label_space nyu40``,
as the papers) or the raw ScanNet ids (``raw``); as for Replica, the classes present are numbered 0..C-1 and 0 is
void. Split, orientation and scaling into [-1, 1]^3 follow ``replica-semantic`` (``scene_geometry``).

Like every module of a dataparser specification, this one imports no method config or datamanager.
"""

from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs, Semantics
from nerfstudio.data.scene_box import SceneBox

from jacobinerf_ns.data.class_table import ClassInfo, ClassTable
from jacobinerf_ns.data.image_io import image_size, read_label
from jacobinerf_ns.data.scene_geometry import (
    depth_points,
    interleaved_split,
    nerfstudio_cameras,
    scale_intrinsics,
    scene_normalisation,
)
from jacobinerf_ns.errors import DataError

NYU40_NAMES = (
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture", "counter",
    "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat", "clothes", "ceiling", "books",
    "refridgerator", "television", "paper", "towel", "shower curtain", "box", "whiteboard", "person", "night stand",
    "toilet", "sink", "lamp", "bathtub", "bag", "otherstructure", "otherfurniture", "otherprop",
)  # fmt: skip
"""NYU40 class names by id 1..40 (ScanNet's benchmark label set)."""
LABEL_TABLE = "scannetv2-labels.combined.tsv"


class ScanNetInvalidPoseWarning(UserWarning):
    """Frames with non-finite poses (ScanNet marks lost tracking with -inf) were skipped."""


@dataclass
class ScanNetSemanticDataParserConfig(DataParserConfig):
    """ScanNet exports (color/, depth/, pose/, intrinsic/, label-filt/, instance-filt/)."""

    _target: type = field(default_factory=lambda: ScanNetSemanticDataParser)
    data: Path = Path("data/scannet/scene0000_00")
    """Scene folder (the one holding color/ and pose/)."""
    label_space: Literal["nyu40", "raw"] = "nyu40"
    """NYU40 classes through scannetv2-labels.combined.tsv (the papers' setting), or the raw ScanNet label ids."""
    label_table_path: Path | None = None
    """The raw-id table (scannetv2-labels.combined.tsv); default: in the scene folder or its parent."""
    image_size: tuple[int, int] | None = None
    """(height, width) every frame is resampled to; None: the label resolution (else depth, else colour)."""
    frame_step: int = 1
    """Use every n-th frame of the export (ScanNet streams at 30 Hz; 10 is a common choice)."""
    train_every: int = 5
    """Take every n-th (used) frame for training."""
    test_offset: int = 2
    """Test frames are every ``train_every``-th frame starting at this offset."""
    depth_scale: float = 1000.0
    """Depth PNG units per metre (millimetres)."""
    orientation_method: Literal["up", "none"] = "up"
    """Rotate the world so that the mean camera up is +z ("up") or keep the export's axes ("none")."""
    scene_bounds: Literal["depth", "poses"] = "depth"
    """What defines the box the scene is scaled into: back-projected depth points, or the camera centres."""
    bounds_margin: float = 0.05
    """Relative margin around the scene inside the [-1, 1] box."""
    poses_bounds_padding: float = 1.0
    """With ``scene_bounds="poses"``: metres added around the camera centres."""
    max_bounds_frames: int = 40
    """Frames whose depth is read to find the scene bounds (evenly spread)."""
    load_instances: bool = True
    """Read instance-filt/ when it exists."""
    load_depth: bool = True
    """Read depth/ when it exists."""


def _numbered(folder: Path, suffixes: tuple[str, ...]) -> dict[int, Path]:
    out = {}
    for p in folder.iterdir():
        m = re.fullmatch(r"(\d+)(\.[A-Za-z]+)", p.name)
        if m and m.group(2).lower() in suffixes:
            out[int(m.group(1))] = p
    return out


def read_matrix(path: Path, rows: int = 4) -> np.ndarray:
    """A whitespace-separated matrix file (4x4 poses; 3x3 or 4x4 intrinsics)."""
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        values = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError:
        raise DataError(f"{path}: not a matrix of numbers") from None
    if values.shape not in ((4, 4), (3, 3)) or (rows == 4 and values.shape != (4, 4)):
        raise DataError(f"{path}: expected a {rows}x{rows} matrix, found shape {values.shape}")
    return values


def read_label_table(path: Path) -> dict[int, tuple[int, str, str]]:
    """raw id -> (nyu40 id, nyu40 class name, raw category name) from scannetv2-labels.combined.tsv."""
    if not path.is_file():
        raise DataError(f"ScanNet label table not found: {path} (needed for label_space nyu40; or use label_space raw)")
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        return {
            int(r["id"]): (int(r["nyu40id"]), str(r.get("nyu40class", "")), str(r.get("raw_category", r["id"])))
            for r in rows
        }
    except (KeyError, ValueError, TypeError) as exc:
        raise DataError(f"unreadable ScanNet label table {path} ({exc.__class__.__name__}: {exc})") from None


class ScanNetSemanticDataParser(DataParser):
    """Reads a ScanNet export; see the module docstring."""

    config: ScanNetSemanticDataParserConfig

    @cached_property
    def _scene(self) -> dict:
        root = Path(self.config.data)
        if not root.is_dir():
            raise DataError(f"scene directory not found: {root}")
        for sub in ("color", "pose"):
            if not (root / sub).is_dir():
                raise DataError(f"missing folder: {root / sub} (expected a ScanNet export: color/, pose/, intrinsic/)")
        colors = _numbered(root / "color", (".jpg", ".jpeg", ".png"))
        if not colors:
            raise DataError(f"empty scene: no frames in {root / 'color'}")
        optional = {
            "depth": (root / "depth", self.config.load_depth),
            "semantic_class": (root / "label-filt", True),
            "semantic_instance": (root / "instance-filt", self.config.load_instances),
        }
        frames = sorted(colors)[:: max(1, self.config.frame_step)]
        poses, kept, invalid = [], [], []
        for f in frames:
            pose = read_matrix(root / "pose" / f"{f}.txt")
            if not np.all(np.isfinite(pose)):
                invalid.append(f)
                continue
            poses.append(pose)
            kept.append(f)
        if invalid:
            warnings.warn(
                f"ScanNet scene {root}: skipped {len(invalid)} frame(s) with invalid (non-finite) poses: "
                f"{', '.join(str(f) for f in invalid[:10])}{' ...' if len(invalid) > 10 else ''}",
                ScanNetInvalidPoseWarning,
                stacklevel=2,
            )
        if not kept:
            raise DataError(f"empty scene: every pose in {root / 'pose'} is invalid")
        files = {"rgb": [colors[f] for f in kept]}
        for kind, (folder, wanted) in optional.items():
            if wanted and folder.is_dir():
                numbered = _numbered(folder, (".png",))
                missing = [f for f in kept if f not in numbered]
                if missing:
                    raise DataError(f"frame count mismatch: missing {folder / f'{missing[0]}.png'}")
                files[kind] = [numbered[f] for f in kept]
        color_k = read_matrix(root / "intrinsic" / "intrinsic_color.txt", rows=3)
        depth_k_path = root / "intrinsic" / "intrinsic_depth.txt"
        sizes = {kind: image_size(paths[0]) for kind, paths in files.items()}  # (w, h)
        for kind, paths in files.items():
            for p in paths[1 :: max(1, len(paths) // 8)]:  # spot-check sizes (every file is read at load anyway)
                if image_size(p) != sizes[kind]:
                    raise DataError(f"image size mismatch: {p} is {image_size(p)}, {paths[0]} is {sizes[kind]}")
        return {
            "root": root,
            "frames": kept,
            "poses": np.stack(poses),
            "files": files,
            "sizes": sizes,
            "color_k": color_k,
            "depth_k": read_matrix(depth_k_path, rows=3) if depth_k_path.is_file() else None,
        }

    @property
    def output_hw(self) -> tuple[int, int]:
        if self.config.image_size is not None:
            return int(self.config.image_size[0]), int(self.config.image_size[1])
        sizes = self._scene["sizes"]
        for kind in ("semantic_class", "depth", "rgb"):
            if kind in sizes:
                w, h = sizes[kind]
                return h, w
        raise AssertionError("unreachable")

    def _intrinsics(self, kind: str, hw: tuple[int, int]) -> tuple[float, float, float, float]:
        """fx, fy, cx, cy (pixel centres at integers) of the ``kind`` images' camera resampled to ``hw``."""
        scene = self._scene
        k = scene["depth_k"] if kind == "depth" and scene["depth_k"] is not None else scene["color_k"]
        src_kind = "depth" if kind == "depth" and scene["depth_k"] is not None else "rgb"
        w, h = scene["sizes"][src_kind]
        return scale_intrinsics(k[0, 0], k[1, 1], k[0, 2], k[1, 2], (h, w), hw)

    @cached_property
    def class_table(self) -> ClassTable | None:
        scene = self._scene
        if "semantic_class" not in scene["files"]:
            return None
        present: set[int] = set()
        for p in scene["files"]["semantic_class"]:
            present.update(int(i) for i in np.unique(read_label(p)))
        lut_raw = self._raw_to_class()
        classes = {int(lut_raw[i]) for i in present if i < len(lut_raw)} - {0}
        if any(i >= len(lut_raw) for i in present):
            bad = next(i for i in present if i >= len(lut_raw))
            raise DataError(f"label id {bad} in {scene['root'] / 'label-filt'} is outside the label table")
        if not classes:
            raise DataError(f"empty scene: no labelled pixels in {scene['root'] / 'label-filt'}")
        return ClassTable.from_present_ids(classes, self._class_info())

    def _raw_to_class(self) -> np.ndarray:
        """raw ScanNet id -> class id of the chosen label space (0 = void)."""
        if self.config.label_space == "raw":
            return np.arange(65536, dtype=np.int64)
        table = read_label_table(self._label_table_path())
        lut = np.zeros(max(max(table) + 1, 65536), dtype=np.int64)
        for raw, (nyu, _, _) in table.items():
            lut[raw] = nyu if 0 < nyu <= 40 else 0
        return lut

    def _label_table_path(self) -> Path:
        if self.config.label_table_path is not None:
            return Path(self.config.label_table_path)
        root = self._scene["root"]
        for candidate in (root / LABEL_TABLE, root.parent / LABEL_TABLE):
            if candidate.is_file():
                return candidate
        return root / LABEL_TABLE

    def _class_info(self) -> ClassInfo:
        if self.config.label_space == "nyu40":
            names = {i + 1: n for i, n in enumerate(NYU40_NAMES)}
        else:
            path = self._label_table_path()
            names = {raw: cat for raw, (_, _, cat) in read_label_table(path).items()} if path.is_file() else {}
        return ClassInfo(names=names, colors={}, source=None)

    @cached_property
    def _normalisation(self) -> tuple[np.ndarray, float]:
        scene = self._scene
        points = None
        if self.config.scene_bounds == "depth" and "depth" in scene["files"]:
            w, h = scene["sizes"]["depth"]
            cfg = self.config
            intrinsics = self._intrinsics("depth", (h, w))
            points = depth_points(
                scene["poses"], scene["files"]["depth"], cfg.depth_scale, intrinsics, cfg.max_bounds_frames
            )
        return scene_normalisation(
            scene["poses"],
            points,
            self.config.orientation_method,
            self.config.bounds_margin,
            self.config.poses_bounds_padding,
        )

    def split_indices(self, split: str) -> list[int]:
        cfg = self.config
        return interleaved_split(
            len(self._scene["frames"]), cfg.train_every, cfg.test_offset, split, self._scene["root"]
        )

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        scene = self._scene
        indices = self.split_indices(split)
        transform, scale = self._normalisation
        h, w = self.output_hw
        fx, fy, cx, cy = self._intrinsics("rgb", (h, w))
        cameras = nerfstudio_cameras(scene["poses"][indices], transform, scale, fx, fy, cx, cy, w, h)
        files = scene["files"]
        pick = lambda kind: [files[kind][i] for i in indices] if kind in files else None  # noqa: E731
        metadata = {
            "instance_filenames": pick("semantic_instance"),
            "depth_filenames": pick("depth"),
            "depth_unit_scale_factor": 1.0 / self.config.depth_scale,
            "frame_indices": [scene["frames"][i] for i in indices],
            "strict_sizes": False,  # colour, depth and labels are resampled to the cameras' size
            "scene_bounded": True,
        }
        table = self.class_table
        if table is not None:
            lut = table.lut()
            raw_to_class = self._raw_to_class()
            metadata["semantic_lut"] = lut[np.minimum(raw_to_class, len(lut) - 1)]
            colors = torch.from_numpy(table.colors).float() / 255.0
            labels = pick("semantic_class")
            metadata["semantics"] = Semantics(filenames=labels, classes=list(table.names), colors=colors)
            metadata["class_raw_ids"] = list(table.raw_ids)
        return DataparserOutputs(
            image_filenames=pick("rgb"),
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])),
            metadata=metadata,
            dataparser_transform=torch.from_numpy(transform).float(),
            dataparser_scale=scale,
        )
