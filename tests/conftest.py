"""Shared fixtures. Everything runs offline, on the CPU (kernel tests also on CUDA when torch sees it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
"""Math kernels are checked against their references on every device torch sees (CI: the CPU only)."""


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    return torch.device(request.param)


TINY_CLASSES = [{"id": 3, "name": "wall"}, {"id": 7, "name": "chair"}, {"id": 12, "name": "table"}]


def write_tiny_replica(
    root: Path, num_frames: int = 10, width: int = 8, height: int = 6, with_info: bool = True
) -> Path:
    """A minimal, valid Replica-layout scene: a camera sliding along x looking down +z (OpenCV)."""
    rng = np.random.default_rng(0)
    for sub in ("rgb", "depth", "semantic_class", "semantic_instance"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(num_frames):
        pose = np.eye(4)
        pose[0, 3] = 0.1 * i
        lines.append(" ".join(f"{v:.6f}" for v in pose.reshape(-1)))
        Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(root / "rgb" / f"rgb_{i}.png")
        depth = np.full((height, width), 2000, dtype=np.uint16)
        depth[: height // 2] = 3000
        Image.fromarray(depth).save(root / "depth" / f"depth_{i}.png")
        cls = np.full((height, width), 3, dtype=np.uint8)
        cls[height // 2 :, : width // 2] = 7
        cls[height // 2 :, width // 2 :] = 12
        cls[0, 0] = 0
        Image.fromarray(cls).save(root / "semantic_class" / f"semantic_class_{i}.png")
        inst = (cls.astype(np.uint16) * 10 + 1) * (cls > 0)
        Image.fromarray(inst).save(root / "semantic_instance" / f"semantic_instance_{i}.png")
    (root / "traj_w_c.txt").write_text("\n".join(lines) + "\n")
    if with_info:
        (root / "info_semantic.json").write_text(json.dumps({"classes": TINY_CLASSES}))
    return root


@pytest.fixture
def tiny_replica(tmp_path: Path) -> Path:
    return write_tiny_replica(tmp_path / "scene")


@pytest.fixture(scope="session")
def synth_scene(tmp_path_factory) -> Path:
    """A small jn-synth room shared by the training tests (40x30, 20 views: 4 train, 4 test)."""
    from jacobinerf_ns.data.synth import SynthConfig, generate_scene

    out = tmp_path_factory.mktemp("synth") / "room"
    return generate_scene(
        SynthConfig(output_dir=out, num_views=20, width=40, height=30, supersample=1, export_mesh=False, quiet=True)
    )
