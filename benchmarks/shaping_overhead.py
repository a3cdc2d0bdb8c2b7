"""Train-step time of ``jacobinerf-tiny`` with Jacobian shaping vs without, same rays, one process.

Both pipelines are built from the same config and seed; with shaping, all rays of the batch are shaping rays (the
InfoNCE over a 1024×1024 similarity matrix, the closed-form Jacobians and the norm loss); without, the shaping loss
weights are 0 (the field never computes Jacobians). The same pre-sampled batches feed both, alternating every step.
Prints ONE JSON line with the median step times and ``ratio`` = with / without.

``--shaping-rays`` < ``--rays`` measures a preset-like batch instead (``jacobinerf-tiny``: 2048 rays, 512 of them
shaping rays; only those get Jacobians during training).

Usage: ``python benchmarks/shaping_overhead.py [--scene DIR] [--rays 1024] [--shaping-rays N] [--steps 20]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from bench_utils import build, ensure_scene, method_pipeline_config, time_interleaved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"))
    parser.add_argument("--rays", type=int, default=1024)
    parser.add_argument("--shaping-rays", type=int, default=None, help="shaping rays per batch (default: all rays)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    scene = ensure_scene(args.scene)

    built = {}
    for name, shaping in (("with", True), ("without", False)):
        cfg = method_pipeline_config("jacobinerf-tiny", scene, rays=args.rays)
        shaping_rays = args.rays if args.shaping_rays is None else args.shaping_rays
        cfg.datamanager.shaping_rays_per_batch = shaping_rays
        cfg.model.shaping_start_step = 0
        if not shaping:
            cfg.model.nce_loss_weight = cfg.model.norm_loss_weight = 0.0
        torch.manual_seed(0)
        built[name] = build(cfg)
    med = time_interleaved(built, built["with"][0].datamanager, args.steps, args.warmup)
    print(
        json.dumps(
            {
                "benchmark": "shaping_overhead",
                "rays": args.rays,
                "shaping_rays": args.rays if args.shaping_rays is None else args.shaping_rays,
                "steps": args.steps,
                "with_shaping_s": round(med["with"], 4),
                "without_shaping_s": round(med["without"], 4),
                "ratio": round(med["with"] / med["without"], 4),
            }
        )
    )


if __name__ == "__main__":
    main()
