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


# ------------------------------------------------------------------------------------------ shared trained runs
# One run per method, trained once per test session through nerfstudio's Trainer and shared by every test that needs a
# trained model (learning floors, the shaping loop, ns-eval / ns-render / resume, propagation). 300 steps of 1024
# rays on a 48x36 room with 8 training and 8 test views: ~20 s each on two cores.
RUN_STEPS = 300
SHAPING_START = 100
RUNS_DIR = os.environ.get("JACOBINERF_TEST_RUNS")
"""Developer option: a folder where the scene and trained runs are kept and reused by later pytest sessions (only
valid while the code that trains them is unchanged, e.g. when checking that an evaluation bug is caught)."""


def _persistent(tmp_path_factory, name: str) -> Path:
    if RUNS_DIR:
        path = Path(RUNS_DIR) / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp(name)


@pytest.fixture(scope="session")
def room48(tmp_path_factory) -> Path:
    """A jn-synth room at 48x36 with 40 views (8 train, 8 test) for the trained-run fixtures."""
    from jacobinerf_ns.data.synth import SynthConfig, generate_scene

    out = _persistent(tmp_path_factory, "room48") / "room"
    if (out / "traj_w_c.txt").is_file():
        return out
    return generate_scene(
        SynthConfig(output_dir=out, num_views=40, width=48, height=36, supersample=1, export_mesh=False, quiet=True)
    )


def _trained(name: str, scene: Path, out: Path, timestamp: str, **model):
    import pickle

    from run_utils import method_config, train

    record = out / f"{timestamp}.pkl"
    if RUNS_DIR and record.is_file():
        return pickle.loads(record.read_bytes())
    cfg = method_config(name, scene, out, steps=RUN_STEPS, rays=1024, timestamp=timestamp)
    if hasattr(cfg.pipeline.datamanager, "teacher"):
        cfg.pipeline.datamanager.shaping_rays_per_batch = 256 if name.startswith("jacobinerf-tiny") else 0
    for key, value in model.items():
        setattr(cfg.pipeline.model, key, value)
    run = train(cfg, record=True)
    if RUNS_DIR:
        record.write_bytes(pickle.dumps(run))
    return run


@pytest.fixture(scope="session")
def jnerf_run(room48, tmp_path_factory):
    """jacobinerf-tiny, shaping from step 100 at weight 1e-2 (strong enough to see within 200 steps)."""
    return _trained(
        "jacobinerf-tiny",
        room48,
        _persistent(tmp_path_factory, "runs"),
        "shaped",
        shaping_start_step=SHAPING_START,
        nce_loss_weight=1e-2,
        norm_loss_weight=1e-2,
    )


@pytest.fixture(scope="session")
def plain_run(room48, tmp_path_factory):
    """The same run with both shaping weights 0 (the "no resonance" control)."""
    return _trained(
        "jacobinerf-tiny",
        room48,
        _persistent(tmp_path_factory, "runs"),
        "unshaped",
        shaping_start_step=SHAPING_START,
        nce_loss_weight=0.0,
        norm_loss_weight=0.0,
    )


@pytest.fixture(scope="session")
def features_run(room48, tmp_path_factory):
    return _trained("jacobinerf-features-tiny", room48, _persistent(tmp_path_factory, "runs"), "features")


@pytest.fixture(scope="session")
def semantic_run(room48, tmp_path_factory):
    return _trained("semantic-nerf-tiny", room48, _persistent(tmp_path_factory, "runs"), "semantic")


@pytest.fixture(scope="module")
def jnerf_pipeline(jnerf_run):
    """The shared jacobinerf run, loaded once per test module (modules set viewer options on it: none share one)."""
    from run_utils import load_pipeline

    return load_pipeline(jnerf_run.config_path)


@pytest.fixture(scope="module")
def features_pipeline(features_run):
    """The shared feature-field run, loaded once per test module."""
    from run_utils import load_pipeline

    return load_pipeline(features_run.config_path)
