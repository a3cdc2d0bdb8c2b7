"""Sparse-semantic propagation as the (synthetic) teacher degrades: J-NeRF 3D vs teacher-2D NN vs feature-field NN.

For each level of the synthetic teacher's per-view noise and class-confusion rate, train ``jacobinerf-tiny`` and
``jacobinerf-features-tiny`` with that teacher, then propagate one click per class from training view 0 to every test
view (same protocol and clicks as ``benchmarks/propagation.py``); J-NeRF with the official 3D response and with unit
label directions (``jn-propagate --normalize-directions``). Writes a JSON table and a PNG plot to ``--out`` and
prints one JSON line per level. The teacher is synthetic (computed from ground truth) throughout.

Usage: ``python benchmarks/teacher_sweep.py [--scene DIR] [--out bench_out/teacher_sweep] [--seed 0]
[--default-jnerf CFG] [--default-features CFG] [--reuse]`` (the ``--default-*`` flags reuse runs trained with the
default teacher; ``--reuse`` reuses the runs an earlier sweep left under ``--out``)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_utils import (
    ensure_scene,
    feature_field_labeller,
    load_run,
    protocol,
    teacher_nn_labeller,
    train_method,
)

LEVELS = ((0.1, 0.0), (0.2, 0.05), (0.4, 0.15), (0.8, 0.3))
"""(view_noise, class_confusion); the second is the synthetic teacher's default."""


def _run(args, scene: Path, method: str, name: str, teacher) -> Path:
    """config.yml of ``method`` trained with ``teacher``: an earlier sweep's run under ``--out`` with ``--reuse``."""
    earlier = args.out / args.out.name / method / name / "config.yml"
    if args.reuse and earlier.is_file():
        return earlier
    return train_method(method, scene, args.out, name, dm_teacher=teacher)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"))
    parser.add_argument("--out", type=Path, default=Path("bench_out/teacher_sweep"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--default-jnerf", type=Path, default=None, help="config.yml of a jacobinerf-tiny run with the default teacher"
    )
    parser.add_argument(
        "--default-features",
        type=Path,
        default=None,
        help="config.yml of a jacobinerf-features-tiny run with the default teacher",
    )
    parser.add_argument("--reuse", action="store_true", help="reuse the runs an earlier sweep trained under --out")
    args = parser.parse_args()

    from jacobinerf_ns.propagator import JacobiLabeller, evaluate_labeller
    from jacobinerf_ns.teachers import SyntheticTeacherConfig

    start = time.perf_counter()
    scene = ensure_scene(args.scene)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for noise, confusion in LEVELS:
        name = f"noise{noise}-confusion{confusion}"
        teacher = SyntheticTeacherConfig(view_noise=noise, class_confusion=confusion, show_progress=False)
        default = teacher == SyntheticTeacherConfig(show_progress=False)
        jn_cfg = args.default_jnerf if default and args.default_jnerf else None
        ff_cfg = args.default_features if default and args.default_features else None
        jn = load_run(jn_cfg or _run(args, scene, "jacobinerf-tiny", f"jnerf-{name}", teacher))
        ff = load_run(ff_cfg or _run(args, scene, "jacobinerf-features-tiny", f"features-{name}", teacher))
        cams = jn.datamanager.train_dataset.cameras
        ann, targets = protocol(jn, "semantic", "sparse", args.seed)
        row = {"view_noise": noise, "class_confusion": confusion, "teacher": "synthetic (computed from ground truth)"}
        for key, unit in (("jnerf-3d", False), ("jnerf-3d-unit", True)):
            lab = JacobiLabeller(jn.model, ann, cams, "3d", targets, normalize_directions=unit)
            row[key] = evaluate_labeller(lab, targets, ann)["miou"]
        nn = teacher_nn_labeller(jn, ann.view, ann.pixels, ann.labels)
        row["teacher-2d-nn"] = evaluate_labeller(nn, targets, ann)["miou"]
        fnn = feature_field_labeller(ff.model, ann.view, cams, targets, ann.pixels, ann.labels)
        row["feature-field-nn"] = evaluate_labeller(fnn, targets, ann)["miou"]
        rows.append(row)
        print(json.dumps(row), flush=True)

    (args.out / "teacher_sweep.json").write_text(json.dumps({"rows": rows, "seconds": time.perf_counter() - start}))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    labels = [f"{r['view_noise']}/{r['class_confusion']}" for r in rows]
    for method in ("jnerf-3d", "jnerf-3d-unit", "teacher-2d-nn", "feature-field-nn"):
        ax.plot(labels, [100 * r[method] for r in rows], marker="o", label=method)
    ax.set_xlabel("synthetic teacher: per-view noise / class-confusion rate")
    ax.set_ylabel("sparse semantic mIoU (%)")
    ax.set_title("Propagation from one click per class vs teacher quality")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "teacher_sweep.png", dpi=120)
    print(json.dumps({"benchmark": "teacher_sweep", "seconds": round(time.perf_counter() - start, 1)}))


if __name__ == "__main__":
    main()
