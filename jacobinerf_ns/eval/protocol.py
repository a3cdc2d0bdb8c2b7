"""The official label-propagation protocol on a loaded run, and the nearest-neighbour baselines it is scored against.

Protocol (JacobiNeRF / Semantic-NeRF): training view ``labelled_view`` (0) is labelled; ``sparse`` = one seeded
random pixel per label present in it, ``dense`` = the whole view; every test view is a target; labels absent from
the labelled view are ignored; one confusion matrix is pooled over the targets (``propagator.evaluate_labeller``).

Baselines: teacher-2D nearest neighbour (the annotated pixels' teacher features against the test views' teacher
features, both in the training split's PCA basis) and feature-field nearest neighbour (the same with rendered
distilled features).
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

from jacobinerf_ns.annotations import Annotation, Target, make_annotation
from jacobinerf_ns.errors import ConfigError, DataError
from jacobinerf_ns.propagator import NearestNeighbourLabeller, ViewSet, render_view


def label_names(pipeline, scene, target: Target) -> dict[int, str]:
    """Label id → display name: class names, or ``<class>#<instance id>`` for instances."""
    classes = list(getattr(pipeline.datamanager.train_dataset.metadata.get("semantics"), "classes", []))
    if target == "semantic":
        return dict(enumerate(classes))
    names = {}
    if scene.instance is not None and scene.semantics is not None:
        inst, sem = scene.instance.flatten().cpu(), scene.semantics.flatten().cpu()
        for i in inst.unique().tolist():
            if i > 0:
                cls = int(sem[inst == i].mode().values)
                names[i] = f"{classes[cls] if 0 <= cls < len(classes) else 'void'}#{i}"
    return names


def ground_truth(pipeline, target: Target, split: str = "train") -> Int[Tensor, "n h w"]:
    """The run's ground-truth labels of a split for ``target`` (class ids, -1 void; instance ids, 0 void)."""
    dm = pipeline.datamanager
    scene = dm.train_scene if split == "train" else dm.eval_scene
    labels = getattr(scene, "semantics" if target == "semantic" else "instance")
    if labels is None:
        data = dm.train_dataset.metadata.get("data_description", "the run's data")
        raise DataError(f"{data} has no {target} labels")
    return labels.cpu().long()


def protocol(pipeline, target: Target, setting: str, seed: int, labelled_view: int = 0) -> tuple[Annotation, ViewSet]:
    """(annotation, targets) of the official protocol on a loaded run (module docstring)."""
    dm = pipeline.datamanager
    train_gt, test_gt = ground_truth(pipeline, target, "train"), ground_truth(pipeline, target, "test")
    if not 0 <= labelled_view < len(train_gt):
        raise ConfigError(f"labelled view {labelled_view} is not a training view (0..{len(train_gt) - 1})")
    frames = dm.train_dataparser_outputs.metadata.get("frame_indices")
    ann = make_annotation(
        train_gt[labelled_view],
        target,
        setting,  # type: ignore[arg-type]
        labelled_view,
        seed,
        label_names(pipeline, dm.train_scene, target),
        frame=None if frames is None else int(frames[labelled_view]),
    )
    return ann, ViewSet(dm.eval_dataset.cameras, test_gt)


def subsample(ann: Annotation, limit: int, seed: int) -> tuple[Tensor, Tensor]:
    """At most ``limit`` annotated pixels (dense setting) for nearest-neighbour look-ups; seeded."""
    if len(ann.pixels) <= limit:
        return ann.pixels, ann.labels
    pick = torch.randperm(len(ann.pixels), generator=torch.Generator().manual_seed(seed))[:limit]
    return ann.pixels[pick], ann.labels[pick]


def teacher_nn_labeller(pipeline, view: int, pixels: Tensor, labels: Tensor) -> NearestNeighbourLabeller:
    """Teacher-2D nearest neighbour: annotated pixels' teacher features (training view ``view``) against the test
    views' teacher features (one PCA basis for both)."""
    dm = pipeline.datamanager
    keys = dm.teacher_features.dense(view)[pixels[:, 0], pixels[:, 1]]
    test = dm.eval_teacher_features()
    return NearestNeighbourLabeller(keys, labels, lambda i: test.dense(i))


def feature_field_labeller(model, view: int, train_cameras, targets: ViewSet, pixels, labels):
    """Feature-field nearest neighbour: rendered features at the annotated pixels vs rendered target views."""
    from jacobinerf_ns.evaluation import render_pixels

    idx = torch.cat([torch.full((len(pixels), 1), view), pixels], dim=1)
    keys = render_pixels(model, train_cameras, idx, ["features"])["features"]
    return NearestNeighbourLabeller(keys, labels, lambda i: render_view(model, targets.camera(i))["features"])
