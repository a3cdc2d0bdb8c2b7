"""Teacher extraction speed, appearance vs synthetic side by side, and their one-click teacher-2D NN quality.

Prints ONE JSON line. On the same scene (every view; default: the ``jn-synth`` default scene, 150 views at 160x120,
generated into a temporary folder unless ``--scene`` holds one), in one process and without a cache
(``cache_dir=None``), the two teachers are timed alternately (best of ``--repeats``): ``seconds`` (wall clock of
:func:`compute_teacher_features`, i.e. extraction plus the dataset-level PCA when configured), ``cpu_seconds``,
``s_per_view``, and ``appearance_over_synthetic`` (the ratio of the wall times). The issue's target is
``target_s`` (30 s for the default scene on 2 cores): ``meets_target`` says whether the appearance teacher met it.

Quality (``quality``): the teacher-2D nearest-neighbour baseline under the official one-click protocol — training view
0 (Semantic-NeRF split: every 5th frame) labelled with one seeded random pixel per class present
(:func:`jacobinerf_ns.annotations.make_annotation`), every other pixel of every test view (offset 2) takes the class
of the most similar clicked teacher feature; mIoU, accuracy and class accuracy (fractions) from one confusion matrix
over the test views. ``miou`` is for ``--seed``; ``miou_seeds_mean`` / ``_min`` / ``_max`` over ``--num-seeds``
consecutive click seeds (one click per class is a noisy protocol). Both teachers' features come from one extraction of
all views (one PCA basis for the scene), labelled with the teacher's name: ``synthetic`` is computed from ground truth
(a near-oracle), ``appearance`` from pixels only.

``dino_offline_error_s``: how long the DINO teacher takes to fail, offline with no cached weights and no checkpoint
(it must fail at once with one line, before importing timm).

Usage: ``python benchmarks/teacher_speed.py [--scene DIR] [--repeats 1] [--seed 0] [--num-seeds 5]
[--set KEY=VALUE ...]`` (``--set`` overrides an appearance-teacher option, e.g. ``--set colour_weight=2.0``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from bench_utils import ensure_scene  # noqa: E402


def load_all_views(scene: Path):
    """Images, contiguous class ids and instance ids of every view (the dataset reader), plus the class names."""
    from jacobinerf_ns.data.datamanager import load_scene_tensors
    from jacobinerf_ns.data.replica_dataparser import ReplicaSemanticDataParserConfig
    from jacobinerf_ns.data.replica_dataset import ReplicaSemanticDataset

    parser = ReplicaSemanticDataParserConfig(data=scene, train_every=1, test_offset=0).setup()
    tensors = load_scene_tensors(ReplicaSemanticDataset(parser.get_dataparser_outputs("train")), "Loading views")
    return tensors, dict(enumerate(parser.class_table.names))


def teacher_inputs(tensors):
    from jacobinerf_ns.teachers import TeacherInputs

    n = tensors.shape[0]
    return TeacherInputs(
        images=[tensors.images[i] for i in range(n)],
        semantics=[tensors.semantics[i] for i in range(n)],
        instances=None if tensors.instance is None else [tensors.instance[i] for i in range(n)],
    )


def timed(config, inputs):
    from jacobinerf_ns.teachers import compute_teacher_features

    w0, c0 = time.perf_counter(), time.process_time()
    feats = compute_teacher_features(config, inputs, cache_dir=None)
    return feats, time.perf_counter() - w0, time.process_time() - c0


def one_click_quality(features, scene: Path, semantics, names, seeds: list[int]) -> dict:
    """Teacher-2D NN under the official sparse protocol, per click seed (first seed = the reported one)."""
    from jacobinerf_ns.annotations import make_annotation
    from jacobinerf_ns.data.replica_dataparser import ReplicaSemanticDataParserConfig
    from jacobinerf_ns.propagator import NearestNeighbourLabeller, ViewSet, evaluate_labeller

    split = ReplicaSemanticDataParserConfig(data=scene).setup()
    train, test = split.split_indices("train"), split.split_indices("test")
    targets = ViewSet(split.get_dataparser_outputs("test").cameras, semantics[test])
    dense = {}  # per-view dense features, computed once

    def view_features(frame: int):
        if frame not in dense:
            dense[frame] = features.dense(frame)
        return dense[frame]

    runs = []
    for seed in seeds:
        ann = make_annotation(semantics[train[0]], "semantic", "sparse", 0, seed, names, frame=train[0])
        keys = view_features(train[0])[ann.pixels[:, 0], ann.pixels[:, 1]]
        labeller = NearestNeighbourLabeller(keys, ann.labels, lambda i: view_features(test[i]))
        runs.append(evaluate_labeller(labeller, targets, ann))
    mious = [r["miou"] for r in runs]
    first = runs[0]
    return {
        "teacher": features.teacher_name,
        "is_synthetic": features.is_synthetic,
        "miou": round(first["miou"], 4),
        "accuracy": round(first["accuracy"], 4),
        "class_accuracy": round(first["class_accuracy"], 4),
        "num_classes": first["num_classes"],
        "miou_seeds_mean": round(sum(mious) / len(mious), 4),
        "miou_seeds_min": round(min(mious), 4),
        "miou_seeds_max": round(max(mious), 4),
        "seeds": seeds,
        "labelled_frame": train[0],
        "test_views": len(test),
    }


def dino_offline_error_seconds() -> tuple[float, str]:
    """Seconds until the DINO teacher fails offline without weights (torch.hub pointed at an empty folder)."""
    from jacobinerf_ns.teachers import DinoTeacherConfig, TeacherInputs, TeacherWeightsError, compute_teacher_features

    previous_hub, previous_env = torch.hub.get_dir(), os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        torch.hub.set_dir(tmp)
        inputs = TeacherInputs(images=torch.rand(1, 32, 48, 3, generator=torch.Generator().manual_seed(0)))
        start = time.perf_counter()
        try:
            compute_teacher_features(DinoTeacherConfig(pretrained=True, show_progress=False), inputs, Path(tmp) / "c")
            message = "no error (weights were found?)"
        except TeacherWeightsError as exc:
            message = str(exc)
        elapsed = time.perf_counter() - start
        torch.hub.set_dir(previous_hub)
    if previous_env is None:
        os.environ.pop("HF_HUB_OFFLINE", None)
    else:
        os.environ["HF_HUB_OFFLINE"] = previous_env
    return elapsed, message


def parse_overrides(pairs: list[str], config) -> dict:
    """``KEY=VALUE`` strings (Python literals) for fields of ``config``; unknown keys are an error."""
    names = {f.name for f in dataclasses.fields(config)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if key not in names:
            raise SystemExit(f"error: --set {pair}: {type(config).__name__} has no option {key!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=None, help="scene directory (default: generate jn-synth's)")
    parser.add_argument("--repeats", type=int, default=1, help="timed extractions per teacher (best is reported)")
    parser.add_argument("--seed", type=int, default=0, help="click seed of the reported one-click mIoU")
    parser.add_argument("--num-seeds", type=int, default=5, help="click seeds for the mean/min/max mIoU")
    parser.add_argument("--target-s", type=float, default=30.0, help="speed target of the appearance teacher (s)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    t0 = time.perf_counter()
    from jacobinerf_ns.teachers import AppearanceTeacherConfig, SyntheticTeacherConfig

    import_s = time.perf_counter() - t0
    scene = ensure_scene(args.scene)
    tensors, names = load_all_views(scene)
    inputs = teacher_inputs(tensors)
    appearance = AppearanceTeacherConfig(show_progress=False)
    overrides = parse_overrides(args.overrides, appearance)
    appearance = dataclasses.replace(appearance, **overrides)
    configs = {"appearance": appearance, "synthetic": SyntheticTeacherConfig(show_progress=False)}

    best: dict[str, tuple] = {}
    for _ in range(max(1, args.repeats)):
        for key, config in configs.items():  # alternate, so machine noise hits both alike
            feats, wall, cpu = timed(config, inputs)
            if key not in best or wall < best[key][1]:
                best[key] = (feats, wall, cpu)
    n = len(inputs)
    timing = {
        key: {
            "teacher": feats.teacher_name,
            "seconds": round(wall, 3),
            "cpu_seconds": round(cpu, 3),
            "s_per_view": round(wall / n, 5),
            "grid_hw": list(feats.grid_hw),
            "dim": feats.feature_dim,
            "raw_dim": configs[key].raw_dim(),
        }
        for key, (feats, wall, cpu) in best.items()
    }
    seeds = [args.seed + k for k in range(max(1, args.num_seeds))]
    quality = {
        key: one_click_quality(feats, scene, tensors.semantics, names, seeds) for key, (feats, _, _) in best.items()
    }
    dino_s, dino_message = dino_offline_error_seconds()
    print(
        json.dumps(
            {
                "benchmark": "teacher_speed",
                "scene": str(scene),
                "num_views": n,
                "image_hw": list(inputs.image_hw),
                "appearance": timing["appearance"],
                "synthetic": timing["synthetic"],
                "appearance_over_synthetic": round(best["appearance"][1] / best["synthetic"][1], 3),
                "target_s": args.target_s,
                "meets_target": best["appearance"][1] <= args.target_s,
                "quality": quality,
                "dino_offline_error_s": round(dino_s, 3),
                "dino_offline_error": dino_message[:200],
                "appearance_overrides": overrides,
                "repeats": max(1, args.repeats),
                "import_seconds": round(import_s, 3),
                "torch_threads": torch.get_num_threads(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "cpus": os.cpu_count(),
                "load_avg_1min": round(os.getloadavg()[0], 2),
                "python": platform.python_version(),
                "torch": torch.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
