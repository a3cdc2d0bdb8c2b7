"""Peak memory of training on a large phone-style capture (nerfstudio-data, no labels, appearance teacher).

Writes a synthetic capture like ``ns-process-data``'s output — ``--views`` JPEG frames of ``--width`` x ``--height``
(default 300 at 1920x1080) of a textured box room, OpenGL camera-to-world poses in ``transforms.json`` — then, in a
fresh process, builds ``jacobinerf-tiny`` on it through ``nerfstudio-data`` with the appearance teacher (as the
preset's ``auto`` teacher resolves on a capture without labels) and trains ``--steps`` steps. Reports the peak
resident memory of that process (``ru_maxrss``), the bytes of the stored colour, and what the same colour would take
as float32 on the training device (the layout before the compact storage). One JSON line.

Usage: ``python benchmarks/memory.py [--out bench_out/memory] [--views 300] [--width 1920] [--height 1080]
[--steps 20] [--teacher-load-size 480]``
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def write_capture(root: Path, views: int, width: int, height: int, seed: int = 0) -> Path:
    """A textured box room seen from cameras inside it (JPEG frames + nerfstudio transforms.json)."""
    from PIL import Image

    if (root / "transforms.json").is_file():
        return root
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    half = np.array([3.0, 2.5, 1.5])
    fx = width / 2.0
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    d_cam = np.stack([(u - width / 2 + 0.5) / fx, (v - height / 2 + 0.5) / fx, np.ones_like(u)], -1)
    palette = rng.integers(40, 216, (6, 3)).astype(np.float32)
    frames = []
    for i in range(views):
        yaw, pitch = 2 * np.pi * i / views, rng.uniform(-0.3, 0.3)
        forward = np.array([np.cos(yaw) * np.cos(pitch), np.sin(yaw) * np.cos(pitch), np.sin(pitch)])
        right = np.cross(forward, [0, 0, 1.0])
        right /= np.linalg.norm(right)
        down = np.cross(forward, right)
        rot = np.stack([right, down, forward], 1)  # OpenCV camera axes in world coordinates
        centre = rng.uniform(-0.4, 0.4, 3) * half
        dirs = d_cam @ rot.T.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_axis = np.where(dirs > 0, (half - centre) / dirs, (-half - centre) / dirs)
        t_axis = np.where(np.isfinite(t_axis) & (t_axis > 0), t_axis, np.inf)
        axis = t_axis.argmin(-1)
        t = np.take_along_axis(t_axis, axis[..., None], -1)
        points = centre + t * dirs
        wall = axis * 2 + (np.take_along_axis(dirs, axis[..., None], -1)[..., 0] > 0)
        checker = (np.floor(points * 3).sum(-1) % 2)[..., None]
        rgb = np.clip(palette[wall] + 40 * checker - 20, 0, 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "images" / f"frame_{i:05d}.jpg", quality=90)
        pose = np.eye(4)
        pose[:3, :3], pose[:3, 3] = rot, centre
        frames.append(
            {"file_path": f"images/frame_{i:05d}.jpg", "transform_matrix": (pose @ np.diag([1, -1, -1, 1])).tolist()}
        )
    meta = {"camera_model": "OPENCV", "fl_x": fx, "fl_y": fx, "cx": width / 2, "cy": height / 2, "w": width,
            "h": height, "frames": frames}  # fmt: skip
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def measure(capture: Path, out: Path, steps: int, load_size: int | None) -> dict:
    """Runs in the child process: build, train ``steps`` steps, report peak RSS."""
    import resource

    import torch
    from bench_utils import build, method_pipeline_config, train_step
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    from jacobinerf_ns.teachers import AppearanceTeacherConfig

    cfg = method_pipeline_config("jacobinerf-tiny", capture)
    cfg.datamanager.dataparser = NerfstudioDataParserConfig(data=capture)
    cfg.datamanager.teacher = AppearanceTeacherConfig(show_progress=False, load_size=load_size)
    cfg.datamanager.teacher_cache_dir = out / "teacher_cache"
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    pipeline, opt, callbacks = build(cfg)
    setup_s = time.perf_counter() - t0
    rss_setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = [train_step(pipeline, opt, callbacks, *pipeline.datamanager.next_train(i), i) for i in range(steps)]
    scene = pipeline.datamanager.train_scene
    n, h, w = scene.shape
    return {
        "benchmark": "memory",
        "views_train": n,
        "width": w,
        "height": h,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rss_after_setup_gb": rss_setup / 2**20,
        "rss_after_imports_gb": rss_start / 2**20,
        "colour_storage_gb": scene.images.numel() * scene.images.element_size() / 2**30,
        "colour_as_float32_gb": scene.images.numel() * 4 / 2**30,
        "teacher_features_gb": pipeline.datamanager.teacher_features.features.numel() * 2 / 2**30,
        "setup_s": setup_s,
        "median_step_s": float(np.median(times)),
        "teacher": pipeline.datamanager.train_dataset.metadata["teacher_name"],
        "teacher_load_size": load_size,
        "device": str(pipeline.device),
        "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_out/memory"))
    parser.add_argument("--views", type=int, default=300)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--teacher-load-size", type=int, default=480, help="appearance teacher's shorter side (0: native)"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    capture = args.out / f"capture_{args.views}x{args.width}x{args.height}"
    load_size = args.teacher_load_size or None
    if args.child:
        print(json.dumps(measure(capture, args.out, args.steps, load_size)))
        return
    t0 = time.perf_counter()
    write_capture(capture, args.views, args.width, args.height)
    write_s = time.perf_counter() - t0
    cmd = [sys.executable, __file__, "--child", "--out", str(args.out), "--views", str(args.views), "--width",
           str(args.width), "--height", str(args.height), "--steps", str(args.steps), "--teacher-load-size",
           str(args.teacher_load_size)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(proc.stderr[-3000:])
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["capture_write_s"] = write_s
    print(json.dumps(result))


if __name__ == "__main__":
    main()
