"""GSNeRF-style generalization on unseen rooms: zero-shot, fine-tuned, per-scene Semantic-NeRF, 2D-source, sampling.

Trains ``jacobinerf-gen-tiny`` on ``--train-scenes`` generated rooms (``jn-synth-many``, its own seeds), then on
``--test-scenes`` unseen rooms (other seeds, never trained on) evaluates, over all their test views pooled into one
confusion matrix per row (shared class table; void ignored):

* ``gen``: zero-shot, the preset's sampling (K nearest source views of the scene's source bank);
* ``2d-source``: the same encoder's 2D logits of the nearest source view, warped to the target by the same estimated
  depth (computed in the same renders as ``gen``: what the 3D reasoning adds);
* ``gen-guided-4`` / ``gen-uniform-128``: 4 guided samples vs 128 uniform ones, rendered alternately view by view
  on ``--speed-views`` views per scene (fps measured side by side; the seed's sampling-efficiency table);
* ``gen-finetuned``: the run fine-tuned ``--finetune-steps`` steps on each unseen scene's training views
  (``--pipeline.datamanager.dataparser.finetune-scene``), then evaluated the same way;
* ``per-scene``: ``semantic-nerf-tiny`` trained on each unseen scene's training views with all their labels for the
  same number of steps, and ``per-scene-full`` for the preset's 1000 steps (same views, same split).

Prints one JSON line per row (``row``, ``miou``, ``accuracy``, ``class_accuracy`` in %, ``psnr`` dB, ``ssim``,
``fps``, ``samples`` per ray, plus ``views`` and ``steps``), then a goals line and a markdown table; writes them to
``OUT/generalization.json`` / ``.md``. ``--reuse`` keeps every run already trained under ``OUT``; ``--gen-run
CONFIG`` evaluates an existing gen run. ``--quick`` is a smoke test of the whole chain (tiny images and schedules):
its numbers mean nothing.

Usage: ``python benchmarks/generalization.py [--out bench_out/generalization] [--quick] [--reuse]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROW_KEYS = ("row", "miou", "accuracy", "class_accuracy", "psnr", "ssim", "fps", "samples")


# ------------------------------------------------------------------------------------------------------ training
def _reset_writers() -> None:
    """nerfstudio's event writers are process globals: close the previous run's before the next one starts."""
    from nerfstudio.utils import writer

    for previous in writer.EVENT_WRITERS:
        if hasattr(previous, "tb_writer"):
            previous.tb_writer.close()
    writer.EVENT_WRITERS.clear()
    writer.EVENT_STORAGE.clear()


def train(cfg, reuse: bool) -> Path:
    """Train a trainer config through nerfstudio's trainer (or keep an existing finished run with ``reuse``)."""
    path = cfg.get_base_dir() / "config.yml"
    final = cfg.get_base_dir() / "nerfstudio_models"
    if reuse and path.is_file() and any(final.glob("*.ckpt")):
        return path
    cfg.save_config()
    _reset_writers()
    torch.manual_seed(cfg.machine.seed)
    trainer = cfg.setup(local_rank=0, world_size=1)
    trainer.setup()
    trainer.train()
    return path


def base_config(method: str, data: Path, out: Path, name: str, steps: int | None, device: str):
    from nerfstudio.configs.method_configs import all_methods

    cfg = copy.deepcopy(all_methods[method])
    cfg.data = data
    cfg.pipeline.datamanager.data = data
    cfg.output_dir = out
    cfg.experiment_name = "runs"
    cfg.timestamp = name
    cfg.vis = "tensorboard"
    cfg.machine.device_type = device
    cfg.steps_per_eval_image = 10**9
    cfg.steps_per_eval_all_images = 10**9
    if steps is not None:
        cfg.max_num_iterations = steps
        cfg.steps_per_save = steps
        for group in cfg.optimizers.values():
            if hasattr(group["scheduler"], "max_steps"):
                group["scheduler"].max_steps = steps
    return cfg


# ---------------------------------------------------------------------------------------------------- evaluation
def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def pick_views(n: int, limit: int | None) -> list[int]:
    """Evenly spaced view indices (the gen dataparser's ``max_eval_views`` rule)."""
    if limit is None or n <= limit:
        return list(range(n))
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int)).tolist()


class Pool:
    """One row's pooled confusion matrix (shared classes + one 'other prediction' column), PSNR/SSIM and times."""

    def __init__(self, num_classes: int):
        self.conf = torch.zeros(num_classes + 1, num_classes + 1, dtype=torch.long)
        self.psnr: list[float] = []
        self.ssim: list[float] = []
        self.seconds: list[float] = []

    def add_labels(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        from jacobinerf_ns.metrics import confusion_matrix

        pred = torch.where(pred < 0, torch.full_like(pred, self.conf.shape[0] - 1), pred)
        self.conf += confusion_matrix(pred.cpu(), target.cpu(), self.conf.shape[0])

    def row(self, name: str, samples: int | None, **extra) -> dict:
        from jacobinerf_ns.metrics import segmentation_scores

        scores = segmentation_scores(self.conf)
        fps = (1.0 / statistics.median(self.seconds)) if self.seconds else None
        mean = lambda v: round(float(np.mean(v)), 3) if v else None  # noqa: E731
        return {
            "row": name,
            "miou": round(100 * scores["miou"], 2),
            "accuracy": round(100 * scores["accuracy"], 2),
            "class_accuracy": round(100 * scores["class_accuracy"], 2),
            "psnr": mean(self.psnr),
            "ssim": mean(self.ssim),
            "fps": round(fps, 4) if fps is not None else None,
            "samples": samples,
            **extra,
        }


def image_quality(pred: torch.Tensor, gt: torch.Tensor) -> tuple[float, float]:
    from torchmetrics.functional import structural_similarity_index_measure

    from jacobinerf_ns.metrics import psnr

    p, g = pred.clamp(0, 1), gt[..., :3].to(pred.device)
    ssim = structural_similarity_index_measure(p.permute(2, 0, 1)[None], g.permute(2, 0, 1)[None], data_range=1.0)
    return psnr(p, g), float(ssim)


def render_timed(model, camera, device) -> tuple[dict, float]:
    _sync(device)
    t0 = time.perf_counter()
    out = model.get_outputs_for_camera(camera)
    _sync(device)
    return out, time.perf_counter() - t0


def eval_gen(pipeline, views: int | None, rows: dict[str, Pool], speed_views: int | None = None) -> None:
    """Renders every (chosen) test view once: ``gen`` and ``2d-source`` from the same outputs; with ``speed_views``,
    also ``gen-guided-4`` and ``gen-uniform-128`` alternately on that many views per scene."""
    model = pipeline.model
    model.eval()
    ds = pipeline.datamanager.eval_dataset
    scene_of = ds.cameras.metadata["gen_scene"][:, 0].tolist()
    by_scene: dict[int, list[int]] = {}
    for i, s in enumerate(scene_of):
        by_scene.setdefault(s, []).append(i)
    cfg = model.config
    with torch.no_grad():
        for idxs in by_scene.values():
            chosen = [idxs[j] for j in pick_views(len(idxs), views)]
            for i in chosen:
                cam, batch = ds.cameras[i : i + 1].to(pipeline.device), ds[i]
                out, dt = render_timed(model, cam, pipeline.device)
                target = batch["semantics"][..., 0]
                for key, row in (("semantics_gen", "gen"), ("semantics_2d", "2d-source")):
                    if row in rows:
                        rows[row].add_labels(out[key].argmax(-1), target)
                if "gen" in rows:
                    q = image_quality(out["rgb"], batch["image"])
                    rows["gen"].psnr.append(q[0])
                    rows["gen"].ssim.append(q[1])
                    rows["gen"].seconds.append(dt)
            if speed_views is None:
                continue
            for i in [idxs[j] for j in pick_views(len(idxs), speed_views)]:
                cam, batch = ds.cameras[i : i + 1].to(pipeline.device), ds[i]
                for row, counts in (("gen-guided-4", (0, 4)), ("gen-uniform-128", (128, 0))):
                    cfg.eval_num_uniform_samples, cfg.eval_num_guided_samples = counts
                    out, dt = render_timed(model, cam, pipeline.device)
                    rows[row].add_labels(out["semantics_gen"].argmax(-1), batch["semantics"][..., 0])
                    q = image_quality(out["rgb"], batch["image"])
                    rows[row].psnr.append(q[0])
                    rows[row].ssim.append(q[1])
                    rows[row].seconds.append(dt)
            cfg.eval_num_uniform_samples = cfg.eval_num_guided_samples = None


def eval_semantic_nerf(pipeline, shared: list[str], views: int | None, pool: Pool) -> None:
    """A per-scene Semantic-NeRF run on its test views; labels mapped by name into the shared table."""
    model = pipeline.model
    model.eval()
    names = list(pipeline.datamanager.eval_dataset.metadata["semantics"].classes)
    index = {n: i for i, n in enumerate(shared)}
    to_shared = torch.tensor([index.get(n, -1) for n in names])  # a name the gen table lacks: void (gt) / other
    ds = pipeline.datamanager.eval_dataset
    with torch.no_grad():
        for i in pick_views(len(ds), views):
            cam, batch = ds.cameras[i : i + 1].to(pipeline.device), ds[i]
            out, dt = render_timed(model, cam, pipeline.device)
            pred = to_shared[out["semantics"].argmax(-1).cpu()]
            gt = batch["semantics"][..., 0].cpu()
            gt = torch.where(gt >= 0, to_shared[gt.clamp(min=0)], gt)
            pool.add_labels(pred, gt)
            q = image_quality(out["rgb"], batch["image"])
            pool.psnr.append(q[0])
            pool.ssim.append(q[1])
            pool.seconds.append(dt)


# ------------------------------------------------------------------------------------------------------ reporting
def markdown(rows: list[dict]) -> str:
    head = "| row | mIoU | accuracy | class acc. | PSNR | SSIM | fps | samples | views | steps |"
    lines = [head, "|" + "---|" * 10]
    fmt = lambda v, d=1: "–" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))  # noqa: E731
    for r in rows:
        lines.append(
            f"| {r['row']} | {fmt(r['miou'])} | {fmt(r['accuracy'])} | {fmt(r['class_accuracy'])} | "
            f"{fmt(r['psnr'], 2)} | {fmt(r['ssim'], 3)} | {fmt(r['fps'], 3)} | {fmt(r['samples'])} | "
            f"{fmt(r.get('views'))} | {fmt(r.get('steps'))} |"
        )
    return "\n".join(lines)


def goals(rows: dict[str, dict]) -> dict:
    g = {}
    if "gen" in rows and "2d-source" in rows:
        g["gen_minus_2d_source_miou"] = round(rows["gen"]["miou"] - rows["2d-source"]["miou"], 2)
        g["gen_beats_2d_source_by_3"] = g["gen_minus_2d_source_miou"] >= 3.0
    if "gen-finetuned" in rows and "per-scene" in rows:
        g["finetuned_minus_per_scene_miou"] = round(rows["gen-finetuned"]["miou"] - rows["per-scene"]["miou"], 2)
        g["finetuned_at_least_per_scene"] = g["finetuned_minus_per_scene_miou"] >= 0.0
    if "gen-guided-4" in rows and "gen-uniform-128" in rows:
        a, b = rows["gen-guided-4"], rows["gen-uniform-128"]
        g["guided_4_speedup"] = round(a["fps"] / b["fps"], 2) if a["fps"] and b["fps"] else None
        g["guided_4_miou_gap"] = round(abs(a["miou"] - b["miou"]), 2)
        g["guided_4_8x_faster_within_1"] = bool(g["guided_4_speedup"] and g["guided_4_speedup"] >= 8) and (
            g["guided_4_miou_gap"] <= 1.0
        )
    return g


# ------------------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out/generalization"))
    parser.add_argument("--scenes-dir", type=Path, default=None, help="default: OUT/scenes (generated if missing)")
    parser.add_argument("--train-scenes", type=int, default=6)
    parser.add_argument("--test-scenes", type=int, default=2)
    parser.add_argument("--gen-steps", type=int, default=None, help="default: the preset's (1500)")
    parser.add_argument("--finetune-steps", type=int, default=300)
    parser.add_argument("--per-scene-full-steps", type=int, default=None, help="default: the preset's (1000)")
    parser.add_argument("--eval-views", type=int, default=None, help="test views per unseen scene (default all)")
    parser.add_argument("--speed-views", type=int, default=6, help="views per scene for guided-4 vs uniform-128")
    parser.add_argument("--gen-run", type=Path, default=None, help="config.yml of a trained gen run to evaluate")
    parser.add_argument("--reuse", action="store_true", help="keep runs already trained under OUT")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny images and schedules")
    args = parser.parse_args()
    start = time.perf_counter()
    phases: dict[str, float] = {}

    from jacobinerf_ns.gen.dataparser import resolve_scenes
    from jacobinerf_ns.scripts.synth_many import SynthManyConfig, generate_many

    if args.quick:
        size = {"num_views": 24, "width": 32, "height": 24}
        gen_steps, ft_steps, full_steps = args.gen_steps or 30, min(args.finetune_steps, 10), 30
        eval_views, speed_views = args.eval_views or 3, min(args.speed_views, 2)
    else:
        size = {}
        gen_steps, ft_steps, full_steps = args.gen_steps, args.finetune_steps, args.per_scene_full_steps
        eval_views, speed_views = args.eval_views, args.speed_views
    out = args.out
    scenes = args.scenes_dir or out / "scenes"
    t0 = time.perf_counter()
    generate_many(SynthManyConfig(output_dir=scenes, scenes=args.train_scenes, test_scenes=args.test_scenes,
                                  quiet=True, **size))  # fmt: skip
    unseen = resolve_scenes(scenes / "test")
    phases["scenes_s"] = time.perf_counter() - t0

    # ---- the generalizable run (trained on the training scenes only) ----
    t0 = time.perf_counter()
    if args.gen_run is not None:
        gen_cfg_path = args.gen_run
    else:
        cfg = base_config("jacobinerf-gen-tiny", scenes, out, "gen", gen_steps, args.device)
        gen_cfg_path = train(cfg, args.reuse)
    phases["gen_train_s"] = time.perf_counter() - t0
    from nerfstudio.utils.eval_utils import eval_setup

    t0 = time.perf_counter()
    _, pipeline, _, gen_step = eval_setup(gen_cfg_path, test_mode="test")
    shared = list(pipeline.model.class_names)
    k = len(shared)
    pools = {name: Pool(k) for name in ("gen", "2d-source", "gen-guided-4", "gen-uniform-128")}
    eval_gen(pipeline, eval_views, pools, speed_views)
    nu, ng = pipeline.model.sample_counts(stochastic=False)
    rows = {
        "gen": pools["gen"].row("gen", nu + ng, steps=gen_step + 1),
        "2d-source": pools["2d-source"].row("2d-source", None, steps=gen_step + 1),
        "gen-guided-4": pools["gen-guided-4"].row("gen-guided-4", 4, steps=gen_step + 1),
        "gen-uniform-128": pools["gen-uniform-128"].row("gen-uniform-128", 128, steps=gen_step + 1),
    }
    n_views = len(pools["gen"].seconds)
    rows["gen"]["views"] = rows["2d-source"]["views"] = n_views
    rows["gen-guided-4"]["views"] = rows["gen-uniform-128"]["views"] = len(pools["gen-guided-4"].seconds)
    rows["2d-source"]["psnr"] = rows["2d-source"]["ssim"] = None
    del pipeline
    phases["gen_eval_s"] = time.perf_counter() - t0

    # ---- fine-tuning on each unseen scene, and per-scene Semantic-NeRF with the same budget ----
    ft_pool, ps_pool, full_pool = Pool(k), Pool(k), Pool(k)
    t_ft = t_ps = 0.0
    full_cfg_steps = None
    for scene in unseen:
        t0 = time.perf_counter()
        cfg = base_config("jacobinerf-gen-tiny", scenes, out, f"ft-{scene.name}", None, args.device)
        cfg.pipeline.datamanager.dataparser.finetune_scene = scene
        cfg.load_dir = gen_cfg_path.parent / "nerfstudio_models"
        cfg.max_num_iterations = cfg.steps_per_save = ft_steps
        ft_path = train(cfg, args.reuse)
        _, pipe, _, _ = eval_setup(ft_path, test_mode="test")
        eval_gen(pipe, eval_views, {"gen": ft_pool})
        del pipe
        t_ft += time.perf_counter() - t0
        t0 = time.perf_counter()
        for steps, pool, tag in ((ft_steps, ps_pool, "ps"), (full_steps, full_pool, "psfull")):
            cfg = base_config("semantic-nerf-tiny", scene, out, f"{tag}-{scene.name}", steps, args.device)
            cfg.pipeline.datamanager.dataparser.train_every = 3  # the gen family's split of every scene
            cfg.pipeline.datamanager.dataparser.test_offset = 1
            full_cfg_steps = cfg.max_num_iterations if tag == "psfull" else full_cfg_steps
            path = train(cfg, args.reuse)
            _, pipe, _, _ = eval_setup(path, test_mode="test")
            eval_semantic_nerf(pipe, shared, eval_views, pool)
            del pipe
        t_ps += time.perf_counter() - t0
    phases["finetune_s"], phases["per_scene_s"] = t_ft, t_ps
    n = len(ft_pool.seconds)
    rows["gen-finetuned"] = ft_pool.row("gen-finetuned", nu + ng, steps=ft_steps, views=n)
    rows["per-scene"] = ps_pool.row("per-scene", None, steps=ft_steps, views=n)
    rows["per-scene-full"] = full_pool.row("per-scene-full", None, steps=full_cfg_steps, views=n)
    order = ["gen", "gen-finetuned", "per-scene", "per-scene-full", "2d-source", "gen-guided-4", "gen-uniform-128"]
    table = [rows[r] for r in order]
    for r in table:
        print(json.dumps(r), flush=True)
    total = time.perf_counter() - start
    summary = {
        "benchmark": "generalization",
        "quick": args.quick,
        "device": args.device,
        "train_scenes": args.train_scenes,
        "unseen_scenes": [s.name for s in unseen],
        "classes": k,
        "goals": goals(rows),
        "phases_s": {key: round(v, 1) for key, v in phases.items()},
        "total_s": round(total, 1),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(summary), flush=True)
    md = markdown(table)
    print(md)
    out.mkdir(parents=True, exist_ok=True)
    (out / "generalization.json").write_text(json.dumps({"rows": table, **summary}, indent=1) + "\n")
    (out / "generalization.md").write_text(md + "\n")


if __name__ == "__main__":
    sys.exit(main())
