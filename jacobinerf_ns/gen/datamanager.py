"""DataManager of the generalizable family: one target view per step, rays tagged with what the model must read.

Every training step draws a training scene, a target view of its source bank and ``train_num_rays_per_batch``
random pixels of it (seeded). The ray bundle's metadata says which scene (``gen_scene``), which bank view the target
is (``gen_index``, -1 for views outside the bank), the target camera (``gen_camera``: fx, fy, cx, cy, height, width
and the OpenCV camera-to-world in metres, :func:`pack_camera`) and each ray's pixel coordinate (``gen_uv``); the
model picks the source views itself from the bank (:mod:`jacobinerf_ns.gen.views`). Banks (each scene's training
split: images, labels, depths, cameras) are read once, lazily, and kept on the device: ``ns-eval``, ``ns-render``
and ``ns-viewer`` build this datamanager too and the model reads the same banks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.model_components.ray_generators import RayGenerator
from torch import Tensor

from jacobinerf_ns.gen.bank import SourceBank, load_bank
from jacobinerf_ns.gen.dataparser import GenDataParserConfig
from jacobinerf_ns.gen.dataset import GenSceneDataset
from jacobinerf_ns.gen.geometry import intrinsics_matrix, opengl_to_opencv

CAMERA_FIELDS = 22
"""Length of a packed camera: fx, fy, cx, cy, height, width, then the 4x4 OpenCV camera-to-world row by row."""


def pack_camera(cameras: Cameras) -> Float[Tensor, "n 22"]:
    """Per camera: intrinsics, size and the OpenCV camera-to-world (metres), as one row."""
    c2w = opengl_to_opencv(cameras.camera_to_worlds.reshape(-1, 3, 4).float())
    cols = [cameras.fx, cameras.fy, cameras.cx, cameras.cy, cameras.height, cameras.width]
    head = torch.cat([c.reshape(-1, 1).float() for c in cols], dim=1)
    return torch.cat([head, c2w.reshape(-1, 16)], dim=1)


def unpack_camera(row: Float[Tensor, " 22"]) -> tuple[Float[Tensor, "3 3"], Float[Tensor, "4 4"], int, int]:
    """(intrinsics, camera-to-world, height, width) of a packed camera."""
    k = intrinsics_matrix(row[0], row[1], row[2], row[3])
    return k, row[6:].reshape(4, 4), int(row[4]), int(row[5])


@dataclass
class GenDataManagerConfig(VanillaDataManagerConfig):
    """Multi-scene data for the generalizable family (module docstring)."""

    _target: type = field(default_factory=lambda: GenDataManager)
    dataparser: GenDataParserConfig = field(default_factory=GenDataParserConfig)
    """Training / unseen scene sets, fine-tuning scene, class table policy."""
    train_num_rays_per_batch: int = 1024
    """Rays per training step, all from one target view (GSNeRF: 1024)."""
    eval_num_rays_per_batch: int = 1024
    """Rays per evaluation batch (one test view of an unseen scene)."""
    sampling_seed: int = 0
    """Seed of the scene / view / pixel draws."""


class GenDataManager(VanillaDataManager[GenSceneDataset]):
    """See the module docstring."""

    config: GenDataManagerConfig

    def __init__(
        self,
        config: GenDataManagerConfig,
        device: Union[torch.device, str] = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        **kwargs,
    ):
        self._generator = torch.Generator().manual_seed(config.sampling_seed)
        self._banks: dict[int, SourceBank] = {}
        self._eval_items: dict[int, dict] = {}
        super().__init__(config, device=device, test_mode=test_mode, world_size=world_size, local_rank=local_rank)

    # --------------------------------------------------------------------------------------------- scenes
    @property
    def records(self):
        return self.dataparser.records  # type: ignore[attr-defined]

    @property
    def train_scene_ids(self) -> list[int]:
        return [self.dataparser.scene_index(p) for p in self.dataparser.train_scenes]  # type: ignore[attr-defined]

    @property
    def eval_scene_ids(self) -> list[int]:
        return [self.dataparser.scene_index(p) for p in self.dataparser.eval_scenes]  # type: ignore[attr-defined]

    @property
    def default_render_scene(self) -> int:
        """The scene a camera without scene metadata (the viewer's) is rendered from: the first unseen scene."""
        return self.eval_scene_ids[0]

    def source_bank(self, scene: int) -> SourceBank:
        """The source bank of a scene (global scene index), read on first use and kept on the device."""
        if scene not in self._banks:
            self._banks[scene] = load_bank(self.records[scene].bank).to(self.device)
        return self._banks[scene]

    def scene_has_depth(self, scene: int) -> bool:
        return self.records[scene].bank.depth is not None

    # ---------------------------------------------------------------------------------------------- setup
    def setup_train(self):
        cams = self.train_dataset.cameras
        self.train_ray_generator = RayGenerator(cams.to(self.device)).to(self.device)
        self.train_packed = pack_camera(cams).to(self.device)
        scene_of = cams.metadata["gen_scene"][:, 0]
        self.train_offsets = {int(s): int(torch.nonzero(scene_of == s)[0]) for s in torch.unique(scene_of)}

    def setup_eval(self):
        from nerfstudio.data.utils.dataloaders import FixedIndicesEvalDataloader, RandIndicesEvalDataloader

        cams = self.eval_dataset.cameras
        self.eval_ray_generator = RayGenerator(cams.to(self.device)).to(self.device)
        self.eval_packed = pack_camera(cams).to(self.device)
        self.fixed_indices_eval_dataloader = FixedIndicesEvalDataloader(
            input_dataset=self.eval_dataset, device=self.device
        )
        self.eval_dataloader = RandIndicesEvalDataloader(input_dataset=self.eval_dataset, device=self.device)

    # -------------------------------------------------------------------------------------------- batches
    def _pixels(self, h: int, w: int, n: int) -> tuple[Tensor, Tensor]:
        flat = torch.randint(0, h * w, (n,), generator=self._generator)
        return flat // w, flat % w

    def _tag(self, bundle: RayBundle, scene: int, index: int, packed: Tensor, ys: Tensor, xs: Tensor) -> RayBundle:
        n = len(ys)
        meta = dict(bundle.metadata or {})
        meta["gen_scene"] = torch.full((n, 1), scene, dtype=torch.long, device=self.device)
        meta["gen_index"] = torch.full((n, 1), index, dtype=torch.long, device=self.device)
        meta["gen_camera"] = packed.expand(n, -1)
        meta["gen_uv"] = torch.stack([xs, ys], dim=-1).to(self.device).float() + 0.5
        bundle.metadata = meta
        return bundle

    def next_train(self, step: int) -> tuple[RayBundle, dict]:
        self.train_count += 1
        ids = self.train_scene_ids
        scene = ids[int(torch.randint(0, len(ids), (1,), generator=self._generator))]
        bank = self.source_bank(scene)
        view = int(torch.randint(0, bank.num_views, (1,), generator=self._generator))
        h, w = bank.image_hw
        ys, xs = self._pixels(h, w, self.config.train_num_rays_per_batch)
        cam = self.train_offsets[scene] + view
        indices = torch.stack([torch.full_like(ys, cam), ys, xs], dim=-1)
        bundle = self.train_ray_generator(indices.to(self.device))
        bundle = self._tag(bundle, scene, view, self.train_packed[cam], ys, xs)
        yd, xd = ys.to(self.device), xs.to(self.device)
        batch: dict[str, Tensor] = {"image": bank.images[view, yd, xd], "indices": indices.to(self.device)}
        if bank.semantics is not None:
            batch["semantics"] = bank.semantics[view, yd, xd]
        if bank.depth is not None:
            batch["depth"] = bank.depth[view, yd, xd, None]
        return bundle, batch

    def _eval_item(self, idx: int) -> dict:
        if idx not in self._eval_items:
            self._eval_items[idx] = self.eval_dataset[idx]
        return self._eval_items[idx]

    def next_eval(self, step: int) -> tuple[RayBundle, dict]:
        self.eval_count += 1
        cams = self.eval_dataset.cameras
        idx = int(torch.randint(0, len(cams), (1,), generator=self._generator))
        item = self._eval_item(idx)
        h, w = item["image"].shape[:2]
        ys, xs = self._pixels(h, w, self.config.eval_num_rays_per_batch)
        indices = torch.stack([torch.full_like(ys, idx), ys, xs], dim=-1)
        bundle = self.eval_ray_generator(indices.to(self.device))
        scene = int(cams.metadata["gen_scene"][idx, 0])
        bundle = self._tag(bundle, scene, -1, self.eval_packed[idx], ys, xs)
        batch = {"image": item["image"][ys, xs, :3].to(self.device), "indices": indices.to(self.device)}
        if "semantics" in item:
            batch["semantics"] = item["semantics"][ys, xs, 0].to(self.device)
        if "depth" in item:
            batch["depth"] = item["depth"][ys, xs].to(self.device)
        return bundle, batch
