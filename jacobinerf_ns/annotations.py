"""Annotations for label propagation: the official protocol, label spaces, and their JSON form.

Protocol (official JacobiNeRF / Semantic-NeRF label propagation): one labelled view (training view index 0 by
default); ``sparse`` = one uniformly random pixel per label present in that view (seeded), ``dense`` = the whole
view. Labels are semantic classes (contiguous ids) or instances (raw ids > 0). Labels absent from the labelled view
are ignored: target pixels whose ground truth is absent or void are left out of the scores.

The JSON form lets every method (J-NeRF, the baselines, Semantic-NeRF trained on the same clicks) use exactly the
same annotations::

    {"target": "semantic", "setting": "sparse", "seed": 0, "view": 0, "frame": 0,
     "label_ids": [...], "label_names": [...], "pixels": [[y, x, label_id], ...]}

(``pixels`` lists the clicks of a sparse annotation; a dense annotation uses every valid pixel of the view.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Int
from torch import Tensor

from jacobinerf_ns.data.class_table import IGNORE_LABEL
from jacobinerf_ns.errors import ConfigError, DataError

Target = Literal["semantic", "instance"]
Setting = Literal["sparse", "dense"]


def valid_label_mask(labels: Tensor, target: Target) -> Tensor:
    """Pixels that carry a label: semantic ids >= 0 (void = -1), instance ids > 0 (void = 0)."""
    return labels >= 0 if target == "semantic" else labels > 0


@dataclass
class Annotation:
    """Clicks (or a dense label map) in one labelled view."""

    target: Target
    setting: Setting
    view: int
    """Index of the labelled view among the training views."""
    label_ids: list[int]
    """Labels present in the labelled view (class ids or instance ids), sorted; label index = position here."""
    label_names: list[str]
    pixels: Int[Tensor, "a 2"]
    """(y, x) of the annotated pixels."""
    labels: Int[Tensor, " a"]
    """Label index (into ``label_ids``) of each annotated pixel."""
    seed: int = 0
    frame: int | None = None
    """Frame number of the labelled view in the sequence (for reports)."""

    @property
    def num_labels(self) -> int:
        return len(self.label_ids)

    def to_index(self, labels: Tensor) -> Tensor:
        """Map raw labels (class / instance ids) to label indices; absent labels and void → -1."""
        lut_size = max(int(labels.max()) + 1 if labels.numel() else 1, max(self.label_ids) + 1)
        lut = torch.full((lut_size + 1,), IGNORE_LABEL, dtype=torch.long)
        lut[torch.tensor(self.label_ids)] = torch.arange(len(self.label_ids))
        idx = labels.long().clamp(min=-1)
        return torch.where(idx >= 0, lut[idx.clamp(min=0)], torch.full_like(idx, IGNORE_LABEL))

    def to_json(self) -> dict:
        return {
            "target": self.target,
            "setting": self.setting,
            "seed": self.seed,
            "view": self.view,
            "frame": self.frame,
            "label_ids": self.label_ids,
            "label_names": self.label_names,
            "pixels": [
                [int(y), int(x), int(self.label_ids[int(k)])]
                for (y, x), k in zip(self.pixels.tolist(), self.labels.tolist(), strict=True)
            ],
        }

    def save(self, path: Path) -> None:
        """Write the JSON form atomically (a temporary file beside it, then a rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(path)


def make_annotation(
    gt: Int[Tensor, "h w"],
    target: Target,
    setting: Setting,
    view: int,
    seed: int,
    names: dict[int, str],
    dense_stride: int = 1,
    frame: int | None = None,
) -> Annotation:
    """The official protocol on one labelled view's ground truth (see the module docstring)."""
    valid = valid_label_mask(gt, target)
    label_ids = sorted(int(v) for v in gt[valid].unique())
    if not label_ids:
        raise DataError(f"labelled view {view} has no labelled pixels for target '{target}'")
    ann = Annotation(
        target=target,
        setting=setting,
        view=view,
        label_ids=label_ids,
        label_names=[names.get(i, f"{target}_{i}") for i in label_ids],
        pixels=torch.zeros(0, 2, dtype=torch.long),
        labels=torch.zeros(0, dtype=torch.long),
        seed=seed,
        frame=frame,
    )
    index = ann.to_index(gt)
    if setting == "dense":
        ys, xs = torch.nonzero(index >= 0, as_tuple=True)
        keep = (ys % dense_stride == 0) & (xs % dense_stride == 0)
        ann.pixels = torch.stack([ys[keep], xs[keep]], dim=1)
        ann.labels = index[ys[keep], xs[keep]]
        return ann
    generator = torch.Generator().manual_seed(seed)
    pixels, labels = [], []
    for k in range(len(label_ids)):
        candidates = torch.nonzero(index == k)
        pick = candidates[int(torch.randint(0, len(candidates), (1,), generator=generator))]
        pixels.append(pick)
        labels.append(k)
    ann.pixels = torch.stack(pixels)
    ann.labels = torch.tensor(labels)
    return ann


def load_annotation(path: Path, image_hw: tuple[int, int], known_labels: set[int] | None = None) -> Annotation:
    """Read user clicks (the JSON form); clear errors for pixels outside the image and unknown labels."""
    if not path.is_file():
        raise DataError(f"annotation file not found: {path}")
    try:
        data = json.loads(path.read_text())
        target, view = data["target"], int(data["view"])
        rows = [(int(y), int(x), int(label)) for y, x, label in data["pixels"]]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"unreadable annotation file: {path} ({exc.__class__.__name__}: {exc})") from None
    if target not in ("semantic", "instance"):
        raise ConfigError(f"{path}: target must be 'semantic' or 'instance', got '{target}'")
    if not rows:
        raise ConfigError(f"{path}: no annotated pixels")
    h, w = image_hw
    for y, x, label in rows:
        if not (0 <= y < h and 0 <= x < w):
            raise ConfigError(f"{path}: annotated pixel (y={y}, x={x}) is outside the {w}x{h} image")
        if known_labels is not None and label not in known_labels:
            raise ConfigError(f"{path}: label {label} at (y={y}, x={x}) is not a known {target} id")
    label_ids = sorted({label for _, _, label in rows})
    names = data.get("label_names")
    if names is None or len(names) != len(label_ids):
        names = [f"{target}_{i}" for i in label_ids]
    position = {label: k for k, label in enumerate(label_ids)}
    return Annotation(
        target=target,
        setting=data.get("setting", "sparse"),
        view=view,
        label_ids=label_ids,
        label_names=list(names),
        pixels=torch.tensor([[y, x] for y, x, _ in rows]),
        labels=torch.tensor([position[lab] for *_, lab in rows]),
        seed=int(data.get("seed", 0)),
        frame=data.get("frame"),
    )
