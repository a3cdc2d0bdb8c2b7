"""The dataset every method here reads: colour plus, when the dataparser provides them, semantic classes, instances
and depth per image — for our dataparsers (``replica-semantic``, ``scannet-semantic``) and for any nerfstudio
dataparser (``nerfstudio-data``, ``blender-data``, ...; those give colour, masks and sometimes depth).

Metadata read from the dataparser outputs (all optional):

* ``semantics``: nerfstudio's :class:`Semantics` (label PNG file names, class names, colours);
* ``semantic_lut``: raw label id → contiguous class id (-1 = void); without one, PNG values are class ids;
* ``instance_filenames``: instance PNGs (0 = void);
* ``depth_filenames`` with ``depth_unit_scale_factor``: nerfstudio's convention, depth in scene units = PNG value ×
  metres per unit × ``dataparser_scale``;
* ``strict_sizes``: when True (Replica), every file must have its camera's size — a mismatch is an error naming the
  file; otherwise (ScanNet, whose colour, depth and labels differ) files are resized to the camera's size (area for
  colour, nearest for labels and depth).

Colour is kept as uint8 (a capture of 300 full-HD frames is 1.9 GB so, 7.5 GB as float32); labels as int64 per item,
which the datamanager stores compactly.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.data.datasets.base_dataset import InputDataset

from jacobinerf_ns.data.image_io import read_label, read_rgb
from jacobinerf_ns.errors import DataError


class ReplicaSemanticDataset(InputDataset):
    """Returns ``image`` (H, W, 3) float32 in [0, 1] (as nerfstudio's datasets) and, when the data has them,
    ``semantics`` (H, W, 1) int64 contiguous class ids (-1 = void), ``instance`` (H, W, 1) int64 raw instance ids
    (0 = void) and ``depth`` (H, W, 1) float32 z-depth in scene units. Bad files raise a one-line
    :class:`DataError`."""

    exclude_batch_keys_from_device = InputDataset.exclude_batch_keys_from_device + ["semantics", "instance", "depth"]

    def __init__(self, dataparser_outputs: DataparserOutputs, scale_factor: float = 1.0):
        super().__init__(dataparser_outputs, scale_factor)
        meta = dataparser_outputs.metadata
        semantics = meta.get("semantics")
        self.semantic_files = list(semantics.filenames) if semantics is not None and semantics.filenames else None
        self.semantic_lut = meta.get("semantic_lut")
        self.instance_files = meta.get("instance_filenames")
        self.depth_files = meta.get("depth_filenames")
        self.strict_sizes = bool(meta.get("strict_sizes", False))
        # nerfstudio's convention (its DepthDataset does the same): file value × metres per unit × dataparser scale
        self.depth_to_scene = float(meta.get("depth_unit_scale_factor", 1.0)) * float(
            dataparser_outputs.dataparser_scale
        )
        self.label_override = None
        """Optional ``(source, fn)``: ``semantics`` becomes ``fn(semantic or instance map)`` — used when a model is
        trained on propagation annotations, whose label space is the labels of one view."""

    def _camera_hw(self, image_idx: int) -> tuple[int, int]:
        cams = self._dataparser_outputs.cameras
        h, w = int(cams.height[image_idx]), int(cams.width[image_idx])
        if self.scale_factor != 1.0:
            h, w = int(h * self.scale_factor), int(w * self.scale_factor)
        return h, w

    def _sizes(self, image_idx: int) -> dict:
        """read_* size arguments: strict (must equal the camera's size) or resized to it."""
        hw = self._camera_hw(image_idx)
        if self.strict_sizes:
            cams = self._dataparser_outputs.cameras
            source = (int(cams.height[image_idx]), int(cams.width[image_idx]))
            return {"expected_hw": source, "resize_hw": hw if hw != source else None}
        return {"resize_hw": hw}

    def get_numpy_image(self, image_idx: int) -> npt.NDArray[np.uint8]:
        path = self._dataparser_outputs.image_filenames[image_idx]
        return read_rgb(path, **self._sizes(image_idx))

    def _label(self, files, image_idx: int) -> np.ndarray:
        return read_label(files[image_idx], **self._sizes(image_idx))

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
