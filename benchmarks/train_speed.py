"""Train-step time of our CPU preset vs nerfstudio's nerfacto (torch implementation), same scene, same rays.

Both pipelines read the same scene through our datamanager; the same pre-sampled ray batches are fed to each model,
alternating model by model every step, and one step = forward + losses + backward + Adam step. Prints ONE JSON line:

* ``ours_s`` / ``nerfacto_s`` / ``ratio``: ``jacobinerf-tiny`` as ``make demo`` trains it vs nerfacto as shipped
  (16 levels, 2^19 tables, 256/96 proposal samples, 48 samples; ``implementation="torch"``), median seconds per step;
* ``matched_*``: nerfacto shrunk to our preset's grid, MLP widths and sample counts — the speed of the
  implementation alone (hash grid, field, sampler), not of the smaller configuration.

Usage: ``python benchmarks/train_speed.py [--scene DIR] [--steps 15] [--rays 2048] [--device cpu|cuda]`` (default:
CUDA when torch sees one, else the CPU)
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
from bench_utils import build, ensure_scene, time_interleaved


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
    parser.add_argument("--device", choices=["cpu", "cuda"], default=None, help="default: cuda when available")
    args = parser.parse_args()

    from nerfstudio.configs.method_configs import all_methods

    scene = ensure_scene(args.scene)
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
    from jacobinerf_ns.data.datamanager import SemanticDataManagerConfig
    from jacobinerf_ns.pipeline import SemanticPipelineConfig

    def pipeline_config(model_config):
        dm = SemanticDataManagerConfig(train_num_rays_per_batch=rays)
        dm.data = scene
        return SemanticPipelineConfig(datamanager=dm, model=model_config)

    from jacobinerf_ns.fields.backend import auto_device_type

    device = args.device or auto_device_type()
    built = {name: build(pipeline_config(cfg), device=device) for name, cfg in contenders.items()}
    med = time_interleaved(built, built["ours"][0].datamanager, args.steps, args.warmup)
    result = {
        "benchmark": "train_speed",
        "rays_per_step": rays,
        "steps": args.steps,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
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
