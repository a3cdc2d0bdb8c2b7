"""Many Replica-layout scenes at once, with one class table shared by name.

Scene sets (``data``, ``eval_data``) can be given as

* a directory with ``train/`` (and ``test/``) sub-directories of scenes (what ``jn-synth-many`` writes): ``train/``;
* a directory of scenes (every sub-directory holding a ``traj_w_c.txt``);
* a text file listing scene directories, one per line (relative to the file; ``#`` comments);
* one scene directory.

Splits: ``train`` = the training split of every training scene; ``test``/``val`` = the test split of every
evaluation ("unseen") scene: ``eval_data`` when given (or the environment variable ``JN_GEN_EVAL_DATA``, which lets
``ns-eval``, ``ns-render`` and ``ns-viewer`` point a finished run at other scenes), else ``<data>/test`` when it
exists, else the training scenes themselves. Every scene's *training* split is its **source bank**. Each scene is
read by the house Replica dataparser (its ``scene`` options: split, intrinsics, depth scale), then its scale is
undone: poses and depths of this family are in metres.

Class table: the names of the classes present in the training scenes (``data``, also when fine-tuning), sorted by
name, colours from the first scene that has them. A class of another scene whose name is not in the table is an
error (``unknown_classes="error"``, the default) or is ignored like void (``"void"``).

Fine-tuning on one unseen scene: ``finetune_scene`` makes that scene the only training and evaluation scene while
the class table still comes from ``data`` (so the label space matches the loaded checkpoint).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs, Semantics
from nerfstudio.data.scene_box import SceneBox

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.data.replica_dataparser import ReplicaSemanticDataParser, ReplicaSemanticDataParserConfig
from jacobinerf_ns.errors import DataError
from jacobinerf_ns.gen.bank import BankRecord
from jacobinerf_ns.gen.geometry import opencv_to_opengl, opengl_to_opencv

EVAL_DATA_ENV = "JN_GEN_EVAL_DATA"
"""Environment variable that overrides ``eval_data`` (any of the scene-set forms)."""


def _is_scene(path: Path) -> bool:
    return (path / "traj_w_c.txt").is_file()


def resolve_scenes(spec: Path) -> list[Path]:
    """The scene directories a scene-set specification names (module docstring)."""
    spec = Path(spec)
    if spec.is_file():
        scenes = []
        for line_no, line in enumerate(spec.read_text().splitlines(), start=1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            path = Path(line) if Path(line).is_absolute() else spec.parent / line
            if not _is_scene(path):
                raise DataError(f"{spec}:{line_no}: {path} is not a Replica-layout scene (no traj_w_c.txt)")
            scenes.append(path)
        if not scenes:
            raise DataError(f"scene list {spec} names no scene")
        return scenes
    if not spec.is_dir():
        raise DataError(f"scene set not found: {spec}")
    if _is_scene(spec):
        return [spec]
    if (spec / "train").is_dir():
        return resolve_scenes(spec / "train")
    scenes = sorted(p for p in spec.iterdir() if p.is_dir() and _is_scene(p))
    if not scenes:
        raise DataError(f"no Replica-layout scene (a folder with traj_w_c.txt) in {spec}")
    return scenes


@dataclass
class GenDataParserConfig(DataParserConfig):
    """Training and evaluation scene sets in the Replica layout, one shared class table (module docstring)."""

    _target: type = field(default_factory=lambda: GenDataParser)
    data: Path = Path("data/gen-scenes")
    """Training scenes: a folder with train/ (and test/), a folder of scenes, a list file, or one scene."""
    eval_data: Path | None = None
    """Unseen (evaluation) scenes, same forms; default <data>/test, else the training scenes. The environment
    variable JN_GEN_EVAL_DATA overrides it (for ns-eval / ns-render / ns-viewer on a finished run)."""
    finetune_scene: Path | None = None
    """Fine-tune on this one scene (its training views; evaluated on its test views); the class table still comes
    from ``data``, the pretraining scenes."""
    unknown_classes: Literal["error", "void"] = "error"
    """What to do with a class name (in an evaluation or fine-tuning scene) that no training scene has."""
    max_eval_views: int | None = None
    """Keep at most this many test views per evaluation scene (evenly spaced); None keeps all."""
    scene: ReplicaSemanticDataParserConfig = field(
        default_factory=lambda: ReplicaSemanticDataParserConfig(train_every=3, test_offset=1)
    )
    """How each scene is read (its ``data`` is ignored): split, intrinsics, depth scale."""


@dataclass
class SceneRecord:
    """One scene of the run: its bank (training split) and its test split."""

    path: Path
    bank: BankRecord
    test: BankRecord


class GenDataParser(DataParser):
    """See the module docstring."""

    config: GenDataParserConfig

    # --------------------------------------------------------------------------------------------- scene sets
    @cached_property
    def class_scenes(self) -> list[Path]:
        return resolve_scenes(self.config.data)

    @cached_property
    def train_scenes(self) -> list[Path]:
        if self.config.finetune_scene is not None:
            return resolve_scenes(self.config.finetune_scene)[:1]
        return self.class_scenes

    @cached_property
    def eval_scenes(self) -> list[Path]:
        env = os.environ.get(EVAL_DATA_ENV)
        if env:
            return resolve_scenes(Path(env))
        if self.config.eval_data is not None:
            return resolve_scenes(self.config.eval_data)
        if self.config.finetune_scene is not None:
            return self.train_scenes
        data = Path(self.config.data)
        if data.is_dir() and (data / "test").is_dir() and not _is_scene(data):
            return resolve_scenes(data / "test")
        return self.train_scenes

    @cached_property
    def all_scenes(self) -> list[Path]:
        """Training scenes first, then evaluation scenes not among them (global scene index = position)."""
        out: list[Path] = []
        seen: set[Path] = set()
        for p in self.train_scenes + self.eval_scenes:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(p)
        return out

    def scene_index(self, path: Path) -> int:
        key = path.resolve()
        for i, p in enumerate(self.all_scenes):
            if p.resolve() == key:
                return i
        raise KeyError(path)

    # ------------------------------------------------------------------------------------------ per scene
    def _parser(self, path: Path) -> ReplicaSemanticDataParser:
        cache = self.__dict__.setdefault("_parsers", {})
        key = path.resolve()
        if key not in cache:
            cfg = copy.deepcopy(self.config.scene)
            cfg.data = path
            cache[key] = cfg.setup()
        return cache[key]

    @cached_property
    def class_table(self) -> tuple[list[str], np.ndarray]:
        """Shared class names (sorted) and display colours (uint8)."""
        colours: dict[str, np.ndarray] = {}
        for path in self.class_scenes:
            table = self._parser(path).class_table
            for name, colour in zip(table.names, table.colors, strict=True):
                colours.setdefault(name, np.asarray(colour, dtype=np.uint8))
        names = sorted(colours)
        if not names:
            raise DataError(f"the training scenes in {self.config.data} have no labelled class")
        return names, np.stack([colours[n] for n in names])

    def _lut(self, path: Path) -> np.ndarray:
        names, _ = self.class_table
        index = {n: i for i, n in enumerate(names)}
        table = self._parser(path).class_table
        raw_to_scene = table.lut(max_raw=max(table.raw_ids))
        scene_to_shared = np.full(table.num_classes, IGNORE_LABEL, dtype=np.int64)
        for k, (raw, name) in enumerate(zip(table.raw_ids, table.names, strict=True)):
            if name in index:
                scene_to_shared[k] = index[name]
            elif self.config.unknown_classes == "error":
                raise DataError(
                    f"class {name!r} (id {raw}) of scene {path} is not in the training class table ({len(names)} "
                    f"classes of {self.config.data}); pass --pipeline.datamanager.dataparser.unknown-classes void to "
                    "ignore it"
                )
        return np.where(raw_to_scene >= 0, scene_to_shared[raw_to_scene.clip(min=0)], IGNORE_LABEL)

    def _split_record(self, path: Path, split: str) -> BankRecord:
        parser = self._parser(path)
        out = parser.get_dataparser_outputs(split=split)
        cams = out.cameras
        c2w = opengl_to_opencv(cams.camera_to_worlds.double())
        c2w[:, :3, 3] /= float(out.dataparser_scale)
        k = torch.zeros(len(cams), 3, 3, dtype=torch.float64)
        k[:, 0, 0], k[:, 1, 1] = cams.fx[:, 0].double(), cams.fy[:, 0].double()
        k[:, 0, 2], k[:, 1, 2], k[:, 2, 2] = cams.cx[:, 0].double(), cams.cy[:, 0].double(), 1.0
        meta = out.metadata
        sem = meta.get("semantics")
        depth_files = meta.get("depth_filenames")
        indices = list(range(len(cams)))
        if split != "train" and self.config.max_eval_views is not None and len(cams) > self.config.max_eval_views:
            indices = np.unique(np.linspace(0, len(cams) - 1, self.config.max_eval_views).round().astype(int)).tolist()
        pick = lambda seq: None if seq is None else [seq[i] for i in indices]  # noqa: E731
        return BankRecord(
            name=str(path),
            rgb=pick(list(out.image_filenames)),  # type: ignore[arg-type]
            semantic=pick(list(sem.filenames)) if sem is not None else None,
            depth=pick(depth_files),
            lut=self._lut(path),
            depth_to_metres=float(meta.get("depth_unit_scale_factor", 1.0 / parser.config.depth_scale)),
            k=k[indices].numpy(),
            c2w=c2w[indices].numpy(),
            hw=(int(cams.height[0]), int(cams.width[0])),
        )

    @cached_property
    def records(self) -> list[SceneRecord]:
        """Every scene of the run, in global scene order."""
        return [SceneRecord(p, self._split_record(p, "train"), self._split_record(p, "test")) for p in self.all_scenes]

    # ----------------------------------------------------------------------------------------------- outputs
    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        scenes = self.train_scenes if split == "train" else self.eval_scenes
        records = self.records
        names, colours = self.class_table
        c2ws, ks, hws, scene_ids, view_ids, rgb, sem, depth, depth_scale = [], [], [], [], [], [], [], [], []
        for path in scenes:
            s = self.scene_index(path)
            rec = records[s].bank if split == "train" else records[s].test
            n = len(rec.rgb)
            c2ws.append(torch.from_numpy(rec.c2w))
            ks.append(torch.from_numpy(rec.k))
            hws += [rec.hw] * n
            scene_ids += [s] * n
            view_ids += list(range(n)) if split == "train" else [-1] * n
            rgb += rec.rgb
            sem += rec.semantic if rec.semantic is not None else [None] * n
            depth += rec.depth if rec.depth is not None else [None] * n
            depth_scale += [rec.depth_to_metres] * n
        c2w = torch.cat(c2ws)
        k = torch.cat(ks)
        cameras = Cameras(
            camera_to_worlds=opencv_to_opengl(c2w).float(),
            fx=k[:, 0, 0:1].float(),
            fy=k[:, 1, 1:2].float(),
            cx=k[:, 0, 2:3].float(),
            cy=k[:, 1, 2:3].float(),
            width=torch.tensor([[w] for _, w in hws]),
            height=torch.tensor([[h] for h, _ in hws]),
            camera_type=CameraType.PERSPECTIVE,
            metadata={
                "gen_scene": torch.tensor(scene_ids, dtype=torch.long)[:, None],
                "gen_index": torch.tensor(view_ids, dtype=torch.long)[:, None],
            },
        )
        centres = c2w[:, :3, 3]
        lo, hi = centres.min(dim=0).values - 4.0, centres.max(dim=0).values + 4.0
        metadata = {
            "semantics": Semantics(
                filenames=[p for p in sem if p is not None],
                classes=list(names),
                colors=torch.from_numpy(colours) / 255.0,
            ),
            "gen_records": records,
            "gen_semantic_files": sem,
            "gen_depth_files": depth,
            "gen_depth_to_metres": depth_scale,
            "gen_image_scene": scene_ids,
        }
        return DataparserOutputs(
            image_filenames=rgb,
            cameras=cameras,
            scene_box=SceneBox(aabb=torch.stack([lo, hi]).float()),
            metadata=metadata,
            dataparser_transform=torch.eye(4)[:3],
            dataparser_scale=1.0,
        )
