"""Label propagation on the default ``jn-synth`` scene: J-NeRF vs the paper's baselines, one protocol, one process.

Runs (trained here through nerfstudio's trainer unless given by path): ``jacobinerf-tiny`` (shaped), the same with
shaping off (the "no resonance" control), ``jacobinerf-features-tiny`` (feature field) and, per annotation,
``semantic-nerf-tiny`` trained on exactly those labels. The teacher is the synthetic one computed from ground truth
(every line says so). Protocol: training view 0 is the labelled view; sparse = one random pixel per label present
(seeded), dense = the whole view; labels absent from it are ignored; scores pooled over the test views.

Methods per (setting, target): ``jnerf-3d``, ``jnerf-3d-unit`` (3d with unit label directions,
``jn-propagate --normalize-directions``), ``jnerf-2d``, ``jnerf-2d-perturb`` (first ``--perturb-views`` test
views: one render per label), ``plain-nerf-3d`` / ``-3d-unit`` / ``-2d`` (shaping off), ``teacher-2d-nn``,
``feature-field-nn``, ``semantic-nerf``. Prints one JSON line per method × setting × target, one ``agreement`` line
(``2d`` vs ``2d-perturb``: label agreement and speed ratio, both on the first ``--perturb-views`` test views) and a
markdown table; writes both to ``--out``.

Usage: ``python benchmarks/propagation.py [--scene DIR] [--out bench_out/propagation] [--jnerf CFG]
[--plain CFG] [--features CFG] [--seed 0]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bench_utils import (
    ensure_scene,
    feature_field_labeller,
    load_run,
    protocol,
    subsample,
    teacher_nn_labeller,
    teacher_targets,
    train_method,
)

TEACHER = "synthetic (computed from ground truth)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"))
    parser.add_argument("--out", type=Path, default=Path("bench_out/propagation"))
    parser.add_argument("--jnerf", type=Path, default=None, help="config.yml of a jacobinerf-tiny run to reuse")
    parser.add_argument("--plain", type=Path, default=None, help="config.yml of a run with shaping off to reuse")
    parser.add_argument("--features", type=Path, default=None, help="config.yml of a feature-field run to reuse")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=None, help="train steps of every run (default: the presets')")
    parser.add_argument("--perturb-views", type=int, default=8)
    parser.add_argument("--max-views", type=int, default=None)
    parser.add_argument("--nn-pixels", type=int, default=4096)
    parser.add_argument("--targets", nargs="+", default=["semantic", "instance"])
    parser.add_argument("--settings", nargs="+", default=["sparse", "dense"])
    args = parser.parse_args()

    from jacobinerf_ns.propagator import JacobiLabeller, SemanticHeadLabeller, evaluate_labeller

    start_all = time.perf_counter()
    scene = ensure_scene(args.scene)
    args.out.mkdir(parents=True, exist_ok=True)
    steps = {} if args.steps is None else {"max_num_iterations": args.steps}
    shaping = {} if args.steps is None else {"shaping_start_step": args.steps // 3}
    runs = {
        "jnerf": args.jnerf or train_method("jacobinerf-tiny", scene, args.out, "jnerf", **steps, **shaping),
        "plain": args.plain
        or train_method(
            "jacobinerf-tiny", scene, args.out, "plain", nce_loss_weight=0.0, norm_loss_weight=0.0, **steps, **shaping
        ),
        "features": args.features or train_method("jacobinerf-features-tiny", scene, args.out, "features", **steps),
    }
    pipes = {name: load_run(path) for name, path in runs.items()}
    jn = pipes["jnerf"]
    dm = jn.datamanager
    train_cams = dm.train_dataset.cameras
    teacher_test = teacher_targets(jn)
    lines, agreement = [], []

    def emit(method: str, setting: str, target: str, result: dict) -> None:
        line = {"method": method, "setting": setting, "target": target, "teacher": TEACHER}
        line.update(
            {k: result[k] for k in ("miou", "accuracy", "class_accuracy", "s_per_view", "views", "num_classes")}
        )
        lines.append(line)
        print(json.dumps(line), flush=True)

    for target in args.targets:
        for setting in args.settings:
            ann, targets = protocol(jn, target, setting, args.seed)
            ann_path = args.out / f"annotations_{setting}_{target}.json"
            ann.save(ann_path)
            preds, seconds = {}, {}
            for run, prefix in (("jnerf", "jnerf"), ("plain", "plain-nerf")):
                for method in ("3d", "3d-unit", "2d", "2d-perturb"):
                    if run == "plain" and method == "2d-perturb":
                        continue
                    kernel, unit = ("3d", True) if method == "3d-unit" else (method, False)
                    lab = JacobiLabeller(pipes[run].model, ann, train_cams, kernel, targets, normalize_directions=unit)
                    views = min(args.perturb_views, len(targets)) if method == "2d-perturb" else args.max_views
                    result = evaluate_labeller(lab, targets, ann, views, keep_predictions=True)
                    if run == "jnerf" and method in ("2d", "2d-perturb"):
                        preds[method] = result["predictions"][: args.perturb_views]
                        seconds[method] = result["view_seconds"][: args.perturb_views]
                    emit(f"{prefix}-{method}", setting, target, result)
            same = torch.cat([(a == b).flatten() for a, b in zip(preds["2d"], preds["2d-perturb"], strict=True)])
            agreement.append(
                {
                    "setting": setting,
                    "target": target,
                    "same_labels": float(same.float().mean()),
                    # on the same views (the first --perturb-views), so that both times share the views' content
                    "speedup_2d_vs_perturb": sum(seconds["2d-perturb"]) / sum(seconds["2d"]),
                    "views": len(seconds["2d"]),
                    "num_labels": ann.num_labels,
                }
            )
            pixels, labels = subsample(ann, args.nn_pixels, args.seed)
            nn = teacher_nn_labeller(jn, teacher_test, pixels, labels)
            emit("teacher-2d-nn", setting, target, evaluate_labeller(nn, targets, ann, args.max_views))
            ff = feature_field_labeller(pipes["features"].model, ann.view, train_cams, targets, pixels, labels)
            emit("feature-field-nn", setting, target, evaluate_labeller(ff, targets, ann, args.max_views))
            sem_cfg = train_method(
                "semantic-nerf-tiny",
                scene,
                args.out,
                f"semantic-nerf-{setting}-{target}",
                dm_annotations=ann_path,
                dm_labelled_rays_per_batch=64 if setting == "sparse" else 512,
                **steps,
            )
            sem = SemanticHeadLabeller(load_run(sem_cfg).model, targets)
            emit("semantic-nerf", setting, target, evaluate_labeller(sem, targets, ann, args.max_views))

    for item in agreement:
        print(json.dumps({"benchmark": "propagation-agreement", "teacher": TEACHER, **item}), flush=True)

    table = [
        "| method | setting | target | mIoU | accuracy | class acc. | s/view | views |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lines:
        table.append(
            f"| {r['method']} | {r['setting']} | {r['target']} | {100 * r['miou']:.1f} | {100 * r['accuracy']:.1f} | "
            f"{100 * r['class_accuracy']:.1f} | {r['s_per_view']:.2f} | {r['views']} |"
        )
    markdown = "\n".join(table)
    print(markdown)
    total = time.perf_counter() - start_all
    (args.out / "results.json").write_text(
        json.dumps(
            {
                "teacher": TEACHER,
                "runs": {k: str(v) for k, v in runs.items()},
                "lines": lines,
                "agreement": agreement,
                "seconds": total,
            },
            indent=1,
        )
    )
    (args.out / "table.md").write_text(markdown + "\n")
    print(json.dumps({"benchmark": "propagation", "seconds": round(total, 1), "out": str(args.out)}))


if __name__ == "__main__":
    main()
