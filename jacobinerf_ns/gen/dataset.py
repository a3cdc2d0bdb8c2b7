"""The images of a multi-scene split (:mod:`jacobinerf_ns.gen.dataparser`): colour, shared-table labels, depth.

Each item holds ``image`` (H, W, 3), and when its scene has them ``semantics`` (H, W, 1) int64 ids of the shared
class table (-1 = void / unknown) and ``depth`` (H, W, 1) float32 z-depth in metres. Bad files raise a one-line
:class:`~jacobinerf_ns.errors.DataError` naming the file.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset

from jacobinerf_ns.data.image_io import read_label, read_rgb
from jacobinerf_ns.gen.bank import read_semantics


class GenSceneDataset(InputDataset):
    """See the module docstring."""

    exclude_batch_keys_from_device = InputDataset.exclude_batch_keys_from_device + ["semantics", "depth"]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        meta = dataparser_outputs.metadata
        self.semantic_files = meta.get("gen_semantic_files")
        self.depth_files = meta.get("gen_depth_files")
        self.depth_to_metres = meta.get("gen_depth_to_metres")
        self.image_scene = meta.get("gen_image_scene")
        self.records = meta.get("gen_records")

    def _hw(self, idx: int) -> tuple[int, int]:
        cams = self._dataparser_outputs.cameras
        return int(cams.height[idx]), int(cams.width[idx])

    def get_numpy_image(self, image_idx: int) -> npt.NDArray[np.uint8]:
        return read_rgb(self._dataparser_outputs.image_filenames[image_idx], expected_hw=self._hw(image_idx))

    def get_metadata(self, data: dict) -> dict:
        idx = int(data["image_idx"])
        out: dict[str, torch.Tensor] = {}
        if self.semantic_files is not None and self.semantic_files[idx] is not None:
            lut = self.records[self.image_scene[idx]].bank.lut
            labels = read_semantics(self.semantic_files[idx], lut, self._hw(idx))
            out["semantics"] = torch.from_numpy(labels.astype(np.int64))[..., None]
        if self.depth_files is not None and self.depth_files[idx] is not None:
            depth = read_label(self.depth_files[idx], expected_hw=self._hw(idx)).astype(np.float32)
            out["depth"] = torch.from_numpy(depth * float(self.depth_to_metres[idx]))[..., None]
        return out
