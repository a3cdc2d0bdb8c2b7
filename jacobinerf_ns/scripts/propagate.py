"""``jn-propagate``: label propagation from one labelled view of a trained ``jacobinerf`` run to every test view.

The labelled view and the clicks follow the official protocol (training view 0 by default; ``sparse``: one random
pixel per label present in it, seeded; ``dense``: the whole view plus a small aggregator MLP); labels absent from the
labelled view are ignored in the scores. ``--annotations FILE`` uses your own clicks instead (JSON: see
:mod:`jacobinerf_ns.annotations`). Writes mIoU, accuracy, class accuracy, per-label IoU, the number of labels,
seconds per target view, and (with ``--render-output-path``) label images.

Example::

    jn-propagate --load-config outputs/demo/jacobinerf-tiny/demo/config.yml --setting sparse --target semantic \\
        --output-path propagation.json --render-output-path renders/propagation

The default read-out is ``2d-cos`` (|cos| of the rendered Jacobian with each label's direction: the quantity shaping
trains), the best one measured on every scene, setting and target of ``benchmarks/propagation.py``; the paper's
official ``3d`` read-out stays selectable with ``--method 3d``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import tyro

from jacobinerf_ns.errors import DataError
from jacobinerf_ns.propagation import DEFAULT_PERTURB_T


@dataclass
class Propagate:
    """Propagate labels from one labelled view of a jacobinerf run to its test views."""

    load_config: Path
    """config.yml of a jacobinerf run."""
    setting: Literal["sparse", "dense"] = "sparse"
    """``sparse``: one click per label; ``dense``: the whole labelled view (with the aggregator)."""
    target: Literal["semantic", "instance"] = "semantic"
    """Propagate semantic classes or instances."""
    method: Literal["3d", "2d", "2d-perturb", "2d-cos"] = "2d-cos"
    """``2d-cos`` (ours, the default: |cos| of Jacobians, what shaping trains; the best measured; one render),
    ``3d`` (official, one render), ``2d`` (first order, one render), ``2d-perturb`` (official, one render per
    label)."""
    seed: int = 0
    """Seed of the clicks."""
    labelled_view: int = 0
    """Training-view index of the labelled view (official: 0)."""
    annotations: Path | None = None
    """Your own clicks (JSON) instead of the protocol's."""
    perturb_t: float = DEFAULT_PERTURB_T
    """Perturbation size t of ``2d-perturb`` (official 0.1, which on our runs is non-linear and labels worse; see
    ``jacobinerf_ns.propagation.DEFAULT_PERTURB_T``)."""
    normalize_3d: bool = False
    """Divide each 3D response map by its per-image maximum (official option)."""
    normalize_directions: bool = False
    """Rescale every label direction to a unit channel mean before propagating (ours: removes the dependence of the
    3D response on how saturated the clicked pixel's colour is)."""
    max_views: int | None = None
    """Evaluate only the first n test views."""
    output_path: Path = Path("propagation.json")
    """Where to write the scores (JSON)."""
    render_output_path: Path | None = None
    """Folder for label images (uint16 ids and colour maps) of every target view."""
    save_annotations: Path | None = None
    """Also write the annotations used (to train baselines on exactly the same clicks)."""

    def main(self) -> dict:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from jacobinerf_ns.annotations import load_annotation
        from jacobinerf_ns.eval.protocol import ground_truth, label_names, protocol
        from jacobinerf_ns.propagator import JacobiLabeller, ViewSet, evaluate_labeller, require_jacobian_head

        if not self.load_config.is_file():
            raise DataError(f"run config not found: {self.load_config}")
        config, pipeline = _load_run(self.load_config)
        require_jacobian_head(pipeline.model, where=f"run {self.load_config}")
        dm = pipeline.datamanager
        if self.annotations is not None:
            train_gt = ground_truth(pipeline, self.target, "train")
            names = label_names(pipeline, dm.train_scene, self.target)
            n, h, w = train_gt.shape
            known = {int(v) for v in train_gt.unique()} if self.target == "instance" else set(range(len(names)))
            ann = load_annotation(self.annotations, (h, w), known_labels=known)
            ann.label_names = [names.get(i, ann.label_names[k]) for k, i in enumerate(ann.label_ids)]
            targets = ViewSet(dm.eval_dataset.cameras, ground_truth(pipeline, self.target, "test"))
        else:
            ann, targets = protocol(pipeline, self.target, self.setting, self.seed, self.labelled_view)
        if self.save_annotations is not None:
            ann.save(self.save_annotations)
        labeller = JacobiLabeller(
            pipeline.model,
            ann,
            dm.train_dataset.cameras,
            self.method,
            targets,
            perturb_t=self.perturb_t,
            normalize_3d=self.normalize_3d,
            normalize_directions=self.normalize_directions,
        )
        result = evaluate_labeller(
            labeller, targets, ann, self.max_views, self.render_output_path, colors=_label_colors(pipeline, ann)
        )
        meta = dm.train_dataset.metadata
        result = {
            "method": f"jnerf-{self.method}",
            "setting": ann.setting,
            "target": self.target,
            "teacher": _teacher_label(meta),
            "run": str(self.load_config),
            "labelled_view": ann.view,
            "labelled_frame": ann.frame,
            "clicks": len(ann.pixels) if ann.setting == "sparse" else None,
            "seed": self.seed,
            "perturb_t": self.perturb_t,
            "normalize_3d": self.normalize_3d,
            "normalize_directions": self.normalize_directions,
            **result,
        }
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        self.output_path.write_text(json.dumps(result, indent=2))
        print(
            f"{result['method']} {result['setting']} {result['target']}: mIoU {100 * result['miou']:.1f} %, "
            f"accuracy {100 * result['accuracy']:.1f} %, class accuracy {100 * result['class_accuracy']:.1f} %, "
            f"{result['s_per_view']:.2f} s/view over {result['views']} views (teacher: {result['teacher']}) "
            f"-> {self.output_path}"
        )
        return result


def _load_run(path: Path):
    """nerfstudio's ``eval_setup`` (test split, latest checkpoint)."""
    from nerfstudio.utils.eval_utils import eval_setup

    config, pipeline, _, _ = eval_setup(path, test_mode="test")
    return config, pipeline


def _label_colors(pipeline, ann):
    """Display colours of the annotation's labels: the dataset's class colours for classes, else a fixed palette."""
    import numpy as np

    from jacobinerf_ns.data.class_table import palette

    semantics = pipeline.datamanager.train_dataset.metadata.get("semantics")
    if ann.target == "semantic" and semantics is not None and len(semantics.colors) > max(ann.label_ids):
        colors = (semantics.colors[ann.label_ids].cpu().numpy() * 255).round()
        return colors.clip(0, 255).astype(np.uint8)
    return palette(ann.num_labels)


def _teacher_label(meta: dict) -> str:
    name = str(meta.get("teacher_name", "none"))
    if not meta.get("teacher_is_synthetic"):
        return name
    kind = "computed from ground truth" if "synthetic" in name else "synthetic, computed from ground truth"
    return f"{name} ({kind})"


def entrypoint() -> None:
    tyro.cli(Propagate).main()


if __name__ == "__main__":
    entrypoint()
