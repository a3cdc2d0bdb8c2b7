"""Closed-form per-ray Jacobians vs the official per-ray autograd, same field, same 4096 rays.

The official JacobiNeRF code takes, for every ray, ``autograd.grad(mean_c C_c(r), W, create_graph=True)`` on the
batch's graph. We time exactly that loop against one call of :func:`jacobinerf_ns.jacobian.per_channel_jacobian`
on the quantities the renderer already has, on a ``jacobinerf-tiny`` field after a few training steps on the
default scene (float32, as trained). ``max_rel_err`` compares both in float64 (the same field outputs cast up,
so the comparison measures the kernel, not float32 rounding). Prints ONE JSON line.

Usage: ``python benchmarks/jacobian.py [--scene DIR] [--rays 4096]``
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scene", type=Path, default=Path("data/synth-room"))
    parser.add_argument("--rays", type=int, default=4096)
    parser.add_argument("--train-steps", type=int, default=30)
    args = parser.parse_args()

    from nerfstudio.configs.method_configs import all_methods

    from jacobinerf_ns.fields.semantic_field import COLOR_HIDDEN, DENSITY, RGB_PREACT
    from jacobinerf_ns.jacobian import mean_rgb_jacobian, per_channel_jacobian
    from jacobinerf_ns.teachers import SyntheticTeacherConfig

    scene = args.scene
    if not (scene / "traj_w_c.txt").is_file():
        import tempfile

        from jacobinerf_ns.data.synth import SynthConfig, generate_scene

        scene = generate_scene(SynthConfig(output_dir=Path(tempfile.mkdtemp()) / "room", quiet=True, export_mesh=False))
    cfg = copy.deepcopy(all_methods["jacobinerf-tiny"].pipeline)
    cfg.datamanager.data = scene
    cfg.datamanager.teacher = SyntheticTeacherConfig(show_progress=False)
    cfg.datamanager.train_num_rays_per_batch = args.rays
    cfg.model.nce_loss_weight = cfg.model.norm_loss_weight = 0.0
    torch.manual_seed(0)
    pipeline = cfg.setup(device="cpu", test_mode="val")
    model = pipeline.model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(args.train_steps):  # a field that is not at its random init
        rb, batch = pipeline.datamanager.next_train(step)
        out = model(rb)
        loss = sum(model.get_loss_dict(out, batch, model.get_metrics_dict(out, batch)).values())
        opt.zero_grad()
        loss.backward()
        opt.step()

    ray_bundle, _ = pipeline.datamanager.next_train(args.train_steps)
    ray_bundle = model.collider(ray_bundle)
    ray_samples, _, _ = model.proposal_sampler(ray_bundle, density_fns=model.density_fns)
    fo = model.field(ray_samples)
    weights = ray_samples.get_weights(fo[DENSITY])
    hidden, preact = fo[COLOR_HIDDEN], fo[RGB_PREACT]
    W = model.field.color_out.weight

    def colors(weight, h, w, b):
        rgb = torch.sigmoid(h @ weight.T + b)
        return (w * rgb).sum(dim=-2) + (1 - w.sum(dim=-2)) * rgb[..., -1, :]  # last_sample background

    # --- the official loop: one autograd.grad per ray on the batch graph, create_graph=True (needed for training)
    rgb = colors(W, hidden, weights, model.field.color_out.bias)
    mean_rgb = rgb.mean(dim=-1)
    start = time.perf_counter()
    official = [
        torch.autograd.grad(mean_rgb[r], W, retain_graph=True, create_graph=True)[0].flatten() for r in range(args.rays)
    ]
    official_s = time.perf_counter() - start
    official = torch.stack(official)

    # --- closed form (float32, differentiable, first order)
    start = time.perf_counter()
    closed = mean_rgb_jacobian(per_channel_jacobian(weights, preact, hidden, background_last_sample=True))
    closed_s = time.perf_counter() - start
    f32_rel = float((closed - official).abs().max() / official.abs().max())

    # --- exactness in float64 on the same field outputs
    W64 = W.detach().double().requires_grad_(True)
    h64, w64, b64 = hidden.detach().double(), weights.detach().double(), model.field.color_out.bias.detach().double()
    mean64 = colors(W64, h64, w64, b64).mean(dim=-1)
    ref64 = torch.stack([torch.autograd.grad(mean64[r], W64, retain_graph=True)[0].flatten() for r in range(args.rays)])
    preact64 = h64 @ W64.detach().T + b64
    closed64 = mean_rgb_jacobian(per_channel_jacobian(w64, preact64, h64, background_last_sample=True))
    rel64 = float((closed64 - ref64).abs().max() / ref64.abs().max())
    print(
        json.dumps(
            {
                "benchmark": "jacobian",
                "rays": args.rays,
                "samples_per_ray": int(hidden.shape[-2]),
                "K": int(hidden.shape[-1]),
                "official_loop_s": round(official_s, 4),
                "closed_form_s": round(closed_s, 6),
                "speedup": round(official_s / closed_s, 1),
                "max_rel_err": rel64,
                "max_rel_err_float32": f32_rel,
            }
        )
    )


if __name__ == "__main__":
    main()
