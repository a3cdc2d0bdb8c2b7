"""Train-step time of our CPU preset vs nerfstudio's nerfacto (torch implementation), same scene, same rays.

Both pipelines read the same scene through our datamanager; the same pre-sampled ray batches are fed to each model,
alternating model by model every step, and one step = forward + losses + backward + Adam step. Prints ONE JSON line:

* ``ours_s`` / ``nerfacto_s`` / ``ratio``: ``jacobinerf-tiny`` as ``make demo`` trains it vs nerfacto as shipped
  (16 levels, 2^19 tables, 256/96 proposal samples, 48 samples; ``implementation="torch"``), median seconds per step;
* ``matched_*``: nerfacto shrunk to our preset's grid, MLP widths and sample counts — the speed of the
  implementation alone (hash grid, field, sampler), not of the smaller configuration.

Usage: ``python benchmarks/train_speed.py [--scene DIR] [--steps 15] [--rays 2048]``
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def _scene(path: Path | None) -> Path:
    if path is not None and (path / "traj_w_c.txt").is_file():
        return path
    from jacobinerf_ns.data.synth import SynthConfig, generate_scene

    out = Path(tempfile.mkdtemp()) / "room"
    return generate_scene(SynthConfig(output_dir=out, quiet=True, export_mesh=False))


@contextlib.contextmanager
def _no_lpips():
    """nerfacto builds LPIPS at construction, which downloads AlexNet; training never uses it."""
    import torchmetrics.image.lpip as lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity
    lpip.LearnedPerceptualImagePatchSimilarity = lambda *a, **k: torch.nn.Identity()  # type: ignore[misc]
    try:
        yield
    finally:
        lpip.LearnedPerceptualImagePatchSimilarity = original


def _build(model_config, scene: Path, rays: int):
    from jacobinerf_ns.data.datamanager import SemanticDataManagerConfig
    from jacobinerf_ns.pipeline import SemanticPipelineConfig

    dm = SemanticDataManagerConfig(train_num_rays_per_batch=rays)
    dm.data = scene
    pipe_cfg = SemanticPipelineConfig(datamanager=dm, model=model_config)
    with _no_lpips():
        pipeline = pipe_cfg.setup(device="cpu", test_mode="val")
    groups = pipeline.get_param_groups()
    opt = torch.optim.Adam([p for ps in groups.values() for p in ps], lr=1e-2, eps=1e-15)
    callbacks = pipeline.model.get_training_callbacks(None)  # type: ignore[arg-type]
    return pipeline, opt, callbacks


def _step(pipeline, opt, callbacks, ray_bundle, batch, step: int) -> float:
    from nerfstudio.engine.callbacks import TrainingCallbackLocation

    start = time.perf_counter()
    for cb in callbacks:
        if TrainingCallbackLocation.BEFORE_TRAIN_ITERATION in cb.where_to_run:
            cb.run_callback_at_location(step, TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    opt.zero_grad(set_to_none=True)
    outputs = pipeline.model(ray_bundle)
    metrics = pipeline.model.get_metrics_dict(outputs, batch)
    loss = sum(pipeline.model.get_loss_dict(outputs, batch, metrics).values())
    loss.backward()
    opt.step()
    for cb in callbacks:
        if TrainingCallbackLocation.AFTER_TRAIN_ITERATION in cb.where_to_run:
            cb.run_callback_at_location(step, TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    return time.perf_counter() - start


def _matched_nerfacto(ours, nerfacto):
    m = copy.deepcopy(nerfacto)
    g = ours.grid
    m.num_levels, m.base_res, m.max_res, m.log2_hashmap_size = (
        g.num_levels,
        g.base_resolution,
        g.max_resolution,
        (g.log2_hashmap_size),
    )
    m.features_per_level = g.features_per_level
    m.hidden_dim, m.hidden_dim_color = ours.hidden_dim, ours.hidden_dim_color
    m.num_proposal_samples_per_ray = tuple(ours.num_proposal_samples_per_ray)
    m.num_proposal_iterations = len(ours.num_proposal_samples_per_ray)
    m.num_nerf_samples_per_ray = ours.num_nerf_samples_per_ray
    p = ours.proposal_grids[0]
    m.proposal_net_args_list = [
        {
            "hidden_dim": ours.proposal_hidden_dim,
            "log2_hashmap_size": p.log2_hashmap_size,
            "num_levels": p.num_levels,
            "max_res": p.max_resolution,
            "base_res": p.base_resolution,
            "use_linear": False,
        }
    ]
    m.use_appearance_embedding = False
    m.camera_optimizer.mode = "off"
    return m


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"))
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rays", type=int, default=None, help="default: the preset's rays per batch")
    args = parser.parse_args()

    from nerfstudio.configs.method_configs import all_methods

    scene = _scene(args.scene)
    ours_cfg = all_methods["jacobinerf-tiny"].pipeline.model
    rays = args.rays or all_methods["jacobinerf-tiny"].pipeline.datamanager.train_num_rays_per_batch
    nerfacto_cfg = copy.deepcopy(all_methods["nerfacto"].pipeline.model)
    nerfacto_cfg.implementation = "torch"
    contenders = {
        "ours": copy.deepcopy(ours_cfg),
        "nerfacto": nerfacto_cfg,
        "matched_nerfacto": _matched_nerfacto(ours_cfg, nerfacto_cfg),
    }
    torch.manual_seed(0)
    built = {name: _build(cfg, scene, rays) for name, cfg in contenders.items()}
    datamanager = built["ours"][0].datamanager
    batches = [datamanager.next_train(i) for i in range(args.steps + args.warmup)]
    times: dict[str, list[float]] = {name: [] for name in built}
    for i, (ray_bundle, batch) in enumerate(batches):
        for name, (pipeline, opt, callbacks) in built.items():
            dt = _step(pipeline, opt, callbacks, copy.deepcopy(ray_bundle), batch, i)
            if i >= args.warmup:
                times[name].append(dt)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    result = {
        "benchmark": "train_speed",
        "rays_per_step": rays,
        "steps": args.steps,
        "threads": torch.get_num_threads(),
        "ours_s": round(med["ours"], 4),
        "nerfacto_s": round(med["nerfacto"], 4),
        "ratio": round(med["ours"] / med["nerfacto"], 4),
        "matched_nerfacto_s": round(med["matched_nerfacto"], 4),
        "matched_ratio": round(med["ours"] / med["matched_nerfacto"], 4),
        "scene": str(scene),
    }
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
