"""What shaping does on the default ``jn-synth`` scene with the synthetic teacher: Jacobian alignment and PSNR.

Two ``jacobinerf-tiny`` runs through nerfstudio's trainer with the identical schedule (the preset's: plain NeRF first,
then shaping), one with the shaping losses and one with their weights at 0 ("before" = the unshaped run). On pixels
sampled from the *test* views we render the closed-form Jacobians and report the mean |cos(J_i, J_j)| over pairs of
the same instance, of the same class (other instance) and of different classes, plus the test PSNR of each run.
The teacher is the synthetic one computed from ground truth (say so wherever these numbers go). Prints ONE JSON line.

Usage: ``python benchmarks/shaping_effect.py [--scene DIR] [--steps N] [--pixels 3000] [--out bench_out]
[--weight W] [--unshaped CFG]`` (``--weight``: both shaping loss weights; ``--unshaped``: reuse an unshaped run)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench_utils import ensure_scene, load_run, train_method


def train_run(name: str, scene: Path, out: Path, shaped: bool, steps: int | None, weight: float | None) -> Path:
    overrides: dict = {}
    if steps is not None:
        overrides.update(max_num_iterations=steps, shaping_start_step=steps // 3)
    if not shaped:
        overrides.update(nce_loss_weight=0.0, norm_loss_weight=0.0)
    elif weight is not None:
        overrides.update(nce_loss_weight=weight, norm_loss_weight=weight)
    return train_method("jacobinerf-tiny", scene, out / "shaping_effect", name, **overrides)


def evaluate(pipeline, pixels: int, seed: int) -> dict:
    from jacobinerf_ns.evaluation import jacobian_cosine_by_relation, render_pixels, sample_labelled_pixels
    from jacobinerf_ns.jacobian import mean_rgb_jacobian

    dm = pipeline.datamanager
    scene = dm.eval_scene
    idx = sample_labelled_pixels(scene.semantics.cpu(), pixels, seed=seed)
    out = render_pixels(pipeline.model, dm.eval_dataset.cameras, idx, ["jacobian"], jacobians=True)
    jac = mean_rgb_jacobian(out["jacobian"].view(len(idx), 3, -1))
    c, y, x = idx.unbind(-1)
    cos = jacobian_cosine_by_relation(jac, scene.semantics.cpu()[c, y, x], scene.instance.cpu()[c, y, x])
    cos["psnr_db"] = pipeline.get_average_eval_image_metrics()["psnr"]
    return cos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"))
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's schedule")
    parser.add_argument("--pixels", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("bench_out"))
    parser.add_argument("--weight", type=float, default=None, help="both shaping loss weights (default: the preset's)")
    parser.add_argument("--unshaped", type=Path, default=None, help="config.yml of an unshaped run to reuse")
    args = parser.parse_args()
    scene = ensure_scene(args.scene)
    start = time.perf_counter()
    results, weight = {}, None
    for name, shaped in (("before", False), ("after", True)):
        reuse = args.unshaped if not shaped else None
        config = reuse or train_run(
            f"{'shaped' if shaped else 'unshaped'}", scene, args.out, shaped, args.steps, args.weight
        )
        pipeline = load_run(config)
        results[name] = evaluate(pipeline, args.pixels, args.seed)
        weight = pipeline.model.config.nce_loss_weight
    line = {"benchmark": "shaping_effect", "teacher": "synthetic (computed from ground truth)", "scene": str(scene)}
    line["shaping_weight"] = weight
    for key in ("cos_same_instance", "cos_same_class", "cos_diff_class"):
        for when in ("before", "after"):
            line[f"{key}_{when}"] = round(results[when][key], 4)
    line["gap_after"] = round(results["after"]["cos_same_class"] - results["after"]["cos_diff_class"], 4)
    line["psnr_before_db"] = round(results["before"]["psnr_db"], 3)
    line["psnr_after_db"] = round(results["after"]["psnr_db"], 3)
    line["pixels"] = args.pixels
    line["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
