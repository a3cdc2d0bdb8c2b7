"""Feature-field smoothing variants on the default ``jn-synth`` scene, side by side in one process.

Variants (``jacobinerf-features-tiny`` with ``--pipeline.model.smoothing ...``): ``none``, ``tv``, ``bilateral``,
``masks-felzenszwalb`` (masks from scikit-image, no weights) and ``masks-ground-truth`` (the scene's instances: an
oracle for the controlled study); ``tv-w1e-2`` and ``masks-felzenszwalb-w1e-2`` (10x the default smoothing weight)
with ``--variants``. The smoothing variants add their patch rays after the same random rays. Each is trained here
(or reused with ``--reuse``) and scored on the test views:

* ``psnr``, ``ssim``: ns-eval's image metrics; ``cos_sim``: mean cosine between rendered and teacher features
  (the poster's three columns);
* ``query_iou``: mean IoU of click-query masks (rendered feature at a seeded click, cosine ≥ τ) against the clicked
  pixel's ground-truth instance mask, over ``--clicks`` clicks on test views; τ is chosen per variant on as many
  clicks on *training* views (grid 0.0..0.98), so no variant is tuned on the test clicks;
* ``step_ratio``: median train-step time relative to ``none``, in one process, the variants stepping in turn (machine
  noise hits all alike), each on its own datamanager's batches (the same random rays, plus its patches).

Prints one JSON line per variant (``variant``, ``psnr``, ``ssim``, ``cos_sim``, ``query_iou``, ``step_ratio``,
``teacher``, ``threshold``) and a markdown table; writes both to ``--out``.

Usage: ``python benchmarks/feature_smoothing.py [--scene DIR] [--teacher appearance|synthetic] [--out DIR]
[--reuse] [--steps N] [--clicks 60] [--variants ...]``
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from bench_utils import build, ensure_scene, load_run, method_pipeline_config, set_teacher, train_method, train_step

VARIANTS = {
    "none": {"smoothing": "none"},
    "tv": {"smoothing": "tv"},
    "bilateral": {"smoothing": "bilateral"},
    "masks-felzenszwalb": {"smoothing": "masks", "masks": "felzenszwalb"},
    "masks-ground-truth": {"smoothing": "masks", "masks": "ground-truth"},
    # selectable with --variants: the same at 10x the default smoothing weight
    "tv-w1e-2": {"smoothing": "tv", "weight": 1e-2},
    "masks-felzenszwalb-w1e-2": {"smoothing": "masks", "masks": "felzenszwalb", "weight": 1e-2},
}
DEFAULT_VARIANTS = ["none", "tv", "bilateral", "masks-felzenszwalb", "masks-ground-truth"]
THRESHOLDS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98]


def mask_config(name: str):
    from jacobinerf_ns.features.masks import FelzenszwalbMaskConfig, GroundTruthMaskConfig

    return FelzenszwalbMaskConfig() if name == "felzenszwalb" else GroundTruthMaskConfig()


def overrides(spec: dict, weight: float | None) -> dict:
    out = {"smoothing": spec["smoothing"]}
    if "masks" in spec:
        out["dm_masks"] = mask_config(spec["masks"])
    weight = spec.get("weight", weight)
    if weight is not None:
        out["smoothing_weight"] = weight
    return out


def click_ious(pipeline, split: str, clicks, thresholds) -> torch.Tensor:
    """(clicks, thresholds) IoU of the click-query mask with the clicked instance, one render per view."""
    from jacobinerf_ns.eval.clicks import mask_iou
    from jacobinerf_ns.query import render

    dm = pipeline.datamanager
    cams = dm.train_dataset.cameras if split == "train" else dm.eval_dataset.cameras
    inst = (dm.train_scene if split == "train" else dm.eval_scene).instance.long()
    out = torch.zeros(len(clicks), len(thresholds))
    rendered = {}
    for k, c in enumerate(clicks):
        if c.view not in rendered:
            rendered[c.view] = render(pipeline.model, cams[c.view : c.view + 1])["features"].cpu()
        feats = rendered[c.view]
        sim = (feats * feats[c.y, c.x]).sum(dim=-1)
        target = inst[c.view] == c.instance
        for j, t in enumerate(thresholds):
            out[k, j] = mask_iou(sim >= t, target)
    return out


def step_ratios(scene: Path, configs: dict, steps: int, warmup: int) -> dict[str, float]:
    """Median step time of each variant, relative to ``none``, interleaved step by step. Each variant steps on its own
    datamanager's batches (same seed, so the same random rays; the smoothing variants add their patch rays, whose
    cost belongs to them)."""
    built = {name: build(cfg) for name, cfg in configs.items()}
    batches = {name: [b[0].datamanager.next_train(i) for i in range(steps + warmup)] for name, b in built.items()}
    times: dict[str, list[float]] = {n: [] for n in built}
    for i in range(steps + warmup):
        for name, (pipeline, opt, callbacks) in built.items():
            ray_bundle, batch = batches[name][i]
            dt = train_step(pipeline, opt, callbacks, copy.deepcopy(ray_bundle), dict(batch), i)
            if i >= warmup:
                times[name].append(dt)
    base = statistics.median(times["none"])
    return {name: statistics.median(ts) / base for name, ts in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"), help="default scene (generated)")
    parser.add_argument("--out", type=Path, default=Path("bench_out/feature_smoothing"))
    parser.add_argument("--teacher", choices=["appearance", "synthetic"], default="appearance")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    parser.add_argument("--steps", type=int, default=None, help="train steps (default: the preset's 1000)")
    parser.add_argument("--weight", type=float, default=None, help="smoothing weight (default: the model's)")
    parser.add_argument("--clicks", type=int, default=60, help="seeded clicks on test views (and on train views)")
    parser.add_argument("--timing-steps", type=int, default=20)
    parser.add_argument("--reuse", action="store_true", help="reuse runs already trained under --out")
    args = parser.parse_args()

    from nerfstudio.configs.method_configs import all_methods

    from jacobinerf_ns.eval.clicks import seeded_clicks

    start = time.perf_counter()
    scene = ensure_scene(args.scene)
    args.out.mkdir(parents=True, exist_ok=True)
    extra = {} if args.steps is None else {"max_num_iterations": args.steps}
    lines, configs = [], {}
    teacher_label = None
    for name in args.variants:
        spec = VARIANTS[name]
        run = args.out / args.out.name / "jacobinerf-features-tiny" / name / "config.yml"
        steps = args.steps or all_methods["jacobinerf-features-tiny"].max_num_iterations
        if not (args.reuse and (run.parent / "nerfstudio_models" / f"step-{steps - 1:09d}.ckpt").is_file()):
            run = train_method(
                "jacobinerf-features-tiny", scene, args.out, name, teacher=args.teacher,
                **overrides(spec, args.weight), **extra,
            )  # fmt: skip
        pipeline = load_run(run)
        dm = pipeline.datamanager
        teacher_label = dm.train_dataset.metadata["teacher_name"]
        metrics = pipeline.get_average_eval_image_metrics()
        train_clicks = seeded_clicks(dm.train_scene.instance.long(), dm.train_scene.semantics.long(), args.clicks, 1)
        test_clicks = seeded_clicks(dm.eval_scene.instance.long(), dm.eval_scene.semantics.long(), args.clicks, 0)
        best = int(click_ious(pipeline, "train", train_clicks, THRESHOLDS).mean(dim=0).argmax())
        iou = float(click_ious(pipeline, "test", test_clicks, [THRESHOLDS[best]]).mean())
        line = {
            "variant": name,
            "psnr": metrics["psnr"],
            "ssim": metrics["ssim"],
            "cos_sim": metrics["feature_cos_sim"],
            "query_iou": iou,
            "threshold": THRESHOLDS[best],
            "teacher": teacher_label,
            "clicks": len(test_clicks),
        }
        lines.append(line)
        cfg = method_pipeline_config("jacobinerf-features-tiny", scene)
        set_teacher(cfg.datamanager, args.teacher)
        for key, value in overrides(spec, args.weight).items():
            setattr(cfg.datamanager if key.startswith("dm_") else cfg.model, key.removeprefix("dm_"), value)
        configs[name] = cfg
        del pipeline
    if "none" in configs:
        ratios = step_ratios(scene, configs, args.timing_steps, warmup=3)
        for line in lines:
            line["step_ratio"] = ratios[line["variant"]]
    for line in lines:
        print(json.dumps(line), flush=True)
    table = ["| variant | PSNR | SSIM | cos sim | query IoU | step ratio |", "|---|---|---|---|---|---|"]
    for r in lines:
        table.append(
            f"| {r['variant']} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['cos_sim']:.3f} | {100 * r['query_iou']:.1f} | "
            f"{r.get('step_ratio', float('nan')):.2f} |"
        )
    markdown = "\n".join(table)
    print(markdown)
    total = time.perf_counter() - start
    (args.out / "results.json").write_text(json.dumps({"lines": lines, "seconds": total, "teacher": teacher_label}))
    (args.out / "table.md").write_text(markdown + "\n")
    print(json.dumps({"benchmark": "feature_smoothing", "seconds": round(total, 1), "teacher": teacher_label}))


if __name__ == "__main__":
    main()
