"""Label propagation on several ``jn-synth`` scenes, per teacher: J-NeRF vs the paper's baselines, one protocol.

Per scene (``--scenes N``: jn-synth defaults with seeds 0..N-1) and teacher (``--teachers appearance synthetic``;
``appearance`` sees only pixels, ``synthetic`` is computed from ground truth — every line says which):

* runs, trained here through nerfstudio's trainer (``--reuse`` keeps those already under ``--out``):
  ``jacobinerf-tiny`` (shaped, per teacher), the same with shaping off (``plain``: no teacher enters its training,
  one per scene), ``jacobinerf-features-tiny`` (per teacher) and, per annotation, ``semantic-nerf-tiny`` trained on
  exactly those labels (one per scene);
* protocol (official): training view 0 labelled; ``sparse`` = one seeded random pixel per label present, ``dense``
  = the whole view (+ the aggregator MLP for J-NeRF read-outs); labels absent from it ignored; one confusion matrix
  pooled over the test views;
* rows: ``jnerf-<readout>`` and ``plain-nerf-<readout>`` for every read-out (``3d`` official, ``3d-unit``, ``2d``,
  ``2d-cos``; ``2d-perturb`` with ``--perturb`` on the first ``--perturb-views`` views), ``teacher-2d-nn``,
  ``feature-field-nn``, ``semantic-nerf``; plus the test PSNR of every trained run (``psnr`` lines).

Prints one JSON line per method × setting × target × scene × teacher (keys ``method``, ``setting``, ``target``,
``teacher``, ``scene``, ``miou``, ``accuracy``, ``class_accuracy``, ``s_per_view``, ``views``, ``num_classes``), then
per teacher a markdown table of the means over scenes with their spread (min–max); writes everything to ``--out``.

Usage: ``python benchmarks/propagation.py [--teachers appearance synthetic] [--scenes 3] [--out DIR] [--reuse]
[--targets semantic instance] [--settings sparse dense] [--readouts 3d 3d-unit 2d 2d-cos] [--perturb]
[--steps N] [--semantic-steps N] [--seeds S ...] [--include OTHER/results.json ...] [--results-name NAME]``.
Scenes can run in separate processes (``--seeds 1 --results-name results_seed1``) and be tabled together
(``--seeds --include OUT/results_seed*.json``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from bench_utils import feature_field_labeller, load_run, protocol, subsample, teacher_nn_labeller, train_method

READOUTS = ("3d", "3d-unit", "2d", "2d-cos")


def scene_dir(root: Path, seed: int) -> Path:
    """The default jn-synth scene of ``seed`` (generated when missing)."""
    from jacobinerf_ns.data.synth import SynthConfig, generate_scene

    path = root / f"seed_{seed}"
    if not (path / "traj_w_c.txt").is_file():
        generate_scene(SynthConfig(output_dir=path, seed=seed, quiet=True, export_mesh=False, overwrite=True))
    return path


def trained(method: str, scene: Path, out: Path, name: str, reuse: bool, **options) -> Path:
    """``train_method`` unless ``reuse`` finds the run already under ``out`` (``out/<out.name>/<method>/<name>``) with
    its final checkpoint (an interrupted run is trained again)."""
    from nerfstudio.configs.method_configs import all_methods

    config = out / out.name / method / name / "config.yml"
    steps = int(options.get("max_num_iterations", all_methods[method].max_num_iterations))
    if reuse and (config.parent / "nerfstudio_models" / f"step-{steps - 1:09d}.ckpt").is_file():
        return config
    return train_method(method, scene, out, name, **options)


def psnr_of(run: Path) -> float:
    return float(load_run(run).get_average_eval_image_metrics()["psnr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out/propagation"))
    parser.add_argument("--scenes-dir", type=Path, default=None, help="default: OUT/scenes")
    parser.add_argument("--scenes", type=int, default=3, help="jn-synth scenes, seeds 0..N-1")
    parser.add_argument(
        "--seeds", type=int, nargs="*", default=None, help="run only these scene seeds (none: only table --include)"
    )
    parser.add_argument(
        "--include", type=Path, nargs="*", default=[], help="results.json of other invocations to table with these"
    )
    parser.add_argument("--results-name", default="results", help="write OUT/<name>.json and OUT/<name>.md")
    parser.add_argument("--teachers", nargs="+", default=["appearance", "synthetic"])
    parser.add_argument("--targets", nargs="+", default=["semantic", "instance"])
    parser.add_argument("--settings", nargs="+", default=["sparse", "dense"])
    parser.add_argument("--readouts", nargs="+", default=list(READOUTS))
    parser.add_argument("--perturb", action="store_true", help="also the official 2d-perturb (one render per label)")
    parser.add_argument("--perturb-views", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0, help="seed of the clicks")
    parser.add_argument("--steps", type=int, default=None, help="train steps of the J-NeRF / feature runs")
    parser.add_argument("--semantic-steps", type=int, default=None, help="train steps of the Semantic-NeRF runs")
    parser.add_argument("--max-views", type=int, default=None)
    parser.add_argument("--nn-pixels", type=int, default=4096)
    parser.add_argument("--reuse", action="store_true", help="reuse runs already trained under --out")
    parser.add_argument("--jnerf-override", nargs="*", default=[], help="KEY=VALUE model overrides of the shaped runs")
    args = parser.parse_args()

    from jacobinerf_ns.propagator import JacobiLabeller, SemanticHeadLabeller, evaluate_labeller

    start_all = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    scenes_root = args.scenes_dir or args.out / "scenes"
    steps = {} if args.steps is None else {"max_num_iterations": args.steps}
    shaping = {} if args.steps is None else {"shaping_start_step": args.steps * 3 // 10}
    sem_steps = {} if args.semantic_steps is None else {"max_num_iterations": args.semantic_steps}
    overrides = {k: float(v) for k, v in (item.split("=", 1) for item in args.jnerf_override)}
    lines: list[dict] = []

    def emit(line: dict) -> None:
        lines.append(line)
        print(json.dumps(line), flush=True)

    for path in args.include:  # e.g. other scenes run in another process: tabled together, not re-run
        lines += [r for r in json.loads(path.read_text())["lines"]]
    for seed in args.seeds if args.seeds is not None else range(args.scenes):
        scene = scene_dir(scenes_root, seed)
        out = args.out / f"seed_{seed}"
        out.mkdir(parents=True, exist_ok=True)
        plain = trained(
            "jacobinerf-tiny", scene, out, "plain", args.reuse, teacher=args.teachers[0],
            nce_loss_weight=0.0, norm_loss_weight=0.0, **steps, **shaping,
        )  # fmt: skip
        emit({"kind": "psnr", "run": "plain", "scene": seed, "teacher": "none (shaping off)", "psnr": psnr_of(plain)})
        plain_pipe = load_run(plain)
        sem_runs: dict[tuple[str, str], Path] = {}
        for teacher in args.teachers:
            jn_run = trained(
                "jacobinerf-tiny", scene, out, f"jnerf-{teacher}", args.reuse, teacher=teacher,
                **steps, **shaping, **overrides,
            )  # fmt: skip
            ff_run = trained(
                "jacobinerf-features-tiny", scene, out, f"features-{teacher}", args.reuse, teacher=teacher, **steps
            )
            jn = load_run(jn_run)
            label = jn.datamanager.train_dataset.metadata["teacher_name"]
            if jn.datamanager.train_dataset.metadata["teacher_is_synthetic"]:
                label += " (computed from ground truth)"
            emit({"kind": "psnr", "run": "jnerf", "scene": seed, "teacher": label, "psnr": psnr_of(jn_run)})
            ff_model = load_run(ff_run).model
            train_cams = jn.datamanager.train_dataset.cameras
            for target in args.targets:
                for setting in args.settings:
                    ann, targets = protocol(jn, target, setting, args.seed)

                    def line(method: str, result: dict) -> dict:
                        keys = ("miou", "accuracy", "class_accuracy", "s_per_view", "views", "num_classes")
                        return {"method": method, "setting": setting, "target": target, "teacher": label,  # noqa: B023
                                "scene": seed, **{k: result[k] for k in keys}}  # noqa: B023  # fmt: skip

                    readouts = list(args.readouts) + (["2d-perturb"] if args.perturb else [])
                    for run_name, prefix, pipe in (("jnerf", "jnerf", jn), ("plain", "plain-nerf", plain_pipe)):
                        for readout in readouts:
                            if run_name == "plain" and readout == "2d-perturb":
                                continue
                            kernel, unit = ("3d", True) if readout == "3d-unit" else (readout, False)
                            lab = JacobiLabeller(
                                pipe.model, ann, train_cams, kernel, targets, normalize_directions=unit
                            )
                            views = min(args.perturb_views, len(targets)) if readout == "2d-perturb" else args.max_views
                            emit(line(f"{prefix}-{readout}", evaluate_labeller(lab, targets, ann, views)))
                    pixels, labels = subsample(ann, args.nn_pixels, args.seed)
                    nn = teacher_nn_labeller(jn, ann.view, pixels, labels)
                    emit(line("teacher-2d-nn", evaluate_labeller(nn, targets, ann, args.max_views)))
                    ff = feature_field_labeller(ff_model, ann.view, train_cams, targets, pixels, labels)
                    emit(line("feature-field-nn", evaluate_labeller(ff, targets, ann, args.max_views)))
                    key = (setting, target)
                    if key not in sem_runs:
                        ann_path = out / f"annotations_{setting}_{target}.json"
                        ann.save(ann_path)
                        sem_runs[key] = trained(
                            "semantic-nerf-tiny", scene, out, f"semantic-nerf-{setting}-{target}", args.reuse,
                            dm_annotations=ann_path, dm_labelled_rays_per_batch=64 if setting == "sparse" else 512,
                            **sem_steps,
                        )  # fmt: skip
                    sem = SemanticHeadLabeller(load_run(sem_runs[key]).model, targets)
                    emit(line("semantic-nerf", evaluate_labeller(sem, targets, ann, args.max_views)))
            del jn, ff_model

    tables = []
    for teacher in sorted({r["teacher"] for r in lines if "method" in r}):
        rows = [r for r in lines if r.get("teacher") == teacher and "method" in r]
        table = [
            f"Teacher: {teacher}. mIoU (%), mean over {len({r['scene'] for r in rows})} scene(s) [min–max]",
            "",
            "| method | setting | target | mIoU | accuracy | class acc. |",
            "|---|---|---|---|---|---|",
        ]
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault((r["method"], r["setting"], r["target"]), []).append(r)
        for (method, setting, target), rs in groups.items():
            m = [100 * r["miou"] for r in rs]
            acc = statistics.mean(100 * r["accuracy"] for r in rs)
            cls = statistics.mean(100 * r["class_accuracy"] for r in rs)
            table.append(
                f"| {method} | {setting} | {target} | {statistics.mean(m):.1f} [{min(m):.1f}–{max(m):.1f}] | "
                f"{acc:.1f} | {cls:.1f} |"
            )
        tables.append("\n".join(table))
    psnr_rows = [r for r in lines if r.get("kind") == "psnr"]
    psnr_table = ["| run | teacher | scene | test PSNR |", "|---|---|---|---|"]
    psnr_table += [f"| {r['run']} | {r['teacher']} | {r['scene']} | {r['psnr']:.2f} |" for r in psnr_rows]
    markdown = "\n\n".join(tables + ["\n".join(psnr_table)])
    print(markdown)
    total = time.perf_counter() - start_all
    (args.out / f"{args.results_name}.json").write_text(json.dumps({"lines": lines, "seconds": total}, indent=1))
    (args.out / f"{args.results_name}.md").write_text(markdown + "\n")
    print(json.dumps({"benchmark": "propagation", "seconds": round(total, 1), "out": str(args.out)}))


if __name__ == "__main__":
    main()
