"""The dataset of a Replica-layout scene: colour plus semantic classes, instances and depth per image."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset

from jacobinerf_ns.data.image_io import read_label, read_rgb
from jacobinerf_ns.errors import DataError


class ReplicaSemanticDataset(InputDataset):
    """Returns ``image`` (H, W, 3) and, when the scene has them, ``semantics`` (H, W, 1) int64 contiguous class ids
    (-1 = void), ``instance`` (H, W, 1) int64 raw instance ids (0 = void) and ``depth`` (H, W, 1) float32 z-depth in
    scene units. Every file is checked against the camera's size; bad files raise a one-line :class:`DataError`.
    """

    exclude_batch_keys_from_device = InputDataset.exclude_batch_keys_from_device + ["semantics", "instance", "depth"]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        meta = dataparser_outputs.metadata
        self.semantic_files = meta["semantics"].filenames if "semantics" in meta else None
        self.semantic_lut = meta.get("semantic_lut")
        self.instance_files = meta.get("instance_filenames")
        self.depth_files = meta.get("depth_filenames")
        # nerfstudio's convention (its DepthDataset does the same): file value × metres per unit × dataparser scale
        self.depth_to_scene = float(meta.get("depth_unit_scale_factor", 1.0)) * float(
            dataparser_outputs.dataparser_scale
        )
        self.label_override = None
        """Optional ``(source, fn)``: ``semantics`` becomes ``fn(semantic or instance map)`` — used when a model is
        trained on propagation annotations, whose label space is the labels of one view."""

    def _source_hw(self, image_idx: int) -> tuple[int, int]:
        cams = self._dataparser_outputs.cameras
        return int(cams.height[image_idx]), int(cams.width[image_idx])

    def _target_hw(self, image_idx: int) -> tuple[int, int] | None:
        if self.scale_factor == 1.0:
            return None
        h, w = self._source_hw(image_idx)
        return int(h * self.scale_factor), int(w * self.scale_factor)

    def get_numpy_image(self, image_idx: int) -> npt.NDArray[np.uint8]:
        path = self._dataparser_outputs.image_filenames[image_idx]
        return read_rgb(path, expected_hw=self._source_hw(image_idx), resize_hw=self._target_hw(image_idx))

    def _label(self, files, image_idx: int) -> np.ndarray:
        return read_label(
            files[image_idx], expected_hw=self._source_hw(image_idx), resize_hw=self._target_hw(image_idx)
        )

    def get_metadata(self, data: dict) -> dict:
        idx = int(data["image_idx"])
        out: dict[str, torch.Tensor] = {}
        if self.semantic_files is not None:
            raw = self._label(self.semantic_files, idx)
            lut = self.semantic_lut
            if lut is not None:
                if raw.max() >= len(lut):
                    raise DataError(
                        f"class id {int(raw.max())} in {self.semantic_files[idx]} is outside the class table"
                    )
                raw = lut[raw]
            out["semantics"] = torch.from_numpy(raw.astype(np.int64))[..., None]
        if self.instance_files is not None:
            out["instance"] = torch.from_numpy(self._label(self.instance_files, idx).astype(np.int64))[..., None]
        if self.label_override is not None:
            source, fn = self.label_override
            out["semantics"] = fn(out["semantics" if source == "semantic" else "instance"])
        if self.depth_files is not None:
            depth = self._label(self.depth_files, idx).astype(np.float32) * self.depth_to_scene
            out["depth"] = torch.from_numpy(depth)[..., None]
        return out
